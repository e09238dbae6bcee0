//! When to refresh, and the single-flight refresh of one lineage.
//!
//! `due` is a pure function of the token's expiry, the refresh token's age and the policy; the
//! daemon and every command share it. `ensure_fresh` refreshes a slot at most once across all
//! processes: it takes the slot's lock (and Claude Code's own lock when Claude Code uses the
//! slot), re-reads the credential under it and skips the refresh when someone else already did
//! it. The new tokens go to the write-ahead journal before any store is touched.

use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use tracing::{info, warn};

use crate::agent::Agent;

use crate::agent::provider::ProviderError;
use crate::agent::{Credential, Kind};
use crate::catalog::Slot;
use crate::deadline;
use crate::durable::failpoint;
use crate::error::{Error, Result};
use crate::journal::{Entry, Journal};
use crate::keeper::{Keeper, Settled};
use crate::lock::FileLock;
use crate::net;
use crate::paths::Paths;
use crate::store::Stores;

/// Environment variable overriding the refresh margin (e.g. `10m`, `1h`, `90s`).
pub const ENV_MARGIN: &str = "TOKENKEEPER_REFRESH_MARGIN";
/// How long to wait for Claude Code's refresh lock.
const CLAUDE_LOCK_WAIT: Duration = Duration::from_secs(30);
/// How long to wait for another machine's refresh of a slot in a shared backend.
const SHARED_LEASE_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Refresh when less than this is left of the access token.
    pub margin: SignedDuration,
    /// Refresh an idle lineage whose last refresh is older than this, so the refresh token
    /// never lapses unused.
    pub keepalive_after: SignedDuration,
    /// Refresh when less than this is left of the refresh token itself, when its expiry is known.
    pub keepalive_margin: SignedDuration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            margin: SignedDuration::from_mins(10),
            keepalive_after: SignedDuration::from_hours(5 * 24),
            keepalive_margin: SignedDuration::from_hours(2 * 24),
        }
    }
}

impl Policy {
    /// The policy for one agent's slots: some refresh themselves only once expired, so
    /// tokenkeeper refreshes theirs well before (`Agent::min_refresh_margin`).
    pub fn for_agent(self, agent: Agent) -> Self {
        Self {
            margin: self.margin.max(agent.min_refresh_margin()),
            ..self
        }
    }

    pub fn from_env() -> Result<Self> {
        let default = Self::default();
        Ok(Self {
            margin: env_duration(ENV_MARGIN, default.margin)?,
            ..default
        })
    }
}

/// A duration from the environment (`10m`, `1h`, `90s`), or `default` when unset.
pub fn env_duration(name: &str, default: SignedDuration) -> Result<SignedDuration> {
    match std::env::var(name).ok().filter(|v| !v.is_empty()) {
        Some(text) => parse_duration(&text).ok_or_else(|| {
            Error::usage(format!("{name}={text} is not a duration"))
                .with_hint("use e.g. 10m, 1h or 90s")
        }),
        None => Ok(default),
    }
}

/// `90s`, `10m`, `1h 30m`, or plain seconds.
pub fn parse_duration(text: &str) -> Option<SignedDuration> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<i64>() {
        return Some(SignedDuration::from_secs(secs));
    }
    text.parse::<SignedDuration>()
        .ok()
        .filter(|d| !d.is_negative())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Nothing to do for this long.
    No(SignedDuration),
    /// The access token expires within the margin (or has expired).
    Expiring,
    /// The lineage has been idle long enough that its refresh token could lapse.
    KeepAlive,
}

/// Whether an OAuth lineage needs a refresh at `now`.
pub fn due(
    expires_at: Option<Timestamp>,
    refresh_expires_at: Option<Timestamp>,
    last_refresh: Timestamp,
    now: Timestamp,
    policy: &Policy,
) -> Due {
    let Some(expires_at) = expires_at else {
        return Due::Expiring;
    };
    let until_expiring = expires_at.duration_since(now).saturating_sub(policy.margin);
    if !until_expiring.is_positive() {
        return Due::Expiring;
    }
    // Checked arithmetic: stored dates may be anything a hand or a bug wrote (year 9999 too).
    let idle_due = last_refresh
        .checked_add(policy.keepalive_after)
        .unwrap_or(Timestamp::MAX);
    let keepalive_at = match refresh_expires_at {
        Some(at) => at
            .checked_sub(policy.keepalive_margin)
            .unwrap_or(Timestamp::MIN)
            .min(idle_due),
        None => idle_due,
    };
    let until_keepalive = keepalive_at.duration_since(now);
    if !until_keepalive.is_positive() {
        return Due::KeepAlive;
    }
    Due::No(until_expiring.min(until_keepalive))
}

