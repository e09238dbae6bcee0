//! How times are shown to people: local wall-clock time plus a relative phrase.

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// `2026-11-24 19:33 CET`
pub fn local(at: Timestamp) -> String {
    at.to_zoned_datetime(TimeZone::system())
        .strftime("%Y-%m-%d %H:%M %Z")
        .to_string()
}

/// `2026-11-24` in local time.
pub fn date(at: Timestamp) -> String {
    at.to_zoned_datetime(TimeZone::system())
        .strftime("%Y-%m-%d")
        .to_string()
}

/// `in 6h 12m` for the future, `2d 3h ago` for the past.
pub fn relative(at: Timestamp, now: Timestamp) -> String {
    let secs = at.as_second() - now.as_second();
    let span = span(secs.unsigned_abs());
    if secs >= 0 {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// Whole days left until `at` (0 on the last day, negative once past).
pub fn days_remaining(at: Timestamp, now: Timestamp) -> i64 {
    (at.as_millisecond() - now.as_millisecond()).div_euclid(86_400_000)
}

/// Two largest units: `2d 3h`, `6h 12m`, `5m`, `40s`.
fn span(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_phrases() {
        let now = Timestamp::from_second(1_000_000_000).unwrap();
        let at = |s: i64| Timestamp::from_second(1_000_000_000 + s).unwrap();
        assert_eq!(relative(at(6 * 3600 + 12 * 60 + 5), now), "in 6h 12m");
        assert_eq!(relative(at(-2 * 86_400 - 30), now), "2d ago");
        assert_eq!(relative(at(3 * 86_400 + 4 * 3600), now), "in 3d 4h");
        assert_eq!(relative(at(59), now), "in 59s");
        assert_eq!(relative(at(-300), now), "5m ago");
        assert_eq!(relative(at(7200), now), "in 2h");
        assert_eq!(days_remaining(at(86_400 * 364 + 5), now), 364);
        assert_eq!(
            days_remaining(at(86_400 * 365) - jiff::SignedDuration::from_millis(1), now),
            364
        );
        assert_eq!(days_remaining(at(-1), now), -1);
    }
}
