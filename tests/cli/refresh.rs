//! Refresh against the fake provider: when due, exactly once per lineage, crash safe.

use std::time::Duration;

use crate::support::provider::{Failure, FakeProvider};
use crate::support::*;

#[test]
fn get_refreshes_an_expired_slot_once_and_keeps_unknown_fields() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let login = provider.issue_expired("ann@example.com");
    env.add_login("ann", &login);
    let out = env.cmd(&["get", "ann"]).ok();
    assert_eq!(provider.refreshes_served(), 1);
    let new_access = env.access_token_of("ann");
    assert_ne!(new_access, login.access);
    out.stdout_is(&format!("{new_access}\n"));
    let stored = env.stored("ann");
    assert_eq!(stored["mcpOAuth"]["keep"], "me");
    assert!(provider.is_current(stored["claudeAiOauth"]["refreshToken"].as_str().unwrap()));
    assert!(stored["claudeAiOauth"]["expiresAt"].as_i64().unwrap() > now_ms() + 7 * 3_600_000);
    // Now fresh: no more refreshes.
    env.cmd(&["get", "ann"])
        .ok()
        .stdout_is(&format!("{new_access}\n"));
    assert_eq!(provider.refresh_calls(), 1);
    assert!(
        env.data_dir()
            .join("journal")
            .read_dir()
            .unwrap()
            .next()
            .is_none(),
        "journal not emptied"
    );
}

#[test]
fn add_fills_account_details_from_the_profile() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let login = provider.issue("bob.smith@example.com");
    env.cmd(&["add", "--from", "stdin"])
        .stdin(FakeProvider::blob(&login))
        .ok()
        .stdout_has("added claude slot 'bob.smith'");
    let slot = &env.cmd(&["list", "--format", "json"]).ok().json()[0];
    assert_eq!(slot["email"], "bob.smith@example.com");
    assert_eq!(slot["account_uuid"], "uuid-bob.smith");
    assert_eq!(slot["organization_name"], "Test Org");
    // A second login of the same account (a new lineage) updates the slot: identity is the uuid.
    let again = provider.issue("bob.smith@example.com");
    env.cmd(&["add", "--from", "stdin"])
        .stdin(FakeProvider::blob(&again))
        .ok()
        .stdout_has("updated claude slot 'bob.smith'");
}

#[test]
fn thirty_concurrent_gets_refresh_exactly_once() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let login = provider.issue_expired("many@example.com");
    env.add_login("many", &login);
    let children: Vec<_> = (0..30)
        .map(|_| {
            std::process::Command::new(BIN)
                .args(["get", "many"])
                .env_clear()
                .envs(env_vars(&env, &provider))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for out in &outputs {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(provider.refreshes_served(), 1, "exactly one refresh");
    assert_eq!(provider.refresh_calls(), 1);
    let first = &outputs[0].stdout;
    assert!(
        outputs.iter().all(|o| &o.stdout == first),
        "all print the same token"
    );
    assert_eq!(
        String::from_utf8_lossy(first).trim(),
        env.access_token_of("many")
    );
}

fn env_vars(env: &Env, provider: &FakeProvider) -> Vec<(String, String)> {
    let mut vars = vec![
        ("HOME".to_string(), env.home.display().to_string()),
        ("PATH".to_string(), std::env::var("PATH").unwrap()),
        ("TZ".to_string(), "UTC".to_string()),
    ];
    vars.extend(provider.env());
    vars
}

#[test]
fn refused_refresh_token_marks_the_slot_as_needing_login() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let login = provider.issue_expired("gone@example.com");
    env.add_login("gone", &login);
    provider.revoke(&login.refresh);
    env.cmd(&["get", "gone"])
        .fails(1)
        .stderr_has("slot 'gone' needs a new login")
        .stderr_has("(invalid_grant)")
        .stderr_has("hint: log in again");
    let calls = provider.refresh_calls();
    // Later commands say so without spending anything.
    env.cmd(&["refresh", "gone"])
        .fails(1)
        .stderr_has("needs a new login");
    assert_eq!(provider.refresh_calls(), calls);
    assert_eq!(
        env.cmd(&["list", "--format", "json"]).ok().json()[0]["needs_login"],
        "invalid_grant"
    );
    env.cmd(&["list"]).ok().stdout_has("needs login");
    // A new login clears the mark.
    let fresh = provider.issue("gone@example.com");
    env.add_login("gone", &fresh);
    env.cmd(&["get", "gone"])
        .ok()
        .stdout_is(&format!("{}\n", fresh.access));
}

#[test]
fn a_401_from_the_token_endpoint_also_means_a_new_login() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let login = provider.issue_expired("shut@example.com");
    env.add_login("shut", &login);
    provider.fail_next(1, Failure::Status(401));
    env.cmd(&["get", "shut"])
        .fails(1)
        .stderr_has("slot 'shut' needs a new login")
        .stderr_has("(HTTP 401)");
    assert_eq!(provider.refresh_calls(), 1, "a refusal is not retried");
    assert_eq!(
        env.cmd(&["list", "--format", "json"]).ok().json()[0]["needs_login"],
        "HTTP 401"
    );
}

