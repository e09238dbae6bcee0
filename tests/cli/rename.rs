//! `rename`, and the selectors every slot command takes: `#2`, `2`, a name in any case, an
//! email; an unknown one gets the closest names.

use crate::support::provider::FakeProvider;
use crate::support::*;

#[test]
fn selectors_take_numbers_names_in_any_case_and_emails() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    env.add_login("Work", &provider.issue("work@example.com"));
    env.add_login("home", &provider.issue("jane@example.com"));
    let token_of = |selector: &str| env.cmd(&["get", selector]).ok().stdout;
    let work = token_of("Work");
    assert_eq!(token_of("#1"), work);
    assert_eq!(token_of("1"), work);
    assert_eq!(token_of("work"), work);
    assert_eq!(token_of("WORK@example.com"), work);
    assert_ne!(token_of("jane@example.com"), work);
    env.cmd(&["get", "#3"])
        .fails(1)
        .stderr_has("there is no claude slot #3 (2 slots)");
    env.cmd(&["get", "wrok"])
        .fails(1)
        .stderr_has("no claude slot named 'wrok'; did you mean 'Work'?")
        .stderr_has("hint: the claude slots are: Work, home");
    env.cmd(&["get", "#x"])
        .fails(2)
        .stderr_has("not a slot number");
}

#[test]
fn rename_changes_only_the_name() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let login = provider.issue("jane.doe@example.com");
    env.add_login("jane.doe", &login);
    env.add_login("other", &provider.issue("other@example.com"));
    env.cmd(&["use", "jane.doe"]).ok();
    env.cmd(&["rename", "jane.doe", "personal"])
        .ok()
        .stdout_has("renamed claude slot 'jane.doe' to 'personal'");
    let listed = env
        .cmd(&["list", "--format", "json", "--no-usage"])
        .ok()
        .json();
    assert_eq!(listed[0]["name"], "personal");
    assert_eq!(listed[0]["active"], true);
    env.cmd(&["get", "personal"])
        .ok()
        .stdout_is(&format!("{}\n", login.access));
    env.cmd(&["rename", "personal", "other"])
        .fails(2)
        .stderr_has("a claude slot named 'other' already exists");
    env.cmd(&["rename", "personal", "bad name"])
        .fails(2)
        .stderr_has("invalid slot name");
    let out = env
        .cmd(&["rename", "#2", "second", "--format", "json"])
        .ok();
    assert_eq!(out.json()["to"], "second");
}

#[test]
fn an_automatic_name_that_is_taken_gets_a_suffix() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    env.add_login("jane", &provider.issue("someone@example.com"));
    env.cmd(&["add", "--from", "stdin"])
        .stdin(FakeProvider::blob(&provider.issue("jane@example.com")))
        .ok()
        .stdout_has("added claude slot 'jane-2'");
}
