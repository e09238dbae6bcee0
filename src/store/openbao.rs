//! The OpenBao / HashiCorp Vault backend: a KV version 2 engine over HTTP.
//!
//! Server and credentials come from the variables the `bao` and `vault` tools read:
//! `BAO_ADDR`/`VAULT_ADDR`, `BAO_TOKEN`/`VAULT_TOKEN` (else the token file `bao login` writes,
//! `~/.vault-token`, or `TOKENKEEPER_OPENBAO_TOKEN_FILE`), `BAO_CACERT`/`VAULT_CACERT`.
//! Secrets live at `<mount>/data/<prefix>/<service>/<account>` as `{"value": "…"}`; the mount
//! (`secret`) and prefix (`tokenkeeper`) are set by `TOKENKEEPER_OPENBAO_MOUNT` and
//! `TOKENKEEPER_OPENBAO_PREFIX`. Deleting removes every version, so no old token lingers.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::net;
use crate::paths::env_path;
use crate::secret::Secret;
use crate::store::{Lease, SecretKey, SecretStore};

pub const ENV_MOUNT: &str = "TOKENKEEPER_OPENBAO_MOUNT";
pub const ENV_PREFIX: &str = "TOKENKEEPER_OPENBAO_PREFIX";
pub const ENV_TOKEN_FILE: &str = "TOKENKEEPER_OPENBAO_TOKEN_FILE";
const TIMEOUT: Duration = Duration::from_secs(15);

/// Reads its settings from the environment on each use, or uses the ones it was given.
#[derive(Default)]
pub struct OpenBaoStore {
    config: Option<OpenBaoConfig>,
}

/// Where and as whom to talk to the server.
#[derive(Clone)]
pub struct OpenBaoConfig {
    pub address: String,
    pub token: Secret,
    pub mount: String,
    pub prefix: String,
    pub ca_cert: Option<PathBuf>,
}

impl OpenBaoStore {
    pub fn new(config: OpenBaoConfig) -> Self {
        Self {
            config: Some(config),
        }
    }

    fn server(&self) -> Result<Server> {
        match &self.config {
            Some(config) => Server::new(config.clone()),
            None => Server::new(OpenBaoConfig::from_env()?),
        }
    }
}

impl OpenBaoConfig {
    /// From the variables the `bao` and `vault` tools read, and tokenkeeper's own.
    pub fn from_env() -> Result<Self> {
        let address = first_var(&["BAO_ADDR", "VAULT_ADDR"]).ok_or_else(|| {
            Error::failure("openbao: no server address")
                .with_hint("set BAO_ADDR (or VAULT_ADDR), e.g. https://bao.example.com:8200")
        })?;
        let token = match first_var(&["BAO_TOKEN", "VAULT_TOKEN"]) {
            Some(token) => Secret::new(token),
            None => read_token_file()?,
        };
        Ok(Self {
            address,
            token,
            mount: first_var(&[ENV_MOUNT]).unwrap_or_else(|| "secret".into()),
            prefix: first_var(&[ENV_PREFIX]).unwrap_or_else(|| "tokenkeeper".into()),
            ca_cert: first_var(&["BAO_CACERT", "VAULT_CACERT"]).map(PathBuf::from),
        })
    }
}

/// A configured connection.
struct Server {
    address: String,
    token: Secret,
    mount: String,
    prefix: String,
    http: reqwest::Client,
}

fn first_var(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
}

