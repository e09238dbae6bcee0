//! Codex run behind the private proxy (`tokenkeeper exec --agent codex -- codex …`).
//!
//! Codex reads its login from `$CODEX_HOME/auth.json` and parses the tokens as JWTs, so the
//! child gets a home of its own under the real one: a phantom `auth.json` (unsigned JWT-shaped
//! tokens with the account's non-secret claims and a far expiry; the access token is the
//! proxy's client token), a `config.toml` that is the user's with both backend base URLs
//! pointed at the proxy, and links to everything else in the real home (sessions, history,
//! logs), so the user's Codex keeps its state. The two base URLs use two loopback origins
//! (`127.0.0.1` and `localhost`): when they share one, Codex sends turns to the
//! `workspace_backend_origin` that `wham/accounts/check` names — the real one — and would send
//! the phantom there. A refresh Codex attempts goes to the proxy
//! (`CODEX_REFRESH_TOKEN_URL_OVERRIDE`) and gets phantoms back.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::Identity;
use crate::error::{Error, Result};
use crate::perms;
use crate::secret::Secret;

/// Where Codex sends a token refresh instead of auth.openai.com.
pub const ENV_REFRESH_URL: &str = "CODEX_REFRESH_TOKEN_URL_OVERRIDE";
/// Credentials Codex would use instead of its login: the child must not have them.
pub const ENV_OVERRIDING_CREDENTIALS: [&str; 2] = ["OPENAI_API_KEY", "CODEX_API_KEY"];
/// The path the proxy answers Codex's refresh on.
pub const REFRESH_PATH: &str = "/oauth/token";
/// What the child's home keeps of the real one: everything but these.
const OWN_FILES: [&str; 2] = ["auth.json", "config.toml"];
/// State Codex creates on first use: made in the real home beforehand (directories) or
/// linked dangling (files), so what the child writes lands there.
const STATE_DIRS: [&str; 4] = ["sessions", "archived_sessions", "log", "memories"];
const STATE_FILES: [&str; 1] = ["history.jsonl"];
/// Phantom tokens stay valid this long, as Codex reads their `exp` (10 years).
const PHANTOM_LIFETIME_SECS: i64 = 10 * 365 * 86_400;

/// The phantom login handed to the child, and what the proxy answers its refresh with.
pub struct Phantom {
    /// The access token: the proxy's client token.
    pub access: Secret,
    auth_json: Secret,
    refresh_answer: String,
}

impl Phantom {
    pub fn new(identity: &Identity) -> Result<Self> {
        let exp = jiff::Timestamp::now().as_second() + PHANTOM_LIFETIME_SECS;
        let auth = json!({
            "chatgpt_plan_type": identity.plan,
            "chatgpt_account_id": identity.account_id,
            "chatgpt_user_id": identity.user_id,
        });
        let nonce = random_hex()?;
        let access = unsigned_jwt(&json!({
            "exp": exp,
            "https://api.openai.com/auth": auth,
            "tokenkeeper_phantom": nonce,
        }));
        let id_token = unsigned_jwt(&json!({
            "email": identity.email,
            "exp": exp,
            "https://api.openai.com/auth": auth,
        }));
        let refresh = format!("tokenkeeper-phantom-refresh-{nonce}");
        let auth_json = serde_json::to_string_pretty(&json!({
            "auth_mode": "chatgpt",
            "OPENAI_API_KEY": null,
            "tokens": {
                "id_token": id_token,
                "access_token": access,
                "refresh_token": refresh,
                "account_id": identity.account_id,
            },
            "last_refresh": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        }))
        .expect("JSON serialises");
        let refresh_answer = json!({
            "id_token": id_token,
            "access_token": access,
            "refresh_token": refresh,
        })
        .to_string();
        Ok(Self {
            access: Secret::new(access),
            auth_json: Secret::new(auth_json),
            refresh_answer,
        })
    }

    /// The body the proxy answers `POST /oauth/token` with: the same phantoms.
    pub fn refresh_answer(&self) -> String {
        self.refresh_answer.clone()
    }
}

fn unsigned_jwt(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.tokenkeeper")
}

fn random_hex() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|err| Error::failure(format!("cannot make a random token: {err}")))?;
    Ok(crate::hex::encode(&bytes))
}

/// The child's Codex home, removed when dropped (after what the child created there that the
/// real home lacks is moved over).
pub struct ChildHome {
    dir: PathBuf,
    real: PathBuf,
}

