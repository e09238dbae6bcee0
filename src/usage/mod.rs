//! Quota usage: the 5-hour and 7-day windows (and per-model ones) of a subscription account.
//!
//! The usage endpoint is undocumented and its shape has shifted over time, so parsing is
//! tolerant: any window may be missing or `null`, unknown keys are ignored, `resets_at` may be
//! an RFC 3339 string, epoch seconds or milliseconds, or `null`, and the newer `limits[]` list
//! is preferred where it names the same window. A snapshot is kept in the catalog so `list` can
//! show it without asking the provider every time.

mod fetch;
pub mod headers;

use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use fetch::{Eligibility, SlotUsage, eligibility, fetch_many, fetch_quick};

/// The classic windows, in display order: (id, label).
const WINDOWS: [(&str, &str); 4] = [
    (FIVE_HOUR, "5-hour"),
    (SEVEN_DAY, "7-day"),
    ("seven_day_sonnet", "7-day Sonnet"),
    ("seven_day_opus", "7-day Opus"),
];
pub const FIVE_HOUR: &str = "five_hour";
pub const SEVEN_DAY: &str = "seven_day";

/// One reading of an account's usage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub taken_at: Timestamp,
    pub windows: Vec<Window>,
    /// Credits beyond the windows, when the provider reports them (Codex): `unlimited`, or
    /// the balance as the provider writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credits: Option<String>,
    /// Where the reading came from.
    #[serde(default)]
    pub source: Source,
}

/// How a reading was taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Asked of the provider's usage endpoint.
    #[default]
    Poll,
    /// Read off the quota headers of an answer the proxy relayed.
    Proxy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// `five_hour`, `seven_day`, `seven_day_sonnet`, `seven_day_opus`, or `<kind>:<scope>` for
    /// a limit with no classic counterpart.
    pub id: String,
    pub label: String,
    /// Percent of the window used; may exceed 100. `None` when the provider gave no number.
    pub percent: Option<f64>,
    pub resets_at: Option<Timestamp>,
}

impl Snapshot {
    /// Reads a usage answer; never fails, since every part of it is optional.
    pub fn parse(value: &Value, taken_at: Timestamp) -> Self {
        let mut windows: Vec<Window> = WINDOWS
            .iter()
            .filter_map(|(id, label)| {
                let window = value.get(*id).filter(|v| v.is_object())?;
                Some(Window {
                    id: id.to_string(),
                    label: label.to_string(),
                    percent: number(window.get("utilization")),
                    resets_at: time(window.get("resets_at")),
                })
            })
            .collect();
        let limits = value.get("limits").and_then(Value::as_array);
        for limit in limits.into_iter().flatten() {
            let Some(window) = limit_window(limit) else {
                continue;
            };
            match windows.iter_mut().find(|w| w.id == window.id) {
                Some(existing) => *existing = window,
                None => windows.push(window),
            }
        }
        Self {
            taken_at,
            windows,
            credits: None,
            source: Source::Poll,
        }
    }

    pub fn window(&self, id: &str) -> Option<&Window> {
        self.windows.iter().find(|w| w.id == id)
    }

    /// `24%` for a window, `-` when unknown.
    pub fn percent_text(&self, id: &str) -> String {
        match self.window(id).and_then(|w| w.percent) {
            Some(p) => percent_text(p),
            None => "-".to_string(),
        }
    }
}

/// A window's id and label from its length in seconds: 5 hours is the 5-hour window, 7 days
/// the weekly one. Without a length, the first window is taken for the 5-hour one.
pub fn window_named(seconds: Option<i64>, first: bool) -> (String, String) {
    match seconds {
        Some(18_000) => (FIVE_HOUR.to_string(), "5-hour".to_string()),
        Some(604_800) => (SEVEN_DAY.to_string(), "7-day".to_string()),
        Some(secs) if secs > 0 && secs % 3600 == 0 => {
            (format!("window_{secs}"), format!("{}-hour", secs / 3600))
        }
        _ if first => (FIVE_HOUR.to_string(), "5-hour".to_string()),
        _ => (SEVEN_DAY.to_string(), "7-day".to_string()),
    }
}

pub fn percent_text(percent: f64) -> String {
    format!("{percent:.0}%")
}

