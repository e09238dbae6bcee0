//! Claude Code's refresh lock, taken the way Claude Code takes it (proper-lockfile): a lock is a
//! directory made with mkdir, its mtime touched every 5 s while held, and taken over once its
//! mtime is more than 60 s old. Both of Claude Code's paths are taken, in its order:
//! `<config dir>/.oauth_refresh.lock`, then the legacy `<config dir>.lock`.
//!
//! A tokenkeeper process killed while holding it would leave the directories behind and block
//! every refresh of the live account — Claude Code's included — for a minute. So tokenkeeper
//! notes what it holds in a record beside its own locks: each directory's device, inode and the
//! mtimes it set. Taking the lock starts with a tokenkeeper-wide `flock`, which the kernel drops
//! when a holder dies; whoever gets it and finds a directory matching the record knows a dead
//! tokenkeeper left it and adopts it at once. A directory Claude Code made can never match: its
//! mtime is one tokenkeeper did not write.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::error::{Error, Result};
use crate::lock::FileLock;
use crate::perms;

/// A lock directory older than this is abandoned (Claude Code's value).
pub const CLAUDE_STALE_AFTER: Duration = Duration::from_secs(60);
/// How often a held lock directory's mtime is refreshed (Claude Code's value).
const TOUCH_EVERY: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(50);
const POLL_MAX: Duration = Duration::from_millis(500);

pub struct ClaudeLock {
    dirs: Vec<PathBuf>,
    record: PathBuf,
    stop: Arc<AtomicBool>,
    toucher: Option<JoinHandle<()>>,
    /// Released last, after the directories are gone (an `Option` so tests can drop it alone).
    guard: Option<FileLock>,
}

/// What a tokenkeeper process holds, written before and while it holds it.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    dirs: Vec<HeldDir>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct HeldDir {
    path: PathBuf,
    dev: u64,
    ino: u64,
    /// Nanoseconds since the epoch: the mtime last set and the one before, since a crash can
    /// fall between writing the record and touching the directory.
    mtimes: Vec<i128>,
}

impl ClaudeLock {
    /// Takes both of Claude Code's refresh locks for `config_dir`, waiting up to `timeout` for
    /// Claude Code to release them. `own_dir` holds tokenkeeper's side: its guard and record.
    pub fn acquire(config_dir: &Path, own_dir: &Path, timeout: Duration) -> Result<Self> {
        let deadline = Instant::now() + timeout;
        let guard = FileLock::acquire_within(
            &own_dir.join("claude.lock"),
            "holding Claude Code's refresh lock",
            timeout,
        )?;
        let record = own_dir.join("claude.held");
        let left_behind = read_record(&record);
        perms::ensure_dir(config_dir)?;
        let mut dirs = Vec::new();
        for path in lock_dirs(config_dir) {
            if let Err(err) = take_dir(&path, deadline, &left_behind) {
                for dir in dirs.iter().rev() {
                    let _ = fs::remove_dir(dir);
                }
                return Err(err);
            }
            dirs.push(path);
        }
        let mut lock = Self {
            dirs,
            record,
            stop: Arc::new(AtomicBool::new(false)),
            toucher: None,
            guard: Some(guard),
        };
        let mut held = Record::default();
        touch(&lock.dirs, &lock.record, &mut held)?;
        let (dirs, record, stop) = (lock.dirs.clone(), lock.record.clone(), lock.stop.clone());
        lock.toucher = Some(std::thread::spawn(move || {
            touch_while_held(&dirs, &record, held, &stop)
        }));
        debug!(dir = %config_dir.display(), "holding Claude Code's refresh lock");
        Ok(lock)
    }
}

impl Drop for ClaudeLock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(toucher) = self.toucher.take() {
            let _ = toucher.join();
        }
        for dir in self.dirs.iter().rev() {
            let _ = fs::remove_dir(dir);
        }
        let _ = fs::remove_file(&self.record);
        self.guard.take();
    }
}

