//! `tokenkeeper setup [NAME]`, `rotate NAME` and `revoke NAME`: long-lived tokens from
//! `claude setup-token`, captured in a pseudo-terminal and stored as slots.

use std::ffi::OsString;
use std::io::IsTerminal;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::AgentArg;
use super::output::{self, Format};
use crate::agent::claude::ENV_CLAUDE_BIN;
use crate::agent::credential::{BARE_TOKEN_LIFETIME, Credential, Kind};
use crate::catalog::Slot;
use crate::error::{Error, Result};
use crate::keeper::Keeper;
use crate::paths::Paths;
use crate::probe::{self, Verdict};
use crate::secret::Secret;
use crate::timefmt;

/// Where a Claude subscription's long-lived tokens are listed and revoked.
pub const REVOKE_URL: &str = "https://claude.ai/settings/claude-code";
const SETUP_PREFIX: &str = "sk-ant-oat01-";

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Runs `claude setup-token` in a pseudo-terminal sized like yours: sign in in the browser and
answer its prompts as usual. The token it prints is captured — even wrapped across rows and
coloured — and shown as <redacted>. It is checked with the provider (a token count, which costs
no quota), stored as a long-lived slot valid for a year, read back from the store, and only then
recorded in the catalog. It never appears in arguments, the environment, your shell's history
or on screen.

TOKENKEEPER_CLAUDE_BIN names the claude program when it is not on PATH.

Examples:
  tokenkeeper setup ci                 then: tokenkeeper github-sync ci --repo OWNER/REPO
  tokenkeeper exec ci -- claude -p 'hello'
  tokenkeeper setup ci --backend openbao")]
pub struct SetupArgs {
    /// Slot name [default: `setup`, with a number when taken].
    pub name: Option<String>,

    #[command(flatten)]
    pub agent: AgentArg,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Runs the same flow as `setup` and replaces the slot's token in place. The old token stays
stored until the new one is captured, accepted by the provider, written and read back. Revoke
the old one afterwards at https://claude.ai/settings/claude-code.")]
pub struct RotateArgs {
    /// The long-lived slot whose token to replace (name or #N).
    #[arg(add = super::slot_completer())]
    pub slot: String,

    #[command(flatten)]
    pub agent: AgentArg,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Takes the token out of tokenkeeper: the slot leaves the catalog, Claude Code's live credential
goes if it holds it, and the token leaves the store: its item is overwritten with a `revoked`
marker, so whatever reads the item by name (an op:// reference, a Vault path, ralph's
get-token) learns it was revoked. --delete-item deletes the item instead — with OpenBao or
1Password, whose item history would otherwise keep the old value, that is what removes it for
good.

The token itself stays valid at the provider until you revoke it there:
https://claude.ai/settings/claude-code")]
pub struct RevokeArgs {
    /// The slot to revoke (name or #N).
    #[arg(add = super::slot_completer())]
    pub slot: String,

    #[command(flatten)]
    pub agent: AgentArg,

