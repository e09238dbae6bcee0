//! Codex as the second agent: its slots, live `auth.json`, refresh against a fake OpenAI with
//! single-use refresh tokens, usage, switching — and Claude's slots beside them untouched.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use serde_json::Value;

use crate::support::openai::{CodexLogin, FakeOpenAi};
use crate::support::provider::FakeProvider;
use crate::support::*;

fn codex_env(openai: &FakeOpenAi) -> Env {
    let mut env = Env::new();
    env.set_all(openai.env());
    env
}

fn auth_path(env: &Env) -> PathBuf {
    env.home.join(".codex/auth.json")
}

/// Logs Codex in as `login`, as `codex login` leaves it (0600).
fn write_auth(env: &Env, login: &CodexLogin) {
    let path = auth_path(env);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, login.auth_json()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn read_auth(env: &Env) -> Value {
    serde_json::from_str(&std::fs::read_to_string(auth_path(env)).unwrap()).unwrap()
}

/// A Codex login of `name@example.com` on `plan`, added as slot `name` from stdin.
fn add_slot(env: &Env, openai: &FakeOpenAi, name: &str, plan: &str) -> CodexLogin {
    let login = openai.issue(&format!("{name}@example.com"), plan);
    env.cmd(&["add", name, "--agent", "codex", "--from", "stdin"])
        .stdin(login.auth_json())
        .ok();
    login
}

/// Writes Codex's `config.toml`; returns Codex's home.
fn write_config(env: &Env, text: &str) -> PathBuf {
    let codex_home = env.home.join(".codex");
    std::fs::create_dir_all(&codex_home).unwrap();
    std::fs::write(codex_home.join("config.toml"), text).unwrap();
    codex_home
}

#[test]
fn a_codex_login_becomes_a_slot_named_after_its_account_with_its_plan() {
    let openai = FakeOpenAi::start();
    let env = codex_env(&openai);
    let login = openai.issue("dev@example.com", "plus");
    write_auth(&env, &login);

    env.cmd(&["add", "--agent", "codex"])
        .ok()
        .hides(&login.access)
        .hides(&login.refresh);
    let listed = env
        .cmd(&["list", "--agent", "codex", "--format", "json", "--no-usage"])
        .ok()
        .json();
    assert_eq!(listed[0]["name"], "dev");
    assert_eq!(listed[0]["agent"], "codex");
    assert_eq!(listed[0]["kind"], "oauth");
    assert_eq!(listed[0]["email"], "dev@example.com");
    assert_eq!(listed[0]["subscription_type"], "plus");
    assert_eq!(listed[0]["account_uuid"], "acct-dev");
    assert_eq!(listed[0]["active"], true);
    // The expiry is the access token's own `exp`.
    assert_eq!(
        listed[0]["expires_at"].as_str().unwrap(),
        jiff::Timestamp::from_second(login.expires_at)
            .unwrap()
            .to_string()
    );
    env.cmd(&["get", "--agent", "codex"])
        .ok()
        .stdout_is(&format!("{}\n", login.access));
    env.cmd(&["check", "dev", "--agent", "codex"]).ok();
    env.cmd(&["status"])
        .ok()
        .stdout_has("codex: dev (dev@example.com, plus)");

    // From a file (0600) and stdin too; an API-key login is a slot without refresh.
    let file = env.root.join("other-auth.json");
    std::fs::write(&file, openai.issue("file@example.com", "team").auth_json()).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    env.cmd(&[
        "add",
        "--agent",
        "codex",
        "--from",
        "file",
        file.to_str().unwrap(),
    ])
    .ok();
    env.cmd(&["get", "file", "--agent", "codex"]).ok();
    add_slot(&env, &openai, "ops", "pro");
    env.cmd(&["add", "key", "--agent", "codex", "--from", "stdin"])
        .stdin(r#"{"OPENAI_API_KEY":"sk-proj-PLANTEDkey0123456789","tokens":null}"#)
        .ok();
    env.cmd(&["get", "key", "--agent", "codex"])
        .ok()
        .stdout_is("sk-proj-PLANTEDkey0123456789\n");
    // Claude's slots are a separate namespace; a Claude-shaped credential is no Codex login.
    let listed = env
        .cmd(&["list", "--format", "json", "--no-usage"])
        .ok()
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 4);
    env.cmd(&["list", "--agent", "claude", "--no-usage"]).ok();
}

#[test]
fn codex_slots_refresh_once_with_single_use_tokens_and_a_reused_token_means_a_new_login() {
    let openai = FakeOpenAi::start();
    let env = codex_env(&openai);
    let login = add_slot(&env, &openai, "dev", "plus");

    env.cmd(&["refresh", "dev", "--agent", "codex", "--force"])
        .ok()
        .hides(&login.refresh);
    assert_eq!(openai.refreshes_served(), 1);
    assert!(!openai.is_current(&login.refresh));
    let stored: Value = serde_json::from_str(&env.stored_text("dev")).unwrap();
    let new_refresh = stored["tokens"]["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(openai.is_current(&new_refresh));
    // The rest of the document stays; last_refresh is now.
    assert_eq!(stored["auth_mode"], "chatgpt");
    assert_ne!(stored["last_refresh"], "2026-12-01T09:54:11.493646Z");
    assert_ne!(stored["tokens"]["access_token"], login.access.as_str());

    // Fresh: nothing to do.
    env.cmd(&["refresh", "dev", "--agent", "codex"]).ok();
    assert_eq!(openai.refresh_calls(), 1);

    // Codex (elsewhere) spent the stored refresh token: the provider says reused, and the slot
    // needs a new login instead of being retried.
    openai.refresh_as_codex(&new_refresh).unwrap();
    env.cmd(&["refresh", "dev", "--agent", "codex", "--force"])
        .fails(1)
        .stderr_has("refresh_token_reused");
    let listed = env
        .cmd(&["list", "--agent", "codex", "--format", "json", "--no-usage"])
        .ok()
        .json();
    assert_eq!(listed[0]["needs_login"], "refresh_token_reused");
}

#[test]
fn use_switches_codex_between_accounts_and_keeps_what_codex_refreshed_meanwhile() {
    let openai = FakeOpenAi::start();
    let env = codex_env(&openai);
    let dev = openai.issue("dev@example.com", "plus");
    let ops = openai.issue("ops@example.com", "pro");
    write_auth(&env, &dev);
    env.cmd(&["add", "--agent", "codex"]).ok();
    env.cmd(&["add", "ops", "--agent", "codex", "--from", "stdin"])
        .stdin(ops.auth_json())
        .ok();

    // Codex refreshed its own login before the switch: the new tokens go into slot dev first.
    let refreshed = openai.refresh_as_codex(&dev.refresh).unwrap();
    write_auth(&env, &refreshed);
    // A Codex process running now (its argv[0] is `codex`) is named.
    let mut running = std::process::Command::new("bash")
        .args(["-c", "exec -a codex sleep 30"])
        .spawn()
        .unwrap();
    let pid = running.id();
    wait_until(10, "the stand-in Codex process", || {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"codex\0"))
    });
    let out = env.cmd(&["use", "ops", "--agent", "codex"]).ok();
    out.stdout_has("codex now uses slot 'ops'")
        .stderr_has("Codex processes already running keep the account they started with");
    // Other tests may run a Codex too: this one is among those named.
    let named: Vec<&str> = out
        .stderr
        .split("(running now: pid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_default()
        .split(", ")
        .collect();
    assert!(named.contains(&pid.to_string().as_str()), "{}", out.stderr);
    running.kill().unwrap();
    running.wait().unwrap();
    let live = read_auth(&env);
    assert_eq!(live["tokens"]["access_token"], ops.access.as_str());
    assert_eq!(live["tokens"]["account_id"], "acct-ops");
    let mode = std::fs::metadata(auth_path(&env))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    // Pretty-printed, as Codex writes it.
    assert!(
        std::fs::read_to_string(auth_path(&env))
            .unwrap()
            .contains("\n  \"tokens\": {")
    );
    let dev_stored: Value = serde_json::from_str(&env.stored_text("dev")).unwrap();
    assert_eq!(
        dev_stored["tokens"]["refresh_token"],
        refreshed.refresh.as_str()
    );

    env.cmd(&["use", "dev", "--agent", "codex"]).ok();
    assert_eq!(
        read_auth(&env)["tokens"]["refresh_token"],
        refreshed.refresh.as_str()
    );
    assert!(
        openai.is_current(&refreshed.refresh),
        "nothing replayed the spent token"
    );
    assert!(!openai.family_revoked(&refreshed.refresh));

    // remove of the active slot needs --yes (it logs Codex out); export leaves the refresh token.
    let exported: Value =
        serde_json::from_str(&env.cmd(&["export", "dev", "--agent", "codex"]).ok().stdout).unwrap();
    assert_eq!(exported["tokens"]["refresh_token"], "");
    env.cmd(&["remove", "dev", "--agent", "codex"]).fails(1);
    env.cmd(&["remove", "dev", "--agent", "codex", "--yes"])
        .ok();
    assert!(!auth_path(&env).exists());
}

#[test]
fn codex_usage_reads_the_5_hour_and_weekly_windows_with_the_account_header() {
    let openai = FakeOpenAi::start();
    let env = codex_env(&openai);
    add_slot(&env, &openai, "dev", "plus");
    let usage = env
        .cmd(&["usage", "dev", "--agent", "codex", "--format", "json"])
        .ok()
        .json();
    let text = usage.to_string();
    assert!(text.contains("\"percent\":37"), "{text}");
    assert!(text.contains("\"percent\":12"), "{text}");
    assert_eq!(openai.last_usage_account().as_deref(), Some("acct-dev"));
    assert_eq!(usage[0]["credits"], "12.50");
    env.cmd(&["usage", "dev", "--agent", "codex"])
        .ok()
        .stdout_has("5-hour")
        .stdout_has("7-day")
        .stdout_has("credits        12.50");
    // list shows the reading.
    env.cmd(&["list", "--agent", "codex"])
        .ok()
        .stdout_has("37%");
}

#[test]
fn claude_and_codex_slots_live_side_by_side() {
    let openai = FakeOpenAi::start();
    let provider = FakeProvider::start();
    let mut env = Env::with_provider(&provider);
    env.set_all(openai.env());
    let claude = provider.issue("me@example.com");
    env.write_live(&FakeProvider::blob(&claude));
    env.cmd(&["add"]).ok();
    let codex = openai.issue("me@example.com", "pro");
    write_auth(&env, &codex);
    env.cmd(&["add", "--agent", "codex"]).ok();
    let status = env.cmd(&["status"]).ok();
    status.stdout_has("claude: me (me@example.com");
    status.stdout_has("codex: me (me@example.com, pro)");
    env.cmd(&["get"])
        .ok()
        .stdout_is(&format!("{}\n", claude.access));
    env.cmd(&["get", "--agent", "codex"])
        .ok()
        .stdout_is(&format!("{}\n", codex.access));
    let listed = env.cmd(&["list", "--no-usage"]).ok();
    listed
        .stdout_has("AGENT")
        .stdout_has("codex")
        .stdout_has("claude");
}

/// The real Codex CLI `scripts/test` installs (pinned).
fn codex_path() -> String {
    std::env::var("TOKENKEEPER_TEST_CODEX")
        .expect("TOKENKEEPER_TEST_CODEX names a real `codex`: run the suite with scripts/test")
}

/// Runs the real Codex with `env`'s variables; its exit status, stdout and stderr.
fn run_codex(env: &Env, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(codex_path())
        .args(args)
        .env_clear()
        .envs(env.vars())
        .current_dir(&env.root)
        .output()
        .expect("codex runs (scripts/test installs it)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_real_codex_reads_the_login_use_wrote() {
    let openai = FakeOpenAi::start();
    let env = codex_env(&openai);
    add_slot(&env, &openai, "dev", "plus");
    env.cmd(&["add", "key", "--agent", "codex", "--from", "stdin"])
        .stdin(r#"{"OPENAI_API_KEY":"sk-proj-PLANTEDkey0123456789"}"#)
        .ok();

    let (ok, _, stderr) = run_codex(&env, &["login", "status"]);
    assert!(!ok, "no login yet: {stderr}");
    env.cmd(&["use", "dev", "--agent", "codex"]).ok();
    let (ok, _, stderr) = run_codex(&env, &["login", "status"]);
    assert!(ok && stderr.contains("Logged in using ChatGPT"), "{stderr}");
    env.cmd(&["use", "key", "--agent", "codex"]).ok();
    let (ok, _, stderr) = run_codex(&env, &["login", "status"]);
    // Codex shows the last characters of the key it read: the slot's.
    assert!(
        ok && stderr.contains("API key configured - sk-proj-***56789"),
        "{stderr}"
    );
}

#[test]
fn a_real_codex_under_exec_reaches_the_backend_with_the_real_token_and_holds_only_phantoms() {
    let openai = FakeOpenAi::start();
    let env = codex_env(&openai);
    let dev = add_slot(&env, &openai, "dev", "plus");
    let codex_home = write_config(&env, "model_reasoning_effort = \"low\"\n");

    let codex = codex_path();
    let out = env
        .cmd(&[
            "exec",
            "dev",
            "--agent",
            "codex",
            "--",
            &codex,
            "exec",
            "--skip-git-repo-check",
            "say hello",
        ])
        .run();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("HELLO-FROM-FAKE-OPENAI"),
        "{}",
        out.stdout
    );
    out.hides(&dev.access).hides(&dev.refresh);
    // Every turn reached the backend with the real token and the account's id.
    let turns = openai.turns();
    assert!(!turns.is_empty());
    for (authorization, account) in &turns {
        assert_eq!(authorization, &format!("Bearer {}", dev.access));
        assert_eq!(account.as_deref(), Some("acct-dev"));
    }
    // The user's Codex home kept the session, its config, and gained no login; exec's private
    // home is gone.
    let sessions = walk_files(&codex_home.join("sessions"));
    assert!(
        !sessions.is_empty(),
        "the session was written to the user's home"
    );
    assert!(!codex_home.join("auth.json").exists());
    assert_eq!(
        std::fs::read_to_string(codex_home.join("config.toml")).unwrap(),
        "model_reasoning_effort = \"low\"\n"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&codex_home)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".tokenkeeper-exec-")
        })
        .collect();
    assert!(leftovers.is_empty());

    // What the child can read: phantoms only, in its files and its environment; a refresh it
    // attempts gets phantoms back from the proxy.
    let script = r#"env; cat "$CODEX_HOME/auth.json" "$CODEX_HOME/config.toml"; echo; curl -sS --noproxy '*' -X POST "$CODEX_REFRESH_TOKEN_URL_OVERRIDE" -H 'content-type: application/json' -d '{"grant_type":"refresh_token","refresh_token":"x"}'"#;
    let out = env
        .cmd(&["exec", "dev", "--agent", "codex", "--", "sh", "-c", script])
        .ok();
    out.hides(&dev.access)
        .hides(&dev.refresh)
        .hides(&dev.id_token);
    out.stdout_has("CODEX_HOME=")
        .stdout_has("chatgpt_base_url = \"http://127.0.0.1:")
        .stdout_has("openai_base_url = \"http://localhost:")
        .stdout_has("\"account_id\": \"acct-dev\"")
        .stdout_has("\"refresh_token\":\"tokenkeeper-phantom-refresh-");
    assert_eq!(
        openai.refresh_calls(),
        0,
        "nothing reached OpenAI's token endpoint"
    );
}