/// A `limits[]` entry: `{"kind":"session","percent":15,"resets_at":…,"scope":null}`.
fn limit_window(limit: &Value) -> Option<Window> {
    let kind = limit
        .get("kind")
        .and_then(Value::as_str)?
        .to_ascii_lowercase();
    let scope = limit
        .get("scope")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_ascii_lowercase);
    let weekly = matches!(kind.as_str(), "weekly" | "week" | "seven_day" | "7d");
    let (id, label) = match (kind.as_str(), scope.as_deref()) {
        ("session" | "five_hour" | "5h", None) => (FIVE_HOUR.to_string(), "5-hour".to_string()),
        (_, None) if weekly => (SEVEN_DAY.to_string(), "7-day".to_string()),
        (_, Some(s)) if weekly && s.contains("sonnet") => {
            ("seven_day_sonnet".to_string(), "7-day Sonnet".to_string())
        }
        (_, Some(s)) if weekly && s.contains("opus") => {
            ("seven_day_opus".to_string(), "7-day Opus".to_string())
        }
        (_, None) => (kind.clone(), kind.replace('_', " ")),
        (_, Some(s)) => (
            format!("{kind}:{s}"),
            format!("{} ({s})", kind.replace('_', " ")),
        ),
    };
    Some(Window {
        id,
        label,
        percent: number(limit.get("percent").or_else(|| limit.get("utilization"))),
        resets_at: time(limit.get("resets_at")),
    })
}

fn number(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().trim_end_matches('%').parse().ok(),
        _ => None,
    }
    .filter(|n: &f64| n.is_finite())
}

/// RFC 3339 text, or epoch seconds (milliseconds when the number is too large for seconds).
fn time(value: Option<&Value>) -> Option<Timestamp> {
    match value? {
        Value::String(s) => Timestamp::from_str(s.trim())
            .ok()
            .or_else(|| s.trim().parse::<f64>().ok().and_then(epoch)),
        Value::Number(n) => n.as_f64().and_then(epoch),
        _ => None,
    }
}

fn epoch(n: f64) -> Option<Timestamp> {
    // Seconds until the year 5138; anything larger is milliseconds.
    let millis = if n.abs() < 1e11 { n * 1000.0 } else { n };
    Timestamp::from_millisecond(millis as i64).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_second(1_767_000_000).unwrap()
    }

    #[test]
    fn classic_windows_with_every_kind_of_reset_time() {
        let snap = Snapshot::parse(
            &json!({
                "five_hour": {"utilization": 24.0, "resets_at": "2026-01-02T19:59:59.600956+00:00"},
                "seven_day": {"utilization": 101.5, "resets_at": 1767400000},
                "seven_day_sonnet": {"utilization": 3, "resets_at": null},
                "seven_day_opus": null,
                "extra_usage": {"is_enabled": false},
                "something_new": [1, 2, 3]
            }),
            now(),
        );
        let ids: Vec<&str> = snap.windows.iter().map(|w| w.id.as_str()).collect();
        assert_eq!(ids, ["five_hour", "seven_day", "seven_day_sonnet"]);
        assert_eq!(snap.windows[0].percent, Some(24.0));
        assert_eq!(
            snap.windows[0].resets_at.unwrap().to_string(),
            "2026-01-02T19:59:59.600956Z"
        );
        assert_eq!(
            snap.windows[1].resets_at.unwrap().as_second(),
            1_767_400_000
        );
        assert_eq!(snap.windows[2].resets_at, None);
        assert_eq!(snap.percent_text(SEVEN_DAY), "102%");
        assert_eq!(snap.percent_text("seven_day_opus"), "-");
    }

    #[test]
    fn limits_are_preferred_and_unknown_ones_kept() {
        let snap = Snapshot::parse(
            &json!({
                "five_hour": {"utilization": 24.0, "resets_at": null},
                "limits": [
                    {"kind": "session", "percent": 15, "resets_at": 1767400000000i64, "scope": null},
                    {"kind": "weekly", "percent": "40", "resets_at": "1767400000", "scope": null},
                    {"kind": "weekly", "percent": 7.5, "scope": "claude-opus"},
                    {"kind": "daily_routines", "percent": 50, "scope": null},
                    {"percent": 99},
                    "not an object"
                ]
            }),
            now(),
        );
        assert_eq!(snap.window(FIVE_HOUR).unwrap().percent, Some(15.0));
        assert_eq!(
            snap.window(FIVE_HOUR)
                .unwrap()
                .resets_at
                .unwrap()
                .as_second(),
            1_767_400_000
        );
        assert_eq!(snap.window(SEVEN_DAY).unwrap().percent, Some(40.0));
        assert_eq!(snap.window("seven_day_opus").unwrap().percent, Some(7.5));
        assert_eq!(
            snap.window("daily_routines").unwrap().label,
            "daily routines"
        );
        assert_eq!(snap.windows.len(), 4);
    }

    #[test]
    fn anything_odd_gives_an_empty_snapshot() {
        for odd in [
            json!(null),
            json!([]),
            json!("x"),
            json!({"five_hour": "full"}),
        ] {
            assert!(Snapshot::parse(&odd, now()).windows.is_empty(), "{odd}");
        }
        let snap = Snapshot::parse(
            &json!({"five_hour": {"utilization": null, "resets_at": {"at": 1}}}),
            now(),
        );
        assert_eq!(snap.windows[0].percent, None);
        assert_eq!(snap.windows[0].resets_at, None);
    }
}
