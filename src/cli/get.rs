//! `tokenkeeper get [NAME]`

use serde_json::json;

use super::AgentArg;
use super::output::{self, Format};
use crate::error::Result;
use crate::paths::Paths;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Prints only the token and a newline, so it pipes cleanly:
  CLAUDE_CODE_OAUTH_TOKEN=\"$(tokenkeeper get work)\" claude
Refreshes first when the token expires within the refresh margin (TOKENKEEPER_REFRESH_MARGIN,
default 10m). Fails (exit 1, nothing on stdout) when no valid token can be had.")]
pub struct Args {
    /// Slot name or #N [default: the active slot].
    #[arg(add = super::slot_completer())]
    pub slot: Option<String>,

    #[command(flatten)]
    pub agent: AgentArg,
}

pub fn run(args: Args, paths: &Paths, format: Format) -> Result<u8> {
    let agent = args.agent.agent;
    let fresh = super::usable_token(paths, agent, args.slot.as_deref())?;
    let (slot, credential) = (fresh.slot, fresh.credential);
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
