//! What every agent's provider client shares: the HTTP client's timeouts, retries with
//! backoff, the classification of failures (a dead lineage, a passing failure, an answer that
//! may have been acted on), and the reading of a token endpoint's answer. Errors never carry a
//! token: only status codes and the provider's error code are reported.

use std::future::Future;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use reqwest::StatusCode;
use serde_json::Value;
use tracing::{debug, info};

use crate::secret::Secret;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Delays before the 2nd, 3rd and 4th attempt of a request that failed transiently.
const BACKOFF: [Duration; 3] = [
    Duration::from_millis(200),
    Duration::from_millis(600),
    Duration::from_millis(1500),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderError {
    /// The refresh token was refused (`invalid_grant`, or 401 on refresh): the lineage is dead
    /// and the slot needs a new login.
    NeedsLogin(String),
    /// 401/403 from an API endpoint: the access token is expired, revoked or lacks the scope.
    Unauthorized(u16),
    /// The request never reached the provider, or the provider said to wait (429). Worth
    /// retrying; the refresh token is unspent.
    Transient(String),
    /// The request was sent but its answer was lost (timeout, connection cut, a 5xx from the
    /// provider or something in between): the provider may have rotated the refresh token.
    /// Retrying with the same token is still the only chance of keeping the lineage.
    Lost(String),
}

impl ProviderError {
    /// Whether the request may have reached the provider and been acted on.
    pub fn maybe_acted_on(&self) -> bool {
        matches!(self, ProviderError::Lost(_))
    }
}

impl std::fmt::Display for ProviderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProviderError::NeedsLogin(code) => {
                write!(f, "the provider refused the refresh token ({code})")
            }
            ProviderError::Unauthorized(status) => {
                write!(f, "the provider refused the access token (HTTP {status})")
            }
            ProviderError::Transient(why) | ProviderError::Lost(why) => f.write_str(why),
        }
    }
}

/// What the token endpoint returns; tokens already wrapped as secrets.
#[derive(Debug)]
pub struct Tokens {
    /// `None` only when the answer carried a new refresh token without an access token.
    pub access_token: Option<Secret>,
    pub refresh_token: Option<Secret>,
    /// OpenAI's answers carry a new id token (a JWT naming the account).
    pub id_token: Option<Secret>,
    pub expires_in: Option<SignedDuration>,
    pub scopes: Option<Vec<String>>,
    pub account_uuid: Option<String>,
    pub email: Option<String>,
}

/// Whether a request that failed for a passing reason is tried again.
#[derive(Debug, Clone, Copy)]
pub enum Retry {
    /// Up to three more times, after 0.2, 0.6 and 1.5 s.
    Backoff,
    Never,
}

/// An HTTP client for a provider: its User-Agent, the connect and request timeouts, rustls.
pub fn http_client(user_agent: &str) -> reqwest::Client {
    crate::net::install_crypto_provider();
    reqwest::Client::builder()
        .user_agent(user_agent.to_string())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("the HTTP client configuration is valid")
}

