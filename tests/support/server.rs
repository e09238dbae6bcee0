//! A long-running `tokenkeeper` (the proxy) started by a test: its address, its log, its end.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Stdio};

use super::{Run, finish};

pub struct Server {
    child: Option<Child>,
    /// `127.0.0.1:PORT`, as the proxy reported it.
    pub addr: String,
    /// The upstream it forwards to, as it reported it.
    pub target: String,
    log: PathBuf,
    /// Kept open: the proxy must not wait for the end of its input.
    _stdin: ChildStdin,
}

impl Run<'_> {
    /// Starts a proxy (`--format json` among the args) and waits for it to report its address.
    /// Stdin gets the input given with `.stdin(…)` and then stays open.
    pub fn serve(self) -> Server {
        let log = self
            .env
            .root
            .join(format!("server-{}.log", super::now_ms()));
        let mut cmd = self.command();
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(File::create(&log).unwrap());
        let mut child = cmd.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        if let Some(input) = &self.stdin {
            stdin.write_all(input).unwrap();
        }
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let started: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!(
                "the proxy did not start: stdout {line:?}\nlog:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        Server {
            child: Some(child),
            addr: started["listen"].as_str().unwrap().to_string(),
            target: started["target"].as_str().unwrap_or_default().to_string(),
            log,
            _stdin: stdin,
        }
    }
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Everything the proxy logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }

    pub fn child(&self) -> &Child {
        self.child.as_ref().unwrap()
    }

    /// Sends `signal` without waiting.
    pub fn signal(&self, signal: &str) {
        super::signal(self.child(), signal);
    }

    /// Waits for the exit (after a signal): (exit code, log).
    pub fn wait(mut self, secs: u64) -> (Option<i32>, String) {
        let out = finish(self.child.take().unwrap(), secs);
        (out.status.code(), self.log())
    }

    /// Sends `signal` and waits for the exit: (exit code, log).
    pub fn stop(self, signal: &str) -> (Option<i32>, String) {
        self.signal(signal);
        self.wait(30)
    }

    /// Peak resident memory of the proxy so far, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.child().id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs a future (an HTTP exchange with the proxy) from a synchronous test.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// An HTTP client that talks to the proxy and nothing else (no system proxy settings).
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A metric's value in the proxy's `/metrics` text, e.g. `metric(&text, "…_open_streams")`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}
