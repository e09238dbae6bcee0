//! Planted tokens never appear in the output of any command but `get`, `get-token`, `export`
//! (to stdout), nor in its logs at the most verbose level.

use crate::support::*;

const PLANTED: &str = "PLANTED";

#[test]
fn no_command_but_get_and_export_prints_a_token_even_at_trace_level() {
    let env = Env::new();
    env.write_live(&fresh_blob("live"));
    env.write_login_record("uuid-l", "live@example.com");
    let file = env.root.join("creds.json");
    std::fs::write(&file, fresh_blob("file")).unwrap();
    let out_path = env.root.join("exported.json");
    let runs: Vec<(Vec<&str>, Option<String>)> = vec![
        (vec!["add"], None),
        (
            vec!["add", "stdin", "--from", "stdin"],
            Some(fresh_blob("stdin")),
        ),
        (
            vec!["add", "file", "--from", "file", file.to_str().unwrap()],
            None,
        ),
        (vec!["add", "ll", "--from", "stdin"], Some(access("ll"))),
        (vec!["list"], None),
        (vec!["list", "--format", "json"], None),
        (vec!["use", "stdin"], None),
        (vec!["use", "stdin", "--format", "json"], None),
        (vec!["use", "ll"], None),
        (vec!["check"], None),
        (vec!["check", "file", "--format", "json"], None),
        (
            vec!["export", "file", "--path", out_path.to_str().unwrap()],
            None,
        ),
        (vec!["remove", "file"], None),
        (vec!["store-token"], Some(access("ralph"))),
        (vec!["check-token"], None),
        (vec!["check-token", "--format", "json"], None),
        (
            vec!["store-token", "--agent", "codex", "--format", "json"],
            Some(format!(r#"{{"accessToken":"{}"}}"#, access("codex"))),
        ),
        (
            vec!["add", "bad", "--from", "stdin"],
            Some(format!(
                r#"{{"claudeAiOauth":{{"accessToken":"{}","scopes":"x"}}}}"#,
                access("bad")
            )),
        ),
        (
            vec!["add", "stdin", "--from", "stdin"],
            Some(fresh_blob("dup")),
        ),
        (vec!["remove", "stdin"], None),
    ];
    for (args, stdin) in runs {
        let mut all = args.clone();
        all.push("-vv");
        let mut run = env.cmd(&all).env("RUST_LOG", "trace");
        if let Some(input) = stdin {
            run = run.stdin(input);
        }
        run.run().hides(PLANTED);
    }
    // Claude Code refreshes behind tokenkeeper's back (its login record unchanged): the
    // recovery path logs, and stays quiet about tokens.
    env.write_live(&fresh_blob("rotated"));
    env.cmd(&["list", "-vv"])
        .env("RUST_LOG", "trace")
        .ok()
        .hides(PLANTED)
        .stderr_has("login record is unchanged");
    // A login to another account: kept as a new slot, as quietly.
    env.write_login_record("uuid-other", "other@example.com");
    env.write_live(&fresh_blob("relogin"));
    env.cmd(&["list", "-vv"])
        .env("RUST_LOG", "trace")
        .ok()
        .hides(PLANTED)
        .stderr_has("saved it as slot");
}

#[test]
fn errors_about_stored_secrets_name_the_place_not_the_value() {
    let env = Env::new();
    env.add_fresh("x");
    // Corrupt the stored secret so parsing fails on the way out.
    let store = env.data_dir().join("store/tokenkeeper");
    let file = std::fs::read_dir(&store)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace(r#""expiresAt":"#, r#""expiresAt":"PLANTED","x":"#),
    )
    .unwrap();
    env.cmd(&["get", "x"])
        .fails(1)
        .hides(PLANTED)
        .stderr_has("store entry of slot 'x'");
}

#[test]
fn network_paths_never_log_a_token_even_at_trace_level() {
    use crate::support::provider::{Failure, FakeProvider};
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let live = provider.issue_expired("live@example.com");
    env.write_live(&FakeProvider::blob(&live));
    let other = provider.issue("other@example.com");
    let gone = provider.issue_expired("gone@example.com");
    let runs: Vec<(Vec<&str>, Option<String>)> = vec![
        (vec!["add", "live"], None),
        (
            vec!["add", "--from", "stdin"],
            Some(FakeProvider::blob(&other)),
        ),
        (
            vec!["add", "gone", "--from", "stdin"],
            Some(FakeProvider::blob(&gone)),
        ),
        (vec!["refresh", "--all", "--force"], None),
        (vec!["usage", "--all", "--format", "json"], None),
        (vec!["list", "--detail"], None),
        (vec!["refresh", "gone"], None),
    ];
    for (i, (args, stdin)) in runs.into_iter().enumerate() {
        if i == 5 {
            provider.revoke(&env.refresh_token_of("gone"));
            provider.fail_next(2, Failure::Status(500));
        }
        let mut all = args.clone();
        all.push("-vv");
        let mut run = env
            .cmd(&all)
            .env("RUST_LOG", "trace")
            .env("TOKENKEEPER_USAGE_MAX_AGE", "0s");
        if let Some(input) = stdin {
            run = run.stdin(input);
        }
        let out = run.run();
        out.hides(PLANTED);
        if i == 3 {
            // Trace logging really was on, down to the HTTP client.
            out.stderr_has("refreshing").stderr_has("provider answered");
        }
    }
    assert!(provider.refreshes_served() >= 3, "the network paths ran");
}