/// Sends a request with `attempt_once`, again after a passing failure when `retry` says so
/// (0.2, 0.6, 1.5 s). A refusal of the refresh token right after an answer was lost means the
/// lost answer had rotated it, and says so.
pub async fn with_retries<T, F: Future<Output = Result<T, ProviderError>>>(
    what: &str,
    retry: Retry,
    attempt_once: impl Fn() -> F,
) -> Result<T, ProviderError> {
    let retries = match retry {
        Retry::Backoff => BACKOFF.len(),
        Retry::Never => 0,
    };
    let mut attempt = 0;
    let mut lost_before = false;
    loop {
        match attempt_once().await {
            // A refusal right after a lost answer: the lost answer had rotated the token.
            Err(ProviderError::NeedsLogin(code)) if lost_before => {
                return Err(ProviderError::NeedsLogin(format!(
                    "{code}, after an earlier answer was lost: the provider had rotated it"
                )));
            }
            Err(err @ (ProviderError::Transient(_) | ProviderError::Lost(_)))
                if attempt < retries =>
            {
                lost_before |= err.maybe_acted_on();
                let why = err.to_string();
                info!(request = what, attempt = attempt + 1, error = %why, "transient failure; retrying");
                tokio::time::sleep(BACKOFF[attempt]).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

pub(crate) async fn send(request: reqwest::RequestBuilder) -> Result<Value, ProviderError> {
    let body = send_raw(request).await?;
    serde_json::from_str(body.expose_secret()).map_err(|_| {
        ProviderError::Lost("the provider answered with a body that is not JSON".into())
    })
}

/// Sends a request; the body of a 2xx answer as received, or the classified failure.
pub(crate) async fn send_raw(request: reqwest::RequestBuilder) -> Result<Secret, ProviderError> {
    let response = request.send().await.map_err(|err| {
        // Only a failed connection proves the request never left; anything later may have
        // been acted on.
        if err.is_connect() {
            ProviderError::Transient(describe(&err))
        } else {
            ProviderError::Lost(describe(&err))
        }
    })?;
    let status = response.status();
    let body = zeroize::Zeroizing::new(
        response
            .bytes()
            .await
            .map_err(|err| ProviderError::Lost(describe(&err)))?
            .to_vec(),
    );
    debug!(
        status = status.as_u16(),
        bytes = body.len(),
        "provider answered"
    );
    if status.is_success() {
        return Ok(Secret::new(String::from_utf8_lossy(&body).into_owned()));
    }
    let value: Option<Value> = serde_json::from_slice(&body).ok();
    let error_code = value
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(|e| {
            e.as_str()
                .or_else(|| e.get("code").and_then(Value::as_str))
                .or_else(|| e.get("type").and_then(Value::as_str))
        })
        .map(|s| s.chars().take(64).collect::<String>());
    let code = error_code.unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
    let answered = format!("the provider answered HTTP {} ({code})", status.as_u16());
    Err(match status {
        // OpenAI says why: refresh_token_reused, _expired, _invalidated.
        StatusCode::BAD_REQUEST
            if code == "invalid_grant" || code.starts_with("refresh_token_") =>
        {
            ProviderError::NeedsLogin(code)
        }
        // OpenAI's token endpoint refuses a dead refresh token with a 401 that says why.
        StatusCode::UNAUTHORIZED if code.starts_with("refresh_token_") => {
            ProviderError::NeedsLogin(code)
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            ProviderError::Unauthorized(status.as_u16())
        }
        _ if status.is_server_error() => ProviderError::Lost(answered),
        _ => ProviderError::Transient(answered),
    })
}

/// A network error without the URL's query or anything else that could carry a secret.
fn describe(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else if err.is_body() || err.is_decode() {
        "the answer was cut off"
    } else {
        "the request failed"
    };
    match err.url() {
        Some(url) => format!(
            "{kind} ({}://{}{})",
            url.scheme(),
            url.host_str().unwrap_or(""),
            port_suffix(url)
        ),
        None => kind.to_string(),
    }
}

fn port_suffix(url: &reqwest::Url) -> String {
    url.port().map(|p| format!(":{p}")).unwrap_or_default()
}

/// The longest access-token lifetime believed; anything outside 0..=this is absurd.
const MAX_EXPIRES_IN: SignedDuration = SignedDuration::from_hours(400 * 24);
/// What an absurd or missing-but-needed lifetime is taken to be: short, so the next refresh
/// comes early rather than late.
pub const ASSUMED_EXPIRES_IN: SignedDuration = SignedDuration::from_hours(1);

/// Reads the token endpoint's answer as received. Lenient about shapes (a number as a
/// string), strict about sense (an `expires_in` outside 0 to 400 days is not believed), and
/// never panics. An answer with a new refresh token but no access token still keeps the
/// lineage; only an answer with neither is refused (`Err` says why, naming no value).
pub fn interpret(raw: &Secret) -> Result<Tokens, String> {
    let value: Value = serde_json::from_str(raw.expose_secret())
        .map_err(|_| "the answer is not JSON".to_string())?;
    if !value.is_object() {
        return Err("the answer is not a JSON object".into());
    }
    let text = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let access = text("access_token");
    let refresh = text("refresh_token");
    if access.is_none() && refresh.is_none() {
        return Err("the answer has neither access_token nor refresh_token".into());
    }
    let account = value.get("account");
    let account_text = |key: &str| {
        account
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let expires_in = match value.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(raw) => Some(
            raw.as_i64()
                .or_else(|| raw.as_str().and_then(|s| s.trim().parse().ok()))
                .filter(|secs| *secs >= 0 && *secs <= MAX_EXPIRES_IN.as_secs())
                .map(SignedDuration::from_secs)
                .unwrap_or_else(|| {
                    tracing::warn!(
                        "the token endpoint's expires_in is not a believable lifetime; assuming one hour"
                    );
                    ASSUMED_EXPIRES_IN
                }),
        ),
    };
    Ok(Tokens {
        access_token: access.map(|s| Secret::new(s.to_string())),
        refresh_token: refresh.map(|s| Secret::new(s.to_string())),
        id_token: text("id_token").map(|s| Secret::new(s.to_string())),
        expires_in,
        scopes: text("scope").map(|s| s.split_whitespace().map(str::to_string).collect()),
        account_uuid: account_text("uuid"),
        email: account_text("email_address"),
    })
}

/// When the tokens of a refresh received at `now` expire; never panics.
pub fn expires_at(tokens: &Tokens, now: Timestamp) -> Option<Timestamp> {
    tokens.expires_in.and_then(|d| now.checked_add(d).ok())
}
