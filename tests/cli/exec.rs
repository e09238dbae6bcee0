//! `exec`: a command run behind a private proxy, with a phantom token and the real one out of reach.

use std::io::Write;

use crate::support::provider::FakeProvider;
use crate::support::*;

/// A shell script the command under test runs: prints its environment's credentials, then calls
/// the API through whatever `ANTHROPIC_BASE_URL` says, as Claude Code would.
const AGENT: &str = r#"
echo "base=$ANTHROPIC_BASE_URL"
echo "oauth=$CLAUDE_CODE_OAUTH_TOKEN"
echo "api_key=${ANTHROPIC_API_KEY-unset}"
echo "auth_token=${ANTHROPIC_AUTH_TOKEN-unset}"
echo "fd=${CLAUDE_CODE_OAUTH_TOKEN_FILE_DESCRIPTOR-unset}"
env > "$0.env"
echo "with=$(curl -sS --noproxy '*' -X POST "$ANTHROPIC_BASE_URL/v1/messages" \
  -H "authorization: Bearer $CLAUDE_CODE_OAUTH_TOKEN" -d '{}')"
echo "without=$(curl -sS --noproxy '*' -X POST "$ANTHROPIC_BASE_URL/v1/messages" -d '{}')"
"#;

#[test]
fn the_command_reaches_the_api_through_a_private_proxy_and_never_sees_the_real_token() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let login = provider.issue("me@example.com");
    env.add_login("work", &login);
    let out = env
        .cmd(&["exec", "work", "--", "sh", "-c", AGENT])
        .env("ANTHROPIC_API_KEY", "sk-ant-api03-parent")
        .env("ANTHROPIC_AUTH_TOKEN", "parent-auth-token")
        .env("CLAUDE_CODE_OAUTH_TOKEN_FILE_DESCRIPTOR", "3")
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let line = |key: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in {}", out.stdout))
            .to_string()
    };
    assert!(
        line("base").starts_with("http://127.0.0.1:"),
        "{}",
        out.stdout
    );
    assert!(line("oauth").starts_with("tokenkeeper-phantom-"));
    assert_eq!(line("api_key"), "unset");
    assert_eq!(line("auth_token"), "unset");
    assert_eq!(line("fd"), "unset");
    assert!(
        line("with").contains("hello from the fake provider"),
        "{}",
        out.stdout
    );
    assert!(
        line("without").contains("authentication_error"),
        "{}",
        out.stdout
    );
    out.hides(&login.access).hides(&login.refresh);
    // `sh -c SCRIPT` runs with $0 = "sh" in the environment's root: the dump is `sh.env`.
    let dumped = std::fs::read_to_string(env.root.join("sh.env")).unwrap();
    assert!(
        !dumped.contains(&login.access),
        "the real token is in the child's env"
    );
    assert!(!dumped.contains(&login.refresh));
    // The request reached the provider with the real token.
    assert_eq!(provider.messages_calls(), 1);
}

#[test]
fn the_exit_code_is_the_commands() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    env.add_login("work", &provider.issue("me@example.com"));
    env.cmd(&["use", "work"]).ok();
    env.cmd(&["exec", "--", "sh", "-c", "exit 7"]).run().code(7);
    env.cmd(&["exec", "--", "sh", "-c", "kill -KILL $$"])
        .run()
        .code(128 + 9);
    let out = env
        .cmd(&["exec", "--", "no-such-command-here"])
        .run()
        .code(127);
    out.one_line_error()
        .stderr_has("cannot run 'no-such-command-here': command not found");
    env.cmd(&["exec"]).run().code(2).stderr_has("<COMMAND>");
}

#[test]
fn signals_sent_to_tokenkeeper_are_passed_on() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    env.add_login("work", &provider.issue("me@example.com"));
    env.cmd(&["use", "work"]).ok();
    let marker = env.root.join("ready");
    let script = format!(
        "trap 'echo got-term > {0}.term; exit 3' TERM; touch {0}; while :; do sleep 0.05; done",
        marker.display()
    );
    let child = env.cmd(&["exec", "--", "sh", "-c", &script]).spawn_piped();
    wait_until(30, "the command to start", || marker.exists());
    signal(&child, "TERM");
    let out = finish(child, 30);
    assert_eq!(out.status.code(), Some(3));
    let term = std::fs::read_to_string(env.root.join("ready.term")).unwrap();
    assert_eq!(term.trim(), "got-term");
}

