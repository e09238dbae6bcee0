use crate::support::*;

fn stored(env: &Env, agent: &str) -> serde_json::Value {
    let path = env
        .data_dir()
        .join(format!("store/{agent}-token/agent-loop"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn date_in_days(days: i64) -> String {
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * days);
    at.strftime("%Y-%m-%d").to_string()
}

#[test]
fn bare_token_is_wrapped_with_a_year_of_expiry() {
    let env = Env::new();
    let token = access("setup");
    env.cmd(&["store-token"])
        .stdin(format!("{token}\n"))
        .ok()
        .stdout_is(&format!(
            "tokenkeeper: token stored for agent claude (expires {})\n",
            date_in_days(365)
        ));
    let json = stored(&env, "claude");
    assert_eq!(json["accessToken"], token);
    let expires = json["expiresAt"].as_i64().unwrap();
    let want = now_ms() + 365 * 86_400_000;
    assert!(
        (want - 60_000..=want).contains(&expires),
        "{expires} vs {want}"
    );
    assert_eq!(json.as_object().unwrap().len(), 2);
}

#[test]
fn json_input_is_kept_with_its_expiry() {
    let env = Env::new();
    let input = format!(
        r#"{{"accessToken":"{}","expiresAt":1805000000000,"extra":"kept"}}"#,
        access("j")
    );
    env.cmd(&["store-token"])
        .stdin(&input)
        .ok()
        .stdout_has("(expires 2027-03-14)");
    let path = env.data_dir().join("store/claude-token/agent-loop");
    assert_eq!(std::fs::read_to_string(path).unwrap(), input);
}

#[test]
fn json_without_expiry_gets_one_added() {
    let env = Env::new();
    env.cmd(&["store-token"])
        .stdin(format!(r#"{{"accessToken":"{}"}}"#, access("j")))
        .ok();
    assert!(stored(&env, "claude")["expiresAt"].as_i64().unwrap() > now_ms() + 364 * 86_400_000);
}

#[test]
fn check_token_valid_expired_missing() {
    let env = Env::new();
    env.cmd(&["check-token"])
        .run()
        .code(1)
        .stderr_has("tokenkeeper: no token found for agent claude — run: claude setup-token | tokenkeeper store-token");
    env.cmd(&["store-token"]).stdin(access("c")).ok();
    env.cmd(&["check-token"]).ok().stdout_is(&format!(
        "tokenkeeper: token valid for agent claude (expires {}, 364 days remaining)\n",
        date_in_days(365)
    ));
    env.cmd(&["store-token"])
        .stdin(format!(
            r#"{{"accessToken":"{}","expiresAt":1700000000000}}"#,
            access("c")
        ))
        .ok();
    env.cmd(&["check-token"])
        .run()
        .code(1)
        .stderr_has("tokenkeeper: token expired for agent claude (expired 2023-11-14)");
    let json = env
        .cmd(&["check-token", "--format", "json"])
        .run()
        .code(1)
        .json();
    assert_eq!(json["status"], "expired");
}

#[test]
fn get_token_prints_the_bare_token_or_fails_on_stderr() {
    let env = Env::new();
    env.cmd(&["get-token"])
        .fails(1)
        .stdout_is("")
        .stderr_has("no token found for agent claude");
    env.cmd(&["store-token"]).stdin(access("g")).ok();
    let out = env.cmd(&["get-token"]).ok();
    out.stdout_is(&format!("{}\n", access("g")));
    assert_eq!(out.stderr, "");
    env.cmd(&["store-token"])
        .stdin(format!(
            r#"{{"accessToken":"{}","expiresAt":1700000000000}}"#,
            access("g")
        ))
        .ok();
    env.cmd(&["get-token"])
        .fails(1)
        .stdout_is("")
        .stderr_has("token expired for agent claude")
        .hides(&access("g"));
}

#[test]
fn each_agent_has_its_own_token() {
    let env = Env::new();
    env.cmd(&["store-token", "--agent", "codex"])
        .stdin(access("codex"))
        .ok()
        .stdout_has("for agent codex");
    env.cmd(&["get-token"]).fails(1);
    env.cmd(&["get-token", "--agent", "codex"])
        .ok()
        .stdout_is(&format!("{}\n", access("codex")));
    env.cmd(&["check-token", "--agent", "other"])
        .run()
        .code(1)
        .stderr_has("tokenkeeper store-token --agent other");
    env.cmd(&["store-token", "--agent", "../etc"])
        .stdin(access("x"))
        .fails(2)
        .stderr_has("invalid agent name");
}

#[test]
fn issue14_agent_goes_before_or_after_the_command_and_short_tokens_are_stored() {
    let env = Env::new();
    env.cmd(&["--agent", "codex", "check-token"])
        .fails(1)
        .stderr_has("no token found for agent codex");
    env.cmd(&["--agent", "codex", "store-token"])
        .stdin("litellm-1")
        .ok();
    env.cmd(&["check-token", "--agent", "codex"]).ok();
    env.cmd(&["--agent=codex", "get-token"])
        .ok()
        .stdout_is("litellm-1\n");
    // Only what cannot be a credential is refused.
    env.cmd(&["store-token"])
        .stdin("bell\u{7}inside")
        .fails(1)
        .stderr_has("does not look like a token");
}

#[test]
fn issue14_ralph_tokens_are_ordinary_slots_in_list_doctor_migrate_and_remove() {
    let env = Env::new();
    env.cmd(&["store-token"]).stdin(access("ralph")).ok();
    env.cmd(&["store-token", "--agent", "codex"])
        .stdin(access("codex"))
        .ok();
    let listed = env
        .cmd(&["list", "--format", "json", "--no-usage"])
        .ok()
        .json();
    let names: Vec<(&str, &str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap(),
                s["agent"].as_str().unwrap(),
                s["kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![
            ("claude-token", "claude", "long-lived"),
            ("codex-token", "codex", "long-lived")
        ]
    );
    env.cmd(&["list", "--no-usage"]).ok().stdout_has("AGENT");
    let doctor = env.cmd(&["doctor", "--format", "json"]).ok().json();
    assert_eq!(doctor["backends"][0]["slots"], 2);
    // Stored again: the same slot, the new token; the spec's messages are unchanged.
    env.cmd(&["store-token"]).stdin(access("ralph2")).ok();
    env.cmd(&["get-token"])
        .ok()
        .stdout_is(&format!("{}\n", access("ralph2")));
    assert_eq!(env.slot_count(), 2);
    // A token stored before the catalog knew of it is found and recorded.
    let legacy = env.data_dir().join("store/gemini-token");
    std::fs::create_dir_all(&legacy).unwrap();
    std::fs::set_permissions(&legacy, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let blob = format!(
        r#"{{"accessToken":"{}","expiresAt":{}}}"#,
        access("gem"),
        now_ms() + 86_400_000
    );
    std::fs::write(legacy.join("agent-loop"), blob).unwrap();
    std::fs::set_permissions(
        legacy.join("agent-loop"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    env.cmd(&["check-token", "--agent", "gemini"])
        .ok()
        .stdout_has("token valid for agent gemini");
    env.cmd(&["list", "--no-usage"])
        .ok()
        .stdout_has("gemini-token");
    // Removed like any slot: the ralph command then finds none.
    env.cmd(&["remove", "claude-token"]).ok();
    env.cmd(&["check-token"])
        .fails(1)
        .stderr_has("no token found for agent claude");
}
