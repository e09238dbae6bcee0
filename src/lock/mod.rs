//! Cross-process locks.
//!
//! - `FileLock`: an advisory `flock` on a file in the data directory. One guards the state
//!   (catalog, store, live file) for the length of a command; one per slot makes refreshes of a
//!   lineage single-flight across tokenkeeper processes. The kernel releases it when the process
//!   dies, so a crash never leaves one stuck.
//! - `ClaudeLock` (in `claude`): Claude Code's own refresh lock, so tokenkeeper and Claude Code
//!   never refresh the live lineage at the same time.

mod claude;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

pub use claude::{CLAUDE_STALE_AFTER, ClaudeLock};

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
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|err| Error::io("cannot open lock file", path, err))
}
