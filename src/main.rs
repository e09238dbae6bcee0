//! The `tokenkeeper` binary: parse, run, turn the result into an exit code.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use tokenkeeper::cli::{self, Cli, Command};

fn main() -> ExitCode {
    // Before anything reads a token: no core dump, no ptrace by the same user.
    tokenkeeper::harden::process();
    let cli = Cli::parse_from(cli::hoist_agent(std::env::args_os().collect()));
    // The daemon and the proxy report what they do by default; other commands only warn.
    let chatty = matches!(cli.command, Command::Daemon(_) | Command::Proxy(_));
    tokenkeeper::logging::init(cli.verbose + u8::from(chatty));
    match cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) if err.is_broken_pipe() => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tokenkeeper: {}", err.message());
            if let Some(hint) = err.hint() {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(err.exit_code())
        }
    }
}
