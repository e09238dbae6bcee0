//! Where tokenkeeper keeps its own files.
//!
//! `TOKENKEEPER_HOME` puts everything under one directory; otherwise the XDG config and data
//! directories are used (`~/.config/tokenkeeper`, `~/.local/share/tokenkeeper` on Linux).
//! Nothing here touches the disk: resolving paths must stay cheap for `--help`.

use std::env;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// Environment variable that puts config and data under one directory.
pub const ENV_HOME: &str = "TOKENKEEPER_HOME";

const APP_DIR: &str = "tokenkeeper";

#[derive(Debug, Clone)]
pub struct Paths {
    pub config_dir: PathBuf,
    pub data_dir: PathBuf,
}

impl Paths {
    pub fn from_env() -> Result<Self> {
        if let Some(home) = env_path(ENV_HOME) {
            return Ok(Self {
                config_dir: home.clone(),
                data_dir: home,
            });
        }
        let no_home = || {
            Error::failure("cannot find the home directory").with_hint(format!(
                "set HOME, or {ENV_HOME} to the directory tokenkeeper should use"
            ))
        };
        Ok(Self {
            config_dir: dirs::config_dir().ok_or_else(no_home)?.join(APP_DIR),
            data_dir: dirs::data_dir().ok_or_else(no_home)?.join(APP_DIR),
        })
    }

    /// The configuration file (`backend = "…"`).
    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("config.toml")
    }

    /// The slot registry.
    pub fn catalog_file(&self) -> PathBuf {
        self.data_dir.join("slots.json")
    }

    /// The file backend's root.
    pub fn store_dir(&self) -> PathBuf {
        self.data_dir.join("store")
    }

    /// Lock files, and the record of the Claude Code lock tokenkeeper holds.
    pub fn locks_dir(&self) -> PathBuf {
        self.data_dir.join("locks")
    }

    /// Makes refreshes of one slot's lineage single-flight.
    pub fn slot_lock(&self, slot_id: &str) -> PathBuf {
        self.locks_dir().join(format!("{slot_id}.lock"))
    }

    /// Serialises every command that changes state.
    /// Where live credentials tokenkeeper could not place in a slot are kept, verbatim,
    /// before anything overwrites them.
    pub fn rescued_dir(&self) -> PathBuf {
        self.data_dir.join("rescued")
    }

    pub fn state_lock(&self) -> PathBuf {
        self.data_dir.join("state.lock")
    }
}

/// Reads a path from the environment, treating an empty value as unset.
pub fn env_path(name: &str) -> Option<PathBuf> {
    env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The user's home directory (`$HOME`).
pub fn home_dir() -> Result<PathBuf> {
    dirs::home_dir()
        .ok_or_else(|| Error::failure("cannot find the home directory").with_hint("set HOME"))
}