    /// Delete the store item (and its history) instead of leaving a `revoked` marker in it.
    #[arg(long)]
    pub delete_item: bool,

    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

pub fn setup(args: SetupArgs, paths: &Paths, format: Format) -> Result<u8> {
    let agent = args.agent.agent;
    let name = {
        let keeper = Keeper::open(paths.clone())?;
        match args.name {
            Some(name) => {
                crate::catalog::validate_name(&name)?;
                if keeper.catalog().by_name(agent.name(), &name).is_some() {
                    return Err(Error::usage(format!(
                        "a {agent} slot named '{name}' already exists"
                    ))
                    .with_hint(format!("replace its token: tokenkeeper rotate {name}")));
                }
                name
            }
            None => keeper.catalog().unique_name(agent.name(), "setup"),
        }
    };
    let credential = capture(paths)?;
    let slot = Keeper::open(paths.clone())?.add_long_lived(agent, &name, &credential)?;
    report(&slot, "created", format)
}

pub fn rotate(args: RotateArgs, paths: &Paths, format: Format) -> Result<u8> {
    let agent = args.agent.agent;
    let slot = {
        let mut keeper = Keeper::open(paths.clone())?;
        keeper.resolve(agent, Some(&args.slot))?
    };
    if slot.kind != Kind::LongLived {
        return Err(Error::usage(format!(
            "slot '{}' holds an OAuth login, which renews itself; rotate is for long-lived tokens",
            slot.name
        ))
        .with_hint("for a new login: claude /login, then tokenkeeper add"));
    }
    let credential = capture(paths)?;
    let mut keeper = Keeper::open(paths.clone())?;
    let old = keeper.credential(&slot).ok();
    if old.as_ref().is_some_and(|old| {
        old.access_token().expose_secret() == credential.access_token().expose_secret()
    }) {
        return Err(Error::failure(format!(
            "`claude setup-token` printed the token slot '{}' already holds",
            slot.name
        )));
    }
    let slot = keeper.replace_long_lived(&slot.id, &credential)?;
    report(&slot, "rotated", format)?;
    if format == Format::Text {
        output::line(&format!(
            "the old token still works until you revoke it: {REVOKE_URL}"
        ))?;
    }
    Ok(0)
}

pub fn revoke(args: RevokeArgs, paths: &Paths, format: Format) -> Result<u8> {
    let agent = args.agent.agent;
    let slot = {
        let mut keeper = Keeper::open(paths.clone())?;
        keeper.resolve(agent, Some(&args.slot))?
    };
    if !args.yes {
        confirm(&format!(
            "Revoke slot '{}' ({}, {} store){}? [y/N] ",
            slot.name,
            slot.kind,
            slot.backend,
            if args.delete_item {
                ", deleting its store item"
            } else {
                ""
            }
        ))?;
    }
    let tombstone = Secret::new(
        json!({
            "revoked": true,
            "revokedAt": Timestamp::now().to_string(),
            "slot": slot.name,
            "by": "tokenkeeper revoke",
        })
        .to_string(),
    );
    let mut keeper = Keeper::open(paths.clone())?;
    let removed = keeper.revoke(agent, &slot.name, (!args.delete_item).then_some(&tombstone))?;
    output::flush_notices(&mut keeper);
    let history = matches!(
        slot.backend,
        crate::store::Backend::OpenBao | crate::store::Backend::OnePassword
    );
    if format == Format::Json {
        return output::json(&json!({
            "revoked": slot.name,
            "agent": slot.agent,
            "item": if args.delete_item { "deleted" } else { "marked-revoked" },
            "backend": slot.backend.as_str(),
            "cleared_live": removed.cleared_live,
            "revoke_at": REVOKE_URL,
        }))
        .map(|()| 0);
    }
    output::line(&format!("removed slot '{}' from tokenkeeper", slot.name))?;
    output::line(&if args.delete_item {
        format!("deleted its item from the {} store", slot.backend)
    } else if history {
        format!(
            "its item in the {} store now says `revoked`; that store keeps earlier versions, so the token is still in the item's history (--delete-item removes it)",
            slot.backend
        )
    } else {
        format!("its item in the {} store now says `revoked`", slot.backend)
    })?;
    if let Some(path) = removed.cleared_live {
        output::line(&format!("deleted Claude Code's credentials at {path}"))?;
    }
    output::line(&format!(
        "the token is still valid at the provider until you revoke it there: {REVOKE_URL}"
    ))?;
    Ok(0)
}

/// Runs `claude setup-token`, takes the token it printed, and checks it with the provider.
fn capture(paths: &Paths) -> Result<Credential> {
    let program: OsString = std::env::var_os(ENV_CLAUDE_BIN).unwrap_or_else(|| "claude".into());
    let program = find_program(&program).ok_or_else(|| {
        Error::failure(format!(
            "cannot find {}",
            std::path::Path::new(&program).display()
        ))
        .with_hint(format!(
            "install Claude Code (npm install -g @anthropic-ai/claude-code), or point {ENV_CLAUDE_BIN} at it"
        ))
    })?;
    eprintln!(
        "tokenkeeper: running `claude setup-token`; sign in in the browser. The token it prints is captured and shown as <redacted>."
    );
    let captured = crate::setup::run(&program, &["setup-token"])?;
    let token = captured.tokens.last().cloned();
    let Some(token) = token else {
        return Err(Error::failure(if captured.success {
            "`claude setup-token` finished without printing a token".to_string()
        } else {
            format!(
                "`claude setup-token` ended (exit {}) without printing a token; nothing was stored",
                captured.exit_code
            )
        }));
    };
    let body = token
        .expose_secret()
        .strip_prefix(SETUP_PREFIX)
        .unwrap_or("");
    if body.len() < 32 {
        return Err(Error::failure(format!(
            "what `claude setup-token` printed is not a whole long-lived token ({} characters, expected `{SETUP_PREFIX}` and about 95 more); nothing was stored",
            token.len()
        ))
        .with_hint("run it again; if the terminal is very narrow, widen it"));
    }
    let credential = Credential::from_bare_token(token, Timestamp::now() + BARE_TOKEN_LIFETIME);
    let probe = probe::probe(paths, crate::agent::Agent::Claude, &credential, true)?;
    match probe.verdict {
        Verdict::Valid => Ok(credential),
        Verdict::Refused { status } => Err(Error::failure(format!(
            "the provider refuses the captured token (HTTP {status}); nothing was stored"
        ))
        .with_hint(
            "run it again; if this repeats, the token was cut off on screen: widen the terminal",
        )),
        Verdict::Unknown { why } => {
            output::warn(&format!(
                "could not check the new token with the provider ({why}); storing it anyway"
            ));
            Ok(credential)
        }
    }
}

fn report(slot: &Slot, action: &str, format: Format) -> Result<u8> {
    let now = Timestamp::now();
    if format == Format::Json {
        let mut value: Value = output::slot_json(slot, false, now);
        value["action"] = json!(action);
        value["backend"] = json!(slot.backend.as_str());
        return output::json(&value).map(|()| 0);
    }
    let until = slot
        .expires_at
        .map(|at| {
            format!(
                "valid until {} ({})",
                timefmt::date(at),
                timefmt::relative(at, now)
            )
        })
        .unwrap_or_else(|| "long-lived".to_string());
    output::line(&format!(
        "{action} slot '{}': a long-lived token in the {} store, {until}",
        slot.name, slot.backend
    ))?;
    output::line(&format!(
        "use it: tokenkeeper exec {0} -- claude   or in CI: tokenkeeper github-sync {0} --repo OWNER/REPO",
        slot.name
    ))?;
    Ok(0)
}

/// `program` itself when it names a path, else the first executable of that name on PATH.
fn find_program(program: &OsString) -> Option<OsString> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |path: &std::path::Path| {
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let path = std::path::Path::new(program);
    if path.components().count() > 1 {
        return executable(path).then(|| program.clone());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(path))
        .find(|candidate| executable(candidate))
        .map(OsString::from)
}

/// Asks on the terminal; without one, `--yes` is needed.
fn confirm(question: &str) -> Result<()> {
    if !std::io::stdin().is_terminal() {
        return Err(Error::usage(
            "revoke needs confirmation: pass --yes (stdin is not a terminal)",
        ));
    }
    eprint!("{question}");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|err| Error::failure(format!("cannot read the answer: {err}")))?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(Error::failure("not revoked").with_exit_code(1))
    }
}
