//! `tokenkeeper migrate --to BACKEND [NAME|--all]`: moves slots' secrets between backends.

use serde_json::{Value, json};

use super::output::{self, Format};
use super::{AgentArg, Selection};
use crate::catalog::Slot;
use crate::error::{Error, Result};
use crate::keeper::{Keeper, Migrated};
use crate::lock::FileLock;
use crate::paths::Paths;
use crate::store::{Backend, BackendArg, select_with};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
For each slot: copy its secret to the new backend, read it back and compare, point the catalog
at the new backend, then delete the old copy. A crash at any point leaves every slot readable
from the backend the catalog names. The slot is locked meanwhile, so no refresh interleaves.
Afterwards, make the new backend the default for new slots too (--backend, TOKENKEEPER_BACKEND
or config.toml).

Examples:
  tokenkeeper migrate --to keychain --all
  tokenkeeper migrate --to file work")]
pub struct Args {
    /// The backend to move to (`auto`: the platform's default).
    #[arg(long, value_enum)]
    pub to: BackendArg,

    #[command(flatten)]
    pub selection: Selection,

    #[command(flatten)]
    pub agent: AgentArg,
}

pub fn run(args: Args, paths: &Paths, format: Format) -> Result<u8> {
    let to = select_with(paths, Some(args.to))?.backend;
    let slots: Vec<Slot> = {
        let keeper = Keeper::open(paths.clone())?;
        let catalog = keeper.catalog();
        match (&args.selection.slot, args.selection.all) {
            // Every slot of the agent, and the ralph commands' tokens of every agent.
            (_, true) => catalog
                .slots
                .iter()
                .filter(|s| s.agent == args.agent.agent.name() || s.ralph)
                .cloned()
                .collect(),
            (selector, false) => {
                let selector = selector.as_deref().ok_or_else(|| {
                    Error::usage("name a slot, or --all")
                        .with_hint("tokenkeeper migrate --to keychain --all")
                })?;
                vec![
                    catalog
                        .resolve_or_active(args.agent.agent.name(), Some(selector))?
                        .clone(),
                ]
            }
        }
    };

    let bar = output::progress(
        slots.len(),
        &format!("moving to {to} {{bar:30}} {{pos}}/{{len}} {{msg}}"),
    );
    let mut results = Vec::new();
    let mut failed = false;
    for slot in &slots {
        bar.set_message(slot.name.clone());
        let outcome = move_one(paths, slot, to);
        bar.inc(1);
        failed |= outcome.is_err();
        results.push((slot.name.clone(), outcome));
    }
    bar.finish_and_clear();

    if format == Format::Json {
        let items: Vec<Value> = results
            .iter()
            .map(|(name, outcome)| match outcome {
                Ok(Migrated::AlreadyThere) => {
                    json!({"slot": name, "to": to.as_str(), "moved": false})
                }
                Ok(Migrated::Moved { from, removed }) => json!({
                    "slot": name, "from": from.as_str(), "to": to.as_str(), "moved": true,
                    "old_copy_removed": removed,
                }),
                Err(err) => json!({"slot": name, "to": to.as_str(), "error": err.message()}),
            })
            .collect();
        output::json(&Value::Array(items))?;
    } else {
        for (name, outcome) in &results {
            let line = match outcome {
                Ok(Migrated::AlreadyThere) => format!("'{name}' is already in the {to} store"),
                Ok(Migrated::Moved {
                    from,
                    removed: true,
                }) => format!("moved '{name}' from the {from} store to the {to} store"),
                Ok(Migrated::Moved {
                    from,
                    removed: false,
                }) => format!(
                    "moved '{name}' from the {from} store to the {to} store (the old copy is still there)"
                ),
                Err(err) => format!("'{name}' not moved: {}", err.message()),
            };
            output::line(&line)?;
        }
    }
    Ok(u8::from(failed))
}

/// One slot, under its lock so that no refresh writes it meanwhile.
fn move_one(paths: &Paths, slot: &Slot, to: Backend) -> Result<Migrated> {
    let _lock = FileLock::acquire(&paths.slot_lock(&slot.id))?;
    let mut keeper = Keeper::open(paths.clone())?;
    let moved = keeper.migrate(&slot.id, to);
    keeper.flush_notices_to_stderr();
    moved
}
