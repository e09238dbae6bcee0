//! Permission rules for tokenkeeper's own files: directories 0700, files 0600.
//!
//! tokenkeeper creates what it owns with those modes, and refuses to read secrets from a file or
//! directory that other users could read — a looser mode means something else wrote or changed
//! it, and silently carrying on would hide a leak.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, Result};

/// Creates `dir` (and missing parents) with mode 0700, and checks an existing one.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    match DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => check_private(dir, true),
        Err(err) => Err(Error::io("cannot create directory", dir, err)),
    }
}

/// Creates `dir` with mode 0700 when missing, but leaves an existing directory's mode alone:
/// for directories owned by another program, such as Claude Code's config dir.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|err| Error::io("cannot create directory", dir, err))
}

/// Fails when `path` exists and grants any access to group or others.
pub fn check_private(path: &Path, is_dir: bool) -> Result<()> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(Error::io("cannot inspect", path, err)),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let (want, what) = if is_dir {
        ("700", "directory")
    } else {
        ("600", "file")
    };
    Err(Error::failure(format!(
        "refusing to use {what} {} : mode {mode:o} lets other users read it",
        path.display()
    ))
    .with_hint(format!("run: chmod {want} '{}'", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loose_file_is_refused_with_a_chmod_hint() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"x").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let err = check_private(&file, false).unwrap_err();
        assert!(err.message().contains("mode 644"), "{}", err.message());
        assert!(err.hint().unwrap().starts_with("run: chmod 600"));
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        check_private(&file, false).unwrap();
    }

    #[test]
    fn creates_directories_0700() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        ensure_private_dir(&sub).unwrap();
        assert_eq!(
            fs::metadata(&sub).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }
}
