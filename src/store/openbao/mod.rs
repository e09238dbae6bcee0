//! The OpenBao / HashiCorp Vault backend: a KV version 2 engine over HTTP.
//!
//! Server and credentials come from the variables the `bao` and `vault` tools read:
//! `BAO_ADDR`/`VAULT_ADDR` (several servers of one cluster: a comma-separated list; see
//! `cluster`), `BAO_TOKEN`/`VAULT_TOKEN` (else the token file `bao login` writes,
//! `~/.vault-token`, or `TOKENKEEPER_OPENBAO_TOKEN_FILE`), `BAO_CACERT`/`VAULT_CACERT`.
//! Secrets live at `<mount>/data/<prefix>/<service>/<account>` as `{"value": "…"}`; the mount
//! (`secret`) and prefix (`tokenkeeper`) are set by `TOKENKEEPER_OPENBAO_MOUNT` and
//! `TOKENKEEPER_OPENBAO_PREFIX`. Deleting removes every version, so no old token lingers.
//!
//! The server is trusted only as far as it proves itself: a write counts only when the answer
//! has KV v2's success shape and the secret then reads back unchanged (a reverse proxy's 404
//! page or a wrong ingress path must never pass for a stored refresh token), and redirects are
//! never followed, since the token and the secret would travel with them.

mod cluster;

use std::path::PathBuf;
use std::sync::Arc;
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
    /// Which node is in use and the index of the latest write, for every use in this process.
    cluster: Arc<cluster::Cluster>,
}

/// Where and as whom to talk to the server.
#[derive(Clone)]
pub struct OpenBaoConfig {
    /// One server, or the nodes of one cluster.
    pub addresses: Vec<String>,
    pub token: Secret,
    pub mount: String,
    pub prefix: String,
    pub ca_cert: Option<PathBuf>,
}

impl OpenBaoStore {
    pub fn new(config: OpenBaoConfig) -> Self {
        Self {
            config: Some(config),
            cluster: Arc::default(),
        }
    }

    /// The store of one install, which keeps the latest OpenBao index in `index_file` so that
    /// each of its commands reads what the one before wrote.
    pub fn for_install(index_file: PathBuf) -> Self {
        Self {
            config: None,
            cluster: Arc::new(cluster::Cluster::with_index_file(index_file)),
        }
    }

    fn server(&self) -> Result<Server> {
        let config = match &self.config {
            Some(config) => config.clone(),
            None => OpenBaoConfig::from_env()?,
        };
        Server::new(config, self.cluster.clone())
    }
}

impl OpenBaoConfig {
    /// From the variables the `bao` and `vault` tools read, and tokenkeeper's own.
    pub fn from_env() -> Result<Self> {
        let addresses: Vec<String> = first_var(&["BAO_ADDR", "VAULT_ADDR"])
            .unwrap_or_default()
            .split(',')
            .map(|address| address.trim().trim_end_matches('/').to_string())
            .filter(|address| !address.is_empty())
            .collect();
        if addresses.is_empty() {
            return Err(Error::failure("openbao: no server address").with_hint(
                "set BAO_ADDR (or VAULT_ADDR), e.g. https://bao.example.com:8200, or several nodes separated by commas",
            ));
        }
        let token = match first_var(&["BAO_TOKEN", "VAULT_TOKEN"]) {
            Some(token) => Secret::new(token),
            None => read_token_file()?,
        };
        Ok(Self {
            addresses,
            token,
            mount: first_var(&[ENV_MOUNT]).unwrap_or_else(|| "secret".into()),
            prefix: first_var(&[ENV_PREFIX]).unwrap_or_else(|| "tokenkeeper".into()),
            ca_cert: first_var(&["BAO_CACERT", "VAULT_CACERT"]).map(PathBuf::from),
        })
    }
}

/// A configured connection.
struct Server {
    addresses: Vec<String>,
    /// For messages: the one address, or the list.
    address: String,
    token: Secret,
    mount: String,
    prefix: String,
    http: reqwest::Client,
    cluster: Arc<cluster::Cluster>,
}

fn first_var(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
}

