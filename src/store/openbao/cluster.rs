//! Several OpenBao servers as one: which node to talk to, and reads that see what was written.
//!
//! With more than one address (`BAO_ADDR=https://a:8200,https://b:8200,…`) the active node is
//! found from each node's `sys/health` and used until it stops answering; a node that is down,
//! sealed or not yet part of the cluster is skipped, and after a leader change the new active
//! node is found the same way. Standbys with Raft storage serve reads from their own copy,
//! which lags the leader by a fraction of a second, and check a check-and-set write against
//! that copy before forwarding it. So every request carries the `X-Vault-Index` of the latest
//! write seen with `X-Vault-Inconsistent: forward-active-node`: a node that has not caught up
//! hands the request to the active node instead of answering from the past.
//! The index is kept in a file of the install's too, so that what one command wrote the next
//! one reads (OpenBao 2.7 forwards a read only when it carries an index; without one, a
//! standby answers 404 for a secret written half a second before).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::error::{Error, Result};

const INDEX: &str = "X-Vault-Index";
const INCONSISTENT: &str = "X-Vault-Inconsistent";
/// How long a request may go on finding a node that serves it (a leader election takes a few
/// seconds; a command must not wait forever for one).
pub const FAILOVER_DEADLINE: Duration = Duration::from_secs(30);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// What one process knows of the cluster: the node in use and the index of its latest write.
#[derive(Default)]
pub struct Cluster {
    state: Mutex<State>,
    /// Where the install keeps the latest index it has seen, shared by its processes.
    index_file: Option<PathBuf>,
}

#[derive(Default)]
struct State {
    /// The address in use; `None`: find one.
    current: Option<String>,
    /// The `X-Vault-Index` of the latest answer that carried one.
    index: Option<String>,
}

/// One answer from a node that could serve the request.
pub struct Answer {
    pub status: StatusCode,
    pub json: Value,
}

/// How a node's `sys/health` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Health {
    Active,
    Standby,
    Unusable(String),
}

impl Cluster {
    pub fn with_index_file(path: PathBuf) -> Self {
        Self {
            state: Mutex::default(),
            index_file: Some(path),
        }
    }

    /// The index reads should carry: the later of this process's and the install's.
    fn index(&self) -> Option<String> {
        let stored = self.index_file.as_deref().and_then(read_index);
        let mut state = self.state();
        if let Some(stored) = stored {
            state.index = Some(later(state.index.take(), stored));
        }
        state.index.clone()
    }

