//! When a slot's lineage itself runs out — a long-lived token's end of life, or an OAuth
//! slot's refresh-token expiry — and the warning every command gives in the last 30 days.
//!
//! An OAuth slot's access token expiring every few hours is routine (it is refreshed); only the
//! point after which no refresh can help is worth a warning.

use jiff::{SignedDuration, Timestamp};

use crate::agent::Kind;
use crate::catalog::Slot;

/// Warn from this close to the end.
pub const WARN_WITHIN: SignedDuration = SignedDuration::from_hours(30 * 24);
/// Emphasise from this close.
pub const URGENT_WITHIN: SignedDuration = SignedDuration::from_hours(7 * 24);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Soon,
    Urgent,
    Expired,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Soon => "soon",
            Level::Urgent => "urgent",
            Level::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub level: Level,
    pub at: Timestamp,
    /// Whole days left (0 on the last day, negative once past).
    pub days: i64,
    /// What ends: "token" for a long-lived token, "login" for an OAuth slot's refresh token.
    pub what: &'static str,
}

/// The moment after which the slot cannot be used without a new login or token.
pub fn end_of_life(slot: &Slot) -> Option<Timestamp> {
    match slot.kind {
        Kind::LongLived => slot.expires_at,
        Kind::Oauth => slot.refresh_expires_at,
    }
}

/// The warning due for `slot` at `now`, if its end is within 30 days.
pub fn warning(slot: &Slot, now: Timestamp) -> Option<Warning> {
    let at = end_of_life(slot)?;
    let left = at.duration_since(now);
    let level = if left <= SignedDuration::ZERO {
        Level::Expired
    } else if left <= URGENT_WITHIN {
        Level::Urgent
    } else if left <= WARN_WITHIN {
        Level::Soon
    } else {
        return None;
    };
    Some(Warning {
        level,
        at,
        days: crate::timefmt::days_remaining(at, now),
        what: match slot.kind {
            Kind::LongLived => "token",
            Kind::Oauth => "login",
        },
    })
}

impl Warning {
    /// `the long-lived token of slot 'ci' expires in 5d 2h (2027-01-01 10:00 UTC)`, plus what
    /// to do about it.
    pub fn describe(&self, slot: &str, now: Timestamp) -> (String, String) {
        let whose = match self.what {
            "token" => format!("the long-lived token of slot '{slot}'"),
            _ => format!("the login of slot '{slot}' (its refresh token)"),
        };
        let when = crate::timefmt::relative(self.at, now);
        let text = match self.level {
            Level::Expired => format!("{whose} expired {when}"),
            _ => format!(
                "{whose} expires {when} ({})",
                crate::timefmt::local(self.at)
            ),
        };
        let hint = match self.what {
            "token" => format!("make a new one: tokenkeeper rotate {slot}"),
            _ => format!("log in again with `claude` (/login), then: tokenkeeper add {slot}"),
        };
        (text, hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::credential::Credential;
    use crate::store::Backend;

    fn slot(kind_long: bool, end_in_days: i64, now: Timestamp) -> Slot {
        let json = if kind_long {
            r#"{"accessToken":"sk-ant-oat01-xxxxxxxxxxxxxxxxxxxx","expiresAt":1800000000000}"#
                .to_string()
        } else {
            r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-xxxxxxxxxxxxxxxxxxxx","refreshToken":"sk-ant-ort01-xxxxxxxxxxxxxxxxxxxx","expiresAt":1800000000000}}"#.to_string()
        };
        let credential = Credential::parse(json.as_bytes(), "test").unwrap();
        let mut slot = Slot::new("claude", "s", &credential, Backend::File, now);
        let end = now + SignedDuration::from_hours(end_in_days * 24);
        if kind_long {
            slot.expires_at = Some(end);
        } else {
            slot.expires_at = Some(now);
            slot.refresh_expires_at = Some(end);
        }
        slot
    }

    #[test]
    fn warns_within_thirty_days_and_emphasises_within_seven() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        assert_eq!(warning(&slot(true, 31, now), now), None);
        assert_eq!(
            warning(&slot(true, 30, now), now).unwrap().level,
            Level::Soon
        );
        assert_eq!(
            warning(&slot(true, 7, now), now).unwrap().level,
            Level::Urgent
        );
        assert_eq!(
            warning(&slot(true, -1, now), now).unwrap().level,
            Level::Expired
        );
        // An OAuth slot's access token expiring now is routine; its refresh token is what counts.
        assert_eq!(warning(&slot(false, 60, now), now), None);
        let w = warning(&slot(false, 3, now), now).unwrap();
        assert_eq!((w.level, w.what, w.days), (Level::Urgent, "login", 3));
    }
}
