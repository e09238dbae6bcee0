//! `usage` and the usage columns of `list`, against the fake provider.

use serde_json::json;

use crate::support::provider::{Failure, FakeProvider, Issued};
use crate::support::*;

fn setup(provider: &FakeProvider, names: &[&str]) -> (Env, Vec<Issued>) {
    let env = Env::with_provider(provider);
    let logins = names
        .iter()
        .map(|name| {
            let login = provider.issue(&format!("{name}@example.com"));
            env.add_login(name, &login);
            login
        })
        .collect();
    (env, logins)
}

fn classic_usage() -> serde_json::Value {
    json!({
        "five_hour": {"utilization": 24.0, "resets_at": "2026-01-02T19:59:59.600956+00:00"},
        "seven_day": {"utilization": 61.0, "resets_at": 1767400000},
        "seven_day_sonnet": {"utilization": 3, "resets_at": null},
        "seven_day_opus": null,
        "extra_usage": {"is_enabled": false}
    })
}

#[test]
fn usage_shows_each_window_with_its_reset_time() {
    let provider = FakeProvider::start();
    provider.set_usage(classic_usage());
    let (env, logins) = setup(&provider, &["ann"]);
    let out = env.cmd(&["usage", "ann"]).ok();
    out.stdout_has("ann  ann@example.com  max")
        .stdout_has("5-hour")
        .stdout_has("24%  resets 2026-01-02 19:59 UTC")
        .stdout_has("7-day Sonnet")
        .stdout_has("3%")
        .hides(&logins[0].access)
        .hides(&logins[0].refresh);
    assert!(!out.stdout.contains("Opus"), "a null window is not shown");
    let json = env.cmd(&["usage", "ann", "--format", "json"]).ok().json();
    let windows = &json[0]["windows"];
    assert_eq!(json[0]["status"], "ok");
    assert_eq!(windows[0]["id"], "five_hour");
    assert_eq!(windows[0]["percent"], 24.0);
    assert_eq!(windows[1]["id"], "seven_day");
    assert_eq!(windows[1]["resets_at"], "2026-01-03T00:26:40Z");
    assert_eq!(windows[2]["resets_at"], serde_json::Value::Null);
    assert_eq!(
        provider.refresh_calls(),
        0,
        "a fresh token is not refreshed"
    );
}

#[test]
fn newer_limits_are_preferred_and_odd_values_tolerated() {
    let provider = FakeProvider::start();
    provider.set_usage(json!({
        "five_hour": {"utilization": 24.0, "resets_at": null},
        "seven_day": "not an object",
        "limits": [
            {"kind": "session", "percent": 15, "resets_at": 1767400000000i64, "scope": null},
            {"kind": "weekly", "percent": "40", "resets_at": "2026-01-09T00:00:00Z", "scope": null},
            {"kind": "weekly", "percent": 7.5, "resets_at": null, "scope": "opus"},
            {"kind": "something_new", "percent": null}
        ],
        "unknown": {"nested": [1, 2]}
    }));
    let (env, _) = setup(&provider, &["ann"]);
    let json = env.cmd(&["usage", "ann", "--format", "json"]).ok().json();
    let windows = json[0]["windows"].as_array().unwrap();
    let by_id = |id: &str| windows.iter().find(|w| w["id"] == id).unwrap().clone();
    assert_eq!(by_id("five_hour")["percent"], 15.0);
    assert_eq!(by_id("five_hour")["resets_at"], "2026-01-03T00:26:40Z");
    assert_eq!(by_id("seven_day")["percent"], 40.0);
    assert_eq!(by_id("seven_day_opus")["percent"], 7.5);
    assert_eq!(by_id("something_new")["percent"], serde_json::Value::Null);
}

