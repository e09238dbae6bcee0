//! The fake macOS `security` (tests/support/bin/security), installed in a directory of its own
//! so each test has its own keychain.

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
        let dir = tempfile::tempdir().unwrap();
        let bin_dir = dir.path().to_path_buf();
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/bin/security");
        std::fs::copy(source, bin_dir.join("security")).unwrap();
        Self { _dir: dir, bin_dir }
    }

    pub fn program(&self) -> PathBuf {
        self.bin_dir.join("security")
    }

    /// `PATH` with the fake first.
    pub fn path_env(&self) -> String {
        format!(
            "{}:{}",
            self.bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    fn db(&self) -> PathBuf {
        self.bin_dir.join("keychain.json")
    }

    /// Every item: (service, account) → value.
    pub fn items(&self) -> BTreeMap<(String, String), String> {
        let Ok(text) = std::fs::read_to_string(self.db()) else {
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
