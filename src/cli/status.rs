//! `tokenkeeper status` (alias `whoami`): per agent, the active slot in one line — for a shell
//! prompt. It reads the catalog only: no network, no lock, no secret store.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::output::{self, Format};
use super::style;
use crate::catalog::{Catalog, Slot};
use crate::error::Result;
use crate::expiry;
use crate::paths::Paths;
use crate::timefmt;
use crate::usage;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Prints one line per agent that has slots, e.g.
  claude: work (work@example.com, max), expires in 6h 12m, 5-hour 24%, 7-day 61% (read 12m ago)

Nothing is asked of the provider or the secret store: the plan, expiry and quota are the last
ones tokenkeeper saw (`usage` or the daemon refresh them). Exit 1 when no agent has an active
slot.")]
pub struct Args {}

pub fn run(_args: Args, paths: &Paths, format: Format) -> Result<u8> {
    let catalog = Catalog::load(&paths.catalog_file())?;
    let now = Timestamp::now();
    let mut agents: Vec<&str> = catalog.slots.iter().map(|s| s.agent.as_str()).collect();
    agents.sort_unstable();
    agents.dedup();
    let active: Vec<(&str, Option<&Slot>)> = agents
        .iter()
        .map(|agent| {
            let slot = catalog.active_id(agent).and_then(|id| catalog.get(id));
            (*agent, slot)
        })
        .collect();
    let any_active = active.iter().any(|(_, slot)| slot.is_some());
    if format == Format::Json {
        let entries: Vec<Value> = active
            .iter()
            .map(|(agent, slot)| match slot {
                Some(slot) => {
                    let mut entry = output::slot_json(slot, true, now);
                    entry["usage"] = json!(slot.usage);
                    json!({"agent": agent, "active": entry})
                }
                None => json!({"agent": agent, "active": null}),
            })
            .collect();
        output::json(&Value::Array(entries))?;
    } else if active.is_empty() {
        output::line("no slots (add one: tokenkeeper add)")?;
    } else {
        for (agent, slot) in &active {
            output::line(&match slot {
                Some(slot) => format!("{agent}: {}", describe(slot, now)),
                None => format!("{agent}: no active slot (tokenkeeper use NAME)"),
            })?;
        }
    }
    Ok(if any_active { 0 } else { 1 })
}

/// `work (work@example.com, max), expires in 6h 12m, 5-hour 24%, 7-day 61% (read 12m ago)`
fn describe(slot: &Slot, now: Timestamp) -> String {
    let mut about: Vec<&str> = Vec::new();
    about.extend(slot.email.as_deref());
    about.extend(slot.subscription_type.as_deref());
    let mut line = slot.name.clone();
    if !about.is_empty() {
        line.push_str(&format!(" ({})", about.join(", ")));
    }
    let state = if slot.needs_login.is_some() {
        style::paint("needs login", style::bad())
    } else if slot.superseded_by.is_some() {
        "superseded".to_string()
    } else {
        match slot.expires_at {
            Some(at) if at <= now => format!("expired {}", timefmt::relative(at, now)),
            Some(at) => format!("expires {}", timefmt::relative(at, now)),
            None => "no expiry known".to_string(),
        }
    };
    line.push_str(&format!(", {state}"));
    // A long-lived token's expiry is the state above; an OAuth login's end is worth its own.
    if let Some(warning) = expiry::warning(slot, now)
        && (warning.what == "login" || warning.level != expiry::Level::Soon)
    {
        let text = match (warning.what, warning.level) {
            ("login", expiry::Level::Expired) => "login expired".to_string(),
            ("login", _) => format!("login ends {}", timefmt::relative(warning.at, now)),
            _ => "renew soon".to_string(),
        };
        line.push_str(&format!(", {}", style::paint(&text, style::bad())));
    }
    if let Some(snapshot) = &slot.usage {
        for id in [usage::FIVE_HOUR, usage::SEVEN_DAY] {
            if let Some(window) = snapshot.window(id) {
                let percent = snapshot.percent_text(id);
                let percent = match window.percent {
                    Some(value) => style::paint(&percent, style::quota(value)),
                    None => percent,
                };
                line.push_str(&format!(", {} {percent}", window.label));
            }
        }
        let age = now.as_second() - snapshot.taken_at.as_second();
        let read = if age < 60 {
            "just now".to_string()
        } else {
            timefmt::relative(snapshot.taken_at, now)
        };
        let by = match snapshot.source {
            usage::Source::Poll => "read",
            usage::Source::Proxy => "seen by the proxy",
        };
        line.push_str(&format!(" ({by} {read})"));
    }
    line
}
