//! `login`: a second account through Claude Code's own sign-in, in a private directory, with
//! the current login left alone and nothing left behind. The browser sign-in is played by a
//! fake `claude` that writes what the real one writes where CLAUDE_CONFIG_DIR says.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::support::provider::FakeProvider;
use crate::support::*;

const FAKE_CLAUDE: &str = r#"#!/bin/sh
# Plays `claude auth login`: records its arguments, then writes a credential and a login record.
printf '%s\n' "$*" >> "$FAKE_ARGV_LOG"
[ "$1 $2" = "auth login" ] || exit 64
[ -d "$CLAUDE_CONFIG_DIR" ] || exit 65
[ -z "${FAKE_FAIL:-}" ] || exit 1
cp "$FAKE_LOGIN_BLOB" "$CLAUDE_CONFIG_DIR/.credentials.json"
chmod 600 "$CLAUDE_CONFIG_DIR/.credentials.json"
printf '{"oauthAccount":{"accountUuid":"uuid-second","emailAddress":"second@example.com","organizationName":"Second Org","displayName":"Sec"}}' > "$CLAUDE_CONFIG_DIR/.claude.json"
"#;

#[test]
fn login_adds_a_second_account_and_leaves_the_current_one_logged_in() {
    let provider = FakeProvider::start();
    let mut env = Env::with_provider(&provider);
    let first = provider.issue("first@example.com");
    env.write_live(&FakeProvider::blob(&first));
    env.write_login_record("uuid-first", "first@example.com");
    env.cmd(&["add"]).ok();
    let live_before = env.read_live().unwrap();

    let fake = env.root.join("fake-claude");
    fs::write(&fake, FAKE_CLAUDE).unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    let second = provider.issue("second@example.com");
    let blob = env.root.join("second.json");
    fs::write(&blob, FakeProvider::blob(&second)).unwrap();
    let argv_log = env.root.join("argv.log");
    env.set("TOKENKEEPER_CLAUDE_BIN", fake.display().to_string());
    env.set("FAKE_LOGIN_BLOB", blob.display().to_string());
    env.set("FAKE_ARGV_LOG", argv_log.display().to_string());

    env.cmd(&["login", "--email", "second@example.com"])
        .ok()
        .stdout_has("added claude slot 'second'")
        .hides(&second.access)
        .hides(&second.refresh);
    assert_eq!(
        fs::read_to_string(&argv_log).unwrap(),
        "auth login --claudeai --email second@example.com\n"
    );
    assert_eq!(
        env.read_live().unwrap(),
        live_before,
        "the current login is untouched"
    );
    assert_eq!(env.refresh_token_of("second"), second.refresh);
    let leftovers: Vec<_> = fs::read_dir(env.data_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".login-"))
        .collect();
    assert!(leftovers.is_empty(), "the private directory is gone");

    // Its login record is what `use` puts back for Claude Code.
    env.cmd(&["use", "second"]).ok();
    let record: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(env.home.join(".claude.json")).unwrap()).unwrap();
    assert_eq!(record["oauthAccount"]["displayName"], "Sec");

    // A sign-in that fails adds nothing and leaves nothing.
    env.set("FAKE_FAIL", "1");
    env.cmd(&["login", "third"])
        .fails(1)
        .stderr_has("`claude auth login` did not log in");
    assert_eq!(env.slot_count(), 2);
}
