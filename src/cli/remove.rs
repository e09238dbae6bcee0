//! `tokenkeeper remove NAME|#N [--yes]`

use serde_json::json;

use super::AgentArg;
use super::output::{self, Format};
use crate::error::Result;
use crate::keeper::Keeper;
use crate::paths::Paths;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Removing the slot Claude Code uses now also deletes Claude Code's credentials file (logging it
out), and so needs --yes.")]
pub struct Args {
    /// Slot name, or #N as numbered by `list`.
    #[arg(add = super::slot_completer())]
    pub slot: String,

    /// Confirm removing the active slot together with Claude Code's live credential.
    #[arg(long, short = 'y')]
    pub yes: bool,

    #[command(flatten)]
    pub agent: AgentArg,
}

pub fn run(args: Args, paths: &Paths, format: Format) -> Result<u8> {
    let agent = args.agent.agent;
    let mut keeper = Keeper::open(paths.clone())?;
    let removed = keeper.remove(agent, &args.slot, args.yes)?;
    output::flush_notices(&mut keeper);
    if format == Format::Json {
        return output::json(&json!({
            "removed": removed.slot.name,
            "agent": removed.slot.agent,
            "cleared_live": removed.cleared_live,
        }))
        .map(|()| 0);
    }
    output::line(&format!("removed {agent} slot '{}'", removed.slot.name))?;
    if let Some(path) = removed.cleared_live {
        output::line(&format!(
            "deleted Claude Code's credentials at {path}; Claude Code is logged out until you run `tokenkeeper use` or log in"
        ))?;
    }
    Ok(0)
}
