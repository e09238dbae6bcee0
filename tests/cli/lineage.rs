//! Ways a lineage could be lost on a failure path — a store that lies, an absurd or lost
//! provider answer, a hand-edited date — each pinned by a regression test named after issue 13.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use serde_json::json;

use crate::support::openbao::{Front, Mode, OpenBao};
use crate::support::provider::{Failure, FakeProvider};
use crate::support::*;

/// Journal entries waiting to be applied (not the ones set aside).
fn pending_entries(env: &Env) -> Vec<PathBuf> {
    fs::read_dir(env.data_dir().join("journal"))
        .map(|dir| {
            dir.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default()
}

fn set_aside_entries(env: &Env) -> Vec<PathBuf> {
    fs::read_dir(env.data_dir().join("journal/unusable"))
        .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

/// OpenBao behind a front that can misbehave, and an install whose slots live there.
fn openbao_install(provider: &FakeProvider) -> (OpenBao, Front, Env) {
    let bao = OpenBao::start();
    let front = Front::start(&bao.address);
    let mut env = Env::with_provider(provider);
    env.set_all(bao.env());
    env.set("BAO_ADDR", &front.address);
    env.set("TOKENKEEPER_BACKEND", "openbao");
    (bao, front, env)
}

#[test]
fn issue13_an_openbao_write_answered_by_a_404_page_is_no_write_and_the_journal_keeps_the_tokens() {
    let provider = FakeProvider::start();
    let (_bao, front, env) = openbao_install(&provider);
    let login = provider.issue_expired("vault@example.com");
    env.add_login("work", &login);

    // Something in front of OpenBao answers writes with its own 404 page.
    front.set(Mode::PageOnWrite);
    let out = env.cmd(&["refresh", "work"]).fails(1);
    out.stderr_has("was refreshed, but its store did not take the new tokens")
        .stderr_has("without OpenBao's error shape")
        .hides(&login.refresh)
        .hides(&login.access);
    assert_eq!(provider.refreshes_served(), 1);
    assert_eq!(
        pending_entries(&env).len(),
        1,
        "the journal keeps the tokens"
    );

    // Meanwhile the slot is served from the journal: the new token, not the spent one.
    let out = env.cmd(&["get", "work"]).run().code(0);
    let new_access = out.stdout.trim().to_string();
    assert_ne!(new_access, login.access);
    out.stderr_has("its store did not take");
    assert_eq!(provider.refreshes_served(), 1, "no second refresh");

    // Once the store works again, the next command stores them and empties the journal; the
    // next refresh spends the current token, so the family lives on.
    front.set(Mode::Pass);
    env.cmd(&["get", "work"])
        .ok()
        .stdout_is(&format!("{new_access}\n"));
    assert!(pending_entries(&env).is_empty());
    env.cmd(&["refresh", "work", "--force"]).ok();
    let stored = env.refresh_token_of("work");
    assert!(provider.is_current(&stored), "the lineage survived");
    assert!(!provider.family_revoked(&stored));
}

#[test]
fn issue13_openbao_redirects_are_refused_and_the_token_does_not_follow() {
    let provider = FakeProvider::start();
    let (bao, front, env) = openbao_install(&provider);
    env.add_login("work", &provider.issue("redirect@example.com"));
    // The redirect's target is another front that counts what reaches it.
    let elsewhere = Front::start(&bao.address);
    front.set(Mode::RedirectTo(elsewhere.address.clone()));
    env.cmd(&["get", "work"])
        .fails(1)
        .stderr_has("answered a redirect (307 Temporary Redirect), which tokenkeeper never follows")
        .hides(&bao.token);
    assert_eq!(
        elsewhere.token_requests(),
        0,
        "nothing reached the other host"
    );
}

#[test]
fn issue13_absurd_lifetimes_from_the_provider_neither_panic_nor_block() {
    for expires_in in [
        json!(9223372036854775807i64),
        json!(-1700000000),
        json!("soon"),
    ] {
        let provider = FakeProvider::start();
        let env = Env::with_provider(&provider);
        let login = provider.issue_expired("absurd@example.com");
        env.add_login("work", &login);
        provider.fail_next(1, Failure::Patch(json!({ "expires_in": expires_in })));
        env.cmd(&["refresh", "work"])
            .ok()
            .stdout_has("refreshed 'work'");
        // The tokens are kept; the lifetime not believed is taken as one hour.
        let stored = env.stored("work");
        assert!(provider.is_current(stored["claudeAiOauth"]["refreshToken"].as_str().unwrap()));
        let expires_at = stored["claudeAiOauth"]["expiresAt"].as_i64().unwrap();
        let hour = 3_600_000;
        assert!(
            (now_ms() + hour - 60_000..=now_ms() + hour).contains(&expires_at),
            "{expires_in}: {expires_at}"
        );
        assert!(pending_entries(&env).is_empty(), "{expires_in}");
        env.cmd(&["list", "--no-usage"]).ok();
        env.cmd(&["get", "work"]).ok();
    }
}

#[test]
fn issue13_an_answer_that_cannot_be_used_is_set_aside_and_strands_only_its_slot() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let login = provider.issue_expired("stranded@example.com");
    env.add_login("work", &login);
    env.add_login("home", &provider.issue("home@example.com"));
    provider.fail_next(
        1,
        Failure::RawAfterRotate("<html>upstream answered nonsense</html>".into()),
    );
    let out = env.cmd(&["refresh", "work"]).fails(1);
    out.stderr_has("cannot be refreshed: the answer to its last refresh could not be used")
        .stderr_has("journal/unusable/")
        .stderr_has("hint: log in again")
        .hides(&login.refresh);
    let kept = set_aside_entries(&env);
    assert_eq!(kept.len(), 1);
    assert_eq!(
        fs::metadata(&kept[0]).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        pending_entries(&env).is_empty(),
        "nothing blocks the journal"
    );
    // The slot never replays its spent token; the other slot and other commands carry on.
    let calls = provider.refresh_calls();
    env.cmd(&["get", "work"])
        .fails(1)
        .stderr_has("could not be used");
    assert_eq!(provider.refresh_calls(), calls);
    assert!(!provider.family_revoked(&login.refresh));
    env.cmd(&["get", "home"]).ok();
    env.cmd(&["list", "--no-usage"]).ok();
    let doctor = env.cmd(&["doctor", "--format", "json"]).run().code(1);
    let report = doctor.json();
    assert_eq!(report["stranded"][0]["slot"], "work");
    assert_eq!(
        report["unusable_journal_entries"][0],
        kept[0].display().to_string()
    );
    env.cmd(&["doctor"])
        .run()
        .code(1)
        .stdout_has("slot 'work' is stranded");

    // A new login of the account clears the mark.
    env.add_login("work", &provider.issue("stranded@example.com"));
    env.cmd(&["get", "work"]).ok();
}

#[test]
fn issue13_an_answer_with_a_new_refresh_token_but_no_access_token_keeps_the_lineage() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    env.add_login("work", &provider.issue_expired("half@example.com"));
    provider.fail_next(1, Failure::Patch(json!({ "access_token": null })));
    env.cmd(&["refresh", "work"]).ok();
    let stored = env.refresh_token_of("work");
    assert!(
        provider.is_current(&stored),
        "the new refresh token was kept"
    );
    // The next use refreshes with it and gets a working access token.
    let out = env.cmd(&["get", "work"]).ok();
    assert_eq!(provider.refreshes_served(), 2);
    assert_eq!(out.stdout.trim(), env.access_token_of("work"));
}

#[test]
fn issue13_a_lost_answer_says_the_provider_may_have_rotated() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let login = provider.issue_expired("lost@example.com");
    env.add_login("work", &login);
    // The provider rotates and the answer is lost; every retry meets a failing gateway.
    provider.fail_next(1, Failure::DropAfterRotate);
    provider.fail_next(3, Failure::Status(502));
    env.cmd(&["refresh", "work"])
        .fails(1)
        .stderr_has("may have rotated the refresh token")
        .stderr_has("hint: try again shortly")
        .hides(&login.refresh);
    // When the retry finds the token spent, the message says why it was.
    let other = provider.issue_expired("lost2@example.com");
    env.add_login("other", &other);
    provider.fail_next(1, Failure::DropAfterRotate);
    env.cmd(&["refresh", "other"])
        .fails(1)
        .stderr_has("after an earlier answer was lost: the provider had rotated it");
    // A refresh that never reached the provider says the token is unspent.
    let env2 = Env::new();
    env2.cmd(&["add", "w", "--from", "stdin"])
        .stdin(claude_blob(&access("w"), &refresh("w"), now_ms() - 1000))
        .ok();
    env2.cmd(&["refresh", "w"])
        .fails(1)
        .stderr_has("never reached the provider, so the token is unspent");
}

