//! The validity probe: does the provider still accept a slot's token? Asked in a way that costs
//! no quota — the profile endpoint for a full-scope token, a token count of a one-character
//! prompt for an inference-only (setup) token — so a token revoked or rotated elsewhere is
//! found before an agent starts and meets a 401 inside its session.
//!
//! Definite answers are cached in `probe.json` (0600, in the data directory) for
//! `TOKENKEEPER_PROBE_TTL` (default 10 minutes), keyed by a SHA-256 of the token: a new token is
//! probed anew, and the file names no token.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::agent::provider::ProviderError;
use crate::agent::{Agent, Credential};
use crate::durable;
use crate::error::Result;
use crate::net;
use crate::paths::Paths;
use crate::secret::Secret;

pub const ENV_PROBE_TTL: &str = "TOKENKEEPER_PROBE_TTL";
const DEFAULT_TTL: SignedDuration = SignedDuration::from_mins(10);
/// Entries older than this are dropped when the cache is written.
const FORGET_AFTER: SignedDuration = SignedDuration::from_hours(24);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    /// The provider accepted the token.
    Valid,
    /// The provider refused it (HTTP 401 or 403): it is expired, revoked or replaced.
    Refused { status: u16 },
    /// No answer could be had (offline, provider trouble): nothing is known.
    Unknown { why: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    #[serde(flatten)]
    pub verdict: Verdict,
    /// `profile` or `count-tokens`.
    pub how: String,
    pub checked_at: Timestamp,
    /// True when the answer came from the cache.
    #[serde(default, skip_serializing)]
    pub cached: bool,
}

impl Probe {
    /// One phrase for a check line: `accepted by the provider (profile, 2m ago)`.
    pub fn describe(&self, now: Timestamp) -> String {
        let when = if self.cached {
            format!(
                ", cached {}",
                crate::timefmt::relative(self.checked_at, now)
            )
        } else {
            String::new()
        };
        match &self.verdict {
            Verdict::Valid => format!("accepted by the provider ({}{when})", self.how),
            Verdict::Refused { status: 403 } => format!(
                "REFUSED by the provider: HTTP 403, the token was revoked ({}{when})",
                self.how
            ),
            Verdict::Refused { status } => format!(
                "REFUSED by the provider: HTTP {status}, the token is expired, revoked or replaced ({}{when})",
                self.how
            ),
            Verdict::Unknown { why } => format!("could not be probed: {why}"),
        }
    }
}

/// How long a definite answer is believed: `TOKENKEEPER_PROBE_TTL` (`0` never caches).
pub fn ttl() -> Result<SignedDuration> {
    crate::refresh::env_duration(ENV_PROBE_TTL, DEFAULT_TTL)
}

/// Probes `credential`'s access token, answering from the cache when a definite answer is
/// younger than the TTL (unless `fresh`).
pub fn probe(paths: &Paths, agent: Agent, credential: &Credential, fresh: bool) -> Result<Probe> {
    let token = credential.access_token();
    let key = cache_key(&token);
    let now = Timestamp::now();
    let ttl = ttl()?;
    let file = cache_file(paths);
    let mut cache = read_cache(&file);
    if !fresh
        && let Some(hit) = cache.get(&key)
        && ttl > SignedDuration::ZERO
        && now.duration_since(hit.checked_at) < ttl
        && hit.checked_at <= now
    {
        let mut hit = hit.clone();
        hit.cached = true;
        return Ok(hit);
    }
    let (how, answer) = ask(agent, credential);
    let verdict = match answer {
        Ok(()) => Verdict::Valid,
        Err(ProviderError::Unauthorized(status)) => Verdict::Refused { status },
        Err(other) => Verdict::Unknown {
            why: other.to_string(),
        },
    };
    let probe = Probe {
        verdict,
        how: how.to_string(),
        checked_at: now,
        cached: false,
    };
    if !matches!(probe.verdict, Verdict::Unknown { .. }) {
        cache.retain(|_, p| now.duration_since(p.checked_at) < FORGET_AFTER);
        cache.insert(key, probe.clone());
        // A cache that cannot be written only costs a probe next time.
        if let Ok(bytes) = serde_json::to_vec_pretty(&cache) {
            let _ = durable::write_atomic(&file, &bytes);
        }
    }
    Ok(probe)
}

/// Forgets every cached answer (after a token was replaced, say).
pub fn forget(paths: &Paths) -> Result<()> {
    durable::remove(&cache_file(paths)).map(|_| ())
}

fn ask(
    agent: Agent,
    credential: &Credential,
) -> (&'static str, std::result::Result<(), ProviderError>) {
    let within = crate::deadline::answer_within().unwrap_or(Duration::from_secs(5));
    net::block_on(async {
        let check = agent.check_token(credential);
        match tokio::time::timeout(within, check).await {
            Ok(answer) => answer,
            Err(_) => (
                "timeout",
                Err(ProviderError::Transient(
                    "the provider did not answer in time".into(),
                )),
            ),
        }
    })
}

fn cache_file(paths: &Paths) -> PathBuf {
    paths.data_dir.join("probe.json")
}

fn read_cache(file: &std::path::Path) -> BTreeMap<String, Probe> {
    crate::perms::read_own(file)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// The cache's key for a token: half of its SHA-256, hex. Tokens are random and long, so this
/// reveals nothing usable.
fn cache_key(token: &Secret) -> String {
    let digest = Sha256::digest(token.expose_secret().as_bytes());
    crate::hex::encode(&digest[..16])
}
