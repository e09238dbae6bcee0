//! `tokenkeeper usage [NAME|--all]`

use jiff::Timestamp;
use serde_json::{Value, json};

use super::output::{self, Format};
use super::style;
use super::{AgentArg, Selection};
use crate::catalog::Slot;
use crate::error::{Error, Result};
use crate::keeper::Keeper;
use crate::paths::Paths;
use crate::refresh::Policy;
use crate::timefmt;
use crate::usage::{self, SlotUsage, Snapshot};

const SETUP_TOKENS: &str = "usage unavailable for setup tokens";

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Shows how much of each quota window the account has used: 5-hour, 7-day, and the per-model
7-day windows, with the time each resets. Reading usage costs no quota. Tokens that are due are
refreshed first; a token the provider refuses is refreshed once and the request retried.
Long-lived setup tokens cannot read usage and say so. The readings are kept for `list`.

Examples:
  tokenkeeper usage                 the active slot
  tokenkeeper usage --all           every slot, queried concurrently
  tokenkeeper usage work --format json")]
pub struct Args {
    #[command(flatten)]
    pub selection: Selection,

    /// How many slots to query at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,

    #[command(flatten)]
    pub agent: AgentArg,
}

pub fn run(args: Args, paths: &Paths, format: Format) -> Result<u8> {
    let agent = args.agent.agent;
    let policy = Policy::from_env()?;
    let slots: Vec<Slot> = {
        let mut keeper = Keeper::open(paths.clone())?;
        keeper.sync_live(agent)?;
        output::flush_notices(&mut keeper);
        if args.selection.all {
            if let Err(err) = keeper.sync_shared() {
                output::warn(&format!("showing the slots known here: {}", err.message()));
            }
            keeper.catalog().slots_of(agent.name()).cloned().collect()
        } else {
            vec![keeper.resolve(agent, args.selection.slot.as_deref())?]
        }
    };
    if slots.is_empty() {
        if format == Format::Json {
            return output::json(&json!([])).map(|()| 0);
        }
        output::line("no slots yet")?;
        return Ok(0);
    }

    let names: Vec<String> = slots.iter().map(|s| s.name.clone()).collect();
    let bar = output::progress(slots.len(), "reading usage {bar:30} {pos}/{len} slots");
    let results = usage::fetch_many(paths, agent, &names, &policy, args.jobs.into(), || {
        bar.inc(1)
    });
    bar.finish_and_clear();

    let readings = slots
        .iter()
        .zip(&results)
        .filter_map(|(slot, result)| match result {
            SlotUsage::Snapshot(snapshot) => Some((slot.id.clone(), Some(snapshot.clone()))),
            _ => None,
        })
        .collect();
    Keeper::open(paths.clone())?.record_usage(readings)?;

    let mut results = results;
    if !args.selection.all
        && let Some(SlotUsage::Failed(_)) = results.first()
        && let Some(SlotUsage::Failed(err)) = results.pop()
    {
        return Err(err);
    }
    let failed = results
        .iter()
        .filter(|r| matches!(r, SlotUsage::Failed(_)))
        .count();
    let now = Timestamp::now();
    if format == Format::Json {
        let items: Vec<Value> = slots
            .iter()
            .zip(&results)
            .map(|(slot, result)| match result {
                SlotUsage::Snapshot(snap) => json!({
                    "slot": slot.name, "email": slot.email, "status": "ok",
                    "taken_at": snap.taken_at, "windows": snap.windows, "credits": snap.credits,
                }),
                SlotUsage::Unavailable => json!({
                    "slot": slot.name, "email": slot.email, "status": "unavailable",
                    "reason": SETUP_TOKENS, "seen_by_proxy": seen_by_proxy(slot),
                }),
                SlotUsage::Failed(err) => json!({
                    "slot": slot.name, "email": slot.email, "status": "error",
                    "error": err.message(),
                }),
            })
            .collect();
        output::json(&Value::Array(items))?;
    } else {
        let mut text = Vec::new();
        for (slot, result) in slots.iter().zip(&results) {
            match result {
                SlotUsage::Snapshot(snap) => text.push(render(slot, snap, now)),
                SlotUsage::Unavailable => match seen_by_proxy(slot) {
                    // What the proxy read off the answers is all there is for a setup token.
                    Some(snap) => text.push(format!(
                        "{}\n  (seen by the proxy {}; {SETUP_TOKENS})",
                        render(slot, snap, now),
                        timefmt::relative(snap.taken_at, now)
                    )),
                    None => text.push(format!("{}: {SETUP_TOKENS}", slot.name)),
                },
                SlotUsage::Failed(err) => output::notice(err.message()),
            }
        }
        if !text.is_empty() {
            output::line(&text.join("\n"))?;
        }
    }
    if failed > 0 {
        return Err(Error::failure(format!(
            "the usage of {failed} of {} slots could not be read",
            slots.len()
        )));
    }
    Ok(0)
}

/// The last reading a proxy took off the answers it relayed for this slot.
fn seen_by_proxy(slot: &Slot) -> Option<&Snapshot> {
    slot.usage
        .as_ref()
        .filter(|snap| snap.source == usage::Source::Proxy)
}

/// ```text
/// work  alice@example.com  max
///   5-hour          24%  resets 2026-01-02 19:59 UTC (in 2h 3m)
/// ```
fn render(slot: &Slot, snap: &Snapshot, now: Timestamp) -> String {
    let mut head = vec![slot.name.clone()];
    head.extend(slot.email.clone());
    head.extend(slot.subscription_type.clone());
    let mut lines = vec![head.join("  ")];
    if snap.windows.is_empty() {
        lines.push("  no usage windows reported".to_string());
    }
    let width = style::width();
    for window in &snap.windows {
        let percent = window.percent.map_or("-".to_string(), usage::percent_text);
        // Padded before it is coloured, so colour never shifts a column.
        let padded = format!("{percent:>5}");
        let shown = match window.percent {
            Some(value) => style::paint(&padded, style::quota(value)),
            None => padded.clone(),
        };
        let label = format!("  {:<14} ", window.label);
        let resets = window.resets_at.map_or(String::new(), |at| {
            let long = format!(
                "  resets {} ({})",
                timefmt::local(at),
                timefmt::relative(at, now)
            );
            // Too wide for the terminal: the relative time alone.
            let used = label.chars().count() + padded.len() + long.chars().count();
            if width.is_some_and(|w| used > w) {
                format!("  resets {}", timefmt::relative(at, now))
            } else {
                long
            }
        });
        lines.push(format!("{label}{shown}{resets}"));
    }
    if let Some(credits) = &snap.credits {
        lines.push(format!("  {:<14} {credits}", "credits"));
    }
    lines.join("\n")
}