#[test]
fn issue13_a_stored_date_in_year_9999_does_not_panic() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    env.add_login("work", &provider.issue("future@example.com"));
    let path = env.data_dir().join("slots.json");
    let mut catalog = env.catalog();
    catalog["slots"][0]["updated_at"] = json!("9999-12-30T00:00:00Z");
    catalog["slots"][0]["created_at"] = json!("9999-12-30T00:00:00Z");
    catalog["slots"][0]["expires_at"] = json!("9999-12-30T00:00:00Z");
    fs::write(&path, catalog.to_string()).unwrap();
    env.cmd(&["get", "work"]).ok();
    env.cmd(&["list", "--no-usage"]).ok();
    env.cmd(&["check", "work"]).ok();
    env.cmd(&["daemon", "--once", "--usage-every", "0"]).ok();
}

#[test]
fn issue13_export_leaves_the_refresh_token_behind_unless_the_lineage_is_handed_over() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let login = provider.issue("sandbox@example.com");
    env.add_login("work", &login);
    let path = env.root.join("sandbox-credentials.json");

    // By default: the access token alone, and until when it works.
    env.cmd(&["export", "work", "--path", path.to_str().unwrap()])
        .ok()
        .stdout_has("without its refresh token: valid until")
        .stdout_has("tokenkeeper exec")
        .hides(&login.access);
    let copy: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(copy["claudeAiOauth"]["accessToken"], login.access.as_str());
    assert!(copy["claudeAiOauth"].get("refreshToken").is_none());
    assert_eq!(copy["mcpOAuth"]["keep"], "me", "every other field is kept");
    let out = env.cmd(&["export", "work"]).ok();
    assert!(!out.stdout.contains(&login.refresh));
    out.stderr_has("without its refresh token");

    // Handed over: the copy holds the lineage, and this slot stops refreshing.
    env.cmd(&[
        "export",
        "work",
        "--with-refresh-token",
        "--path",
        path.to_str().unwrap(),
    ])
    .ok()
    .stdout_has("the lineage is handed over");
    let copy: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        copy["claudeAiOauth"]["refreshToken"],
        login.refresh.as_str()
    );
    let listed = env
        .cmd(&["list", "--format", "json", "--no-usage"])
        .ok()
        .json();
    assert!(listed[0]["handed_over"].is_string());
    env.cmd(&["list", "--no-usage"])
        .ok()
        .stdout_has("handed over");

    // The sandbox refreshes; nothing here replays the spent token, even once the slot is due.
    let sandbox = provider.refresh_as_claude(&login.refresh).unwrap();
    let calls = provider.refresh_calls();
    env.cmd(&["refresh", "work"])
        .env("TOKENKEEPER_REFRESH_MARGIN", "9h")
        .ok()
        .stdout_has("handed over");
    env.cmd(&["daemon", "--once", "--usage-every", "0"])
        .env("TOKENKEEPER_REFRESH_MARGIN", "9h")
        .ok();
    env.cmd(&["refresh", "work", "--force"])
        .fails(1)
        .stderr_has("was handed over with `export --with-refresh-token`")
        .stderr_has("hint: to take it back");
    assert_eq!(provider.refresh_calls(), calls, "no refresh here");
    assert!(
        provider.is_current(&sandbox.refresh),
        "the sandbox's lineage lives"
    );

    // Taken back with the copy's newest credential: refreshed here again.
    env.cmd(&["add", "work", "--from", "stdin"])
        .stdin(FakeProvider::blob(&sandbox))
        .ok();
    env.cmd(&["refresh", "work", "--force"]).ok();
    assert!(provider.is_current(&env.refresh_token_of("work")));

    // The slot Claude Code uses here cannot be handed over: two refreshers would collide.
    env.cmd(&["use", "work"]).ok();
    env.cmd(&["export", "work", "--with-refresh-token"])
        .fails(1)
        .stderr_has("is the one Claude Code uses here");
}

