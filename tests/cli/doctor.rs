//! `doctor` (one line per check, --fix, --format json), the validity probe and its cache,
//! expiry warnings, and the probe `exec` and `use --probe` run before handing a token out.

use std::os::unix::fs::PermissionsExt;

use serde_json::{Value, json};

use crate::support::provider::FakeProvider;
use crate::support::*;

const DAY_MS: i64 = 86_400_000;

/// A long-lived slot whose token the provider knows, expiring in `days`.
fn add_setup_token(env: &Env, provider: &FakeProvider, name: &str, days: i64) -> String {
    let token = provider.issue_setup_token(&format!("{name}@example.com"));
    let blob = json!({"accessToken": token, "expiresAt": now_ms() + days * DAY_MS});
    env.cmd(&["add", name, "--from", "stdin"])
        .stdin(blob.to_string())
        .ok();
    token
}

fn checks<'a>(report: &'a Value, check: &str, slot: Option<&str>) -> Vec<&'a Value> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["check"] == check && c["slot"].as_str() == slot)
        .collect()
}

fn status(report: &Value, check: &str, slot: Option<&str>) -> String {
    let found = checks(report, check, slot);
    assert_eq!(found.len(), 1, "{check} {slot:?}: {report:#}");
    found[0]["status"].as_str().unwrap().to_string()
}

#[test]
fn doctor_checks_the_install_and_each_slot_and_probes_without_spending_quota() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let login = provider.issue("work@example.com");
    env.write_live(&FakeProvider::blob(&login));
    env.cmd(&["add", "work"]).ok();
    let token = add_setup_token(&env, &provider, "ci", 200);
    let usage_before = provider.usage_calls();

    let out = env.cmd(&["doctor", "--format", "json", "-vv"]).ok();
    out.hides(&token).hides(&login.access).hides(&login.refresh);
    let report = out.json();
    assert_eq!(report["healthy"], true);
    for check in ["modes", "journal", "claude-lock", "live", "memory"] {
        assert_eq!(status(&report, check, None), "ok", "{check}: {report:#}");
    }
    for slot in ["work", "ci"] {
        assert_eq!(status(&report, "login", Some(slot)), "ok");
        assert_eq!(status(&report, "expiry", Some(slot)), "ok");
        assert_eq!(status(&report, "probe", Some(slot)), "ok");
    }
    // The full-scope login is probed at the profile endpoint, the setup token (which cannot
    // read it) with a free token count; the usage endpoint and inference are not touched.
    assert_eq!(
        provider.profile_calls(),
        1 + 1,
        "one for `add`, one for the probe"
    );
    assert_eq!(provider.count_tokens_calls(), 1);
    assert_eq!(provider.messages_calls(), 0);
    assert_eq!(provider.usage_calls(), usage_before);

    // Cached: a second doctor asks nothing; --fresh asks again; a TTL of 0 never caches.
    env.cmd(&["doctor"])
        .ok()
        .stdout_has("ok    slot 'ci': token accepted by the provider (count-tokens, cached");
    assert_eq!(provider.count_tokens_calls(), 1);
    env.cmd(&["doctor", "ci", "--fresh"]).ok();
    assert_eq!(provider.count_tokens_calls(), 2);
    env.cmd(&["doctor", "ci"])
        .env("TOKENKEEPER_PROBE_TTL", "0")
        .ok();
    assert_eq!(provider.count_tokens_calls(), 3);
    // The cache names no token.
    let cache = std::fs::read_to_string(env.data_dir().join("probe.json")).unwrap();
    assert!(!cache.contains("sk-ant"), "{cache}");

    // Claude Code logged in anew underneath: the live file no longer holds the active slot.
    let other = provider.issue("other@example.com");
    env.write_live(&FakeProvider::blob(&other));
    env.cmd(&["doctor", "--no-probe"])
        .ok()
        .stdout_has("warn  live credential:")
        .stdout_has("holds another login than the active slot 'work'")
        .hides(&other.access);
    env.write_live(&FakeProvider::blob(&login));

    // Revoked elsewhere: the probe fails, doctor exits 1 and says what to do.
    provider.kill_access(&token);
    let out = env.cmd(&["doctor", "ci", "--fresh"]).run().code(1);
    out.stdout_has("fail  slot 'ci': token REFUSED by the provider: HTTP 401")
        .stdout_has("hint: make a new one: tokenkeeper rotate ci")
        .hides(&token);
    // NAME checks that slot only.
    assert!(!out.stdout.contains("slot 'work':"), "{}", out.stdout);
    // --no-probe: offline checks only.
    env.cmd(&["doctor", "--no-probe"]).ok();
    // No network at all: the probe is a warning, not a failure.
    env.cmd(&["doctor", "work", "--fresh"])
        .env("TOKENKEEPER_CLAUDE_API_URL", "http://127.0.0.1:9")
        .ok()
        .stdout_has("warn  slot 'work': token could not be probed");
}

