//! Telling a 429 that means an account's limit is reached (worth moving to another slot) from
//! a burst limit (requests or tokens per minute: worth a short wait, so it goes to the client
//! as it came).
//!
//! - Anthropic marks a subscription account's reached limit in its headers:
//!   `anthropic-ratelimit-unified-status: rejected`, resetting at
//!   `anthropic-ratelimit-unified-reset` (epoch seconds). A burst carries only `retry-after`.
//! - Codex's backend says so in the body: `{"error": {"type": "usage_limit_reached",
//!   "resets_at": <epoch seconds>, "resets_in_seconds": N}}`.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Response};
use http_body_util::BodyExt;
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use super::body::{self, ProxyBody};
use super::upstream::Pooled;
use crate::agent::Agent;
use crate::usage::headers as quota_headers;

/// The most of a 429's body read to judge it; Codex's is a few hundred bytes.
const BODY_LIMIT: usize = 64 * 1024;
/// How long reading that body may take.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a slot cools down when its limit is reached and no reset time is given.
const UNKNOWN_RESET: SignedDuration = SignedDuration::from_mins(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A short-term limit, or a 429 that cannot be told apart from one.
    Burst,
    /// The account's limit is reached until then.
    Reached(Timestamp),
}

/// Judges a 429; gives the response back for the client, its body unchanged.
pub async fn judge(agent: Agent, response: Response<Pooled>) -> (Response<ProxyBody>, Verdict) {
    let now = Timestamp::now();
    match agent {
        Agent::Claude => {
            let verdict = anthropic(response.headers(), now);
            (response.map(body::boxed), verdict)
        }
        Agent::Codex => {
            let (parts, incoming) = response.into_parts();
            let limited = http_body_util::Limited::new(incoming, BODY_LIMIT);
            let bytes = match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
                Ok(Ok(collected)) => collected.to_bytes(),
                // Unreadable: the client gets what could be had, an empty body.
                _ => Bytes::new(),
            };
            let verdict = codex(&parts.headers, &bytes, now);
            (Response::from_parts(parts, body::full(bytes)), verdict)
        }
    }
}

pub fn anthropic(headers: &HeaderMap, now: Timestamp) -> Verdict {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let rejected = text("anthropic-ratelimit-unified-status") == Some("rejected")
        || ["5h", "7d"].iter().any(|window| {
            text(&format!("anthropic-ratelimit-unified-{window}-status")) == Some("rejected")
        });
    if !rejected {
        return Verdict::Burst;
    }
    let reset = quota_headers::epoch(headers, "anthropic-ratelimit-unified-reset")
        .or_else(|| after(text("retry-after"), now))
        .filter(|at| *at > now);
    Verdict::Reached(reset.unwrap_or(now + UNKNOWN_RESET))
}

pub fn codex(headers: &HeaderMap, body: &[u8], now: Timestamp) -> Verdict {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Verdict::Burst;
    };
    let error = value.get("error").unwrap_or(&value);
    let kind = |key: &str| error.get(key).and_then(Value::as_str);
    if kind("type") != Some("usage_limit_reached") && kind("code") != Some("usage_limit_reached") {
        return Verdict::Burst;
    }
    let number = |key: &str| {
        error.get(key).and_then(|v| {
            v.as_f64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        })
    };
    let reset = number("resets_at")
        .and_then(|secs| Timestamp::from_second(secs as i64).ok())
        .or_else(|| {
            let secs = number("resets_in_seconds").filter(|s| s.is_finite() && *s >= 0.0)?;
            now.checked_add(SignedDuration::from_secs(secs as i64)).ok()
        })
        .or_else(|| quota_headers::epoch(headers, "x-codex-primary-reset-at"))
        .filter(|at| *at > now);
    Verdict::Reached(reset.unwrap_or(now + UNKNOWN_RESET))
}

fn after(text: Option<&str>, now: Timestamp) -> Option<Timestamp> {
    let secs: u32 = text?.trim().parse().ok()?;
    now.checked_add(SignedDuration::from_secs(i64::from(secs)))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn an_anthropic_rejection_is_a_reached_limit_and_retry_after_alone_a_burst() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let reached = headers(&[
            ("anthropic-ratelimit-unified-status", "rejected"),
            ("anthropic-ratelimit-unified-reset", "1800003600"),
            ("retry-after", "3600"),
        ]);
        assert_eq!(
            anthropic(&reached, now),
            Verdict::Reached(Timestamp::from_second(1_800_003_600).unwrap())
        );
        let weekly = headers(&[("anthropic-ratelimit-unified-7d-status", "rejected")]);
        assert_eq!(
            anthropic(&weekly, now),
            Verdict::Reached(now + UNKNOWN_RESET)
        );
        let burst = headers(&[
            ("retry-after", "7"),
            ("anthropic-ratelimit-unified-status", "allowed"),
        ]);
        assert_eq!(anthropic(&burst, now), Verdict::Burst);
        assert_eq!(anthropic(&HeaderMap::new(), now), Verdict::Burst);
        // A reset time already past is no reset time.
        let stale = headers(&[
            ("anthropic-ratelimit-unified-status", "rejected"),
            ("anthropic-ratelimit-unified-reset", "1700000000"),
        ]);
        assert_eq!(
            anthropic(&stale, now),
            Verdict::Reached(now + UNKNOWN_RESET)
        );
    }

    #[test]
    fn a_codex_usage_limit_body_is_a_reached_limit_and_anything_else_a_burst() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let none = HeaderMap::new();
        let at = br#"{"error":{"type":"usage_limit_reached","resets_at":1800007200}}"#;
        assert_eq!(
            codex(&none, at, now),
            Verdict::Reached(Timestamp::from_second(1_800_007_200).unwrap())
        );
        let within = br#"{"error":{"code":"usage_limit_reached","resets_in_seconds":"60"}}"#;
        assert_eq!(
            codex(&none, within, now),
            Verdict::Reached(Timestamp::from_second(1_800_000_060).unwrap())
        );
        for burst in [
            &br#"{"error":{"code":"rate_limit_exceeded","message":"slow down"}}"#[..],
            b"not json",
            b"",
        ] {
            assert_eq!(codex(&none, burst, now), Verdict::Burst);
        }
    }
}
