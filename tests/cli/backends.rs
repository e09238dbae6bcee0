//! Choosing a backend (flag, environment, config file, auto), `doctor`, and the keychain
//! backend driven through the fake `security`.

use crate::support::keychain::FakeKeychain;
use crate::support::provider::FakeProvider;
use crate::support::*;

fn keychain_env() -> (Env, FakeKeychain) {
    let mut env = Env::new();
    let fake = FakeKeychain::install();
    env.set("PATH", fake.path_env());
    (env, fake)
}

#[test]
fn slots_go_to_the_keychain_when_chosen_and_no_secret_reaches_argv() {
    let provider = FakeProvider::start();
    let (mut env, fake) = keychain_env();
    env.set_all(provider.env());
    let login = provider.issue_expired("me@example.com");
    env.cmd(&["--backend", "keychain", "add", "work", "--from", "stdin"])
        .stdin(FakeProvider::blob(&login))
        .ok();
    let catalog = env.catalog();
    assert_eq!(catalog["slots"][0]["backend"], "keychain");
    let id = catalog["slots"][0]["id"].as_str().unwrap().to_string();
    let stored = fake.item("tokenkeeper", &format!("claude.{id}")).unwrap();
    assert!(stored.contains(&login.refresh));
    assert!(
        env.stored_secrets().is_empty(),
        "nothing in the file backend"
    );

    // The slot is found in its backend whatever the default is now; a refresh writes it back.
    let out = env.cmd(&["get", "work"]).ok();
    let renewed = out.stdout.trim().to_string();
    assert_ne!(renewed, login.access);
    assert!(
        fake.item("tokenkeeper", &format!("claude.{id}"))
            .unwrap()
            .contains(&renewed)
    );
    env.cmd(&["remove", "work"]).ok();
    assert!(fake.items().is_empty());

    assert_eq!(fake.violations(), "");
    let argv = fake.argv_log();
    for secret in [&login.access, &login.refresh, &renewed] {
        assert!(
            !argv.contains(secret.as_str()),
            "a token in security's argv"
        );
    }
}

