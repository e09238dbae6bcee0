//! `tokenkeeper doctor [NAME] [--fix]`: one line per check, for the install and for each slot —
//! ok, warn or fail — and exit 1 on any fail. `--fix` repairs what is safe to repair.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Value, json};

use super::AgentArg;
use super::output::{self, Format};
use super::style;
use crate::agent::Agent;
use crate::agent::claude;
use crate::agent::claude::lock as claude_lock;
use crate::agent::live::Live;
use crate::agent::{Credential, Kind};
use crate::catalog::{Catalog, Slot};
use crate::error::Result;
use crate::expiry::{self, Level};
use crate::journal::Journal;
use crate::keeper::Keeper;
use crate::paths::Paths;
use crate::probe::{self, Verdict};
use crate::store::{self, Backend, Stores};
use crate::timefmt;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Checks, one line each:
  the install   backend for new secrets and why; each backend in use reachable; file modes
                (0600 files, 0700 directories); refresh answers waiting in the journal; Claude
                Code's refresh lock left stale; the live credential matching the active slot;
                memory protection
  each slot     needs a login, stranded or superseded; expiry (30 days: warn, expired: fail);
                a validity probe that costs no quota: the profile endpoint for full-scope
                tokens, a token count for setup tokens. Definite answers are cached for
                TOKENKEEPER_PROBE_TTL (default 10m); --fresh asks again.

--fix repairs what is safe: loosened modes (chmod 600/700), a Claude Code lock directory no one
has touched for over 60 s (removed), and journal entries waiting to be applied (replayed).
Exit 1 when any check fails.

Examples:
  tokenkeeper doctor
  tokenkeeper doctor ci --fresh
  tokenkeeper doctor --fix --format json")]
pub struct Args {
    /// Check this slot only (name or #N) [default: every slot].
    #[arg(add = super::slot_completer())]
    pub slot: Option<String>,

    #[command(flatten)]
    pub agent: AgentArg,

    /// Repair what is safe to repair: modes, a stale Claude Code lock, the journal.
    #[arg(long)]
    pub fix: bool,

    /// Do not ask the provider whether tokens are still accepted.
    #[arg(long, conflicts_with = "fresh")]
    pub no_probe: bool,

    /// Ask the provider again even when a cached answer is young.
    #[arg(long)]
    pub fresh: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
struct Check {
    check: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    slot: Option<String>,
    status: Status,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    fixed: bool,
}

#[derive(Default)]
struct Report {
    checks: Vec<Check>,
}

impl Report {
    fn add(
        &mut self,
        check: &'static str,
        status: Status,
        detail: impl Into<String>,
    ) -> &mut Check {
        self.checks.push(Check {
            check,
            slot: None,
            status,
            detail: detail.into(),
            hint: None,
            fixed: false,
        });
        self.checks.last_mut().expect("just pushed")
    }

    fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.status == Status::Fail)
    }
}

impl Check {
    fn hint(&mut self, hint: impl Into<String>) -> &mut Self {
        self.hint = Some(hint.into());
        self
    }

    fn slot(&mut self, name: &str) -> &mut Self {
        self.slot = Some(name.to_string());
        self
    }
}

struct Reachability {
    backend: Backend,
    slots: usize,
    error: Option<(String, Option<String>)>,
}

