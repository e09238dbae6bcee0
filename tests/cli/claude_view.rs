//! What Claude Code itself shows after tokenkeeper switches accounts: its login record names
//! the slot's account, every other byte of that file is kept, and a real Claude Code agrees.

use std::fs;

use serde_json::{Value, json};

use crate::support::provider::FakeProvider;
use crate::support::*;

/// The real Claude Code `scripts/test` installs (pinned), for the checks only it can make.
fn claude_path() -> String {
    std::env::var("TOKENKEEPER_TEST_CLAUDE")
        .expect("TOKENKEEPER_TEST_CLAUDE names a real `claude`: run the suite with scripts/test")
}

fn login_record(env: &Env) -> String {
    fs::read_to_string(env.home.join(".claude.json")).unwrap()
}

/// A login record as Claude Code writes one: pretty-printed, with much besides the account.
fn claude_json(account: &Value) -> String {
    let doc = json!({
        "numStartups": 12,
        "tipsHistory": {"memory": 3},
        "oauthAccount": account,
        "projects": {"/work": {"allowedTools": [], "lastCost": 1.50}},
        "userID": "abc"
    });
    let text = serde_json::to_string_pretty(&doc).unwrap();
    // Claude Code writes 1.50 as it came; keep a spelling a re-serialisation would change.
    text.replace("1.5", "1.50")
}

fn auth_status(env: &Env) -> Value {
    let extra = [("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")];
    serde_json::from_str(&env.run_program(&claude_path(), &["auth", "status"], &extra)).unwrap()
}

#[test]
fn after_use_claude_code_names_the_slots_account_and_the_rest_of_its_file_is_kept() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    // The first account logged in with Claude Code, which wrote its login record.
    let jane = provider.issue("jane@example.com");
    let jane_account = json!({
        "accountUuid": "uuid-jane",
        "emailAddress": "jane@example.com",
        "organizationUuid": "org-uuid-jane",
        "organizationName": "Jane's Org",
        "organizationRole": "admin",
        "displayName": "Jane"
    });
    env.write_live(&FakeProvider::blob(&jane));
    fs::write(env.home.join(".claude.json"), claude_json(&jane_account)).unwrap();
    env.cmd(&["add"]).ok();
    // A second account, known from the provider's profile.
    env.add_login("work", &provider.issue("work@example.com"));

    env.cmd(&["use", "work"]).ok();
    let want = claude_json(&json!({
        "accountUuid": "uuid-work",
        "emailAddress": "work@example.com",
        "organizationUuid": "org-uuid-work",
        "organizationName": "Test Org"
    }));
    assert_eq!(
        login_record(&env),
        want,
        "only oauthAccount changed, byte for byte"
    );
    let status = auth_status(&env);
    assert_eq!(status["email"], "work@example.com");
    assert_eq!(status["orgName"], "Test Org");

    // Back (after Claude Code rewrote its file its own way): the first account's own record,
    // every field of it, and nothing else changed.
    let before: Value = serde_json::from_str(&login_record(&env)).unwrap();
    env.cmd(&["use", "jane"]).ok();
    let mut after: Value = serde_json::from_str(&login_record(&env)).unwrap();
    assert_eq!(after["oauthAccount"], jane_account);
    after["oauthAccount"] = before["oauthAccount"].clone();
    assert_eq!(after, before);
    let status = auth_status(&env);
    assert_eq!(status["email"], "jane@example.com");
    assert_eq!(status["orgName"], "Jane's Org");
}

#[test]
fn a_missing_login_record_is_not_created() {
    let env = Env::new();
    env.add_fresh("a");
    env.cmd(&["use", "a"]).ok();
    assert!(!env.home.join(".claude.json").exists());
}

#[test]
fn claude_codes_write_to_its_login_record_during_use_is_kept() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    env.add_login("work", &provider.issue("work@example.com"));
    let path = env.home.join(".claude.json");
    fs::write(&path, claude_json(&json!({"accountUuid": "uuid-old"}))).unwrap();
    // `use` pauses between preparing its write and renaming it; Claude Code writes meanwhile.
    let child = env
        .cmd(&["use", "work"])
        .env("TOKENKEEPER_PAUSEPOINT", "replace:before-check=1500")
        .spawn_piped();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let theirs = claude_json(&json!({"accountUuid": "uuid-old"})).replace("12", "13");
    fs::write(&path, &theirs).unwrap();
    let out = finish(child, 30);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = login_record(&env);
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["numStartups"], 13, "Claude Code's write is kept");
    assert_eq!(doc["oauthAccount"]["emailAddress"], "work@example.com");
}

#[test]
fn claude_codes_secure_storage_dir_holds_the_live_credential_and_its_lock() {
    let provider = FakeProvider::start();
    let mut env = Env::with_provider(&provider);
    let secure = env.root.join("secure store");
    env.set(
        "CLAUDE_SECURESTORAGE_CONFIG_DIR",
        secure.display().to_string(),
    );
    let login = provider.issue_expired("secure@example.com");
    env.add_login("work", &login);
    env.cmd(&["use", "work"]).ok();
    let written = secure.join(".credentials.json");
    assert!(
        written.exists(),
        "the credential is where Claude Code keeps it"
    );
    assert!(!env.live_path().exists(), "not in the config directory");
    // Claude Code reads it from there.
    let status = auth_status(&env);
    assert_eq!(status["loggedIn"], true);
    assert_eq!(status["subscriptionType"], "max");
    // A refresh of the live slot writes it there, under Claude Code's lock in that directory.
    env.cmd(&["refresh", "work"]).ok();
    let live: Value = serde_json::from_str(&fs::read_to_string(&written).unwrap()).unwrap();
    assert_eq!(
        live["claudeAiOauth"]["refreshToken"].as_str().unwrap(),
        env.refresh_token_of("work")
    );
    assert!(
        !secure.join(".oauth_refresh.lock").exists(),
        "the lock was let go"
    );
    // An empty value means ~/.claude, as for Claude Code.
    env.set("CLAUDE_SECURESTORAGE_CONFIG_DIR", "");
    env.add_login("home", &provider.issue("home@example.com"));
    env.cmd(&["use", "home"]).ok();
    assert!(env.live_path().exists());
}

#[test]
fn a_login_record_that_is_not_json_is_left_as_it_is() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    env.add_login("work", &provider.issue("work@example.com"));
    let path = env.home.join(".claude.json");
    let half_written = "{\"numStartups\": 3, \"oauthAcc";
    fs::write(&path, half_written).unwrap();
    env.cmd(&["use", "work"]).ok();
    assert_eq!(fs::read_to_string(&path).unwrap(), half_written);
    assert!(env.read_live().is_some(), "the switch itself happened");
}
