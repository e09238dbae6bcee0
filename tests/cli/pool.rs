//! One person's accounts as a pool: choosing a slot by the quota it has left, and the quota a
//! slot's proxy reads off the answers it relays.

use serde_json::{Value, json};

use crate::support::provider::{FakeProvider, Issued, Limits};
use crate::support::server::{Server, block_on, http};
use crate::support::*;

/// A usage answer with these percents used, the 5-hour window resetting in `reset_s`.
fn usage_at(five: f64, seven: f64, reset_s: i64) -> Value {
    let now = now_ms() / 1000;
    json!({
        "five_hour": {"utilization": five, "resets_at": now + reset_s},
        "seven_day": {"utilization": seven, "resets_at": now + 5 * 86_400},
        "seven_day_opus": {"utilization": 100.0, "resets_at": now + 5 * 86_400},
    })
}

fn pool_of(provider: &FakeProvider, names: &[&str]) -> (Env, Vec<Issued>) {
    let mut env = Env::with_provider(provider);
    // Every command reads usage anew, so each step sees what the provider says now.
    env.set("TOKENKEEPER_USAGE_MAX_AGE", "0s");
    let logins = names
        .iter()
        .map(|name| {
            let login = provider.issue(&format!("{name}@example.com"));
            env.add_login(name, &login);
            login
        })
        .collect();
    (env, logins)
}

