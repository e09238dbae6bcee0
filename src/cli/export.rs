//! `tokenkeeper export NAME [--path FILE] [--with-refresh-token]`
//!
//! By default the credential goes out without its refresh token: whoever holds the copy can use
//! the account until the access token expires, but can neither refresh it nor spend the token
//! this slot refreshes with. `--with-refresh-token` hands the lineage itself over, and the slot
//! stops refreshing, since two refreshers of one lineage revoke each other.

use std::path::PathBuf;

use jiff::Timestamp;
use serde_json::json;

use super::AgentArg;
use super::output::{self, Format};
use crate::agent::Kind;
use crate::durable;
use crate::error::{Error, Result};
use crate::keeper::Keeper;
use crate::paths::Paths;
use crate::refresh::{self, Policy};
use crate::timefmt;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  tokenkeeper export work > /secure/place/creds.json
  tokenkeeper export work --path /mnt/sandbox/.claude/.credentials.json

The JSON is what Claude Code keeps in its credentials file, without the refresh token: Claude
Code runs with it until the access token expires (the time is printed; the token is refreshed
first when it is about to expire). The copy cannot refresh, so it never spends the token this
slot refreshes with. For a sandbox that runs longer, give it no credential at all and run it
through `tokenkeeper exec` or `tokenkeeper proxy`.

--with-refresh-token hands the whole lineage over: the copy's holder refreshes it from then on,
and this slot stops refreshing (list and doctor say so) — a refresh here would revoke the copy.
Take it back with `tokenkeeper add NAME --from file` and the copy's newest credential.

Files are written atomically with mode 0600. Nothing is activated.")]
pub struct Args {
    /// Slot name or #N.
    #[arg(add = super::slot_completer())]
    pub slot: String,

    /// Write the credential to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub path: Option<PathBuf>,

    /// Include the refresh token, handing the lineage over: this slot stops refreshing.
    #[arg(long)]
    pub with_refresh_token: bool,

    #[command(flatten)]
    pub agent: AgentArg,
}

pub fn run(args: Args, paths: &Paths, format: Format) -> Result<u8> {
    let agent = args.agent.agent;
    // A copy without a refresh token lives only as long as its access token: make that long.
    let fresh = if args.with_refresh_token {
        None
    } else {
        Some(refresh::ensure_fresh(
            paths,
            agent,
            Some(&args.slot),
            false,
            &Policy::from_env()?,
        )?)
    };
    let mut keeper = Keeper::open(paths.clone())?;
    keeper.sync_live(agent)?;
    output::flush_notices(&mut keeper);
    let slot = keeper.resolve(agent, Some(&args.slot))?;
    output::warn_expiry(&slot);
    let credential = match fresh {
        Some(fresh) => fresh.credential,
        None => keeper.credential(&slot)?,
    };
    let handing_over = args.with_refresh_token && credential.kind() == Kind::Oauth;
    if handing_over && keeper.owns_live(agent, &slot.id) {
        return Err(Error::failure(format!(
            "slot '{}' is the one Claude Code uses here, which refreshes it too; handing its lineage over would leave two refreshers that revoke each other",
            slot.name
        ))
        .with_hint(format!(
            "switch Claude Code to another slot first (tokenkeeper use OTHER), or export without --with-refresh-token: tokenkeeper export {}",
            slot.name
        )));
    }
    let exported = if args.with_refresh_token {
        credential.clone()
    } else {
        credential.without_refresh_token()
    };
    let blob = exported.to_secret_json();
    match &args.path {
        Some(path) => durable::write_atomic(path, blob.expose_secret().as_bytes())?,
        None => output::line(blob.expose_secret())?,
    }
    // Recorded once the copy exists: a failed write hands nothing over.
    if handing_over {
        keeper.mark_handed_over(&slot.id)?;
    }
    let now = Timestamp::now();
    let expires = exported.expires_at();
    let validity = match expires {
        _ if handing_over => format!(
            "with its refresh token: the lineage is handed over, and slot '{}' is no longer refreshed here",
            slot.name
        ),
        _ if args.with_refresh_token || credential.kind() == Kind::LongLived => match expires {
            Some(at) => format!("valid until {}", timefmt::local(at)),
            None => "long-lived".to_string(),
        },
        Some(at) => format!(
            "without its refresh token: valid until {} ({}); for longer, use `tokenkeeper exec` or `tokenkeeper proxy`",
            timefmt::local(at),
            timefmt::relative(at, now)
        ),
        None => "without its refresh token".to_string(),
    };
    match (&args.path, format) {
        (Some(path), Format::Json) => output::json(&json!({
            "slot": slot.name,
            "path": path,
            "refresh_token": args.with_refresh_token,
            "handed_over": handing_over,
            "expires_at": expires,
        }))?,
        (Some(path), Format::Text) => output::line(&format!(
            "wrote slot '{}' to {} (mode 0600), {validity}",
            slot.name,
            path.display()
        ))?,
        // The credential itself is on stdout: the rest goes to stderr.
        (None, _) => eprintln!("tokenkeeper: exported slot '{}' {validity}", slot.name),
    }
    Ok(0)
}
