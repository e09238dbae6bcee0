//! The ralph token commands' storage: one long-lived token per agent, kept in the flat shape
//! `{"accessToken","expiresAt"}` under `SecretKey::ralph(agent)` (`<agent>-token` / `agent-loop`,
//! the names the ralph spec gives its Keychain items).

use jiff::Timestamp;

use crate::credential::{Credential, InputForm};
use crate::error::{Error, Result};
use crate::paths::Paths;
use crate::perms;
use crate::secret::Secret;
use crate::store::{self, SecretKey, SecretStore, Stores};

const MAX_AGENT_LEN: usize = 32;

/// A token's state as `check-token` reports it.
pub enum Status {
    Valid { expires_at: Timestamp },
    Expired { expired_at: Timestamp },
    Missing,
}

pub struct TokenStore {
    stores: Stores,
    backend: store::Backend,
}

impl TokenStore {
    pub fn open(paths: &Paths) -> Result<Self> {
        perms::ensure_private_dir(&paths.data_dir)?;
        Ok(Self {
            stores: Stores::new(paths),
            backend: store::select(paths)?.backend,
        })
    }

    fn backend(&self) -> &dyn SecretStore {
        self.stores.get(self.backend)
    }

    /// Stores what was piped in; returns the stored credential's expiry.
    pub fn store(
        &self,
        agent: &str,
        input: &Secret,
        now: Timestamp,
    ) -> Result<(Timestamp, InputForm)> {
        let (credential, form) = Credential::from_input(input, "standard input", now)?;
        let expires_at = credential
            .expires_at()
            .expect("from_input always sets an expiry");
        self.backend()
            .put(&SecretKey::ralph(agent), &credential.to_secret_json())?;
        Ok((expires_at, form))
    }

    pub fn load(&self, agent: &str) -> Result<Option<Credential>> {
        let key = SecretKey::ralph(agent);
        match self.backend().get(&key)? {
            None => Ok(None),
            Some(secret) => Credential::parse(
                secret.expose_secret().as_bytes(),
                &format!("the stored token for agent {agent}"),
            )
            .map(Some),
        }
    }

    pub fn status(&self, agent: &str, now: Timestamp) -> Result<Status> {
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
