//! `tokenkeeper use NAME|#N`

use serde_json::json;

use super::AgentArg;
use super::output::{self, Format};
use crate::error::Result;
use crate::keeper::{Keeper, Switched};
use crate::paths::Paths;
use crate::refresh::{self, Policy};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Before overwriting Claude Code's credentials file, tokenkeeper saves whatever Claude Code wrote
there since (a refreshed token, a new login) back into the slot it belongs to, or into a new
slot when it matches none: newer tokens are never lost.")]
pub struct Args {
    /// Slot name, or #N as numbered by `list`.
    #[arg(add = super::slot_completer())]
    pub slot: String,

    #[command(flatten)]
    pub agent: AgentArg,

    /// First ask the provider whether the slot's token is still accepted (cached for
    /// TOKENKEEPER_PROBE_TTL, default 10m); a refused token is not switched to.
    #[arg(long)]
    pub probe: bool,
}

pub fn run(args: Args, paths: &Paths, format: Format) -> Result<u8> {
    let agent = args.agent.agent;
    // Hand Claude Code a token with life in it: refresh first when due.
    let fresh = refresh::ensure_fresh(paths, agent, Some(&args.slot), false, &Policy::from_env()?)?;
    if args.probe {
        super::exec::probe_before_launch(paths, &fresh)?;
    }
    let mut keeper = Keeper::open(paths.clone())?;
    let (outcome, slot) = keeper.switch(agent, &args.slot)?;
    output::flush_notices(&mut keeper);
    output::warn_expiry(&slot);
    if outcome == Switched::Switched
        && let Some(notice) = agent.after_switch_notice()
    {
        output::notice(&notice);
    }
    let live = agent.live()?.describe();
    if format == Format::Json {
        return output::json(&json!({
            "action": match outcome { Switched::Switched => "switched", Switched::AlreadyActive => "unchanged" },
            "live_path": live,
            "slot": output::slot_json(&slot, true, keeper.now()),
        }))
        .map(|()| 0);
    }
    let text = match outcome {
        Switched::Switched => format!("{agent} now uses slot '{}' (wrote {live})", slot.name),
        Switched::AlreadyActive => format!("{agent} already uses slot '{}'", slot.name),
    };
    output::line(&text).map(|()| 0)
}
