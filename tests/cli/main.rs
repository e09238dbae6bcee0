//! Integration tests: each module drives the built binary for one feature.

#[path = "../support/mod.rs"]
mod support;

mod add;
mod alerts;
mod backends;
mod bad_input;
mod claude_view;
mod cluster;
mod codex;
mod completions;
mod crash;
mod daemon;
mod doctor;
mod exec;
mod export_remove;
mod get_check;
mod github_sync;
mod help;
mod lineage;
mod list;
mod login;
mod migrate;
mod pool;
mod proxy;
mod ralph;
mod refresh;
mod rename;
mod secrets;
mod setup;
mod shared;
mod status;
mod ui;
mod usage;
mod use_slot;
