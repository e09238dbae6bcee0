//! `tokenkeeper refresh [NAME|--all] [--force]`

use serde_json::{Value, json};

use super::output::{self, Format};
use super::{AgentArg, Selection};
use crate::error::{Error, Result};
use crate::keeper::Keeper;
use crate::paths::Paths;
use crate::refresh::{self, Outcome, Policy};
use crate::timefmt;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
A slot is refreshed when its access token expires within the refresh margin
(TOKENKEEPER_REFRESH_MARGIN, default 10m) or it has been idle long enough that its refresh
token could lapse. Refresh tokens are single-use: tokenkeeper refreshes each lineage at most
once at a time across all processes, Claude Code included, and saves the new tokens before
anything else.

Examples:
  tokenkeeper refresh              the active slot, if due
  tokenkeeper refresh --all        every slot that is due (for cron)
  tokenkeeper refresh work --force")]
pub struct Args {
    #[command(flatten)]
    pub selection: Selection,

    /// Refresh even when the token is not due yet.
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub agent: AgentArg,
}

pub fn run(args: Args, paths: &Paths, format: Format) -> Result<u8> {
    let agent = args.agent.agent;
    let policy = Policy::from_env()?;
    let selectors: Vec<Option<String>> = if args.selection.all {
        let keeper = Keeper::open(paths.clone())?;
        keeper
            .catalog()
            .slots_of(agent.name())
            .map(|s| Some(s.name.clone()))
            .collect()
    } else {
        vec![args.selection.slot.clone()]
    };
    let mut results = Vec::new();
    let mut failed = 0;
    for selector in &selectors {
        match refresh::ensure_fresh(paths, agent, selector.as_deref(), args.force, &policy) {
            Ok(fresh) => {
                let now = jiff::Timestamp::now();
                let what = match fresh.outcome {
                    Outcome::Refreshed => "refreshed",
                    Outcome::RefreshedElsewhere => "refreshed-elsewhere",
                    Outcome::Fresh => "fresh",
                    Outcome::NotRefreshable => "long-lived",
                    Outcome::Deferred => "deferred",
                    Outcome::HandedOver => "handed-over",
                };
                let expiry = fresh.credential.expires_at();
                if format == Format::Text {
                    let when = expiry.map_or(String::new(), |at| {
                        format!(
                            "expires {} ({})",
                            timefmt::local(at),
                            timefmt::relative(at, now)
                        )
                    });
                    let name = &fresh.slot.name;
                    output::line(&match fresh.outcome {
                        Outcome::Refreshed => format!("refreshed '{name}': {when}"),
                        Outcome::RefreshedElsewhere => {
                            format!("'{name}' was just refreshed by another process: {when}")
                        }
                        Outcome::Fresh => {
                            format!("'{name}' is fresh: {when} (--force refreshes anyway)")
                        }
                        Outcome::NotRefreshable => format!(
                            "'{name}' holds a long-lived token, which cannot be refreshed: {when}"
                        ),
                        Outcome::Deferred => format!(
                            "'{name}' could not be refreshed now; its token stays valid: {when}"
                        ),
                        Outcome::HandedOver => format!(
                            "'{name}' was handed over (export --with-refresh-token) and is not refreshed here: {when}"
                        ),
                    })?;
                }
                results
                    .push(json!({ "slot": fresh.slot.name, "result": what, "expires_at": expiry }));
            }
            Err(err) if args.selection.all => {
                failed += 1;
                let name = selector.clone().unwrap_or_default();
                if format == Format::Text {
                    output::notice(err.message());
                }
                results.push(json!({ "slot": name, "result": "error", "error": err.message() }));
            }
            Err(err) => return Err(err),
        }
    }
    if format == Format::Json {
        output::json(&Value::Array(results))?;
    }
    if failed > 0 {
        return Err(Error::failure(format!(
            "{failed} of {} slots could not be refreshed",
            selectors.len()
        )));
    }
    Ok(0)
}
