//! `setup`, `rotate` and `revoke`: long-lived tokens captured from `claude setup-token` run in
//! a real pseudo-terminal (tests/support/bin/claude stands in for Claude Code), checked with
//! the provider and stored as slots.

use std::path::PathBuf;

use serde_json::Value;

use crate::support::keychain::FakeOnePassword;
use crate::support::provider::FakeProvider;
use crate::support::terminal::Terminal;
use crate::support::*;

fn fake_claude() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support/bin/claude")
        .display()
        .to_string()
}

/// An environment whose `claude` is the fake, printing the token in `token_file`.
fn setup_env(provider: &FakeProvider) -> (Env, PathBuf, PathBuf) {
    let mut env = Env::with_provider(provider);
    let token_file = env.root.join("token");
    let log = env.root.join("claude.log");
    env.set("TOKENKEEPER_CLAUDE_BIN", fake_claude())
        .set("FAKE_SETUP_TOKEN_FILE", token_file.display().to_string())
        .set("FAKE_CLAUDE_LOG", log.display().to_string());
    (env, token_file, log)
}

/// Goes through the fake's prompts as a user would: Enter, then the code from the browser.
fn answer_prompts(terminal: &mut Terminal) {
    terminal.wait_for("Press Enter to open your browser", 20);
    terminal.send("\r");
    terminal.wait_for("Paste code here if prompted", 20);
    terminal.send("code-from-the-browser\r");
}

fn claude_runs(log: &PathBuf) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// No piece of the token long enough to matter is on the screen.
fn assert_screen_hides(screen: &str, token: &str) {
    for start in (0..token.len() - 12).step_by(6) {
        let piece = &token[start..start + 12];
        assert!(
            !screen.contains(piece),
            "the screen shows {piece:?}:\n{screen}"
        );
    }
}

#[test]
fn setup_captures_a_token_wrapped_across_rows_and_stores_it_without_showing_it() {
    let provider = FakeProvider::start();
    let (env, token_file, log) = setup_env(&provider);
    let token = provider.issue_setup_token("ci@example.com");
    std::fs::write(&token_file, &token).unwrap();

    // 50 columns: the 108-character token is wrapped over three rows. Logs (on the same
    // screen) at the most verbose level.
    let mut terminal = Terminal::spawn(&env, &["setup", "ci", "-vv"], 50, &[]);
    answer_prompts(&mut terminal);
    let (code, screen) = terminal.finish(30);
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains("<redacted>"), "{screen}");
    assert!(screen.contains("Store this token securely"), "{screen}");
    assert!(screen.contains("created slot 'ci'"), "{screen}");
    assert_screen_hides(&screen, &token);

    // Run in a terminal the size of ours, with nothing secret in its argv or environment.
    let runs = claude_runs(&log);
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["argv"], serde_json::json!(["setup-token"]));
    assert_eq!(runs[0]["cols"], 50);
    assert_eq!(runs[0]["tty"], true);
    assert_eq!(runs[0]["leaks"], serde_json::json!([]));

    // Checked with the provider (a free token count; a setup token cannot read the profile).
    assert_eq!(provider.count_tokens_calls(), 1);
    env.cmd(&["get", "ci"])
        .ok()
        .stdout_is(&format!("{token}\n"));
    let listed = env
        .cmd(&["list", "--format", "json", "--no-usage"])
        .ok()
        .json();
    assert_eq!(listed[0]["name"], "ci");
    assert_eq!(listed[0]["kind"], "long-lived");
    let days = listed[0]["expires_in_seconds"].as_i64().unwrap() / 86_400;
    assert!((364..=365).contains(&days), "{days}");
    // The cached probe answer serves doctor; nothing more is asked.
    env.cmd(&["doctor", "ci"])
        .ok()
        .stdout_has("slot 'ci': token accepted by the provider (count-tokens");
    assert_eq!(provider.count_tokens_calls(), 1);
}

