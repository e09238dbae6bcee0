use std::os::unix::fs::PermissionsExt;

use crate::support::*;

/// A blob with unknown keys everywhere, in an order no serialiser would choose by itself.
fn rich_blob(tag: &str) -> String {
    format!(
        r#"{{"zFirst":1,"claudeAiOauth":{{"scopes":["user:inference","user:profile"],"accessToken":"{}","refreshToken":"{}","expiresAt":{},"refreshTokenExpiresAt":{},"subscriptionType":"max","rateLimitTier":"default_claude_max_5x","futureField":{{"b":[1,2,{{"c":null}}],"a":"ü ✓"}}}},"mcpOAuth":{{"server-1":{{"accessToken":"mcp-x","expiresAt":0}}}},"aLast":[true,false]}}"#,
        access(tag),
        refresh(tag),
        now_ms() + 8 * 3_600_000,
        now_ms() + 30 * 86_400_000
    )
}

#[test]
fn use_writes_exactly_what_claude_code_writes_with_mode_0600() {
    let env = Env::new();
    let blob = rich_blob("rich");
    env.cmd(&["add", "rich", "--from", "stdin"])
        .stdin(format!("  {blob}\n"))
        .ok();
    env.cmd(&["use", "rich"])
        .ok()
        .stdout_has("claude now uses slot 'rich'");
    assert_eq!(
        env.read_live().unwrap(),
        blob,
        "live file must be byte-for-byte Claude's compact JSON"
    );
    let mode = std::fs::metadata(env.live_path())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    // add → use → export: unchanged.
    assert_eq!(env.stored_text("rich"), blob);
    env.cmd(&["use", "rich"])
        .ok()
        .stdout_has("already uses slot 'rich'");
}

#[test]
fn use_honours_claude_config_dir() {
    let mut env = Env::new();
    let dir = env.root.join("custom-claude");
    env.set("CLAUDE_CONFIG_DIR", dir.to_str().unwrap());
    env.add_fresh("x");
    env.cmd(&["use", "x"]).ok();
    assert_eq!(
        std::fs::read_to_string(dir.join(".credentials.json")).unwrap(),
        fresh_blob_shape(&env)
    );
    assert!(!env.home.join(".claude/.credentials.json").exists());
}

fn fresh_blob_shape(env: &Env) -> String {
    env.stored_text("x")
}

#[test]
fn use_saves_a_credential_claude_code_updated_back_into_its_slot() {
    let env = Env::new();
    env.add_fresh("a");
    env.add_fresh("b");
    env.cmd(&["use", "a"]).ok();
    // Claude Code rewrites its file for the same lineage (e.g. adds an MCP login).
    let updated = fresh_blob("a").replace(r#""mcpOAuth":{}"#, r#""mcpOAuth":{"srv":{"t":1}}"#);
    env.write_live(&updated);
    env.cmd(&["use", "b"]).ok();
    assert_eq!(env.stored_text("a"), updated);
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

#[test]
fn use_keeps_both_when_the_live_account_cannot_be_told() {
    let env = Env::new();
    env.add_fresh("a");
    env.add_fresh("b");
    env.cmd(&["use", "a"]).ok();
    // Claude Code refreshed (or the user logged in again): a new lineage nobody has.
    env.write_live(&fresh_blob("a-rotated"));
    env.cmd(&["use", "b"])
        .ok()
        .stderr_has("saved it as slot 'a-recovered'");
    // Neither a nor b was overwritten, and the newest tokens are kept.
    env.cmd(&["get", "a"])
        .ok()
        .stdout_is(&format!("{}\n", access("a")));
    env.cmd(&["get", "b"])
        .ok()
        .stdout_is(&format!("{}\n", access("b")));
    env.cmd(&["get", "a-recovered"])
        .ok()
        .stdout_is(&format!("{}\n", access("a-rotated")));
    assert_eq!(env.read_live().unwrap(), fresh_blob_of(&env, "b"));
}

fn fresh_blob_of(env: &Env, slot: &str) -> String {
    env.stored_text(slot)
}

#[test]
fn an_unmanaged_login_is_not_taken_over_by_list() {
    let env = Env::new();
    env.add_fresh("a");
    let someone = fresh_blob("someone");
    env.write_live(&someone);
    assert_eq!(
        env.cmd(&["list", "--format", "json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(env.read_live().unwrap(), someone);
}

#[test]
fn use_of_a_long_lived_token_explains_the_environment_variable() {
    let env = Env::new();
    env.cmd(&["add", "ci", "--from", "stdin"])
        .stdin(access("ci"))
        .ok();
    let before = env.snapshot();
    env.cmd(&["use", "ci"])
        .fails(1)
        .stderr_has("CLAUDE_CODE_OAUTH_TOKEN")
        .hides(&access("ci"));
    assert_eq!(env.snapshot(), before);
}

#[test]
fn use_of_an_unknown_slot_changes_nothing() {
    let env = Env::new();
    env.add_fresh("a");
    let before = env.snapshot();
    env.cmd(&["use", "nope"])
        .fails(1)
        .stderr_has("no claude slot named 'nope'")
        .stderr_has("hint: the claude slots are: a");
    assert_eq!(env.snapshot(), before);
}
