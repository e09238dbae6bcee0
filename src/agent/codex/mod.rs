//! OpenAI's Codex CLI: where it keeps its login (`$CODEX_HOME/auth.json`), the shape of that
//! file, what its tokens say about the account, and its provider's endpoints.
//!
//! `auth.json` (Codex writes it pretty-printed, mode 0600, and drops fields it does not know):
//! `{"auth_mode":"chatgpt","OPENAI_API_KEY":null,"tokens":{"id_token","access_token",
//! "refresh_token","account_id"},"last_refresh":"…"}`. The `id_token` and `access_token` are
//! JWTs: the first names the account (`email`, and under `https://api.openai.com/auth` the
//! plan and ChatGPT account id), the second carries the expiry (`exp`). A login with an API key
//! has `OPENAI_API_KEY` and no tokens.

pub mod exec;
pub mod jwt;
pub mod provider;

use std::path::PathBuf;

use jiff::Timestamp;
use serde_json::{Map, Value};

use super::live::{Live, Style};
use crate::error::Result;
use crate::paths::{env_path, home_dir};

/// Codex's home directory override.
pub const ENV_CODEX_HOME: &str = "CODEX_HOME";
const AUTH_FILE: &str = "auth.json";
pub const TOKENS_KEY: &str = "tokens";
pub const API_KEY_KEY: &str = "OPENAI_API_KEY";
const AUTH_CLAIMS: &str = "https://api.openai.com/auth";
const PROFILE_CLAIMS: &str = "https://api.openai.com/profile";

/// `$CODEX_HOME`, else `~/.codex`.
pub fn home() -> Result<PathBuf> {
    match env_path(ENV_CODEX_HOME) {
        Some(dir) => Ok(dir),
        None => Ok(home_dir()?.join(".codex")),
    }
}

