//! What the daemon last did, written after every pass for `daemon status`: when the pass ran,
//! what it refreshed, what failed, and which slot is due next. Names and times only.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::durable;
use crate::error::Result;
use crate::paths::Paths;
use crate::perms;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PassRecord {
    pub pid: u32,
    pub at: Timestamp,
    pub refreshed: Vec<String>,
    /// (slot or backend, error)
    pub failed: Vec<(String, String)>,
    /// The slot due next and when, if any slot can be refreshed.
    pub next_due: Option<(String, Timestamp)>,
}

pub fn path(paths: &Paths) -> PathBuf {
    paths.data_dir.join("daemon.json")
}

impl PassRecord {
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).expect("a record serialises");
        durable::write_atomic(path, &bytes)
    }

    /// The last record, `None` when no pass was recorded (or it cannot be read).
    pub fn load(path: &Path) -> Option<Self> {
        serde_json::from_slice(&perms::read_own(path).ok()?).ok()
    }
}
