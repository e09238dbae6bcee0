//! `tokenkeeper check [NAME] [--within DURATION]`

use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use super::AgentArg;
use super::output::{self, Format};
use crate::agent::{Credential, Kind};
use crate::catalog::Slot;
use crate::error::{Error, Result};
use crate::keeper::Keeper;
use crate::paths::Paths;
use crate::timefmt;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Exit 0 when the slot can be used now: its access token is valid, or it has expired and the
refresh token will renew it on the next use. Exit 1 when it cannot: it needs a new login, or a
token that cannot be refreshed has expired (or the slot is missing).

With --within, exit 1 also when the slot will not stay usable that long without a login: a
long-lived token that expires sooner, or a refresh token whose own expiry (when known) is
sooner. For scripts and CI:
  tokenkeeper check work || tokenkeeper use home
  tokenkeeper check ci-token --within 7d || echo 'rotate the CI token this week'")]
pub struct Args {
    /// Slot name or #N [default: the active slot].
    #[arg(add = super::slot_completer())]
    pub slot: Option<String>,

    /// Also fail when the slot will not be usable for this long without a login (e.g. 7d).
    #[arg(long, value_name = "DURATION", value_parser = within)]
    pub within: Option<SignedDuration>,

    #[command(flatten)]
    pub agent: AgentArg,
}

fn within(text: &str) -> std::result::Result<SignedDuration, String> {
    let text = text.trim();
    let days = text
        .strip_suffix('d')
        .and_then(|n| n.trim().parse::<i64>().ok())
        .map(|n| SignedDuration::from_hours(n.saturating_mul(24)));
    days.or_else(|| crate::refresh::parse_duration(text))
        .ok_or_else(|| format!("'{text}' is not a duration (e.g. 7d, 12h, 30m)"))
}

/// What a slot can do now, and until when without a login.
struct State {
    code: &'static str,
    usable: bool,
    /// `None`: no end is known (a refresh token of unknown expiry, kept alive by use).
    usable_until: Option<Timestamp>,
}

fn state(slot: &Slot, credential: &Credential, now: Timestamp) -> State {
    let expires = credential.expires_at();
    let valid = expires.is_none_or(|at| at > now);
    let refreshable = credential.kind() == Kind::Oauth
        && slot.handed_over.is_none()
        && slot.superseded_by.is_none();
    if slot.needs_login.is_some() || slot.stranded.is_some() {
        return State {
            code: "needs-login",
            usable: false,
            usable_until: Some(now),
        };
    }
    match (valid, refreshable) {
        (_, true) => State {
            code: if valid {
                "valid"
            } else {
                "expired-will-refresh"
            },
            usable: true,
            usable_until: credential.refresh_expires_at(),
        },
        (true, false) => State {
            code: "valid",
            usable: true,
            usable_until: expires,
        },
        (false, false) => State {
            code: "expired",
            usable: false,
            usable_until: expires,
        },
    }
}

pub fn run(args: Args, paths: &Paths, format: Format) -> Result<u8> {
    let agent = args.agent.agent;
    let mut keeper = Keeper::open(paths.clone())?;
    keeper.sync_live(agent)?;
    output::flush_notices(&mut keeper);
    let now = keeper.now();
    let slot = &keeper.resolve(agent, args.slot.as_deref())?;
    let credential = keeper.credential(slot)?;
    output::warn_expiry(slot);
    let expires_at = credential.expires_at();
    let state = state(slot, &credential, now);
    let horizon = args
        .within
        .map(|d| now.checked_add(d).unwrap_or(Timestamp::MAX));
    let lasts = match (horizon, state.usable_until) {
        (Some(horizon), Some(until)) => until >= horizon,
        _ => true,
    };
    let ok = state.usable && lasts;
    if format == Format::Json {
        output::json(&json!({
            "slot": slot.name,
            "agent": slot.agent,
            "state": state.code,
            "valid": expires_at.is_none_or(|at| at > now),
            "usable": state.usable,
            "usable_until": state.usable_until,
            "expires_at": expires_at,
            "remaining_seconds": expires_at.map(|at| at.as_second() - now.as_second()),
            "days_remaining": expires_at.map(|at| timefmt::days_remaining(at, now)),
        }))?;
        return Ok(if ok { 0 } else { 1 });
    }
    let name = &slot.name;
    let refresh_left = credential
        .refresh_expires_at()
        .map(|at| {
            format!(
                "; its refresh token lasts until {} ({})",
                timefmt::local(at),
                timefmt::relative(at, now)
            )
        })
        .unwrap_or_default();
    match (state.code, expires_at) {
        ("needs-login", _) => {
            return Err(
                Error::failure(format!("slot '{name}' needs a new login")).with_hint(format!(
                    "log in again with `claude` (/login), then run: tokenkeeper add {name}"
                )),
            );
        }
        ("expired-will-refresh", Some(at)) => output::line(&format!(
            "slot '{name}' is usable: its access token expired {} and will be refreshed on use{refresh_left}",
            timefmt::relative(at, now)
        ))?,
        ("expired", Some(at)) => output::notice(&format!(
            "the access token of slot '{name}' expired {} ({})",
            timefmt::relative(at, now),
            timefmt::local(at)
        )),
        (_, None) => output::line(&format!("slot '{name}' is valid (no expiry recorded)"))?,
        (_, Some(at)) => {
            let days = timefmt::days_remaining(at, now);
            output::line(&format!(
                "slot '{name}' is valid: expires {} ({}, {days} day{} remaining){}",
                timefmt::local(at),
                timefmt::relative(at, now),
                if days == 1 { "" } else { "s" },
                if state.usable_until == expires_at {
                    String::new()
                } else {
                    refresh_left
                }
            ))?
        }
    }
    if state.usable && !lasts {
        let within = args.within.map(|d| format!("{d:#}")).unwrap_or_default();
        output::notice(&format!(
            "slot '{name}' will not stay usable for {within} without a login: it lasts until {}",
            state.usable_until.map(timefmt::local).unwrap_or_default()
        ));
    }
    Ok(if ok { 0 } else { 1 })
}
