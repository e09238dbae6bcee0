//! Permission rules for tokenkeeper's own files: directories 0700, files 0600.
//!
//! tokenkeeper creates what it owns with those modes, and refuses to read secrets from a file or
//! directory that other users could read — a looser mode means something else wrote or changed
//! it, and silently carrying on would hide a leak.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
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

/// Fails when `path` — one of tokenkeeper's own files or directories — exists and belongs to
/// another user, or grants any access to group or others. Whoever owns the data directory
/// could otherwise plant links that make a privileged tokenkeeper write where they choose.
pub fn check_private(path: &Path, is_dir: bool) -> Result<()> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(Error::io("cannot inspect", path, err)),
    };
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        let what = if is_dir { "directory" } else { "file" };
        return Err(Error::failure(format!(
            "refusing to use {what} {}: it belongs to uid {}, not to this user (uid {me})",
            path.display(),
            meta.uid()
        ))
        .with_hint(format!(
            "run tokenkeeper as that user, or point {} at a directory of your own",
            crate::paths::ENV_HOME
        )));
    }
    check_mode(path, &meta, is_dir)
}

/// Fails when a file handed in (`add --from file`) can be read by other users: a secret that
/// has already leaked is better refused than kept.
pub fn check_unshared(path: &Path) -> Result<()> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(Error::failure(format!(
            "cannot read {}: it is a directory",
            path.display()
        ))),
        Ok(meta) => check_mode(path, &meta, false),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(Error::io("cannot inspect", path, err)),
    }
}

fn check_mode(path: &Path, meta: &fs::Metadata, is_dir: bool) -> Result<()> {
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

/// Opens a file of tokenkeeper's own for writing (created 0600 when missing), refusing to
/// follow a symbolic link: a link planted there must not redirect the write.
pub fn open_own(path: &Path, truncate: bool) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(truncate)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

/// Reads a file of tokenkeeper's own, refusing to follow a symbolic link.
pub fn read_own(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
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
