//! `tokenkeeper check [NAME]`

use serde_json::json;

use super::AgentArg;
use super::output::{self, Format};
use crate::error::Result;
use crate::keeper::Keeper;
use crate::paths::Paths;
use crate::timefmt;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Exit codes: 0 valid, 1 expired or missing. For scripts:
  tokenkeeper check work || tokenkeeper use home")]
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
    let expires_at = keeper.credential(slot)?.expires_at();
    let valid = expires_at.is_none_or(|at| at > now);
    if format == Format::Json {
        output::json(&json!({
            "slot": slot.name,
            "agent": slot.agent,
            "valid": valid,
            "expires_at": expires_at,
            "remaining_seconds": expires_at.map(|at| at.as_second() - now.as_second()),
            "days_remaining": expires_at.map(|at| timefmt::days_remaining(at, now)),
        }))?;
        return Ok(if valid { 0 } else { 1 });
    }
    match expires_at {
        None => output::line(&format!(
            "slot '{}' is valid (no expiry recorded)",
            slot.name
        ))?,
        Some(at) if valid => {
            let days = timefmt::days_remaining(at, now);
            output::line(&format!(
                "slot '{}' is valid: expires {} ({}, {days} day{} remaining)",
                slot.name,
                timefmt::local(at),
                timefmt::relative(at, now),
                if days == 1 { "" } else { "s" }
            ))?
        }
        Some(at) => output::notice(&format!(
            "the access token of slot '{}' expired {} ({})",
            slot.name,
            timefmt::relative(at, now),
            timefmt::local(at)
        )),
    }
    Ok(if valid { 0 } else { 1 })
}
