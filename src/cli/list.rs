//! `tokenkeeper list`

use comfy_table::{Table, presets};
use serde_json::Value;

use super::output::{self, Format};
use crate::agent::Agent;
use crate::error::Result;
use crate::keeper::Keeper;
use crate::paths::Paths;
use crate::timefmt;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this agent's slots.
    #[arg(long, value_enum)]
    pub agent: Option<Agent>,
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
    table.set_header(vec![
        "", "#", "NAME", "AGENT", "KIND", "EMAIL", "PLAN", "EXPIRES",
    ]);
    for (index, slot, active) in &rows {
        let expires = match slot.expires_at {
            _ if slot.needs_login.is_some() => "needs login".to_string(),
            Some(at) if at <= now => format!(
                "{} (expired {})",
                timefmt::local(at),
                timefmt::relative(at, now)
            ),
            Some(at) => format!("{} ({})", timefmt::local(at), timefmt::relative(at, now)),
            None => "-".to_string(),
        };
        table.add_row(vec![
            if *active { "*" } else { "" }.to_string(),
            format!("#{index}"),
            slot.name.clone(),
            slot.agent.clone(),
            slot.kind.to_string(),
            slot.email.clone().unwrap_or_else(|| "-".into()),
            slot.subscription_type.clone().unwrap_or_else(|| "-".into()),
            expires,
        ]);
    }
    let text = table.to_string();
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    output::line(&lines.join("\n")).map(|()| 0)
}
