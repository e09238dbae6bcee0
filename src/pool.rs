//! Choosing among one person's slots of an agent by the quota each has left.
//!
//! A slot's headroom is the share left in its tightest quota window (the 5-hour, the weekly, and
//! Codex's windows of other lengths), from its last reading. A window whose reset time has
//! passed since the reading counts as empty again. Per-model windows (7-day Opus, Sonnet) are
//! left out: they limit one model, not the account.

use jiff::Timestamp;

use crate::catalog::Slot;
use crate::usage::{FIVE_HOUR, SEVEN_DAY, Snapshot, Window};

/// How a slot is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Strategy {
    /// The slot with the most headroom.
    Best,
    /// The next slot in `list` order (after the current one) that has quota left.
    Next,
}

/// What the choice looks at of a slot.
#[derive(Debug, Clone, Copy)]
pub struct Standing<'a> {
    pub id: &'a str,
    pub needs_login: bool,
    pub usage: Option<&'a Snapshot>,
}

impl<'a> From<&'a Slot> for Standing<'a> {
    fn from(slot: &'a Slot) -> Self {
        Self {
            id: &slot.id,
            needs_login: slot.needs_login.is_some(),
            usage: slot.usage.as_ref(),
        }
    }
}

/// The percent left of a slot's tightest window, `None` without a reading.
pub fn headroom(slot: Standing<'_>, now: Timestamp) -> Option<f64> {
    let reading = slot.usage?;
    reading
        .windows
        .iter()
        .filter(|window| limits_the_account(window))
        .map(|window| match (window.percent, window.resets_at) {
            (_, Some(reset)) if reset <= now => 100.0,
            (Some(used), _) => (100.0 - used).clamp(0.0, 100.0),
            (None, _) => 100.0,
        })
        .reduce(f64::min)
}

/// When the slot's spent windows reset (the latest of them), if a window is spent.
pub fn spent_until(slot: Standing<'_>, now: Timestamp) -> Option<Timestamp> {
    let reading = slot.usage?;
    let spent: Vec<&Window> = reading
        .windows
        .iter()
        .filter(|window| limits_the_account(window))
        .filter(|window| window.percent.is_some_and(|used| used >= 100.0))
        .filter(|window| window.resets_at.is_none_or(|reset| reset > now))
        .collect();
    if spent.is_empty() {
        return None;
    }
    // A spent window with no reset time is spent for as long as anyone can tell.
    spent
        .iter()
        .map(|window| window.resets_at.unwrap_or(Timestamp::MAX))
        .max()
}

fn limits_the_account(window: &Window) -> bool {
    window.id == FIVE_HOUR || window.id == SEVEN_DAY || window.id.starts_with("window_")
}

/// Whether a slot can take requests now: logged in and no window spent.
pub fn usable(slot: Standing<'_>, now: Timestamp) -> bool {
    !slot.needs_login && spent_until(slot, now).is_none()
}

/// The slot to use among `slots` (in `list` order), by its index, `current` being the one in
/// use. `None` when no slot but the current one (for `Next`) or none at all (for `Best`) is
/// usable.
pub fn choose(
    slots: &[Standing<'_>],
    current: Option<&str>,
    strategy: Strategy,
    now: Timestamp,
) -> Option<usize> {
    let at = current.and_then(|id| slots.iter().position(|slot| slot.id == id));
    match strategy {
        Strategy::Next => {
            let start = at.map_or(0, |i| i + 1);
            (0..slots.len())
                .map(|step| (start + step) % slots.len())
                .find(|&i| Some(slots[i].id) != current && usable(slots[i], now))
        }
        Strategy::Best => {
            // Known headroom first, most first; then slots with no reading; ties keep the
            // current slot (no switch for nothing), then `list` order.
            let rank = |slot: Standing<'_>| {
                (
                    headroom(slot, now).map_or(-1.0, |left| left),
                    Some(slot.id) == current,
                )
            };
            (0..slots.len()).filter(|&i| usable(slots[i], now)).fold(
                None,
                |best: Option<usize>, i| match best {
                    Some(best) if !better(rank(slots[i]), rank(slots[best])) => Some(best),
                    _ => Some(i),
                },
            )
        }
    }
}

fn better(a: (f64, bool), b: (f64, bool)) -> bool {
    a.0 > b.0 || (a.0 == b.0 && a.1 && !b.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::Kind;
    use crate::store::Backend;
    use crate::usage::{Snapshot, Source};

    fn slot(id: &str, five: Option<f64>, seven: Option<f64>, reset_in_s: i64) -> Slot {
        let now = Timestamp::now();
        let mut slot = Slot::blank(id.into(), id, "claude", Kind::Oauth, Backend::File, now);
        let window = |wid: &str, percent: Option<f64>| Window {
            id: wid.into(),
            label: wid.into(),
            percent,
            resets_at: Some(now + jiff::SignedDuration::from_secs(reset_in_s)),
        };
        if five.is_some() || seven.is_some() {
            slot.usage = Some(Snapshot {
                taken_at: now,
                windows: vec![window(FIVE_HOUR, five), window(SEVEN_DAY, seven)],
                credits: None,
                source: Source::Poll,
            });
        }
        slot
    }

    fn pick<'a>(slots: &[&'a Slot], current: Option<&str>, strategy: Strategy) -> Option<&'a str> {
        let standings: Vec<Standing<'_>> = slots.iter().map(|slot| Standing::from(*slot)).collect();
        choose(&standings, current, strategy, Timestamp::now()).map(|i| slots[i].id.as_str())
    }

    #[test]
    fn best_takes_the_most_headroom_of_the_tightest_window() {
        let a = slot("a", Some(10.0), Some(95.0), 3600);
        let b = slot("b", Some(60.0), Some(20.0), 3600);
        let c = slot("c", None, None, 0);
        assert_eq!(pick(&[&a, &b, &c], Some("a"), Strategy::Best), Some("b"));
        // No reading ranks below any known headroom, but above nothing.
        let spent = slot("spent", Some(100.0), Some(5.0), 3600);
        assert_eq!(pick(&[&spent, &c], None, Strategy::Best), Some("c"));
        // A tie keeps the current slot.
        let d = slot("d", Some(60.0), Some(20.0), 3600);
        assert_eq!(pick(&[&b, &d], Some("d"), Strategy::Best), Some("d"));
    }

    #[test]
    fn next_skips_spent_slots_and_those_needing_a_login_and_wraps_around() {
        let a = slot("a", Some(10.0), None, 3600);
        let b = slot("b", Some(100.0), None, 3600);
        let mut c = slot("c", Some(1.0), None, 3600);
        c.needs_login = Some("invalid_grant".into());
        assert_eq!(pick(&[&a, &b, &c], Some("a"), Strategy::Next), None);
        let d = slot("d", Some(50.0), None, 3600);
        let slots = [&a, &b, &c, &d];
        assert_eq!(pick(&slots, Some("a"), Strategy::Next), Some("d"));
        assert_eq!(pick(&slots, Some("d"), Strategy::Next), Some("a"));
        assert_eq!(pick(&slots, None, Strategy::Next), Some("a"));
    }

    #[test]
    fn a_window_whose_reset_has_passed_counts_as_empty() {
        let now = Timestamp::now();
        let reset = slot("reset", Some(100.0), Some(30.0), -60);
        assert!(usable((&reset).into(), now));
        assert_eq!(headroom((&reset).into(), now), Some(100.0));
        let spent = slot("spent", Some(100.0), Some(30.0), 600);
        assert!(!usable((&spent).into(), now));
        assert!(spent_until((&spent).into(), now).unwrap() > now);
    }
}
