//! `tokenkeeper add [NAME] [--from live|stdin|file PATH]`

use std::fs;
use std::io::Read;
use std::path::PathBuf;

use serde_json::json;

use super::AgentArg;
use super::output::{self, Format};
use crate::agent::Credential;
use crate::error::{Error, Result};
use crate::input::{self, MAX_STDIN_BYTES};
use crate::keeper::{self, Added, Keeper};
use crate::paths::Paths;
use crate::perms;
use crate::secret::Secret;
use crate::timefmt;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  tokenkeeper add                          the account Claude Code is logged in with
  tokenkeeper add work                     the same, named 'work'
  tokenkeeper add ci --from stdin < creds.json
  claude setup-token | tokenkeeper add ci-token --from stdin
  tokenkeeper add old --from file ~/backup/.credentials.json

Adding an account that already has a slot (same refresh token or account) updates that slot.

With a store several machines share (OpenBao), the store is each slot's one home: another
install lists and uses its slots without adding them. Adding the current tokens of a shared
slot joins it; a copy whose refresh token was since replaced (another machine refreshed) is
refused, since using it would revoke the login; another login of an account a shared slot
holds replaces that slot's only once it is dead (it is refreshed once to find out), or is
kept beside it with --new-lineage.")]
pub struct Args {
    /// Slot name [default: the local part of the account's email, when known].
    pub name: Option<String>,

    /// Where the credential comes from: `live` (Claude Code's credentials file), `stdin`
    /// (JSON or a bare token), or `file PATH`.
    #[arg(long, num_args = 1..=2, value_names = ["SOURCE", "PATH"], default_value = "live")]
    pub from: Vec<String>,

    /// With a shared store: keep another login of an account a shared slot already holds as a
    /// slot of its own, instead of replacing that slot's once it is dead.
    #[arg(long)]
    pub new_lineage: bool,

    #[command(flatten)]
    pub agent: AgentArg,
}

enum Source {
    Live,
    Stdin,
    File(PathBuf),
}

/// Sorts out `--from`; a second value after `live`/`stdin` is the slot name given late
/// (`add --from live work`).
fn source(from: &[String], name: Option<String>) -> Result<(Source, Option<String>)> {
    let simple = |s: &str| match s {
        "live" => Some(Source::Live),
        "stdin" | "-" => Some(Source::Stdin),
        _ => None,
    };
    match from {
        [s] if s == "file" => Err(Error::usage("--from file needs a path: --from file PATH")),
        [s] => simple(s)
            .map(|src| (src, name))
            .ok_or_else(|| unknown_source(s)),
        [s, path] if s == "file" => Ok((Source::File(PathBuf::from(path)), name)),
        [s, extra] => match (simple(s), name) {
            (Some(src), None) => Ok((src, Some(extra.clone()))),
            (Some(_), Some(_)) => Err(Error::usage(format!("--from {s} takes no second value"))),
            (None, _) => Err(unknown_source(s)),
        },
        _ => Err(Error::usage(
            "--from takes a source: live, stdin or file PATH",
        )),
    }
}

fn unknown_source(s: &str) -> Error {
    Error::usage(format!(
        "unknown source '{}': use live, stdin or file PATH",
        s.escape_debug()
    ))
}