#[test]
fn doctor_fix_repairs_modes_a_stale_claude_lock_and_a_pending_journal() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let login = provider.issue("fix@example.com");
    env.add_login("work", &login);

    // Loosened modes: every other command refuses; doctor names the file and --fix repairs it.
    let catalog = env.data_dir().join("slots.json");
    std::fs::set_permissions(&catalog, std::fs::Permissions::from_mode(0o644)).unwrap();
    env.cmd(&["list", "--no-usage"])
        .fails(1)
        .stderr_has("mode 644");
    env.cmd(&["doctor", "--no-probe"])
        .run()
        .code(1)
        .stdout_has(&format!(
            "fail  modes: {} is 644, readable by other users (want 600)",
            catalog.display()
        ))
        .stdout_has("hint: tokenkeeper doctor --fix");
    env.cmd(&["doctor", "--no-probe", "--fix"])
        .ok()
        .stdout_has("was 644, fixed: now 600");
    assert_eq!(
        std::fs::metadata(&catalog).unwrap().permissions().mode() & 0o777,
        0o600
    );
    env.cmd(&["list", "--no-usage"]).ok();

    // A Claude Code lock nobody touched for two minutes: left by a process that died.
    let lock = env.claude_dir().join(".oauth_refresh.lock");
    std::fs::create_dir(&lock).unwrap();
    env.cmd(&["doctor", "--no-probe"])
        .ok()
        .stdout_has("refresh lock")
        .stdout_has("is held now");
    let touched = std::process::Command::new("touch")
        .args(["-d", "2 minutes ago"])
        .arg(&lock)
        .status()
        .unwrap();
    assert!(touched.success());
    env.cmd(&["doctor", "--no-probe"])
        .ok()
        .stdout_has("warn  Claude Code's refresh lock")
        .stdout_has("left stale by a process that died");
    env.cmd(&["doctor", "--no-probe", "--fix"])
        .ok()
        .stdout_has("was left stale, fixed: removed");
    assert!(!lock.exists());

    // A refresh cut off after its answer was journalled: waiting to be applied.
    env.cmd(&["refresh", "work", "--force"])
        .env("TOKENKEEPER_FAILPOINT", "refresh:after-journal")
        .run();
    let report = env
        .cmd(&["doctor", "--no-probe", "--format", "json"])
        .ok()
        .json();
    assert_eq!(status(&report, "journal", None), "warn", "{report:#}");
    let report = env
        .cmd(&["doctor", "--no-probe", "--fix", "--format", "json"])
        .ok()
        .json();
    let journal = &checks(&report, "journal", None)[0];
    assert_eq!(journal["fixed"], true, "{report:#}");
    assert_ne!(
        env.access_token_of("work"),
        login.access,
        "the refreshed token was applied"
    );
    assert!(provider.is_current(&env.refresh_token_of("work")));
}

