//! Test harness: runs the built `tokenkeeper` binary in a temporary HOME and reports, on any
//! failed expectation, the command, its environment, stdout, stderr and the files it left.

#![allow(dead_code)]

pub mod github;
pub mod keychain;
pub mod lineage;
pub mod notifications;
pub mod openai;
pub mod openbao;
pub mod provider;
pub mod server;
pub mod terminal;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

pub const BIN: &str = env!("CARGO_BIN_EXE_tokenkeeper");

/// A temporary HOME with an empty `~/.claude`, and the environment tokenkeeper runs in.
pub struct Env {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub home: PathBuf,
    vars: BTreeMap<String, String>,
}

impl Env {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let home = root.join("home");
        fs::create_dir_all(home.join(".claude")).unwrap();
        let mut vars = BTreeMap::new();
        vars.insert("HOME".into(), home.display().to_string());
        vars.insert("TZ".into(), "UTC".into());
        vars.insert("PATH".into(), std::env::var("PATH").unwrap_or_default());
        // Nothing reaches the real provider: by default its endpoints are a closed local port.
        vars.insert(
            "TOKENKEEPER_CLAUDE_OAUTH_URL".into(),
            "http://127.0.0.1:9/v1/oauth/token".into(),
        );
        vars.insert(
            "TOKENKEEPER_CLAUDE_API_URL".into(),
            "http://127.0.0.1:9".into(),
        );
        Self {
            _dir: dir,
            root,
            home,
            vars,
        }
    }

    /// An environment whose provider endpoints point at `provider`.
    pub fn with_provider(provider: &provider::FakeProvider) -> Self {
        let mut env = Self::new();
        env.set_all(provider.env());
        env
    }

    /// Sets every pair, e.g. a fake server's `env()`.
    pub fn set_all(&mut self, pairs: Vec<(String, String)>) -> &mut Self {
        for (key, value) in pairs {
            self.set(&key, value);
        }
        self
    }

    /// The environment tokenkeeper runs in (for launching it some other way, e.g. on a PTY).
    pub fn vars(&self) -> impl Iterator<Item = (&String, &String)> {
        self.vars.iter()
    }

    /// Registers a login the fake provider issued as slot `name` (`add NAME --from stdin`).
    pub fn add_login(&self, name: &str, login: &provider::Issued) {
        self.cmd(&["add", name, "--from", "stdin"])
            .stdin(provider::FakeProvider::blob(login))
            .ok();
    }

    /// Adds slot `name` holding `fresh_blob(name)`: tokens marked with the name, 8 hours left.
    pub fn add_fresh(&self, name: &str) {
        self.cmd(&["add", name, "--from", "stdin"])
            .stdin(fresh_blob(name))
            .ok();
    }

    /// Adds slot `name` holding only an access token, `access(name)`, that expired 3 hours ago:
    /// nothing can refresh it.
    pub fn add_expired_without_refresh(&self, name: &str) {
        let blob = serde_json::json!({
            "accessToken": access(name),
            "expiresAt": now_ms() - 3 * 3_600_000,
        });
        self.cmd(&["add", name, "--from", "stdin"])
            .stdin(blob.to_string())
            .ok();
    }

    /// The refresh token stored for a slot (a Claude-shaped credential).
    pub fn refresh_token_of(&self, slot: &str) -> String {
        self.stored(slot)["claudeAiOauth"]["refreshToken"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The access token stored for a slot (a Claude-shaped credential).
    pub fn access_token_of(&self, slot: &str) -> String {
        self.exported(slot)["claudeAiOauth"]["accessToken"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// What `export` prints for a slot: the credential without its refresh token.
    pub fn exported(&self, slot: &str) -> serde_json::Value {
        self.cmd(&["export", slot]).ok().json()
    }

    /// The whole credential a slot's backend holds, read from the backend itself (not through
    /// tokenkeeper, which hands a refresh token out only with the lineage).
    pub fn stored(&self, name: &str) -> serde_json::Value {
        serde_json::from_str(&self.stored_text(name)).unwrap()
    }

    /// `stored`, as the backend holds it, byte for byte.
    pub fn stored_text(&self, name: &str) -> String {
        let catalog = self.catalog();
        let slot = catalog["slots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no slot {name}"));
        let account = format!(
            "{}.{}",
            slot["agent"].as_str().unwrap(),
            slot["id"].as_str().unwrap()
        );
        match slot["backend"].as_str().unwrap_or("file") {
            "file" => fs::read_to_string(self.data_dir().join("store/tokenkeeper").join(&account))
                .unwrap(),
            "openbao" => {
                // With several nodes, the active one: a standby's copy may lag.
                let addresses: Vec<&str> = self.vars["BAO_ADDR"].split(',').collect();
                let active = addresses
                    .iter()
                    .find(|address| openbao::health_of(address, None) == Some(200))
                    .unwrap_or(&addresses[0]);
                let out = Command::new("curl")
                    .args(["-sf", "-H"])
                    .arg(format!("X-Vault-Token: {}", self.vars["BAO_TOKEN"]))
                    .arg(format!(
                        "{active}/v1/secret/data/tokenkeeper/tokenkeeper/{account}"
                    ))
                    .output()
                    .unwrap();
                let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                answer["data"]["data"]["value"]
                    .as_str()
                    .unwrap()
                    .to_string()
            }
            "keychain" => {
                let bin_dir = self.vars["PATH"].split(':').next().unwrap();
                keychain::FakeKeychain::items_in(Path::new(bin_dir))
                    .remove(&("tokenkeeper".to_string(), account))
                    .unwrap()
            }
            other => panic!("Env::stored cannot read the {other} backend"),
        }
    }

    pub fn set(&mut self, key: &str, value: impl AsRef<str>) -> &mut Self {
        self.vars.insert(key.into(), value.as_ref().into());
        self
    }

    pub fn unset(&mut self, key: &str) -> &mut Self {
        self.vars.remove(key);
        self
    }

    pub fn data_dir(&self) -> PathBuf {
        match self.vars.get("TOKENKEEPER_HOME") {
            Some(dir) => PathBuf::from(dir),
            None => self.home.join(".local/share/tokenkeeper"),
        }
    }

    pub fn claude_dir(&self) -> PathBuf {
        match self.vars.get("CLAUDE_CONFIG_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => self.home.join(".claude"),
        }
    }

    pub fn live_path(&self) -> PathBuf {
        self.claude_dir().join(".credentials.json")
    }

    /// Writes Claude Code's live credential as Claude Code does (0600).
    pub fn write_live(&self, blob: &str) {
        fs::create_dir_all(self.claude_dir()).unwrap();
        fs::write(self.live_path(), blob).unwrap();
        fs::set_permissions(self.live_path(), fs::Permissions::from_mode(0o600)).unwrap();
    }

    pub fn read_live(&self) -> Option<String> {
        fs::read_to_string(self.live_path()).ok()
    }

    /// Writes Claude Code's login record naming the logged-in account.
    pub fn write_login_record(&self, uuid: &str, email: &str) {
        let path = match self.vars.get("CLAUDE_CONFIG_DIR") {
            Some(dir) => PathBuf::from(dir).join(".claude.json"),
            None => self.home.join(".claude.json"),
        };
        fs::write(path, format!(r#"{{"numStartups":3,"oauthAccount":{{"accountUuid":"{uuid}","emailAddress":"{email}"}}}}"#)).unwrap();
    }

    pub fn cmd(&self, args: &[&str]) -> Run<'_> {
        Run {
            env: self,
            args: args.iter().map(|s| s.to_string()).collect(),
            stdin: None,
            extra: Vec::new(),
        }
    }

    /// Every file under the temp root with its bytes and mode: "nothing changed" is equality.
    pub fn snapshot(&self) -> BTreeMap<String, (Vec<u8>, u32)> {
        let mut out = BTreeMap::new();
        walk(&self.root, &self.root, &mut out);
        out.retain(|k, _| !k.ends_with("state.lock"));
        out
    }

    /// All files under the temp root, for failure reports.
    pub fn listing(&self) -> String {
        self.snapshot()
            .iter()
            .map(|(path, (bytes, mode))| format!("  {mode:o} {:>6} {path}", bytes.len()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every stored secret's text, from the file backend.
    pub fn stored_secrets(&self) -> Vec<String> {
        self.snapshot()
            .into_iter()
            .filter(|(path, _)| path.contains("/store/"))
            .map(|(_, (bytes, _))| String::from_utf8(bytes).unwrap())
            .collect()
    }

    /// How many slots `list` shows.
    pub fn slot_count(&self) -> usize {
        let listed = self
            .cmd(&["list", "--format", "json", "--no-usage"])
            .ok()
            .json();
        listed.as_array().unwrap().len()
    }

    /// Runs another program (a shell, a real Claude Code) in this environment, plus `extra`;
    /// its stdout. Fails the test, with its stderr, unless it exits 0.
    pub fn run_program(&self, program: &str, args: &[&str], extra: &[(&str, &str)]) -> String {
        let out = Command::new(program)
            .args(args)
            .env_clear()
            .envs(&self.vars)
            .envs(extra.iter().copied())
            .output()
            .unwrap_or_else(|err| panic!("{program} runs (scripts/test installs it): {err}"));
        assert!(
            out.status.success(),
            "{program} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn catalog(&self) -> serde_json::Value {
        serde_json::from_slice(&fs::read(self.data_dir().join("slots.json")).unwrap()).unwrap()
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (Vec<u8>, u32)>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let meta = fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            walk(root, &path, out);
        } else {
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            out.insert(
                rel,
                (
                    fs::read(&path).unwrap_or_default(),
                    meta.permissions().mode() & 0o777,
                ),
            );
        }
    }
}

pub struct Run<'a> {
    pub(crate) env: &'a Env,
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
    extra: Vec<(String, String)>,
}

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    report: String,
}

impl<'a> Run<'a> {
    pub fn stdin(mut self, input: impl AsRef<[u8]>) -> Self {
        self.stdin = Some(input.as_ref().to_vec());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.extra.push((key.into(), value.into()));
        self
    }

    pub(crate) fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(&self.args)
            .env_clear()
            .envs(&self.env.vars)
            .envs(self.extra.iter().cloned());
        cmd.current_dir(&self.env.root);
        cmd
    }

    /// Starts the command without waiting (for kill tests).
    pub fn spawn(&self) -> Child {
        let mut cmd = self.command();
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let mut pipe = child.stdin.take().unwrap();
        if let Some(input) = &self.stdin {
            let _ = pipe.write_all(input);
        }
        drop(pipe);
        child
    }

    /// Starts the command with stdout and stderr captured, for `wait_with_output`.
    pub fn spawn_piped(&self) -> Child {
        let mut cmd = self.command();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.spawn().unwrap()
    }

    pub fn run(self) -> Output {
        let mut cmd = self.command();
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut pipe = child.stdin.take().unwrap();
        let input = self.stdin.clone().unwrap_or_default();
        let writer = std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let code = out.status.code().unwrap_or(-1);
        let report = format!(
            "command: tokenkeeper {}\nenv: {:?} {:?}\nexit: {code}\n--- stdout\n{stdout}--- stderr\n{stderr}--- files\n{}",
            self.args.join(" "),
            self.env.vars,
            self.extra,
            self.env.listing()
        );
        Output {
            code,
            stdout,
            stderr,
            report,
        }
    }

    /// Runs and expects exit 0.
    pub fn ok(self) -> Output {
        self.run().code(0)
    }

    /// Runs and expects `code`, with a one-line error (plus an optional hint) on stderr.
    pub fn fails(self, code: i32) -> Output {
        let out = self.run().code(code);
        out.one_line_error();
        out
    }
}

impl Output {
    pub fn code(self, want: i32) -> Self {
        assert_eq!(self.code, want, "unexpected exit code\n{}", self.report);
        self
    }

    pub fn stdout_is(&self, want: &str) -> &Self {
        assert_eq!(self.stdout, want, "unexpected stdout\n{}", self.report);
        self
    }

    pub fn stdout_has(&self, want: &str) -> &Self {
        assert!(
            self.stdout.contains(want),
            "stdout lacks {want:?}\n{}",
            self.report
        );
        self
    }

    pub fn stderr_has(&self, want: &str) -> &Self {
        assert!(
            self.stderr.contains(want),
            "stderr lacks {want:?}\n{}",
            self.report
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON: {e}\n{}", self.report))
    }

    /// Neither stream holds `secret`.
    pub fn hides(&self, secret: &str) -> &Self {
        assert!(
            !self.stdout.contains(secret),
            "stdout leaks a token\n{}",
            self.report
        );
        assert!(
            !self.stderr.contains(secret),
            "stderr leaks a token\n{}",
            self.report
        );
        self
    }

    /// stderr is `tokenkeeper: …` on one line, optionally followed by one `hint: …` line.
    pub fn one_line_error(&self) -> &Self {
        let lines: Vec<&str> = self.stderr.lines().collect();
        let shape_ok = match lines.as_slice() {
            [first] => first.starts_with("tokenkeeper: "),
            [first, hint] => first.starts_with("tokenkeeper: ") && hint.starts_with("hint: "),
            _ => false,
        };
        assert!(shape_ok, "expected a one-line error\n{}", self.report);
        self
    }
}

/// Serves `app` on `listener` (non-blocking) from a thread with a runtime of its own, for as
/// long as the test runs.
pub fn serve_in_background(listener: std::net::TcpListener, app: axum::Router) {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A Claude Code credential blob as Claude Code writes it, with fields tokenkeeper must keep.
pub fn claude_blob(access: &str, refresh: &str, expires_at_ms: i64) -> String {
    format!(
        r#"{{"claudeAiOauth":{{"accessToken":"{access}","refreshToken":"{refresh}","expiresAt":{expires_at_ms},"scopes":["user:inference","user:profile"],"subscriptionType":"max","rateLimitTier":"default_claude_max_5x"}},"mcpOAuth":{{}}}}"#
    )
}

/// A fresh Claude blob expiring in 8 hours, tokens marked with `tag`.
pub fn fresh_blob(tag: &str) -> String {
    claude_blob(&access(tag), &refresh(tag), now_ms() + 8 * 3_600_000)
}

pub fn access(tag: &str) -> String {
    format!("sk-ant-oat01-{tag}-access-PLANTED")
}

pub fn refresh(tag: &str) -> String {
    format!("sk-ant-ort01-{tag}-refresh-PLANTED")
}

/// Polls `done` until it holds, failing the test after `secs` seconds. For waiting on another
/// process; not a measure of speed.
pub fn wait_until(secs: u64, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Sends a signal (`TERM`, `INT`, …) to a child process.
pub fn signal(child: &Child, name: &str) {
    // The shell's built-in kill: no procps package needed.
    let status = Command::new("sh")
        .args(["-c", "kill -s \"$0\" \"$1\""])
        .arg(name)
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} failed");
}

/// Waits for a child to exit (failing after `secs` seconds) and returns its output.
pub fn finish(mut child: Child, secs: u64) -> std::process::Output {
    wait_until(secs, "the process to exit", || {
        child.try_wait().unwrap().is_some()
    });
    child.wait_with_output().unwrap()
}