#[test]
fn issue13_a_provider_that_hangs_does_not_hold_up_a_command_with_a_valid_token() {
    let provider = FakeProvider::start();
    let mut env = Env::with_provider(&provider);
    let login = provider.issue("hang@example.com");
    env.add_login("work", &login);
    // Due (inside a 9 h margin) but valid for hours; the provider accepts and never answers.
    env.set("TOKENKEEPER_REFRESH_MARGIN", "9h");
    provider.fail_next(1, Failure::Hang);
    let out = finish(
        env.cmd(&["get", "work"])
            .env("TOKENKEEPER_TIMEOUT", "2s")
            .spawn_piped(),
        30,
    );
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), login.access);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no answer from the provider within"),
        "{stderr}"
    );
    assert!(stderr.contains("using the still-valid token"), "{stderr}");
    assert!(!stderr.contains(&login.access) && !stderr.contains(&login.refresh));
}

#[test]
fn issue13_a_command_waiting_for_a_lock_says_for_whom_and_gives_up_at_its_deadline() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    env.add_login("work", &provider.issue_expired("waiting@example.com"));
    // The first refresh holds the slot's lock while the provider never answers.
    provider.fail_next(1, Failure::Hang);
    let mut first = env.cmd(&["refresh", "work"]).spawn_piped();
    wait_until(20, "the first refresh to reach the provider", || {
        provider.refresh_calls() == 1
    });
    let second = env
        .cmd(&["get", "work"])
        .env("TOKENKEEPER_LOCK_TIMEOUT", "3s")
        .run()
        .code(1);
    let pid = first.id();
    second
        .stderr_has(&format!("waiting for pid {pid}, refreshing 'work'"))
        .stderr_has(&format!(
            "gave up after 3s waiting for pid {pid}, refreshing 'work'"
        ));
    assert_eq!(
        provider.refresh_calls(),
        1,
        "the second never spent the token"
    );
    first.kill().unwrap();
    first.wait().unwrap();
}

