//! OpenAI's endpoints for Codex logins: the token refresh (auth.openai.com) and the ChatGPT
//! backend's usage reading (`wham/usage`). Both overridable, like Claude's.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::agent::provider::{ProviderError, Retry, http_client, send, send_raw, with_retries};
use crate::secret::Secret;
use crate::usage::{Snapshot, Source, Window, window_named};

pub const ENV_OAUTH_URL: &str = "TOKENKEEPER_CODEX_OAUTH_URL";
pub const ENV_API_URL: &str = "TOKENKEEPER_CODEX_API_URL";
pub const DEFAULT_OAUTH_URL: &str = "https://auth.openai.com/oauth/token";
/// The ChatGPT backend: usage here, and Codex's inference under `/codex`.
pub const DEFAULT_API_URL: &str = "https://chatgpt.com/backend-api";
/// Codex's OAuth client.
pub const CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";

fn var(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_string())
        .trim_end_matches('/')
        .to_string()
}

/// The HTTP client for OpenAI, made on first use.
fn http() -> &'static reqwest::Client {
    static HTTP: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    HTTP.get_or_init(|| http_client(concat!("tokenkeeper/", env!("CARGO_PKG_VERSION"))))
}

pub fn oauth_url() -> String {
    var(ENV_OAUTH_URL, DEFAULT_OAUTH_URL)
}

pub fn api_url() -> String {
    var(ENV_API_URL, DEFAULT_API_URL)
}

/// Exchanges a refresh token, with the same retries and lost-answer care as Claude's: the
/// answer comes back raw, to be journalled before it is read.
pub async fn refresh(refresh_token: &Secret) -> Result<Secret, ProviderError> {
    let url = oauth_url();
    let body = json!({
        "client_id": CLIENT_ID,
        "grant_type": "refresh_token",
        "refresh_token": refresh_token.expose_secret(),
    });
    with_retries("codex refresh", Retry::Backoff, || async {
        send_raw(http().post(&url).json(&body)).await
    })
    .await
    .map_err(|err| match err {
        // A 401 from the token endpoint is OpenAI's "this refresh token is dead".
        ProviderError::Unauthorized(status) => ProviderError::NeedsLogin(format!("HTTP {status}")),
        other => other,
    })
}

/// `GET wham/usage` with the account header Codex sends.
pub async fn usage(
    access_token: &Secret,
    account_id: Option<&str>,
    retry: Retry,
) -> Result<Value, ProviderError> {
    let url = format!("{}/wham/usage", api_url());
    with_retries("codex usage", retry, || {
        let mut request = http().get(&url).bearer_auth(access_token.expose_secret());
        if let Some(account) = account_id {
            request = request.header("chatgpt-account-id", account);
        }
        send(request)
    })
    .await
}

/// Reads a `wham/usage` answer: `rate_limit.primary_window` and `secondary_window`, each with
/// `used_percent`, `limit_window_seconds` and `reset_at` (epoch seconds). A window is named by
/// its length: 5 hours is the 5-hour window, 7 days the weekly one.
pub fn snapshot(value: &Value, taken_at: Timestamp) -> Snapshot {
    let limits = value.get("rate_limit").unwrap_or(value);
    let mut windows = Vec::new();
    for key in ["primary_window", "secondary_window"] {
        let Some(window) = limits.get(key).filter(|w| w.is_object()) else {
            continue;
        };
        let seconds = window.get("limit_window_seconds").and_then(Value::as_i64);
        let (id, label) = window_named(seconds, key == "primary_window");
        let percent = window.get("used_percent").and_then(|v| {
            v.as_f64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        });
        let resets_at = window
            .get("reset_at")
            .and_then(Value::as_i64)
            .and_then(|secs| Timestamp::from_second(secs).ok());
        if windows.iter().all(|w: &Window| w.id != id) {
            windows.push(Window {
                id,
                label,
                percent,
                resets_at,
            });
        }
    }
    // `credits`: {"has_credits", "unlimited", "balance"}; shown only when there are some.
    let credits = value.get("credits").and_then(|c| {
        if c.get("unlimited").and_then(Value::as_bool) == Some(true) {
            return Some("unlimited".to_string());
        }
        if c.get("has_credits").and_then(Value::as_bool) != Some(true) {
            return None;
        }
        match c.get("balance")? {
            Value::String(text) => Some(text.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    });
    Snapshot {
        taken_at,
        windows,
        credits,
        source: Source::Poll,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::{FIVE_HOUR, SEVEN_DAY};

    #[test]
    fn windows_are_named_by_their_length_and_odd_values_tolerated() {
        let at = Timestamp::from_second(1_800_000_000).unwrap();
        let value = json!({"plan_type":"plus","rate_limit":{
            "primary_window":{"used_percent":42,"limit_window_seconds":18000,"reset_at":1800003600},
            "secondary_window":{"used_percent":"7.5","limit_window_seconds":604800,"reset_at":null}}});
        let snap = snapshot(&value, at);
        assert_eq!(snap.window(FIVE_HOUR).unwrap().percent, Some(42.0));
        assert_eq!(
            snap.window(FIVE_HOUR)
                .unwrap()
                .resets_at
                .unwrap()
                .as_second(),
            1_800_003_600
        );
        assert_eq!(snap.window(SEVEN_DAY).unwrap().percent, Some(7.5));
        assert_eq!(snap.credits, None);
        let with_credits =
            json!({"credits": {"has_credits": true, "unlimited": false, "balance": "12.50"}});
        assert_eq!(
            snapshot(&with_credits, at).credits.as_deref(),
            Some("12.50")
        );
        let unlimited = json!({"credits": {"has_credits": true, "unlimited": true}});
        assert_eq!(
            snapshot(&unlimited, at).credits.as_deref(),
            Some("unlimited")
        );
        assert!(
            snapshot(&json!({"rate_limit": null}), at)
                .windows
                .is_empty()
        );
        assert!(snapshot(&json!([1, 2]), at).windows.is_empty());
    }
}