#[test]
fn a_refresh_retires_the_previous_access_token_on_every_endpoint() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let login = provider.issue("rot@example.com");
    env.add_login("rot", &login);
    let status = |token: &str| -> Vec<u16> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let client = reqwest::Client::new();
            let mut out = Vec::new();
            for (method, path) in [
                ("POST", "/v1/messages"),
                ("GET", "/api/oauth/profile"),
                ("GET", "/api/oauth/usage"),
            ] {
                let url = format!("{}{path}", provider.url);
                let request = match method {
                    "POST" => client.post(&url).body("{}"),
                    _ => client.get(&url),
                };
                let response = request.bearer_auth(token).send().await.unwrap();
                out.push(response.status().as_u16());
            }
            out
        })
    };
    assert_eq!(status(&login.access), [200, 200, 200]);
    env.cmd(&["refresh", "rot", "--force"]).ok();
    assert_eq!(status(&login.access), [401, 401, 401]);
    assert_eq!(status(&env.access_token_of("rot")), [200, 200, 200]);
    assert_eq!(status("sk-ant-oat01-made-up"), [401, 401, 401]);
}

#[test]
fn transient_failures_are_retried_and_never_spend_the_token() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let login = provider.issue_expired("flaky@example.com");
    env.add_login("flaky", &login);
    // Fails every attempt: an error, and the stored token is untouched and still usable.
    provider.fail_next(4, Failure::Status(503));
    env.cmd(&["get", "flaky"])
        .fails(1)
        .stderr_has("cannot refresh slot 'flaky'")
        .stderr_has("HTTP 503")
        .hides("PLANTED");
    assert_eq!(env.refresh_token_of("flaky"), login.refresh);
    assert!(provider.is_current(&login.refresh));
    // Two failures (a 429 and a dropped connection), then success on the third attempt.
    provider.fail_next(1, Failure::Status(429));
    provider.fail_next(1, Failure::Drop);
    env.cmd(&["get", "flaky"]).ok();
    assert_eq!(provider.refreshes_served(), 1);
    assert!(provider.is_current(&env.refresh_token_of("flaky")));
}

#[test]
fn a_failed_refresh_of_a_still_valid_token_falls_back_to_it() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let mut login = provider.issue("soon@example.com");
    login.expires_at_ms = now_ms() + 5 * 60_000; // inside the 10-minute margin, not expired
    env.add_login("soon", &login);
    provider.fail_next(4, Failure::Status(500));
    env.cmd(&["get", "soon"])
        .ok()
        .stdout_is(&format!("{}\n", login.access));
}

#[test]
fn refresh_command_reports_each_slot() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    env.add_login("a", &provider.issue_expired("a@example.com"));
    env.add_login("b", &provider.issue("b@example.com"));
    let out = env.cmd(&["refresh", "--all"]).ok();
    out.stdout_has("refreshed 'a'")
        .stdout_has("'b' is fresh")
        .hides("PLANTED");
    assert_eq!(provider.refreshes_served(), 1);
    let json = env
        .cmd(&["refresh", "b", "--force", "--format", "json"])
        .ok()
        .json();
    assert_eq!(json[0]["result"], "refreshed");
    assert_eq!(provider.refreshes_served(), 2);
}