#[test]
fn issue13_a_claude_code_lock_path_that_cannot_be_taken_is_an_error_not_a_spin() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let login = provider.issue_expired("locked@example.com");
    env.write_live(&FakeProvider::blob(&login));
    env.cmd(&["add", "work"]).ok();
    let legacy = env.home.join(".claude.lock");
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(300);
    let age = |path: &std::path::Path| {
        fs::File::options()
            .read(true)
            .open(path)
            .unwrap()
            .set_modified(old)
            .unwrap();
    };

    // A plain file where Claude Code keeps a lock directory, fresh or stale.
    fs::write(&legacy, "").unwrap();
    let out = finish(env.cmd(&["refresh", "work"]).spawn_piped(), 20);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot be taken: it is not a directory"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("rm '{}'", legacy.display())),
        "{stderr}"
    );
    age(&legacy);
    env.cmd(&["refresh", "work"])
        .fails(1)
        .stderr_has("it is not a directory");
    fs::remove_file(&legacy).unwrap();

    // A stale directory that is not empty.
    fs::create_dir(&legacy).unwrap();
    fs::write(legacy.join("left-over"), "").unwrap();
    age(&legacy);
    env.cmd(&["refresh", "work"])
        .fails(1)
        .stderr_has("it is stale but not empty")
        .stderr_has(&format!("rm -r '{}'", legacy.display()));
    assert_eq!(provider.refresh_calls(), 0, "nothing was spent");
    // Claude Code's own path is let go when the second cannot be taken.
    assert!(!env.claude_dir().join(".oauth_refresh.lock").exists());
    fs::remove_dir_all(&legacy).unwrap();
    env.cmd(&["refresh", "work"]).ok();
}

