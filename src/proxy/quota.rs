//! What a slot-backed proxy learns of its slot's quota from the answers it relays, with no
//! request of its own. Readings reach the catalog from a thread of their own, never on a
//! request's path: at once when a reading moved (a window crossed a 5 % step or got a new
//! reset time, or it is the first), otherwise at most once a minute, so a busy proxy does not
//! rewrite the catalog for every answer.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use http::HeaderMap;
use jiff::Timestamp;
use tracing::{debug, warn};

use crate::agent::Agent;
use crate::error::{Error, Result};
use crate::keeper::Keeper;
use crate::paths::Paths;
use crate::usage::{self, Snapshot};

/// The longest a reading waits before it is kept.
const EVERY: Duration = Duration::from_secs(60);
/// Readings waiting for the recorder; past this, answers are not read until it catches up.
const QUEUE: usize = 64;

pub struct QuotaWatch {
    agent: Agent,
    readings: SyncSender<Snapshot>,
}

impl QuotaWatch {
    /// Starts keeping the readings of slot `slot_id`.
    pub fn start(paths: Paths, agent: Agent, slot_id: String) -> Result<Self> {
        let (readings, taken) = mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("proxy-quota".into())
            .spawn(move || record(&paths, &slot_id, &taken))
            .map_err(|err| Error::failure(format!("cannot start the quota recorder: {err}")))?;
        Ok(Self { agent, readings })
    }

    /// Reads the quota headers of an answer, if it has any.
    pub fn observe(&self, headers: &HeaderMap) {
        if let Some(reading) = usage::headers::snapshot(self.agent, headers, Timestamp::now()) {
            // A full queue loses nothing that matters: the next answer carries a newer reading.
            let _ = self.readings.try_send(reading);
        }
    }
}

fn record(paths: &Paths, slot_id: &str, readings: &Receiver<Snapshot>) {
    let mut kept: Option<(Instant, Snapshot)> = None;
    let mut pending: Option<Snapshot> = None;
    loop {
        let wait = match &kept {
            Some((at, _)) if pending.is_some() => EVERY.saturating_sub(at.elapsed()),
            _ => Duration::from_secs(24 * 3600),
        };
        let closed = match readings.recv_timeout(wait) {
            Ok(reading) => {
                pending = Some(reading);
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        // Only the newest of the readings waiting counts.
        pending = readings.try_iter().last().or(pending);
        let Some(reading) = pending.take() else {
            if closed {
                return;
            }
            continue;
        };
        let due = closed
            || kept
                .as_ref()
                .is_none_or(|(at, last)| at.elapsed() >= EVERY || moved(last, &reading));
        if !due {
            pending = Some(reading);
            continue;
        }
        match Keeper::open(paths.clone())
            .and_then(|mut keeper| keeper.record_observed_usage(slot_id, reading.clone()))
        {
            Ok(kept) => debug!(kept, "quota reading from the relayed answers"),
            // Not tried again at once: the next reading comes with the next answers.
            Err(err) => warn!(error = %err.message(), "cannot keep the quota reading"),
        }
        kept = Some((Instant::now(), reading));
        if closed {
            return;
        }
    }
}

/// Whether `now` says something `last` did not: a window new, past another 5 % step, or with
/// another reset time (a minute either way is the same reset, told in seconds from now).
fn moved(last: &Snapshot, now: &Snapshot) -> bool {
    let step = |percent: Option<f64>| percent.map(|p| (p / 5.0).floor() as i64);
    now.windows
        .iter()
        .any(|window| match last.window(&window.id) {
            None => true,
            Some(old) => {
                step(old.percent) != step(window.percent)
                    || match (old.resets_at, window.resets_at) {
                        (Some(a), Some(b)) => a.duration_until(b).abs().as_secs() > 60,
                        (a, b) => a.is_some() != b.is_some(),
                    }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::{Source, Window};

    fn reading(five: f64, reset: i64) -> Snapshot {
        Snapshot {
            taken_at: Timestamp::now(),
            windows: vec![Window {
                id: usage::FIVE_HOUR.into(),
                label: "5-hour".into(),
                percent: Some(five),
                resets_at: Timestamp::from_second(reset).ok(),
            }],
            credits: None,
            source: Source::Proxy,
        }
    }

    #[test]
    fn a_reading_moved_when_it_crosses_a_step_or_resets_elsewhere() {
        let last = reading(41.0, 1_800_000_000);
        assert!(!moved(&last, &reading(44.9, 1_800_000_030)));
        assert!(moved(&last, &reading(45.0, 1_800_000_000)));
        assert!(moved(&last, &reading(41.0, 1_800_018_000)));
        let mut more = reading(41.0, 1_800_000_000);
        more.windows.push(Window {
            id: usage::SEVEN_DAY.into(),
            label: "7-day".into(),
            percent: Some(3.0),
            resets_at: None,
        });
        assert!(moved(&last, &more));
    }
}
