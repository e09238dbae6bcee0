//! Claude Code's own files: where it keeps its live credential and its login record.
//!
//! Claude Code reads `$CLAUDE_CONFIG_DIR/.credentials.json` (default `~/.claude`), mode 0600,
//! compact JSON `{"claudeAiOauth":{…},…}`. Its login record `.claude.json` (in
//! `$CLAUDE_CONFIG_DIR`, else the home directory) names the account that last logged in.

use std::fs;
use std::io;
use std::path::PathBuf;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::credential::Credential;
use crate::durable;
use crate::error::{Error, Result};
use crate::paths::{env_path, home_dir};
use crate::perms;
use crate::secret::Secret;

/// Claude Code's override for its config directory.
pub const ENV_CONFIG_DIR: &str = "CLAUDE_CONFIG_DIR";
/// Where Claude Code sends API requests.
pub const ENV_BASE_URL: &str = "ANTHROPIC_BASE_URL";
/// An OAuth token Claude Code uses instead of its stored login.
pub const ENV_OAUTH_TOKEN: &str = "CLAUDE_CODE_OAUTH_TOKEN";
/// Credentials Claude Code prefers over `CLAUDE_CODE_OAUTH_TOKEN` (or reads instead of it):
/// a child run behind the proxy must not have them, or it would bypass the proxy's token.
pub const ENV_OVERRIDING_CREDENTIALS: [&str; 3] = [
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_API_KEY",
    "CLAUDE_CODE_OAUTH_TOKEN_FILE_DESCRIPTOR",
];
const CREDENTIALS_FILE: &str = ".credentials.json";
const LOGIN_RECORD_FILE: &str = ".claude.json";
const MAX_LIVE_BYTES: u64 = 1 << 20;

/// Claude Code's config directory, resolved as Claude Code resolves it.
pub fn config_dir() -> Result<PathBuf> {
    match env_path(ENV_CONFIG_DIR) {
        Some(dir) => Ok(dir),
        None => Ok(home_dir()?.join(".claude")),
    }
}

/// What the live file held when read.
pub struct LiveCredential {
    pub bytes: Secret,
    pub parsed: Result<Credential>,
}

impl LiveCredential {
    pub fn fingerprint(&self) -> String {
        fingerprint(self.bytes.expose_secret().as_bytes())
    }
}

/// Claude Code's credentials file.
pub struct LiveFile {
    pub path: PathBuf,
}

impl LiveFile {
    pub fn locate() -> Result<Self> {
        Ok(Self {
            path: config_dir()?.join(CREDENTIALS_FILE),
        })
    }

    /// `Ok(None)` when Claude Code has no stored login.
    pub fn read(&self) -> Result<Option<LiveCredential>> {
        let meta = match fs::metadata(&self.path) {
            Ok(meta) => meta,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => {
                return Err(Error::io(
                    "cannot read Claude Code's credentials",
                    &self.path,
                    err,
                ));
            }
        };
        if meta.len() > MAX_LIVE_BYTES {
            return Err(Error::failure(format!(
                "{} is larger than 1 MiB; it is not a credential file",
                self.path.display()
            )));
        }
        let bytes = fs::read(&self.path)
            .map_err(|err| Error::io("cannot read Claude Code's credentials", &self.path, err))?;
        let origin = self.path.display().to_string();
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::failure(format!("{origin} is not UTF-8 text")))?;
        let bytes = Secret::new(text);
        let parsed = Credential::parse(bytes.expose_secret().as_bytes(), &origin);
        Ok(Some(LiveCredential { bytes, parsed }))
    }

    /// Writes `credential` exactly as Claude Code would (compact JSON, 0600, atomic) and returns
    /// the fingerprint of the bytes written.
    pub fn write(&self, credential: &Credential) -> Result<String> {
        let dir = self
            .path
            .parent()
            .expect("the credentials file has a parent");
        perms::ensure_dir(dir)?;
        let json = credential.to_secret_json();
        durable::write_atomic(&self.path, json.expose_secret().as_bytes())?;
        Ok(fingerprint(json.expose_secret().as_bytes()))
    }

    pub fn remove(&self) -> Result<bool> {
        durable::remove(&self.path)
    }
}

/// The account Claude Code last logged in with, from its login record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginAccount {
    pub uuid: Option<String>,
    pub email: Option<String>,
}

/// Reads `oauthAccount` from `.claude.json`; `None` when absent or unreadable (it is a hint only).
pub fn login_account() -> Option<LoginAccount> {
    let path = match env_path(ENV_CONFIG_DIR) {
        Some(dir) => dir.join(LOGIN_RECORD_FILE),
        None => home_dir().ok()?.join(LOGIN_RECORD_FILE),
    };
    let value: Value = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
    let account = value.get("oauthAccount")?;
    let text = |key: &str| {
        account
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let found = LoginAccount {
        uuid: text("accountUuid"),
        email: text("emailAddress"),
    };
    (found.uuid.is_some() || found.email.is_some()).then_some(found)
}

/// SHA-256 of the bytes, hex: tells a changed live file from the one tokenkeeper wrote.
pub fn fingerprint(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
