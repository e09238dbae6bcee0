//! Quota read off the answers the proxy relays, with no request of its own.
//!
//! - Anthropic sends a subscription account `anthropic-ratelimit-unified-5h-utilization` and
//!   `-7d-utilization` (a fraction, `0.42` for 42 %), `-5h-reset`/`-7d-reset` (epoch seconds)
//!   and `-5h-status`/`-7d-status`/`-status` (`allowed`, `allowed_warning`, `rejected`).
//! - Codex's backend sends `x-codex-primary-used-percent` (a percent), `-window-minutes` and
//!   `-reset-at` (epoch seconds) or `-reset-after-seconds`, and the same for `secondary`.
//!
//! Any header may be missing or malformed; what cannot be read is left out, and an answer with
//! none of them gives no reading.

use http::HeaderMap;
use jiff::{SignedDuration, Timestamp};

use super::{FIVE_HOUR, SEVEN_DAY, Snapshot, Source, Window, window_named};
use crate::agent::Agent;

/// The reading an answer's headers give, if they carry any.
pub fn snapshot(agent: Agent, headers: &HeaderMap, taken_at: Timestamp) -> Option<Snapshot> {
    let windows = match agent {
        Agent::Claude => anthropic(headers),
        Agent::Codex => codex(headers, taken_at),
    };
    (!windows.is_empty()).then_some(Snapshot {
        taken_at,
        windows,
        credits: None,
        source: Source::Proxy,
    })
}

fn anthropic(headers: &HeaderMap) -> Vec<Window> {
    [("5h", FIVE_HOUR, "5-hour"), ("7d", SEVEN_DAY, "7-day")]
        .into_iter()
        .filter_map(|(key, id, label)| {
            let name = |what: &str| format!("anthropic-ratelimit-unified-{key}-{what}");
            let fraction = number(headers, &name("utilization"))?;
            Some(Window {
                id: id.to_string(),
                label: label.to_string(),
                percent: Some(fraction * 100.0),
                resets_at: epoch(headers, &name("reset")),
            })
        })
        .collect()
}

fn codex(headers: &HeaderMap, taken_at: Timestamp) -> Vec<Window> {
    let mut windows: Vec<Window> = Vec::new();
    for prefix in ["primary", "secondary"] {
        let name = |what: &str| format!("x-codex-{prefix}-{what}");
        let Some(percent) = number(headers, &name("used-percent")) else {
            continue;
        };
        let seconds = number(headers, &name("window-minutes"))
            .filter(|m| m.is_finite() && *m > 0.0)
            .map(|minutes| minutes as i64 * 60);
        let (id, label) = window_named(seconds, prefix == "primary");
        let resets_at = epoch(headers, &name("reset-at")).or_else(|| {
            let after = number(headers, &name("reset-after-seconds"))?;
            (after.is_finite() && after >= 0.0)
                .then(|| {
                    taken_at
                        .checked_add(SignedDuration::from_secs(after as i64))
                        .ok()
                })
                .flatten()
        });
        if windows.iter().all(|w| w.id != id) {
            windows.push(Window {
                id,
                label,
                percent: Some(percent),
                resets_at,
            });
        }
    }
    windows
}

/// A header's value as a finite number.
pub fn number(headers: &HeaderMap, name: &str) -> Option<f64> {
    let value: f64 = headers.get(name)?.to_str().ok()?.trim().parse().ok()?;
    value.is_finite().then_some(value)
}

/// A header's value as a time in epoch seconds.
pub fn epoch(headers: &HeaderMap, name: &str) -> Option<Timestamp> {
    let seconds = number(headers, name)?;
    Timestamp::from_second(seconds as i64).ok()
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
    fn anthropic_fractions_become_percents_with_their_resets() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let reading = snapshot(
            Agent::Claude,
            &headers(&[
                ("anthropic-ratelimit-unified-5h-utilization", "0.42"),
                ("anthropic-ratelimit-unified-5h-reset", "1800003600"),
                ("anthropic-ratelimit-unified-7d-utilization", "1.02"),
                ("anthropic-ratelimit-unified-7d-reset", "nonsense"),
            ]),
            now,
        )
        .unwrap();
        assert_eq!(reading.source, Source::Proxy);
        let five = reading.window(FIVE_HOUR).unwrap();
        assert!((five.percent.unwrap() - 42.0).abs() < 1e-9);
        assert_eq!(five.resets_at.unwrap().as_second(), 1_800_003_600);
        let seven = reading.window(SEVEN_DAY).unwrap();
        assert!((seven.percent.unwrap() - 102.0).abs() < 1e-9);
        assert_eq!(seven.resets_at, None);
    }

    #[test]
    fn codex_windows_are_named_by_their_length_and_may_reset_after_seconds() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let reading = snapshot(
            Agent::Codex,
            &headers(&[
                ("x-codex-primary-used-percent", "12.5"),
                ("x-codex-primary-window-minutes", "300"),
                ("x-codex-primary-reset-after-seconds", "600"),
                ("x-codex-secondary-used-percent", "80"),
                ("x-codex-secondary-window-minutes", "10080"),
                ("x-codex-secondary-reset-at", "1800500000"),
            ]),
            now,
        )
        .unwrap();
        let five = reading.window(FIVE_HOUR).unwrap();
        assert_eq!(five.percent, Some(12.5));
        assert_eq!(five.resets_at.unwrap().as_second(), 1_800_000_600);
        let seven = reading.window(SEVEN_DAY).unwrap();
        assert_eq!(seven.percent, Some(80.0));
        assert_eq!(seven.resets_at.unwrap().as_second(), 1_800_500_000);
    }

    #[test]
    fn answers_without_readable_quota_headers_give_no_reading() {
        let now = Timestamp::now();
        assert!(snapshot(Agent::Claude, &HeaderMap::new(), now).is_none());
        for bad in ["", "NaN", "inf", "-", "0x10"] {
            let map = headers(&[
                ("anthropic-ratelimit-unified-5h-utilization", bad),
                ("x-codex-primary-used-percent", bad),
            ]);
            assert!(snapshot(Agent::Claude, &map, now).is_none(), "{bad:?}");
            assert!(snapshot(Agent::Codex, &map, now).is_none(), "{bad:?}");
        }
        // The other agent's headers are not read.
        let codex_only = headers(&[("x-codex-primary-used-percent", "5")]);
        assert!(snapshot(Agent::Claude, &codex_only, now).is_none());
    }
}