impl Server {
    fn new(config: OpenBaoConfig, cluster: Arc<cluster::Cluster>) -> Result<Self> {
        let mut http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none());
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
        config
            .addresses
            .iter()
            .for_each(|address| warn_if_cleartext(address));
        net::install_crypto_provider();
        let http = http
            .build()
            .map_err(|err| Error::failure(format!("openbao: cannot set up HTTP: {err}")))?;
        let addresses: Vec<String> = config
            .addresses
            .iter()
            .map(|address| address.trim_end_matches('/').to_string())
            .collect();
        Ok(Self {
            address: addresses.join(","),
            addresses,
            token: config.token,
            mount: config.mount.trim_matches('/').to_string(),
            prefix: config.prefix.trim_matches('/').to_string(),
            http,
            cluster,
        })
    }

    /// `/v1/<mount>/<kind>/<prefix>/<service>/<account>`, each name percent-encoded (a path on
    /// whichever node serves it).
    fn url(&self, kind: &str, key: &SecretKey) -> String {
        format!(
            "/v1/{}/{kind}/{}/{}/{}",
            self.mount,
            self.prefix,
            encode(&key.service),
            encode(&key.account)
        )
    }

    /// Where the refresh lease of `key` is kept.
    fn lease_url(&self, key: &SecretKey) -> String {
        format!(
            "/v1/{}/data/{}/_leases/{}/{}",
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
        self.check_written(status, json, what).map(|_| true)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value)> {
        let answer = self
            .cluster
            .send(
                &self.http,
                &self.addresses,
                self.token.expose_secret(),
                method,
                path,
                body,
            )
            .await?;
        Ok((answer.status, answer.json))
    }

    /// The body of a successful answer, `None` for OpenBao's own "nothing there", or an error
    /// that says what to fix. A 404 counts as "nothing there" only in OpenBao's shape (a JSON
    /// body with an `errors` array, or a deleted version's `data`): anything else is a page from
    /// something in between, and reading it as "absent" would hide a misrouted request.
    fn check(&self, status: StatusCode, json: Value, what: &str) -> Result<Option<Value>> {
        let errors = errors_of(&json);
        let openbao_shaped = json.get("errors").is_some_and(Value::is_array)
            || json.get("data").is_some_and(Value::is_object);
        match status {
            _ if status.is_redirection() => Err(Error::failure(format!(
                "openbao: cannot {what}: {} answered a redirect ({status}), which tokenkeeper never follows (the token would go with it)",
                self.address
            ))
            .with_hint("point BAO_ADDR at the server itself (the address the redirect names, if you trust it)")),
            _ if status.is_success() => Ok(Some(json)),
            StatusCode::NOT_FOUND if errors.is_empty() && openbao_shaped => Ok(None),
            StatusCode::NOT_FOUND if errors.is_empty() => Err(Error::failure(format!(
                "openbao: cannot {what}: {} answered 404 without OpenBao's error shape (a proxy's page or a wrong path?)",
                self.address
            ))
            .with_hint("check that BAO_ADDR is the OpenBao API address (curl \"$BAO_ADDR/v1/sys/health\")")),
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

    /// A KV v2 write's answer: success only in KV v2's own shape, `{"data":{"version":N,…}}`.
    fn check_written(&self, status: StatusCode, json: Value, what: &str) -> Result<u64> {
        let body = self.check(status, json, what)?;
        body.as_ref()
            .and_then(|b| b["data"]["version"].as_u64())
            .filter(|_| status == StatusCode::OK)
            .ok_or_else(|| {
                Error::failure(format!(
                    "openbao: cannot {what}: {} answered {status} without KV v2's success shape, so the write may not have happened",
                    self.address
                ))
                .with_hint("check that BAO_ADDR is the OpenBao API address and the mount is a KV v2 engine")
            })
    }
}

/// Says once, on stderr, when the server's address is plain HTTP to another machine: the
/// token and every secret would cross the network unencrypted.
fn warn_if_cleartext(address: &str) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    if is_cleartext_remote(address) {
        WARNED.call_once(|| {
            eprintln!(
                "tokenkeeper: warning: {address} is plain http to another machine; its token and your credentials cross the network unencrypted (use https)"
            );
        });
    }
}

/// An `http://` address whose host is not this machine's loopback.
fn is_cleartext_remote(address: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(address) else {
        return false;
    };
    let host = url.host_str().unwrap_or("").trim_matches(['[', ']']);
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    url.scheme() == "http" && !loopback
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
        let release = format!("release the refresh lease of {key}");
        let deadline = std::time::Instant::now() + wait;
        net::block_on(async {
            loop {
                let (version, held_by) = server.lease_state(&url, &what).await?;
                match held_by {
                    // Our own write, whose answer was lost on the way (a node that went down
                    // after committing it): the lease is ours.
                    Some(ours) if ours == holder => return Ok(()),
                    None => {
                        let data =
                            json!({"holder": holder, "expires_at_ms": now_ms() + LEASE_TTL_MS});
                        if server.write_if(&url, version, data, &what).await? {
                            return Ok(());
                        }
                        // Another machine took it between our read and write; look again
                        // (after a pause, and not forever: a server that always refuses the
                        // check-and-set must not make this spin).
                        if std::time::Instant::now() >= deadline {
                            return Err(Error::failure(format!(
                                "openbao: could not take the refresh lease of {key} within {}s",
                                wait.as_secs()
                            ))
                            .with_hint("try again shortly"));
                        }
                        tokio::time::sleep(LEASE_POLL).await;
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
                // A lost check-and-set here means the record read was not the latest: read
                // again rather than leave the others waiting for the expiry.
                for _ in 0..3 {
                    let (version, held_by) = server.lease_state(&url, &release).await?;
                    if held_by.as_deref() != Some(holder.as_str()) {
                        return Ok(());
                    }
                    let data = json!({"holder": "", "expires_at_ms": 0});
                    if server.write_if(&url, version, data, &release).await? {
                        return Ok(());
                    }
                    tokio::time::sleep(LEASE_POLL).await;
                }
                Err(Error::failure(format!(
                    "openbao: cannot {release}: the record kept changing"
                )))
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

    /// Writes, then reads back the version written and compares: the caller drops its only
    /// other copy of a rotated token (a journal entry) on `Ok`, so `Ok` must mean the server
    /// holds the value. (The version, not the latest: another install may write after us.)
    fn put(&self, key: &SecretKey, value: &Secret) -> Result<()> {
        let server = self.server()?;
        let url = server.url("data", key);
        let body = json!({"data": {"value": value.expose_secret()}});
        let what = format!("write {key}");
        let read_back = net::block_on(async {
            let (status, json) = server.send(Method::POST, &url, Some(&body)).await?;
            let version = server.check_written(status, json, &what)?;
            let url = format!("{url}?version={version}");
            server
                .call(Method::GET, &url, None, &format!("read back {key}"))
                .await
        })?;
        let stored = read_back
            .as_ref()
            .and_then(|b| b["data"]["data"]["value"].as_str());
        if stored != Some(value.expose_secret()) {
            return Err(Error::failure(format!(
                "openbao: {key} does not read back as written; the write did not take"
            ))
            .with_hint("check that nothing between tokenkeeper and OpenBao answers in its place (BAO_ADDR)"));
        }
        Ok(())
    }

    fn list(&self, service: &str) -> Result<Option<Vec<String>>> {
        let server = self.server()?;
        let path = format!(
            "/v1/{}/metadata/{}/{}?list=true",
            server.mount,
            server.prefix,
            encode(service)
        );
        let what = format!("list {service}");
        let found = net::block_on(server.call(Method::GET, &path, None, &what))?;
        let Some(body) = found else {
            return Ok(Some(Vec::new()));
        };
        let keys = body["data"]["keys"].as_array().ok_or_else(|| {
            Error::failure(format!(
                "openbao: cannot {what}: the answer has no list of keys"
            ))
        })?;
        Ok(Some(
            keys.iter()
                .filter_map(Value::as_str)
                // Folders end in '/': none are made here.
                .filter(|key| !key.ends_with('/'))
                .map(str::to_string)
                .collect(),
        ))
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

    #[test]
    fn plain_http_is_flagged_only_off_this_machine() {
        for remote in [
            "http://bao.example.com:8200",
            "http://10.1.2.3:8200",
            "http://[2001:db8::1]:8200",
        ] {
            assert!(is_cleartext_remote(remote), "{remote}");
        }
        for local in [
            "https://bao.example.com",
            "http://127.0.0.1:8200",
            "http://127.9.9.9",
            "http://localhost:8200",
            "http://[::1]:8200",
            "not a url",
        ] {
            assert!(!is_cleartext_remote(local), "{local}");
        }
    }
}