pub fn run(args: Args, paths: &Paths, format: Format) -> Result<u8> {
    let agent = args.agent.agent;
    let (source, name) = source(&args.from, args.name)?;
    let mut keeper = Keeper::open(paths.clone())?;
    let now = keeper.now();
    let (outcome, id, from_live) = match source {
        Source::Live => {
            let managed = keeper.catalog().live.contains_key(agent.name());
            let login = keeper::read_live_login(agent, managed)?;
            tracing::info!(path = %login.path, "read the live credential");
            if !args.new_lineage {
                keeper = make_way(keeper, paths, agent, &login.credential)?;
            }
            let (outcome, id) = keeper.add(
                agent,
                name.as_deref(),
                &login.credential,
                login.account.as_ref(),
                Some(login.fingerprint),
                args.new_lineage,
            )?;
            (outcome, id, true)
        }
        Source::Stdin | Source::File(_) => {
            keeper.sync_live(agent)?;
            let (input, origin) = match &source {
                Source::File(path) => (read_file(path)?, path.display().to_string()),
                _ => (
                    input::read_stdin_secret(
                        "tokenkeeper add NAME --from stdin < credentials.json",
                    )?,
                    "standard input".to_string(),
                ),
            };
            let (credential, _) = Credential::from_input(&input, &origin, now)?;
            if !args.new_lineage {
                keeper = make_way(keeper, paths, agent, &credential)?;
            }
            let (outcome, id) = keeper.add(
                agent,
                name.as_deref(),
                &credential,
                None,
                None,
                args.new_lineage,
            )?;
            (outcome, id, false)
        }
    };
    output::flush_notices(&mut keeper);
    let catalog = keeper.catalog();
    let slot = catalog.get(&id).expect("just added");
    let active = catalog.active_id(agent.name()) == Some(id.as_str());
    let action = match outcome {
        Added::New => "added",
        Added::Updated => "updated",
        Added::Joined => "joined",
    };
    if format == Format::Json {
        return output::json(
            &json!({ "action": action, "slot": output::slot_json(slot, active, now) }),
        )
        .map(|()| 0);
    }
    let mut details = vec![slot.kind.to_string()];
    details.extend(slot.subscription_type.clone());
    if let Some(at) = slot.expires_at {
        details.push(format!(
            "expires {}, {}",
            timefmt::local(at),
            timefmt::relative(at, now)
        ));
    }
    let tail = if from_live { ", active" } else { "" };
    output::line(&format!(
        "{action} {agent} slot '{}' ({}){tail}",
        slot.name,
        details.join(", ")
    ))
    .map(|()| 0)
}

/// When shared slots hold other logins of the credential's account, finds out whether one of
/// them is dead — by refreshing each once, which every install takes up if it lives — since
/// only a dead one may be replaced. Refuses while they all live; gives back a keeper that knows.
fn make_way(
    mut keeper: Keeper,
    paths: &Paths,
    agent: crate::agent::Agent,
    credential: &Credential,
) -> Result<Keeper> {
    let others = keeper.live_lineages_of_account(agent, credential)?;
    if others.is_empty() {
        return Ok(keeper);
    }
    // A refresh takes the state lock itself.
    drop(keeper);
    let policy = crate::refresh::Policy::from_env()?;
    let mut unknown = None;
    for slot in &others {
        tracing::info!(slot = %slot.name, "checking whether this login of the account lives");
        if let Err(err) =
            crate::refresh::ensure_fresh(paths, agent, Some(&slot.name), true, &policy)
        {
            unknown = Some((slot.name.clone(), err));
        }
        let keeper = Keeper::open(paths.clone())?;
        if keeper
            .catalog()
            .get(&slot.id)
            .is_some_and(|s| s.needs_login.is_some())
        {
            tracing::info!(slot = %slot.name, "its login is dead: replacing it");
            return Ok(keeper);
        }
    }
    let names: Vec<&str> = others.iter().map(|s| s.name.as_str()).collect();
    Err(match unknown {
        Some((name, err)) => Error::failure(format!(
            "cannot tell whether shared slot '{name}' (another login of this account) still lives: {}",
            err.message()
        ))
        .with_hint("try again once the provider answers, or keep both with --new-lineage"),
        None => Error::failure(format!(
            "shared slot '{}' holds another, live login of this account (it just refreshed); it was not replaced",
            names.join("', '")
        ))
        .with_hint(format!(
            "keep both with: tokenkeeper add NAME --new-lineage; or use the shared one: tokenkeeper use {}",
            names[0]
        )),
    })
}

fn read_file(path: &PathBuf) -> Result<Secret> {
    perms::check_unshared(path)?;
    let file = fs::File::open(path).map_err(|err| Error::io("cannot read", path, err))?;
    let mut buf = zeroize::Zeroizing::new(Vec::new());
    file.take(MAX_STDIN_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|err| Error::io("cannot read", path, err))?;
    if buf.len() as u64 > MAX_STDIN_BYTES {
        return Err(Error::failure(format!(
            "{} is larger than 1 MiB; a credential is a few hundred bytes",
            path.display()
        )));
    }
    let text = std::str::from_utf8(&buf)
        .map_err(|_| Error::failure(format!("{} is not UTF-8 text", path.display())))?;
    Ok(Secret::new(text.to_string()))
}
