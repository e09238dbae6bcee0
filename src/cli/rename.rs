//! `tokenkeeper rename OLD NEW`

use serde_json::json;

use super::AgentArg;
use super::output::{self, Format};
use crate::error::Result;
use crate::keeper::Keeper;
use crate::paths::Paths;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  tokenkeeper rename jane.doe personal
  tokenkeeper rename '#2' work

Only the name changes: the slot keeps its tokens, its place in `list` and, if Claude Code uses
it, that too.")]
pub struct Args {
    /// The slot: its name, #N, or its account's email.
    #[arg(add = super::slot_completer())]
    pub slot: String,

    /// The new name: letters, digits and . _ @ + - (not first).
    pub new: String,

    #[command(flatten)]
    pub agent: AgentArg,
}

pub fn run(args: Args, paths: &Paths, format: Format) -> Result<u8> {
    let agent = args.agent.agent;
    let mut keeper = Keeper::open(paths.clone())?;
    let old = keeper.rename(agent, &args.slot, &args.new)?;
    output::flush_notices(&mut keeper);
    if format == Format::Json {
        return output::json(&json!({"agent": agent.name(), "from": old, "to": args.new}))
            .map(|()| 0);
    }
    output::line(&format!("renamed {agent} slot '{old}' to '{}'", args.new)).map(|()| 0)
}
