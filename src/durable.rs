//! Durable file replacement: the only code that writes a secret file.
//!
//! A write goes to a temporary file in the destination's directory (mode 0600 from birth), is
//! fsynced, renamed over the destination and followed by an fsync of the directory, so a reader
//! — or a process that comes back after a crash — sees either the old bytes or the new ones,
//! never a mix. Stray temporary files from a crash start with `.tokenkeeper-` and are ignored.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Prefix of the temporary files `write_atomic` creates; readers skip such names.
pub const TEMP_PREFIX: &str = ".tokenkeeper-";

/// Replaces `path` with `bytes`, mode 0600, atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_tagged(path, bytes, "")
}

/// `write_atomic` whose temporary file is named `.tokenkeeper-<tag>…tmp`, so a reader can tell
/// whose unfinished write it is.
pub fn write_atomic_tagged(path: &Path, bytes: &[u8], tag: &str) -> Result<()> {
    write_atomic_io(path, bytes, tag).map_err(|err| Error::io("cannot write", path, err))
}

fn write_atomic_io(path: &Path, bytes: &[u8], tag: &str) -> io::Result<()> {
    let dir = parent_dir(path);
    let mut temp = tempfile::Builder::new()
        .prefix(&format!("{TEMP_PREFIX}{tag}"))
        .suffix(".tmp")
        .tempfile_in(dir)?;
    set_private(temp.as_file())?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    failpoint("write:before-rename");
    temp.persist(path).map_err(|err| err.error)?;
    sync_dir(dir)
}

/// Replaces `path` with `bytes` only if it still holds `expected` right before the rename:
/// for a file another program rewrites, so that a write of theirs made while this one was
/// prepared is not lost. `Ok(false)`: it changed; read it again and redo.
pub fn replace_if_unchanged(path: &Path, bytes: &[u8], expected: &[u8]) -> Result<bool> {
    let io = || -> io::Result<bool> {
        let dir = parent_dir(path);
        let mut temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .suffix(".tmp")
            .tempfile_in(dir)?;
        set_private(temp.as_file())?;
        temp.write_all(bytes)?;
        temp.as_file().sync_all()?;
        pausepoint("replace:before-check");
        if fs::read(path)? != expected {
            return Ok(false);
        }
        temp.persist(path).map_err(|err| err.error)?;
        sync_dir(dir)?;
        Ok(true)
    };
    io().map_err(|err| Error::io("cannot write", path, err))
}

/// Test builds only: sleeps when `TOKENKEEPER_PAUSEPOINT` is `NAME=MILLISECONDS` for this
/// point, so a test can act (as another program would) between two steps.
pub fn pausepoint(name: &str) {
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("TOKENKEEPER_PAUSEPOINT")
        .ok()
        .and_then(|v| v.strip_prefix(&format!("{name}="))?.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

/// Removes `path` durably. Returns whether it existed.
pub fn remove(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => {
            sync_dir(parent_dir(path)).map_err(|err| Error::io("cannot sync", path, err))?;
            Ok(true)
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(Error::io("cannot remove", path, err)),
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Fsyncs the directory holding `path`, making a rename into it durable.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    sync_dir(parent_dir(path))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(unix)]
fn set_private(file: &File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn set_private(_file: &File) -> io::Result<()> {
    Ok(())
}

/// Test builds only: dies on the spot (no destructors, no flush) when `TOKENKEEPER_FAILPOINT`
/// names this point, so crash-safety tests can stop a process between any two durable steps.
/// Release builds compile this to nothing.
pub fn failpoint(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os("TOKENKEEPER_FAILPOINT").is_some_and(|want| want == name) {
        std::process::abort();
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_content_with_mode_0600_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.json");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("secret.json")]);
    }

    #[test]
    fn remove_reports_whether_the_file_existed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone");
        fs::write(&path, b"x").unwrap();
        assert!(remove(&path).unwrap());
        assert!(!remove(&path).unwrap());
    }

    #[test]
    fn write_into_missing_directory_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing/secret.json");
        let err = write_atomic(&path, b"x").unwrap_err();
        assert!(
            err.message().contains("missing/secret.json"),
            "{}",
            err.message()
        );
    }
}
