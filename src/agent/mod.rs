//! The coding agents tokenkeeper keeps credentials for. Everything that differs between them
//! is reached through [`Agent`]: where the live credential is and how it is written
//! (`live`), what the provider says about an account, how the agent refreshes, what a child
//! process needs in its environment. One module per agent holds the details.
//!
//! A third agent adds a variant here, a folder beside `claude/` and `codex/`, an arm in each
//! `Agent` method (here, in `exec.rs` and in `identity.rs`), a `Shape` in `credential.rs`, and
//! its fake in the tests; the keeper, refresh, catalog, daemon, proxy and CLI need no change.

pub mod claude;
pub mod codex;
pub mod credential;
pub mod exec;
pub mod identity;
pub mod live;
pub mod provider;

use std::fmt;

pub use claude::LoginAccount;
pub use credential::{Credential, Kind};
pub use live::{Live, LiveCredential};

/// The account behind a login, as its provider (or its own id token) says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub account_uuid: Option<String>,
    pub email: Option<String>,
    pub organization_uuid: Option<String>,
    pub organization_name: Option<String>,
    pub rate_limit_tier: Option<String>,
    /// `max`, `pro` or none, from the account's flags.
    pub plan: Option<String>,
}

/// An agent whose slots tokenkeeper manages. The default is the one commands work on when
/// `--agent` is not given (and the one a catalog entry of an unknown agent is read as).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Agent {
    /// Anthropic's Claude Code.
    #[default]
    Claude,
    /// OpenAI's Codex CLI.
    Codex,
}

impl Agent {
    pub const ALL: [Agent; 2] = [Agent::Claude, Agent::Codex];

