use std::os::unix::fs::PermissionsExt;

use crate::support::*;

#[test]
fn export_to_a_file_is_0600_and_activates_nothing() {
    let env = Env::new();
    let blob = fresh_blob("e");
    env.cmd(&["add", "e", "--from", "stdin"]).stdin(&blob).ok();
    let path = env.root.join("out.json");
    env.cmd(&["export", "e", "--path", path.to_str().unwrap()])
        .ok()
        .stdout_has("(mode 0600)")
        .hides(&access("e"));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        blob.replace(&format!(r#""refreshToken":"{}","#, refresh("e")), "")
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(env.read_live().is_none());
    assert_eq!(
        env.cmd(&["list", "--format", "json"]).ok().json()[0]["active"],
        false
    );
}

#[test]
fn export_into_a_missing_directory_fails_cleanly() {
    let env = Env::new();
    env.add_fresh("e");
    let path = env.root.join("nope/out.json");
    env.cmd(&["export", "e", "--path", path.to_str().unwrap()])
        .fails(1)
        .stderr_has("cannot write")
        .hides(&access("e"));
}

#[test]
fn remove_an_inactive_slot_deletes_its_secret() {
    let env = Env::new();
    env.add_fresh("a");
    env.add_fresh("b");
    env.cmd(&["remove", "#1"])
        .ok()
        .stdout_is("removed claude slot 'a'\n");
    let secrets = env.stored_secrets();
    assert_eq!(secrets.len(), 1);
    assert!(secrets[0].contains(&access("b")));
    env.cmd(&["get", "a"]).fails(1);
}

#[test]
fn removing_the_active_slot_needs_yes_and_then_clears_the_live_credential() {
    let env = Env::new();
    env.write_live(&fresh_blob("live"));
    env.cmd(&["add", "live"]).ok();
    let before = env.snapshot();
    env.cmd(&["remove", "live"]).fails(1).stderr_has(
        "hint: to remove it and log Claude Code out, run: tokenkeeper remove live --yes",
    );
    assert_eq!(env.snapshot(), before);
    env.cmd(&["remove", "live", "--yes"])
        .ok()
        .stdout_has("deleted Claude Code's credentials");
    assert!(env.read_live().is_none());
    assert!(env.stored_secrets().is_empty());
    let catalog = env.catalog();
    assert_eq!(catalog["active"], serde_json::json!({}));
    assert_eq!(catalog["live"], serde_json::json!({}));
}
