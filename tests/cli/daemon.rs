//! The daemon: passes that refresh what is due, usage readings, one instance, clean stops.

use std::time::Duration;

use crate::support::provider::{Failure, FakeProvider};
use crate::support::*;

fn daemon_pid_written(env: &Env) -> bool {
    std::fs::read_to_string(env.data_dir().join("daemon.lock"))
        .is_ok_and(|pid| !pid.trim().is_empty())
}

#[test]
fn once_refreshes_what_is_due_reads_usage_and_leaves_the_rest() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let due = provider.issue_expired("due@example.com");
    let fresh = provider.issue("fresh@example.com");
    env.add_login("due", &due);
    env.add_login("fresh", &fresh);
    env.cmd(&["add", "ci", "--from", "stdin"])
        .stdin(access("ci"))
        .ok();
    let out = env.cmd(&["daemon", "--once"]).ok();
    out.stdout_is("refreshed 'due'\n")
        .hides(&due.refresh)
        .hides(&fresh.access)
        .hides(&access("ci"));
    assert_eq!(provider.refreshes_served(), 1);
    assert!(provider.is_current(&env.refresh_token_of("due")));
    assert_eq!(env.access_token_of("fresh"), fresh.access);
    let list = env.cmd(&["list", "--no-usage", "--format", "json"]).ok();
    assert!(list.json()[0].get("usage").is_none());
    let catalog = env.catalog();
    let usage_of = |name: &str| {
        catalog["slots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()["usage"]
            .clone()
    };
    assert!(usage_of("due")["windows"].is_array());
    assert!(usage_of("fresh")["windows"].is_array());
    assert!(usage_of("ci").is_null(), "setup tokens have no usage");
    // Nothing is due any more.
    let json = env
        .cmd(&["daemon", "--once", "--format", "json"])
        .ok()
        .json();
    assert_eq!(json["refreshed"], serde_json::json!([]));
    assert_eq!(provider.refreshes_served(), 1);
}

#[test]
fn once_reports_a_failing_slot_and_still_does_the_others() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let gone = provider.issue_expired("gone@example.com");
    let due = provider.issue_expired("due@example.com");
    env.add_login("gone", &gone);
    env.add_login("due", &due);
    provider.revoke(&gone.refresh);
    let out = env.cmd(&["daemon", "--once", "--usage-every", "0"]).run();
    out.code(1)
        .stdout_is("refreshed 'due'\n")
        .stderr_has("slot 'gone': slot 'gone' needs a new login")
        .stderr_has("1 slot(s) or backend(s) could not be refreshed or reached")
        .hides(&gone.refresh);
    assert!(provider.is_current(&env.refresh_token_of("due")));
}

#[test]
fn one_daemon_per_user_and_sigterm_stops_it_cleanly() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let child = env.cmd(&["daemon", "--interval", "1s"]).spawn_piped();
    wait_until(20, "the daemon to start", || daemon_pid_written(&env));
    env.cmd(&["daemon", "--once"]).fails(1).stderr_has(&format!(
        "another tokenkeeper daemon is running (pid {})",
        child.id()
    ));
    signal(&child, "TERM");
    let out = finish(child, 20);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("daemon stopped"), "{stderr}");
    // The lock went with it: a new pass runs.
    env.cmd(&["daemon", "--once"]).ok();
}

#[test]
fn the_loop_refreshes_slots_as_they_come_due_and_backs_off_failures() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    env.add_login("a", &provider.issue_expired("a@example.com"));
    let child = env
        .cmd(&["daemon", "--interval", "1s", "--usage-every", "0"])
        .spawn_piped();
    wait_until(20, "slot a's refresh", || provider.refreshes_served() == 1);
    // A slot added later is picked up by a later pass.
    env.add_login("b", &provider.issue_expired("b@example.com"));
    wait_until(20, "slot b's refresh", || provider.refreshes_served() == 2);
    // A failing slot is tried (with the client's own retries), then left alone for a while.
    let calls = provider.refresh_calls();
    provider.fail_next(1000, Failure::Status(500));
    env.add_login("c", &provider.issue_expired("c@example.com"));
    wait_until(20, "slot c's attempt", || {
        provider.refresh_calls() >= calls + 4
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        provider.refresh_calls(),
        calls + 4,
        "a failing slot must back off, not be retried every pass"
    );
    signal(&child, "TERM");
    let out = finish(child, 20);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("refresh failed"), "{stderr}");
    assert!(stderr.contains("retry_in_secs=30"), "{stderr}");
    assert!(!stderr.contains("PLANTED"), "a token was logged:\n{stderr}");
    assert_eq!(
        provider.refreshes_served(),
        2,
        "only a and b were refreshed"
    );
}