/// Takes one lock directory, waiting (with backoff, never spinning) until `deadline`. A path
/// that can never become the lock — a plain file, a stale directory that cannot be removed —
/// is an error at once, naming the path and the fix.
fn take_dir(path: &Path, deadline: Instant, left_behind: &Record) -> Result<()> {
    let mut poll = POLL;
    loop {
        match fs::create_dir(path) {
            Ok(()) => return Ok(()),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                if left_behind.matches(path) {
                    info!(path = %path.display(), "adopting a Claude Code lock a stopped tokenkeeper left behind");
                    return Ok(());
                }
                if fs::symlink_metadata(path).is_ok_and(|m| !m.is_dir()) {
                    return Err(unusable_lock(path, "it is not a directory", "rm"));
                }
                if is_stale(path) {
                    info!(path = %path.display(), "taking over an abandoned Claude Code lock");
                    match fs::remove_dir(path) {
                        Ok(()) => continue,
                        Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                        Err(err) if err.kind() == io::ErrorKind::DirectoryNotEmpty => {
                            return Err(unusable_lock(path, "it is stale but not empty", "rm -r"));
                        }
                        Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
                            return Err(unusable_lock(
                                path,
                                "it is stale but this user may not remove it",
                                "sudo rm -r",
                            ));
                        }
                        Err(err) => {
                            return Err(Error::io("cannot remove stale lock directory", path, err));
                        }
                    }
                }
                if Instant::now() >= deadline {
                    return Err(Error::failure(format!(
                        "Claude Code's refresh lock {} is held by another process",
                        path.display()
                    ))
                    .with_hint(
                        "Claude Code is probably refreshing this account right now; try again in a minute",
                    ));
                }
                std::thread::sleep(poll.min(deadline.saturating_duration_since(Instant::now())));
                poll = (poll * 2).min(POLL_MAX);
            }
            Err(err) => return Err(Error::io("cannot create lock directory", path, err)),
        }
    }
}

fn unusable_lock(path: &Path, why: &str, remove: &str) -> Error {
    Error::failure(format!(
        "Claude Code's refresh lock {} cannot be taken: {why}",
        path.display()
    ))
    .with_hint(format!(
        "if no Claude Code or tokenkeeper is refreshing right now, remove it: {remove} '{}'",
        path.display()
    ))
}

/// Claude Code's two lock directories for `config_dir`, in the order it takes them.
pub fn lock_dirs(config_dir: &Path) -> [PathBuf; 2] {
    [
        config_dir.join(".oauth_refresh.lock"),
        PathBuf::from(format!("{}.lock", config_dir.display())),
    ]
}

/// Whether a lock directory exists and was last touched more than 60 s ago: its holder died.
pub fn is_stale(path: &Path) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|mtime| SystemTime::now().duration_since(mtime).ok())
        .is_some_and(|age| age > CLAUDE_STALE_AFTER)
}

impl Record {
    fn matches(&self, path: &Path) -> bool {
        let Ok(meta) = fs::metadata(path) else {
            return false;
        };
        let mtime = mtime_nanos(&meta);
        self.dirs.iter().any(|held| {
            held.path == path
                && held.dev == meta.dev()
                && held.ino == meta.ino()
                && mtime.is_some_and(|m| held.mtimes.contains(&m))
        })
    }
}

fn read_record(path: &Path) -> Record {
    match perms::read_own(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            warn!(path = %path.display(), "ignoring an unreadable lock record");
            Record::default()
        }),
        Err(_) => Record::default(),
    }
}

/// Replaces the record with rename, without fsync: it only has to survive the death of its
/// writer, not a power cut (after a reboot the directories are stale by Claude Code's rule).
fn write_record(path: &Path, record: &Record) -> Result<()> {
    let temp = path.with_extension("held.tmp");
    let bytes = serde_json::to_vec(record).expect("a record serialises");
    perms::open_own(&temp, true)
        .and_then(|mut file| file.write_all(&bytes))
        .and_then(|()| fs::rename(&temp, path))
        .map_err(|err| Error::io("cannot write", path, err))
}

fn mtime_nanos(meta: &fs::Metadata) -> Option<i128> {
    let mtime = meta.modified().ok()?;
    Some(mtime.duration_since(UNIX_EPOCH).ok()?.as_nanos() as i128)
}

