//! The `tokenkeeper` binary: parse, run, turn the result into an exit code.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use tokenkeeper::cli::{self, Cli, Command, Format};
use tokenkeeper::error::Error;

fn main() -> ExitCode {
    // Before anything reads a token: no core dump, no ptrace by the same user.
    tokenkeeper::harden::process();
    // A shell asking for completions (COMPLETE=bash tokenkeeper -- …) is answered and exits.
    clap_complete::CompleteEnv::with_factory(<Cli as clap::CommandFactory>::command)
        .var(cli::completions::ENV_COMPLETE)
        .complete();
    let args = cli::hoist_agent(std::env::args_os().collect());
    // Asked for JSON, errors are JSON too, usage errors included.
    let json = args.iter().any(|a| a == "--json" || a == "--format=json")
        || args
            .windows(2)
            .any(|w| w[0] == "--format" && w[1] == "json");
    let mut cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) if json && err.use_stderr() => {
            let first = err.to_string();
            let message = first
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ");
            return report(&Error::usage(message.to_string()), true);
        }
        Err(err) => err.exit(),
    };
    if cli.json {
        cli.format = Format::Json;
    }
    // The daemon and the proxy report what they do by default; other commands only warn.
    let chatty = matches!(cli.command, Command::Daemon(_) | Command::Proxy(_));
    tokenkeeper::logging::init(cli.verbose + u8::from(chatty));
    let json = cli.format == Format::Json;
    match cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) if err.is_broken_pipe() => ExitCode::SUCCESS,
        Err(err) => report(&err, json),
    }
}

/// Prints an error — `tokenkeeper: …` and `hint: …`, or one JSON object — on stderr.
fn report(err: &Error, json: bool) -> ExitCode {
    if json {
        let object = serde_json::json!({
            "error": err.message(),
            "hint": err.hint(),
            "code": err.exit_code(),
        });
        eprintln!("{object}");
    } else {
        eprintln!("tokenkeeper: {}", err.message());
        if let Some(hint) = err.hint() {
            eprintln!("hint: {hint}");
        }
    }
    ExitCode::from(err.exit_code())
}