#[test]
fn refreshing_the_live_slot_updates_claude_codes_file_under_its_lock() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let login = provider.issue_expired("live@example.com");
    env.write_live(&FakeProvider::blob(&login));
    env.cmd(&["add", "live"]).ok();
    env.cmd(&["refresh"]).ok().stdout_has("refreshed 'live'");
    let live: serde_json::Value = serde_json::from_str(&env.read_live().unwrap()).unwrap();
    assert_eq!(live, env.stored("live"));
    assert_eq!(live["mcpOAuth"]["keep"], "me");
    assert!(provider.is_current(live["claudeAiOauth"]["refreshToken"].as_str().unwrap()));
    assert!(!env.claude_dir().join(".oauth_refresh.lock").exists());
    assert!(!env.home.join(".claude.lock").exists());
    // Claude Code sees a managed file: the next command does not think it changed.
    env.cmd(&["list", "--format", "json"]).ok();
    assert_eq!(
        env.cmd(&["list", "--format", "json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn a_token_claude_code_refreshed_while_holding_its_lock_is_picked_up() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let login = provider.issue("cc@example.com");
    env.write_live(&FakeProvider::blob(&login));
    env.cmd(&["add", "cc"]).ok();
    // Claude Code holds its lock and refreshes; it finishes half a second later, while
    // tokenkeeper (for which the token is due, given a wide margin) waits for the lock.
    let lock = env.claude_dir().join(".oauth_refresh.lock");
    std::fs::create_dir(&lock).unwrap();
    let child = env
        .cmd(&["get", "cc"])
        .env("TOKENKEEPER_REFRESH_MARGIN", "1000h")
        .spawn_piped();
    std::thread::sleep(Duration::from_millis(500));
    let claude = provider.refresh_as_claude(&login.refresh).unwrap();
    env.write_live(&FakeProvider::blob(&claude));
    std::fs::remove_dir(&lock).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), claude.access);
    assert_eq!(
        provider.refreshes_served(),
        1,
        "tokenkeeper must not refresh again"
    );
    assert_eq!(env.refresh_token_of("cc"), claude.refresh);
}

#[test]
fn claude_code_refreshing_by_itself_is_saved_into_the_same_slot() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let a = provider.issue("a@example.com");
    let b = provider.issue("b@example.com");
    env.cmd(&["add", "--from", "stdin"])
        .stdin(FakeProvider::blob(&a))
        .ok();
    env.cmd(&["add", "--from", "stdin"])
        .stdin(FakeProvider::blob(&b))
        .ok();
    env.cmd(&["use", "a"]).ok();
    let rotated = provider.refresh_as_claude(&a.refresh).unwrap();
    env.write_live(&FakeProvider::blob(&rotated));
    env.cmd(&["use", "b"]).ok();
    // The profile says it is account a: slot a now holds the rotated lineage, no extra slot.
    assert_eq!(env.refresh_token_of("a"), rotated.refresh);
    assert_eq!(
        env.cmd(&["list", "--format", "json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

/// SIGKILL at every step of a refresh, for live and non-live slots, many times over:
/// afterwards each slot's newest refresh token is current at the provider and no family died.
#[test]
fn a_refresh_killed_at_any_step_never_loses_the_lineage() {
    let points = [
        "refresh:before-request",
        "write:before-rename",
        "refresh:after-journal",
        "apply:after-store",
        "apply:after-live",
    ];
    let provider = FakeProvider::start();
    provider.set_access_lifetime(Duration::from_secs(60)); // always inside the margin: always due
    let env = Env::with_provider(&provider);
    let live = provider.issue_expired("live@example.com");
    env.write_live(&FakeProvider::blob(&live));
    env.cmd(&["add", "live"]).ok();
    env.cmd(&["add", "other", "--from", "stdin"])
        .stdin(FakeProvider::blob(
            &provider.issue_expired("other@example.com"),
        ))
        .ok();
    let mut trials = 0;
    for round in 0..23 {
        for point in points {
            for slot in ["live", "other"] {
                if slot == "other" && point == "apply:after-live" {
                    continue; // only the live slot's refresh writes the live file
                }
                let out = env
                    .cmd(&["refresh", slot])
                    .env("TOKENKEEPER_FAILPOINT", point)
                    .run();
                assert_ne!(out.code, 0, "{point} did not fire for {slot}");
                // The next command finishes the job.
                env.cmd(&["get", slot]).ok();
                let refresh = env.refresh_token_of(slot);
                assert!(
                    provider.is_current(&refresh),
                    "round {round}, {point}, {slot}: stored refresh token is not current\n{}",
                    env.listing()
                );
                assert!(!provider.family_revoked(&refresh));
                if slot == "live" {
                    let live: serde_json::Value =
                        serde_json::from_str(&env.read_live().unwrap()).unwrap();
                    assert_eq!(
                        live["claudeAiOauth"]["refreshToken"],
                        refresh.as_str(),
                        "{point}: live file lags"
                    );
                }
                trials += 1;
            }
        }
    }
    assert!(trials >= 200);
    assert_eq!(
        env.cmd(&["list", "--format", "json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        2,
        "no recovered duplicates"
    );
}