pub fn run(args: Args, paths: &Paths, format: Format) -> Result<u8> {
    let selection = store::select(paths)?;
    let now = Timestamp::now();
    let mut report = Report::default();
    report.add(
        "backend",
        Status::Ok,
        format!("backend: {} ({})", selection.backend, selection.why),
    );

    // Modes first: with a loosened file, nothing else can be read.
    check_modes(paths, args.fix, &mut report);

    let catalog = match Catalog::load(&paths.catalog_file()) {
        Ok(catalog) => catalog,
        Err(err) => {
            let check = report.add(
                "catalog",
                Status::Fail,
                format!("catalog: {}", err.message()),
            );
            if let Some(hint) = err.hint() {
                check.hint(hint);
            }
            return finish(&report, &selection, paths, &[], &Catalog::default(), format);
        }
    };

    let reachability = check_backends(paths, &selection, &catalog, &mut report);
    let catalog = check_journal(paths, args.fix, catalog, &mut report)?;
    check_claude_lock(args.fix, &mut report);
    check_live(paths, &catalog, &mut report);
    report.add(
        "memory",
        if crate::harden::is_protected() {
            Status::Ok
        } else {
            Status::Warn
        },
        if crate::harden::is_protected() {
            "memory: protected (not dumpable: no core dumps, no ptrace by the same user)"
        } else {
            "memory: NOT protected (this system would not mark the process non-dumpable)"
        },
    );

    let slots: Vec<&Slot> = match &args.slot {
        Some(selector) => vec![catalog.resolve(args.agent.agent.name(), selector)?],
        None => catalog.slots.iter().collect(),
    };
    let stores = Stores::new(paths);
    for slot in slots {
        check_slot(paths, &stores, &catalog, slot, &args, now, &mut report);
    }
    finish(&report, &selection, paths, &reachability, &catalog, format)
}

fn finish(
    report: &Report,
    selection: &store::Selection,
    paths: &Paths,
    reachability: &[Reachability],
    catalog: &Catalog,
    format: Format,
) -> Result<u8> {
    let code = if report.failed() { 1 } else { 0 };
    if format == Format::Json {
        let backends: Vec<Value> = reachability
            .iter()
            .map(|r| {
                json!({
                    "backend": r.backend.as_str(),
                    "slots": r.slots,
                    "reachable": r.error.is_none(),
                    "error": r.error.as_ref().map(|(message, _)| message),
                    "hint": r.error.as_ref().and_then(|(_, hint)| hint.as_ref()),
                })
            })
            .collect();
        let stranded: Vec<Value> = catalog
            .slots
            .iter()
            .filter_map(|slot| {
                let s = slot.stranded.as_ref()?;
                Some(json!({"slot": slot.name, "why": s.why, "kept": s.kept}))
            })
            .collect();
        let superseded: Vec<Value> = catalog
            .slots
            .iter()
            .filter_map(|slot| {
                let newer = catalog.get(slot.superseded_by.as_ref()?)?;
                Some(json!({"slot": slot.name, "newer": newer.name}))
            })
            .collect();
        output::json(&json!({
            "healthy": code == 0,
            "checks": report.checks,
            "backend": selection.backend.as_str(),
            "why": selection.why,
            "config_file": paths.config_file(),
            "data_dir": paths.data_dir,
            "backends": backends,
            "stranded": stranded,
            "superseded": superseded,
            "memory_protected": crate::harden::is_protected(),
            "unusable_journal_entries": Journal::new(paths).unusable(),
        }))?;
    } else {
        for check in &report.checks {
            let label = match check.status {
                Status::Ok => style::paint("ok  ", style::active()),
                Status::Warn => style::paint("warn", style::quota(80.0)),
                Status::Fail => style::paint("fail", style::bad()),
            };
            output::line(&format!("{label}  {}", check.detail))?;
            if let Some(hint) = &check.hint {
                output::line(&format!("      hint: {hint}"))?;
            }
        }
    }
    Ok(code)
}

