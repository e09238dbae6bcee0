//! Printing: text or JSON on stdout, notices on stderr. A closed stdout is a clean exit.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::catalog::Slot;
use crate::error::{Error, Result};
use crate::expiry;
use crate::keeper::Keeper;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable text.
    Text,
    /// One JSON document, numbers as numbers and times in RFC 3339.
    Json,
}

/// Prints one line to stdout.
pub fn line(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(Error::from_stdout)
}

/// Prints a JSON document to stdout.
pub fn json(value: &Value) -> Result<()> {
    line(&serde_json::to_string_pretty(value).expect("JSON values serialise"))
}

static QUIET: AtomicBool = AtomicBool::new(false);

/// `--quiet`: no warnings on stderr.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Tells the user something on stderr that is not an error.
pub fn notice(text: &str) {
    eprintln!("tokenkeeper: {text}");
}

/// A warning on stderr, unless `--quiet`.
pub fn warn(text: &str) {
    if !QUIET.load(Ordering::Relaxed) {
        eprintln!("tokenkeeper: warning: {text}");
    }
}

/// Warns on stderr when the slot about to be used reaches the end of its life within 30 days
/// (emphasised within 7), unless `--quiet`.
pub fn warn_expiry(slot: &Slot) {
    if QUIET.load(Ordering::Relaxed) {
        return;
    }
    let now = Timestamp::now();
    let Some(warning) = expiry::warning(slot, now) else {
        return;
    };
    let (text, hint) = warning.describe(&slot.name, now);
    let label = match warning.level {
        expiry::Level::Soon => "warning".to_string(),
        _ => super::style::paint_stderr("WARNING", super::style::urgent()),
    };
    eprintln!("tokenkeeper: {label}: {text}\n  hint: {hint}");
}

/// Prints and clears the keeper's pending notices.
pub fn flush_notices(keeper: &mut Keeper) {
    keeper.flush_notices_to_stderr();
}

/// The JSON description of a slot shared by every command that reports one.
pub fn slot_json(slot: &Slot, active: bool, now: Timestamp) -> Value {
    json!({
        "name": slot.name,
        "agent": slot.agent,
        "kind": slot.kind,
        "active": active,
        "shared": slot.shared,
        "account_uuid": slot.account_uuid,
        "email": slot.email,
        "subscription_type": slot.subscription_type,
        "rate_limit_tier": slot.rate_limit_tier,
        "organization_uuid": slot.organization_uuid,
        "organization_name": slot.organization_name,
        "needs_login": slot.needs_login,
        "stranded": slot.stranded,
        "handed_over": slot.handed_over,
        "superseded": slot.superseded_by.is_some(),
        "expires_at": slot.expires_at,
        "expires_in_seconds": slot.expires_at.map(|at| at.as_second() - now.as_second()),
        "expired": slot.expires_at.is_some_and(|at| at <= now),
        "refresh_token_expires_at": slot.refresh_expires_at,
        "expiry_warning": expiry::warning(slot, now).map(|w| json!({
            "level": w.level.as_str(),
            "what": w.what,
            "at": w.at,
            "days": w.days,
        })),
        "created_at": slot.created_at,
        "updated_at": slot.updated_at,
    })
}

/// A progress bar on stderr for work over several slots: hidden for one, and (indicatif's own
/// rule) drawn only on a terminal. `template` is an indicatif template.
pub fn progress(total: usize, template: &str) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    if total < 2 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    bar.set_style(ProgressStyle::with_template(template).expect("the template is valid"));
    bar
}
