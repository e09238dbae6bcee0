//! `tokenkeeper get [NAME]`

use serde_json::json;

use super::AgentArg;
use super::output::{self, Format};
use crate::error::{Error, Result};
use crate::keeper::Keeper;
use crate::paths::Paths;
use crate::timefmt;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Prints only the token and a newline, so it pipes cleanly:
  CLAUDE_CODE_OAUTH_TOKEN=\"$(tokenkeeper get work)\" claude
Fails (exit 1, nothing on stdout) when the token has expired.")]
pub struct Args {
    /// Slot name or #N [default: the active slot].
    pub slot: Option<String>,

    #[command(flatten)]
    pub agent: AgentArg,
}

pub fn run(args: Args, paths: &Paths, format: Format) -> Result<u8> {
    let agent = args.agent.agent;
    let mut keeper = Keeper::open(paths.clone())?;
    keeper.sync_live(agent)?;
    output::flush_notices(&mut keeper);
    let now = keeper.now();
    let slot = keeper
        .catalog()
        .resolve_or_active(agent.name(), args.slot.as_deref())?;
    let credential = keeper.credential(slot)?;
    if let Some(at) = credential.expires_at().filter(|at| *at <= now) {
        return Err(Error::failure(format!(
            "the access token of slot '{}' expired {} ({})",
            slot.name,
            timefmt::relative(at, now),
            timefmt::local(at)
        ))
        .with_hint("start Claude Code with this slot active to refresh it, or add a fresh credential: tokenkeeper add"));
    }
    let token = credential.access_token();
    if format == Format::Json {
        return output::json(&json!({
            "slot": slot.name,
            "access_token": token.expose_secret(),
            "expires_at": credential.expires_at(),
        }))
        .map(|()| 0);
    }
    output::line(token.expose_secret()).map(|()| 0)
}
