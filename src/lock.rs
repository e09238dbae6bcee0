//! Cross-process locks.
//!
//! `StateLock` serialises every tokenkeeper command that reads or changes slots, so two commands
//! never interleave their updates of the catalog, the store and an agent's live file. It is an
//! advisory `flock` on a file in the data directory, released when the process exits — also by
//! a crash, so a killed process never leaves it stuck.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, Result};

pub struct StateLock {
    _file: File,
}

impl StateLock {
    /// Blocks until no other tokenkeeper process holds the lock.
    pub fn acquire(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)
            .map_err(|err| Error::io("cannot open lock file", path, err))?;
        file.lock()
            .map_err(|err| Error::io("cannot lock", path, err))?;
        Ok(Self { _file: file })
    }
}
