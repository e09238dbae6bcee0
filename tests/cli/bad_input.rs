//! Bad input: a clear one-line error, a non-zero exit, and nothing stored changed.

use std::os::unix::fs::PermissionsExt;

use crate::support::*;

/// An environment with one active slot and one ralph token, so there is something to lose.
fn populated() -> Env {
    let env = Env::new();
    env.write_live(&fresh_blob("keep"));
    env.cmd(&["add", "keep"]).ok();
    env.cmd(&["store-token"]).stdin(access("ralph")).ok();
    env
}

fn refused(env: &Env, args: &[&str], stdin: &[u8], code: i32, want: &str) {
    let before = env.snapshot();
    env.cmd(args)
        .stdin(stdin)
        .fails(code)
        .stderr_has(want)
        .hides("PLANTED");
    assert_eq!(env.snapshot(), before, "{args:?} changed stored files");
}

#[test]
fn malformed_credentials_on_stdin() {
    let env = populated();
    let good = fresh_blob("bad");
    let cases: Vec<(String, &str)> = vec![
        (good[..good.len() / 2].to_string(), "truncated JSON"),
        (
            good.replace(
                r#"["user:inference","user:profile"]"#,
                r#""user:inference""#,
            ),
            "`claudeAiOauth.scopes` must be an array",
        ),
        (
            good.replace(r#""expiresAt":"#, r#""expiresAt":"soon","x":"#),
            "`claudeAiOauth.expiresAt` must be a number",
        ),
        (
            r#"{"claudeAiOauth":{"accessToken":null,"refreshToken":"sk-ant-ort01-x-PLANTED"}}"#
                .into(),
            "accessToken` is missing",
        ),
        ("[1,2,3]".into(), "expected a JSON object"),
        ("{not json PLANTED".into(), "not valid JSON"),
        (
            "sk-ant-ort01-only-refresh-PLANTED".into(),
            "that is a refresh token",
        ),
        ("two words PLANTED".into(), "several words"),
    ];
    for (input, want) in &cases {
        refused(
            &env,
            &["add", "x", "--from", "stdin"],
            input.as_bytes(),
            1,
            want,
        );
        if !input.contains("refreshToken") && !want.contains("claudeAiOauth") {
            refused(&env, &["store-token"], input.as_bytes(), 1, want);
        }
    }
}

#[test]
fn empty_huge_and_non_utf8_stdin() {
    let env = populated();
    refused(&env, &["store-token"], b"", 1, "standard input is empty");
    refused(
        &env,
        &["store-token"],
        b" \n\t\n",
        1,
        "standard input is empty",
    );
    refused(
        &env,
        &["add", "x", "--from", "stdin"],
        b"",
        1,
        "standard input is empty",
    );
    let huge = vec![b'A'; (1 << 20) + 1];
    refused(&env, &["store-token"], &huge, 1, "larger than 1 MiB");
    refused(
        &env,
        &["add", "x", "--from", "stdin"],
        &huge,
        1,
        "larger than 1 MiB",
    );
    refused(
        &env,
        &["store-token"],
        b"sk-ant-oat01-\xff\xfe-PLANTED",
        1,
        "not UTF-8",
    );
}

#[test]
fn missing_and_unreadable_files() {
    let env = populated();
    let missing = env.root.join("missing.json");
    refused(
        &env,
        &["add", "x", "--from", "file", missing.to_str().unwrap()],
        b"",
        1,
        "no such file",
    );
    let dir = env.root.join("a-dir");
    std::fs::create_dir(&dir).unwrap();
    refused(
        &env,
        &["add", "x", "--from", "file", dir.to_str().unwrap()],
        b"",
        1,
        "cannot read",
    );
}

#[test]
fn world_readable_store_file_is_refused_with_a_fix() {
    let env = populated();
    let secret = env.data_dir().join("store/claude-token/agent-loop");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = env.snapshot();
    let out = env.cmd(&["get-token"]).fails(1);
    out.stderr_has("mode 644")
        .stderr_has("hint: run: chmod 600")
        .stdout_is("");
    assert_eq!(env.snapshot(), before);
}

#[test]
fn group_readable_store_directory_is_refused() {
    let env = populated();
    let store = env.data_dir().join("store");
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o750)).unwrap();
    env.cmd(&["get", "keep"])
        .fails(1)
        .stderr_has("mode 750")
        .stderr_has("chmod 700");
}

#[test]
fn damaged_catalog_is_reported_and_left_alone() {
    let env = populated();
    let catalog = env.data_dir().join("slots.json");
    let text = std::fs::read_to_string(&catalog).unwrap();
    std::fs::write(&catalog, &text[..text.len() / 2]).unwrap();
    let before = env.snapshot();
    env.cmd(&["list"])
        .fails(1)
        .stderr_has("slot catalog")
        .stderr_has("is damaged")
        .stderr_has("hint:");
    env.cmd(&["use", "keep"]).fails(1);
    assert_eq!(env.snapshot(), before);
    std::fs::write(&catalog, r#"{"version":1,"slots":[{"id":7}]}"#).unwrap();
    env.cmd(&["list"]).fails(1).stderr_has("is damaged");
}

#[test]
fn damaged_live_file_is_not_overwritten_silently_by_add() {
    let env = populated();
    env.write_live(r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-x-PLANTED""#);
    let before = env.snapshot();
    env.cmd(&["add", "again"])
        .fails(1)
        .stderr_has(".credentials.json does not hold a valid credential: truncated JSON");
    assert_eq!(env.snapshot(), before);
}

#[test]
fn unknown_slot_everywhere() {
    let env = populated();
    for args in [
        &["use", "ghost"][..],
        &["get", "ghost"],
        &["check", "ghost"],
        &["export", "ghost"],
        &["remove", "ghost"],
    ] {
        refused(&env, args, b"", 1, "no claude slot named 'ghost'");
    }
}

#[test]
fn issue14_with_json_asked_for_errors_are_json_too() {
    let env = Env::new();
    for args in [
        vec!["get", "ghost", "--format", "json"],
        vec!["--json", "get", "ghost"],
    ] {
        let out = env.cmd(&args).run().code(1);
        let error: serde_json::Value = serde_json::from_str(out.stderr.trim()).unwrap();
        assert_eq!(error["code"], 1);
        assert!(
            error["error"]
                .as_str()
                .unwrap()
                .contains("no claude slot named 'ghost'")
        );
        assert!(error["hint"].is_string());
        assert_eq!(out.stdout, "");
    }
    let out = env.cmd(&["get", "--json", "--bogus"]).run().code(2);
    let error: serde_json::Value = serde_json::from_str(out.stderr.trim()).unwrap();
    assert_eq!(error["code"], 2);
    assert!(
        error["error"].as_str().unwrap().contains("--bogus"),
        "{error}"
    );
    // Help is still help.
    env.cmd(&["get", "--json", "--help"])
        .ok()
        .stdout_has("Usage:");
}
