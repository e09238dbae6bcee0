//! The fake macOS `security` and 1Password `op` (tests/support/bin/), each installed in a
//! directory of its own so each test has its own keychain or vault.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub struct FakeKeychain {
    _dir: tempfile::TempDir,
    pub bin_dir: PathBuf,
}

impl FakeKeychain {
    /// Copies the fake into a temporary directory of its own (outside any test HOME, so it
    /// never shows in a snapshot of one).
    pub fn install() -> Self {
        let (dir, bin_dir) = install_fake("security");
        Self { _dir: dir, bin_dir }
    }

    pub fn program(&self) -> PathBuf {
        self.bin_dir.join("security")
    }

    /// `PATH` with the fake first.
    pub fn path_env(&self) -> String {
        path_with(&self.bin_dir)
    }

    fn db(&self) -> PathBuf {
        self.bin_dir.join("keychain.json")
    }

    /// Every item: (service, account) → value.
    pub fn items(&self) -> BTreeMap<(String, String), String> {
        Self::items_in(&self.bin_dir)
    }

    /// Every item of the fake installed in `bin_dir`.
    pub fn items_in(bin_dir: &Path) -> BTreeMap<(String, String), String> {
        let Ok(text) = std::fs::read_to_string(bin_dir.join("keychain.json")) else {
            return BTreeMap::new();
        };
        let raw: BTreeMap<String, String> = serde_json::from_str(&text).unwrap();
        raw.into_iter()
            .map(|(key, hex)| {
                let (service, account) = key.split_once('\t').unwrap();
                let bytes: Vec<u8> = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect();
                (
                    (service.to_string(), account.to_string()),
                    String::from_utf8(bytes).unwrap(),
                )
            })
            .collect()
    }

    pub fn item(&self, service: &str, account: &str) -> Option<String> {
        self.items()
            .remove(&(service.to_string(), account.to_string()))
    }

    /// Stores an item as another program (ralph, Claude Code) would.
    pub fn insert(&self, service: &str, account: &str, value: &str) {
        let status = std::process::Command::new(self.program())
            .args(["-i"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                let hex: String = value.bytes().map(|b| format!("{b:02x}")).collect();
                writeln!(
                    child.stdin.take().unwrap(),
                    "add-generic-password -U -s \"{service}\" -a \"{account}\" -X {hex}"
                )?;
                child.wait()
            })
            .unwrap();
        assert!(status.success());
    }

    /// Every command line the fake was run with, one JSON array per line.
    pub fn argv_log(&self) -> String {
        std::fs::read_to_string(self.bin_dir.join("keychain.json.argv")).unwrap_or_default()
    }

    /// Command lines that carried a password (none, if all is well).
    pub fn violations(&self) -> String {
        std::fs::read_to_string(self.bin_dir.join("keychain.json.violations")).unwrap_or_default()
    }
}

/// `PATH` with `dir` first.
fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Copies `tests/support/bin/<name>` into a new temporary directory.
fn install_fake(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = dir.path().to_path_buf();
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support/bin")
        .join(name);
    std::fs::copy(source, bin_dir.join(name)).unwrap();
    (dir, bin_dir)
}

/// The fake 1Password CLI.
pub struct FakeOnePassword {
    _dir: tempfile::TempDir,
    pub bin_dir: PathBuf,
}

impl FakeOnePassword {
    pub fn install() -> Self {
        let (dir, bin_dir) = install_fake("op");
        Self { _dir: dir, bin_dir }
    }

    /// `PATH` with the fake first.
    pub fn path_env(&self) -> String {
        path_with(&self.bin_dir)
    }

    pub fn program(&self) -> PathBuf {
        self.bin_dir.join("op")
    }

    /// Every item as stored (title → the JSON of the item, values included).
    pub fn items(&self) -> BTreeMap<String, serde_json::Value> {
        let Ok(text) = std::fs::read_to_string(self.bin_dir.join("items.json")) else {
            return BTreeMap::new();
        };
        let raw: BTreeMap<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
        raw.into_values()
            .map(|item| (item["title"].as_str().unwrap().to_string(), item))
            .collect()
    }

    pub fn argv_log(&self) -> String {
        std::fs::read_to_string(self.bin_dir.join("items.json.argv")).unwrap_or_default()
    }

    pub fn violations(&self) -> String {
        std::fs::read_to_string(self.bin_dir.join("items.json.violations")).unwrap_or_default()
    }
}
