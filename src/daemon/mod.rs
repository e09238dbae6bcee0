//! The daemon: keeps every slot alive without anyone asking.
//!
//! Each pass refreshes the slots that are due (expiring within the margin, or idle so long their
//! refresh token could lapse), through the same one-refresh-per-lineage path every command
//! uses, and every `usage_every` it takes a usage reading of each slot for `list`. A slot that
//! fails is retried later with exponential backoff while the others carry on. One daemon runs
//! per user: a second one finds the lock taken and says which process holds it. SIGTERM or
//! SIGINT stops it between two slots, so a refresh in progress always finishes its writes.

pub mod alerts;
pub mod notify;
pub mod record;
pub mod unit;

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tracing::{debug, info, warn};

use crate::agent::Agent;
use crate::agent::Kind;
use crate::catalog::{Catalog, Slot};
use crate::error::{Error, Result};
use crate::keeper::Keeper;
use crate::lock::FileLock;
use crate::paths::Paths;
use crate::refresh::{self, Due, Outcome, Policy};
use crate::store::{Backend, Stores};
use crate::usage::{self, SlotUsage};
use record::PassRecord;

/// First retry delay after a failure; doubles per consecutive failure up to `BACKOFF_MAX`.
const BACKOFF_FIRST: Duration = Duration::from_secs(30);
const BACKOFF_MAX: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone)]
pub struct Options {
    pub agents: Vec<Agent>,
    /// Time between passes.
    pub interval: Duration,
    /// Time between usage readings of a slot; `None` never reads usage.
    pub usage_every: Option<Duration>,
    pub policy: Policy,
    /// Concurrent usage requests.
    pub jobs: usize,
    /// Where events (a login needed, a token expiring, quota high or back) go.
    pub notifier: notify::Notifier,
}

/// What one pass did, for `--once` and the logs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pass {
    pub refreshed: Vec<String>,
    pub failed: Vec<(String, String)>,
    pub usage_read: usize,
}

/// Per-slot memory between passes.
#[derive(Debug, Default)]
struct SlotState {
    failures: u32,
    retry_at: Option<Instant>,
    usage_at: Option<Instant>,
    warned_login: bool,
}

pub struct Daemon {
    paths: Paths,
    options: Options,
    slots: HashMap<String, SlotState>,
    alerts: alerts::Alerts,
    _instance: FileLock,
}

/// The pid of the running daemon, if one runs (it holds the daemon lock).
pub fn running_pid(paths: &Paths) -> Result<Option<u32>> {
    let path = paths.data_dir.join("daemon.lock");
    if !path.exists() {
        return Ok(None);
    }
    if FileLock::try_acquire(&path)?.is_some() {
        return Ok(None);
    }
    let holder = crate::perms::read_own(&path).unwrap_or_default();
    Ok(String::from_utf8_lossy(&holder)
        .split_whitespace()
        .next()
        .and_then(|pid| pid.parse().ok()))
}

impl Daemon {
    /// Takes the one-per-user daemon lock, or explains who holds it.
    pub fn start(paths: Paths, options: Options) -> Result<Self> {
        let path = paths.data_dir.join("daemon.lock");
        let Some(mut instance) = FileLock::try_acquire(&path)? else {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let pid = holder.trim();
            return Err(Error::failure(match pid {
                "" => "another tokenkeeper daemon is running".to_string(),
                pid => format!("another tokenkeeper daemon is running (pid {pid})"),
            })
            .with_hint("stop it first, or use `tokenkeeper refresh --all` for a one-off pass"));
        };
        instance.note(&std::process::id().to_string())?;
        Ok(Self {
            alerts: alerts::Alerts::load(&paths),
            paths,
            options,
            slots: HashMap::new(),
            _instance: instance,
        })
    }