fn walk_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                found.extend(walk_files(&path));
            } else {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn tokenkeepers_refresh_of_the_live_slot_lands_in_auth_json_and_comes_an_hour_before_expiry() {
    let openai = FakeOpenAi::start();
    let env = codex_env(&openai);
    let dev = openai.issue("dev@example.com", "plus");
    write_auth(&env, &dev);
    env.cmd(&["add", "--agent", "codex"]).ok();

    // tokenkeeper refreshes the slot Codex uses: Codex's file gets the new tokens at once, so
    // Codex (which re-reads it before refreshing) adopts them instead of spending the old one.
    env.cmd(&["refresh", "dev", "--agent", "codex", "--force"])
        .ok();
    let live = read_auth(&env);
    let stored: Value = serde_json::from_str(&env.stored_text("dev")).unwrap();
    assert_eq!(live["tokens"], stored["tokens"]);
    assert_ne!(live["tokens"]["refresh_token"], dev.refresh.as_str());
    assert_eq!(openai.refreshes_served(), 1);

    // A token within an hour of its end is refreshed (Codex waits until it has expired).
    openai.set_access_lifetime(30 * 60);
    env.cmd(&["refresh", "dev", "--agent", "codex", "--force"])
        .ok();
    env.cmd(&["get", "--agent", "codex"]).ok();
    assert_eq!(
        openai.refreshes_served(),
        3,
        "the half-hour token was renewed on use"
    );
}

#[test]
fn a_real_codex_refreshing_its_own_expired_login_is_saved_into_the_slot_not_replayed() {
    let openai = FakeOpenAi::start();
    let env = codex_env(&openai);
    openai.set_access_lifetime(-60);
    let dev = openai.issue("dev@example.com", "plus");
    openai.set_access_lifetime(8 * 86_400);
    // Codex's own login, expired, managed by tokenkeeper from here on.
    write_auth(&env, &dev);
    env.cmd(&["add", "--agent", "codex"]).ok();
    let codex_home = env.home.join(".codex");
    let port = openai.url.rsplit(':').next().unwrap().to_string();
    std::fs::write(
        codex_home.join("config.toml"),
        format!(
            "chatgpt_base_url = \"http://127.0.0.1:{port}/backend-api\"\nopenai_base_url = \"http://localhost:{port}/backend-api/codex\"\ncli_auth_credentials_store = \"file\"\n"
        ),
    )
    .unwrap();
    // Codex runs on its own (no tokenkeeper in between), finds its token expired, refreshes
    // it with its provider and writes the new tokens to its file.
    let out = std::process::Command::new(codex_path())
        .args(["exec", "--skip-git-repo-check", "say hello"])
        .env_clear()
        .envs(env.vars())
        .env(
            "CODEX_REFRESH_TOKEN_URL_OVERRIDE",
            format!("{}/oauth/token", openai.url),
        )
        .current_dir(&env.root)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("HELLO-FROM-FAKE-OPENAI"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(openai.refreshes_served(), 1);
    let codex_tokens = read_auth(&env)["tokens"].clone();
    assert_ne!(codex_tokens["refresh_token"], dev.refresh.as_str());

    // tokenkeeper's next command sees the same account with new tokens: Codex's refresh,
    // saved into the slot (no second slot), and the spent token is never sent again.
    env.cmd(&["get", "--agent", "codex"])
        .ok()
        .stdout_is(&format!(
            "{}\n",
            codex_tokens["access_token"].as_str().unwrap()
        ));
    let stored: Value = serde_json::from_str(&env.stored_text("dev")).unwrap();
    assert_eq!(
        stored["tokens"]["refresh_token"],
        codex_tokens["refresh_token"]
    );
    assert_eq!(env.slot_count(), 1);
    assert_eq!(openai.refresh_calls(), 1);
    assert!(openai.is_current(codex_tokens["refresh_token"].as_str().unwrap()));
}

#[test]
fn proxy_agent_codex_sends_the_slots_token_and_account_to_the_chatgpt_backend() {
    use crate::support::server::{block_on, http};
    let openai = FakeOpenAi::start();
    let env = codex_env(&openai);
    let dev = add_slot(&env, &openai, "dev", "plus");
    let proxy = env
        .cmd(&[
            "proxy",
            "--agent",
            "codex",
            "--slot",
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--format",
            "json",
        ])
        .env("TOKENKEEPER_CLIENT_TOKEN", "phantom-for-codex")
        .serve();
    // A client that sends no account header: the proxy adds the slot's.
    let (status, body) = block_on(async {
        let response = http()
            .get(proxy.url("/backend-api/wham/usage"))
            .bearer_auth("phantom-for-codex")
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    });
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"used_percent\":37"), "{body}");
    assert_eq!(openai.last_usage_account().as_deref(), Some("acct-dev"));
    // Without the client token: refused, nothing forwarded.
    let calls = openai.usage_calls();
    let status = block_on(async {
        http()
            .get(proxy.url("/backend-api/wham/usage"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(status, 401);
    assert_eq!(openai.usage_calls(), calls);
    // Its target is the ChatGPT backend's origin; an API-key slot's is the OpenAI API.
    assert_eq!(proxy.target, openai.url);
    env.cmd(&["add", "key", "--agent", "codex", "--from", "stdin"])
        .stdin(r#"{"OPENAI_API_KEY":"sk-proj-PLANTEDkey0123456789"}"#)
        .ok();
    let api = env
        .cmd(&[
            "proxy",
            "--agent",
            "codex",
            "--slot",
            "key",
            "--listen",
            "127.0.0.1:0",
            "--format",
            "json",
        ])
        .env("TOKENKEEPER_CLIENT_TOKEN", "phantom-for-codex")
        .serve();
    assert_eq!(api.target, "https://api.openai.com");
    // Neither proxy's log names a token.
    for log in [proxy.log(), api.log()] {
        assert!(
            !log.contains(&dev.access) && !log.contains("sk-proj-PLANTED"),
            "{log}"
        );
    }
}

#[test]
fn a_codex_that_keeps_no_login_on_disk_is_told_so_and_slots_still_work() {
    let openai = FakeOpenAi::start();
    let env = codex_env(&openai);
    let dev = add_slot(&env, &openai, "dev", "plus");
    write_config(&env, "cli_auth_credentials_store = \"ephemeral\"\n");
    env.cmd(&["use", "dev", "--agent", "codex"])
        .fails(1)
        .stderr_has("cli_auth_credentials_store = \"ephemeral\"")
        .stderr_has("hint: run Codex through tokenkeeper exec --agent codex");
    assert!(!auth_path(&env).exists(), "no auth.json Codex would ignore");
    env.cmd(&["get", "dev", "--agent", "codex"])
        .ok()
        .stdout_is(&format!("{}\n", dev.access));
}

#[test]
fn a_codex_keeping_its_login_in_the_keyring_reads_what_use_wrote_there() {
    let openai = FakeOpenAi::start();
    let mut env = codex_env(&openai);
    env.set(
        "DBUS_SESSION_BUS_ADDRESS",
        std::env::var("DBUS_SESSION_BUS_ADDRESS").expect(
            "no D-Bus session: run the tests through scripts/test (or scripts/with-keyring)",
        ),
    );
    write_config(&env, "cli_auth_credentials_store = \"keyring\"\n");
    // Codex saves a login in the keyring itself: the Secret Service item and the kernel
    // keyring's copy the keyring crate reads first.
    let mut login = std::process::Command::new(codex_path())
        .args(["login", "--with-api-key"])
        .env_clear()
        .envs(env.vars())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        login
            .stdin
            .take()
            .unwrap()
            .write_all(b"sk-proj-PLANTEDcodexA12345")
            .unwrap();
    }
    assert!(login.wait().unwrap().success());

    // tokenkeeper reads it from there...
    env.cmd(&["add", "keya", "--agent", "codex"]).ok();
    env.cmd(&["get", "keya", "--agent", "codex"])
        .ok()
        .stdout_is("sk-proj-PLANTEDcodexA12345\n");
    // ...and writes a ChatGPT login there (the Secret Service item, and the kernel keyring's
    // copy where the system lets one be kept): Codex reads it, and no auth.json appears.
    add_slot(&env, &openai, "dev", "plus");
    env.cmd(&["use", "dev", "--agent", "codex"])
        .ok()
        .stdout_has("Codex's keyring item Codex Auth/cli|");
    let (ok, _, stderr) = run_codex(&env, &["login", "status"]);
    assert!(ok && stderr.contains("Logged in using ChatGPT"), "{stderr}");
    assert!(!auth_path(&env).exists());
    env.cmd(&["use", "keya", "--agent", "codex"]).ok();
    let (ok, _, stderr) = run_codex(&env, &["login", "status"]);
    assert!(
        ok && stderr.contains("API key configured - sk-proj-***12345"),
        "{stderr}"
    );
    // Codex slots move between backends like any other.
    env.cmd(&[
        "migrate",
        "--to",
        "secret-service",
        "--all",
        "--agent",
        "codex",
    ])
    .ok();
    env.cmd(&["get", "keya", "--agent", "codex"])
        .ok()
        .stdout_is("sk-proj-PLANTEDcodexA12345\n");
    assert!(
        env.stored_secrets().is_empty(),
        "nothing is left in the file store"
    );
    // remove --yes logs Codex out of the keyring too.
    env.cmd(&["remove", "keya", "--agent", "codex", "--yes"])
        .ok();
    let (ok, _, stderr) = run_codex(&env, &["login", "status"]);
    assert!(!ok, "{stderr}");
}

#[test]
fn the_daemon_keeps_codex_slots_fresh_beside_claudes() {
    let openai = FakeOpenAi::start();
    let provider = FakeProvider::start();
    let mut env = Env::with_provider(&provider);
    env.set_all(openai.env());
    env.add_login("claude-work", &provider.issue("c@example.com"));
    // Half an hour left: within Codex's one-hour margin.
    openai.set_access_lifetime(30 * 60);
    let dev = openai.issue("dev@example.com", "plus");
    openai.set_access_lifetime(8 * 86_400);
    env.cmd(&["add", "dev", "--agent", "codex", "--from", "stdin"])
        .stdin(dev.auth_json())
        .ok();
    env.cmd(&["daemon", "--once", "--usage-every", "0"]).ok();
    assert_eq!(openai.refreshes_served(), 1);
    assert_eq!(
        provider.refreshes_served(),
        0,
        "the Claude slot was not due"
    );
    assert!(!openai.is_current(&dev.refresh));
    // Only Claude's, when asked.
    env.cmd(&[
        "daemon",
        "--once",
        "--agent",
        "claude",
        "--usage-every",
        "0",
    ])
    .ok();
    assert_eq!(openai.refresh_calls(), 1);
}

#[test]
fn a_lost_refresh_answer_and_an_unreadable_id_token_lose_no_codex_lineage() {
    let openai = FakeOpenAi::start();
    let env = codex_env(&openai);
    let dev = add_slot(&env, &openai, "dev", "plus");
    // OpenAI rotated the token but the answer never arrived: the old token is spent, and the
    // retry with it is refused as reused — the slot says it needs a new login, nothing loops.
    openai.drop_answers_after_rotating(1);
    let out = env
        .cmd(&["refresh", "dev", "--agent", "codex", "--force"])
        .run();
    assert_eq!(out.code, 1, "{}", out.stderr);
    out.hides(&dev.refresh);
    assert!(
        out.stderr.contains(
            "refresh_token_reused, after an earlier answer was lost: the provider had rotated it"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(
            "hint: log in with `codex login`, then run: tokenkeeper add dev --agent codex"
        )
    );
    // One try, one retry with the same token (the only chance of keeping the lineage), no more.
    assert_eq!(openai.refresh_calls(), 2);

    // A login whose id token is not a JWT: its account cannot be told, so it needs a name.
    let mut doc: Value =
        serde_json::from_str(&openai.issue("x@example.com", "pro").auth_json()).unwrap();
    doc["tokens"]["id_token"] = Value::from("not-a-jwt");
    env.cmd(&["add", "--agent", "codex", "--from", "stdin"])
        .stdin(doc.to_string())
        .fails(2)
        .stderr_has("cannot name the new slot");
    env.cmd(&["add", "other", "--agent", "codex", "--from", "stdin"])
        .stdin(doc.to_string())
        .ok();
    // Truncated JSON and a wrong shape are refused in one line, nothing stored.
    let before = env.slot_count();
    env.cmd(&["add", "bad", "--agent", "codex", "--from", "stdin"])
        .stdin("{\"tokens\":{\"access_token\":")
        .fails(1)
        .stderr_has("truncated JSON");
    env.cmd(&["add", "bad", "--agent", "codex", "--from", "stdin"])
        .stdin("{\"tokens\":[1,2]}")
        .fails(1)
        .stderr_has("`tokens` must be an object");
    // Another agent's login is refused, with the flag that fits.
    env.cmd(&["add", "bad", "--agent", "codex", "--from", "stdin"])
        .stdin(claude_blob(
            &access("c"),
            &refresh("c"),
            now_ms() + 3_600_000,
        ))
        .fails(2)
        .stderr_has("this is a Claude Code login, not a Codex one")
        .stderr_has("hint: add it with --agent claude");
    env.cmd(&["add", "bad", "--from", "stdin"])
        .stdin(dev.auth_json())
        .fails(2)
        .stderr_has("add it with --agent codex");
    assert_eq!(env.slot_count(), before);
}

#[test]
fn a_codex_token_refused_mid_session_is_refreshed_once_by_the_proxy_and_the_turn_goes_through() {
    let openai = FakeOpenAi::start();
    let env = codex_env(&openai);
    let dev = add_slot(&env, &openai, "dev", "plus");
    write_config(&env, "model_reasoning_effort = \"low\"\n");
    // Revoked server-side before the session: the first turn meets a 401.
    openai.kill_access(&dev.access);
    let codex = codex_path();
    let out = env
        .cmd(&[
            "exec",
            "dev",
            "--agent",
            "codex",
            "--no-probe",
            "--",
            &codex,
            "exec",
            "--skip-git-repo-check",
            "say hello",
        ])
        .run();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("HELLO-FROM-FAKE-OPENAI"),
        "{}",
        out.stdout
    );
    // One refresh for the whole session, however many requests met the 401.
    assert_eq!(openai.refreshes_served(), 1);
    let stored: Value = serde_json::from_str(&env.stored_text("dev")).unwrap();
    let renewed = stored["tokens"]["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let turns = openai.turns();
    assert_eq!(turns.first().unwrap().0, format!("Bearer {}", dev.access));
    assert_eq!(turns.last().unwrap().0, format!("Bearer {renewed}"));
    out.hides(&renewed).hides(&dev.refresh);
}