#[test]
fn ralph_tokens_use_the_ralph_item_names_so_an_existing_one_is_found() {
    let (mut env, fake) = keychain_env();
    env.set("TOKENKEEPER_BACKEND", "keychain");
    // What ralph's own store-token left in the Keychain.
    let token = access("ralph");
    let far = now_ms() + 200 * 86_400_000;
    fake.insert(
        "claude-token",
        "agent-loop",
        &format!(r#"{{"accessToken":"{token}","expiresAt":{far}}}"#),
    );
    env.cmd(&["get-token"])
        .ok()
        .stdout_is(&format!("{token}\n"));
    env.cmd(&["check-token"])
        .ok()
        .stdout_has("token valid for agent claude");

    env.cmd(&["store-token", "--agent", "codex"])
        .stdin(access("codex"))
        .ok();
    assert!(
        fake.item("codex-token", "agent-loop")
            .unwrap()
            .contains(&access("codex"))
    );
    assert_eq!(fake.violations(), "");
}

#[test]
fn the_backend_comes_from_the_flag_the_environment_the_config_file_or_auto() {
    let (mut env, _fake) = keychain_env();
    let why = |env: &Env, args: &[&str]| {
        let mut all = vec!["doctor", "--format", "json"];
        all.extend_from_slice(args);
        env.cmd(&all).ok().json()
    };
    let auto = why(&env, &[]);
    assert_eq!(auto["backend"], "file");
    assert!(
        auto["why"]
            .as_str()
            .unwrap()
            .starts_with("auto (the default)")
    );

    let config = env.home.join(".config/tokenkeeper/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, "backend = \"keychain\"\n").unwrap();
    let from_file = why(&env, &[]);
    assert_eq!(from_file["backend"], "keychain");
    assert_eq!(
        from_file["why"],
        format!("set by {}", config.display()).as_str()
    );

    env.set("TOKENKEEPER_BACKEND", "file");
    assert_eq!(why(&env, &[])["why"], "set by TOKENKEEPER_BACKEND");
    let flagged = why(&env, &["--backend", "keychain"]);
    assert_eq!(flagged["why"], "set by --backend");
    assert_eq!(flagged["backends"][0]["reachable"], true);

    env.set("TOKENKEEPER_BACKEND", "vault9");
    env.cmd(&["doctor"])
        .fails(2)
        .stderr_has("TOKENKEEPER_BACKEND=vault9 is not a backend");
    env.unset("TOKENKEEPER_BACKEND");
    std::fs::write(&config, "backend = 7\n").unwrap();
    env.cmd(&["add", "x", "--from", "stdin"])
        .stdin(access("x"))
        .fails(2)
        .stderr_has("config.toml");
    assert!(env.stored_secrets().is_empty());
}

#[test]
fn an_unreachable_keychain_is_one_clear_error_and_nothing_else_is_touched() {
    let (mut env, _fake) = keychain_env();
    env.cmd(&["add", "kept", "--from", "stdin"])
        .stdin(access("kept"))
        .ok();
    let before = env.snapshot();

    // Locked.
    env.cmd(&["--backend", "keychain", "add", "new", "--from", "stdin"])
        .env("FAKE_KEYCHAIN_LOCKED", "1")
        .stdin(access("new"))
        .fails(1)
        .stderr_has("keychain: cannot write tokenkeeper/claude.")
        .stderr_has("the Keychain is locked")
        .stderr_has("hint: unlock it")
        .hides(&access("new"));
    assert_eq!(env.snapshot(), before, "nothing changed");

    // Not installed at all.
    env.set("PATH", "/usr/bin:/bin");
    env.cmd(&["--backend", "keychain", "store-token"])
        .stdin(access("x"))
        .fails(1)
        .stderr_has("the keychain backend needs the macOS `security` tool")
        .stderr_has("hint: choose another backend");
    env.cmd(&["doctor", "--backend", "keychain"])
        .run()
        .code(1)
        .stdout_has("keychain: 0 slots, NOT reachable");
    // The file slot is still there and readable.
    env.cmd(&["get", "kept"])
        .ok()
        .stdout_is(&format!("{}\n", access("kept")));
    assert_eq!(env.snapshot(), before);
}

/// The session bus the tests run in (scripts/with-keyring starts one with GNOME Keyring).
fn session_bus() -> String {
    std::env::var("DBUS_SESSION_BUS_ADDRESS").expect(
        "no D-Bus session: run the tests through scripts/test (or scripts/with-keyring cargo test)",
    )
}

#[test]
fn slots_go_to_gnome_keyring_over_d_bus_and_auto_picks_it_when_it_answers() {
    use tokenkeeper::store::{SecretKey, SecretServiceStore, SecretStore};
    let provider = FakeProvider::start();
    let mut env = Env::with_provider(&provider);
    env.set("DBUS_SESSION_BUS_ADDRESS", session_bus());
    let doctor = env.cmd(&["doctor", "--format", "json"]).ok().json();
    assert_eq!(doctor["backend"], "secret-service");
    assert_eq!(
        doctor["why"],
        "auto (the default): a Secret Service answers on the session bus"
    );

    let login = provider.issue_expired("me@example.com");
    env.add_login("work", &login);
    let slot = &env.catalog()["slots"][0];
    assert_eq!(slot["backend"], "secret-service");
    let key = SecretKey::slot("claude", slot["id"].as_str().unwrap());
    let stored = SecretServiceStore::default().get(&key).unwrap().unwrap();
    assert!(stored.expose_secret().contains(&login.refresh));
    assert!(
        env.stored_secrets().is_empty(),
        "nothing in the file backend"
    );

    // Refreshed through the lifecycle, written back to the keyring.
    let renewed = env.cmd(&["get", "work"]).ok().stdout.trim().to_string();
    assert_ne!(renewed, login.access);
    let stored = SecretServiceStore::default().get(&key).unwrap().unwrap();
    assert!(stored.expose_secret().contains(&renewed));

    // And migrated out and back.
    env.cmd(&["migrate", "--to", "file", "work"]).ok();
    assert!(SecretServiceStore::default().get(&key).unwrap().is_none());
    env.cmd(&["migrate", "--to", "secret-service", "work"]).ok();
    assert!(env.stored_secrets().is_empty());
    env.cmd(&["remove", "work"]).ok();
    assert!(SecretServiceStore::default().get(&key).unwrap().is_none());
}

#[test]
fn no_session_bus_is_one_clear_error_naming_the_backend() {
    let mut env = Env::new();
    env.set("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus");
    // auto does not pick an unreachable Secret Service.
    assert_eq!(
        env.cmd(&["doctor", "--format", "json"]).ok().json()["backend"],
        "file"
    );
    env.cmd(&["--backend", "secret-service", "store-token"])
        .stdin(access("x"))
        .fails(1)
        .stderr_has("secret-service: cannot write claude-token/agent-loop: no Secret Service on the session bus")
        .stderr_has("hint: start a keyring")
        .hides(&access("x"));
    assert!(env.stored_secrets().is_empty());
}

#[test]
fn slots_live_in_openbao_and_a_sealed_down_or_refused_server_is_one_clear_error() {
    use crate::support::openbao::OpenBao;
    let bao = OpenBao::start();
    let provider = FakeProvider::start();
    let mut env = Env::with_provider(&provider);
    env.set_all(bao.env());
    env.set("TOKENKEEPER_BACKEND", "openbao");
    let login = provider.issue_expired("me@example.com");
    env.add_login("work", &login);
    assert_eq!(env.catalog()["slots"][0]["backend"], "openbao");
    assert!(
        env.stored_secrets().is_empty(),
        "nothing in the file backend"
    );
    let out = env.cmd(&["get", "work"]).ok();
    let renewed = out.stdout.trim().to_string();
    assert_ne!(renewed, login.access);
    // What OpenBao holds is the renewed credential (read back by `export` below).
    let doctor = env.cmd(&["doctor", "--format", "json", "-vvv"]).ok();
    doctor.hides(&bao.token).hides(&renewed);
    assert_eq!(doctor.json()["backends"][0]["reachable"], true);
    env.cmd(&["export", "work"]).ok().stdout_has(&renewed);

    // A wrong token.
    env.cmd(&["get", "work"])
        .env("BAO_TOKEN", "not-the-token")
        .fails(1)
        .stderr_has("openbao: cannot read tokenkeeper/claude.")
        .stderr_has("permission denied")
        .stderr_has("hint: check BAO_TOKEN");
    // Sealed.
    bao.seal();
    env.cmd(&["get", "work"])
        .fails(1)
        .stderr_has("is sealed")
        .stderr_has("hint: unseal it: bao operator unseal")
        .hides(&bao.token);
    // Down.
    let address = bao.address.clone();
    drop(bao);
    env.cmd(&["get", "work"])
        .fails(1)
        .stderr_has(&format!("openbao: cannot reach {address}"))
        .stderr_has("hint: is OpenBao running there?");
    // No configuration at all.
    env.unset("BAO_ADDR");
    env.cmd(&["store-token"])
        .stdin(access("x"))
        .fails(1)
        .stderr_has("openbao: no server address")
        .stderr_has("hint: set BAO_ADDR");
}

#[test]
fn two_installs_sharing_openbao_refresh_a_slot_exactly_once() {
    use crate::support::openbao::OpenBao;
    use crate::support::provider::Failure;
    use std::time::Duration;
    let bao = OpenBao::start();
    let provider = FakeProvider::start();
    let install = || {
        let mut env = Env::with_provider(&provider);
        env.set_all(bao.env());
        env.set("TOKENKEEPER_BACKEND", "openbao");
        env
    };
    let (a, b) = (install(), install());
    let login = provider.issue_expired("team@example.com");
    a.add_login("team", &login);
    // The second install knows the same slot (a shared or copied catalog): same id, same key.
    b.cmd(&["list", "--no-usage"]).ok();
    std::fs::copy(
        a.data_dir().join("slots.json"),
        b.data_dir().join("slots.json"),
    )
    .unwrap();

    for round in 0..3 {
        if round > 0 {
            // Make the token due again for the next round.
            provider.set_access_lifetime(Duration::from_secs(1));
            a.cmd(&["refresh", "team", "--force"]).ok();
            provider.set_access_lifetime(Duration::from_secs(8 * 3600));
            std::thread::sleep(Duration::from_millis(1100));
        }
        let served = provider.refreshes_served();
        // The first refresh request to arrive is slow (long enough for the other install to be
        // well under way on a loaded machine): the other install must wait for it, not
        // spend the same refresh token (which would revoke the whole family).
        provider.fail_next(1, Failure::Slow(Duration::from_millis(1500)));
        let first = a.cmd(&["refresh", "team"]).spawn_piped();
        let second = b.cmd(&["refresh", "team"]).spawn_piped();
        let (first, second) = (finish(first, 60), finish(second, 60));
        for out in [&first, &second] {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "round {round}: {stderr}");
        }
        assert_eq!(
            provider.refreshes_served(),
            served + 1,
            "round {round}: exactly one refresh"
        );
        let (token_a, token_b) = (a.access_token_of("team"), b.access_token_of("team"));
        assert_eq!(token_a, token_b, "both installs end with the new token");
        assert!(
            provider.is_current(&a.refresh_token_of("team")),
            "round {round}"
        );
        let outputs = [&first, &second].map(|o| String::from_utf8_lossy(&o.stdout).to_string());
        assert!(
            outputs.iter().any(|o| o.contains("refreshed 'team'")),
            "{outputs:?}"
        );
        assert!(
            outputs.iter().any(|o| o.contains("another process")),
            "the other install took up the new token: {outputs:?}"
        );
    }
}

