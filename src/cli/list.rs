//! `tokenkeeper list`

use comfy_table::{Table, presets};
use jiff::SignedDuration;
use serde_json::{Value, json};

use super::output::{self, Format};
use crate::agent::Agent;
use crate::error::Result;
use crate::keeper::Keeper;
use crate::paths::Paths;
use crate::refresh;
use crate::secret::Secret;
use crate::timefmt;
use crate::usage::{self, Eligibility};

const USAGE_DETAIL: [&str; 4] = [
    usage::FIVE_HOUR,
    usage::SEVEN_DAY,
    "seven_day_sonnet",
    "seven_day_opus",
];

/// How old a usage reading may be before `list` asks the provider again.
pub const ENV_USAGE_MAX_AGE: &str = "TOKENKEEPER_USAGE_MAX_AGE";
/// Concurrent usage requests `list` makes.
const USAGE_JOBS: usize = 16;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
The 5H and 7D columns show the share of the 5-hour and 7-day quota windows used, from the last
usage reading. Readings older than TOKENKEEPER_USAGE_MAX_AGE (default 5m) are renewed first,
with the stored access tokens only and a short timeout (`list` never refreshes a token); the
daemon keeps them current. --no-usage skips the network and the columns.")]
pub struct Args {
    /// Only this agent's slots.
    #[arg(long, value_enum)]
    pub agent: Option<Agent>,

    /// Do not show or renew usage readings.
    #[arg(long, conflicts_with = "detail")]
    pub no_usage: bool,

    /// Also show the per-model windows (7-day Sonnet, 7-day Opus).
    #[arg(long)]
    pub detail: bool,
}

pub fn run(args: Args, paths: &Paths, format: Format) -> Result<u8> {
    let agents: Vec<Agent> = match args.agent {
        Some(agent) => vec![agent],
        None => vec![Agent::Claude],
    };
    let mut keeper = Keeper::open(paths.clone())?;
    for agent in &agents {
        keeper.sync_live(*agent)?;
    }
    output::flush_notices(&mut keeper);
    if !args.no_usage {
        let max_age = refresh::env_duration(ENV_USAGE_MAX_AGE, SignedDuration::from_mins(5))?;
        renew_usage(&mut keeper, &agents, max_age)?;
    }
    let now = keeper.now();
    let catalog = keeper.catalog();

    // (position within its agent, slot, active)
    let mut rows = Vec::new();
    for agent in &agents {
        let active = catalog.active_id(agent.name());
        for (i, slot) in catalog.slots_of(agent.name()).enumerate() {
            rows.push((i + 1, slot, active == Some(slot.id.as_str())));
        }
    }

    if format == Format::Json {
        let items: Vec<Value> = rows
            .iter()
            .map(|(index, slot, active)| {
                let mut item = serde_json::Map::new();
                item.insert("index".into(), Value::from(*index));
                if let Value::Object(fields) = output::slot_json(slot, *active, now) {
                    item.extend(fields);
                }
                if !args.no_usage {
                    item.insert("usage".into(), json!(slot.usage));
                }
                Value::Object(item)
            })
            .collect();
        return output::json(&Value::Array(items)).map(|()| 0);
    }
    if rows.is_empty() {
        output::line("no slots yet")?;
        eprintln!(
            "hint: run `tokenkeeper add` to register the account Claude Code is logged in with",
        );
        return Ok(0);
    }
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    let mut header = vec!["", "#", "NAME", "AGENT", "KIND", "EMAIL", "PLAN", "EXPIRES"];
    let usage_columns: &[&str] = match (args.no_usage, args.detail) {
        (true, _) => &[],
        (false, false) => &[usage::FIVE_HOUR, usage::SEVEN_DAY],
        (false, true) => &USAGE_DETAIL,
    };
    header.extend(usage_columns.iter().map(|id| column_title(id)));
    table.set_header(header);
    for (index, slot, active) in &rows {
        let expires = match slot.expires_at {
            _ if slot.needs_login.is_some() => "needs login".to_string(),
            _ if slot.superseded_by.is_some() => "superseded (not refreshed)".to_string(),
            Some(at) if slot.handed_over.is_some() => {
                format!("{} (handed over)", timefmt::local(at))
            }
            Some(at) if at <= now => format!(
                "{} (expired {})",
                timefmt::local(at),
                timefmt::relative(at, now)
            ),
            Some(at) => format!("{} ({})", timefmt::local(at), timefmt::relative(at, now)),
            None => "-".to_string(),
        };
        let mut row = vec![
            if *active { "*" } else { "" }.to_string(),
            format!("#{index}"),
            slot.name.clone(),
            slot.agent.clone(),
            slot.kind.to_string(),
            slot.email.clone().unwrap_or_else(|| "-".into()),
            slot.subscription_type.clone().unwrap_or_else(|| "-".into()),
            expires,
        ];
        row.extend(usage_columns.iter().map(|id| match &slot.usage {
            Some(snapshot) => snapshot.percent_text(id),
            None => "-".to_string(),
        }));
        table.add_row(row);
    }
    let text = table.to_string();
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    output::line(&lines.join("\n")).map(|()| 0)
}

fn column_title(id: &str) -> &'static str {
    match id {
        usage::FIVE_HOUR => "5H",
        usage::SEVEN_DAY => "7D",
        "seven_day_sonnet" => "7D SONNET",
        _ => "7D OPUS",
    }
}

/// Renews readings older than `max_age` for slots whose stored access token can read usage.
fn renew_usage(keeper: &mut Keeper, agents: &[Agent], max_age: SignedDuration) -> Result<()> {
    let now = keeper.now();
    let stale: Vec<(String, Secret)> = agents
        .iter()
        .flat_map(|agent| keeper.catalog().slots_of(agent.name()))
        .filter(|slot| {
            let last = slot
                .usage
                .as_ref()
                .map(|u| u.taken_at)
                .max(slot.usage_tried_at);
            last.is_none_or(|at| now.duration_since(at) > max_age)
                && slot.needs_login.is_none()
                && slot.expires_at.is_some_and(|at| at > now)
        })
        .filter_map(|slot| {
            let credential = keeper.credential(slot).ok()?;
            (usage::eligibility(slot, &credential) == Eligibility::Yes)
                .then(|| (slot.id.clone(), credential.access_token()))
        })
        .collect();
    if stale.is_empty() {
        return Ok(());
    }
    let tokens: Vec<Secret> = stale.iter().map(|(_, token)| token.clone()).collect();
    let readings = usage::fetch_quick(&tokens, USAGE_JOBS);
    let readings = stale
        .into_iter()
        .zip(readings)
        .map(|((id, _), reading)| (id, reading))
        .collect();
    keeper.record_usage(readings)
}