impl Server {
    fn new(config: OpenBaoConfig) -> Result<Self> {
        let mut http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(5));
        if let Some(ca) = &config.ca_cert {
            let pem = std::fs::read(ca)
                .map_err(|err| Error::io("openbao: cannot read the CA certificate", ca, err))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|err| {
                Error::failure(format!(
                    "openbao: bad CA certificate in {}: {err}",
                    ca.display()
                ))
            })?;
            for cert in certs {
                http = http.add_root_certificate(cert);
            }
        }
        net::install_crypto_provider();
        let http = http
            .build()
            .map_err(|err| Error::failure(format!("openbao: cannot set up HTTP: {err}")))?;
        Ok(Self {
            address: config.address.trim_end_matches('/').to_string(),
            token: config.token,
            mount: config.mount.trim_matches('/').to_string(),
            prefix: config.prefix.trim_matches('/').to_string(),
            http,
        })
    }

    /// `/v1/<mount>/<kind>/<prefix>/<service>/<account>`, each name percent-encoded.
    fn url(&self, kind: &str, key: &SecretKey) -> String {
        format!(
            "{}/v1/{}/{kind}/{}/{}/{}",
            self.address,
            self.mount,
            self.prefix,
            encode(&key.service),
            encode(&key.account)
        )
    }

    /// Where the refresh lease of `key` is kept.
    fn lease_url(&self, key: &SecretKey) -> String {
        format!(
            "{}/v1/{}/data/{}/_leases/{}/{}",
            self.address,
            self.mount,
            self.prefix,
            encode(&key.service),
            encode(&key.account)
        )
    }

    /// The lease record's version (0: none yet) and holder, if it is held and not expired.
    async fn lease_state(&self, url: &str, what: &str) -> Result<(u64, Option<String>)> {
        let Some(body) = self.call(Method::GET, url, None, what).await? else {
            return Ok((0, None));
        };
        let version = body["data"]["metadata"]["version"].as_u64().unwrap_or(0);
        let data = &body["data"]["data"];
        let holder = data["holder"].as_str().filter(|h| !h.is_empty());
        let live = data["expires_at_ms"]
            .as_i64()
            .is_some_and(|at| at > now_ms());
        Ok((version, holder.filter(|_| live).map(str::to_string)))
    }

    /// Sends a request; `Ok(None)` for 404, the JSON body otherwise; errors say what to fix.
    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Option<Value>> {
        let (status, json) = self.send(method, url, body).await?;
        self.check(status, json, what)
    }

    /// A write that only succeeds if the secret is still at `cas` (0: does not exist yet).
    /// `Ok(false)`: someone else wrote first.
    async fn write_if(&self, url: &str, cas: u64, data: Value, what: &str) -> Result<bool> {
        let body = json!({"options": {"cas": cas}, "data": data});
        let (status, json) = self.send(Method::POST, url, Some(&body)).await?;
        let lost = status == StatusCode::BAD_REQUEST
            && errors_of(&json).iter().any(|e| e.contains("check-and-set"));
        if lost {
            return Ok(false);
        }
        self.check(status, json, what).map(|_| true)
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value)> {
        let mut request = self
            .http
            .request(method, url)
            .header("X-Vault-Token", self.token.expose_secret());
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|err| {
            Error::failure(format!(
                "openbao: cannot reach {}: {}",
                self.address,
                crate::error::with_causes(&err.without_url())
            ))
            .with_hint("is OpenBao running there? check BAO_ADDR (and BAO_CACERT for a private CA)")
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// The body of a successful answer, `None` for 404, or an error that says what to fix.
    fn check(&self, status: StatusCode, json: Value, what: &str) -> Result<Option<Value>> {
        let errors = errors_of(&json);
        match status {
            _ if status.is_success() => Ok(Some(json)),
            StatusCode::NOT_FOUND if errors.is_empty() => Ok(None),
            StatusCode::NOT_FOUND => Err(Error::failure(format!(
                "openbao: cannot {what}: {} (is there a KV v2 engine at mount '{}'?)",
                errors.join("; "),
                self.mount
            ))
            .with_hint(format!(
                "enable one: bao secrets enable -path={} kv-v2",
                self.mount
            ))),
            StatusCode::FORBIDDEN => Err(Error::failure(format!(
                "openbao: cannot {what}: permission denied"
            ))
            .with_hint(format!(
                "check BAO_TOKEN, and that its policy allows {}/data/{}/* and {}/metadata/{}/*",
                self.mount, self.prefix, self.mount, self.prefix
            ))),
            StatusCode::SERVICE_UNAVAILABLE if errors.iter().any(|e| e.contains("sealed")) => Err(
                Error::failure(format!("openbao: {} is sealed", self.address))
                    .with_hint("unseal it: bao operator unseal"),
            ),
            _ => Err(Error::failure(format!(
                "openbao: cannot {what}: {status}{}",
                if errors.is_empty() {
                    String::new()
                } else {
                    format!(": {}", errors.join("; "))
                }
            ))),
        }
    }
}

fn errors_of(json: &Value) -> Vec<&str> {
    json["errors"]
        .as_array()
        .map(|list| list.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn read_token_file() -> Result<Secret> {
    let path: PathBuf = env_path(ENV_TOKEN_FILE)
        .or_else(|| dirs::home_dir().map(|home| home.join(".vault-token")))
        .ok_or_else(|| Error::failure("openbao: no token"))?;
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Ok(Secret::new(text.trim().to_string())),
        _ => Err(Error::failure("openbao: no token").with_hint(format!(
            "set BAO_TOKEN, log in with `bao login` (writes ~/.vault-token), or point {ENV_TOKEN_FILE} at a file holding one"
        ))),
    }
}

/// Percent-encodes a name into one URL path segment (never `.` or `..`).
fn encode(name: &str) -> String {
    let dots_only = name.bytes().all(|b| b == b'.');
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => (b as char).to_string(),
            b'.' if !dots_only => ".".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// How long a lease lasts if its holder dies without releasing it: as Claude Code's own lock.
const LEASE_TTL_MS: i64 = 60_000;
const LEASE_POLL: Duration = Duration::from_millis(150);

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Who holds a lease: host, process and a random part, so a message can say where.
fn holder_id() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "unknown-host".into());
    let mut random = [0u8; 4];
    let _ = getrandom::fill(&mut random);
    format!(
        "{host}:{}:{:08x}",
        std::process::id(),
        u32::from_be_bytes(random)
    )
}

impl SecretStore for OpenBaoStore {
    fn name(&self) -> &'static str {
        "openbao"
    }

    /// A check-and-set record beside the secret: the one writer of version N+1 holds it.
    /// Expires after a minute so that a holder that died does not block the lineage.
    fn lease(&self, key: &SecretKey, wait: Duration) -> Result<Option<Lease>> {
        let server = self.server()?;
        let url = server.lease_url(key);
        let holder = holder_id();
        let what = format!("take the refresh lease of {key}");
        let deadline = std::time::Instant::now() + wait;
        net::block_on(async {
            loop {
                let (version, held_by) = server.lease_state(&url, &what).await?;
                match held_by {
                    None => {
                        let data =
                            json!({"holder": holder, "expires_at_ms": now_ms() + LEASE_TTL_MS});
                        if server.write_if(&url, version, data, &what).await? {
                            return Ok(());
                        }
                        // Another machine took it between our read and write; look again.
                    }
                    Some(other) if std::time::Instant::now() >= deadline => {
                        return Err(Error::failure(format!(
                            "openbao: {key} is being refreshed by {other} for longer than {}s",
                            wait.as_secs()
                        ))
                        .with_hint(
                            "try again shortly; a holder that died lets go within a minute",
                        ));
                    }
                    Some(_) => tokio::time::sleep(LEASE_POLL).await,
                }
            }
        })?;
        Ok(Some(Lease::new(move || {
            // Let go only if it is still ours (it may have expired and been taken meanwhile).
            let released = net::block_on(async {
                let (version, held_by) = server.lease_state(&url, &what).await?;
                if held_by.as_deref() == Some(holder.as_str()) {
                    let data = json!({"holder": "", "expires_at_ms": 0});
                    server.write_if(&url, version, data, &what).await?;
                }
                Ok::<_, Error>(())
            });
            if let Err(err) = released {
                tracing::warn!(error = %err.message(), "could not release a refresh lease; it expires within a minute");
            }
        })))
    }

    fn get(&self, key: &SecretKey) -> Result<Option<Secret>> {
        let server = self.server()?;
        let url = server.url("data", key);
        let found = net::block_on(server.call(Method::GET, &url, None, &format!("read {key}")))?;
        let Some(body) = found else {
            return Ok(None);
        };
        match body["data"]["data"]["value"].as_str() {
            Some(value) => Ok(Some(Secret::new(value.to_string()))),
            // A deleted (soft) latest version reads as data: null.
            None if body["data"]["data"].is_null() => Ok(None),
            None => Err(Error::failure(format!(
                "openbao: the secret at {key} has no string field 'value'"
            ))),
        }
    }

    fn put(&self, key: &SecretKey, value: &Secret) -> Result<()> {
        let server = self.server()?;
        let url = server.url("data", key);
        let body = json!({"data": {"value": value.expose_secret()}});
        net::block_on(server.call(Method::POST, &url, Some(&body), &format!("write {key}")))?;
        Ok(())
    }

    fn delete(&self, key: &SecretKey) -> Result<bool> {
        let server = self.server()?;
        let url = server.url("metadata", key);
        net::block_on(async {
            let what = format!("delete {key}");
            if server.call(Method::GET, &url, None, &what).await?.is_none() {
                return Ok(false);
            }
            server.call(Method::DELETE, &url, None, &what).await?;
            Ok(true)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_single_path_segments() {
        assert_eq!(encode("claude.0123abcd"), "claude.0123abcd");
        assert_eq!(
            encode("Claude Code-credentials"),
            "Claude%20Code-credentials"
        );
        assert_eq!(encode("../x/y"), "..%2Fx%2Fy");
        assert_eq!(encode(".."), "%2E%2E");
    }
}