#[test]
fn env_puts_the_real_token_in_the_environment_with_a_warning() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let login = provider.issue_expired("me@example.com");
    env.add_login("ci", &login);
    let out = env
        .cmd(&[
            "exec",
            "ci",
            "--env",
            "--",
            "sh",
            "-c",
            "echo \"$CLAUDE_CODE_OAUTH_TOKEN\"; echo \"${ANTHROPIC_BASE_URL-unset}\"",
        ])
        .ok();
    let renewed = env.access_token_of("ci");
    assert_ne!(renewed, login.access, "an expired token is refreshed first");
    out.stdout_is(&format!("{renewed}\nunset\n"));
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    out.stderr_has("warning: the real token of slot 'ci' is in the command's environment");
    assert!(!out.stderr.contains(&renewed));
}

#[test]
fn a_slot_that_cannot_be_used_stops_exec_before_the_command_runs() {
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    let marker = env.root.join("ran");
    let script = format!("touch {}", marker.display());
    env.cmd(&["exec", "--", "sh", "-c", &script])
        .fails(1)
        .stderr_has("no active claude slot");
    assert!(!marker.exists());

    // An expired token that cannot be refreshed (no refresh token) is not handed to the
    // command either: the provider would only refuse it.
    env.add_expired_without_refresh("old");
    env.cmd(&["exec", "old", "--env", "--", "sh", "-c", &script])
        .fails(1)
        .one_line_error()
        .stderr_has("the access token of slot 'old' expired 3h ago")
        .stderr_has("hint: store a new one")
        .hides(&access("old"));
    assert!(!marker.exists());
}

#[test]
fn a_terminal_interrupt_reaches_the_command_once_not_twice() {
    use portable_pty::{CommandBuilder, PtySize, native_pty_system};
    let provider = FakeProvider::start();
    let env = Env::with_provider(&provider);
    env.add_login("work", &provider.issue("me@example.com"));
    let ready = env.root.join("ready");
    let interrupts = env.root.join("interrupts");
    let script = format!(
        "trap 'echo INT >> {0}' INT; touch {1}; while :; do sleep 0.05; done",
        interrupts.display(),
        ready.display()
    );

    // tokenkeeper and the command share the terminal's foreground process group, as when a
    // user runs `tokenkeeper exec -- claude` and presses ^C.
    let pty = native_pty_system()
        .openpty(PtySize {
            rows: 24,
            cols: 80,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    let mut cmd = CommandBuilder::new(BIN);
    cmd.args(["exec", "work", "--", "sh", "-c", &script]);
    cmd.env_clear();
    for (key, value) in env.vars() {
        cmd.env(key, value);
    }
    cmd.cwd(&env.root);
    let mut child = pty.slave.spawn_command(cmd).unwrap();
    drop(pty.slave);
    let mut terminal = pty.master.take_writer().unwrap();
    wait_until(30, "the command to start", || ready.exists());

    terminal.write_all(b"\x03").unwrap();
    terminal.flush().unwrap();
    wait_until(10, "the interrupt", || interrupts.exists());
    // Passing it on would be immediate; give a duplicate every chance to show up.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let seen = std::fs::read_to_string(&interrupts).unwrap();
    assert_eq!(seen, "INT\n", "the command saw: {seen:?}");

    // A signal sent to tokenkeeper itself is passed on: TERM ends the command (143).
    let pid = child.process_id().unwrap();
    let status = std::process::Command::new("sh")
        .args(["-c", "kill -s TERM \"$0\""])
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let status = child.wait().unwrap();
    assert_eq!(status.exit_code(), 143);
}

#[test]
fn issue14_exec_takes_a_target_and_an_auth_mode_like_proxy() {
    let provider = FakeProvider::start();
    // The provider's API address is elsewhere: only --target leads to it.
    let env = Env::new();
    let login = provider.issue("gw@example.com");
    let blob = FakeProvider::blob(&login);
    env.cmd(&["add", "work", "--from", "stdin"])
        .stdin(&blob)
        .ok();
    let call = r#"curl -sS --noproxy '*' -o /dev/null -w '%{http_code}' -X POST "$ANTHROPIC_BASE_URL/v1/messages" -H "authorization: Bearer $CLAUDE_CODE_OAUTH_TOKEN" -d '{}'"#;
    env.cmd(&[
        "exec",
        "work",
        "--target",
        &provider.url,
        "--auth",
        "gateway",
        "--auth-header",
        "cf-aig-authorization",
        "--auth-scheme",
        "Bearer",
        "--",
        "sh",
        "-c",
        call,
    ])
    .ok()
    .hides(&login.access);
    let (headers, _) = provider.last_messages_request().unwrap();
    let sent = headers
        .iter()
        .find(|(k, _)| k == "cf-aig-authorization")
        .map(|(_, v)| v.clone());
    assert_eq!(sent, Some(format!("Bearer {}", login.access)));
    assert!(headers.iter().all(|(k, _)| k != "authorization"));
}
