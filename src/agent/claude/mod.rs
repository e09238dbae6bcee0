//! Claude Code's own files: where it keeps its live credential and its login record.
//!
//! Claude Code keeps its credential, compact JSON `{"claudeAiOauth":{…},…}`, in the macOS
//! Keychain (generic password, service `Claude Code-credentials`, account `$USER`) on macOS and
//! in `$CLAUDE_CONFIG_DIR/.credentials.json` (default `~/.claude`, mode 0600) elsewhere;
//! `TOKENKEEPER_CLAUDE_LIVE=file|keychain` overrides the choice. Its login record
//! `.claude.json` (in `$CLAUDE_CONFIG_DIR`, else the home directory) names the account that
//! last logged in.

pub mod lock;
pub mod provider;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::durable;
use crate::error::{Error, Result};
use crate::paths::{env_path, home_dir};
use crate::store::{KeychainStore, SecretKey};

pub use super::live::{Live, LiveCredential, Style, fingerprint};

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
/// The member of the login record that names the account.
const LOGIN_ACCOUNT_KEY: &str = "oauthAccount";

/// Claude Code (2.1.220 and later) keeps its credential store here instead of the config dir.
pub const ENV_SECURE_STORAGE_DIR: &str = "CLAUDE_SECURESTORAGE_CONFIG_DIR";

/// The directory of Claude Code's credential store, as Claude Code resolves it:
/// `CLAUDE_SECURESTORAGE_CONFIG_DIR` when set (an empty value means `~/.claude`), else the
/// config directory. Its `.credentials.json` and its refresh lock live here.
pub fn secure_storage_dir() -> Result<PathBuf> {
    match std::env::var_os(ENV_SECURE_STORAGE_DIR) {
        Some(dir) if dir.is_empty() => Ok(home_dir()?.join(".claude")),
        Some(dir) => Ok(PathBuf::from(dir)),
        None => config_dir(),
    }
}

/// The Keychain service of Claude Code's credential for a directory other than the default
/// (either directory variable set): `Claude Code-credentials-` and the first 8 hex digits of
/// the SHA-256 of the credential store's directory (NFC), so installs with other directories
/// keep other items.
fn service_for_dir(dir: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let normalized: String = dir.nfc().collect();
    format!(
        "{KEYCHAIN_SERVICE}-{}",
        &fingerprint(normalized.as_bytes())[..8]
    )
}

/// The Keychain account Claude Code uses: the user's short name, or a fixed one when the
/// name has characters it does not take.
fn keychain_account(user: &str) -> String {
    let plain = user
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if plain {
        user.to_string()
    } else {
        "claude-code-user".to_string()
    }
}

/// Claude Code's config directory, resolved as Claude Code resolves it.
pub fn config_dir() -> Result<PathBuf> {
    match env_path(ENV_CONFIG_DIR) {
        Some(dir) => Ok(dir),
        None => Ok(home_dir()?.join(".claude")),
    }
}

/// The `claude` program to run (`login`, `setup`), when not the one on PATH.
pub const ENV_CLAUDE_BIN: &str = "TOKENKEEPER_CLAUDE_BIN";

/// Where Claude Code keeps its credential on this machine.
pub const ENV_LIVE: &str = "TOKENKEEPER_CLAUDE_LIVE";
/// Claude Code's Keychain item (the account is the user's short name).
pub const KEYCHAIN_SERVICE: &str = "Claude Code-credentials";

/// Where Claude Code keeps its credential on this machine: its credentials file, or its
/// Keychain item.
pub fn live() -> Result<Live> {
    let custom = std::env::var_os(ENV_SECURE_STORAGE_DIR).is_some()
        || std::env::var_os(ENV_CONFIG_DIR).is_some();
    live_in(&secure_storage_dir()?, custom)
}

/// Where a Claude Code run with `CLAUDE_CONFIG_DIR=dir` keeps its credential (`login` runs
/// one so): the file in `dir`, or the Keychain item named for `dir`.
pub fn live_for_config_dir(dir: &Path) -> Result<Live> {
    live_in(dir, true)
}