impl ChildHome {
    /// Makes the child's home inside the real one (same filesystem, so leftovers move over
    /// with a rename), and sets the child's environment.
    pub fn prepare(
        real: &Path,
        phantom: &Phantom,
        proxy_port: u16,
        command: &mut Command,
    ) -> Result<Self> {
        perms::ensure_dir(real)?;
        let dir = tempfile::Builder::new()
            .prefix(".tokenkeeper-exec-")
            .tempdir_in(real)
            .map_err(|err| Error::io("cannot make a private Codex home in", real, err))?
            .keep();
        let home = Self {
            dir: dir.clone(),
            real: real.to_path_buf(),
        };
        crate::durable::write_atomic(
            &dir.join("auth.json"),
            phantom.auth_json.expose_secret().as_bytes(),
        )?;
        let config = config_with_proxy(&real.join("config.toml"), proxy_port)?;
        crate::durable::write_atomic(&dir.join("config.toml"), config.as_bytes())?;
        home.link_real_entries()?;
        for name in ENV_OVERRIDING_CREDENTIALS {
            command.env_remove(name);
        }
        command.env(super::ENV_CODEX_HOME, &dir).env(
            ENV_REFRESH_URL,
            format!("http://127.0.0.1:{proxy_port}{REFRESH_PATH}"),
        );
        Ok(home)
    }

    fn link_real_entries(&self) -> Result<()> {
        for name in STATE_DIRS {
            perms::ensure_dir(&self.real.join(name))?;
        }
        let mut names: Vec<std::ffi::OsString> = fs::read_dir(&self.real)
            .map_err(|err| Error::io("cannot read", &self.real, err))?
            .flatten()
            .map(|entry| entry.file_name())
            .collect();
        names.extend(STATE_FILES.iter().map(Into::into));
        names.sort();
        names.dedup();
        for name in names {
            let text = name.to_string_lossy();
            if OWN_FILES.contains(&text.as_ref()) || text.starts_with(".tokenkeeper-exec-") {
                continue;
            }
            let link = self.dir.join(&name);
            std::os::unix::fs::symlink(self.real.join(&name), &link)
                .map_err(|err| Error::io("cannot link", &link, err))?;
        }
        Ok(())
    }
}

impl Drop for ChildHome {
    fn drop(&mut self) {
        // What the child made that is not a link, and the real home lacks, moves over.
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
                if is_link || OWN_FILES.contains(&name.to_string_lossy().as_ref()) {
                    continue;
                }
                let target = self.real.join(&name);
                if !target.exists() {
                    let _ = fs::rename(entry.path(), target);
                }
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The user's `config.toml` (if any) with both base URLs at the proxy, and the login read
/// from the file (not a keyring).
fn config_with_proxy(path: &Path, port: u16) -> Result<String> {
    let mut table = match fs::read_to_string(path) {
        Ok(text) => text.parse::<toml::Table>().map_err(|err| {
            Error::failure(format!(
                "{} is not valid TOML: {}",
                path.display(),
                err.message()
            ))
        })?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => toml::Table::new(),
        Err(err) => return Err(Error::io("cannot read", path, err)),
    };
    table.insert(
        "chatgpt_base_url".into(),
        format!("http://127.0.0.1:{port}/backend-api").into(),
    );
    table.insert(
        "openai_base_url".into(),
        format!("http://localhost:{port}/backend-api/codex").into(),
    );
    table.insert("cli_auth_credentials_store".into(), "file".into());
    Ok(table.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_config_keeps_its_settings_and_gains_the_proxy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        fs::write(&path, "model = \"gpt-5\"\nchatgpt_base_url = \"https://chatgpt.com/backend-api\"\n[mcp_servers.x]\ncommand = \"y\"\n").unwrap();
        let out: toml::Table = config_with_proxy(&path, 4242).unwrap().parse().unwrap();
        assert_eq!(out["model"].as_str(), Some("gpt-5"));
        assert_eq!(
            out["chatgpt_base_url"].as_str(),
            Some("http://127.0.0.1:4242/backend-api")
        );
        assert_eq!(
            out["openai_base_url"].as_str(),
            Some("http://localhost:4242/backend-api/codex")
        );
        assert_eq!(out["cli_auth_credentials_store"].as_str(), Some("file"));
        assert_eq!(out["mcp_servers"]["x"]["command"].as_str(), Some("y"));
        fs::write(&path, "model = ").unwrap();
        assert!(config_with_proxy(&path, 1).is_err());
    }

    #[test]
    fn phantoms_carry_the_accounts_claims_and_no_secret() {
        let identity = Identity {
            email: Some("dev@example.com".into()),
            plan: Some("plus".into()),
            account_id: Some("acct-dev".into()),
            user_id: Some("user-1".into()),
        };
        let phantom = Phantom::new(&identity).unwrap();
        let doc: serde_json::Map<String, Value> =
            serde_json::from_str(phantom.auth_json.expose_secret()).unwrap();
        assert_eq!(super::super::identity(&doc), identity);
        let exp = super::super::expires_at(&doc).unwrap();
        assert!(exp.as_second() > jiff::Timestamp::now().as_second() + 9 * 365 * 86_400);
        assert_eq!(
            super::super::access_token(&doc).unwrap(),
            phantom.access.expose_secret()
        );
    }
}
