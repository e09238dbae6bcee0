//! The write-ahead journal: new tokens are made durable here before any store is touched.
//!
//! A refresh rotates the refresh token: from the moment the provider answers, the new tokens
//! are the only valid ones. So they are written to `<data dir>/journal/` (0600, atomic) first,
//! then applied to the secret store, the live file and the catalog, and only then is the entry
//! deleted. Every command replays pending entries before doing anything else, so a process
//! killed at any step is finished by the next one.
//!
//! A refresh's entry holds the token endpoint's answer exactly as received, next to the
//! credential it refreshed: it is made durable before anything reads the answer, so an answer
//! that cannot be read (absurd, half-formed) is never lost with the tokens it may carry. An
//! entry that cannot be applied at all is moved to `journal/unusable/` (0600) and its slot
//! marked, instead of blocking every command; `doctor` names it.
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

use crate::agent::Credential;
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
    /// The whole new credential blob (entries that are not refreshes, and older entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<Secret>,
    /// The credential the refresh started from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<Secret>,
    /// The token endpoint's answer, byte for byte as received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<Secret>,
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

/// What an entry makes of its slot.
pub struct Resolved {
    pub credential: Credential,
    /// The account the token endpoint named, if it did.
    pub account_uuid: Option<String>,
    pub email: Option<String>,
}

impl Entry {
    /// The entry of a refresh: the answer as received, to be read only once it is durable.
    pub fn refreshed(
        agent: &str,
        slot: &str,
        base: &Credential,
        answer: Secret,
        live_before: Option<String>,
        received_at: Timestamp,
    ) -> Self {
        Self {
            agent: agent.to_string(),
            slot: slot.to_string(),
            credential: None,
            base: Some(base.to_secret_json()),
            answer: Some(answer),
            live_before,
            account_uuid: None,
            email: None,
            created_at: received_at,
        }
    }

    /// The slot's new credential. `Err` says why the entry cannot be applied (naming no value).
    pub fn resolve(&self) -> std::result::Result<Resolved, String> {
        if let Some(whole) = &self.credential {
            let credential = Credential::parse(whole.expose_secret().as_bytes(), "the entry")
                .map_err(|err| err.message().to_string())?;
            return Ok(Resolved {
                credential,
                account_uuid: self.account_uuid.clone(),
                email: self.email.clone(),
            });
        }
        let (Some(base), Some(answer)) = (&self.base, &self.answer) else {
            return Err("the entry holds no credential".into());
        };
        let mut credential = Credential::parse(
            base.expose_secret().as_bytes(),
            "the entry's base credential",
        )
        .map_err(|err| err.message().to_string())?;
        let tokens = crate::agent::provider::interpret(answer)
            .map_err(|why| format!("the provider's answer cannot be used: {why}"))?;
        credential.apply_refresh(&tokens, self.created_at);
        Ok(Resolved {
            credential,
            account_uuid: tokens.account_uuid.clone(),
            email: tokens.email.clone(),
        })
    }
}

/// A pending entry and what to hold while applying it.
pub struct Pending {
    pub path: PathBuf,
    /// `Err`: the file is not a readable entry (it is kept, to be set aside).
    pub entry: std::result::Result<Entry, String>,
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
                perms::read_own(&path).map_err(|err| Error::io("cannot read", &path, err))?,
            );
            match serde_json::from_slice::<Entry>(&bytes) {
                Ok(entry) => {
                    if slot_lock.is_some() {
                        info!(path = %path.display(), "recovering an entry whose writer died before renaming it");
                    }
                    pending.push(Pending {
                        path,
                        entry: Ok(entry),
                        _slot_lock: slot_lock,
                    });
                }
                // A dead writer's partial temporary file was never durable: nothing to recover.
                Err(_) if slot_lock.is_some() => durable::remove(&path).map(drop)?,
                Err(err) => {
                    warn!(path = %path.display(), "a damaged journal entry");
                    pending.push(Pending {
                        path,
                        entry: Err(format!(
                            "not a readable journal entry ({})",
                            json_error_kind(&err)
                        )),
                        _slot_lock: None,
                    });
                }
            }
        }
        Ok(pending)
    }

    pub fn remove(&self, path: &Path) -> Result<()> {
        durable::remove(path).map(drop)
    }

    /// Where entries that cannot be applied are kept.
    pub fn unusable_dir(&self) -> PathBuf {
        self.dir.join("unusable")
    }

    /// Moves an entry that cannot be applied out of the way (0600, in a 0700 directory),
    /// keeping its bytes: it may hold the only copy of a token someone can still recover.
    pub fn set_aside(&self, path: &Path) -> Result<PathBuf> {
        let dir = self.unusable_dir();
        perms::ensure_private_dir(&dir)?;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let name = name.strip_prefix(TEMP_PREFIX).unwrap_or(&name).to_string();
        let to = dir.join(name);
        fs::rename(path, &to).map_err(|err| Error::io("cannot move aside", path, err))?;
        durable::sync_parent(&to).map_err(|err| Error::io("cannot sync", &to, err))?;
        Ok(to)
    }

    /// Entries set aside so far, oldest first.
    pub fn unusable(&self) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = fs::read_dir(self.unusable_dir())
            .map(|names| names.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        found.sort();
        found
    }
}

/// serde_json's error category as a word, for messages that must not quote the content.
fn json_error_kind(err: &serde_json::Error) -> &'static str {
    match err.classify() {
        serde_json::error::Category::Eof => "truncated",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "wrong fields",
        serde_json::error::Category::Io => "unreadable",
    }
}
