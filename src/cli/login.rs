//! `tokenkeeper login [NAME] [--email E] [--console]`: logs in to another account through
//! Claude Code itself, in a private config directory, so the account Claude Code uses now stays
//! logged in; then keeps the new login as a slot and removes every trace of it there.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use super::AgentArg;
use super::output::{self, Format};
use crate::agent::Live;
use crate::agent::claude;
use crate::error::{Error, Result};
use crate::keeper::{Added, Keeper};
use crate::paths::Paths;
use crate::perms;

/// The Claude Code program to run (`claude` on PATH by default).
pub use crate::agent::claude::ENV_CLAUDE_BIN;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Runs `claude auth login` with CLAUDE_CONFIG_DIR pointing at a private, empty directory: the
browser sign-in happens as usual, the account Claude Code uses now is not logged out, and no
token is shown, passed in arguments or left behind — the new credential goes straight into a
slot and the directory is deleted.

Examples:
  tokenkeeper login                         a second account; the slot is named after its email
  tokenkeeper login work --email me@work.example
  tokenkeeper login api --console           an Anthropic Console account")]
pub struct Args {
    /// Name for the new slot [default: from the account's email].
    pub name: Option<String>,

    /// Pre-fill the sign-in with this email.
    #[arg(long, value_name = "EMAIL")]
    pub email: Option<String>,

    /// Sign in with an Anthropic Console account instead of Claude.ai.
    #[arg(long)]
    pub console: bool,

    /// Sign in through single sign-on.
    #[arg(long)]
    pub sso: bool,

    #[command(flatten)]
    pub agent: AgentArg,
}

pub fn run(args: Args, paths: &Paths, format: Format) -> Result<u8> {
    let agent = args.agent.agent;
    perms::ensure_private_dir(&paths.data_dir)?;
    // Private (0700), in tokenkeeper's own directory, deleted when this returns.
    let dir = tempfile::Builder::new()
        .prefix(".login-")
        .tempdir_in(&paths.data_dir)
        .map_err(|err| Error::io("cannot create a directory in", &paths.data_dir, err))?;
    let program = std::env::var_os(ENV_CLAUDE_BIN).unwrap_or_else(|| "claude".into());
    let mut command = Command::new(&program);
    command.args(["auth", "login"]);
    command.arg(if args.console {
        "--console"
    } else {
        "--claudeai"
    });
    if let Some(email) = &args.email {
        command.args(["--email", email]);
    }
    if args.sso {
        command.arg("--sso");
    }
    command
        .env(claude::ENV_CONFIG_DIR, dir.path())
        .env_remove(claude::ENV_SECURE_STORAGE_DIR);
    let live = claude::live_for_config_dir(dir.path())?;
    let cleanup = |live: &Live| {
        // The login's own copy of the credential goes with the directory (or its Keychain item).
        if let Live::Keychain { .. } = live {
            let _ = live.remove();
        }
    };
    let status = command.status().map_err(|err| {
        Error::failure(format!(
            "cannot run {}: {err}",
            PathBuf::from(&program).display()
        ))
        .with_hint(format!(
            "install Claude Code (npm install -g @anthropic-ai/claude-code), or point {ENV_CLAUDE_BIN} at it"
        ))
    })?;
    if !status.success() {
        cleanup(&live);
        return Err(Error::failure(format!(
            "`claude auth login` did not log in ({status})"
        )));
    }
    let result = keep(&live, dir.path(), agent, args.name.as_deref(), paths);
    cleanup(&live);
    let (outcome, name) = result?;
    if format == Format::Json {
        output::json(&serde_json::json!({
            "slot": name,
            "added": outcome == Added::New,
        }))?;
    } else {
        let verb = if outcome == Added::New {
            "added"
        } else {
            "updated"
        };
        output::line(&format!(
            "{verb} {agent} slot '{name}'; Claude Code still uses the account it used before (switch with: tokenkeeper use {name})"
        ))?;
    }
    Ok(0)
}

/// Takes the login Claude Code left in `dir` into a slot; the slot's name.
fn keep(
    live: &Live,
    dir: &std::path::Path,
    agent: crate::agent::Agent,
    name: Option<&str>,
    paths: &Paths,
) -> Result<(Added, String)> {
    let current = live.read()?.ok_or_else(|| {
        Error::failure("`claude auth login` finished but left no credential").with_hint(
            "try again; if it keeps happening, log in with `claude` and run: tokenkeeper add",
        )
    })?;
    let credential = current.parsed?;
    let record: Option<Value> = std::fs::read(dir.join(".claude.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .and_then(|doc| doc.get("oauthAccount").cloned())
        .filter(Value::is_object);
    let account = record.as_ref().and_then(claude::LoginAccount::from_record);
    let mut keeper = Keeper::open(paths.clone())?;
    let (outcome, id) = keeper.add(agent, name, &credential, account.as_ref(), None, false)?;
    if let Some(record) = record {
        keeper.set_login_record(&id, record)?;
    }
    output::flush_notices(&mut keeper);
    let name = keeper
        .catalog()
        .get(&id)
        .map(|s| s.name.clone())
        .unwrap_or_default();
    Ok((outcome, name))
}
