//! Cross-process locks.
//!
//! - `FileLock`: an advisory `flock` on a file in the data directory. One guards the state
//!   (catalog, store, live file) for the length of a command; one per slot makes refreshes of a
//!   lineage single-flight across tokenkeeper processes. The kernel releases it when the process
//!   dies, so a crash never leaves one stuck.
//!
//! An agent's own refresh lock (Claude Code's lock directories) is its module's: see
//! `agent::claude::lock`.

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::perms;

pub struct FileLock {
    file: File,
}

impl FileLock {
    /// Blocks until no other process holds the lock at `path`.
    pub fn acquire(path: &Path) -> Result<Self> {
        let file = open(path)?;
        file.lock()
            .map_err(|err| Error::io("cannot lock", path, err))?;
        Ok(Self { file })
    }

    /// Takes the lock only if nobody holds it; `Ok(None)` when someone does.
    pub fn try_acquire(path: &Path) -> Result<Option<Self>> {
        let file = open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Self { file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(err)) => Err(Error::io("cannot lock", path, err)),
        }
    }
}

/// When a command still waiting for a lock says who holds it.
const SAY_AFTER: Duration = Duration::from_secs(1);
const POLL_FIRST: Duration = Duration::from_millis(20);
const POLL_MAX: Duration = Duration::from_millis(250);

impl FileLock {
    /// Waits up to `wait` for the lock at `path`; once taken, notes `doing` in it (with this
    /// pid) for whoever waits next. Past a second it says on stderr whom it waits for;
    /// `Ok(Err(holder))` when `wait` ran out, `holder` describing the other process.
    pub fn wait_for(
        path: &Path,
        doing: &str,
        wait: Duration,
    ) -> Result<std::result::Result<Self, String>> {
        let started = Instant::now();
        let mut poll = POLL_FIRST;
        let mut said = false;
        loop {
            if let Some(mut lock) = Self::try_acquire(path)? {
                // Best effort: the note only helps another waiter's message.
                let _ = lock.note(&format!("{} {doing}", std::process::id()));
                return Ok(Ok(lock));
            }
            let waited = started.elapsed();
            if waited >= wait {
                return Ok(Err(holder(path)));
            }
            if !said && waited >= SAY_AFTER {
                eprintln!("tokenkeeper: waiting for {}", holder(path));
                said = true;
            }
            std::thread::sleep(poll.min(wait - waited));
            poll = (poll * 2).min(POLL_MAX);
        }
    }

    /// `wait_for`, with running out of time as an error that names the holder.
    pub fn acquire_within(path: &Path, doing: &str, wait: Duration) -> Result<Self> {
        Self::wait_for(path, doing, wait)?.map_err(|holder| {
            Error::failure(format!(
                "gave up after {}s waiting for {holder}",
                wait.as_secs()
            ))
            .with_hint("try again once it is done; if it hangs, stop that process")
        })
    }
}

/// Who holds the lock at `path`, from the note its holder left: `pid 42, refreshing 'work'`.
fn holder(path: &Path) -> String {
    let note = perms::read_own(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    let mut parts = note.trim().splitn(2, ' ');
    match (
        parts.next().filter(|p| p.parse::<u32>().is_ok()),
        parts.next(),
    ) {
        (Some(pid), Some(doing)) => format!("pid {pid}, {doing}"),
        (Some(pid), None) => format!("pid {pid}"),
        _ => "another tokenkeeper process".to_string(),
    }
}

impl FileLock {
    /// Replaces the lock file's contents, e.g. with the holder's pid for others to report.
    pub fn note(&mut self, text: &str) -> Result<()> {
        use std::io::Write;
        self.file
            .set_len(0)
            .and_then(|()| self.file.write_all(text.as_bytes()))
            .map_err(|err| Error::io("cannot write", Path::new("lock file"), err))
    }
}

fn open(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        perms::ensure_private_dir(dir)?;
    }
    perms::open_own(path, false).map_err(|err| Error::io("cannot open lock file", path, err))
}
