//! The `tokenkeeper` binary: parse, run, turn the result into an exit code.
#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tokenkeeper::cli::{self, Cli, Command};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon and the proxy report what they do by default; other commands only warn.
    let chatty = matches!(cli.command, Command::Daemon(_) | Command::Proxy(_));
    init_logging(cli.verbose + u8::from(chatty));
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

/// Logs go to stderr; `-v` info, `-vv` debug, `-vvv` trace, or `RUST_LOG` for full control.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "tokenkeeper=info",
        2 => "tokenkeeper=debug",
        _ => "tokenkeeper=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