    /// The name in the catalog and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Agent::Claude => "claude",
            Agent::Codex => "codex",
        }
    }

    /// The program's name, for messages.
    pub fn program(self) -> &'static str {
        match self {
            Agent::Claude => "Claude Code",
            Agent::Codex => "Codex",
        }
    }

    pub fn from_name(name: &str) -> Option<Agent> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Where the agent keeps the login it uses.
    pub fn live(self) -> crate::error::Result<Live> {
        match self {
            Agent::Claude => claude::live(),
            Agent::Codex => codex::live(),
        }
    }

    /// What the agent's login record says about the account it uses now (`uuid|email`), for
    /// telling its own refresh from a new login while offline. Only Claude Code keeps one.
    pub fn login_key(self) -> Option<String> {
        match self {
            Agent::Claude => claude::login_account().map(|account| account.key()),
            Agent::Codex => None,
        }
    }

    /// The agent's own record of the account it logged in as (Claude Code's `oauthAccount`),
    /// kept with a slot so `use` can put it back.
    pub fn login_record(self) -> Option<serde_json::Value> {
        match self {
            Agent::Claude => claude::login_record_account(),
            Agent::Codex => None,
        }
    }

    /// Puts a slot's login record back; `Ok(false)` when there was nothing to change.
    pub fn set_login_record(self, record: &serde_json::Value) -> crate::error::Result<bool> {
        match self {
            Agent::Claude => claude::set_login_account(record),
            Agent::Codex => Ok(false),
        }
    }

    /// The account the agent's login record names, when it keeps one.
    pub fn login_account(self) -> Option<claude::LoginAccount> {
        match self {
            Agent::Claude => claude::login_account(),
            Agent::Codex => None,
        }
    }

    /// Takes the lock the agent itself holds while it refreshes its live login, so the two
    /// never refresh one lineage at once (Claude Code's lock directories). Codex takes no
    /// lock: it re-reads its file before refreshing and adopts newer tokens of its account.
    /// Held until the returned value is dropped.
    pub fn hold_refresh_lock(
        self,
        own_dir: &std::path::Path,
        wait: std::time::Duration,
    ) -> crate::error::Result<Option<Box<dyn std::any::Any>>> {
        match self {
            Agent::Claude => {
                let lock = claude::lock::ClaudeLock::acquire(
                    &claude::secure_storage_dir()?,
                    own_dir,
                    wait,
                )?;
                Ok(Some(Box::new(lock)))
            }
            Agent::Codex => Ok(None),
        }
    }

    /// Spends a refresh token at the agent's provider; the answer as received.
    pub async fn refresh(
        self,
        refresh_token: &crate::secret::Secret,
    ) -> Result<crate::secret::Secret, provider::ProviderError> {
        match self {
            Agent::Claude => claude::provider::client().refresh(refresh_token).await,
            Agent::Codex => codex::provider::refresh(refresh_token).await,
        }
    }

    /// Whether the provider will tell this credential's quota usage (a setup token, scope
    /// `user:inference` only, or an API key cannot).
    pub fn usage_readable(self, credential: &Credential) -> bool {
        match self {
            Agent::Claude => {
                credential.kind() == Kind::Oauth && credential.scopes().contains(&"user:profile")
            }
            Agent::Codex => credential.kind() == Kind::Oauth,
        }
    }

    /// One reading of the account's quota windows (asks nothing of the quota itself).
    pub async fn read_usage(
        self,
        credential: &Credential,
        retry: provider::Retry,
    ) -> Result<crate::usage::Snapshot, provider::ProviderError> {
        let token = credential.access_token();
        let now = jiff::Timestamp::now;
        match self {
            Agent::Claude => {
                let value = claude::provider::client().usage(&token, retry).await?;
                Ok(crate::usage::Snapshot::parse(&value, now()))
            }
            Agent::Codex => {
                let account = credential.codex_identity().and_then(|i| i.account_id);
                let value = codex::provider::usage(&token, account.as_deref(), retry).await?;
                Ok(codex::provider::snapshot(&value, now()))
            }
        }
    }

    /// What to tell the user after `use` switched the agent's login.
    pub fn after_switch_notice(self) -> Option<String> {
        match self {
            Agent::Claude => None,
            Agent::Codex => {
                let running = codex::running();
                let which = if running.is_empty() {
                    String::new()
                } else {
                    let pids: Vec<String> = running.iter().map(u32::to_string).collect();
                    format!(" (running now: pid {})", pids.join(", "))
                };
                Some(format!(
                    "Codex processes already running keep the account they started with{which}: Codex reads its login once; new ones use this slot"
                ))
            }
        }
    }

    /// Whether the agent reads this credential's shape from its live location (Claude Code
    /// its blob, not a bare setup token; Codex its `auth.json`).
    pub fn accepts(self, credential: &Credential) -> bool {
        match self {
            Agent::Claude => credential.is_claude_blob(),
            Agent::Codex => credential.is_codex(),
        }
    }

    /// The least time before an access token's expiry at which tokenkeeper refreshes it.
    /// Codex refreshes its own login only once the token has expired, and takes no lock; a
    /// refresh by tokenkeeper an hour earlier lands in its file first, and Codex adopts it
    /// instead of spending the refresh token again.
    pub fn min_refresh_margin(self) -> jiff::SignedDuration {
        match self {
            Agent::Claude => jiff::SignedDuration::ZERO,
            Agent::Codex => jiff::SignedDuration::from_hours(1),
        }
    }

    /// Whether a credential of this shape can be a slot of this agent at all (Claude's blob
    /// or a bare token for Claude, an `auth.json` for Codex).
    pub fn holds(self, credential: &Credential) -> bool {
        match self {
            Agent::Claude => !credential.is_codex(),
            Agent::Codex => credential.is_codex(),
        }
    }

    /// Why `use` cannot hand slot `slot`'s credential to the agent (see `accepts`).
    pub fn cannot_take(self, slot: &str) -> crate::error::Error {
        use crate::error::Error;
        match self {
            Agent::Claude => Error::failure(format!(
                "slot '{slot}' holds a long-lived setup token, which Claude Code takes from CLAUDE_CODE_OAUTH_TOKEN, not from its credentials file"
            ))
            .with_hint(format!(
                "run Claude Code with it: CLAUDE_CODE_OAUTH_TOKEN=\"$(tokenkeeper get {slot})\" claude"
            )),
            Agent::Codex => Error::failure(format!(
                "slot '{slot}' does not hold a Codex login (auth.json)"
            )),
        }
    }

    /// What to do when a slot's login is dead: log in with the agent, then add it again.
    pub fn login_again(self, slot: &str) -> String {
        match self {
            Agent::Claude => {
                format!("log in again with `claude` (/login), then run: tokenkeeper add {slot}")
            }
            Agent::Codex => format!(
                "{}, then run: tokenkeeper add {slot} --agent {self}",
                self.login_hint()
            ),
        }
    }

    /// Asks the provider, in a way that spends no quota, whether it still takes the
    /// credential's token; the name of the request, and the answer.
    pub async fn check_token(
        self,
        credential: &Credential,
    ) -> (&'static str, Result<(), provider::ProviderError>) {
        let token = credential.access_token();
        match self {
            Agent::Codex => (
                "usage",
                self.read_usage(credential, provider::Retry::Never)
                    .await
                    .map(|_| ()),
            ),
            Agent::Claude
                if credential.kind() == Kind::Oauth
                    || credential.scopes().contains(&"user:profile") =>
            {
                (
                    "profile",
                    claude::provider::client().profile(&token).await.map(|_| ()),
                )
            }
            Agent::Claude => (
                "count-tokens",
                claude::provider::client()
                    .accepts_inference_token(&token)
                    .await,
            ),
        }
    }

    /// How to log in with the agent itself, for hints.
    pub fn login_hint(self) -> &'static str {
        match self {
            Agent::Claude => "log in with `claude` (then /login)",
            Agent::Codex => "log in with `codex login`",
        }
    }
}

impl fmt::Display for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