/// What `ensure_fresh` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The token was fresh enough; nothing done.
    Fresh,
    /// This process refreshed it.
    Refreshed,
    /// Another process (tokenkeeper or Claude Code) refreshed it while this one waited.
    RefreshedElsewhere,
    /// A long-lived token: it cannot be refreshed.
    NotRefreshable,
    /// The refresh failed for a passing reason; the stored token is still valid and returned.
    Deferred,
    /// The lineage was handed over (`export --with-refresh-token`): never refreshed here.
    HandedOver,
}

pub struct Fresh {
    pub slot: Slot,
    pub credential: Credential,
    pub outcome: Outcome,
}

impl Fresh {
    /// This token for handing out, unless it has already expired (there was no refresh token,
    /// or the refresh failed): the provider would only refuse it.
    pub fn unexpired(self) -> Result<Self> {
        let now = Timestamp::now();
        let Some(at) = self.credential.expires_at().filter(|at| *at <= now) else {
            return Ok(self);
        };
        Err(Error::failure(format!(
            "the access token of slot '{}' expired {} ({})",
            self.slot.name,
            crate::timefmt::relative(at, now),
            crate::timefmt::local(at)
        ))
        .with_hint(format!(
            "store a new one: claude setup-token | tokenkeeper add {} --from stdin",
            self.slot.name
        )))
    }
}

