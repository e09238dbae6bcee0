//! Whose account a credential is. A Codex login names it in its own id token; for a Claude
//! login only the provider can say (the profile endpoint, for a full-scope token).

use jiff::Timestamp;
use tracing::debug;

use super::{Agent, Credential, Profile};
use crate::agent::provider::ProviderError;
use crate::net;

/// What the provider (or the login itself) says about a credential's account.
pub enum Account {
    Known(String),
    /// The provider refused the token (401/403): revoked, as a refresh revokes its predecessor.
    Refused,
    /// Expired, or no answer: nothing can be concluded.
    Unknown,
}

impl Agent {
    /// The account behind `credential`; `None` when it cannot be told (the token is expired
    /// or inference-only, or the provider is unreachable).
    pub fn identify(self, credential: &Credential, now: Timestamp) -> Option<Profile> {
        if let Some(identity) = credential.codex_identity() {
            return identity.account_id.clone().map(|uuid| Profile {
                account_uuid: Some(uuid),
                email: identity.email,
                plan: identity.plan,
                ..Profile::default()
            });
        }
        if self == Agent::Codex
            || credential.expires_at().is_some_and(|at| at <= now)
            || !credential.scopes().contains(&"user:profile")
        {
            return None;
        }
        match ask_profile(credential) {
            Ok(profile) if profile.account_uuid.is_some() => Some(profile),
            Ok(_) => None,
            Err(err) => {
                debug!(error = %err, "could not identify the account");
                None
            }
        }
    }

    /// Like `identify`, but telling a refused token from no answer.
    pub fn account_of(self, credential: &Credential, now: Timestamp) -> Account {
        if let Some(identity) = credential.codex_identity() {
            return identity.account_id.map_or(Account::Unknown, Account::Known);
        }
        if self == Agent::Codex || credential.expires_at().is_some_and(|at| at <= now) {
            return Account::Unknown;
        }
        match ask_profile(credential) {
            Ok(profile) => profile
                .account_uuid
                .map_or(Account::Unknown, Account::Known),
            Err(ProviderError::Unauthorized(_)) => Account::Refused,
            Err(_) => Account::Unknown,
        }
    }
}

/// Claude's profile of a credential's account, asked within the answer deadline: callers run
/// under the state lock, and a provider that hangs must not hold every other command up.
fn ask_profile(credential: &Credential) -> Result<Profile, ProviderError> {
    let token = credential.access_token();
    let request = crate::agent::claude::provider::client().profile(&token);
    let within = crate::deadline::answer_within().unwrap_or(std::time::Duration::from_secs(5));
    net::block_on(async { tokio::time::timeout(within, request).await }).unwrap_or_else(|_| {
        Err(ProviderError::Transient(
            "the profile endpoint did not answer in time".into(),
        ))
    })
}
