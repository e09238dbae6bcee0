//! `tokenkeeper export NAME [--path FILE]`

use std::path::PathBuf;

use serde_json::json;

use super::AgentArg;
use super::output::{self, Format};
use crate::durable;
use crate::error::Result;
use crate::keeper::Keeper;
use crate::paths::Paths;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  tokenkeeper export work > /secure/place/creds.json
  tokenkeeper export work --path /mnt/sandbox/.claude/.credentials.json

The JSON is exactly what Claude Code keeps in its credentials file. Files are written
atomically with mode 0600. Nothing is activated.")]
pub struct Args {
    /// Slot name or #N.
    pub slot: String,

    /// Write the credential to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub path: Option<PathBuf>,

    #[command(flatten)]
    pub agent: AgentArg,
}

pub fn run(args: Args, paths: &Paths, format: Format) -> Result<u8> {
    let agent = args.agent.agent;
    let mut keeper = Keeper::open(paths.clone())?;
    keeper.sync_live(agent)?;
    output::flush_notices(&mut keeper);
    let slot = keeper.catalog().resolve(agent.name(), &args.slot)?;
    let blob = keeper.credential(slot)?.to_secret_json();
    let Some(path) = args.path else {
        return output::line(blob.expose_secret()).map(|()| 0);
    };
    durable::write_atomic(&path, blob.expose_secret().as_bytes())?;
    if format == Format::Json {
        return output::json(&json!({ "slot": slot.name, "path": path })).map(|()| 0);
    }
    output::line(&format!(
        "wrote slot '{}' to {} (mode 0600)",
        slot.name,
        path.display()
    ))
    .map(|()| 0)
}
