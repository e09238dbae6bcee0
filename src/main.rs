//! The `tokenkeeper` binary: parse, run, turn the result into an exit code.
#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tokenkeeper::cli::{self, Cli, Command};
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon and the proxy report what they do by default; other commands only warn.
    let chatty = matches!(cli.command, Command::Daemon(_) | Command::Proxy(_));
    // The proxy logs a line per request: written from a thread of its own, so a slow stderr
    // never holds up a request. The guard flushes what is queued when main returns.
    let _flush = init_logging(
        cli.verbose + u8::from(chatty),
        matches!(cli.command, Command::Proxy(_)),
    );
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

/// Log lines the proxy may queue for its writer thread: bursts fit, and the queue's memory
/// (preallocated) stays small.
const LOG_QUEUE_LINES: usize = 4096;

/// Logs go to stderr; `-v` info, `-vv` debug, `-vvv` trace, or `RUST_LOG` for full control.
fn init_logging(verbose: u8, background: bool) -> Option<WorkerGuard> {
    let default = match verbose {
        0 => "warn",
        1 => "tokenkeeper=info",
        2 => "tokenkeeper=debug",
        _ => "tokenkeeper=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    if !background {
        logs.with_writer(std::io::stderr).init();
        return None;
    }
    // Not lossy: when the queue is full a request waits rather than its log line being lost.
    let (writer, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .lossy(false)
        .finish(std::io::BufWriter::new(std::io::stderr()));
    logs.with_writer(writer).init();
    Some(guard)
}