/// Sets every held directory's mtime to now, recording the new value first so that a crash
/// between the two steps still leaves a record that matches.
fn touch(dirs: &[PathBuf], record: &Path, held: &mut Record) -> Result<()> {
    let now = SystemTime::now();
    let planned = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i128;
    let mut next = Record::default();
    for dir in dirs {
        let meta = fs::metadata(dir).map_err(|err| Error::io("cannot read", dir, err))?;
        let mut mtimes: Vec<i128> = held
            .dirs
            .iter()
            .find(|h| &h.path == dir)
            .and_then(|h| h.mtimes.last().copied())
            .into_iter()
            .collect();
        mtimes.push(planned);
        if let Some(current) = mtime_nanos(&meta) {
            mtimes.push(current);
        }
        next.dirs.push(HeldDir {
            path: dir.clone(),
            dev: meta.dev(),
            ino: meta.ino(),
            mtimes,
        });
    }
    write_record(record, &next)?;
    for (dir, entry) in dirs.iter().zip(next.dirs.iter_mut()) {
        File::open(dir)
            .and_then(|f| f.set_modified(now))
            .map_err(|err| Error::io("cannot touch lock directory", dir, err))?;
        // The filesystem may store a coarser time than the one set; match what it kept.
        if let Some(kept) = fs::metadata(dir).ok().as_ref().and_then(mtime_nanos) {
            entry.mtimes = vec![kept];
        }
    }
    *held = next;
    Ok(())
}

fn touch_while_held(dirs: &[PathBuf], record: &Path, mut held: Record, stop: &AtomicBool) {
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(POLL);
        if last.elapsed() >= TOUCH_EVERY {
            if let Err(err) = touch(dirs, record, &mut held) {
                warn!(error = %err.message(), "cannot refresh Claude Code's lock");
            }
            last = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let config = root.path().join(".claude");
        let own = root.path().join("locks");
        (root, config, own)
    }

    /// What a SIGKILL leaves: the directories and the record; no toucher, no guard.
    fn die(mut lock: ClaudeLock) {
        lock.stop.store(true, Ordering::Relaxed);
        lock.toucher.take().unwrap().join().unwrap();
        lock.guard.take();
        std::mem::forget(lock);
    }

    #[test]
    fn takes_both_dirs_and_releases_them() {
        let (root, config, own) = setup();
        let lock = ClaudeLock::acquire(&config, &own, Duration::from_secs(1)).unwrap();
        assert!(config.join(".oauth_refresh.lock").is_dir());
        assert!(root.path().join(".claude.lock").is_dir());
        assert!(own.join("claude.held").is_file());
        drop(lock);
        assert!(!config.join(".oauth_refresh.lock").exists());
        assert!(!root.path().join(".claude.lock").exists());
        assert!(!own.join("claude.held").exists());
    }

    #[test]
    fn a_lock_claude_code_holds_is_waited_for() {
        let (_root, config, own) = setup();
        fs::create_dir_all(config.join(".oauth_refresh.lock")).unwrap();
        let err = ClaudeLock::acquire(&config, &own, Duration::from_millis(200))
            .err()
            .unwrap();
        assert!(err.message().contains("held by another process"));
        // Claude Code's directory is left alone.
        assert!(config.join(".oauth_refresh.lock").is_dir());
    }

    #[test]
    fn a_stale_lock_is_taken_over() {
        let (_root, config, own) = setup();
        fs::create_dir_all(config.join(".oauth_refresh.lock")).unwrap();
        let old = SystemTime::now() - Duration::from_secs(120);
        File::open(config.join(".oauth_refresh.lock"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        ClaudeLock::acquire(&config, &own, Duration::from_millis(200)).unwrap();
    }

    #[test]
    fn a_lock_left_by_a_dead_tokenkeeper_is_adopted_at_once() {
        let (_root, config, own) = setup();
        let lock = ClaudeLock::acquire(&config, &own, Duration::from_secs(1)).unwrap();
        die(lock);
        let again = ClaudeLock::acquire(&config, &own, Duration::from_millis(200));
        assert!(again.is_ok(), "the leftover lock was not adopted");
    }

    #[test]
    fn a_lock_claude_code_recreated_in_the_same_place_is_not_adopted() {
        let (_root, config, own) = setup();
        let lock = ClaudeLock::acquire(&config, &own, Duration::from_secs(1)).unwrap();
        die(lock);
        // Claude Code took it over and holds it now: same place, a time tokenkeeper never set.
        let dir = config.join(".oauth_refresh.lock");
        File::open(&dir)
            .unwrap()
            .set_modified(SystemTime::now() + Duration::from_secs(3))
            .unwrap();
        let err = ClaudeLock::acquire(&config, &own, Duration::from_millis(200))
            .err()
            .unwrap();
        assert!(err.message().contains("held by another process"));
    }
}
