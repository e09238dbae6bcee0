//! Events worth telling a person about, raised by the daemon once per occurrence: a slot needs a
//! new login, a long-lived token expires within 30 and within 7 days, a quota window crosses
//! 80 % and 95 %, and a spent window resets.
//!
//! Each pass lists the conditions that hold now, each with a key naming its occurrence (the
//! slot, the window and its reset time, the expiry). A key not seen at the last pass raises its
//! event; the keys are kept in `<data dir>/alerts.json`, so a restarted daemon does not repeat
//! itself, and a condition that clears and comes back is a new occurrence.

use std::collections::BTreeSet;
use std::path::PathBuf;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use serde_json::Value;

use crate::agent::Kind;
use crate::catalog::{Catalog, Slot};
use crate::durable;
use crate::paths::Paths;
use crate::timefmt;
use crate::usage::{FIVE_HOUR, SEVEN_DAY};

/// Quota used, in percent, at which a window is worth a word.
const QUOTA_STEPS: [u8; 2] = [80, 95];
/// Days before a long-lived token expires at which it is worth a word.
const EXPIRY_STEPS: [i64; 2] = [30, 7];

/// One event, as `--on-event` commands receive it (JSON on stdin). Never holds a token.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// `needs-login`, `expires-soon`, `quota-high`, `quota-reset`.
    pub kind: &'static str,
    pub agent: String,
    pub slot: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// One sentence for a person.
    pub message: String,
    pub at: Timestamp,
    /// What the event is about, by kind: the window and its percent, the expiry, the reason.
    pub details: Value,
}

/// The conditions that held at the last pass.
pub struct Alerts {
    file: PathBuf,
    held: BTreeSet<String>,
}

impl Alerts {
    pub fn load(paths: &Paths) -> Self {
        let file = paths.data_dir.join("alerts.json");
        let held = std::fs::read(&file)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        Self { file, held }
    }

    /// The events of this pass: the conditions that hold now and did not at the last one.
    pub fn pass(&mut self, catalog: &Catalog, now: Timestamp) -> Vec<Event> {
        let current: Vec<(String, Option<Event>)> = catalog
            .slots
            .iter()
            .flat_map(|slot| conditions(slot, now))
            .collect();
        let mut events = Vec::new();
        let keys: BTreeSet<String> = current.iter().map(|(key, _)| key.clone()).collect();
        // A spent window that is no longer spent once its reset time has come: it reset.
        for key in self.held.difference(&keys) {
            if let Some(event) = reset_event(key, catalog, now) {
                events.push(event);
            }
        }
        for (key, event) in current {
            if !self.held.contains(&key)
                && let Some(event) = event
            {
                events.push(event);
            }
        }
        if keys != self.held {
            self.held = keys;
            if let Ok(text) = serde_json::to_vec(&self.held) {
                // Best effort: a lost file repeats an event once, it loses none.
                let _ = durable::write_atomic(&self.file, &text);
            }
        }
        events
    }
}

/// Every condition a slot is in now: (key, the event it raises when new).
fn conditions(slot: &Slot, now: Timestamp) -> Vec<(String, Option<Event>)> {
    let mut found = Vec::new();
    let event = |kind, message: String, details| Event {
        kind,
        agent: slot.agent.clone(),
        slot: slot.name.clone(),
        email: slot.email.clone(),
        message,
        at: now,
        details,
    };
    if let Some(code) = &slot.needs_login {
        found.push((
            format!("needs-login {}", slot.id),
            Some(event(
                "needs-login",
                format!(
                    "{} slot '{}' needs a new login ({code})",
                    slot.agent, slot.name
                ),
                serde_json::json!({"reason": code}),
            )),
        ));
    }
    if slot.kind == Kind::LongLived
        && let Some(expires) = slot.expires_at
    {
        let days = timefmt::days_remaining(expires, now);
        // Only the nearest step is news: a token found with 5 days left is not also "30 days".
        if let Some(step) = EXPIRY_STEPS.iter().rev().find(|step| days <= **step) {
            found.push((
                format!("expires-{step} {} {}", slot.id, expires.as_second()),
                Some(event(
                    "expires-soon",
                    match days {
                        ..0 => format!("{} slot '{}' has expired", slot.agent, slot.name),
                        _ => format!(
                            "{} slot '{}' expires {} ({})",
                            slot.agent,
                            slot.name,
                            timefmt::relative(expires, now),
                            timefmt::date(expires)
                        ),
                    },
                    serde_json::json!({"expires_at": expires, "days_left": days, "within_days": step}),
                )),
            ));
        }
    }
    let Some(reading) = &slot.usage else {
        return found;
    };
    for window in &reading.windows {
        if window.id != FIVE_HOUR && window.id != SEVEN_DAY {
            continue;
        }
        let (Some(percent), reset) = (window.percent, window.resets_at) else {
            continue;
        };
        if reset.is_some_and(|at| at <= now) {
            continue;
        }
        let period = reset.map_or(0, |at| at.as_second());
        if percent >= 100.0 {
            // Held while spent; its end is the reset event.
            found.push((format!("spent {} {} {period}", slot.id, window.id), None));
        }
        if let Some(step) = QUOTA_STEPS
            .iter()
            .rev()
            .find(|step| percent >= f64::from(**step))
        {
            let resets = reset.map_or(String::new(), |at| {
                format!(", resets {}", timefmt::relative(at, now))
            });
            found.push((
                format!("quota-{step} {} {} {period}", slot.id, window.id),
                Some(event(
                    "quota-high",
                    format!(
                        "{} slot '{}' has used {} of its {} window{resets}",
                        slot.agent,
                        slot.name,
                        crate::usage::percent_text(percent),
                        window.label
                    ),
                    serde_json::json!({"window": window.id, "percent": percent, "crossed": step, "resets_at": reset}),
                )),
            ));
        }
    }
    found
}

/// The event for a held key that no longer holds, when it was a spent window whose reset time
/// has come.
fn reset_event(key: &str, catalog: &Catalog, now: Timestamp) -> Option<Event> {
    let mut parts = key.split(' ');
    let ("spent", Some(id), Some(window), Some(period)) =
        (parts.next()?, parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let reset = Timestamp::from_second(period.parse().ok()?).ok()?;
    // Gone for another reason (the slot removed, a newer reading before the reset): no event.
    if reset > now + SignedDuration::from_mins(1) {
        return None;
    }
    let slot = catalog.get(id)?;
    let label = if window == FIVE_HOUR {
        "5-hour"
    } else {
        "7-day"
    };
    Some(Event {
        kind: "quota-reset",
        agent: slot.agent.clone(),
        slot: slot.name.clone(),
        email: slot.email.clone(),
        message: format!(
            "{} slot '{}' has quota again: its {label} window reset",
            slot.agent, slot.name
        ),
        at: now,
        details: serde_json::json!({"window": window, "reset_at": reset}),
    })
}
