//! The dashboard, driven in a real terminal (tmux) as a person would: select, use, refresh,
//! quit — and the terminal is given back.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::provider::FakeProvider;
use crate::support::*;

/// A tmux server of the test's own, running one window of `cols`×`rows`.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(env: &Env, cols: u16, rows: u16, command: &str) -> Self {
        let socket = format!("tk-ui-{}-{}", std::process::id(), now_ms());
        let mut tmux = Command::new("tmux");
        tmux.args([
            "-L",
            &socket,
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "ui",
        ])
        .args(["-x", &cols.to_string(), "-y", &rows.to_string()]);
        for (key, value) in env.vars() {
            tmux.args(["-e", &format!("{key}={value}")]);
        }
        tmux.args(["-e", "TERM=xterm-256color", command]);
        let status = tmux.status().expect("tmux (installed by scripts/test)");
        assert!(status.success());
        Self { socket }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-t", "ui"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        let status = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "ui", keys])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits until the screen shows `text`; the screen itself otherwise.
    fn wait_for(&self, text: &str) -> String {
        let started = Instant::now();
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            if started.elapsed() > Duration::from_secs(20) {
                panic!("the screen never showed {text:?}:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

#[test]
fn in_a_terminal_the_dashboard_switches_refreshes_and_gives_the_terminal_back() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let a = provider.issue("a@example.com");
    let b = provider.issue("b@example.com");
    env.add_login("a", &a);
    env.add_login("b", &b);
    env.cmd(&["use", "a"]).ok();
    let command = format!("{BIN} ui; echo \"ui exited $?\"; sleep 60");
    let tmux = Tmux::start(&env, 80, 24, &command);

    let screen = tmux.wait_for("active claude: a");
    assert!(screen.contains("q quit"), "{screen}");

    // Down to b, and use it.
    tmux.keys("j");
    tmux.keys("u");
    tmux.wait_for("claude now uses slot 'b'");
    tmux.wait_for("active claude: b");
    let live: serde_json::Value = serde_json::from_str(&env.read_live().unwrap()).unwrap();
    assert_eq!(live["claudeAiOauth"]["accessToken"], b.access.as_str());

    // Refresh it now.
    tmux.keys("r");
    tmux.wait_for("refreshed");
    assert_eq!(provider.refreshes_served(), 1);
    assert!(provider.is_current(&env.refresh_token_of("b")));

    // Rename asks for the name; remove asks first, and "n" keeps the slot.
    tmux.keys("n");
    tmux.wait_for("new name:");
    tmux.keys("bee");
    tmux.keys("Enter");
    tmux.wait_for("bee");
    tmux.keys("d");
    tmux.wait_for("remove slot 'bee'? (y/n)");
    tmux.keys("n");
    tmux.wait_for("not removed");
    assert_eq!(env.slot_count(), 2);

    // q quits, and the shell's own output is on the screen again: the terminal is restored.
    tmux.keys("q");
    let screen = tmux.wait_for("ui exited 0");
    assert!(!screen.contains("q quit"), "{screen}");
    for secret in [&a.access, &a.refresh, &b.access, &b.refresh] {
        assert!(!screen.contains(secret.as_str()));
    }
}

#[test]
fn generate_token_runs_the_setup_flow_and_comes_back_to_the_dashboard() {
    let provider = FakeProvider::start();
    let mut env = Env::with_provider(&provider);
    let token_file = env.root.join("token");
    let claude =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/bin/claude");
    env.set("TOKENKEEPER_CLAUDE_BIN", claude.display().to_string())
        .set("FAKE_SETUP_TOKEN_FILE", token_file.display().to_string());
    let token = provider.issue_setup_token("ci@example.com");
    std::fs::write(&token_file, &token).unwrap();
    env.add_login("a", &provider.issue("a@example.com"));
    let command = format!("{BIN} ui; echo \"ui exited $?\"; sleep 60");
    let tmux = Tmux::start(&env, 100, 30, &command);
    tmux.wait_for("1 slots");

    tmux.keys("g");
    tmux.wait_for("name for the new long-lived token");
    tmux.keys("ci");
    tmux.keys("Enter");
    // `claude setup-token` talks to the person on the same terminal.
    tmux.wait_for("Press Enter to open your browser");
    tmux.keys("Enter");
    tmux.wait_for("Paste code here if prompted");
    tmux.keys("code-from-the-browser");
    tmux.keys("Enter");
    let screen = tmux.wait_for("setup ci done");
    assert!(screen.contains("2 slots"), "{screen}");
    for start in (0..token.len() - 12).step_by(6) {
        assert!(!screen.contains(&token[start..start + 12]), "{screen}");
    }
    assert_eq!(env.slot_count(), 2);
    tmux.keys("q");
    tmux.wait_for("ui exited 0");
}
