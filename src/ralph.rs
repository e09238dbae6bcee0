//! The ralph token commands' storage: one long-lived token per agent, kept in the flat shape
//! `{"accessToken","expiresAt"}` under `SecretKey::ralph(agent)` (`<agent>-token` / `agent-loop`,
//! the names the ralph spec gives its Keychain items). Each is an ordinary long-lived slot of the
//! catalog (`<agent>-token`), so `list`, `doctor`, `migrate` and `remove` know it.

use jiff::Timestamp;

use crate::agent::credential::{Credential, InputForm};
use crate::error::{Error, Result};
use crate::keeper::Keeper;
use crate::paths::Paths;
use crate::secret::Secret;
use crate::store::{self, SecretKey, Stores};

const MAX_AGENT_LEN: usize = 32;

/// A token's state as `check-token` reports it.
pub enum Status {
    Valid { expires_at: Timestamp },
    Expired { expired_at: Timestamp },
    Missing,
}

/// The ralph commands' view of the catalog: one long-lived slot per agent.
pub struct TokenStore {
    keeper: Keeper,
    paths: Paths,
}

impl TokenStore {
    pub fn open(paths: &Paths) -> Result<Self> {
        Ok(Self {
            keeper: Keeper::open(paths.clone())?,
            paths: paths.clone(),
        })
    }

    /// Stores what was piped in; returns the stored credential's expiry.
    pub fn store(
        &mut self,
        agent: &str,
        input: &Secret,
        now: Timestamp,
    ) -> Result<(Timestamp, InputForm)> {
        let (credential, form) = Credential::from_input(input, "standard input", now)?;
        let expires_at = credential
            .expires_at()
            .expect("from_input always sets an expiry");
        self.keeper.keep_ralph(agent, &credential, None)?;
        Ok((expires_at, form))
    }

    /// The agent's token: from its slot, or — stored before the catalog knew of it — from the
    /// backend for new secrets, and then recorded as a slot.
    pub fn load(&mut self, agent: &str) -> Result<Option<Credential>> {
        let origin = format!("the stored token for agent {agent}");
        if let Some(slot) = self.keeper.ralph_slot(agent).cloned() {
            let store = Stores::new(&self.paths);
            return match store.get(slot.backend).get(&slot.secret_key())? {
                None => Ok(None),
                Some(secret) => {
                    Credential::parse(secret.expose_secret().as_bytes(), &origin).map(Some)
                }
            };
        }
        let backend = store::select(&self.paths)?.backend;
        let Some(secret) = Stores::new(&self.paths)
            .get(backend)
            .get(&SecretKey::ralph(agent))?
        else {
            return Ok(None);
        };
        let credential = Credential::parse(secret.expose_secret().as_bytes(), &origin)?;
        self.keeper.keep_ralph(agent, &credential, Some(backend))?;
        Ok(Some(credential))
    }

    pub fn status(&mut self, agent: &str, now: Timestamp) -> Result<Status> {
        Ok(match self.load(agent)? {
            None => Status::Missing,
            Some(credential) => match credential.expires_at() {
                Some(at) if at <= now => Status::Expired { expired_at: at },
                Some(at) => Status::Valid { expires_at: at },
                None => Status::Valid {
                    expires_at: Timestamp::MAX,
                },
            },
        })
    }
}

/// Checks an agent name used to namespace tokens: lower-case letters, digits, `-` and `_`.
pub fn validate_agent(agent: &str) -> Result<()> {
    let ok = !agent.is_empty()
        && agent.len() <= MAX_AGENT_LEN
        && agent.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && agent
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "invalid agent name '{}': use lower-case letters, digits, - and _ (e.g. claude, codex)",
            agent.escape_debug()
        )))
    }
}

/// The hint shown when an agent has no token yet, worded as the ralph spec words it.
pub fn missing_hint(agent: &str) -> String {
    if agent == "claude" {
        "claude setup-token | tokenkeeper store-token".to_string()
    } else {
        format!("tokenkeeper store-token --agent {agent} < TOKEN_FILE")
    }
}