#[test]
fn issue13_processes_that_hold_tokens_are_not_dumpable_and_the_agents_they_run_are() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let report = env.cmd(&["doctor", "--format", "json"]).ok().json();
    assert_eq!(report["memory_protected"], true);
    env.cmd(&["doctor"]).ok().stdout_has("memory: protected");
    // The agent `exec` runs is an ordinary process again: the kernel resets the mark on
    // execve. PR_GET_DUMPABLE (3) answers 1 for a dumpable process.
    env.add_login("work", &provider.issue("dump@example.com"));
    env.cmd(&[
        "exec",
        "work",
        "--",
        "python3",
        "-c",
        "import ctypes; print(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))",
    ])
    .ok()
    .stdout_is("1\n");
}

#[test]
fn issue13_a_data_directory_of_another_user_or_planted_links_are_refused() {
    use std::os::unix::fs::symlink;
    let env = Env::new();
    env.cmd(&["add", "work", "--from", "stdin"])
        .stdin(fresh_blob("w"))
        .ok();
    // A link planted where a lock file goes must not make tokenkeeper truncate its target.
    let victim = env.root.join("victim.txt");
    fs::write(&victim, "precious").unwrap();
    let state_lock = env.data_dir().join("state.lock");
    fs::remove_file(&state_lock).unwrap();
    symlink(&victim, &state_lock).unwrap();
    env.cmd(&["list", "--no-usage"])
        .fails(1)
        .stderr_has("cannot open lock file")
        .stderr_has("state.lock");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    fs::remove_file(&state_lock).unwrap();
    let slot_id = env.catalog()["slots"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let slot_lock = env.data_dir().join(format!("locks/{slot_id}.lock"));
    fs::create_dir_all(slot_lock.parent().unwrap()).unwrap();
    fs::set_permissions(
        slot_lock.parent().unwrap(),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    symlink(&victim, &slot_lock).unwrap();
    env.cmd(&["refresh", "work", "--force"])
        .fails(1)
        .stderr_has("cannot open lock file");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    fs::remove_file(&slot_lock).unwrap();

    // A data directory that belongs to someone else is refused, whatever its mode.
    let chown = |uid: u32| {
        let status = std::process::Command::new("chown")
            .arg(uid.to_string())
            .arg(env.data_dir())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "chown needs root, as the suite runs in CI"
        );
    };
    chown(65534);
    env.cmd(&["list", "--no-usage"])
        .fails(1)
        .stderr_has("belongs to uid 65534, not to this user")
        .stderr_has("hint: run tokenkeeper as that user");
    chown(nix_uid());
    env.cmd(&["list", "--no-usage"]).ok();

    // A credential file others can read is refused, with the fix.
    let file = env.root.join("creds.json");
    fs::write(&file, fresh_blob("f")).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    env.cmd(&["add", "f", "--from", "file", file.to_str().unwrap()])
        .fails(1)
        .stderr_has("mode 644 lets other users read it")
        .stderr_has("hint: run: chmod 600")
        .hides(&access("f"));
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    env.cmd(&["add", "f", "--from", "file", file.to_str().unwrap()])
        .ok();
}

/// This process's user id (the one tokenkeeper runs as in these tests).
fn nix_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").unwrap().uid()
}

