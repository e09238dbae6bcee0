//! Where the proxy's real token comes from: a fixed one read at start-up, or a slot kept fresh
//! through the same lifecycle as every other command (one refresh per lineage, across processes).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use jiff::Timestamp;
use tokio::sync::Mutex;
use tracing::info;

use super::pool::SlotPool;
use super::quota::QuotaWatch;
use crate::agent::Agent;
use crate::catalog::Slot;
use crate::error::{Error, Result};
use crate::paths::Paths;
use crate::refresh::{self, Outcome, Policy};
use crate::secret::Secret;

/// How often a slot-backed proxy checks whether another process changed the stored token.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// How long to go on with a token whose refresh failed before trying again.
const RETRY_RENEW_AFTER: jiff::SignedDuration = jiff::SignedDuration::from_secs(30);

pub enum TokenSource {
    Fixed(Secret),
    Slot(Box<SlotTokens>),
    /// Several slots of one agent, chosen per request.
    Pool(Box<SlotPool>),
}

impl TokenSource {
    /// Takes note of the quota an answer's headers report: a slot's, or the pool member's
    /// (`member`) that answered.
    pub fn observe(&self, member: usize, headers: &http::HeaderMap) {
        match self {
            Self::Fixed(_) => {}
            Self::Slot(slot) => slot.observe(headers),
            Self::Pool(pool) => pool.observe(member, headers),
        }
    }
}

pub struct SlotTokens {
    paths: Paths,
    agent: Agent,
    selector: Option<String>,
    policy: Policy,
    cached: Mutex<Cached>,
    quota: QuotaWatch,
}

struct Cached {
    token: Secret,
    /// When the lifecycle wants this token refreshed (its expiry less the margin).
    renew_at: Option<Timestamp>,
    /// The catalog as last seen: every stored change of a token rewrites it.
    stamp: Option<(u64, SystemTime)>,
    looked: Instant,
}

impl SlotTokens {
    /// Opens the slot (`None`: the agent's active one, pinned by name from here on) and makes
    /// sure its token is usable before the proxy starts.
    pub fn open(paths: Paths, agent: Agent, selector: Option<String>) -> Result<Self> {
        let policy = Policy::from_env()?;
        let (cached, slot) = load(&paths, agent, selector.as_deref(), &policy, false)?;
        Ok(Self {
            quota: QuotaWatch::start(paths.clone(), agent, slot.id)?,
            paths,
            agent,
            selector: Some(slot.name),
            policy,
            cached: Mutex::new(cached),
        })
    }

    /// The slot's name.
    pub fn name(&self) -> &str {
        self.selector.as_deref().unwrap_or_default()
    }

    /// Takes note of the quota an answer's headers report.
    pub fn observe(&self, headers: &http::HeaderMap) {
        self.quota.observe(headers);
    }

    /// The token to send upstream now.
    pub(super) async fn current(&self) -> Result<Secret> {
        let mut cached = self.cached.lock().await;
        let expiring = cached.renew_at.is_some_and(|at| Timestamp::now() >= at);
        let changed = cached.looked.elapsed() >= LOOK_EVERY && {
            cached.looked = Instant::now();
            stamp(&self.paths.catalog_file()) != cached.stamp
        };
        if expiring || changed {
            *cached = self.load(false).await?.0;
            // A refresh that could not happen (provider down, a long-lived token) is not tried
            // again on every request.
            if cached.renew_at.is_some_and(|at| Timestamp::now() >= at) {
                cached.renew_at = Some(Timestamp::now() + RETRY_RENEW_AFTER);
            }
        }
        Ok(cached.token.clone())
    }

    /// A token to use instead of `rejected`, which the upstream refused. Equal to `rejected`
    /// when no other can be had.
    pub(super) async fn renew(&self, rejected: &Secret) -> Result<Secret> {
        let mut cached = self.cached.lock().await;
        if cached.token != *rejected {
            // Another request already renewed it.
            return Ok(cached.token.clone());
        }
        // Another process (the daemon, Claude Code) may have refreshed, which retires the
        // token we sent; then the stored one is the answer and no refresh token is spent. A
        // token refreshed within the last minute is not refreshed again: the 401 stands.
        info!(slot = %self.name(), "upstream refused the token");
        let (paths, agent, selector, policy, rejected) = (
            self.paths.clone(),
            self.agent,
            self.selector.clone(),
            self.policy,
            rejected.clone(),
        );
        let fresh = tokio::task::spawn_blocking(move || {
            refresh::after_unauthorized(&paths, agent, selector.as_deref(), &policy, &rejected)
        })
        .await
        .map_err(|err| Error::failure(format!("token lookup stopped: {err}")))??;
        *cached = cached_from(&fresh, &self.paths, &self.policy);
        Ok(cached.token.clone())
    }

    async fn load(&self, force: bool) -> Result<(Cached, Slot)> {
        let (paths, agent, selector, policy) = (
            self.paths.clone(),
            self.agent,
            self.selector.clone(),
            self.policy,
        );
        tokio::task::spawn_blocking(move || {
            load(&paths, agent, selector.as_deref(), &policy, force)
        })
        .await
        .map_err(|err| Error::failure(format!("token lookup stopped: {err}")))?
    }
}

/// The slot's current token through the lifecycle (refreshing when due, or with `force`), and
/// the slot.
fn load(
    paths: &Paths,
    agent: Agent,
    selector: Option<&str>,
    policy: &Policy,
    force: bool,
) -> Result<(Cached, Slot)> {
    let fresh = refresh::ensure_fresh(paths, agent, selector, force, policy)?;
    let cached = cached_from(&fresh, paths, policy);
    Ok((cached, fresh.slot))
}

fn cached_from(fresh: &refresh::Fresh, paths: &Paths, policy: &Policy) -> Cached {
    if fresh.outcome == Outcome::Refreshed {
        info!(slot = %fresh.slot.name, "refreshed");
    }
    Cached {
        token: fresh.credential.access_token(),
        renew_at: fresh
            .credential
            .expires_at()
            .and_then(|at| at.checked_sub(policy.margin).ok()),
        stamp: stamp(&paths.catalog_file()),
        looked: Instant::now(),
    }
}

fn stamp(path: &Path) -> Option<(u64, SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.ino(), meta.modified().ok()?))
}