#[test]
fn an_expired_token_is_refreshed_before_reading_usage() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let login = provider.issue_expired("old@example.com");
    env.add_login("old", &login);
    env.cmd(&["usage", "old"]).ok().stdout_has("5-hour");
    assert_eq!(provider.refreshes_served(), 1);
    assert!(provider.is_current(&env.refresh_token_of("old")));
}

#[test]
fn a_refused_access_token_is_refreshed_once_and_the_request_retried() {
    let provider = FakeProvider::start();
    let (env, logins) = setup(&provider, &["ann"]);
    provider.kill_access(&logins[0].access);
    env.cmd(&["usage", "ann"]).ok().stdout_has("5-hour");
    assert_eq!(provider.refreshes_served(), 1);
    assert_eq!(provider.usage_calls(), 2);
    assert_ne!(env.access_token_of("ann"), logins[0].access);
}

#[test]
fn transient_usage_failures_are_retried() {
    let provider = FakeProvider::start();
    let (env, _) = setup(&provider, &["ann"]);
    provider.fail_next(2, Failure::Status(503));
    env.cmd(&["usage", "ann"]).ok().stdout_has("5-hour");
    assert_eq!(provider.refresh_calls(), 0);
}

#[test]
fn setup_tokens_say_usage_is_unavailable() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    env.cmd(&["add", "ci", "--from", "stdin"])
        .stdin(access("ci"))
        .ok();
    env.cmd(&["usage", "ci"])
        .ok()
        .stdout_is("ci: usage unavailable for setup tokens\n")
        .hides(&access("ci"));
    let json = env.cmd(&["usage", "ci", "--format", "json"]).ok().json();
    assert_eq!(json[0]["status"], "unavailable");
    assert_eq!(provider.usage_calls(), 0);
}

#[test]
fn usage_all_reports_each_failure_and_still_shows_the_rest() {
    let provider = FakeProvider::start();
    let (env, _) = setup(&provider, &["ann", "bob"]);
    let gone = provider.issue_expired("gone@example.com");
    env.add_login("gone", &gone);
    provider.revoke(&gone.refresh);
    let out = env.cmd(&["usage", "--all"]).run().code(1);
    out.stdout_has("ann  ann@example.com")
        .stdout_has("bob  bob@example.com")
        .stderr_has("slot 'gone' needs a new login")
        .stderr_has("the usage of 1 of 3 slots could not be read")
        .hides(&gone.refresh);
    let json = env
        .cmd(&["usage", "--all", "--format", "json"])
        .run()
        .code(1)
        .json();
    let statuses: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["ok", "ok", "error"]);
}

#[test]
fn a_single_failing_slot_is_a_one_line_error() {
    let provider = FakeProvider::start();
    let (env, _) = setup(&provider, &["ann"]);
    provider.fail_next(10, Failure::Status(500));
    env.cmd(&["usage", "ann"])
        .fails(1)
        .one_line_error()
        .stderr_has("cannot read the usage of slot 'ann': the provider answered HTTP 500");
}

#[test]
fn list_shows_the_last_reading_and_renews_only_stale_ones() {
    let provider = FakeProvider::start();
    provider.set_usage(classic_usage());
    let (env, logins) = setup(&provider, &["ann", "bob"]);
    env.cmd(&["usage", "--all"]).ok();
    let calls = provider.usage_calls();
    let out = env.cmd(&["list"]).ok();
    out.stdout_has("5H")
        .stdout_has("7D")
        .stdout_has("24%")
        .stdout_has("61%")
        .hides(&logins[0].access);
    assert!(!out.stdout.contains("SONNET"));
    assert_eq!(
        provider.usage_calls(),
        calls,
        "fresh readings are not renewed"
    );
    let json = env.cmd(&["list", "--format", "json"]).ok().json();
    assert_eq!(json[0]["usage"]["windows"][0]["percent"], 24.0);

    env.cmd(&["list", "--detail"])
        .ok()
        .stdout_has("7D SONNET")
        .stdout_has("7D OPUS");

    // Stale readings are renewed with the stored tokens, never with a refresh.
    provider.set_usage(json!({"five_hour": {"utilization": 80.0}}));
    env.cmd(&["list"])
        .env("TOKENKEEPER_USAGE_MAX_AGE", "0s")
        .ok()
        .stdout_has("80%");
    assert_eq!(provider.usage_calls(), calls + 2);
    assert_eq!(provider.refresh_calls(), 0);
}