/// Every file under the data directory 0600 and every directory 0700, and the live credential
/// file 0600. `fix` tightens what is looser; another user's file is only reported.
fn check_modes(paths: &Paths, fix: bool, report: &mut Report) {
    let mut loose: Vec<(PathBuf, u32, bool)> = Vec::new();
    let mut foreign: Vec<PathBuf> = Vec::new();
    let me = nix::unistd::geteuid().as_raw();
    let mut visit = |path: &Path, meta: &fs::Metadata| {
        if meta.uid() != me {
            foreign.push(path.to_path_buf());
        } else if meta.permissions().mode() & 0o077 != 0 {
            loose.push((
                path.to_path_buf(),
                meta.permissions().mode() & 0o777,
                meta.is_dir(),
            ));
        }
    };
    walk(&paths.data_dir, 0, &mut visit);
    for path in Agent::ALL.iter().filter_map(|agent| match agent.live() {
        Ok(Live::File { path, .. }) => Some(path),
        _ => None,
    }) {
        if let Ok(meta) = fs::symlink_metadata(&path)
            && meta.is_file()
        {
            visit(&path, &meta);
        }
    }
    for path in &foreign {
        report
            .add("modes", Status::Fail, format!("modes: {} belongs to another user", path.display()))
            .hint("run tokenkeeper as that user, or point TOKENKEEPER_HOME at a directory of your own");
    }
    if loose.is_empty() {
        if foreign.is_empty() {
            report.add("modes", Status::Ok, "modes: files 0600, directories 0700");
        }
        return;
    }
    for (path, mode, is_dir) in loose {
        let want = if is_dir { 0o700 } else { 0o600 };
        if fix {
            match fs::set_permissions(&path, fs::Permissions::from_mode(want)) {
                Ok(()) => {
                    report
                        .add(
                            "modes",
                            Status::Ok,
                            format!(
                                "modes: {} was {mode:o}, fixed: now {want:o}",
                                path.display()
                            ),
                        )
                        .fixed = true;
                }
                Err(err) => {
                    report.add(
                        "modes",
                        Status::Fail,
                        format!(
                            "modes: {} is {mode:o} and could not be changed: {err}",
                            path.display()
                        ),
                    );
                }
            }
        } else {
            report
                .add(
                    "modes",
                    Status::Fail,
                    format!(
                        "modes: {} is {mode:o}, readable by other users (want {want:o})",
                        path.display()
                    ),
                )
                .hint("tokenkeeper doctor --fix");
        }
    }
}

/// Visits `dir` and what is under it, not following links, a few levels deep.
fn walk(dir: &Path, depth: usize, visit: &mut impl FnMut(&Path, &fs::Metadata)) {
    let Ok(meta) = fs::symlink_metadata(dir) else {
        return;
    };
    if meta.file_type().is_symlink() {
        return;
    }
    visit(dir, &meta);
    if !meta.is_dir() || depth > 4 {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        walk(&entry.path(), depth + 1, visit);
    }
}

fn check_backends(
    paths: &Paths,
    selection: &store::Selection,
    catalog: &Catalog,
    report: &mut Report,
) -> Vec<Reachability> {
    let mut in_use: BTreeMap<&'static str, (Backend, usize)> = BTreeMap::new();
    in_use.insert(selection.backend.as_str(), (selection.backend, 0));
    for slot in &catalog.slots {
        in_use
            .entry(slot.backend.as_str())
            .or_insert((slot.backend, 0))
            .1 += 1;
    }
    let stores = Stores::new(paths);
    let checks: Vec<Reachability> = in_use
        .into_values()
        .map(|(backend, slots)| Reachability {
            backend,
            slots,
            error: stores
                .probe(backend)
                .err()
                .map(|err| (err.message().to_string(), err.hint().map(str::to_string))),
        })
        .collect();
    for r in &checks {
        let count = format!(
            "{}: {} slot{}",
            r.backend,
            r.slots,
            if r.slots == 1 { "" } else { "s" }
        );
        match &r.error {
            None => {
                report.add("reachable", Status::Ok, format!("{count}, reachable"));
            }
            Some((message, hint)) => {
                let check = report.add(
                    "reachable",
                    Status::Fail,
                    format!("{count}, NOT reachable: {message}"),
                );
                if let Some(hint) = hint {
                    check.hint(hint.clone());
                }
            }
        }
    }
    checks
}

