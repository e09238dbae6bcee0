//! The file backend: one 0600 file per secret under `<data dir>/store/<service>/<account>`,
//! directories 0700, every write through `durable::write_atomic`.
//!
//! Service and account names are percent-encoded into file names, so any key maps to exactly
//! one path inside the store and none can escape it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::durable;
use crate::error::{Error, Result};
use crate::perms;
use crate::secret::Secret;
use crate::store::{SecretKey, SecretStore};

/// Largest secret the file backend reads back; anything bigger was not written by tokenkeeper.
const MAX_SECRET_BYTES: u64 = 1 << 20;

pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn path(&self, key: &SecretKey) -> PathBuf {
        self.root
            .join(encode(&key.service))
            .join(encode(&key.account))
    }

    fn read(&self, path: &Path) -> Result<Option<Secret>> {
        perms::check_private(&self.root, true)?;
        if let Some(dir) = path.parent() {
            perms::check_private(dir, true)?;
        }
        let meta = match fs::metadata(path) {
            Ok(meta) => meta,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(Error::io("cannot read", path, err)),
        };
        perms::check_private(path, false)?;
        if meta.len() > MAX_SECRET_BYTES {
            return Err(Error::failure(format!(
                "{} is larger than 1 MiB; it is not a tokenkeeper secret",
                path.display()
            )));
        }
        let bytes = perms::read_own(path).map_err(|err| Error::io("cannot read", path, err))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::failure(format!("{} is not UTF-8 text", path.display())))?;
        Ok(Some(Secret::new(text)))
    }
}

impl SecretStore for FileStore {
    fn name(&self) -> &'static str {
        "file"
    }

    fn get(&self, key: &SecretKey) -> Result<Option<Secret>> {
        self.read(&self.path(key))
    }

    fn put(&self, key: &SecretKey, value: &Secret) -> Result<()> {
        let path = self.path(key);
        perms::ensure_private_dir(&self.root)?;
        perms::ensure_private_dir(path.parent().expect("store paths have a parent"))?;
        durable::write_atomic(&path, value.expose_secret().as_bytes())
    }

    fn delete(&self, key: &SecretKey) -> Result<bool> {
        durable::remove(&self.path(key))
    }
}

/// Percent-encodes everything but `[A-Za-z0-9_-]` (and `.` after the first character), so the
/// result is a plain file name: never empty, never `.` or `..`, never hidden.
fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        let plain = b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0);
        if plain {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push('%');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn store() -> (tempfile::TempDir, FileStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("store"));
        (dir, store)
    }

    #[test]
    fn put_get_delete() {
        let (_dir, store) = store();
        let key = SecretKey::slot("claude", "abc");
        assert!(store.get(&key).unwrap().is_none());
        store.put(&key, &Secret::new("one".into())).unwrap();
        store.put(&key, &Secret::new("two ✓".into())).unwrap();
        assert_eq!(store.get(&key).unwrap().unwrap().expose_secret(), "two ✓");
        assert!(store.delete(&key).unwrap());
        assert!(!store.delete(&key).unwrap());
        assert!(store.get(&key).unwrap().is_none());
    }

    #[test]
    fn files_are_0600_in_0700_dirs() {
        let (_dir, store) = store();
        let key = SecretKey::ralph("claude");
        store.put(&key, &Secret::new("v".into())).unwrap();
        let path = store.path(&key);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        assert_eq!(
            fs::metadata(&store.root).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }

    #[test]
    fn refuses_a_world_readable_secret() {
        let (_dir, store) = store();
        let key = SecretKey::ralph("claude");
        store.put(&key, &Secret::new("v".into())).unwrap();
        fs::set_permissions(store.path(&key), fs::Permissions::from_mode(0o644)).unwrap();
        let err = store.get(&key).unwrap_err();
        assert!(err.message().contains("mode 644"));
    }

    #[test]
    fn names_cannot_escape_the_store() {
        assert_eq!(encode(".."), "%2E.");
        assert_eq!(encode("a/b"), "a%2Fb");
        assert_eq!(encode(""), "%");
        assert_eq!(encode("claude-token"), "claude-token");
    }
}
