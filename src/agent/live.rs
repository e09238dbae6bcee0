//! An agent's live credential: the file or keychain item the agent itself reads its login
//! from, and which `use` writes. Each agent module says where it is and how it is written
//! (`Agent::live`); this module reads, writes and removes it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::agent::Credential;
use crate::durable;
use crate::error::{Error, Result};
use crate::perms;
use crate::secret::Secret;
use crate::store::{KeychainStore, SecretKey, SecretServiceStore, SecretStore};

const MAX_LIVE_BYTES: u64 = 1 << 20;

/// How the agent itself writes its file: the bytes `use` writes must be what it would write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// One line, no spaces (Claude Code).
    Compact,
    /// Indented by two spaces (Codex, serde_json's pretty printer).
    Pretty,
}

pub enum Live {
    File {
        path: PathBuf,
        style: Style,
        /// The agent, for messages: `Claude Code`, `Codex`.
        owner: &'static str,
    },
    Keychain {
        store: KeychainStore,
        key: SecretKey,
    },
    /// An item in the OS keyring as the `keyring` crate keeps one on Linux: the Secret
    /// Service item, and a copy in the kernel's persistent keyring that the crate reads first
    /// (so both are written: a stale kernel copy would hand the agent a spent token).
    Keyring {
        key: SecretKey,
        /// The agent, for messages.
        owner: &'static str,
    },
    /// The agent keeps its login somewhere tokenkeeper does not manage: nothing is read there,
    /// and writing fails with `why`.
    Elsewhere { why: String, hint: String },
}

/// What the live location held when read.
pub struct LiveCredential {
    pub bytes: Secret,
    pub parsed: Result<Credential>,
}

impl LiveCredential {
    pub fn fingerprint(&self) -> String {
        fingerprint(self.bytes.expose_secret().as_bytes())
    }
}

impl Live {
    /// For messages: the file's path, or the Keychain item.
    pub fn describe(&self) -> String {
        match self {
            Self::File { path, .. } => path.display().to_string(),
            Self::Keychain { key, .. } => format!("the Keychain item {key}"),
            Self::Elsewhere { why, .. } => why.clone(),
            Self::Keyring { key, owner } => format!("{owner}'s keyring item {key}"),
        }
    }

    pub fn exists(&self) -> Result<bool> {
        match self {
            Self::File { path, .. } => Ok(path.exists()),
            Self::Keychain { store, key } => Ok(store.get(key)?.is_some()),
            Self::Elsewhere { .. } => Ok(false),
            Self::Keyring { key, .. } => Ok(SecretServiceStore::rust_keyring().get(key)?.is_some()),
        }
    }

    /// `Ok(None)` when the agent has no stored login.
    pub fn read(&self) -> Result<Option<LiveCredential>> {
        let (bytes, origin) = match self {
            Self::File { path, owner, .. } => match read_file(path, owner)? {
                Some(bytes) => (bytes, path.display().to_string()),
                None => return Ok(None),
            },
            Self::Keychain { store, key } => match store.get(key)? {
                Some(bytes) => (bytes, self.describe()),
                None => return Ok(None),
            },
            Self::Elsewhere { .. } => return Ok(None),
            Self::Keyring { key, .. } => match SecretServiceStore::rust_keyring().get(key)? {
                Some(bytes) => (bytes, self.describe()),
                None => return Ok(None),
            },
        };
        let parsed = Credential::parse(bytes.expose_secret().as_bytes(), &origin);
        Ok(Some(LiveCredential { bytes, parsed }))
    }

    /// Writes `credential` as the agent would (its JSON style; a 0600 file replaced
    /// atomically, or the keychain/keyring item) and returns the fingerprint of the bytes
    /// written.
    pub fn write(&self, credential: &Credential) -> Result<String> {
        let json = self.bytes_of(credential);
        match self {
            Self::File { path, .. } => {
                let dir = path.parent().expect("a credentials file has a parent");
                perms::ensure_dir(dir)?;
                durable::write_atomic(path, json.expose_secret().as_bytes())?;
            }
            Self::Keychain { store, key } => store.put(key, &json)?,
            Self::Elsewhere { why, hint } => {
                return Err(Error::failure(why.clone()).with_hint(hint.clone()));
            }
            Self::Keyring { key, .. } => {
                SecretServiceStore::rust_keyring().put(key, &json)?;
                kernel_copy(key, Some(&json));
            }
        }
        Ok(fingerprint(json.expose_secret().as_bytes()))
    }

    /// The fingerprint `write` would give for `credential`.
    pub fn fingerprint_of(&self, credential: &Credential) -> String {
        fingerprint(self.bytes_of(credential).expose_secret().as_bytes())
    }

    /// The bytes the agent keeps for `credential` here: pretty where it writes its file so,
    /// compact everywhere else.
    fn bytes_of(&self, credential: &Credential) -> Secret {
        match self {
            Self::File {
                style: Style::Pretty,
                ..
            } => credential.to_pretty_json(),
            _ => credential.to_secret_json(),
        }
    }

    pub fn remove(&self) -> Result<bool> {
        match self {
            Self::File { path, .. } => durable::remove(path),
            Self::Keychain { store, key } => store.delete(key),
            Self::Elsewhere { .. } => Ok(false),
            Self::Keyring { key, .. } => {
                let removed = SecretServiceStore::rust_keyring().delete(key)?;
                kernel_copy(key, None);
                Ok(removed)
            }
        }
    }
}

/// Writes (or, with `None`, invalidates) the `keyring` crate's copy of an item in the user's
/// persistent kernel keyring, described `keyring-rs:<account>@<service>`. Where that keyring
/// cannot be reached (containers often deny it), the agent cannot keep a copy there either:
/// nothing is done, and that is logged.
fn kernel_copy(key: &SecretKey, value: Option<&Secret>) {
    use linux_keyutils::{KeyError, KeyRing, KeyRingIdentifier};
    let description = format!("keyring-rs:{}@{}", key.account, key.service);
    let done = KeyRing::get_persistent(KeyRingIdentifier::Session).and_then(|ring| match value {
        Some(value) => ring
            .add_key(&description, value.expose_secret().as_bytes())
            .map(|_| ()),
        None => match ring.search(&description) {
            Ok(found) => found.invalidate(),
            Err(KeyError::KeyDoesNotExist) => Ok(()),
            Err(err) => Err(err),
        },
    });
    if let Err(err) = done {
        tracing::info!(item = %key, error = ?err, "the kernel keyring cannot be reached; only the Secret Service item was changed");
    }
}

/// The credentials file's text, `None` when there is none.
fn read_file(path: &Path, owner: &str) -> Result<Option<Secret>> {
    let action = format!("cannot read {owner}'s credentials");
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(Error::io(&action, path, err)),
    };
    if meta.len() > MAX_LIVE_BYTES {
        return Err(Error::failure(format!(
            "{} is larger than 1 MiB; it is not a credential file",
            path.display()
        )));
    }
    let bytes = fs::read(path).map_err(|err| Error::io(&action, path, err))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::failure(format!("{} is not UTF-8 text", path.display())))?;
    Ok(Some(Secret::new(text)))
}

/// SHA-256 of the bytes, hex: tells a changed live file from the one tokenkeeper wrote.
pub fn fingerprint(bytes: &[u8]) -> String {
    crate::hex::encode(&Sha256::digest(bytes))
}