#[test]
fn a_token_near_its_end_is_warned_about_on_every_use_and_by_doctor_and_status() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let soon = add_setup_token(&env, &provider, "soon", 20);
    let urgent = add_setup_token(&env, &provider, "urgent", 3);
    add_setup_token(&env, &provider, "fine", 300);

    env.cmd(&["get", "soon"])
        .ok()
        .stdout_is(&format!("{soon}\n"))
        .stderr_has("tokenkeeper: warning: the long-lived token of slot 'soon' expires in ")
        .stderr_has("hint: make a new one: tokenkeeper rotate soon");
    env.cmd(&["get", "urgent"])
        .ok()
        .stdout_is(&format!("{urgent}\n"))
        .stderr_has("tokenkeeper: WARNING: the long-lived token of slot 'urgent' expires in ");
    let quiet = env.cmd(&["get", "urgent", "--quiet"]).ok();
    assert_eq!(quiet.stderr, "", "--quiet silences the warning");
    let fine = env.cmd(&["get", "fine"]).ok();
    assert_eq!(fine.stderr, "");
    env.cmd(&["check", "soon"]).ok().stderr_has("expires in ");
    env.cmd(&["export", "urgent"]).ok().stderr_has("WARNING");

    let report = env
        .cmd(&["doctor", "--no-probe", "--format", "json"])
        .ok()
        .json();
    assert_eq!(status(&report, "expiry", Some("soon")), "warn");
    assert_eq!(status(&report, "expiry", Some("urgent")), "warn");
    assert_eq!(status(&report, "expiry", Some("fine")), "ok");
    env.cmd(&["doctor", "--no-probe"])
        .ok()
        .stdout_has("warn  the long-lived token of slot 'urgent' EXPIRES in ");
    let listed = env
        .cmd(&["list", "--format", "json", "--no-usage"])
        .ok()
        .json();
    let urgent_entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "urgent")
        .unwrap();
    assert_eq!(urgent_entry["expiry_warning"]["level"], "urgent");
    assert_eq!(urgent_entry["expiry_warning"]["days"], 2);

    // Expired: a fail in doctor.
    let blob = json!({"accessToken": "sk-ant-oat01-gone-gone-gone-gone-gone-gone", "expiresAt": now_ms() - DAY_MS});
    env.cmd(&["add", "gone", "--from", "stdin"])
        .stdin(blob.to_string())
        .ok();
    env.cmd(&["doctor", "gone", "--no-probe"])
        .run()
        .code(1)
        .stdout_has("fail  the long-lived token of slot 'gone' expired ");

    // status shows the active slot's state; an OAuth login whose refresh token ends soon too.
    let mut login = FakeProvider::blob(&provider.issue("oauth@example.com"));
    let refresh_end = now_ms() + 5 * DAY_MS;
    login = login.replace(
        "\"scopes\"",
        &format!("\"refreshTokenExpiresAt\":{refresh_end},\"scopes\""),
    );
    env.write_live(&login);
    env.cmd(&["add", "oauth"]).ok();
    env.cmd(&["status"]).ok().stdout_has("login ends in ");
    env.cmd(&["use", "oauth"])
        .ok()
        .stderr_has("WARNING: the login of slot 'oauth' (its refresh token) expires in ");
}

#[test]
fn exec_and_use_probe_first_so_a_token_revoked_elsewhere_stops_before_the_agent_starts() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let token = add_setup_token(&env, &provider, "ci", 300);
    let marker = env.root.join("ran");
    let script = format!("touch {}", marker.display());

    env.cmd(&["exec", "ci", "--", "sh", "-c", &script]).ok();
    assert!(marker.exists());
    assert_eq!(provider.count_tokens_calls(), 1);
    // Within TOKENKEEPER_PROBE_TTL the cached answer serves.
    env.cmd(&["exec", "ci", "--env", "--", "true"]).ok();
    assert_eq!(provider.count_tokens_calls(), 1);

    // Rotated elsewhere: once the cached answer is old, exec refuses before running anything.
    provider.kill_access(&token);
    std::fs::remove_file(&marker).unwrap();
    env.cmd(&["exec", "ci", "--", "sh", "-c", &script])
        .env("TOKENKEEPER_PROBE_TTL", "0")
        .fails(1)
        .stderr_has("the provider refuses the token of slot 'ci' (HTTP 401)")
        .stderr_has("hint: make a new one: tokenkeeper rotate ci")
        .hides(&token);
    assert!(!marker.exists(), "the command must not start");
    env.cmd(&["exec", "ci", "--env", "--", "sh", "-c", &script])
        .env("TOKENKEEPER_PROBE_TTL", "0")
        .fails(1);
    assert!(!marker.exists());
    // --no-probe starts it anyway (the agent will meet the 401 itself).
    env.cmd(&["exec", "ci", "--no-probe", "--", "sh", "-c", &script])
        .ok();
    assert!(marker.exists());

    // use --probe: a refused OAuth login is not switched to; the live file is left as it was.
    let good = provider.issue("good@example.com");
    env.write_live(&FakeProvider::blob(&good));
    env.cmd(&["add", "good"]).ok();
    let bad = provider.issue("bad@example.com");
    env.add_login("bad", &bad);
    provider.kill_access(&bad.access);
    let before = env.read_live();
    env.cmd(&["use", "bad", "--probe"])
        .env("TOKENKEEPER_PROBE_TTL", "0")
        .fails(1)
        .stderr_has("the provider refuses the token of slot 'bad'");
    assert_eq!(env.read_live(), before);
    env.cmd(&["use", "good", "--probe"]).ok();
}
