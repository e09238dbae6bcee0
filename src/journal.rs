//! The write-ahead journal: new tokens are made durable here before any store is touched.
//!
//! A refresh rotates the refresh token: from the moment the provider answers, the new tokens
//! are the only valid ones. So they are written to `<data dir>/journal/` (0600, atomic) first,
//! then applied to the secret store, the live file and the catalog, and only then is the entry
//! deleted. Every command replays pending entries before doing anything else, so a process
//! killed at any step is finished by the next one.
//!
//! An entry is written while its writer holds the slot's lock, and its temporary file is named
//! after the slot. A complete temporary file whose slot lock is free belongs to a writer that
//! died between fsync and rename: it is recovered like an entry, since it may hold the only
//! copy of a refresh token.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::durable::{self, TEMP_PREFIX};
use crate::error::{Error, Result};
use crate::lock::FileLock;
use crate::paths::Paths;
use crate::perms;
use crate::secret::Secret;

/// One pending update of a slot's credential.
#[derive(Debug, Serialize, Deserialize)]
pub struct Entry {
    pub agent: String,
    pub slot: String,
    /// The whole new credential blob.
    pub credential: Secret,
    /// Fingerprint of the live file when the refresh began, if the slot owned it then: the
    /// live file is rewritten only if it still holds those bytes (or already the new ones).
    pub live_before: Option<String>,
    /// The account the token endpoint named, which fills in a slot whose account was unknown.
    #[serde(default)]
    pub account_uuid: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    pub created_at: Timestamp,
}

/// A pending entry and what to hold while applying it.
pub struct Pending {
    pub path: PathBuf,
    pub entry: Entry,
    /// For a recovered temporary file: the dead writer's slot lock, held until applied.
    _slot_lock: Option<FileLock>,
}

pub struct Journal {
    dir: PathBuf,
    paths: Paths,
}

impl Journal {
    pub fn new(paths: &Paths) -> Self {
        Self {
            dir: paths.data_dir.join("journal"),
            paths: paths.clone(),
        }
    }

    /// Makes `entry` durable. The caller must hold the slot's lock.
    pub fn write(&self, entry: &Entry) -> Result<PathBuf> {
        perms::ensure_private_dir(&self.dir)?;
        let path = self.dir.join(format!(
            "{}-{}.json",
            entry.created_at.as_microsecond(),
            entry.slot
        ));
        let json = Secret::new(serde_json::to_string(entry).expect("entries serialise"));
        durable::write_atomic_tagged(
            &path,
            json.expose_secret().as_bytes(),
            &format!("{}.", entry.slot),
        )?;
        Ok(path)
    }

    /// Pending entries, oldest first. A damaged entry is reported and kept, never deleted.
    pub fn pending(&self) -> Result<Vec<Pending>> {
        let names = match fs::read_dir(&self.dir) {
            Ok(names) => names,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(Error::io("cannot read", &self.dir, err)),
        };
        perms::check_private(&self.dir, true)?;
        let mut paths: Vec<PathBuf> = names.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        let mut pending = Vec::new();
        for path in paths {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let slot_lock = if let Some(rest) = name.strip_prefix(TEMP_PREFIX) {
                // An unfinished write: only a dead writer's is ours to take.
                let Some(slot) = rest.split('.').next().filter(|s| !s.is_empty()) else {
                    continue;
                };
                match FileLock::try_acquire(&self.paths.slot_lock(slot))? {
                    Some(lock) => Some(lock),
                    None => continue,
                }
            } else if name.ends_with(".json") {
                None
            } else {
                continue;
            };
            perms::check_private(&path, false)?;
            let bytes = zeroize::Zeroizing::new(
                fs::read(&path).map_err(|err| Error::io("cannot read", &path, err))?,
            );
            match serde_json::from_slice::<Entry>(&bytes) {
                Ok(entry) => {
                    if slot_lock.is_some() {
                        info!(path = %path.display(), "recovering an entry whose writer died before renaming it");
                    }
                    pending.push(Pending {
                        path,
                        entry,
                        _slot_lock: slot_lock,
                    });
                }
                // A dead writer's partial temporary file was never durable: nothing to recover.
                Err(_) if slot_lock.is_some() => durable::remove(&path).map(drop)?,
                Err(_) => warn!(path = %path.display(), "skipping a damaged journal entry"),
            }
        }
        Ok(pending)
    }

    pub fn remove(&self, path: &Path) -> Result<()> {
        durable::remove(path).map(drop)
    }
}