    /// Runs passes until `stop` receives (or its sender is dropped).
    pub fn run(&mut self, stop: &Receiver<()>) -> Result<()> {
        info!(
            interval_secs = self.options.interval.as_secs(),
            "daemon started"
        );
        loop {
            let pass = self.pass(|| stop.try_recv().is_ok())?;
            if pass.stopped {
                break;
            }
            match stop.recv_timeout(self.options.interval) {
                Err(RecvTimeoutError::Timeout) => continue,
                Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        info!("daemon stopped");
        Ok(())
    }

    /// One pass over every slot.
    pub fn run_once(&mut self) -> Result<Pass> {
        Ok(self.pass(|| false)?.pass)
    }

    fn pass(&mut self, stopping: impl Fn() -> bool) -> Result<PassResult> {
        let mut result = PassResult::default();
        for agent in self.options.agents.clone() {
            let slots = self.slots_of(agent)?;
            self.check_backends(&slots, &mut result.pass);
            for slot in &slots {
                if stopping() {
                    result.stopped = true;
                    return Ok(result);
                }
                self.refresh_if_due(agent, slot, &mut result.pass);
            }
            if stopping() {
                result.stopped = true;
                return Ok(result);
            }
            self.read_usage(agent, &slots, &mut result.pass)?;
        }
        debug!(
            refreshed = result.pass.refreshed.len(),
            failed = result.pass.failed.len(),
            "pass done"
        );
        self.record(&result.pass);
        self.raise_events();
        Ok(result)
    }

    /// Tells of what changed since the last pass (see `alerts`).
    fn raise_events(&mut self) {
        let catalog = match Catalog::load(&self.paths.catalog_file()) {
            Ok(catalog) => catalog,
            Err(err) => return warn!(error = %err.message(), "cannot look for events"),
        };
        let agents: Vec<&str> = self.options.agents.iter().map(|a| a.name()).collect();
        let mut catalog = catalog;
        catalog
            .slots
            .retain(|slot| agents.contains(&slot.agent.as_str()));
        for event in self.alerts.pass(&catalog, Timestamp::now()) {
            self.options.notifier.deliver(&event);
        }
    }

    /// Leaves what this pass did for `daemon status`. Best effort: a record that cannot be
    /// written must not stop the refreshing.
    fn record(&self, pass: &Pass) {
        let now = Timestamp::now();
        let next_due = Catalog::load(&self.paths.catalog_file())
            .ok()
            .and_then(|catalog| {
                catalog
                    .slots
                    .iter()
                    .filter(|s| s.kind == Kind::Oauth && s.needs_login.is_none())
                    .filter(|s| s.handed_over.is_none() && s.superseded_by.is_none())
                    .map(|s| {
                        let wait = match refresh::due(
                            s.expires_at,
                            s.refresh_expires_at,
                            s.updated_at,
                            now,
                            &self
                                .options
                                .policy
                                .for_agent(Agent::from_name(&s.agent).unwrap_or_default()),
                        ) {
                            Due::No(wait) => wait,
                            _ => jiff::SignedDuration::ZERO,
                        };
                        (
                            s.name.clone(),
                            now.checked_add(wait).unwrap_or(Timestamp::MAX),
                        )
                    })
                    .min_by_key(|(_, at)| *at)
            });
        let record = PassRecord {
            pid: std::process::id(),
            at: now,
            refreshed: pass.refreshed.clone(),
            failed: pass.failed.clone(),
            next_due,
        };
        if let Err(err) = record.save(&record::path(&self.paths)) {
            warn!(error = %err.message(), "cannot record the pass for `daemon status`");
        }
    }

    /// Asks every backend the slots live in whether it can be reached, so a daemon that
    /// cannot reach one says so at once, not only when a slot there is next due.
    fn check_backends(&mut self, slots: &[Slot], pass: &mut Pass) {
        let stores = Stores::new(&self.paths);
        let mut backends: Vec<Backend> = slots.iter().map(|slot| slot.backend).collect();
        backends.sort_by_key(|b| b.as_str());
        backends.dedup();
        for backend in backends {
            if let Err(err) = stores.probe(backend) {
                warn!(backend = %backend, error = %err.message(), "a backend cannot be reached");
                pass.failed
                    .push((format!("{backend} backend"), err.message().to_string()));
            }
        }
    }

    fn slots_of(&mut self, agent: Agent) -> Result<Vec<Slot>> {
        let mut keeper = Keeper::open(self.paths.clone())?;
        keeper.sync_live(agent)?;
        // Slots another install added to a shared store are kept alive here too (one refresh
        // per lineage across installs still holds: the store's lease).
        if let Err(err) = keeper.sync_shared() {
            warn!(error = %err.message(), "cannot read the shared slot records; going on with the slots known here");
        }
        for notice in std::mem::take(&mut keeper.notices) {
            info!("{notice}");
        }
        let slots: Vec<Slot> = keeper.catalog().slots_of(agent.name()).cloned().collect();
        // Forget the back-off of removed slots only: other agents' slots keep theirs.
        let catalog = keeper.catalog();
        self.slots.retain(|id, _| catalog.get(id).is_some());
        Ok(slots)
    }

    fn refresh_if_due(&mut self, agent: Agent, slot: &Slot, pass: &mut Pass) {
        let state = self.slots.entry(slot.id.clone()).or_default();
        if slot.kind == Kind::LongLived || slot.handed_over.is_some() {
            return;
        }
        if let Some(code) = &slot.needs_login {
            if !state.warned_login {
                warn!(slot = %slot.name, code = %code, "slot needs a new login; skipping it");
                state.warned_login = true;
            }
            return;
        }
        state.warned_login = false;
        if state.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        let now = Timestamp::now();
        let policy = &self.options.policy.for_agent(agent);
        let why = match refresh::due(
            slot.expires_at,
            slot.refresh_expires_at,
            slot.updated_at,
            now,
            policy,
        ) {
            Due::No(_) => return,
            Due::Expiring => "expiring",
            Due::KeepAlive => "keep-alive",
        };
        info!(slot = %slot.name, reason = why, "slot is due");
        match refresh::ensure_fresh(&self.paths, agent, Some(&slot.name), false, policy) {
            Ok(fresh) if fresh.outcome == Outcome::Deferred => {
                self.failed(
                    slot,
                    "the provider is unreachable; the token is still valid",
                    pass,
                );
            }
            Ok(fresh) => {
                let state = self.slots.entry(slot.id.clone()).or_default();
                state.failures = 0;
                state.retry_at = None;
                if matches!(
                    fresh.outcome,
                    Outcome::Refreshed | Outcome::RefreshedElsewhere
                ) {
                    pass.refreshed.push(slot.name.clone());
                }
            }
            Err(err) => self.failed(slot, err.message(), pass),
        }
    }

    fn failed(&mut self, slot: &Slot, why: &str, pass: &mut Pass) {
        let state = self.slots.entry(slot.id.clone()).or_default();
        state.failures += 1;
        let wait = backoff(state.failures);
        state.retry_at = Some(Instant::now() + wait);
        warn!(slot = %slot.name, error = %why, retry_in_secs = wait.as_secs(), "refresh failed");
        pass.failed.push((slot.name.clone(), why.to_string()));
    }

    fn read_usage(&mut self, agent: Agent, slots: &[Slot], pass: &mut Pass) -> Result<()> {
        let Some(every) = self.options.usage_every else {
            return Ok(());
        };
        let now = Instant::now();
        let due: Vec<&Slot> = slots
            .iter()
            .filter(|slot| slot.kind == Kind::Oauth && slot.needs_login.is_none())
            .filter(|slot| {
                let state = self.slots.entry(slot.id.clone()).or_default();
                state.usage_at.is_none_or(|at| now >= at + every)
                    && state.retry_at.is_none_or(|at| now >= at)
            })
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = due.iter().map(|s| s.name.clone()).collect();
        let results = usage::fetch_many(
            &self.paths,
            agent,
            &names,
            &self.options.policy,
            self.options.jobs,
            || {},
        );
        let mut readings = Vec::new();
        for (slot, result) in due.iter().zip(results) {
            let state = self.slots.entry(slot.id.clone()).or_default();
            state.usage_at = Some(now);
            match result {
                SlotUsage::Snapshot(snapshot) => readings.push((slot.id.clone(), Some(snapshot))),
                SlotUsage::Unavailable => {}
                SlotUsage::Failed(err) => {
                    warn!(slot = %slot.name, error = %err.message(), "cannot read usage");
                }
            }
        }
        pass.usage_read += readings.len();
        Keeper::open(self.paths.clone())?.record_usage(readings)
    }
}

#[derive(Debug, Default)]
struct PassResult {
    pass: Pass,
    stopped: bool,
}

/// Delay before retrying a slot after `failures` consecutive failures.
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (BACKOFF_FIRST * 2u32.pow(doublings)).min(BACKOFF_MAX)
}

/// A channel that receives once SIGTERM or SIGINT arrives. From then on those signals no longer
/// kill the process: the daemon decides when to stop.
pub fn stop_on_signals() -> Result<Receiver<()>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .map_err(|err| Error::failure(format!("cannot handle signals: {err}")))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for signal in signals.forever() {
            info!(signal, "stopping after the current step");
            if tx.send(()).is_err() {
                break;
            }
        }
    });
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_half_an_hour() {
        assert_eq!(backoff(1), Duration::from_secs(30));
        assert_eq!(backoff(2), Duration::from_secs(60));
        assert_eq!(backoff(3), Duration::from_secs(120));
        assert_eq!(backoff(7), Duration::from_secs(1800));
        assert_eq!(backoff(1000), Duration::from_secs(1800));
    }
}
