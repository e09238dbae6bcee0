//! Reading usage for many slots at once: a few worker threads, each taking the next slot,
//! refreshing it when due (through the one-refresh-per-lineage path) and asking the provider.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::Snapshot;
use crate::agent::Agent;
use crate::agent::Credential;
use crate::agent::provider::{ProviderError, Retry};
use crate::catalog::Slot;
use crate::error::{Error, Result};
use crate::net;
use crate::paths::Paths;
use crate::refresh::{self, Policy};

/// The most one slot's usage reading may take, retries included: a provider that accepts
/// and never answers must not hold `usage` for minutes.
const SLOT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `list` waits for a snapshot before showing the last one.
const QUICK_TIMEOUT: Duration = Duration::from_secs(3);

/// Whether a slot's usage can be read at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Eligibility {
    Yes,
    /// A long-lived setup token: scope `user:inference` only, so usage answers 403.
    SetupToken,
    NeedsLogin,
}

pub fn eligibility(slot: &Slot, credential: &Credential) -> Eligibility {
    let agent = Agent::from_name(&slot.agent).unwrap_or_default();
    if slot.needs_login.is_some() {
        Eligibility::NeedsLogin
    } else if !agent.usage_readable(credential) {
        Eligibility::SetupToken
    } else {
        Eligibility::Yes
    }
}

/// What reading one slot's usage came to.
#[derive(Debug)]
pub enum SlotUsage {
    Snapshot(Snapshot),
    /// Setup tokens cannot read usage; not a failure.
    Unavailable,
    Failed(Error),
}

/// Reads usage of the named slots with at most `jobs` requests in flight, refreshing tokens
/// that are due and retrying once after a refresh when the provider refuses the access token.
/// `done` is called after each slot, for progress.
pub fn fetch_many(
    paths: &Paths,
    agent: Agent,
    names: &[String],
    policy: &Policy,
    jobs: usize,
    done: impl Fn() + Sync,
) -> Vec<SlotUsage> {
    parallel_map(names, jobs, |name| {
        let usage = usage_of(paths, agent, name, policy);
        done();
        usage
    })
}

/// Reads usage with the stored access tokens only: one quick attempt each, no refresh. For
/// `list`, which must stay fast and never spend a refresh token.
pub fn fetch_quick(logins: &[(Agent, Credential)], jobs: usize) -> Vec<Option<Snapshot>> {
    parallel_map(logins, jobs, |(agent, credential)| {
        let request = agent.read_usage(credential, Retry::Never);
        match net::block_on(async { tokio::time::timeout(QUICK_TIMEOUT, request).await }) {
            Ok(Ok(snapshot)) => Some(snapshot),
            Ok(Err(err)) => {
                tracing::info!(error = %err, "could not read usage");
                None
            }
            Err(_) => {
                tracing::info!("usage request timed out");
                None
            }
        }
    })
}

fn usage_of(paths: &Paths, agent: Agent, name: &str, policy: &Policy) -> SlotUsage {
    match try_usage_of(paths, agent, name, policy) {
        Ok(usage) => usage,
        Err(err) => SlotUsage::Failed(err),
    }
}

fn try_usage_of(paths: &Paths, agent: Agent, name: &str, policy: &Policy) -> Result<SlotUsage> {
    let fresh = refresh::ensure_fresh(paths, agent, Some(name), false, policy)?;
    if eligibility(&fresh.slot, &fresh.credential) == Eligibility::SetupToken {
        return Ok(SlotUsage::Unavailable);
    }
    let ask = |credential: &Credential| {
        let request = agent.read_usage(credential, Retry::Backoff);
        net::block_on(async { tokio::time::timeout(SLOT_TIMEOUT, request).await }).unwrap_or_else(
            |_| {
                Err(ProviderError::Lost(format!(
                    "no answer within {}s",
                    SLOT_TIMEOUT.as_secs()
                )))
            },
        )
    };
    let value = match ask(&fresh.credential) {
        // Expired or revoked under us: one refresh, one more try.
        Err(ProviderError::Unauthorized(_)) => {
            tracing::info!(slot = %name, "usage refused the access token; refreshing once");
            let rejected = fresh.credential.access_token();
            let fresh = refresh::after_unauthorized(paths, agent, Some(name), policy, &rejected)?;
            ask(&fresh.credential)
        }
        other => other,
    }
    .map_err(|err| Error::failure(format!("cannot read the usage of slot '{name}': {err}")))?;
    Ok(SlotUsage::Snapshot(value))
}

/// `items.map(work)` on up to `jobs` threads, results in input order.
fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    work: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new(items.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, items.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let result = work(item);
                    results.lock().expect("no worker panics holding it")[i] = Some(result);
                }
            });
        }
    });
    results
        .into_inner()
        .expect("no worker panicked")
        .into_iter()
        .map(|r| r.expect("every item was worked on"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_map_keeps_order_and_bounds_threads() {
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let items: Vec<usize> = (0..40).collect();
        let out = parallel_map(&items, 4, |i| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(2));
            running.fetch_sub(1, Ordering::SeqCst);
            i * 2
        });
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        assert!(peak.load(Ordering::SeqCst) <= 4);
        assert!(parallel_map(&Vec::<u8>::new(), 4, |_| 0).is_empty());
    }
}
