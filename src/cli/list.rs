//! `tokenkeeper list`

use comfy_table::{Table, presets};
use jiff::SignedDuration;
use serde_json::{Value, json};

use super::output::{self, Format};
use super::style;
use crate::agent::Agent;
use crate::agent::Credential;
use crate::catalog::Slot;
use crate::error::Result;
use crate::keeper::Keeper;
use crate::paths::Paths;
use crate::refresh;
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
        None => Agent::ALL.to_vec(),
    };
    let mut keeper = Keeper::open(paths.clone())?;
    if let Err(err) = keeper.sync_shared() {
        output::warn(&format!("showing the slots known here: {}", err.message()));
    }
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
    // Without --agent, every agent with slots (the ralph commands keep tokens for any agent).
    let mut names: Vec<&str> = agents.iter().map(|a| a.name()).collect();
    if args.agent.is_none() {
        let mut others: Vec<&str> = catalog
            .slots
            .iter()
            .map(|s| s.agent.as_str())
            .filter(|a| !names.contains(a))
            .collect();
        others.sort_unstable();
        others.dedup();
        names.extend(others);
    }
    for agent in &names {
        let active = catalog.active_id(agent);
        for (i, slot) in catalog.slots_of(agent).enumerate() {
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
    let agent_column = {
        let mut seen: Vec<&str> = rows
            .iter()
            .map(|(_, slot, _)| slot.agent.as_str())
            .collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len() > 1
    };
    let usage_columns: &[&str] = match (args.no_usage, args.detail) {
        (true, _) => &[],
        (false, false) => &[usage::FIVE_HOUR, usage::SEVEN_DAY],
        (false, true) => &USAGE_DETAIL,
    };
    let text = fit(&rows, agent_column, usage_columns, now, style::width());
    output::line(&paint(&text, &rows, usage_columns)).map(|()| 0)
}

/// How much a table gives up to fit a narrow terminal, in this order: the expiry's date (the
/// relative time stays), KIND, PLAN, the per-model quota columns, the email's tail, the email.
const FIT_STEPS: usize = 6;

/// The table at the first step of `FIT_STEPS` that fits `width` (all of it when unlimited).
fn fit(
    rows: &[(usize, &Slot, bool)],
    agent_column: bool,
    usage_columns: &[&str],
    now: jiff::Timestamp,
    width: Option<usize>,
) -> String {
    let mut text = String::new();
    for step in 0..=FIT_STEPS {
        text = render(rows, agent_column, usage_columns, now, step);
        let widest = text.lines().map(|l| l.chars().count()).max().unwrap_or(0);
        if width.is_none_or(|w| widest <= w) {
            break;
        }
    }
    text
}

fn render(
    rows: &[(usize, &Slot, bool)],
    agent_column: bool,
    usage_columns: &[&str],
    now: jiff::Timestamp,
    step: usize,
) -> String {
    let short_expiry = step >= 1;
    let kind = step < 2;
    let plan = step < 3;
    let usage_columns = if step >= 4 {
        &usage_columns[..usage_columns.len().min(2)]
    } else {
        usage_columns
    };
    let email = match step {
        ..5 => Some(usize::MAX),
        5 => Some(24),
        _ => None,
    };
    let mut header = vec!["", "#", "NAME"];
    if agent_column {
        header.push("AGENT");
    }
    if kind {
        header.push("KIND");
    }
    if email.is_some() {
        header.push("EMAIL");
    }
    if plan {
        header.push("PLAN");
    }
    header.push("EXPIRES");
    header.extend(usage_columns.iter().map(|id| column_title(id)));
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    table.set_header(header);
    for (index, slot, active) in rows {
        let when = |at: jiff::Timestamp| {
            if short_expiry {
                timefmt::relative(at, now)
            } else {
                format!("{} ({})", timefmt::local(at), timefmt::relative(at, now))
            }
        };
        let expires = match slot.expires_at {
            _ if slot.needs_login.is_some() => NEEDS_LOGIN.to_string(),
            _ if slot.superseded_by.is_some() => "superseded (not refreshed)".to_string(),
            Some(at) if slot.handed_over.is_some() => format!("{} (handed over)", when(at)),
            Some(at) if at <= now && short_expiry => {
                format!("expired {}", timefmt::relative(at, now))
            }
            Some(at) if at <= now => format!(
                "{} (expired {})",
                timefmt::local(at),
                timefmt::relative(at, now)
            ),
            Some(at) => when(at),
            None => "-".to_string(),
        };
        let mut row = vec![
            if *active { "*" } else { "" }.to_string(),
            format!("#{index}"),
            // A slot whose lineage lives in a shared store, for every install that uses it.
            if slot.shared {
                format!("{} (shared)", slot.name)
            } else {
                slot.name.clone()
            },
        ];
        if agent_column {
            row.push(slot.agent.clone());
        }
        if kind {
            row.push(slot.kind.to_string());
        }
        if let Some(max) = email {
            let text = slot.email.clone().unwrap_or_else(|| "-".into());
            row.push(abbreviate(&text, max));
        }
        if plan {
            row.push(slot.subscription_type.clone().unwrap_or_else(|| "-".into()));
        }
        row.push(expires);
        row.extend(usage_columns.iter().map(|id| match &slot.usage {
            Some(snapshot) => snapshot.percent_text(id),
            None => "-".to_string(),
        }));
        table.add_row(row);
    }
    let text = table.to_string();
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    lines.join("\n")
}

const NEEDS_LOGIN: &str = "needs login";

/// `text` cut to `max` characters, the cut marked with `…`.
fn abbreviate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let kept: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// Colours a laid-out table (colour never changes the layout): the active marker, "needs
/// login", and quota from 80 % (yellow) and 95 % (red).
fn paint(text: &str, rows: &[(usize, &Slot, bool)], usage_columns: &[&str]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for ((_, slot, active), line) in rows.iter().zip(lines.iter_mut().skip(1)) {
        let mut painted = line.clone();
        // Quota cells end the line: colour them from the right.
        let mut end = painted.len();
        for id in usage_columns.iter().rev() {
            let Some(snapshot) = &slot.usage else { break };
            let cell = snapshot.percent_text(id);
            let Some(at) = painted[..end].rfind(&cell) else {
                continue;
            };
            if let Some(percent) = snapshot.window(id).and_then(|w| w.percent) {
                let colored = style::paint(&cell, style::quota(percent));
                painted.replace_range(at..at + cell.len(), &colored);
            }
            end = at;
        }
        if slot.needs_login.is_some() {
            painted = painted.replacen(NEEDS_LOGIN, &style::paint(NEEDS_LOGIN, style::bad()), 1);
        }
        if *active {
            painted = painted.replacen('*', &style::paint("*", style::active()), 1);
        }
        *line = painted;
    }
    lines.join("\n")
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
pub(super) fn renew_usage(
    keeper: &mut Keeper,
    agents: &[Agent],
    max_age: SignedDuration,
) -> Result<()> {
    let now = keeper.now();
    let stale: Vec<(String, (Agent, Credential))> = agents
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
            let agent = Agent::from_name(&slot.agent)?;
            (usage::eligibility(slot, &credential) == Eligibility::Yes)
                .then(|| (slot.id.clone(), (agent, credential)))
        })
        .collect();
    if stale.is_empty() {
        return Ok(());
    }
    let logins: Vec<(Agent, Credential)> = stale.iter().map(|(_, login)| login.clone()).collect();
    let readings = usage::fetch_quick(&logins, USAGE_JOBS);
    let readings = stale
        .into_iter()
        .zip(readings)
        .map(|((id, _), reading)| (id, reading))
        .collect();
    keeper.record_usage(readings)
}
