use crate::support::*;

#[test]
fn help_and_version_touch_nothing() {
    let mut env = Env::new();
    env.unset("HOME");
    let out = env.cmd(&["--help"]).ok();
    for command in [
        "add",
        "list",
        "use",
        "get",
        "check",
        "export",
        "remove",
        "store-token",
        "check-token",
        "get-token",
        "proxy",
        "exec",
    ] {
        out.stdout_has(&format!("  {command} "));
    }
    out.stdout_has("Examples:");
    env.cmd(&["--version"]).ok().stdout_has("tokenkeeper ");
    env.cmd(&["add", "--help"])
        .ok()
        .stdout_has("--from <SOURCE> [PATH]");
    env.cmd(&["proxy", "--help"])
        .ok()
        .stdout_has("--client-token <TOKEN>")
        .stdout_has("[env: TOKENKEEPER_CLIENT_TOKEN]")
        .stdout_has("[env: LISTEN_PORT=]")
        .stdout_has("echo \"$TOKEN\" | tokenkeeper proxy");
    env.cmd(&["exec", "--help"])
        .ok()
        .stdout_has("tokenkeeper exec -- claude");
    assert!(env.snapshot().is_empty(), "{}", env.listing());
}

#[test]
fn usage_errors_exit_2() {
    let env = Env::new();
    let out = env.cmd(&["frobnicate"]).run().code(2);
    out.stderr_has("unrecognized subcommand");
    env.cmd(&["add", "x", "--from", "elsewhere"])
        .fails(2)
        .stderr_has("unknown source 'elsewhere'");
    env.cmd(&["add", "x", "--from", "file"])
        .fails(2)
        .stderr_has("--from file needs a path");
    env.cmd(&["add", "bad/name", "--from", "stdin"])
        .stdin(fresh_blob("n"))
        .fails(2)
        .stderr_has("invalid slot name");
}