/// Makes sure the slot's access token is fresh per `policy` (always refreshes with `force`),
/// and returns the slot and its current credential.
pub fn ensure_fresh(
    paths: &Paths,
    agent: Agent,
    selector: Option<&str>,
    force: bool,
    policy: &Policy,
) -> Result<Fresh> {
    let policy = &policy.for_agent(agent);
    // 1. Look without holding anything but the state lock.
    let (slot, before, owns_live) = {
        let mut keeper = Keeper::open(paths.clone())?;
        keeper.sync_live(agent)?;
        keeper.flush_notices_to_stderr();
        let mut slot = keeper.resolve(agent, selector)?;
        let mut superseded = None;
        if slot.superseded_by.is_some() {
            match keeper.settle(&slot.id)? {
                Settled::Unconfirmed { newer } => superseded = Some(newer),
                Settled::Merged { from } => {
                    keeper.notices.push(format!(
                        "slot '{from}' held the newer tokens of slot '{}' (same account, confirmed); merged them into '{}'",
                        slot.name, slot.name
                    ));
                    keeper.flush_notices_to_stderr();
                }
                Settled::Distinct => {}
            }
            slot = keeper
                .catalog()
                .get(&slot.id)
                .cloned()
                .expect("settling keeps it");
        }
        check_login(&slot)?;
        let credential = keeper.credential(&slot)?;
        if credential.kind() == Kind::LongLived {
            return Ok(Fresh {
                slot,
                credential,
                outcome: Outcome::NotRefreshable,
            });
        }
        if slot.handed_over.is_some() {
            if force {
                return Err(handed_over_error(&slot));
            }
            return Ok(Fresh {
                slot,
                credential,
                outcome: Outcome::HandedOver,
            });
        }
        let is_due = !matches!(
            due(
                credential.expires_at(),
                credential.refresh_expires_at(),
                slot.updated_at,
                keeper.now(),
                policy
            ),
            Due::No(_)
        );
        if let Some(newer) = superseded.filter(|_| force || is_due) {
            return Err(Error::failure(format!(
                "slot '{}' is not refreshed: {} replaced its credential while the account could not be confirmed, and the newer tokens are in slot '{newer}'; refreshing with the old token could revoke them",
                slot.name,
                agent.program()
            ))
            .with_hint(format!(
                "once online, refresh the newer slot (tokenkeeper refresh {newer}); this slot is then merged with it or freed"
            )));
        }
        if !force && !is_due {
            return Ok(Fresh {
                slot,
                credential,
                outcome: Outcome::Fresh,
            });
        }
        let owns_live = keeper.owns_live(agent, &slot.id);
        (slot, credential, owns_live)
    };

    // While the token in hand is still valid, refreshing it is a favour to later commands: it
    // gets a short deadline, and when that runs out (a provider that hangs, another process
    // holding a lock) this command answers with the token it has.
    let valid = !force && before.expires_at().is_some_and(|at| at > Timestamp::now());
    let patience = if valid {
        deadline::answer_within()?
    } else {
        deadline::lock_wait()?
    };
    let deadline = Instant::now() + patience;
    let remaining = || deadline.saturating_duration_since(Instant::now());
    let defer = |why: &str| {
        warn!(slot = %slot.name, "{why}; answering with the still-valid token");
        Ok(Fresh {
            slot: slot.clone(),
            credential: before.clone(),
            outcome: Outcome::Deferred,
        })
    };

    // 2. One refresh per lineage: the slot's lock, and Claude Code's when it uses this slot.
    let slot_lock = FileLock::wait_for(
        &paths.slot_lock(&slot.id),
        &format!("refreshing '{}'", slot.name),
        patience,
    )?;
    let _slot_lock = match slot_lock {
        Ok(lock) => lock,
        Err(holder) if valid => return defer(&format!("{holder} holds its refresh lock")),
        Err(holder) => {
            return Err(Error::failure(format!(
                "gave up after {}s waiting for {holder}",
                patience.as_secs()
            ))
            .with_hint("try again once it is done; if it hangs, stop that process"));
        }
    };
    let _agent_lock = if owns_live {
        let wait = if valid { remaining() } else { CLAUDE_LOCK_WAIT };
        match agent.hold_refresh_lock(&paths.locks_dir(), wait) {
            Ok(lock) => lock,
            Err(err) if valid => return defer(err.message()),
            Err(err) => return Err(err),
        }
    } else {
        None
    };

    // 2b. A backend other machines share (OpenBao) holds a lease too: one refresh per lineage
    //     across every install that uses it. Released after the new tokens are stored (6).
    let wait = if valid {
        remaining()
    } else {
        SHARED_LEASE_WAIT
    };
    let lease = Stores::new(paths)
        .get(slot.backend)
        .lease(&slot.secret_key(), wait);
    let _shared = match lease {
        Ok(lease) => lease,
        Err(err) if valid => return defer(err.message()),
        Err(err) => return Err(err),
    };

    // 3. Re-read under the locks: someone may have refreshed while we waited.
    let (credential, live_before) = {
        let mut keeper = Keeper::open(paths.clone())?;
        keeper.sync_live(agent)?;
        keeper.flush_notices_to_stderr();
        let slot =
            keeper.catalog().get(&slot.id).cloned().ok_or_else(|| {
                Error::failure(format!("slot '{}' was removed meanwhile", slot.name))
            })?;
        check_login(&slot)?;
        let credential = keeper.credential(&slot)?;
        if !credential.same_lineage(&before) || credential.access_token() != before.access_token() {
            info!(slot = %slot.name, "already refreshed by another process");
            return Ok(Fresh {
                slot,
                credential,
                outcome: Outcome::RefreshedElsewhere,
            });
        }
        let live_before = if owns_live {
            keeper.live_fingerprint(agent)?
        } else {
            None
        };
        (credential, live_before)
    };

    // 4. Spend the refresh token.
    let refresh_token = credential
        .refresh_token()
        .expect("OAuth credentials have a refresh token");
    failpoint("refresh:before-request");
    info!(slot = %slot.name, "refreshing");
    let budget = if valid {
        remaining()
    } else {
        deadline::REFRESH_BUDGET
    };
    let request = agent.refresh(&refresh_token);
    let answered = net::block_on(async { tokio::time::timeout(budget, request).await });
    let answer = match answered.unwrap_or_else(|_| {
        Err(ProviderError::Lost(format!(
            "no answer from the provider within {}s",
            budget.as_secs_f64().ceil()
        )))
    }) {
        Ok(answer) => answer,
        Err(ProviderError::NeedsLogin(code)) => {
            let mut keeper = Keeper::open(paths.clone())?;
            keeper.mark_needs_login(&slot.id, &code)?;
            return Err(needs_login_error(&slot, &code));
        }
        Err(err) => {
            let still_valid = credential
                .expires_at()
                .is_none_or(|at| at > Timestamp::now());
            if still_valid && !force {
                warn!(slot = %slot.name, error = %err, "refresh failed; using the still-valid token");
                return Ok(Fresh {
                    slot,
                    credential,
                    outcome: Outcome::Deferred,
                });
            }
            return Err(refresh_failed(&slot.name, &err));
        }
    };

    // 5. Durable first: the journal holds the only copy of the new refresh token, as the
    //    provider sent it; it is read only once it is safe (6).
    let received_at = Timestamp::now();
    Journal::new(paths).write(&Entry::refreshed(
        agent.name(),
        &slot.id,
        &credential,
        answer,
        live_before,
        received_at,
    ))?;
    failpoint("refresh:after-journal");

    // 6. Opening the keeper reads the answer and applies it to the store, the live file and
    //    the catalog; an answer it cannot use strands the slot, a store that fails keeps it.
    let keeper = Keeper::open(paths.clone())?;
    let slot = keeper.catalog().get(&slot.id).cloned().unwrap_or(slot);
    check_login(&slot)?;
    if let Some(why) = keeper.unapplied(&slot.id) {
        return Err(Error::failure(format!(
            "slot '{}' was refreshed, but its store did not take the new tokens: {why}",
            slot.name
        ))
        .with_hint("they are safe in tokenkeeper's journal, and used from there; the next command stores them once the store works"));
    }
    let credential = keeper.credential(&slot)?;
    Ok(Fresh {
        slot,
        credential,
        outcome: Outcome::Refreshed,
    })
}

