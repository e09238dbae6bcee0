//! `github-sync`: a slot's token sealed to a repository's key and PUT as Actions secrets, against
//! a fake GitHub that opens what it receives — and libsodium (PyNaCl) opening it too.

use std::io::Write;
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::json;

use crate::support::github::{FakeGitHub, GITHUB_TOKEN};
use crate::support::provider::FakeProvider;
use crate::support::*;

fn github_env(provider: &FakeProvider, github: &FakeGitHub) -> Env {
    let mut env = Env::with_provider(provider);
    env.set("GITHUB_API_URL", &github.url)
        .set("GH_TOKEN", GITHUB_TOKEN);
    env
}

/// Opens a sealed box with libsodium, through PyNaCl: keys and box go on stdin.
fn open_with_libsodium(secret_key: [u8; 32], sealed: &str) -> String {
    let script = "import sys, json, base64\n\
        from nacl.public import PrivateKey, SealedBox\n\
        d = json.load(sys.stdin)\n\
        box = SealedBox(PrivateKey(base64.b64decode(d['sk'])))\n\
        sys.stdout.write(box.decrypt(base64.b64decode(d['sealed'])).decode())\n";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = json!({"sk": BASE64.encode(secret_key), "sealed": sealed});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "PyNaCl could not open the box (install it: pip install pynacl): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_setup_token_becomes_one_sealed_secret_that_github_and_libsodium_open() {
    let provider = FakeProvider::start();
    let github = FakeGitHub::start(&["octo/agent"]);
    let env = github_env(&provider, &github);
    let token = provider.issue_setup_token("ci@example.com");
    env.cmd(&["add", "ci", "--from", "stdin"])
        .stdin(&token)
        .ok();

    // At the most verbose log level: neither token appears.
    env.cmd(&["github-sync", "ci", "--repo", "octo/agent", "-vv"])
        .ok()
        .stdout_is("created secret CLAUDE_CODE_OAUTH_TOKEN on octo/agent\n")
        .hides(&token)
        .hides(GITHUB_TOKEN);
    let secrets = github.secrets("octo/agent");
    assert_eq!(secrets.len(), 1);
    let secret = &secrets["CLAUDE_CODE_OAUTH_TOKEN"];
    assert_eq!(secret.plaintext, token);
    assert_eq!(
        open_with_libsodium(github.secret_key("octo/agent"), &secret.sealed),
        token
    );
    // Nothing secret in a URL or a header other than GitHub's own authorization.
    assert!(github.requests().iter().all(|r| !r.contains("sk-ant")));
    assert!(!github.headers_seen().contains("sk-ant"));

    // Again: updated, and sealed anew (a fresh ephemeral key each time).
    env.cmd(&[
        "github-sync",
        "ci",
        "--repo",
        "octo/agent",
        "--format",
        "json",
    ])
    .ok()
    .stdout_has("\"action\": \"updated\"");
    assert_ne!(
        github.secrets("octo/agent")["CLAUDE_CODE_OAUTH_TOKEN"].sealed,
        secret.sealed
    );

    // An environment's secrets, under another name; a dry run sets nothing.
    let before = github.requests().len();
    env.cmd(&[
        "github-sync",
        "ci",
        "--repo",
        "octo/agent",
        "--env",
        "production",
        "--dry-run",
        "--name",
        "CLAUDE_CODE_OAUTH_TOKEN=CLAUDE_TOKEN",
    ])
    .ok()
    .stdout_is("would set secret CLAUDE_TOKEN on octo/agent (environment production)\n");
    assert_eq!(github.requests().len(), before + 1, "only the key was read");
    assert!(github.secrets("octo/agent/env/production").is_empty());
    env.cmd(&[
        "github-sync",
        "ci",
        "--repo",
        "octo/agent",
        "--env",
        "production",
        "--name",
        "CLAUDE_CODE_OAUTH_TOKEN=CLAUDE_TOKEN",
    ])
    .ok();
    assert_eq!(
        github.secrets("octo/agent/env/production")["CLAUDE_TOKEN"].plaintext,
        token
    );
}