#[test]
fn slots_live_in_1password_and_a_failed_write_leaves_nothing_behind() {
    use crate::support::keychain::FakeOnePassword;
    let provider = FakeProvider::start();
    let fake = FakeOnePassword::install();
    let mut env = Env::with_provider(&provider);
    env.set("PATH", fake.path_env());
    env.set("TOKENKEEPER_BACKEND", "1password");
    env.set("TOKENKEEPER_OP_VAULT", "Agents");
    env.set("TOKENKEEPER_OP_ACCOUNT", "team.1password.com");
    // A write that does not read back: the new item is removed, no slot is added.
    env.cmd(&["add", "other", "--from", "stdin"])
        .env("OP_FAKE_CORRUPT_READ", "1")
        .stdin(access("other"))
        .fails(1)
        .stderr_has("1password: tokenkeeper/claude.")
        .stderr_has("did not read back as written")
        .hides(&access("other"));
    assert!(fake.items().is_empty(), "the half-made item was deleted");
    assert!(env.stored_secrets().is_empty());

    let login = provider.issue_expired("me@example.com");
    env.add_login("work", &login);
    let id = env.catalog()["slots"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let title = format!("tokenkeeper tokenkeeper claude.{id}");
    let item = &fake.items()[&title];
    assert_eq!(item["vault"], "Agents");
    assert!(
        item["fields"][0]["value"]
            .as_str()
            .unwrap()
            .contains(&login.refresh)
    );
    let renewed = env.cmd(&["get", "work"]).ok().stdout.trim().to_string();
    assert!(
        fake.items()[&title]["fields"][0]["value"]
            .as_str()
            .unwrap()
            .contains(&renewed)
    );

    // Not signed in.
    env.cmd(&["get", "work"])
        .env("OP_FAKE_SIGNED_OUT", "1")
        .fails(1)
        .stderr_has("op is not signed in")
        .stderr_has("hint: sign in: eval \"$(op signin)\"");
    // No op at all.
    env.set("PATH", "/usr/bin:/bin");
    env.cmd(&["store-token"])
        .stdin(access("x"))
        .fails(1)
        .stderr_has("the 1password backend needs the 1Password CLI `op`");

    assert_eq!(fake.violations(), "");
    let argv = fake.argv_log();
    assert!(
        argv.contains(r#""--account", "team.1password.com""#),
        "{argv}"
    );
    for secret in [&login.access, &login.refresh, &renewed, &access("other")] {
        assert!(!argv.contains(secret.as_str()), "a token in op's argv");
    }
}

#[test]
fn claude_codes_keychain_item_is_the_live_credential_where_claude_code_keeps_it_there() {
    let provider = FakeProvider::start();
    let (mut env, fake) = keychain_env();
    env.set_all(provider.env());
    // As on macOS: Claude Code's credential is its Keychain item, account = the user's name.
    env.set("TOKENKEEPER_CLAUDE_LIVE", "keychain");
    env.set("USER", "tester");
    let first = provider.issue("first@example.com");
    fake.insert(
        "Claude Code-credentials",
        "tester",
        &FakeProvider::blob(&first),
    );
    env.cmd(&["add", "first"]).ok();
    assert!(env.read_live().is_none(), "no credentials file is written");

    let second = provider.issue("second@example.com");
    env.add_login("second", &second);
    env.cmd(&["use", "second"])
        .ok()
        .stdout_has("the Keychain item Claude Code-credentials/tester");
    // Byte for byte what Claude Code writes itself.
    assert_eq!(
        fake.item("Claude Code-credentials", "tester").unwrap(),
        FakeProvider::blob(&second)
    );
    // Claude Code refreshes by itself; the next command saves that into the slot first.
    let renewed = provider.refresh_as_claude(&second.refresh).unwrap();
    fake.insert(
        "Claude Code-credentials",
        "tester",
        &FakeProvider::blob(&renewed),
    );
    env.cmd(&["use", "first"]).ok();
    assert_eq!(env.refresh_token_of("second"), renewed.refresh);
    assert_eq!(
        fake.item("Claude Code-credentials", "tester").unwrap(),
        FakeProvider::blob(&first)
    );
    assert_eq!(fake.violations(), "");
    for secret in [&first.refresh, &second.refresh, &renewed.refresh] {
        assert!(!fake.argv_log().contains(secret.as_str()));
    }
}

#[test]
fn openbao_over_tls_trusts_the_ca_it_is_given_and_nothing_else() {
    use crate::support::openbao::OpenBao;
    let bao = OpenBao::start_tls();
    let mut env = Env::new();
    env.set_all(bao.env());
    env.set("TOKENKEEPER_BACKEND", "openbao");
    env.cmd(&["store-token"]).stdin(access("tls")).ok();
    env.cmd(&["get-token"])
        .ok()
        .stdout_is(&format!("{}\n", access("tls")));
    // Without the CA the server's certificate is not trusted.
    env.unset("BAO_CACERT");
    env.cmd(&["get-token"])
        .fails(1)
        .stderr_has(&format!("openbao: cannot reach {}", bao.address))
        .hides(&bao.token);
    env.set("BAO_CACERT", "/nonexistent/ca.pem");
    env.cmd(&["get-token"])
        .fails(1)
        .stderr_has("openbao: cannot read the CA certificate /nonexistent/ca.pem");
}

#[test]
fn openbao_takes_its_token_from_a_file_and_its_mount_and_prefix_from_the_environment() {
    use crate::support::openbao::OpenBao;
    let bao = OpenBao::start();
    let mut env = Env::new();
    env.set("BAO_ADDR", &bao.address);
    let token_file = env.root.join("bao-token");
    std::fs::write(&token_file, format!("{}\n", bao.token)).unwrap();
    env.set(
        "TOKENKEEPER_OPENBAO_TOKEN_FILE",
        token_file.display().to_string(),
    );
    env.set("TOKENKEEPER_OPENBAO_PREFIX", "teams/agents");
    env.set("TOKENKEEPER_BACKEND", "openbao");
    env.cmd(&["store-token"]).stdin(access("f")).ok();
    // Where it landed, asked of the server directly.
    let out = std::process::Command::new("curl")
        .args(["-s", "-H"])
        .arg(format!("X-Vault-Token: {}", bao.token))
        .arg(format!(
            "{}/v1/secret/data/teams/agents/claude-token/agent-loop",
            bao.address
        ))
        .output()
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        body["data"]["data"]["value"]
            .as_str()
            .unwrap()
            .contains(&access("f"))
    );
    // Another mount that does not exist: the error says how to make one.
    env.cmd(&["get-token"])
        .env("TOKENKEEPER_OPENBAO_MOUNT", "nokv")
        .fails(1)
        .stderr_has("hint: enable one: bao secrets enable -path=nokv kv-v2");
    // No token anywhere.
    env.set("TOKENKEEPER_OPENBAO_TOKEN_FILE", "/nonexistent");
    env.cmd(&["get-token"])
        .fails(1)
        .stderr_has("openbao: no token")
        .stderr_has("hint: set BAO_TOKEN");
}

#[test]
fn claude_codes_keychain_item_for_another_directory_carries_its_hash() {
    use sha2::{Digest, Sha256};
    let provider = FakeProvider::start();
    let (mut env, fake) = keychain_env();
    env.set_all(provider.env());
    env.set("TOKENKEEPER_CLAUDE_LIVE", "keychain");
    env.set("USER", "tester");
    let dir = env.root.join("claude-work");
    env.set("CLAUDE_CONFIG_DIR", dir.display().to_string());
    let hash: String = Sha256::digest(dir.display().to_string().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let service = format!("Claude Code-credentials-{}", &hash[..8]);
    let login = provider.issue("dir@example.com");
    env.add_login("work", &login);
    env.cmd(&["use", "work"])
        .ok()
        .stdout_has(&format!("the Keychain item {service}/tester"));
    assert_eq!(
        fake.item(&service, "tester").unwrap(),
        FakeProvider::blob(&login)
    );
    assert!(fake.item("Claude Code-credentials", "tester").is_none());
}