/// The credential store of directory `dir`; `custom`: a directory other than the default,
/// whose Keychain item carries its hash.
fn live_in(dir: &Path, custom: bool) -> Result<Live> {
    let keychain = match std::env::var(ENV_LIVE)
        .ok()
        .filter(|v| !v.is_empty())
        .as_deref()
    {
        None => cfg!(target_os = "macos"),
        Some("keychain") => true,
        Some("file") => false,
        Some(other) => {
            return Err(
                Error::usage(format!("{ENV_LIVE}={other} is not a location"))
                    .with_hint("use file or keychain"),
            );
        }
    };
    if !keychain {
        return Ok(Live::File {
            path: dir.join(CREDENTIALS_FILE),
            style: Style::Compact,
            owner: "Claude Code",
        });
    }
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            Error::failure("cannot tell Claude Code's Keychain account: USER is not set")
                .with_hint("set USER to your short user name")
        })?;
    let service = if custom {
        service_for_dir(&dir.to_string_lossy())
    } else {
        KEYCHAIN_SERVICE.to_string()
    };
    Ok(Live::Keychain {
        store: KeychainStore::from_env(),
        key: SecretKey {
            service,
            account: keychain_account(&user),
        },
    })
}

/// Claude Code's login record, `.claude.json`: in `$CLAUDE_CONFIG_DIR`, else the home directory.
pub fn login_record_path() -> Result<PathBuf> {
    Ok(match env_path(ENV_CONFIG_DIR) {
        Some(dir) => dir.join(LOGIN_RECORD_FILE),
        None => home_dir()?.join(LOGIN_RECORD_FILE),
    })
}

/// The login record's `oauthAccount` object as Claude Code wrote it.
pub fn login_record_account() -> Option<Value> {
    let value: Value = serde_json::from_slice(&fs::read(login_record_path().ok()?).ok()?).ok()?;
    value
        .get(LOGIN_ACCOUNT_KEY)
        .filter(|v| v.is_object())
        .cloned()
}

/// Makes the login record name `account`, as Claude Code would after logging in to it: the
/// `oauthAccount` member is replaced and every other byte of the file kept. Claude Code
/// rewrites this file often; a write of its made meanwhile is read and the change redone on
/// top of it. A missing file is not created (`Ok(false)`), nor is one that is not a JSON
/// object touched.
pub fn set_login_account(account: &Value) -> Result<bool> {
    let path = login_record_path()?;
    for _ in 0..8 {
        let before = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(err) => return Err(Error::io("cannot read", &path, err)),
        };
        let Some(after) = std::str::from_utf8(&before)
            .ok()
            .and_then(|text| crate::json_text::set_top_level(text, LOGIN_ACCOUNT_KEY, account))
        else {
            return Ok(false);
        };
        if after.as_bytes() == before.as_slice()
            || durable::replace_if_unchanged(&path, after.as_bytes(), &before)?
        {
            return Ok(true);
        }
        tracing::debug!(path = %path.display(), "Claude Code wrote its login record meanwhile; redoing");
    }
    Err(Error::failure(format!(
        "{} keeps changing; could not update the account it names",
        path.display()
    ))
    .with_hint("try again when Claude Code is idle"))
}

/// The account Claude Code last logged in with, from its login record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginAccount {
    pub uuid: Option<String>,
    pub email: Option<String>,
}

/// Reads `oauthAccount` from `.claude.json`; `None` when absent or unreadable (it is a hint only).
pub fn login_account() -> Option<LoginAccount> {
    LoginAccount::from_record(&login_record_account()?)
}

impl LoginAccount {
    /// The account an `oauthAccount` object names; `None` when it names none.
    pub fn from_record(record: &Value) -> Option<Self> {
        let text = |key: &str| {
            record
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

    /// `uuid|email`, the form a live record keeps.
    pub fn key(&self) -> String {
        format!(
            "{}|{}",
            self.uuid.as_deref().unwrap_or_default(),
            self.email.as_deref().unwrap_or_default()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keychain_services_of_other_directories_carry_a_hash_of_the_nfc_path() {
        assert_eq!(
            service_for_dir("/Users/jane/.claude-work"),
            "Claude Code-credentials-18820ae0"
        );
        // Composed and decomposed spellings of one path are one item.
        assert_eq!(
            service_for_dir("/Users/jos\u{e9}/.claude"),
            "Claude Code-credentials-6ab0a63a"
        );
        assert_eq!(
            service_for_dir("/Users/jose\u{301}/.claude"),
            "Claude Code-credentials-6ab0a63a"
        );
    }

    #[test]
    fn odd_user_names_get_claude_codes_fixed_account() {
        assert_eq!(keychain_account("jane.doe"), "jane.doe");
        assert_eq!(keychain_account("jane doe"), "claude-code-user");
        assert_eq!(keychain_account("jäne"), "claude-code-user");
    }
}
