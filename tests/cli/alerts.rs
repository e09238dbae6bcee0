//! The daemon's events: each told once per occurrence, to a desktop's notification service and
//! to an `--on-event` command, never with a token.

use serde_json::{Value, json};

use crate::support::notifications::FakeNotifications;
use crate::support::provider::{FakeProvider, Issued};
use crate::support::*;

const DAY_MS: i64 = 86_400_000;

fn usage_at(five: f64, reset_s: i64) -> Value {
    let now = now_ms() / 1000;
    json!({
        "five_hour": {"utilization": five, "resets_at": now + reset_s},
        "seven_day": {"utilization": 10.0, "resets_at": now + 5 * 86_400},
    })
}

/// A heavy user `a`, a long-lived `ci` token 20 days from its end, and `gone`, whose login
/// the provider has revoked.
fn accounts(provider: &FakeProvider, env: &Env) -> Vec<String> {
    let a = provider.issue("a@example.com");
    env.add_login("a", &a);
    provider.set_usage_of("a@example.com", usage_at(85.0, 3600));
    let ci = provider.issue_setup_token("ci@example.com");
    env.cmd(&["add", "ci", "--from", "stdin"])
        .stdin(json!({"accessToken": ci, "expiresAt": now_ms() + 20 * DAY_MS}).to_string())
        .ok();
    let gone: Issued = provider.issue_expired("gone@example.com");
    env.add_login("gone", &gone);
    provider.revoke(&gone.refresh);
    vec![a.access, a.refresh, ci, gone.access, gone.refresh]
}

fn events(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn on_event_gets_each_event_once_as_json_and_never_a_token() {
    let provider = FakeProvider::start();
    let mut env = Env::with_provider(&provider);
    env.set("TOKENKEEPER_NO_NOTIFY", "1");
    let secrets = accounts(&provider, &env);
    let log = env.root.join("events.jsonl");
    let on_event = format!("cat >> '{}'", log.display());
    let pass = |env: &Env| {
        env.cmd(&["daemon", "--once", "--on-event", &on_event])
            .run()
    };

    let out = pass(&env);
    for secret in &secrets {
        out.hides(secret);
    }
    let first = events(&log);
    let kinds: Vec<(&str, &str)> = first
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["slot"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds.len(), 3, "{first:#?}");
    assert!(kinds.contains(&("quota-high", "a")));
    assert!(kinds.contains(&("expires-soon", "ci")));
    assert!(kinds.contains(&("needs-login", "gone")));
    let quota = first.iter().find(|e| e["kind"] == "quota-high").unwrap();
    assert_eq!(quota["details"]["crossed"], 80);
    assert_eq!(quota["details"]["window"], "five_hour");
    assert_eq!(quota["agent"], "claude");
    assert_eq!(quota["email"], "a@example.com");
    let expiry = first.iter().find(|e| e["kind"] == "expires-soon").unwrap();
    assert_eq!(expiry["details"]["within_days"], 30);
    let text = std::fs::read_to_string(&log).unwrap();
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()));
    }

    // Nothing new: nothing told.
    pass(&env);
    assert_eq!(events(&log).len(), 3);

    // The window crosses 95 %, then is spent; once it resets, that is told too.
    provider.set_usage_of("a@example.com", usage_at(96.0, 3600));
    pass(&env);
    let after = events(&log);
    assert_eq!(after.len(), 4);
    assert_eq!(after[3]["details"]["crossed"], 95);
    provider.set_usage_of("a@example.com", usage_at(100.0, 2));
    pass(&env);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    provider.set_usage_of("a@example.com", usage_at(1.0, 5 * 3600));
    pass(&env);
    let after = events(&log);
    let resets: Vec<&Value> = after
        .iter()
        .filter(|e| e["kind"] == "quota-reset")
        .collect();
    assert_eq!(resets.len(), 1, "{after:#?}");
    assert_eq!(resets[0]["slot"], "a");
    pass(&env);
    assert_eq!(events(&log).len(), after.len());

    // A command that fails is logged; the pass goes on.
    let out = env.cmd(&["daemon", "--once", "--on-event", "exit 3"]).run();
    assert_ne!(out.code, 2);
}

#[test]
fn a_desktop_notification_service_is_told_each_event_once() {
    let provider = FakeProvider::start();
    let desktop = FakeNotifications::start();
    let mut env = Env::with_provider(&provider);
    env.set("DBUS_SESSION_BUS_ADDRESS", &desktop.address);
    // The private bus is the desktop's only: secrets stay in files.
    env.set("TOKENKEEPER_BACKEND", "file");
    let secrets = accounts(&provider, &env);
    env.cmd(&["daemon", "--once"]).run();
    let shown = desktop.received();
    assert_eq!(shown.len(), 3, "{shown:#?}");
    assert!(
        shown
            .iter()
            .any(|(summary, body)| summary.contains("a new login") && body.contains("'gone'"))
    );
    assert!(
        shown
            .iter()
            .any(|(_, body)| body.contains("'a' has used 85%"))
    );
    assert!(
        shown
            .iter()
            .any(|(_, body)| body.contains("'ci' expires in"))
    );
    for (summary, body) in &shown {
        for secret in &secrets {
            assert!(!summary.contains(secret.as_str()) && !body.contains(secret.as_str()));
        }
    }
    env.cmd(&["daemon", "--once"]).run();
    assert_eq!(desktop.received().len(), 3);
    // Turned off: none.
    provider.set_usage_of("a@example.com", usage_at(97.0, 3600));
    env.cmd(&["daemon", "--once", "--no-notify"]).run();
    assert_eq!(desktop.received().len(), 3);
}

#[test]
fn daemon_install_carries_where_events_go() {
    let mut env = Env::new();
    env.set("TOKENKEEPER_ON_EVENT", r#"curl -d "$(cat)" ntfy.sh/100%"#);
    env.cmd(&["daemon", "install", "--systemd", "--print"])
        .ok()
        .stdout_has(r#"Environment="TOKENKEEPER_ON_EVENT=curl -d \"$(cat)\" ntfy.sh/100%%""#);
}