/// Refresh answers waiting to be applied (`fix` replays them, as any command would), and
/// answers that could not be used (set aside, their slots stranded).
fn check_journal(
    paths: &Paths,
    fix: bool,
    catalog: Catalog,
    report: &mut Report,
) -> Result<Catalog> {
    let journal = Journal::new(paths);
    let pending = journal.pending().map(|p| p.len()).unwrap_or(0);
    let mut catalog = catalog;
    if pending == 0 {
        report.add(
            "journal",
            Status::Ok,
            "journal: nothing waiting to be applied",
        );
    } else if fix {
        // Opening the keeper replays the journal, under the state lock.
        let keeper = Keeper::open(paths.clone())?;
        catalog = keeper.catalog().clone();
        let left = journal.pending().map(|p| p.len()).unwrap_or(0);
        if left == 0 {
            report
                .add(
                    "journal",
                    Status::Ok,
                    format!("journal: {pending} refresh answer(s) were waiting, fixed: applied"),
                )
                .fixed = true;
        } else {
            report
                .add("journal", Status::Warn, format!("journal: {left} refresh answer(s) still waiting: the store does not take them yet"))
                .hint("check the backend above; the slots are served from the journal meanwhile");
        }
    } else {
        report
            .add("journal", Status::Warn, format!("journal: {pending} refresh answer(s) waiting to be applied (the next command applies them)"))
            .hint("tokenkeeper doctor --fix");
    }
    for path in journal.unusable() {
        report.add(
            "journal",
            Status::Fail,
            format!(
                "journal entry set aside (0600, may hold tokens): {}",
                path.display()
            ),
        );
    }
    Ok(catalog)
}

/// Claude Code's refresh lock directories: one nobody touched for over 60 s was left by a
/// process that died, and blocks Claude Code's refreshes until someone takes it over.
fn check_claude_lock(fix: bool, report: &mut Report) {
    let Ok(config_dir) = claude::config_dir() else {
        return;
    };
    let mut any = false;
    for dir in claude_lock::lock_dirs(&config_dir) {
        if !dir.is_dir() {
            continue;
        }
        any = true;
        if !claude_lock::is_stale(&dir) {
            report.add(
                "claude-lock",
                Status::Ok,
                format!(
                    "Claude Code's refresh lock {} is held now (a refresh is under way)",
                    dir.display()
                ),
            );
            continue;
        }
        if fix {
            // Checked again just before: a holder touches it every 5 s.
            let removed = claude_lock::is_stale(&dir) && fs::remove_dir(&dir).is_ok();
            if removed {
                report
                    .add(
                        "claude-lock",
                        Status::Ok,
                        format!(
                            "Claude Code's refresh lock {} was left stale, fixed: removed",
                            dir.display()
                        ),
                    )
                    .fixed = true;
                continue;
            }
        }
        report
            .add(
                "claude-lock",
                Status::Warn,
                format!(
                    "Claude Code's refresh lock {} was left stale by a process that died",
                    dir.display()
                ),
            )
            .hint("tokenkeeper doctor --fix");
    }
    if !any {
        report.add(
            "claude-lock",
            Status::Ok,
            "Claude Code's refresh lock: not held",
        );
    }
}

/// The live credential holds what tokenkeeper last wrote for the active slot — or the same
/// lineage, refreshed by Claude Code since.
fn check_live(paths: &Paths, catalog: &Catalog, report: &mut Report) {
    let managed: Vec<Agent> = Agent::ALL
        .into_iter()
        .filter(|agent| catalog.active_id(agent.name()).is_some())
        .collect();
    if managed.is_empty() {
        report.add(
            "live",
            Status::Ok,
            "live credential: no active slot, not managed by tokenkeeper",
        );
    }
    for agent in managed {
        check_live_of(paths, catalog, agent, report);
    }
}

