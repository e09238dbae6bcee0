use crate::support::*;

#[test]
fn get_prints_only_the_token_of_the_active_or_named_slot() {
    let env = Env::new();
    env.write_live(&fresh_blob("live"));
    env.cmd(&["add", "live"]).ok();
    env.add_fresh("other");
    env.cmd(&["get"])
        .ok()
        .stdout_is(&format!("{}\n", access("live")));
    let out = env.cmd(&["get", "other"]).ok();
    out.stdout_is(&format!("{}\n", access("other")));
    assert_eq!(out.stderr, "");
    let json = env.cmd(&["get", "other", "--format", "json"]).ok().json();
    assert_eq!(json["access_token"], access("other"));
}

#[test]
fn get_without_an_active_slot_says_what_to_do() {
    let env = Env::new();
    env.add_fresh("a");
    env.cmd(&["get"])
        .fails(1)
        .stderr_has("no active claude slot")
        .stderr_has("hint:");
}

#[test]
fn expired_token_fails_get_and_check_with_nothing_on_stdout() {
    let env = Env::new();
    env.add_expired_without_refresh("old");
    let out = env.cmd(&["get", "old"]).fails(1);
    out.stdout_is("")
        .stderr_has("expired 3h ago")
        .stderr_has("hint: store a new one")
        .hides(&access("old"));
    let out = env.cmd(&["check", "old"]).run().code(1);
    out.stdout_is("").stderr_has("expired");
    let json = env
        .cmd(&["check", "old", "--format", "json"])
        .run()
        .code(1)
        .json();
    assert_eq!(json["valid"], false);
    assert!(json["remaining_seconds"].as_i64().unwrap() < 0);
}

#[test]
fn expired_oauth_token_with_the_provider_unreachable_fails_and_keeps_the_credential() {
    let env = Env::new();
    let blob = claude_blob(&access("old"), &refresh("old"), now_ms() - 3 * 3_600_000);
    env.cmd(&["add", "old", "--from", "stdin"])
        .stdin(&blob)
        .ok();
    let before = env.snapshot();
    let out = env.cmd(&["get", "old"]).fails(1);
    out.stdout_is("")
        .one_line_error()
        .stderr_has("cannot refresh slot 'old': could not connect")
        .hides(&access("old"))
        .hides(&refresh("old"));
    // The unspent refresh token is still there, and nothing stored changed.
    assert_eq!(
        env.stored("old")["claudeAiOauth"]["refreshToken"],
        refresh("old")
    );
    let stored = |snapshot: std::collections::BTreeMap<String, (Vec<u8>, u32)>| {
        snapshot
            .into_iter()
            .filter(|(path, _)| !path.ends_with(".lock"))
            .collect::<Vec<_>>()
    };
    assert_eq!(stored(before), stored(env.snapshot()));
}

#[test]
fn check_reports_days_and_hours_remaining() {
    let env = Env::new();
    env.cmd(&["add", "year", "--from", "stdin"])
        .stdin(access("year"))
        .ok();
    env.cmd(&["add", "short", "--from", "stdin"])
        .stdin(claude_blob(
            &access("s"),
            &refresh("s"),
            now_ms() + 5 * 3_600_000 + 30 * 60_000 + 5_000,
        ))
        .ok();
    env.cmd(&["check", "year"])
        .ok()
        .stdout_has("364 days remaining");
    env.cmd(&["check", "short"])
        .ok()
        .stdout_has("(in 5h 30m, 0 days remaining)");
    let json = env.cmd(&["check", "year", "--format", "json"]).ok().json();
    assert_eq!(json["valid"], true);
    assert_eq!(json["days_remaining"], 364);
}

#[test]
fn check_of_a_missing_slot_fails() {
    let env = Env::new();
    env.cmd(&["check", "ghost"])
        .fails(1)
        .stderr_has("no claude slot named 'ghost'");
}

#[test]
fn issue14_check_tells_will_refresh_from_needs_login_and_looks_ahead_with_within() {
    use crate::support::provider::FakeProvider;
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let day = 86_400_000;
    // Expired access token, refresh token good for 3 more days: usable, not for a week.
    let blob = format!(
        r#"{{"claudeAiOauth":{{"accessToken":"{}","refreshToken":"{}","expiresAt":{},"refreshTokenExpiresAt":{},"scopes":["user:inference"]}}}}"#,
        access("later"),
        refresh("later"),
        now_ms() - 60_000,
        now_ms() + 3 * day
    );
    env.cmd(&["add", "later", "--from", "stdin"])
        .stdin(&blob)
        .ok();
    env.cmd(&["check", "later"])
        .ok()
        .stdout_has("is usable: its access token expired 1m ago and will be refreshed on use")
        .stdout_has("its refresh token lasts until");
    env.cmd(&["check", "later", "--within", "2d"]).ok();
    env.cmd(&["check", "later", "--within", "7d"])
        .run()
        .code(1)
        .stderr_has("will not stay usable for");
    let json = env.cmd(&["check", "later", "--format", "json"]).ok().json();
    assert_eq!(json["state"], "expired-will-refresh");
    assert_eq!(json["usable"], true);

    // A setup token lasting 3 days: fine today, not for a week.
    let setup = format!(
        r#"{{"accessToken":"{}","expiresAt":{}}}"#,
        access("setup"),
        now_ms() + 3 * day
    );
    env.cmd(&["add", "setup", "--from", "stdin"])
        .stdin(&setup)
        .ok();
    env.cmd(&["check", "setup", "--within", "48h"]).ok();
    env.cmd(&["check", "setup", "--within", "7d"]).run().code(1);

    // A refresh token the provider refused: needs a login.
    let login = provider.issue_expired("dead@example.com");
    env.add_login("dead", &login);
    provider.revoke(&login.refresh);
    env.cmd(&["refresh", "dead"]).fails(1);
    env.cmd(&["check", "dead"])
        .fails(1)
        .stderr_has("slot 'dead' needs a new login");
}