fn live_access(env: &Env) -> String {
    let live: Value = serde_json::from_str(&env.read_live().unwrap()).unwrap();
    live["claudeAiOauth"]["accessToken"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn use_best_and_next_choose_by_the_quota_each_slot_has_left() {
    let provider = FakeProvider::start();
    let (env, logins) = pool_of(&provider, &["a", "b", "c"]);
    // Tightest windows: a 10 % left (5-hour), b 30 % (weekly), c 85 %. The spent Opus window
    // limits one model, not the account, and is not counted.
    provider.set_usage_of("a@example.com", usage_at(90.0, 30.0, 3600));
    provider.set_usage_of("b@example.com", usage_at(20.0, 70.0, 3600));
    provider.set_usage_of("c@example.com", usage_at(10.0, 15.0, 3600));
    env.cmd(&["use", "a"]).ok();

    let out = env.cmd(&["use", "--best"]).ok();
    out.stdout_has("claude now uses slot 'c', 85% left in its tightest window");
    for login in &logins {
        out.hides(&login.access).hides(&login.refresh);
    }
    assert_eq!(live_access(&env), logins[2].access);
    env.cmd(&["use", "--best"])
        .ok()
        .stdout_has("claude already uses slot 'c'");

    // --next goes on from the active slot in list order, wrapping round, past a spent slot.
    provider.set_usage_of("a@example.com", usage_at(100.0, 30.0, 3600));
    env.cmd(&["use", "--next"])
        .ok()
        .stdout_has("claude now uses slot 'b', 30% left");
    assert_eq!(live_access(&env), logins[1].access);
    let json = env.cmd(&["use", "--next", "--format", "json"]).ok().json();
    assert_eq!(json["slot"]["name"], "c");
    assert_eq!(json["chosen_by"], "next");
    assert_eq!(json["headroom_percent"], 85.0);

    // Every account spent: nothing is switched, and the answer says when quota comes back.
    provider.set_usage_of("b@example.com", usage_at(100.0, 70.0, 7200));
    provider.set_usage_of("c@example.com", usage_at(40.0, 100.0, 3600));
    let before = env.read_live();
    let out = env.cmd(&["use", "--next"]).fails(1);
    out.one_line_error()
        .stderr_has("no other claude slot has quota left")
        .stderr_has("slot 'a' has quota again in");
    env.cmd(&["use", "--best"])
        .fails(1)
        .stderr_has("no claude slot has quota left");
    assert_eq!(env.read_live(), before);

    // Once a window's reset time has passed, the slot counts as having quota again.
    provider.set_usage_of("a@example.com", usage_at(100.0, 30.0, -60));
    env.cmd(&["use", "--next"])
        .ok()
        .stdout_has("claude now uses slot 'a', 70% left");
    assert_eq!(provider.refresh_calls(), 0);
}

#[test]
fn use_takes_a_slot_or_a_strategy_never_both() {
    let env = Env::new();
    env.add_fresh("a");
    for args in [
        &["use"][..],
        &["use", "a", "--best"],
        &["use", "--next", "--best"],
    ] {
        let out = env.cmd(args).run();
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
    }
    env.cmd(&["use", "--best", "--agent", "codex"])
        .fails(1)
        .stderr_has("there are no codex slots to choose from");
}

fn slot_proxy(env: &Env, provider: &FakeProvider, slot: &str) -> Server {
    env.cmd(&[
        "proxy",
        "--slot",
        slot,
        "--listen",
        "127.0.0.1:0",
        "--format",
        "json",
    ])
    .env("TARGET", &provider.url)
    .env("TOKENKEEPER_CLIENT_TOKEN", "phantom")
    .serve()
}

/// One Messages request through `proxy`: its status.
fn one_message(proxy: &Server) -> u16 {
    message_in(proxy, "one").0
}

#[test]
fn a_slot_proxy_keeps_the_quota_its_answers_report_and_list_shows_it_without_polling() {
    let provider = FakeProvider::start();
    let (mut env, logins) = pool_of(&provider, &["a"]);
    env.set("TOKENKEEPER_USAGE_MAX_AGE", "1h");
    provider.set_usage_of("a@example.com", usage_at(10.0, 5.0, 3600));
    env.cmd(&["use", "a"]).ok();
    let polled = env.cmd(&["list", "--format", "json"]).ok().json();
    assert_eq!(polled[0]["usage"]["windows"][0]["percent"], 10.0);
    assert_eq!(polled[0]["usage"]["source"], "poll");
    let polls = provider.usage_calls();

    provider.set_limits_of("a@example.com", Limits::at(0.42, 0.07));
    let proxy = slot_proxy(&env, &provider, "a");
    assert_eq!(one_message(&proxy), 200);
    let five_hour =
        |env: &Env| env.cmd(&["list", "--format", "json"]).ok().json()[0]["usage"].clone();
    wait_until(10, "the proxy's reading in the catalog", || {
        five_hour(&env)["source"] == "proxy"
    });
    let usage = five_hour(&env);
    let windows = usage["windows"].as_array().unwrap();
    let percent = |id: &str| {
        windows.iter().find(|w| w["id"] == id).unwrap()["percent"]
            .as_f64()
            .unwrap()
    };
    assert!((percent("five_hour") - 42.0).abs() < 1e-6);
    assert!((percent("seven_day") - 7.0).abs() < 1e-6);
    // The Opus window the answers do not report keeps its polled value.
    assert_eq!(percent("seven_day_opus"), 100.0);
    // Newer than the last poll, so `list` asked the provider nothing.
    assert_eq!(provider.usage_calls(), polls);
    env.cmd(&["list"]).ok().stdout_has("42%");
    env.cmd(&["status"])
        .ok()
        .stdout_has("5-hour 42%")
        .stdout_has("(seen by the proxy just now)");
    assert!(!proxy.log().contains(&logins[0].access));
}

#[test]
fn for_a_setup_token_usage_shows_what_the_proxy_saw_since_it_cannot_poll() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let token = provider.issue_setup_token("ci@example.com");
    let blob = json!({"accessToken": token, "expiresAt": now_ms() + 300 * 86_400_000});
    env.cmd(&["add", "ci", "--from", "stdin"])
        .stdin(blob.to_string())
        .ok();
    env.cmd(&["usage", "ci"])
        .ok()
        .stdout_is("ci: usage unavailable for setup tokens\n");

    provider.set_limits_of("ci@example.com", Limits::at(0.9, 0.25));
    let proxy = slot_proxy(&env, &provider, "ci");
    assert_eq!(one_message(&proxy), 200);
    wait_until(10, "the proxy's reading in the catalog", || {
        env.catalog()["slots"][0]["usage"]["source"] == "proxy"
    });
    env.cmd(&["usage", "ci"])
        .ok()
        .stdout_has("5-hour")
        .stdout_has("90%")
        .stdout_has("(seen by the proxy")
        .stdout_has("usage unavailable for setup tokens")
        .hides(&token);
    let json = env.cmd(&["usage", "ci", "--format", "json"]).ok().json();
    assert_eq!(json[0]["status"], "unavailable");
    assert_eq!(json[0]["seen_by_proxy"]["windows"][1]["percent"], 25.0);
    assert!(!proxy.log().contains(&token));
}

#[test]
fn a_codex_slot_proxy_reads_the_codex_quota_headers() {
    use crate::support::openai::{CodexQuota, FakeOpenAi};
    let openai = FakeOpenAi::start();
    let mut env = Env::new();
    env.set_all(openai.env());
    env.set("TOKENKEEPER_USAGE_MAX_AGE", "1h");
    let login = openai.issue("dev@example.com", "plus");
    env.cmd(&["add", "dev", "--agent", "codex", "--from", "stdin"])
        .stdin(login.auth_json())
        .ok();
    openai.set_quota_of(
        "dev@example.com",
        CodexQuota {
            primary: 33.0,
            secondary: 12.5,
            reset_s: 3600,
            reached: false,
        },
    );
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
    let status = block_on(async {
        http()
            .post(proxy.url("/backend-api/codex/responses"))
            .bearer_auth("phantom-for-codex")
            .body(r#"{"model":"gpt-5-codex","input":[]}"#)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(status, 200);
    let usage = || {
        env.cmd(&["list", "--agent", "codex", "--format", "json"])
            .ok()
            .json()[0]["usage"]
            .clone()
    };
    wait_until(10, "the proxy's reading in the catalog", || {
        usage()["source"] == "proxy"
    });
    let usage = usage();
    assert_eq!(usage["windows"][0]["id"], "five_hour");
    assert_eq!(usage["windows"][0]["percent"], 33.0);
    assert_eq!(usage["windows"][1]["id"], "seven_day");
    assert_eq!(usage["windows"][1]["percent"], 12.5);
    assert!(!proxy.log().contains(&login.access));
}

/// One Messages request through `proxy` in conversation `session`: (status, headers).
fn message_in(proxy: &Server, session: &str) -> (u16, reqwest::header::HeaderMap) {
    block_on(async {
        let response = http()
            .post(proxy.url("/v1/messages"))
            .bearer_auth("phantom")
            .header("x-claude-code-session-id", session)
            .body(r#"{"model":"claude-fake","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}"#)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.headers().clone())
    })
}

fn metric_of(proxy: &Server, name: &str, slot: &str) -> u64 {
    let text = block_on(async {
        http()
            .get(proxy.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let prefix = format!("tokenkeeper_proxy_{name}_total{{slot=\"{slot}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |n| n.trim().parse().unwrap())
}

#[test]
fn a_pool_sends_a_request_again_on_another_slot_when_one_reaches_its_limit() {
    let provider = FakeProvider::start();
    let (env, logins) = pool_of(&provider, &["a", "b"]);
    // By the last readings a has the most left, so the pool starts on it.
    provider.set_usage_of("a@example.com", usage_at(5.0, 5.0, 3600));
    provider.set_usage_of("b@example.com", usage_at(50.0, 10.0, 3600));
    env.cmd(&["list"]).ok();
    let proxy = env
        .cmd(&[
            "proxy",
            "--pool",
            "a,b",
            "--listen",
            "127.0.0.1:0",
            "--format",
            "json",
        ])
        .env("TARGET", &provider.url)
        .env("TOKENKEEPER_CLIENT_TOKEN", "phantom")
        .serve();
    assert_eq!(message_in(&proxy, "s1").0, 200);
    assert_eq!(provider.messages_calls(), 1);
    assert_eq!(metric_of(&proxy, "pool_requests", "a"), 1);

    // a reaches its limit: the next request of the conversation is answered 429 on a, sent
    // again on b, and the client sees one 200.
    let mut spent = Limits::at(1.0, 0.3);
    spent.rejected = true;
    provider.set_limits_of("a@example.com", spent);
    provider.set_limits_of("b@example.com", Limits::at(0.2, 0.1));
    let (status, headers) = message_in(&proxy, "s1");
    assert_eq!(status, 200);
    assert_eq!(headers["anthropic-ratelimit-unified-5h-utilization"], "0.2");
    assert_eq!(provider.messages_calls(), 3);
    assert_eq!(metric_of(&proxy, "pool_cooldowns", "a"), 1);
    assert_eq!(metric_of(&proxy, "pool_failovers", "a"), 1);
    assert_eq!(metric_of(&proxy, "pool_requests", "b"), 1);
    // a stays cooled down until its reset: a new conversation goes straight to b.
    assert_eq!(message_in(&proxy, "s2").0, 200);
    assert_eq!(provider.messages_calls(), 4);
    assert_eq!(metric_of(&proxy, "pool_requests", "a"), 2);

    // A burst (429 without the account's limit reached) is the client's to wait out.
    provider.fail_next(1, crate::support::provider::Failure::Status(429));
    assert_eq!(message_in(&proxy, "s2").0, 429);
    assert_eq!(provider.messages_calls(), 5);
    assert_eq!(metric_of(&proxy, "pool_failovers", "b"), 0);

    // Every slot limited: the client gets the provider's own 429 with its reset.
    let mut b_spent = Limits::at(0.4, 1.0);
    b_spent.rejected = true;
    provider.set_limits_of("b@example.com", b_spent);
    let (status, headers) = message_in(&proxy, "s2");
    assert_eq!(status, 429);
    assert_eq!(headers["anthropic-ratelimit-unified-status"], "rejected");
    assert!(headers.get("x-tokenkeeper-error").is_none());
    assert_eq!(
        provider.messages_calls(),
        6,
        "a cooled slot is not asked again"
    );

    let log = proxy.log();
    assert!(log.contains("slot=a "), "{log}");
    assert!(log.contains("slot=b "), "{log}");
    for login in &logins {
        assert!(!log.contains(&login.access));
        assert!(!log.contains(&login.refresh));
    }
}

#[test]
fn a_real_claude_code_under_exec_pool_finishes_a_prompt_while_one_slot_is_limited() {
    let claude = std::env::var("TOKENKEEPER_TEST_CLAUDE")
        .expect("TOKENKEEPER_TEST_CLAUDE names a real `claude`: run the suite with scripts/test");
    let provider = FakeProvider::start();
    let (env, logins) = pool_of(&provider, &["a", "b"]);
    provider.set_usage_of("a@example.com", usage_at(5.0, 5.0, 3600));
    provider.set_usage_of("b@example.com", usage_at(50.0, 10.0, 3600));
    env.cmd(&["list"]).ok();
    let mut spent = Limits::at(1.0, 0.3);
    spent.rejected = true;
    provider.set_limits_of("a@example.com", spent);
    provider.set_limits_of("b@example.com", Limits::at(0.2, 0.1));
    let out = env
        .cmd(&[
            "exec",
            "--pool",
            "a,b",
            "--no-probe",
            "--",
            &claude,
            "-p",
            "say hello",
        ])
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .run();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("hello from the fake provider"),
        "{}",
        out.stdout
    );
    // Asked on a (limited), then on b.
    assert_eq!(provider.messages_calls(), 2);
    for login in &logins {
        out.hides(&login.access).hides(&login.refresh);
    }
    // a was asked and found limited; the prompt went through on b.
    let (headers, _) = provider.last_messages_request().unwrap();
    let sent = headers
        .iter()
        .find(|(name, _)| name == "authorization")
        .map(|(_, value)| value.clone())
        .unwrap();
    assert_eq!(sent, format!("Bearer {}", logins[1].access));
}

#[test]
fn a_codex_pool_moves_a_turn_to_another_account_when_one_reaches_its_usage_limit() {
    use crate::support::openai::{CodexQuota, FakeOpenAi};
    let openai = FakeOpenAi::start();
    let mut env = Env::new();
    env.set_all(openai.env());
    let mut logins = Vec::new();
    for name in ["one", "two"] {
        let login = openai.issue(&format!("{name}@example.com"), "plus");
        env.cmd(&["add", name, "--agent", "codex", "--from", "stdin"])
            .stdin(login.auth_json())
            .ok();
        logins.push(login);
    }
    let quota = |primary: f64, reached: bool| CodexQuota {
        primary,
        secondary: 10.0,
        reset_s: 1800,
        reached,
    };
    openai.set_quota_of("one@example.com", quota(100.0, true));
    openai.set_quota_of("two@example.com", quota(20.0, false));
    let proxy = env
        .cmd(&[
            "proxy",
            "--agent",
            "codex",
            "--pool",
            "all",
            "--strategy",
            "next",
            "--listen",
            "127.0.0.1:0",
            "--format",
            "json",
        ])
        .env("TOKENKEEPER_CLIENT_TOKEN", "phantom-for-codex")
        .serve();
    let turn = || {
        block_on(async {
            http()
                .post(proxy.url("/backend-api/codex/responses"))
                .bearer_auth("phantom-for-codex")
                // Codex's own account header names the phantom login: the pool's slot wins.
                .header("chatgpt-account-id", "acct-phantom")
                .header("session_id", "conversation-1")
                .body(r#"{"model":"gpt-5-codex","input":[]}"#)
                .send()
                .await
                .unwrap()
        })
    };
    let answer = turn();
    assert_eq!(answer.status().as_u16(), 200);
    let body = block_on(answer.text()).unwrap();
    assert!(body.contains("HELLO-FROM-FAKE-OPENAI"), "{body}");
    // Asked of one (limit reached), then of two, each with its own token and account.
    let turns = openai.turns();
    assert_eq!(turns.len(), 2);
    assert_eq!(turns[0].0, format!("Bearer {}", logins[0].access));
    assert_eq!(turns[0].1.as_deref(), Some(logins[0].account_id.as_str()));
    assert_eq!(turns[1].0, format!("Bearer {}", logins[1].access));
    assert_eq!(turns[1].1.as_deref(), Some(logins[1].account_id.as_str()));
    // The conversation stays on two; one is not asked again while it cools down.
    assert_eq!(turn().status().as_u16(), 200);
    assert_eq!(openai.turns().len(), 3);
    let log = proxy.log();
    for login in &logins {
        assert!(!log.contains(&login.access) && !log.contains(&login.refresh));
    }
}

#[test]
fn use_best_and_next_choose_among_codex_accounts_too() {
    use crate::support::openai::{CodexQuota, FakeOpenAi};
    let openai = FakeOpenAi::start();
    let mut env = Env::new();
    env.set_all(openai.env());
    env.set("TOKENKEEPER_USAGE_MAX_AGE", "0s");
    let mut logins = Vec::new();
    for name in ["one", "two"] {
        let login = openai.issue(&format!("{name}@example.com"), "plus");
        env.cmd(&["add", name, "--agent", "codex", "--from", "stdin"])
            .stdin(login.auth_json())
            .ok();
        logins.push(login);
    }
    let quota = |primary: f64, secondary: f64| CodexQuota {
        primary,
        secondary,
        reset_s: 1800,
        reached: primary >= 100.0,
    };
    openai.set_quota_of("one@example.com", quota(90.0, 10.0));
    openai.set_quota_of("two@example.com", quota(20.0, 30.0));
    env.cmd(&["use", "one", "--agent", "codex"]).ok();
    env.cmd(&["use", "--best", "--agent", "codex"])
        .ok()
        .stdout_has("codex now uses slot 'two', 70% left in its tightest window");
    let auth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.home.join(".codex/auth.json")).unwrap())
            .unwrap();
    assert_eq!(auth["tokens"]["access_token"], logins[1].access.as_str());
    // one's 5-hour window is spent: there is no next codex slot with quota left.
    openai.set_quota_of("one@example.com", quota(100.0, 10.0));
    env.cmd(&["use", "--next", "--agent", "codex"])
        .fails(1)
        .stderr_has("no other codex slot has quota left");
}