#[test]
fn issue13_the_daemon_unit_carries_the_backend_and_nothing_can_inject_lines_into_it() {
    let provider = FakeProvider::start();
    let (bao, _front, mut env) = openbao_install(&provider);
    env.set("BAO_ADDR", &bao.address);
    env.add_login("work", &provider.issue("daemon@example.com"));
    let unit = env.home.join(".config/systemd/user/tokenkeeper.service");

    // Every non-secret setting the backend needs goes with it; the token does not.
    let out = env.cmd(&["daemon", "install", "--systemd", "--print"]).ok();
    out.stdout_has("Environment=\"TOKENKEEPER_BACKEND=openbao\"")
        .stdout_has(&format!("Environment=\"BAO_ADDR={}\"", bao.address))
        .stderr_has("BAO_TOKEN is not written into the service")
        .hides(&bao.token);

    // A newline in a carried value would start a unit line of the caller's choosing.
    env.cmd(&["daemon", "install", "--systemd"])
        .env("CLAUDE_CONFIG_DIR", "/tmp/x\nExecStartPre=/bin/sh -c evil")
        .fails(2)
        .stderr_has("CLAUDE_CONFIG_DIR holds a control character");
    assert!(!unit.exists(), "nothing was written");

    // A daemon pass that cannot reach a slot's backend fails, though no slot is due.
    env.cmd(&["daemon", "--once", "--usage-every", "0"]).ok();
    let address = bao.address.clone();
    drop(bao);
    env.cmd(&["daemon", "--once", "--usage-every", "0"])
        .run()
        .code(1)
        .stderr_has(&format!("openbao backend: openbao: cannot reach {address}"));
}

#[test]
fn issue13_a_live_credential_of_an_unexpected_shape_is_kept_before_use_or_remove_replaces_it() {
    let env = Env::new();
    env.add_fresh("a");
    env.add_fresh("b");
    env.cmd(&["use", "a"]).ok();
    // Claude Code rewrote its file in a shape tokenkeeper once refused (scopes as one string,
    // the expiry as a string): the same lineage, refreshed.
    let changed = format!(
        r#"{{"claudeAiOauth":{{"accessToken":"{}","refreshToken":"{}","expiresAt":"{}","scopes":"user:inference user:profile"}},"mcpOAuth":{{}}}}"#,
        access("a2"),
        refresh("a2"),
        now_ms() + 8 * 3_600_000
    );
    env.write_live(&changed);
    env.cmd(&["use", "b"]).ok();
    // Read leniently: a refresh of no slot's lineage, kept as a slot, byte for byte.
    let recovered = env
        .stored_secrets()
        .into_iter()
        .find(|s| s.contains(&refresh("a2")))
        .expect("the new refresh token is kept");
    assert_eq!(recovered, changed);

    // Not a credential at all (Claude Code's wiped file, or a future format): kept verbatim.
    let garbage = format!(
        r#"{{"claudeAiOauth":{{"token":"{}"}}}}"#,
        refresh("only-copy")
    );
    env.write_live(&garbage);
    let out = env.cmd(&["use", "a"]).ok();
    out.stderr_has("kept a copy in")
        .hides(&refresh("only-copy"));
    let rescued: Vec<String> = fs::read_dir(env.data_dir().join("rescued"))
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
            fs::read_to_string(path).unwrap()
        })
        .collect();
    assert_eq!(rescued, vec![garbage.clone()]);

    // `remove --yes` of the active slot keeps it the same way.
    let other = format!(r#"{{"claudeAiOauth":"{}"}}"#, refresh("other-copy"));
    env.write_live(&other);
    env.cmd(&["remove", "a", "--yes"])
        .ok()
        .stderr_has("kept a copy in");
    let rescued = fs::read_dir(env.data_dir().join("rescued"))
        .unwrap()
        .count();
    assert_eq!(rescued, 2);
    assert!(env.read_live().is_none());
}

/// An install whose provider is unreachable until `online` points it at `provider`.
fn offline_install() -> Env {
    Env::new()
}

fn online(env: &mut Env, provider: &FakeProvider) {
    env.set_all(provider.env());
}

