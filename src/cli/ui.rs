//! `tokenkeeper ui`

use super::output::Format;
use crate::error::{Error, Result};
use crate::paths::Paths;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Every slot of every agent on one screen: the active one of each agent, 5-hour and weekly quota
bars with the time until each resets, expiry, and slots that need a login or are cooled down
until a reset. It follows the catalog as it changes (the daemon's and the proxies' readings).
Keys: up/down or j/k select; u (or enter) use; r refresh now; n rename; d remove (asks first);
a add the account the agent is logged in with; g generate a long-lived token (claude
setup-token, as `tokenkeeper setup`); q or esc quit. Works at 80x24 and over SSH.")]
pub struct Args {}

pub fn run(_args: Args, paths: &Paths, format: Format) -> Result<u8> {
    if format == Format::Json {
        return Err(Error::usage(
            "the dashboard has no JSON form; `tokenkeeper list --format json` has the same facts",
        ));
    }
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return Err(Error::usage("the dashboard needs a terminal")
            .with_hint("for a script, use `tokenkeeper list` or `tokenkeeper status`"));
    }
    crate::ui::run(paths).map(|()| 0)
}
