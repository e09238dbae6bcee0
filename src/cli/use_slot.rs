//! `tokenkeeper use NAME|#N|--next|--best`

use jiff::SignedDuration;
use serde_json::json;

use super::AgentArg;
use super::output::{self, Format};
use crate::agent::Agent;
use crate::error::{Error, Result};
use crate::keeper::{Keeper, Switched};
use crate::paths::Paths;
use crate::pool::{self, Strategy};
use crate::refresh::{self, Policy};
use crate::timefmt;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Before overwriting Claude Code's credentials file, tokenkeeper saves whatever Claude Code wrote
there since (a refreshed token, a new login) back into the slot it belongs to, or into a new
slot when it matches none: newer tokens are never lost.

--next and --best choose by quota, for one person's own accounts: --next takes the next slot in
`list` order after the active one whose 5-hour and weekly windows are not spent, --best the one
with the most left in its tightest window. Readings older than TOKENKEEPER_USAGE_MAX_AGE (default
5m) are renewed first, as `list` does; readings the proxy took off the answers it relayed count
too. A slot that needs a new login is never chosen.")]
pub struct Args {
    /// Slot name, or #N as numbered by `list`.
    #[arg(
        add = super::slot_completer(),
        required_unless_present_any = ["next", "best"],
        conflicts_with_all = ["next", "best"]
    )]
    pub slot: Option<String>,

    /// Switch to the next slot after the active one that has quota left.
    #[arg(long, conflicts_with = "best")]
    pub next: bool,

    /// Switch to the slot with the most quota left.
    #[arg(long)]
    pub best: bool,

    #[command(flatten)]
    pub agent: AgentArg,

    /// First ask the provider whether the slot's token is still accepted (cached for
    /// TOKENKEEPER_PROBE_TTL, default 10m); a refused token is not switched to.
    #[arg(long)]
    pub probe: bool,
}

pub fn run(args: Args, paths: &Paths, format: Format) -> Result<u8> {
    let agent = args.agent.agent;
    let strategy = match (args.next, args.best) {
        (true, _) => Some(Strategy::Next),
        (_, true) => Some(Strategy::Best),
        _ => None,
    };
    let (selector, headroom) = match (args.slot, strategy) {
        (Some(selector), _) => (selector, None),
        (None, Some(strategy)) => {
            let (name, headroom) = choose(paths, agent, strategy)?;
            (name, Some(headroom))
        }
        (None, None) => return Err(Error::usage("name a slot, or pass --next or --best")),
    };
    // Hand Claude Code a token with life in it: refresh first when due.
    let fresh = refresh::ensure_fresh(paths, agent, Some(&selector), false, &Policy::from_env()?)?;
    if args.probe {
        super::exec::probe_before_launch(paths, &fresh)?;
    }
    let mut keeper = Keeper::open(paths.clone())?;
    let (outcome, slot) = keeper.switch(agent, &selector)?;
    output::flush_notices(&mut keeper);
    output::warn_expiry(&slot);
    if outcome == Switched::Switched
        && let Some(notice) = agent.after_switch_notice()
    {
        output::notice(&notice);
    }
    let live = agent.live()?.describe();
    if format == Format::Json {
        let mut answer = json!({
            "action": match outcome { Switched::Switched => "switched", Switched::AlreadyActive => "unchanged" },
            "live_path": live,
            "slot": output::slot_json(&slot, true, keeper.now()),
        });
        if let Some(headroom) = headroom {
            answer["chosen_by"] = json!(if args.next { "next" } else { "best" });
            answer["headroom_percent"] = json!(headroom);
        }
        return output::json(&answer).map(|()| 0);
    }
    let why = match headroom {
        Some(Some(left)) => format!(
            ", {} left in its tightest window",
            crate::usage::percent_text(left)
        ),
        Some(None) => ", no usage reading yet".to_string(),
        None => String::new(),
    };
    let text = match outcome {
        Switched::Switched => format!("{agent} now uses slot '{}'{why} (wrote {live})", slot.name),
        Switched::AlreadyActive => format!("{agent} already uses slot '{}'{why}", slot.name),
    };
    output::line(&text).map(|()| 0)
}

/// The slot `strategy` picks, by name, with its headroom (`None`: no reading yet).
fn choose(paths: &Paths, agent: Agent, strategy: Strategy) -> Result<(String, Option<f64>)> {
    let mut keeper = Keeper::open(paths.clone())?;
    if let Err(err) = keeper.sync_shared() {
        output::warn(&format!(
            "choosing among the slots known here: {}",
            err.message()
        ));
    }
    keeper.sync_live(agent)?;
    output::flush_notices(&mut keeper);
    let max_age =
        refresh::env_duration(super::list::ENV_USAGE_MAX_AGE, SignedDuration::from_mins(5))?;
    super::list::renew_usage(&mut keeper, &[agent], max_age)?;
    let now = keeper.now();
    let catalog = keeper.catalog();
    let slots: Vec<_> = catalog.slots_of(agent.name()).collect();
    if slots.is_empty() {
        return Err(
            Error::failure(format!("there are no {agent} slots to choose from"))
                .with_hint(format!("add one: tokenkeeper add NAME --agent {agent}")),
        );
    }
    let current = catalog.active_id(agent.name());
    let standings: Vec<pool::Standing<'_>> = slots.iter().map(|slot| (*slot).into()).collect();
    if let Some(i) = pool::choose(&standings, current, strategy, now) {
        return Ok((slots[i].name.clone(), pool::headroom(standings[i], now)));
    }
    let others = match strategy {
        Strategy::Next => "no other ",
        Strategy::Best => "no ",
    };
    let soonest = slots
        .iter()
        .filter(|slot| slot.needs_login.is_none())
        .filter_map(|slot| Some((pool::spent_until((*slot).into(), now)?, slot.name.as_str())))
        .filter(|(at, _)| *at < jiff::Timestamp::MAX)
        .min();
    let hint = match soonest {
        Some((at, name)) => format!(
            "slot '{name}' has quota again {} ({})",
            timefmt::relative(at, now),
            timefmt::local(at)
        ),
        None => format!(
            "log in again where needed, or add another account: tokenkeeper add NAME --agent {agent}"
        ),
    };
    Err(Error::failure(format!("{others}{agent} slot has quota left")).with_hint(hint))
}