#[test]
fn sigterm_during_a_refresh_lets_it_finish_its_writes() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let login = provider.issue_expired("slow@example.com");
    env.add_login("slow", &login);
    provider.fail_next(1, Failure::Slow(Duration::from_secs(2)));
    let child = env
        .cmd(&["daemon", "--interval", "1s", "--usage-every", "0"])
        .spawn_piped();
    wait_until(20, "the refresh request", || provider.refresh_calls() == 1);
    signal(&child, "TERM");
    let out = finish(child, 30);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(provider.refreshes_served(), 1);
    let stored = env.refresh_token_of("slow");
    assert_ne!(stored, login.refresh, "the new tokens were saved");
    assert!(provider.is_current(&stored));
}

#[test]
fn install_writes_or_prints_a_user_service() {
    let mut env = Env::new();
    let tk_home = env.root.join("tk home");
    env.set("TOKENKEEPER_HOME", tk_home.display().to_string());
    let out = env.cmd(&["daemon", "install", "--systemd", "--print"]).ok();
    out.stdout_has(&format!("ExecStart=\"{BIN}\" daemon\n"))
        .stdout_has(&format!(
            "Environment=\"TOKENKEEPER_HOME={}\"",
            tk_home.display()
        ))
        .stdout_has("WantedBy=default.target");
    let unit = env.home.join(".config/systemd/user/tokenkeeper.service");
    assert!(!unit.exists(), "--print writes nothing");

    env.cmd(&["daemon", "install", "--systemd"])
        .ok()
        .stdout_has(&format!("wrote {}", unit.display()))
        .stdout_has("systemctl --user enable --now tokenkeeper.service");
    assert_eq!(std::fs::read_to_string(&unit).unwrap(), out.stdout);
    env.cmd(&["daemon", "install", "--systemd"])
        .ok()
        .stdout_has("updated");

    env.cmd(&["daemon", "install", "--launchd", "--print"])
        .ok()
        .stdout_has("<string>dev.tokenkeeper.daemon</string>")
        .stdout_has(&format!("<string>{BIN}</string>"))
        .stdout_has("<string>daemon</string>");
    env.cmd(&["daemon", "install", "--systemd", "--launchd"])
        .run()
        .code(2)
        .stderr_has("cannot be used with");
}

#[test]
fn issue14_daemon_status_stop_uninstall_and_logs() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    env.add_login("work", &provider.issue("d@example.com"));
    env.cmd(&["daemon", "status"])
        .run()
        .code(1)
        .stdout_has("no daemon is running");
    let mut daemon = env
        .cmd(&["daemon", "--interval", "1s", "--usage-every", "0"])
        .spawn_piped();
    let record = env.data_dir().join("daemon.json");
    wait_until(30, "the daemon's first pass", || record.exists());
    let pid = daemon.id();
    env.cmd(&["daemon", "status"])
        .ok()
        .stdout_has(&format!("the daemon is running (pid {pid})"))
        .stdout_has("0 failed")
        .stdout_has("next due: 'work' in ");
    let json = env
        .cmd(&["daemon", "status", "--format", "json"])
        .ok()
        .json();
    assert_eq!(json["pid"], pid);
    assert_eq!(json["last_pass"]["next_due"][0], "work");
    env.cmd(&["daemon", "stop"])
        .ok()
        .stdout_has(&format!("stopped the daemon (pid {pid})"));
    assert!(daemon.wait().unwrap().success());
    env.cmd(&["daemon", "status"]).run().code(1);
    env.cmd(&["daemon", "stop"])
        .ok()
        .stdout_has("no daemon is running");

    let unit = env.home.join(".config/systemd/user/tokenkeeper.service");
    env.cmd(&["daemon", "install", "--systemd"]).ok();
    assert!(unit.exists());
    env.cmd(&["daemon", "uninstall", "--systemd"])
        .ok()
        .stdout_has(&format!("removed {}", unit.display()))
        .stdout_has("systemctl --user disable --now tokenkeeper.service");
    assert!(!unit.exists());
    env.cmd(&["daemon", "uninstall", "--systemd"])
        .ok()
        .stdout_has("nothing to remove");
    env.cmd(&["daemon", "logs", "--systemd"])
        .ok()
        .stdout_has("journalctl --user -u tokenkeeper.service");
    env.cmd(&["daemon", "logs", "--launchd"])
        .ok()
        .stdout_has("Library/Logs/tokenkeeper.log");
}