    /// Takes up the index an answer carried, here and in the install's file.
    fn saw_index(&self, index: &str) {
        let newer = {
            let mut state = self.state();
            let merged = later(state.index.take(), index.to_string());
            let changed = merged == index;
            state.index = Some(merged);
            changed
        };
        if newer && let Some(path) = &self.index_file {
            let stored = read_index(path);
            if later(stored.clone(), index.to_string()) == index && stored.as_deref() != Some(index)
            {
                write_index(path, index);
            }
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends `method path` with `body` to a node that serves it, failing over between
    /// `addresses`. A request that did not reach a usable node is sent again on another one:
    /// every write tokenkeeper makes is either idempotent or check-and-set, so a repeat never
    /// applies twice.
    pub async fn send(
        &self,
        http: &reqwest::Client,
        addresses: &[String],
        token: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer> {
        let deadline = Instant::now() + FAILOVER_DEADLINE;
        loop {
            let node = match self.node(http, addresses).await {
                Ok(node) => node,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
                Err(problems) => {
                    return Err(Error::failure(format!(
                        "openbao: no server could serve requests for {}s: {problems}",
                        FAILOVER_DEADLINE.as_secs()
                    ))
                    .with_hint("check that the servers in BAO_ADDR are running and unsealed"));
                }
            };
            let mut request = http
                .request(method.clone(), format!("{node}{path}"))
                .header("X-Vault-Token", token);
            // Writes too: a standby checks a check-and-set write against its own copy before
            // forwarding it, so one that lags refuses a write the leader would take.
            if let Some(index) = self.index() {
                request = request
                    .header(INDEX, index)
                    .header(INCONSISTENT, "forward-active-node");
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let problem = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let index = response.headers().get(INDEX);
                    tracing::debug!(node = %node, %method, %status, index = index.is_some(), "openbao: answered");
                    if let Some(index) = index
                        && let Ok(index) = index.to_str()
                    {
                        self.saw_index(index);
                    }
                    // A standby that cannot forward redirects to the active node. That node
                    // is used only when it is one of ours: a redirect elsewhere is never
                    // followed (the token would go with it).
                    let redirect = status
                        .is_redirection()
                        .then(|| response.headers().get(reqwest::header::LOCATION))
                        .flatten()
                        .and_then(|location| location.to_str().ok())
                        .and_then(|location| one_of(addresses, location));
                    if let Some(active) = redirect {
                        tracing::info!(node = %node, active = %active, "openbao: sent on to the active node");
                        self.state().current = (active != node).then_some(active);
                        if Instant::now() >= deadline {
                            return Err(Error::failure(format!(
                                "openbao: no server served the request within {}s; last: {node} sent it elsewhere",
                                FAILOVER_DEADLINE.as_secs()
                            )));
                        }
                        tokio::time::sleep(RETRY_PAUSE).await;
                        continue;
                    }
                    let text = response.text().await.unwrap_or_default();
                    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
                    match node_unusable(status, &json) {
                        Some(why) if addresses.len() > 1 || !why.ends_with(SEALED) => why,
                        _ => return Ok(Answer { status, json }),
                    }
                }
                Err(err) if addresses.len() > 1 => crate::error::with_causes(&err.without_url()),
                Err(err) => {
                    return Err(Error::failure(format!(
                        "openbao: cannot reach {node}: {}",
                        crate::error::with_causes(&err.without_url())
                    ))
                    .with_hint(
                        "is OpenBao running there? check BAO_ADDR (and BAO_CACERT for a private CA)",
                    ));
                }
            };
            tracing::info!(node = %node, problem = %problem, "openbao: trying another server");
            self.forget(&node);
            if Instant::now() >= deadline {
                return Err(Error::failure(format!(
                    "openbao: no server served the request within {}s; last: {node}: {problem}",
                    FAILOVER_DEADLINE.as_secs()
                ))
                .with_hint("check that the servers in BAO_ADDR are running and unsealed"));
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    fn forget(&self, node: &str) {
        let mut state = self.state();
        if state.current.as_deref() == Some(node) {
            state.current = None;
        }
    }

    /// The node to send to: the one in use, or the active one among `addresses` (a standby
    /// when no active one answers). Errors list what each address said.
    async fn node(
        &self,
        http: &reqwest::Client,
        addresses: &[String],
    ) -> std::result::Result<String, String> {
        if let [only] = addresses {
            return Ok(only.clone());
        }
        if let Some(current) = self.state().current.clone() {
            return Ok(current);
        }
        let mut checks = tokio::task::JoinSet::new();
        for (n, address) in addresses.iter().enumerate() {
            let (http, address) = (http.clone(), address.clone());
            checks.spawn(async move { (n, health(&http, &address).await) });
        }
        let mut answers: Vec<(String, Health)> = addresses
            .iter()
            .map(|address| (address.clone(), Health::Unusable("no answer".into())))
            .collect();
        while let Some(Ok((n, health))) = checks.join_next().await {
            answers[n].1 = health;
        }
        let chosen = answers
            .iter()
            .find(|(_, health)| *health == Health::Active)
            .or_else(|| {
                answers
                    .iter()
                    .find(|(_, health)| *health == Health::Standby)
            });
        match chosen {
            Some((address, health)) => {
                tracing::debug!(node = %address, ?health, "openbao: using this server");
                self.state().current = Some(address.clone());
                Ok(address.clone())
            }
            None => Err(answers
                .iter()
                .map(|(address, health)| match health {
                    Health::Unusable(why) => format!("{address} ({why})"),
                    _ => address.clone(),
                })
                .collect::<Vec<_>>()
                .join(", ")),
        }
    }
}

/// The later of two indexes: with Raft storage an index is `{"cluster": …, "value": "N"}` in
/// base64, N the log position, so two of one cluster compare by N. Otherwise the newer one
/// (`b`) wins.
fn later(a: Option<String>, b: String) -> String {
    let Some(a) = a else { return b };
    let position = |index: &str| -> Option<(String, u64)> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(index)
            .ok()?;
        let json: Value = serde_json::from_slice(&bytes).ok()?;
        Some((
            json["cluster"].as_str()?.to_string(),
            json["value"].as_str()?.parse().ok()?,
        ))
    };
    match (position(&a), position(&b)) {
        (Some((cluster_a, at_a)), Some((cluster_b, at_b)))
            if cluster_a == cluster_b && at_a > at_b =>
        {
            a
        }
        _ => b,
    }
}

/// An index no bigger than this is believed; anything else in the file is ignored.
const MAX_INDEX: u64 = 4096;

fn read_index(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.len() > MAX_INDEX {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic())).then(|| text.to_string())
}

/// Best effort: the index only spares a lagging read; losing it loses nothing stored.
fn write_index(path: &Path, index: &str) {
    let Some(dir) = path.parent() else { return };
    if crate::perms::ensure_private_dir(dir).is_err() {
        return;
    }
    let written = tempfile::Builder::new()
        .prefix(crate::durable::TEMP_PREFIX)
        .tempfile_in(dir)
        .and_then(|mut temp| {
            use std::io::Write;
            temp.write_all(index.as_bytes())?;
            temp.persist(path).map_err(|err| err.error)?;
            Ok(())
        });
    if let Err(err) = written {
        tracing::debug!(error = %err, "cannot keep the OpenBao index");
    }
}

/// The address among `addresses` that `location` (a redirect's target) points at.
fn one_of(addresses: &[String], location: &str) -> Option<String> {
    let target = reqwest::Url::parse(location).ok()?;
    addresses
        .iter()
        .find(|address| {
            reqwest::Url::parse(address).is_ok_and(|ours| {
                ours.scheme() == target.scheme()
                    && ours.host_str() == target.host_str()
                    && ours.port_or_known_default() == target.port_or_known_default()
            })
        })
        .cloned()
}

/// What `sys/health` says of the node at `address`.
async fn health(http: &reqwest::Client, address: &str) -> Health {
    let url = format!("{address}/v1/sys/health");
    let answer = tokio::time::timeout(HEALTH_TIMEOUT, http.get(url).send()).await;
    match answer {
        Err(_) => Health::Unusable("no answer".into()),
        Ok(Err(err)) => Health::Unusable(crate::error::with_causes(&err.without_url())),
        Ok(Ok(response)) => match response.status().as_u16() {
            200 => Health::Active,
            // Standby; performance standby (Vault); a DR secondary is of no use.
            429 | 473 => Health::Standby,
            501 => Health::Unusable("not initialised".into()),
            503 => Health::Unusable("sealed".into()),
            other => Health::Unusable(format!("health {other}")),
        },
    }
}

const SEALED: &str = "sealed";

/// Why an answer came from a node that cannot serve (so another should be asked), or `None`
/// for an answer to take as it is.
fn node_unusable(status: StatusCode, json: &Value) -> Option<String> {
    let errors = super::errors_of(json);
    let says = |words: &[&str]| {
        errors
            .iter()
            .any(|e| words.iter().any(|w| e.to_lowercase().contains(w)))
    };
    match status.as_u16() {
        503 => Some(if says(&["sealed"]) {
            SEALED.into()
        } else {
            "unavailable".into()
        }),
        // A mount just enabled, not yet ready on this node.
        400 if says(&["upgrade from non-versioned"]) => {
            Some("its KV engine is not ready yet".into())
        }
        // A standby that lost its leader, or one whose forwarding failed mid-election.
        500 | 502 if says(&["active", "leader", "forward", "standby"]) => Some(errors.join("; ")),
        // A standby asked to forward while no leader is known answers so too.
        429 if !says(&["rate"]) => Some("not caught up".into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_later_raft_index_wins_whatever_order_they_come_in() {
        use base64::Engine;
        let index = |cluster: &str, at: u64| {
            base64::engine::general_purpose::STANDARD
                .encode(format!(r#"{{"cluster":"{cluster}","value":"{at}"}}"#))
        };
        let (early, late) = (index("c1", 119), index("c1", 120));
        assert_eq!(later(Some(late.clone()), early.clone()), late);
        assert_eq!(later(Some(early.clone()), late.clone()), late);
        assert_eq!(later(None, early.clone()), early);
        // Another cluster's, or an opaque one: the newer.
        assert_eq!(later(Some(late.clone()), index("c2", 5)), index("c2", 5));
        assert_eq!(later(Some(late), "opaque".into()), "opaque");
    }

    #[test]
    fn a_redirect_is_taken_only_to_a_node_of_ours() {
        let ours = [
            "http://10.0.0.1:8200".to_string(),
            "https://b.example:8200".to_string(),
        ];
        assert_eq!(
            one_of(&ours, "http://10.0.0.1:8200/v1/secret/data/x").as_deref(),
            Some("http://10.0.0.1:8200")
        );
        assert_eq!(
            one_of(&ours, "https://b.example:8200/v1/x").as_deref(),
            Some("https://b.example:8200")
        );
        assert!(one_of(&ours, "https://evil.example:8200/v1/x").is_none());
        assert!(
            one_of(&ours, "http://b.example:8200/v1/x").is_none(),
            "not over plain http"
        );
        assert!(one_of(&ours, "http://10.0.0.1:8201/v1/x").is_none());
        assert!(one_of(&ours, "/v1/relative").is_none());
    }

    #[test]
    fn answers_from_nodes_that_cannot_serve_are_told_apart_from_real_ones() {
        let unusable =
            |status: u16, body: Value| node_unusable(StatusCode::from_u16(status).unwrap(), &body);
        assert_eq!(
            unusable(503, json!({"errors": ["Vault is sealed"]})).as_deref(),
            Some("sealed")
        );
        assert!(
            unusable(
                500,
                json!({"errors": ["local node not active but active cluster node not found"]})
            )
            .is_some()
        );
        assert!(unusable(404, json!({"errors": []})).is_none());
        assert!(unusable(403, json!({"errors": ["permission denied"]})).is_none());
        assert!(
            unusable(
                400,
                json!({"errors": ["check-and-set parameter did not match"]})
            )
            .is_none()
        );
        assert!(unusable(200, json!({"data": {}})).is_none());
    }
}