#[test]
fn issue13_a_slot_superseded_offline_is_never_refreshed_with_its_spent_token_then_merged() {
    let provider = FakeProvider::start();
    let mut env = offline_install();
    // Added offline: no account known.
    let login = provider.issue("offline@example.com");
    env.add_login("a", &login);
    env.add_login("b", &provider.issue("other@example.com"));
    env.cmd(&["use", "a"]).ok();
    // Claude Code refreshes the live credential (spending `a`'s refresh token)…
    let newer = provider.refresh_as_claude(&login.refresh).unwrap();
    env.write_live(&FakeProvider::blob(&newer));
    // …and tokenkeeper, still offline, cannot tell a refresh from a new login.
    env.cmd(&["use", "b"])
        .ok()
        .stderr_has("saved it as slot 'a-recovered'")
        .stderr_has("'a' is not refreshed until the account is confirmed");
    let listed = env
        .cmd(&["list", "--format", "json", "--no-usage"])
        .ok()
        .json();
    assert_eq!(listed[0]["name"], "a");
    assert_eq!(listed[0]["superseded"], true);
    env.cmd(&["list", "--no-usage"])
        .ok()
        .stdout_has("superseded");
    let doctor = env.cmd(&["doctor", "--format", "json"]).ok().json();
    assert_eq!(doctor["superseded"][0]["newer"], "a-recovered");

    // Switching back to `a` meanwhile hands Claude Code its access token alone: nothing in
    // the live file can replay the spent refresh token.
    env.cmd(&["use", "a"])
        .ok()
        .stderr_has("without the refresh token meanwhile");
    assert!(!env.read_live().unwrap().contains("refreshToken"));
    env.cmd(&["get", "a"]).ok();
    env.cmd(&["use", "b"]).ok();

    // Online now: `a` is still not refreshed with its spent token while unconfirmed.
    online(&mut env, &provider);
    env.cmd(&["refresh", "a", "--force"])
        .fails(1)
        .stderr_has("the newer tokens are in slot 'a-recovered'")
        .stderr_has("hint: once online, refresh the newer slot");
    assert_eq!(
        provider.refresh_calls(),
        1,
        "only Claude Code's refresh so far"
    );
    assert!(!provider.family_revoked(&newer.refresh));

    // The newer slot's refresh names the account; `a`'s own token is refused (the refresh
    // retired it): the same account, so they merge under the old name.
    env.cmd(&["refresh", "a-recovered", "--force"]).ok();
    env.cmd(&["refresh", "a", "--force"])
        .ok()
        .stderr_has("merged them into 'a'")
        .stdout_has("refreshed 'a'");
    let names: Vec<String> = env
        .cmd(&["list", "--format", "json", "--no-usage"])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["a", "b"]);
    let current = env.refresh_token_of("a");
    assert!(provider.is_current(&current), "the lineage lives on in 'a'");
}

#[test]
fn issue13_offline_an_unchanged_login_record_means_claude_code_refreshed_the_active_slot() {
    let provider = FakeProvider::start();
    let env = offline_install();
    let login = provider.issue("record@example.com");
    env.add_login("a", &login);
    env.add_login("b", &provider.issue("other@example.com"));
    env.write_login_record("uuid-record", "record@example.com");
    env.cmd(&["use", "a"]).ok();
    let newer = provider.refresh_as_claude(&login.refresh).unwrap();
    env.write_live(&FakeProvider::blob(&newer));
    // Claude Code's login record still names the same account: a refresh of `a`.
    env.cmd(&["use", "b"]).ok();
    assert_eq!(env.refresh_token_of("a"), newer.refresh);
    let listed = env
        .cmd(&["list", "--format", "json", "--no-usage"])
        .ok()
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 2, "no recovered slot");
    assert_eq!(listed[0]["superseded"], false);

    // A changed login record (a /login to another account) is not taken as a refresh.
    env.cmd(&["use", "a"]).ok();
    let other = provider.issue("third@example.com");
    env.write_live(&FakeProvider::blob(&other));
    env.write_login_record("uuid-third", "third@example.com");
    env.cmd(&["use", "b"])
        .ok()
        .stderr_has("saved it as slot 'a-recovered'");
    assert_eq!(
        env.refresh_token_of("a"),
        newer.refresh,
        "'a' was not overwritten"
    );
}
