//! Log lines to stderr. Threads that log a line per request (the proxy's workers) collect their
//! lines and write them in one go when they run out of work, as nginx writes its access log
//! from its workers: no writer thread to wake, no queue to lock, one write for many lines.
//! As with nginx, a stderr that cannot keep up (a full pipe) slows those threads down; no line
//! is dropped.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// How much a thread collects before writing even though it is still busy: a few hundred
/// lines, so a steady stream of requests cannot hold lines back for long.
const BATCH_BYTES: usize = 16 << 10;

thread_local! {
    /// This thread's unwritten lines, when it batches.
    static BATCH: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
    /// The second last stamped on this thread, and its text up to the fraction.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Logs go to stderr; `-v` info, `-vv` debug, `-vvv` trace, or `RUST_LOG` for full control.
pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "tokenkeeper=info",
        2 => "tokenkeeper=debug",
        _ => "tokenkeeper=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(io::stderr().is_terminal())
        .with_target(false)
        .with_timer(Utc)
        .with_writer(Stderr)
        .init();
}

/// From now on this thread's lines wait for [`flush`] (or a full batch).
pub fn batch() {
    BATCH.with_borrow_mut(|batch| {
        batch.get_or_insert_with(|| Vec::with_capacity(BATCH_BYTES));
    });
}

/// Writes the lines this thread has collected. Cheap when there are none.
pub fn flush() {
    BATCH.with_borrow_mut(|batch| {
        if let Some(lines) = batch
            && !lines.is_empty()
        {
            write_out(lines);
        }
    });
}

fn write_out(lines: &mut Vec<u8>) {
    // A log line that cannot be written has nowhere better to go.
    let _ = io::stderr().write_all(lines);
    lines.clear();
}

/// Where the log lines go: this thread's batch if it keeps one, else straight to stderr.
struct Stderr;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line
    }
}

/// One formatted log line (tracing-subscriber writes each in a single call).
struct Line;

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        BATCH.with_borrow_mut(|batch| match batch {
            Some(lines) => {
                lines.extend_from_slice(buf);
                if lines.len() >= BATCH_BYTES {
                    write_out(lines);
                }
                Ok(buf.len())
            }
            None => io::stderr().write(buf),
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// UTC timestamps to the microsecond, as tracing-subscriber writes them
/// (`2026-11-24T09:30:00.123456Z`), with the date and time of day worked out once a second
/// rather than for every line.
struct Utc;

impl FormatTime for Utc {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let second = now.as_secs();
        SECOND.with_borrow_mut(|(stamped, text)| {
            if *stamped != second {
                text.clear();
                let time = i64::try_from(second)
                    .ok()
                    .and_then(|second| jiff::Timestamp::from_second(second).ok())
                    .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
                write!(text, "{}", time.strftime("%Y-%m-%dT%H:%M:%S"))?;
                *stamped = second;
            }
            write!(w, "{text}.{:06}Z", now.subsec_micros())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_as_utc_to_the_microsecond() {
        let mut line = String::new();
        Utc.format_time(&mut Writer::new(&mut line)).unwrap();
        let mut again = String::new();
        Utc.format_time(&mut Writer::new(&mut again)).unwrap();
        for text in [&line, &again] {
            let parsed: jiff::Timestamp = text.parse().unwrap();
            let off = jiff::Timestamp::now().duration_since(parsed).abs();
            assert!(off < jiff::SignedDuration::from_secs(5), "{text}");
            assert_eq!(text.len(), "2026-11-24T09:30:00.123456Z".len(), "{text}");
            assert!(text.ends_with('Z'), "{text}");
        }
    }
}
