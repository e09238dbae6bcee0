use crate::support::*;

#[test]
fn add_from_live_names_the_slot_after_the_email_and_makes_it_active() {
    let env = Env::new();
    env.write_live(&fresh_blob("jane"));
    env.write_login_record("uuid-jane", "jane.doe@example.com");
    env.cmd(&["add"])
        .ok()
        .stdout_has("added claude slot 'jane.doe'")
        .stdout_has("active");
    let list = env.cmd(&["list", "--format", "json"]).ok().json();
    assert_eq!(list[0]["name"], "jane.doe");
    assert_eq!(list[0]["email"], "jane.doe@example.com");
    assert_eq!(list[0]["account_uuid"], "uuid-jane");
    assert_eq!(list[0]["active"], true);
    assert_eq!(list[0]["subscription_type"], "max");
}

#[test]
fn adding_the_same_account_again_updates_the_slot() {
    let env = Env::new();
    env.write_live(&fresh_blob("jane"));
    env.cmd(&["add", "work"]).ok();
    // Same refresh token, newer access token: same lineage.
    let newer = claude_blob(&access("jane2"), &refresh("jane"), now_ms() + 9 * 3_600_000);
    env.cmd(&["add", "--from", "stdin"])
        .stdin(&newer)
        .ok()
        .stdout_has("updated claude slot 'work'");
    let list = env.cmd(&["list", "--format", "json"]).ok().json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    env.cmd(&["get", "work"])
        .ok()
        .stdout_is(&format!("{}\n", access("jane2")));
}

#[test]
fn logging_in_again_to_the_same_account_updates_its_slot() {
    let env = Env::new();
    env.write_live(&fresh_blob("a1"));
    env.write_login_record("uuid-a", "a@example.com");
    env.cmd(&["add"]).ok().stdout_has("added claude slot 'a'");
    env.cmd(&["add", "other", "--from", "stdin"])
        .stdin(fresh_blob("o"))
        .ok();
    env.cmd(&["use", "other"]).ok();
    // Log Claude Code out by removing the slot it uses, then log in to account a again:
    // a new lineage, recognised by the account uuid in Claude Code's login record.
    env.cmd(&["remove", "other", "--yes"]).ok();
    env.write_live(&fresh_blob("a2"));
    env.cmd(&["add"]).ok().stdout_has("updated claude slot 'a'");
    let list = env.cmd(&["list", "--format", "json"]).ok().json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    env.cmd(&["get", "a"])
        .ok()
        .stdout_is(&format!("{}\n", access("a2")));
}

#[test]
fn name_can_follow_the_source() {
    let env = Env::new();
    env.write_live(&fresh_blob("x"));
    env.cmd(&["add", "--from", "live", "late"])
        .ok()
        .stdout_has("slot 'late'");
}

#[test]
fn add_from_file_and_bare_token_on_stdin() {
    let env = Env::new();
    let file = env.root.join("creds.json");
    std::fs::write(&file, fresh_blob("file")).unwrap();
    // Only a file other users cannot read is taken (see lineage.rs for the refusal).
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    env.cmd(&["add", "fromfile", "--from", "file", file.to_str().unwrap()])
        .ok()
        .stdout_has("added claude slot 'fromfile' (oauth");
    env.cmd(&["add", "setup", "--from", "stdin"])
        .stdin(format!("{}\n", access("setup")))
        .ok()
        .stdout_has("(long-lived, expires");
    let list = env.cmd(&["list", "--format", "json"]).ok().json();
    assert_eq!(list[1]["kind"], "long-lived");
    let secs = list[1]["expires_in_seconds"].as_i64().unwrap();
    assert!((365 * 86_400 - 60..=365 * 86_400).contains(&secs), "{secs}");
    // Neither slot was made active: only the live credential is.
    assert_eq!(list[0]["active"], false);
}

#[test]
fn unnamed_add_without_a_known_email_is_a_usage_error() {
    let env = Env::new();
    env.write_live(&fresh_blob("anon"));
    env.cmd(&["add"])
        .fails(2)
        .stderr_has("cannot name the new slot")
        .stderr_has("hint: give it a name");
    assert!(!env.data_dir().join("slots.json").exists());
}

#[test]
fn duplicate_name_is_refused_and_changes_nothing() {
    let env = Env::new();
    env.cmd(&["add", "work", "--from", "stdin"])
        .stdin(fresh_blob("one"))
        .ok();
    let before = env.snapshot();
    env.cmd(&["add", "work", "--from", "stdin"])
        .stdin(fresh_blob("two"))
        .fails(2)
        .stderr_has("already exists");
    assert_eq!(env.snapshot(), before);
}

#[test]
fn missing_live_login_explains_how_to_log_in() {
    let env = Env::new();
    env.cmd(&["add", "x"])
        .fails(1)
        .stderr_has("no stored login")
        .stderr_has("hint:");
}

#[test]
fn tokenkeeper_home_holds_everything() {
    let mut env = Env::new();
    let dir = env.root.join("tk");
    env.set("TOKENKEEPER_HOME", dir.to_str().unwrap());
    env.cmd(&["add", "x", "--from", "stdin"])
        .stdin(fresh_blob("x"))
        .ok();
    assert!(dir.join("slots.json").exists());
    assert!(!env.home.join(".local").exists());
}
