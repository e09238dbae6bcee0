//! tokenkeeper keeps the OAuth credentials of AI coding agents safe, alive and out of the
//! agent's reach. The binary is a thin shell over this library; see `cli` for the commands.
#![forbid(unsafe_code)]

pub mod agent;
pub mod catalog;
pub mod cli;
pub mod daemon;
pub mod deadline;
pub mod durable;
pub mod error;
pub mod expiry;
pub mod github;
pub mod harden;
pub mod hex;
pub mod input;
pub mod journal;
pub mod json_text;
pub mod keeper;
pub mod lock;
pub mod logging;
pub mod net;
pub mod paths;
pub mod perms;
pub mod pool;
pub mod probe;
pub mod proxy;
pub mod ralph;
pub mod refresh;
pub mod secret;
pub mod setup;
pub mod shared;
pub mod store;
pub mod timefmt;
pub mod ui;
pub mod usage;

#[cfg(test)]
mod properties;
