//! `migrate`: slots move between backends, verified, and a crash at any step loses none.

use crate::support::keychain::FakeKeychain;
use crate::support::*;

fn env_with_keychain() -> (Env, FakeKeychain) {
    let mut env = Env::new();
    let fake = FakeKeychain::install();
    env.set("PATH", fake.path_env());
    (env, fake)
}

fn slot_ids(env: &Env) -> Vec<(String, String, String)> {
    env.catalog()["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["id"].as_str().unwrap().to_string(),
                s["backend"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn slots_move_to_the_keychain_and_back_and_stay_readable() {
    let (env, fake) = env_with_keychain();
    for name in ["one", "two", "three"] {
        env.cmd(&["add", name, "--from", "stdin"])
            .stdin(access(name))
            .ok();
    }
    let out = env.cmd(&["migrate", "--to", "keychain", "--all"]).ok();
    out.stdout_has("moved 'one' from the file store to the keychain store")
        .stdout_has("moved 'three' from the file store to the keychain store")
        .hides(&access("one"));
    assert!(env.stored_secrets().is_empty(), "old copies deleted");
    for (name, id, backend) in slot_ids(&env) {
        assert_eq!(backend, "keychain");
        assert!(
            fake.item("tokenkeeper", &format!("claude.{id}"))
                .unwrap()
                .contains(&access(&name))
        );
        env.cmd(&["get", &name])
            .ok()
            .stdout_is(&format!("{}\n", access(&name)));
    }
    // Again: nothing to do.
    env.cmd(&["migrate", "--to", "keychain", "one"])
        .ok()
        .stdout_is("'one' is already in the keychain store\n");

    // Back, one slot, as JSON.
    let json = env
        .cmd(&["migrate", "--to", "file", "two", "--format", "json"])
        .ok()
        .json();
    assert_eq!(json[0]["from"], "keychain");
    assert_eq!(json[0]["old_copy_removed"], true);
    env.cmd(&["get", "two"])
        .ok()
        .stdout_is(&format!("{}\n", access("two")));
    assert_eq!(fake.items().len(), 2);
    assert_eq!(fake.violations(), "");
    assert!(!fake.argv_log().contains(&access("one")));
}

#[test]
fn a_backend_that_cannot_be_reached_moves_nothing() {
    let (env, _fake) = env_with_keychain();
    env.cmd(&["add", "one", "--from", "stdin"])
        .stdin(access("one"))
        .ok();
    // Lock files (empty) may appear; every file with content stays as it was.
    let contents = |env: &Env| {
        let mut files = env.snapshot();
        files.retain(|path, _| !path.contains("/locks/"));
        files
    };
    let before = contents(&env);
    let out = env
        .cmd(&["migrate", "--to", "keychain", "--all"])
        .env("FAKE_KEYCHAIN_LOCKED", "1")
        .run()
        .code(1);
    out.stdout_has("'one' not moved: keychain: cannot write")
        .hides(&access("one"));
    assert_eq!(contents(&env), before);
    env.cmd(&["migrate", "--to", "keychain"])
        .fails(2)
        .stderr_has("name a slot, or --all");
}

#[test]
fn a_migration_killed_at_any_step_leaves_every_slot_readable() {
    for point in ["migrate:after-copy", "migrate:after-catalog"] {
        let (env, fake) = env_with_keychain();
        for name in ["a", "b"] {
            env.cmd(&["add", name, "--from", "stdin"])
                .stdin(access(name))
                .ok();
        }
        let out = env
            .cmd(&["migrate", "--to", "keychain", "--all"])
            .env("TOKENKEEPER_FAILPOINT", point)
            .run();
        assert_ne!(out.code, 0, "{point}: the process was killed");
        for (name, _, _) in slot_ids(&env) {
            env.cmd(&["get", &name])
                .ok()
                .stdout_is(&format!("{}\n", access(&name)));
        }
        // Running it again completes the move, and leaves no copy behind.
        env.cmd(&["migrate", "--to", "keychain", "--all"]).ok();
        assert!(
            env.stored_secrets().is_empty(),
            "{point}: {}",
            env.listing()
        );
        for (name, id, backend) in slot_ids(&env) {
            assert_eq!(backend, "keychain", "{point}");
            assert!(fake.item("tokenkeeper", &format!("claude.{id}")).is_some());
            env.cmd(&["get", &name])
                .ok()
                .stdout_is(&format!("{}\n", access(&name)));
        }
    }
}

#[test]
fn a_terminal_sees_progress_while_many_slots_move() {
    use portable_pty::{CommandBuilder, PtySize, native_pty_system};
    use std::io::Read;
    let (env, fake) = env_with_keychain();
    for n in 0..4 {
        let name = format!("s{n}");
        env.cmd(&["add", &name, "--from", "stdin"])
            .stdin(access(&name))
            .ok();
    }
    let pty = native_pty_system()
        .openpty(PtySize {
            rows: 24,
            cols: 100,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    let mut cmd = CommandBuilder::new(BIN);
    cmd.args(["migrate", "--to", "keychain", "--all"]);
    cmd.env_clear();
    for (key, value) in env.vars() {
        cmd.env(key, value);
    }
    cmd.env("TERM", "xterm-256color");
    cmd.cwd(&env.root);
    let mut child = pty.slave.spawn_command(cmd).unwrap();
    drop(pty.slave);
    let mut reader = pty.master.try_clone_reader().unwrap();
    let collector = std::thread::spawn(move || {
        let mut screen = Vec::new();
        let _ = reader.read_to_end(&mut screen);
        String::from_utf8_lossy(&screen).to_string()
    });
    assert!(child.wait().unwrap().success());
    drop(pty.master);
    let screen = collector.join().unwrap();
    assert!(screen.contains("moving to keychain"), "{screen:?}");
    assert!(screen.contains("/4"), "{screen:?}");
    assert!(screen.contains("moved 's3' from the file store to the keychain store"));
    assert_eq!(fake.items().len(), 4);
}