fn check_live_of(paths: &Paths, catalog: &Catalog, agent_: Agent, report: &mut Report) {
    let agent = agent_.name();
    let Some(slot) = catalog.active_id(agent).and_then(|id| catalog.get(id)) else {
        return;
    };
    let program = agent_.program();
    let live = agent_
        .live()
        .and_then(|live| Ok((live.describe(), live.read()?)));
    let (place, current) = match live {
        Ok(found) => found,
        Err(err) => {
            report.add(
                "live",
                Status::Warn,
                format!("live credential: cannot be read: {}", err.message()),
            );
            return;
        }
    };
    let Some(current) = current else {
        report
            .add("live", Status::Warn, format!("live credential: {place} is missing ({program} is logged out); the active slot is '{}'", slot.name))
            .hint(format!("tokenkeeper use {} --agent {agent}", slot.name));
        return;
    };
    let recorded = catalog.live.get(agent).map(|r| r.sha256.as_str());
    if recorded == Some(current.fingerprint().as_str()) {
        report.add(
            "live",
            Status::Ok,
            format!("live credential: {place} holds slot '{}'", slot.name),
        );
        return;
    }
    let stored = read_stored(&Stores::new(paths), slot);
    match (&current.parsed, stored) {
        (Ok(live), Some(Ok(stored))) if live.same_lineage(&stored) => {
            report.add(
                "live",
                Status::Ok,
                format!("live credential: {place} holds slot '{}', refreshed by {program} (saved into the slot by the next command)", slot.name),
            );
        }
        // A Codex login names its account: the same one, with new tokens, is Codex's refresh.
        (Ok(live), Some(Ok(stored)))
            if live.codex_identity().and_then(|i| i.account_id).is_some()
                && live.codex_identity().map(|i| i.account_id)
                    == stored.codex_identity().map(|i| i.account_id) =>
        {
            report.add(
                "live",
                Status::Ok,
                format!("live credential: {place} holds the account of slot '{}', refreshed by {program} (saved into the slot by the next command)", slot.name),
            );
        }
        (Ok(live), Some(Ok(stored)))
            if live.refresh_token().is_none()
                && live.access_token().expose_secret() == stored.access_token().expose_secret() =>
        {
            report.add(
                "live",
                Status::Ok,
                format!(
                    "live credential: {place} holds slot '{}' (access token only)",
                    slot.name
                ),
            );
        }
        _ => {
            report
                .add(
                    "live",
                    Status::Warn,
                    format!("live credential: {place} holds another login than the active slot '{}' (logged in anew, or changed by another tool)", slot.name),
                )
                .hint(format!("keep it as a slot: tokenkeeper add --agent {agent}; or go back: tokenkeeper use {} --agent {agent}", slot.name));
        }
    }
}

/// The slot's stored credential: `None` when the store holds nothing under its key.
fn read_stored(stores: &Stores, slot: &Slot) -> Option<Result<Credential>> {
    let secret = match stores.get(slot.backend).get(&slot.secret_key()) {
        Ok(Some(secret)) => secret,
        Ok(None) => return None,
        Err(err) => return Some(Err(err)),
    };
    Some(Credential::parse(
        secret.expose_secret().as_bytes(),
        &format!("the stored credential of slot '{}'", slot.name),
    ))
}