/// How new a token must be before a 401 for it is no reason to refresh: the refusal is then
/// about the request (a path that always answers 401), and refreshing would only rotate the
/// lineage again and again.
const UNAUTHORIZED_GRACE: SignedDuration = SignedDuration::from_mins(1);

/// After the provider refused `rejected` (a 401): the token to use instead. The stored one when
/// another process already replaced `rejected`; a new one from a refresh when `rejected` is
/// still current and did not come from a refresh within the last minute (so across all
/// processes at most one such refresh per lineage per minute); else `rejected` itself, and the
/// refusal stands.
pub fn after_unauthorized(
    paths: &Paths,
    agent: Agent,
    selector: Option<&str>,
    policy: &Policy,
    rejected: &crate::secret::Secret,
) -> Result<Fresh> {
    let (slot, credential) = {
        let mut keeper = Keeper::open(paths.clone())?;
        let slot = keeper.resolve(agent, selector)?;
        let credential = keeper.credential(&slot)?;
        (slot, credential)
    };
    if credential.access_token() != *rejected {
        return Ok(Fresh {
            slot,
            credential,
            outcome: Outcome::RefreshedElsewhere,
        });
    }
    let now = Timestamp::now();
    if slot.refreshed_at.is_some_and(|at| {
        at.checked_add(UNAUTHORIZED_GRACE)
            .is_ok_and(|until| now < until)
    }) {
        info!(slot = %slot.name, "the upstream refused a token refreshed less than a minute ago; not refreshing again");
        return Ok(Fresh {
            slot,
            credential,
            outcome: Outcome::Fresh,
        });
    }
    // Under the slot's lock, `ensure_fresh` finds a refresh another process made meanwhile
    // and spends nothing.
    ensure_fresh(paths, agent, Some(&slot.name), true, policy)
}

