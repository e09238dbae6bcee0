//! HTTP client for Anthropic's OAuth endpoints: token refresh, profile and usage.
//!
//! None of these endpoints is documented; every URL, the client id and the User-Agent are
//! named constants an environment variable overrides. Responses are parsed tolerantly (unknown
//! fields ignored, optional fields optional).

use serde_json::{Value, json};

use crate::agent::Profile;
use crate::agent::provider::{ProviderError, Retry, http_client, send, send_raw, with_retries};
use crate::secret::Secret;

pub const ENV_OAUTH_URL: &str = "TOKENKEEPER_CLAUDE_OAUTH_URL";
pub const ENV_API_URL: &str = "TOKENKEEPER_CLAUDE_API_URL";
pub const ENV_CLIENT_ID: &str = "TOKENKEEPER_CLAUDE_CLIENT_ID";
pub const ENV_USER_AGENT: &str = "TOKENKEEPER_CLAUDE_USER_AGENT";

pub const DEFAULT_OAUTH_URL: &str = "https://platform.claude.com/v1/oauth/token";
pub const DEFAULT_API_URL: &str = "https://api.anthropic.com";
pub const DEFAULT_CLIENT_ID: &str = "9d1c250a-e61b-44d9-88ed-5944d1962f5e";
/// Some deployments refuse requests without a `claude-cli/…`-style User-Agent.
pub const DEFAULT_USER_AGENT: &str = concat!(
    "claude-cli/2.1.330 (external, cli; tokenkeeper/",
    env!("CARGO_PKG_VERSION"),
    ")"
);
pub const OAUTH_BETA: &str = "oauth-2025-04-20";

/// The model named in the validity probe's token count (any model the provider knows will do).
const PROBE_MODEL: &str = "claude-haiku-4-5";

/// Where the provider lives; every field overridable from the environment.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub oauth_url: String,
    pub api_url: String,
    pub client_id: String,
    pub user_agent: String,
}

impl Endpoints {
    pub fn from_env() -> Self {
        let var = |name: &str, default: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_string())
        };
        Self {
            oauth_url: var(ENV_OAUTH_URL, DEFAULT_OAUTH_URL),
            api_url: var(ENV_API_URL, DEFAULT_API_URL)
                .trim_end_matches('/')
                .to_string(),
            client_id: var(ENV_CLIENT_ID, DEFAULT_CLIENT_ID),
            user_agent: var(ENV_USER_AGENT, DEFAULT_USER_AGENT),
        }
    }
}

/// Claude's provider client, configured from the environment on first use.
pub fn client() -> &'static Client {
    static CLIENT: std::sync::OnceLock<Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(Client::from_env)
}

pub struct Client {
    http: reqwest::Client,
    endpoints: Endpoints,
}

impl Client {
    pub fn new(endpoints: Endpoints) -> Self {
        let http = http_client(&endpoints.user_agent);
        Self { http, endpoints }
    }

    pub fn from_env() -> Self {
        Self::new(Endpoints::from_env())
    }

    /// Exchanges a refresh token for new tokens, retrying transient failures with backoff.
    /// The refresh token is single-use: after `Ok`, only the answer's tokens are valid. The
    /// answer comes back as received, for the caller to make durable before reading it
    /// ([`interpret`]): a reading that fails must not lose the only copy of the new tokens.
    pub async fn refresh(&self, refresh_token: &Secret) -> Result<Secret, ProviderError> {
        let body = json!({
            "grant_type": "refresh_token",
            "refresh_token": refresh_token.expose_secret(),
            "client_id": self.endpoints.client_id,
        });
        with_retries("refresh", Retry::Backoff, || async {
            send_raw(
                self.http
                    .post(&self.endpoints.oauth_url)
                    .header("anthropic-beta", OAUTH_BETA)
                    .json(&body),
            )
            .await
        })
        .await
        .map_err(|err| match err {
            // The token endpoint refusing the client outright is as final as invalid_grant.
            ProviderError::Unauthorized(status) => {
                ProviderError::NeedsLogin(format!("HTTP {status}"))
            }
            other => other,
        })
    }

    /// `GET /api/oauth/profile`, tried once: callers use it to enrich what they know and carry
    /// on without it, so waiting out a backoff would only slow them down.
    pub async fn profile(&self, access_token: &Secret) -> Result<Profile, ProviderError> {
        let value = self
            .api_get("/api/oauth/profile", access_token, Retry::Never)
            .await?;
        let text = |v: &Value, key: &str| {
            v.get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let account = value.get("account").cloned().unwrap_or(Value::Null);
        let org = value.get("organization").cloned().unwrap_or(Value::Null);
        let flag = |key: &str| account.get(key).and_then(Value::as_bool).unwrap_or(false);
        let plan = if flag("has_claude_max") {
            Some("max".to_string())
        } else if flag("has_claude_pro") {
            Some("pro".to_string())
        } else {
            None
        };
        Ok(Profile {
            account_uuid: text(&account, "uuid"),
            email: text(&account, "email").or_else(|| text(&account, "email_address")),
            organization_uuid: text(&org, "uuid"),
            organization_name: text(&org, "name"),
            rate_limit_tier: text(&org, "rate_limit_tier"),
            plan,
        })
    }

    /// Whether the provider accepts an inference-only token (a setup token cannot read the
    /// profile): `POST /v1/messages/count_tokens`, which counts a one-character prompt and
    /// spends no quota. Tried once. A 400 or 404 (a model name the provider no longer knows)
    /// still means the token got past authentication.
    pub async fn accepts_inference_token(
        &self,
        access_token: &Secret,
    ) -> Result<(), ProviderError> {
        let url = format!(
            "{}/v1/messages/count_tokens?beta=true",
            self.endpoints.api_url
        );
        let body = json!({
            "model": PROBE_MODEL,
            "messages": [{"role": "user", "content": "."}],
        });
        let sent = send_raw(
            self.http
                .post(&url)
                .bearer_auth(access_token.expose_secret())
                .header("anthropic-beta", OAUTH_BETA)
                .header("anthropic-version", "2023-06-01")
                .json(&body),
        )
        .await;
        match sent {
            Ok(_) => Ok(()),
            Err(ProviderError::Transient(why))
                if why.contains("HTTP 400") || why.contains("HTTP 404") =>
            {
                Ok(())
            }
            Err(err) => Err(err),
        }
    }

    /// `GET /api/oauth/usage`, as raw JSON for `usage::Snapshot::parse`.
    pub async fn usage(&self, access_token: &Secret, retry: Retry) -> Result<Value, ProviderError> {
        self.api_get("/api/oauth/usage", access_token, retry).await
    }

    async fn api_get(
        &self,
        path: &str,
        access_token: &Secret,
        retry: Retry,
    ) -> Result<Value, ProviderError> {
        let url = format!("{}{path}", self.endpoints.api_url);
        with_retries(path, retry, || {
            send(
                self.http
                    .get(&url)
                    .bearer_auth(access_token.expose_secret())
                    .header("anthropic-beta", OAUTH_BETA),
            )
        })
        .await
    }
}
