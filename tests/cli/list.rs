use crate::support::*;

#[test]
fn empty_list_says_how_to_start() {
    let env = Env::new();
    env.cmd(&["list"])
        .ok()
        .stdout_is("no slots yet\n")
        .stderr_has("tokenkeeper add");
    assert_eq!(
        env.cmd(&["list", "--format", "json"]).ok().json(),
        serde_json::json!([])
    );
}

#[test]
fn table_shows_marker_number_email_plan_and_relative_expiry() {
    let env = Env::new();
    env.write_live(&claude_blob(
        &access("a"),
        &refresh("a"),
        now_ms() + 6 * 3_600_000 + 12 * 60_000 + 30_000,
    ));
    env.write_login_record("u-a", "alice@example.com");
    env.cmd(&["add"]).ok();
    env.cmd(&["add", "old", "--from", "stdin"])
        .stdin(claude_blob(
            &access("o"),
            &refresh("o"),
            now_ms() - 2 * 86_400_000 - 60_000,
        ))
        .ok();
    let out = env.cmd(&["list"]).ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    assert!(lines[0].contains("NAME") && lines[0].contains("EXPIRES"));
    assert!(
        lines[1].trim_start().starts_with("*  #1  alice"),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].contains("alice@example.com")
            && lines[1].contains("max")
            && lines[1].contains("(in 6h 12m)"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains("#2  old") && lines[2].contains("(expired 2d ago)"),
        "{}",
        lines[2]
    );
}

#[test]
fn json_has_numbers_and_rfc3339_times() {
    let env = Env::new();
    let expires = now_ms() + 3_600_000;
    env.cmd(&["add", "one", "--from", "stdin"])
        .stdin(claude_blob(&access("1"), &refresh("1"), expires))
        .ok();
    let list = env.cmd(&["list", "--format", "json"]).ok().json();
    let slot = &list[0];
    assert_eq!(slot["index"], 1);
    assert!(slot["expires_in_seconds"].is_i64());
    assert_eq!(slot["expired"], false);
    let at = slot["expires_at"].as_str().unwrap();
    let parsed: jiff::Timestamp = at.parse().unwrap();
    assert_eq!(parsed.as_second(), expires / 1000);
    assert!(
        slot["created_at"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok()
    );
}

#[test]
fn slots_are_addressed_by_number() {
    let env = Env::new();
    env.cmd(&["add", "one", "--from", "stdin"])
        .stdin(fresh_blob("1"))
        .ok();
    env.cmd(&["add", "two", "--from", "stdin"])
        .stdin(fresh_blob("2"))
        .ok();
    env.cmd(&["get", "#2"])
        .ok()
        .stdout_is(&format!("{}\n", access("2")));
    env.cmd(&["get", "#3"])
        .fails(1)
        .stderr_has("no claude slot #3");
    env.cmd(&["get", "#x"]).fails(2);
}

#[test]
fn issue14_list_fits_the_terminal_and_colours_only_when_asked() {
    use crate::support::provider::FakeProvider;
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    provider.set_usage(serde_json::json!({
        "five_hour": {"utilization": 96.0, "resets_at": null},
        "seven_day": {"utilization": 81.0, "resets_at": null}
    }));
    env.add_login(
        "a-rather-long-slot-name",
        &provider.issue("someone.with.a.very.long.address@example-company.com"),
    );
    env.cmd(&["use", "a-rather-long-slot-name"]).ok();
    env.cmd(&["usage", "--all"]).ok();

    // Wide: everything, no AGENT column with one agent, no colour off a terminal.
    let wide = env.cmd(&["list"]).env("COLUMNS", "250").ok();
    wide.stdout_has("KIND")
        .stdout_has("PLAN")
        .stdout_has("example-company.com");
    assert!(!wide.stdout.contains("AGENT"));
    assert!(!wide.stdout.contains('\u{1b}'), "no colour off a terminal");
    // 80 columns: the stated order gives way until it fits; the name and quota stay.
    let narrow = env.cmd(&["list"]).env("COLUMNS", "80").ok();
    for line in narrow.stdout.lines() {
        assert!(line.chars().count() <= 80, "{line:?}\n{}", narrow.stdout);
    }
    narrow
        .stdout_has("a-rather-long-slot-name")
        .stdout_has("96%");
    assert!(!narrow.stdout.contains("KIND"));
    // Asked for: the active marker, and quota at 95 % red, at 80 % yellow.
    let colored = env
        .cmd(&["list", "--color", "always"])
        .env("COLUMNS", "250")
        .ok();
    colored
        .stdout_has("\u{1b}[31m96%")
        .stdout_has("\u{1b}[33m81%")
        .stdout_has("\u{1b}[1m\u{1b}[32m*");
    let never = env
        .cmd(&["list", "--color", "never"])
        .env("COLUMNS", "250")
        .ok();
    assert!(!never.stdout.contains('\u{1b}'));
}