#[test]
fn list_without_usage_skips_the_network_and_the_columns() {
    let provider = FakeProvider::start();
    let (env, _) = setup(&provider, &["ann"]);
    let out = env.cmd(&["list", "--no-usage"]).ok();
    assert!(!out.stdout.contains("5H"), "{}", out.stdout);
    assert_eq!(provider.usage_calls(), 0);
    let json = env
        .cmd(&["list", "--no-usage", "--format", "json"])
        .ok()
        .json();
    assert!(json[0].get("usage").is_none());
}

#[test]
fn list_does_not_ask_again_on_every_run_when_reading_fails() {
    let provider = FakeProvider::start();
    let (env, _) = setup(&provider, &["ann"]);
    provider.fail_next(100, Failure::Status(500));
    env.cmd(&["list"]).ok().stdout_has("ann");
    assert_eq!(provider.usage_calls(), 1, "one quick attempt, no retries");
    env.cmd(&["list"]).ok();
    assert_eq!(
        provider.usage_calls(),
        1,
        "the failed attempt is remembered"
    );
    env.cmd(&["list"])
        .env("TOKENKEEPER_USAGE_MAX_AGE", "0s")
        .ok();
    assert_eq!(
        provider.usage_calls(),
        2,
        "and retried once it is old enough"
    );
}

#[test]
fn list_still_works_when_the_provider_is_down() {
    let provider = FakeProvider::start();
    let (mut env, logins) = setup(&provider, &["ann"]);
    env.cmd(&["usage", "ann"]).ok();
    env.set("TOKENKEEPER_CLAUDE_API_URL", "http://127.0.0.1:9");
    env.cmd(&["list"])
        .env("TOKENKEEPER_USAGE_MAX_AGE", "0s")
        .ok()
        .stdout_has("24%")
        .hides(&logins[0].access);
}

#[test]
fn usage_of_many_slots_runs_concurrently_within_the_bound() {
    let provider = FakeProvider::start();
    let names: Vec<String> = (0..12).map(|i| format!("u{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (env, _) = setup(&provider, &refs);
    provider.set_latency(std::time::Duration::from_millis(300));
    let json = env
        .cmd(&["usage", "--all", "--jobs", "4", "--format", "json"])
        .ok()
        .json();
    assert_eq!(json.as_array().unwrap().len(), 12);
    assert!(json.as_array().unwrap().iter().all(|i| i["status"] == "ok"));
    let peak = provider.usage_peak_concurrency();
    assert!((2..=4).contains(&peak), "peak concurrency {peak}");
    // Every reading was kept for `list`.
    let listed = env.cmd(&["list", "--format", "json"]).ok().json();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["usage"].is_object())
    );
}

#[test]
fn issue14_usage_colours_quota_at_80_and_95_percent_when_asked() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    provider.set_usage(serde_json::json!({
        "five_hour": {"utilization": 97.0, "resets_at": null},
        "seven_day": {"utilization": 10.0, "resets_at": null}
    }));
    env.add_login("work", &provider.issue("c@example.com"));
    let plain = env.cmd(&["usage", "work"]).ok();
    assert!(!plain.stdout.contains('\u{1b}'));
    plain.stdout_has("  5-hour           97%");
    env.cmd(&["usage", "work", "--color", "always"])
        .ok()
        .stdout_has("\u{1b}[31m  97%");
    env.cmd(&["usage", "work"])
        .env("NO_COLOR", "1")
        .ok()
        .stdout_has("  5-hour           97%");
}
