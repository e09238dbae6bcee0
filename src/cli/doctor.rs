//! `tokenkeeper doctor`: which backend is in use and why, and whether every backend the slots
//! live in can be reached.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::output::{self, Format};
use crate::catalog::{Catalog, Stranded};
use crate::error::Result;
use crate::journal::Journal;
use crate::paths::Paths;
use crate::store::{self, Backend, Stores};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
The backend for new secrets comes from --backend, else TOKENKEEPER_BACKEND, else `backend = \"…\"`
in the config file, else auto (the Keychain on macOS, 0600 files elsewhere). Each backend in use
is asked for an item that does not exist, to show it can be reached. Exit 1 if one cannot.")]
pub struct Args {}

struct Check {
    backend: Backend,
    slots: usize,
    error: Option<(String, Option<String>)>,
}

pub fn run(_args: Args, paths: &Paths, format: Format) -> Result<u8> {
    let selection = store::select(paths)?;
    let catalog = Catalog::load(&paths.catalog_file())?;
    let mut in_use: BTreeMap<&'static str, (Backend, usize)> = BTreeMap::new();
    in_use.insert(selection.backend.as_str(), (selection.backend, 0));
    for slot in &catalog.slots {
        in_use
            .entry(slot.backend.as_str())
            .or_insert((slot.backend, 0))
            .1 += 1;
    }
    let stores = Stores::new(paths);
    let checks: Vec<Check> = in_use
        .into_values()
        .map(|(backend, slots)| Check {
            backend,
            slots,
            error: stores
                .probe(backend)
                .err()
                .map(|err| (err.message().to_string(), err.hint().map(str::to_string))),
        })
        .collect();
    // Refresh answers that could not be applied: each was set aside, its slot marked.
    let journal = Journal::new(paths);
    let unusable = journal.unusable();
    let stranded: Vec<(&str, &Stranded)> = catalog
        .slots
        .iter()
        .filter_map(|slot| Some((slot.name.as_str(), slot.stranded.as_ref()?)))
        .collect();
    // Slots waiting for their account to be confirmed (see `Keeper::settle`).
    let superseded: Vec<(&str, &str)> = catalog
        .slots
        .iter()
        .filter_map(|slot| {
            let newer = catalog.get(slot.superseded_by.as_ref()?)?;
            Some((slot.name.as_str(), newer.name.as_str()))
        })
        .collect();
    let healthy = checks.iter().all(|check| check.error.is_none()) && stranded.is_empty();

    if format == Format::Json {
        let backends: Vec<Value> = checks
            .iter()
            .map(|check| {
                json!({
                    "backend": check.backend.as_str(),
                    "slots": check.slots,
                    "reachable": check.error.is_none(),
                    "error": check.error.as_ref().map(|(message, _)| message),
                    "hint": check.error.as_ref().and_then(|(_, hint)| hint.as_ref()),
                })
            })
            .collect();
        output::json(&json!({
            "backend": selection.backend.as_str(),
            "why": selection.why,
            "config_file": paths.config_file(),
            "data_dir": paths.data_dir,
            "backends": backends,
            "stranded": stranded
                .iter()
                .map(|(slot, s)| json!({"slot": slot, "why": s.why, "kept": s.kept}))
                .collect::<Vec<_>>(),
            "superseded": superseded
                .iter()
                .map(|(slot, newer)| json!({"slot": slot, "newer": newer}))
                .collect::<Vec<_>>(),
            "memory_protected": crate::harden::is_protected(),
            "unusable_journal_entries": unusable,
        }))?;
    } else {
        output::line(&format!(
            "backend: {} ({})",
            selection.backend, selection.why
        ))?;
        output::line(&format!("config file: {}", paths.config_file().display()))?;
        output::line(&format!("data directory: {}", paths.data_dir.display()))?;
        output::line(if crate::harden::is_protected() {
            "memory: protected (not dumpable: no core dumps, no ptrace by the same user)"
        } else {
            "memory: NOT protected (this system would not mark the process non-dumpable)"
        })?;
        for check in &checks {
            let status = match &check.error {
                None => "reachable".to_string(),
                Some((message, Some(hint))) => format!("NOT reachable: {message}\n  hint: {hint}"),
                Some((message, None)) => format!("NOT reachable: {message}"),
            };
            output::line(&format!(
                "{}: {} slot{}, {status}",
                check.backend,
                check.slots,
                if check.slots == 1 { "" } else { "s" }
            ))?;
        }
        for (slot, stranded) in &stranded {
            output::line(&format!(
                "slot '{slot}' is stranded: {}; the answer is kept in {}\n  hint: log in again with `claude` (/login), then run: tokenkeeper add {slot}",
                stranded.why, stranded.kept
            ))?;
        }
        for (slot, newer) in &superseded {
            output::line(&format!(
                "slot '{slot}' is superseded: Claude Code replaced its credential while offline, the newer tokens are in '{newer}'; it is not refreshed until the account is confirmed\n  hint: tokenkeeper refresh {newer}"
            ))?;
        }
        for path in &unusable {
            output::line(&format!(
                "journal entry set aside (0600, may hold tokens): {}",
                path.display()
            ))?;
        }
    }
    Ok(if healthy { 0 } else { 1 })
}
