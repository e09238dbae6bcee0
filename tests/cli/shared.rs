//! The shared store as the lineage's home: installs that share one OpenBao see each other's
//! slots without copying anything, join a lineage they hold, refuse a stale copy of one, and
//! replace another login of an account only once it is dead.

use serde_json::Value;

use crate::support::openbao::OpenBao;
use crate::support::provider::{FakeProvider, Issued};
use crate::support::*;

/// A fresh install whose new slots go to `bao`.
fn install(provider: &FakeProvider, bao: &OpenBao) -> Env {
    let mut env = Env::with_provider(provider);
    env.set_all(bao.env());
    env.set("TOKENKEEPER_BACKEND", "openbao");
    env
}

fn slots(env: &Env) -> Vec<Value> {
    env.cmd(&["list", "--no-usage", "--format", "json"])
        .ok()
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn names(env: &Env) -> Vec<String> {
    slots(env)
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

/// The text of every slot record the store holds.
fn record_texts(bao: &OpenBao) -> String {
    records(bao)
        .iter()
        .map(|key| {
            let out = std::process::Command::new("curl")
                .args(["-s", "-H"])
                .arg(format!("X-Vault-Token: {}", bao.token))
                .arg(format!(
                    "{}/v1/secret/data/tokenkeeper/tokenkeeper-slots/{key}",
                    bao.address
                ))
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).to_string()
        })
        .collect()
}

/// The slot records the store holds.
fn records(bao: &OpenBao) -> Vec<String> {
    let out = std::process::Command::new("curl")
        .args(["-s", "-H"])
        .arg(format!("X-Vault-Token: {}", bao.token))
        .arg(format!(
            "{}/v1/secret/metadata/tokenkeeper/tokenkeeper-slots?list=true",
            bao.address
        ))
        .output()
        .unwrap();
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    answer["data"]["keys"]
        .as_array()
        .map(|keys| {
            keys.iter()
                .map(|k| k.as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn add_blob(env: &Env, name: &str, login: &Issued, extra: &[&str]) -> Output {
    let mut args = vec!["add", name, "--from", "stdin"];
    args.extend_from_slice(extra);
    env.cmd(&args).stdin(FakeProvider::blob(login)).run()
}

#[test]
fn a_second_install_lists_and_uses_the_shared_slots_with_no_file_copied() {
    let bao = OpenBao::start();
    let provider = FakeProvider::start();
    let (a, b) = (install(&provider, &bao), install(&provider, &bao));
    let login = provider.issue_expired("team@example.com");
    a.add_login("team", &login);
    assert_eq!(
        records(&bao).len(),
        1,
        "the slot's record lives beside its secret"
    );

    // B knows nothing locally, yet lists the slot (marked shared) and uses it.
    let listed = slots(&b);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["name"], "team");
    assert_eq!(listed[0]["shared"], true);
    let at_a = slots(&a);
    for field in [
        "kind",
        "account_uuid",
        "email",
        "expires_at",
        "created_at",
        "shared",
    ] {
        assert_eq!(listed[0][field], at_a[0][field], "{field}");
    }
    b.cmd(&["list", "--no-usage"])
        .ok()
        .stdout_has("team (shared)");
    // A command naming a slot B has not listed yet finds it too.
    let c = install(&provider, &bao);
    c.cmd(&["check", "team"]).ok();

    // 20 gets from three installs: one refresh, every install ends with the new token.
    let running: Vec<_> = (0..20)
        .map(|n| [&a, &b, &c][n % 3].cmd(&["get", "team"]).spawn_piped())
        .collect();
    let printed: std::collections::BTreeSet<String> = running
        .into_iter()
        .map(|child| {
            let out = finish(child, 60);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        })
        .collect();
    assert_eq!(
        provider.refreshes_served(),
        1,
        "one refresh for the lineage"
    );
    assert_eq!(printed.len(), 1, "{printed:?}");
    let current = a.refresh_token_of("team");
    assert!(provider.is_current(&current) && !provider.family_revoked(&current));
    // The record follows the refresh: B's cached expiry moves on without refreshing itself.
    let expiry = |env: &Env| slots(env)[0]["expires_at"].clone();
    assert_eq!(expiry(&b), expiry(&a));

    // A rename on one install shows on the others; a removal too.
    b.cmd(&["rename", "team", "crew"]).ok();
    assert_eq!(names(&a), vec!["crew"]);
    b.cmd(&["remove", "crew", "--yes"]).ok();
    let out = a.cmd(&["list", "--no-usage"]).ok();
    out.stderr_has("slot 'crew' was removed from openbao by another install");
    assert!(names(&a).is_empty());
    assert!(records(&bao).is_empty());
    assert_eq!(provider.refreshes_served(), 1);
}

#[test]
fn adding_the_current_tokens_joins_the_slot_and_a_stale_copy_is_refused() {
    let bao = OpenBao::start();
    let provider = FakeProvider::start();
    let (a, b) = (install(&provider, &bao), install(&provider, &bao));
    let login = provider.issue("copy@example.com");
    a.add_login("team", &login);

    // The same tokens, added on another machine: it joins the slot, nothing new is stored.
    let out = add_blob(&b, "mine", &login, &[]).code(0);
    out.stdout_has("joined claude slot 'team'");
    out.stderr_has("kept its name (not 'mine')");
    assert_eq!(names(&b), vec!["team"]);
    assert_eq!(records(&bao).len(), 1);

    // A refreshes: the copy B was given is now stale. Adding it is refused, nothing is
    // stored, and no refresh is tried with it (which would revoke the lineage).
    a.cmd(&["refresh", "team", "--force"]).ok();
    let served = provider.refreshes_served();
    let c = install(&provider, &bao);
    for (env, name) in [(&b, "team"), (&c, "old")] {
        let out = add_blob(env, name, &login, &[]).code(1);
        out.one_line_error()
            .stderr_has("stale copy of shared slot 'team'")
            .hides(&login.refresh)
            .hides(&login.access);
    }
    assert_eq!(provider.refreshes_served(), served);
    assert_eq!(records(&bao).len(), 1);
    let current = a.refresh_token_of("team");
    assert_ne!(current, login.refresh);
    assert!(provider.is_current(&current) && !provider.family_revoked(&current));
    assert_eq!(b.refresh_token_of("team"), current);
    // The record holds hashes of the refresh tokens, the current one and the former, never
    // a token.
    let text = record_texts(&bao);
    assert!(text.contains("refresh_hashes"), "{text}");
    for token in [
        &login.refresh,
        &login.access,
        &current,
        &a.access_token_of("team"),
    ] {
        assert!(!text.contains(token.as_str()), "{text}");
    }
    assert_eq!(names(&c), vec!["team"]);
}

#[test]
fn another_login_of_the_account_replaces_the_shared_one_only_once_it_is_dead() {
    let bao = OpenBao::start();
    let provider = FakeProvider::start();
    let (a, b) = (install(&provider, &bao), install(&provider, &bao));
    let first = provider.issue("same@example.com");
    a.add_login("team", &first);

    // A second login of the same account while the first lives: refused, after one refresh
    // of the first (which every install takes up) found it alive.
    let second = provider.issue("same@example.com");
    let out = add_blob(&b, "team", &second, &[]).code(1);
    out.one_line_error()
        .stderr_has("holds another, live login of this account")
        .stderr_has("--new-lineage")
        .hides(&second.refresh);
    assert_eq!(provider.refreshes_served(), 1);
    assert!(provider.is_current(&a.refresh_token_of("team")));
    assert_eq!(records(&bao).len(), 1);

    // Asked for, it is a slot of its own beside the first.
    add_blob(&b, "team-ci", &second, &["--new-lineage"])
        .code(0)
        .stdout_has("added claude slot 'team-ci'");
    let mut both = names(&a);
    both.sort();
    assert_eq!(both, vec!["team", "team-ci"]);

    // Once the first login is dead (revoked elsewhere), a third replaces it in place.
    provider.revoke(&a.refresh_token_of("team"));
    let third = provider.issue("same@example.com");
    let c = install(&provider, &bao);
    add_blob(&c, "team", &third, &[])
        .code(0)
        .stdout_has("updated claude slot 'team'");
    assert_eq!(a.refresh_token_of("team"), third.refresh);
    assert_eq!(records(&bao).len(), 2);
}

#[test]
fn proxies_on_two_installs_serve_one_shared_slot_with_one_refresh() {
    use crate::support::server::{block_on, http};
    let bao = OpenBao::start();
    let provider = FakeProvider::start();
    let (a, b) = (install(&provider, &bao), install(&provider, &bao));
    a.add_login("team", &provider.issue("proxies@example.com"));
    // B serves the slot without ever having added it.
    let serve = |env: &Env| {
        env.cmd(&[
            "proxy",
            "--slot",
            "team",
            "--listen",
            "127.0.0.1:0",
            "--format",
            "json",
        ])
        .env("TARGET", &provider.url)
        .env("TOKENKEEPER_CLIENT_TOKEN", "phantom")
        .serve()
    };
    let (pa, pb) = (serve(&a), serve(&b));
    let send = |proxy: &crate::support::server::Server| {
        block_on(async {
            http()
                .post(proxy.url("/v1/messages"))
                .bearer_auth("phantom")
                .body("{}")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    assert_eq!(send(&pa), 200);
    assert_eq!(send(&pb), 200);
    // The provider stops taking the access token both proxies hold: each gets a 401 once,
    // and between them the lineage is refreshed once; the other takes up the new token.
    provider.kill_access(&a.access_token_of("team"));
    for _ in 0..3 {
        assert_eq!(send(&pa), 200);
        assert_eq!(send(&pb), 200);
    }
    assert_eq!(provider.refreshes_served(), 1);
    let current = a.refresh_token_of("team");
    assert!(provider.is_current(&current) && !provider.family_revoked(&current));
    for proxy in [&pa, &pb] {
        assert!(!proxy.log().contains(&current), "{}", proxy.log());
    }
}

#[test]
fn a_slot_migrated_into_the_shared_store_is_seen_by_every_install_and_out_of_it_by_none() {
    let bao = OpenBao::start();
    let provider = FakeProvider::start();
    let mut a = install(&provider, &bao);
    a.set("TOKENKEEPER_BACKEND", "file");
    let b = install(&provider, &bao);
    let login = provider.issue("moved@example.com");
    a.add_login("laptop", &login);
    assert!(names(&b).is_empty(), "a file slot is this install's own");

    a.set("TOKENKEEPER_BACKEND", "openbao");
    a.cmd(&["migrate", "--to", "openbao", "laptop"]).ok();
    assert_eq!(names(&b), vec!["laptop"]);
    assert_eq!(b.access_token_of("laptop"), login.access);
    // B's add of the same tokens joins the migrated slot: its record knows the lineage.
    add_blob(&b, "laptop", &login, &[])
        .code(0)
        .stdout_has("joined claude slot 'laptop'");

    a.cmd(&["migrate", "--to", "file", "laptop"]).ok();
    assert!(records(&bao).is_empty());
    let out = b.cmd(&["list", "--no-usage"]).ok();
    out.stderr_has("slot 'laptop' was removed from openbao by another install");
    assert_eq!(names(&a), vec!["laptop"]);
    assert_eq!(a.access_token_of("laptop"), login.access);
}

#[test]
fn a_record_that_is_not_one_tokenkeeper_wrote_is_one_clear_error_and_the_local_slots_stay() {
    let bao = OpenBao::start();
    let provider = FakeProvider::start();
    let a = install(&provider, &bao);
    let login = provider.issue("garbled@example.com");
    a.add_login("team", &login);
    // Something else writes a record that is not a slot record.
    let planted = std::process::Command::new("curl")
        .args(["-sf", "-X", "POST", "-H"])
        .arg(format!("X-Vault-Token: {}", bao.token))
        .arg("-d")
        .arg(r#"{"data":{"value":"{\"id\": 7, \"truncated"}}"#)
        .arg(format!(
            "{}/v1/secret/data/tokenkeeper/tokenkeeper-slots/claude.garbage",
            bao.address
        ))
        .status()
        .unwrap();
    assert!(planted.success());
    // `list` says so and shows what this install knows; a slot command it knows works.
    let out = a.cmd(&["list", "--no-usage"]).ok();
    out.stderr_has("is not one tokenkeeper wrote")
        .stdout_has("team");
    a.cmd(&["get", "team"])
        .ok()
        .stdout_is(&format!("{}\n", login.access));
    // `add` cannot tell a stale copy from the records, so it stores nothing.
    let out = add_blob(&a, "other", &provider.issue("other@example.com"), &[]).code(1);
    out.one_line_error()
        .stderr_has("is not one tokenkeeper wrote")
        .hides(&login.refresh);
    assert_eq!(names(&a), vec!["team"]);
}