#[test]
fn a_window_resized_meanwhile_is_passed_on_and_the_token_wrapped_to_the_new_width_is_found() {
    let provider = FakeProvider::start();
    let (env, token_file, log) = setup_env(&provider);
    let token = provider.issue_setup_token("resize@example.com");
    std::fs::write(&token_file, &token).unwrap();
    let mut terminal = Terminal::spawn(&env, &["setup", "ci"], 100, &[]);
    terminal.wait_for("Press Enter to open your browser", 20);
    terminal.resize(37);
    // tokenkeeper passes the new size on to claude's terminal, which tells claude.
    terminal.wait_for("(window now 37 columns)", 20);
    terminal.send("\r");
    terminal.wait_for("Paste code here if prompted", 20);
    terminal.send("code\r");
    let (code, screen) = terminal.finish(30);
    assert_eq!(code, 0, "{screen}");
    let runs = claude_runs(&log);
    assert_eq!(runs[0]["cols"], 100);
    assert_eq!(runs[1]["cols_after_prompts"], 37);
    assert_screen_hides(&screen, &token);
    env.cmd(&["get", "ci"])
        .ok()
        .stdout_is(&format!("{token}\n"));
}

#[test]
fn a_redrawn_screen_in_a_wide_terminal_still_gives_one_whole_token() {
    let provider = FakeProvider::start();
    let (env, token_file, _log) = setup_env(&provider);
    let token = provider.issue_setup_token("wide@example.com");
    std::fs::write(&token_file, &token).unwrap();
    let mut terminal = Terminal::spawn(&env, &["setup"], 200, &[("FAKE_SETUP_REDRAW", "1")]);
    answer_prompts(&mut terminal);
    let (code, screen) = terminal.finish(30);
    assert_eq!(code, 0, "{screen}");
    // Once in tokenkeeper's own opening line, then once per drawing of the screen.
    assert_eq!(screen.matches("<redacted>").count(), 3, "{screen}");
    assert_screen_hides(&screen, &token);
    // No name given: `setup`.
    env.cmd(&["get", "setup"])
        .ok()
        .stdout_is(&format!("{token}\n"));
}

#[test]
fn a_token_the_provider_refuses_or_no_token_at_all_stores_nothing() {
    let provider = FakeProvider::start();
    let (env, token_file, _log) = setup_env(&provider);
    // A token cut short (as a misread wrap would give): the provider does not know it.
    let token = provider.issue_setup_token("cut@example.com");
    std::fs::write(&token_file, &token[..90]).unwrap();
    let mut terminal = Terminal::spawn(&env, &["setup", "ci"], 80, &[]);
    answer_prompts(&mut terminal);
    let (code, screen) = terminal.finish(30);
    assert_eq!(code, 1, "{screen}");
    assert!(
        screen.contains("the provider refuses the captured token (HTTP 401); nothing was stored"),
        "{screen}"
    );
    assert_screen_hides(&screen, &token);
    assert_eq!(env.slot_count(), 0);
    assert!(env.stored_secrets().is_empty());

    let mut terminal = Terminal::spawn(&env, &["setup", "ci"], 80, &[("FAKE_SETUP_FAIL", "1")]);
    answer_prompts(&mut terminal);
    let (code, screen) = terminal.finish(30);
    assert_eq!(code, 1, "{screen}");
    assert!(
        screen.contains("ended (exit 1) without printing a token"),
        "{screen}"
    );
    assert_eq!(env.slot_count(), 0);

    // No claude at all.
    env.cmd(&["setup", "ci"])
        .env("TOKENKEEPER_CLAUDE_BIN", "/nonexistent/claude")
        .fails(1)
        .stderr_has("cannot find /nonexistent/claude")
        .stderr_has("hint: install Claude Code");
}

#[test]
fn a_store_that_gives_back_something_else_gets_no_catalog_entry() {
    let provider = FakeProvider::start();
    let (mut env, token_file, _log) = setup_env(&provider);
    let op = FakeOnePassword::install();
    env.set("PATH", op.path_env())
        .set("TOKENKEEPER_OP_VAULT", "Agents");
    let token = provider.issue_setup_token("op@example.com");
    std::fs::write(&token_file, &token).unwrap();
    let mut terminal = Terminal::spawn(
        &env,
        &["setup", "ci", "--backend", "1password"],
        80,
        &[("OP_FAKE_CORRUPT_READ", "1")],
    );
    answer_prompts(&mut terminal);
    let (code, screen) = terminal.finish(30);
    assert_eq!(code, 1, "{screen}");
    assert!(screen.contains("did not read back as written"), "{screen}");
    assert_screen_hides(&screen, &token);
    assert_eq!(env.slot_count(), 0);
    assert!(op.items().is_empty());
    assert!(op.violations().is_empty(), "{}", op.violations());
}