fn check_slot(
    paths: &Paths,
    stores: &Stores,
    catalog: &Catalog,
    slot: &Slot,
    args: &Args,
    now: Timestamp,
    report: &mut Report,
) {
    let name = slot.name.as_str();
    // The lineage's state.
    if let Some(stranded) = &slot.stranded {
        report
            .add(
                "login",
                Status::Fail,
                format!(
                    "slot '{name}' is stranded: {}; the answer is kept in {}",
                    stranded.why, stranded.kept
                ),
            )
            .slot(name)
            .hint(format!(
                "log in again with `claude` (/login), then run: tokenkeeper add {name}"
            ));
    } else if let Some(code) = &slot.needs_login {
        report
            .add(
                "login",
                Status::Fail,
                format!("slot '{name}' needs a new login (the provider said {code})"),
            )
            .slot(name)
            .hint(format!(
                "log in again with `claude` (/login), then: tokenkeeper add {name}"
            ));
    } else if let Some(newer) = slot.superseded_by.as_ref().and_then(|id| catalog.get(id)) {
        report
            .add(
                "login",
                Status::Warn,
                format!("slot '{name}' is superseded: Claude Code replaced its credential while offline, the newer tokens are in '{}'; it is not refreshed until the account is confirmed", newer.name),
            )
            .slot(name)
            .hint(format!("tokenkeeper refresh {}", newer.name));
    } else if slot.handed_over.is_some() {
        report
            .add("login", Status::Warn, format!("slot '{name}' was handed over (export --with-refresh-token): not refreshed here"))
            .slot(name);
    } else {
        report
            .add("login", Status::Ok, format!("slot '{name}': logged in"))
            .slot(name);
    }

    // Expiry.
    match expiry::warning(slot, now) {
        Some(warning) => {
            let (text, hint) = warning.describe(name, now);
            let status = if warning.level == Level::Expired {
                Status::Fail
            } else {
                Status::Warn
            };
            let text = if warning.level == Level::Urgent {
                text.replacen("expires", "EXPIRES", 1)
            } else {
                text
            };
            report.add("expiry", status, text).slot(name).hint(hint);
        }
        None => {
            let text = match (slot.kind, expiry::end_of_life(slot)) {
                (Kind::LongLived, Some(at)) => format!(
                    "slot '{name}': long-lived token valid until {} ({} days)",
                    timefmt::date(at),
                    timefmt::days_remaining(at, now)
                ),
                (Kind::LongLived, None) => {
                    format!("slot '{name}': long-lived token of unknown expiry")
                }
                (Kind::Oauth, _) => match slot.expires_at {
                    Some(at) if at <= now => format!(
                        "slot '{name}': access token expired {}, renewed on next use",
                        timefmt::relative(at, now)
                    ),
                    Some(at) => format!(
                        "slot '{name}': access token expires {}, renewed before then",
                        timefmt::relative(at, now)
                    ),
                    None => format!("slot '{name}': access token of unknown expiry"),
                },
            };
            report.add("expiry", Status::Ok, text).slot(name);
        }
    }

    // The validity probe.
    if args.no_probe || slot.needs_login.is_some() || slot.stranded.is_some() {
        return;
    }
    let credential = match read_stored(stores, slot) {
        Some(credential) => credential,
        None => {
            report
                .add(
                    "stored",
                    Status::Fail,
                    format!(
                        "slot '{name}': its credential is missing from the {} store",
                        slot.backend
                    ),
                )
                .slot(name)
                .hint(format!("add it again: tokenkeeper add {name} --from stdin"));
            return;
        }
    };
    let credential = match credential {
        Ok(credential) => credential,
        Err(err) => {
            report
                .add(
                    "stored",
                    Status::Fail,
                    format!("slot '{name}': {}", err.message()),
                )
                .slot(name);
            return;
        }
    };
    if credential.kind() == Kind::Oauth && credential.expires_at().is_some_and(|at| at <= now) {
        report
            .add(
                "probe",
                Status::Ok,
                format!(
                    "slot '{name}': not probed, its access token expired (renewed on next use)"
                ),
            )
            .slot(name);
        return;
    }
    let probe = match probe::probe(
        paths,
        Agent::from_name(&slot.agent).unwrap_or_default(),
        &credential,
        args.fresh,
    ) {
        Ok(probe) => probe,
        Err(err) => {
            report
                .add(
                    "probe",
                    Status::Warn,
                    format!("slot '{name}': cannot probe: {}", err.message()),
                )
                .slot(name);
            return;
        }
    };
    let status = match probe.verdict {
        Verdict::Valid => Status::Ok,
        Verdict::Refused { .. } => Status::Fail,
        Verdict::Unknown { .. } => Status::Warn,
    };
    let check = report
        .add(
            "probe",
            status,
            format!("slot '{name}': token {}", probe.describe(now)),
        )
        .slot(name);
    if status == Status::Fail {
        check.hint(match slot.kind {
            Kind::LongLived => format!("make a new one: tokenkeeper rotate {name}"),
            Kind::Oauth => {
                format!("log in again with `claude` (/login), then: tokenkeeper add {name}")
            }
        });
    }
}