#[test]
fn an_oauth_slot_is_refused_unless_its_lineage_is_handed_to_ci_for_good() {
    let provider = FakeProvider::start();
    let github = FakeGitHub::start(&["octo/agent"]);
    let env = github_env(&provider, &github);
    let login = provider.issue("work@example.com");
    env.add_login("work", &login);

    env.cmd(&["github-sync", "work", "--repo", "octo/agent"])
        .fails(1)
        .stderr_has("holds a refresh token, which is single-use")
        .stderr_has("hint: give CI a long-lived token of its own: tokenkeeper setup ci")
        .hides(&login.refresh);
    assert!(github.requests().is_empty(), "nothing was sent");

    env.cmd(&[
        "github-sync",
        "work",
        "--repo",
        "octo/agent",
        "--share-lineage",
    ])
    .ok()
    .stdout_has("created secret CLAUDE_ACCESS_TOKEN")
    .stdout_has("created secret CLAUDE_REFRESH_TOKEN")
    .stdout_has("created secret CLAUDE_EXPIRES_AT")
    .stdout_has("handed over to CI: it is no longer refreshed here")
    .hides(&login.refresh)
    .hides(&login.access);
    let secrets = github.secrets("octo/agent");
    assert_eq!(secrets["CLAUDE_ACCESS_TOKEN"].plaintext, login.access);
    assert_eq!(secrets["CLAUDE_REFRESH_TOKEN"].plaintext, login.refresh);
    assert_eq!(
        secrets["CLAUDE_EXPIRES_AT"].plaintext,
        login.expires_at_ms.to_string()
    );
    // This machine no longer spends the refresh token CI now holds.
    env.cmd(&["refresh", "work", "--force"])
        .fails(1)
        .stderr_has("handed over");
    assert!(provider.is_current(&login.refresh));

    // The slot Claude Code uses here refreshes itself: it cannot be handed over.
    let live = provider.issue("live@example.com");
    env.write_live(&FakeProvider::blob(&live));
    env.cmd(&["add", "live"]).ok();
    env.cmd(&[
        "github-sync",
        "live",
        "--repo",
        "octo/agent",
        "--share-lineage",
    ])
    .fails(1)
    .stderr_has("is the one Claude Code uses here");
}

#[test]
fn github_access_comes_from_the_environment_or_gh_and_failures_are_one_clear_line() {
    let provider = FakeProvider::start();
    let github = FakeGitHub::start(&["octo/agent"]);
    let mut env = github_env(&provider, &github);
    let token = provider.issue_setup_token("ci@example.com");
    env.cmd(&["add", "ci", "--from", "stdin"])
        .stdin(&token)
        .ok();

    // No GH_TOKEN: `gh auth token` is asked (a fake gh here), and its answer used.
    env.unset("GH_TOKEN");
    let bin = env.root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let gh = bin.join("gh");
    std::fs::write(
        &gh,
        format!(
            "#!/bin/sh\necho \"$@\" >> {0}/gh.argv\nprintf '%s\\n' '{GITHUB_TOKEN}'\n",
            env.root.display()
        ),
    )
    .unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&gh).unwrap().permissions(),
        0o755,
    );
    std::fs::set_permissions(&gh, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/bin:/bin", bin.display());
    env.cmd(&["github-sync", "ci", "--repo", "octo/agent"])
        .env("PATH", &path)
        .ok();
    let argv = std::fs::read_to_string(env.root.join("gh.argv")).unwrap();
    // GITHUB_API_URL names another host than api.github.com (GitHub Enterprise, as gh sees it).
    assert_eq!(argv.trim(), "auth token --hostname 127.0.0.1");
    assert_eq!(
        github.secrets("octo/agent")["CLAUDE_CODE_OAUTH_TOKEN"].plaintext,
        token
    );

    // No token anywhere.
    env.cmd(&["github-sync", "ci", "--repo", "octo/agent"])
        .env("PATH", "/usr/bin:/bin")
        .fails(1)
        .stderr_has("no GitHub token")
        .stderr_has("hint: log in with `gh auth login`, or set GH_TOKEN");
    // A token GitHub refuses; a repository it does not show; a GitHub that is not there.
    env.set("GH_TOKEN", "ghp_wrong");
    env.cmd(&["github-sync", "ci", "--repo", "octo/agent"])
        .fails(1)
        .stderr_has("GitHub refused the token (HTTP 401)");
    env.set("GH_TOKEN", GITHUB_TOKEN);
    env.cmd(&["github-sync", "ci", "--repo", "octo/nope"])
        .fails(1)
        .stderr_has("GitHub does not show octo/nope to this token (HTTP 404)");
    env.cmd(&[
        "github-sync",
        "ci",
        "--repo",
        "octo/agent",
        "--env",
        "staging",
    ])
    .fails(1)
    .stderr_has("octo/agent (environment staging)");
    env.cmd(&["github-sync", "ci", "--repo", "octo/agent"])
        .env("GITHUB_API_URL", "http://127.0.0.1:9")
        .fails(1)
        .stderr_has("GitHub at http://127.0.0.1:9 cannot be reached")
        .hides(&token);
    // Bad arguments are usage errors.
    env.cmd(&["github-sync", "ci", "--repo", "octo"])
        .fails(2)
        .stderr_has("expected OWNER/REPO");
    env.cmd(&[
        "github-sync",
        "ci",
        "--repo",
        "octo/agent",
        "--name",
        "CLAUDE_CODE_OAUTH_TOKEN=GITHUB_X",
    ])
    .fails(2)
    .stderr_has("not a GitHub secret name");
    env.cmd(&[
        "github-sync",
        "ci",
        "--repo",
        "octo/agent",
        "--name",
        "CLAUDE_REFRESH_TOKEN=X",
    ])
    .fails(2)
    .stderr_has("has no secret CLAUDE_REFRESH_TOKEN");
}