#[test]
fn rotate_keeps_the_old_token_until_the_new_one_is_accepted_then_replaces_it_in_place() {
    let provider = FakeProvider::start();
    let (env, token_file, _log) = setup_env(&provider);
    let first = provider.issue_setup_token("rot@example.com");
    std::fs::write(&token_file, &first).unwrap();
    let mut terminal = Terminal::spawn(&env, &["setup", "ci"], 80, &[]);
    answer_prompts(&mut terminal);
    assert_eq!(terminal.finish(30).0, 0);
    let id = env.catalog()["slots"][0]["id"].clone();

    // A refused new token: the old one stays.
    std::fs::write(
        &token_file,
        "sk-ant-oat01-not-a-token-the-provider-ever-issued-0123456789",
    )
    .unwrap();
    let mut terminal = Terminal::spawn(&env, &["rotate", "ci"], 80, &[]);
    answer_prompts(&mut terminal);
    let (code, screen) = terminal.finish(30);
    assert_eq!(code, 1, "{screen}");
    env.cmd(&["get", "ci"])
        .ok()
        .stdout_is(&format!("{first}\n"));

    let second = provider.issue_setup_token("rot@example.com");
    std::fs::write(&token_file, &second).unwrap();
    let mut terminal = Terminal::spawn(&env, &["rotate", "ci"], 80, &[]);
    answer_prompts(&mut terminal);
    let (code, screen) = terminal.finish(30);
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains("rotated slot 'ci'"), "{screen}");
    assert!(
        screen.contains(
            "the old token still works until you revoke it: https://claude.ai/settings/claude-code"
        ),
        "{screen}"
    );
    assert_screen_hides(&screen, &second);
    env.cmd(&["get", "ci"])
        .ok()
        .stdout_is(&format!("{second}\n"));
    // The same slot, in place.
    assert_eq!(env.catalog()["slots"][0]["id"], id);
    assert_eq!(env.slot_count(), 1);

    // An OAuth slot renews itself: rotate is not for it.
    env.add_login("work", &provider.issue("work@example.com"));
    env.cmd(&["rotate", "work"])
        .fails(2)
        .stderr_has("rotate is for long-lived tokens");
}

#[test]
fn revoke_takes_the_token_out_of_the_store_catalog_and_live_file_and_says_where_to_revoke_it() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let token = provider.issue_setup_token("rev@example.com");
    env.cmd(&["add", "ci", "--from", "stdin"])
        .stdin(&token)
        .ok();

    // Not on a terminal: confirmation is needed as a flag.
    env.cmd(&["revoke", "ci"]).fails(2).stderr_has("pass --yes");
    assert_eq!(env.slot_count(), 1);

    let out = env.cmd(&["revoke", "ci", "--yes"]).ok();
    out.stdout_has("removed slot 'ci'")
        .stdout_has("now says `revoked`")
        .stdout_has("https://claude.ai/settings/claude-code")
        .hides(&token);
    assert_eq!(env.slot_count(), 0);
    let stored = env.stored_secrets();
    assert_eq!(stored.len(), 1, "the item stays, marked");
    assert!(!stored[0].contains(&token));
    let marker: Value = serde_json::from_str(&stored[0]).unwrap();
    assert_eq!(marker["revoked"], true);
    env.cmd(&["get", "ci"])
        .fails(1)
        .stderr_has("no claude slot");

    // A ralph token's item, read by name by the ralph commands, says it was revoked.
    env.cmd(&["store-token"]).stdin(&token).ok();
    env.cmd(&["revoke", "claude-token", "--yes"]).ok();
    env.cmd(&["get-token"])
        .fails(1)
        .stderr_has("its token was revoked at ")
        .hides(&token);

    // --delete-item: the item goes too. An active OAuth slot's live file goes with it.
    let login = provider.issue("live@example.com");
    env.write_live(&FakeProvider::blob(&login));
    env.cmd(&["add", "work"]).ok();
    env.cmd(&[
        "revoke",
        "work",
        "--yes",
        "--delete-item",
        "--format",
        "json",
    ])
    .ok()
    .hides(&login.access);
    assert!(
        env.read_live().is_none(),
        "the live credential was the slot's"
    );
    assert_eq!(
        env.stored_secrets().len(),
        2,
        "only the two markers are left"
    );
}
