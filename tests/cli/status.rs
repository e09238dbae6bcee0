//! `status` / `whoami`: the active slot per agent in one line, from the catalog alone.

use crate::support::provider::FakeProvider;
use crate::support::*;

#[test]
fn status_names_the_active_slot_its_account_expiry_and_last_quota_without_the_network() {
    let provider = FakeProvider::start();
    let mut env = Env::with_provider(&provider);
    env.cmd(&["status"])
        .run()
        .code(1)
        .stdout_is("no slots (add one: tokenkeeper add)\n");
    let login = provider.issue("work@example.com");
    env.add_login("work", &login);
    env.cmd(&["status"])
        .run()
        .code(1)
        .stdout_is("claude: no active slot (tokenkeeper use NAME)\n");
    env.cmd(&["use", "work"]).ok();
    env.cmd(&["usage", "work"]).ok();
    // The provider is gone: status needs none of it.
    env.set("TOKENKEEPER_CLAUDE_API_URL", "http://127.0.0.1:9");
    env.set(
        "TOKENKEEPER_CLAUDE_OAUTH_URL",
        "http://127.0.0.1:9/v1/oauth/token",
    );
    let out = env.cmd(&["whoami"]).ok();
    out.stdout_has("claude: work (work@example.com, max), expires in ")
        .stdout_has(", 5-hour 24%, 7-day ")
        .stdout_has("% (read just now)")
        .hides(&login.access);
    assert_eq!(out.stdout.lines().count(), 1);
    let json = env.cmd(&["status", "--format", "json"]).ok().json();
    assert_eq!(json[0]["agent"], "claude");
    assert_eq!(json[0]["active"]["name"], "work");
    assert_eq!(json[0]["active"]["email"], "work@example.com");
    assert!(json[0]["active"]["usage"]["windows"].is_array());
}