/// The error for a refresh that failed for a passing reason, saying plainly whether the
/// provider may have spent the token.
fn refresh_failed(name: &str, err: &ProviderError) -> Error {
    if err.maybe_acted_on() {
        Error::failure(format!(
            "cannot refresh slot '{name}': {err}; the answer was lost after the request reached the provider, which may have rotated the refresh token"
        ))
        .with_hint(format!(
            "try again shortly (the retry is the only way to keep the lineage); if the provider then refuses the token, log in again and run: tokenkeeper add {name}"
        ))
    } else {
        Error::failure(format!("cannot refresh slot '{name}': {err}")).with_hint(
            "the request never reached the provider, so the token is unspent; try again shortly",
        )
    }
}

fn handed_over_error(slot: &Slot) -> Error {
    Error::failure(format!(
        "slot '{}' was handed over with `export --with-refresh-token`{}: the copy given out refreshes it now, and a refresh here would revoke that copy",
        slot.name,
        slot.handed_over
            .map(|at| format!(" on {}", crate::timefmt::local(at)))
            .unwrap_or_default()
    ))
    .with_hint(format!(
        "to take it back, add that copy's newest credential: tokenkeeper add {} --from file PATH",
        slot.name
    ))
}

fn check_login(slot: &Slot) -> Result<()> {
    if let Some(stranded) = &slot.stranded {
        return Err(Error::failure(format!(
            "slot '{}' cannot be refreshed: the answer to its last refresh could not be used ({}); it is kept in {}",
            slot.name, stranded.why, stranded.kept
        ))
        .with_hint(login_again(slot)));
    }
    match &slot.needs_login {
        Some(code) => Err(needs_login_error(slot, code)),
        None => Ok(()),
    }
}

fn needs_login_error(slot: &Slot, code: &str) -> Error {
    let name = &slot.name;
    Error::failure(format!(
        "slot '{name}' needs a new login: the provider refused its refresh token ({code})"
    ))
    .with_hint(login_again(slot))
}

/// What to do about a dead login, for the slot's agent.
fn login_again(slot: &Slot) -> String {
    Agent::from_name(&slot.agent)
        .unwrap_or_default()
        .login_again(&slot.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn due_when_inside_the_margin() {
        let p = Policy::default();
        assert_eq!(
            due(Some(t(3600)), None, t(0), t(0), &p),
            Due::No(SignedDuration::from_mins(50))
        );
        assert_eq!(due(Some(t(600)), None, t(0), t(0), &p), Due::Expiring);
        assert_eq!(due(Some(t(-5)), None, t(0), t(0), &p), Due::Expiring);
        assert_eq!(due(None, None, t(0), t(0), &p), Due::Expiring);
    }

    #[test]
    fn idle_lineages_are_kept_alive() {
        let p = Policy::default();
        let day = 86_400;
        // Fresh access token, but the last refresh was 6 days ago.
        assert_eq!(
            due(Some(t(3600)), None, t(-6 * day), t(0), &p),
            Due::KeepAlive
        );
        // Refresh token expiring in a day: keep alive even after a recent refresh.
        assert_eq!(
            due(Some(t(7 * 3600)), Some(t(day)), t(-3600), t(0), &p),
            Due::KeepAlive
        );
        // Next keep-alive is what bounds the wait when it comes before the expiry margin.
        assert_eq!(
            due(Some(t(8 * 3600)), None, t(-5 * day + 60), t(0), &p),
            Due::No(SignedDuration::from_secs(60))
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90"), Some(SignedDuration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Some(SignedDuration::from_mins(10)));
        assert_eq!(
            parse_duration("1h 30m"),
            Some(SignedDuration::from_mins(90))
        );
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn dates_at_the_ends_of_time_never_panic() {
        let p = Policy {
            margin: SignedDuration::MAX,
            keepalive_after: SignedDuration::MAX,
            keepalive_margin: SignedDuration::MAX,
        };
        for at in [Timestamp::MIN, Timestamp::MAX, t(0)] {
            for policy in [&p, &Policy::default()] {
                let _ = due(Some(at), Some(at), at, t(0), policy);
                let _ = due(Some(t(0)), Some(at), at, at, policy);
            }
        }
        let far = Timestamp::MAX;
        assert!(matches!(
            due(Some(far), None, far, t(0), &Policy::default()),
            Due::No(_)
        ));
    }
}