/// Where Codex keeps its login, as its config says (`cli_auth_credentials_store`): `file`
/// (the default) is `auth.json` in its home; `keyring` the OS keyring item `Codex Auth` /
/// `cli|<hash of CODEX_HOME>`; `auto` the keyring when a Secret Service answers and holds the
/// item (or the file is absent), else the file, as Codex itself reads them; `ephemeral` no
/// place at all.
pub fn live() -> Result<Live> {
    let home = home()?;
    let config = home.join("config.toml");
    let mode = match std::fs::read_to_string(&config) {
        Ok(text) => text
            .parse::<toml::Table>()
            .ok()
            .and_then(|t| {
                t.get("cli_auth_credentials_store")?
                    .as_str()
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "file".to_string()),
        Err(_) => "file".to_string(),
    };
    let file = Live::File {
        path: home.join(AUTH_FILE),
        style: Style::Pretty,
        owner: "Codex",
    };
    let keyring = Live::Keyring {
        key: keyring_key(&home),
        owner: "Codex",
    };
    match mode.as_str() {
        "file" => Ok(file),
        "keyring" => Ok(keyring),
        "auto" if !crate::store::SecretServiceStore::reachable() => Ok(file),
        "auto" => {
            if keyring.exists().unwrap_or(false) || !file.exists().unwrap_or(false) {
                Ok(keyring)
            } else {
                Ok(file)
            }
        }
        other => Ok(Live::Elsewhere {
            why: format!(
                "Codex keeps no login on disk here (cli_auth_credentials_store = \"{other}\" in {})",
                config.display()
            ),
            hint: "run Codex through tokenkeeper exec --agent codex, which needs no stored login"
                .to_string(),
        }),
    }
}

/// Codex's keyring item: service `Codex Auth`, account `cli|` and the first 16 hex digits of
/// the SHA-256 of its home's canonical path.
pub fn keyring_key(home: &std::path::Path) -> crate::store::SecretKey {
    use sha2::{Digest, Sha256};
    let canonical = home.canonicalize().unwrap_or_else(|_| home.to_path_buf());
    let digest = Sha256::digest(canonical.to_string_lossy().as_bytes());
    let hex = crate::hex::encode(&digest);
    crate::store::SecretKey {
        service: "Codex Auth".to_string(),
        account: format!("cli|{}", &hex[..16]),
    }
}

/// Whether a JSON document is Codex's `auth.json` shape.
pub fn is_auth_json(doc: &Map<String, Value>) -> bool {
    doc.contains_key(TOKENS_KEY) || doc.contains_key(API_KEY_KEY) || doc.contains_key("auth_mode")
}

fn tokens(doc: &Map<String, Value>) -> Option<&Map<String, Value>> {
    doc.get(TOKENS_KEY).and_then(Value::as_object)
}

fn token(doc: &Map<String, Value>, key: &str) -> Option<String> {
    tokens(doc)?
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// What the credential says is wrong with it, if anything.
pub fn validate(doc: &Map<String, Value>) -> std::result::Result<(), String> {
    match doc.get(TOKENS_KEY) {
        None | Some(Value::Null) => {}
        Some(Value::Object(tokens)) => {
            for key in ["id_token", "access_token", "refresh_token", "account_id"] {
                match tokens.get(key) {
                    None | Some(Value::Null) | Some(Value::String(_)) => {}
                    Some(other) => {
                        return Err(format!(
                            "`tokens.{key}` must be a string, found {}",
                            crate::agent::credential::type_name(other)
                        ));
                    }
                }
            }
        }
        Some(other) => {
            return Err(format!(
                "`tokens` must be an object, found {}",
                crate::agent::credential::type_name(other)
            ));
        }
    }
    if access_token(doc).is_none() {
        return Err("neither `tokens.access_token` nor `OPENAI_API_KEY` holds a token".into());
    }
    Ok(())
}

/// The bearer token: the ChatGPT access token, or the API key of an API-key login.
pub fn access_token(doc: &Map<String, Value>) -> Option<String> {
    token(doc, "access_token").or_else(|| {
        doc.get(API_KEY_KEY)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    })
}

pub fn refresh_token(doc: &Map<String, Value>) -> Option<String> {
    token(doc, "refresh_token")
}

/// The access token's expiry (`exp`). An opaque access token says nothing: it is taken to
/// last 8 days from `last_refresh`, the interval at which Codex itself used to renew such
/// logins. `None` for an API key.
pub fn expires_at(doc: &Map<String, Value>) -> Option<Timestamp> {
    let access = token(doc, "access_token")?;
    if let Some(exp) = jwt::expiry(&access) {
        return Some(exp);
    }
    let last = doc
        .get("last_refresh")?
        .as_str()?
        .parse::<Timestamp>()
        .ok()?;
    last.checked_add(jiff::SignedDuration::from_hours(8 * 24))
        .ok()
}

/// The account as the `id_token` names it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub email: Option<String>,
    pub plan: Option<String>,
    /// The ChatGPT account (workspace) id: what Codex sends as `chatgpt-account-id`.
    pub account_id: Option<String>,
    pub user_id: Option<String>,
}

pub fn identity(doc: &Map<String, Value>) -> Identity {
    let claims = token(doc, "id_token")
        .and_then(|t| jwt::claims(&t))
        .unwrap_or_default();
    let text = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let auth = claims.get(AUTH_CLAIMS);
    let profile = claims.get(PROFILE_CLAIMS);
    Identity {
        email: text(claims.get("email")).or_else(|| text(profile.and_then(|p| p.get("email")))),
        plan: text(auth.and_then(|a| a.get("chatgpt_plan_type"))),
        account_id: token(doc, "account_id")
            .or_else(|| text(auth.and_then(|a| a.get("chatgpt_account_id")))),
        user_id: text(auth.and_then(|a| a.get("chatgpt_user_id")))
            .or_else(|| text(auth.and_then(|a| a.get("user_id")))),
    }
}

/// Takes a refresh's tokens: each one present replaces the old, `last_refresh` becomes now
/// (as Codex writes it). Every other field stays.
pub fn apply_refresh(
    doc: &mut Map<String, Value>,
    access: Option<&str>,
    refresh: Option<&str>,
    id: Option<&str>,
    now: Timestamp,
) {
    let tokens = doc
        .entry(TOKENS_KEY)
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(tokens) = tokens {
        for (key, value) in [
            ("id_token", id),
            ("access_token", access),
            ("refresh_token", refresh),
        ] {
            if let Some(value) = value {
                tokens.insert(key.into(), Value::String(value.to_string()));
            }
        }
    }
    doc.insert(
        "last_refresh".into(),
        Value::String(now.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()),
    );
}

/// The same login with an empty refresh token (Codex requires the field): it works until the
/// access token expires and can spend nothing.
pub fn strip_refresh_token(doc: &mut Map<String, Value>) {
    if let Some(Value::Object(tokens)) = doc.get_mut(TOKENS_KEY)
        && tokens.contains_key("refresh_token")
    {
        tokens.insert("refresh_token".into(), Value::String(String::new()));
    }
}

/// Codex processes of this user running now (pids), read from /proc: each keeps the login it
/// started with. Empty where /proc is not there.
pub fn running() -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let own = std::process::id();
    let mut pids: Vec<u32> = entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            if pid == own || entry.metadata().ok()?.uid() != me {
                return None;
            }
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let mut words = cmdline.split(|b| *b == 0).filter(|w| !w.is_empty());
            let program = words.next()?;
            let is_codex = |word: &[u8]| {
                let word = String::from_utf8_lossy(word);
                let base = word.rsplit('/').next().unwrap_or_default().to_string();
                base == "codex" || word.contains("@openai/codex")
            };
            // The native binary, or node running the npm package's launcher.
            (is_codex(program) || words.take(2).any(is_codex)).then_some(pid)
        })
        .collect();
    pids.sort_unstable();
    pids
}
