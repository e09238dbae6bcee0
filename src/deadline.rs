//! How long a command waits — on the network, on another process's lock — before it answers
//! with what it has or gives up. A command never hangs: each wait has an end and says why.

use std::time::Duration;

use crate::error::{Error, Result};

/// How long a command that already holds a valid token waits for a refresh (network, locks)
/// before answering with that token and leaving the refresh to a later command or the daemon.
pub const ENV_TIMEOUT: &str = "TOKENKEEPER_TIMEOUT";
/// How long a command waits for another process's lock before giving up.
pub const ENV_LOCK_TIMEOUT: &str = "TOKENKEEPER_LOCK_TIMEOUT";

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(60);
/// The most a refresh of a token that has run out may take, every retry included.
pub const REFRESH_BUDGET: Duration = Duration::from_secs(40);

/// `TOKENKEEPER_TIMEOUT`, else 5 s.
pub fn answer_within() -> Result<Duration> {
    from_env(ENV_TIMEOUT, DEFAULT_TIMEOUT)
}

/// `TOKENKEEPER_LOCK_TIMEOUT`, else 60 s.
pub fn lock_wait() -> Result<Duration> {
    from_env(ENV_LOCK_TIMEOUT, DEFAULT_LOCK_TIMEOUT)
}

fn from_env(name: &str, default: Duration) -> Result<Duration> {
    let default = jiff::SignedDuration::try_from(default).expect("defaults fit");
    let value = crate::refresh::env_duration(name, default)?;
    Duration::try_from(value).map_err(|_| Error::usage(format!("{name} must not be negative")))
}

/// What this process is doing, for the note in a lock it holds: `running tokenkeeper get`.
pub fn doing() -> String {
    let command = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with('-'))
        .unwrap_or_default();
    format!("running `tokenkeeper {command}`")
}
