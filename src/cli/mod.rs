//! The command line: argument definitions (clap derive) and one module per command.
//!
//! Parsing only validates; each command then opens what it needs. So `--help` and `--version`
//! never touch a secret store.

mod add;
mod check;
pub mod completions;
mod daemon;
mod doctor;
mod exec;
mod export;
mod get;
mod github_sync;
mod list;
mod login;
mod migrate;
mod output;
mod proxy;
mod proxy_clients;
mod ralph;
mod refresh;
mod remove;
mod rename;
mod setup;
mod status;
pub mod style;
mod ui;
mod usage;
mod use_slot;

use clap::{Parser, Subcommand};

use crate::agent::Agent;
use crate::error::Result;
use crate::paths::Paths;
pub use output::Format;

const AFTER_HELP: &str = "\
Examples:
  tokenkeeper add                       register the account Claude Code is logged in with
  tokenkeeper add work --from stdin < creds.json
  tokenkeeper list                      show every slot, the active one starred
  tokenkeeper use work                  make Claude Code use slot 'work'
  tokenkeeper get                       print the active slot's access token
  tokenkeeper usage --all               5-hour and 7-day quota of every slot
  tokenkeeper daemon install            keep every slot refreshed in the background
  tokenkeeper exec -- claude            run Claude Code without the real token in its reach
  tokenkeeper proxy --slot work         serve the slot's token to clients with a phantom one
  claude setup-token | tokenkeeper store-token

Files live under $TOKENKEEPER_HOME, or the XDG config and data directories.
Exit codes: 0 success, 1 runtime failure (missing, expired, refused), 2 usage error.";

/// Keeps the OAuth credentials of AI coding agents safe, alive and out of the agent's reach.
#[derive(Debug, Parser)]
#[command(name = "tokenkeeper", version, after_help = AFTER_HELP, max_term_width = 100)]
pub struct Cli {
    /// Output format for commands that print data (errors too: one JSON object on stderr).
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// Same as --format json.
    #[arg(long, global = true)]
    pub json: bool,

    /// Colour: on a terminal only (auto, and never with NO_COLOR), always, or never.
    #[arg(long, global = true, value_enum, default_value_t = style::ColorChoice::Auto)]
    pub color: style::ColorChoice,

    /// Where new secrets go [default: TOKENKEEPER_BACKEND, the config file, or auto].
    #[arg(long, global = true, value_enum)]
    pub backend: Option<crate::store::BackendArg>,

    /// No warnings on stderr (expiry within 30 days, notices); errors are still reported.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Log what tokenkeeper does to stderr (-v info, -vv debug); tokens are never logged.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register a credential as a slot (by default the one Claude Code is logged in with).
    Add(add::Args),
    /// Log in to another account through Claude Code, without logging out the current one.
    Login(login::Args),
    /// Show every slot: active marker, name, kind, email, plan, expiry and quota used.
    #[command(alias = "ls")]
    List(list::Args),
    /// Make a slot the credential Claude Code uses.
    Use(use_slot::Args),
    /// The active slot of each agent in one line (no network; for a shell prompt).
    #[command(alias = "whoami")]
    Status(status::Args),
    /// Print a slot's access token, for piping into another program.
    Get(get::Args),
    /// Exit 0 if a slot can be used now (valid, or renewed on use), 1 if it needs a login.
    Check(check::Args),
    /// Refresh a slot's tokens now (when due, or with --force).
    Refresh(refresh::Args),
    /// Keep every slot alive in the background: refresh when due, read usage.
    Daemon(daemon::Args),
    /// Show a slot's quota usage: 5-hour, 7-day and per-model windows.
    Usage(usage::Args),
    /// Print a slot's credential JSON, or write it to a file.
    Export(export::Args),
    /// Delete a slot.
    #[command(alias = "rm")]
    Remove(remove::Args),
    /// Give a slot another name.
    #[command(alias = "mv")]
    Rename(rename::Args),
    /// Run a credential-injecting proxy: clients send a phantom token, upstream gets the real one.
    Proxy(Box<proxy::Args>),
    /// Named client tokens for a proxy used by other machines: add, remove, list.
    ProxyClients(proxy_clients::Args),
    /// Run a command (e.g. claude) behind a private proxy, so it never holds the real token.
    Exec(exec::Args),
    /// Move slots' secrets to another backend (copy, verify, switch, delete the old copy).
    Migrate(migrate::Args),
    /// Show which secret store is in use and why, and whether it can be reached.
    Doctor(doctor::Args),
    /// Make a long-lived token with `claude setup-token` and keep it as a slot (for CI).
    Setup(setup::SetupArgs),
    /// Replace a long-lived slot's token with a new one from `claude setup-token`.
    Rotate(setup::RotateArgs),
    /// Take a slot's token out of tokenkeeper and say where to revoke it at the provider.
    Revoke(setup::RevokeArgs),
    /// Put a slot's token into GitHub Actions secrets, sealed to the repository's key.
    GithubSync(github_sync::Args),
    /// Store a long-lived token read from stdin (bare token or JSON) for an agent.
    StoreToken(ralph::StoreArgs),
    /// Exit 0 if an agent's stored long-lived token is valid, 1 if expired or missing.
    CheckToken(ralph::AgentArgs),
    /// Every slot on one screen: quota bars, resets, expiry; keys to use, refresh, rename, remove.
    Ui(ui::Args),
    /// Print an agent's stored long-lived token (nothing else) for piping.
    GetToken(ralph::AgentArgs),
    /// Print the shell script that completes commands, flags and slot names.
    Completions(completions::CompletionsArgs),
    /// Print the manual page, or write one per command into a directory.
    Man(completions::ManArgs),
}

/// `--agent` for slot commands.
#[derive(Debug, clap::Args)]
pub struct AgentArg {
    /// The coding agent whose slots to work on.
    #[arg(long, value_enum, default_value_t = Agent::default())]
    pub agent: Agent,
}

/// `[NAME|--all]` for commands that work on one slot or every slot of an agent.
#[derive(Debug, clap::Args)]
pub struct Selection {
    /// Slot name or #N [default: the active slot].
    #[arg(conflicts_with = "all", add = slot_completer())]
    pub slot: Option<String>,

    /// Every slot of the agent.
    #[arg(long)]
    pub all: bool,
}

/// The command line with an `--agent` given before the subcommand moved to just after it,
/// where every subcommand takes it: `tokenkeeper --agent codex check-token` (the ralph
/// spec's order) means `tokenkeeper check-token --agent codex`. (`--format`, `--backend` and
/// `-v` are global flags already, taken on either side.)
pub fn hoist_agent(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    use clap::CommandFactory;
    // Most command lines have no --agent: leave them be without building clap's tree.
    let mentions_agent = args.iter().any(|a| {
        let a = a.to_string_lossy();
        a == "--agent" || a.starts_with("--agent=")
    });
    if !mentions_agent {
        return args;
    }
    let command = Cli::command();
    let is_subcommand = |word: &str| {
        command
            .get_subcommands()
            .any(|sub| sub.get_name() == word || sub.get_all_aliases().any(|alias| alias == word))
    };
    let mut agent = Vec::new();
    let mut rest = Vec::new();
    let mut words = args.into_iter();
    rest.extend(words.next());
    while let Some(word) = words.next() {
        let text = word.to_string_lossy().into_owned();
        if text == "--agent" {
            agent.push(word);
            agent.extend(words.next());
        } else if text.starts_with("--agent=") {
            agent.push(word);
        } else if text == "--" || is_subcommand(&text) {
            rest.push(word);
            rest.append(&mut agent);
            rest.extend(words.by_ref());
        } else {
            if matches!(text.as_str(), "--format" | "--backend") {
                rest.push(word);
                rest.extend(words.next());
                continue;
            }
            rest.push(word);
        }
    }
    // No subcommand followed: leave the words where they were, for clap to report.
    rest.extend(agent);
    rest
}

/// Completes slot names in the shell: the names in the catalog that start with what was
/// typed, each with its account's email. Reads the catalog only (no lock, no network).
pub fn slot_completer() -> clap_complete::engine::ArgValueCompleter {
    clap_complete::engine::ArgValueCompleter::new(|current: &std::ffi::OsStr| {
        let typed = current.to_string_lossy();
        let Ok(paths) = Paths::from_env() else {
            return Vec::new();
        };
        let Ok(catalog) = crate::catalog::Catalog::load(&paths.catalog_file()) else {
            return Vec::new();
        };
        catalog
            .slots
            .iter()
            .filter(|slot| slot.name.starts_with(typed.as_ref()))
            .map(|slot| {
                let candidate = clap_complete::engine::CompletionCandidate::new(&slot.name);
                match &slot.email {
                    Some(email) => candidate.help(Some(email.clone().into())),
                    None => candidate,
                }
            })
            .collect()
    })
}

/// A slot's token about to be handed out: refreshed when due, refused when it has expired
/// anyway, and warned about on stderr when its end is near.
fn usable_token(
    paths: &Paths,
    agent: Agent,
    selector: Option<&str>,
) -> Result<crate::refresh::Fresh> {
    let policy = crate::refresh::Policy::from_env()?;
    let fresh =
        crate::refresh::ensure_fresh(paths, agent, selector, false, &policy)?.unexpired()?;
    output::warn_expiry(&fresh.slot);
    Ok(fresh)
}

/// Parses a duration argument: `30s`, `5m`, `1h 30m`, or plain seconds.
fn duration(text: &str) -> std::result::Result<std::time::Duration, String> {
    crate::refresh::parse_duration(text)
        .and_then(|d| std::time::Duration::try_from(d).ok())
        .ok_or_else(|| format!("'{text}' is not a duration (e.g. 30s, 5m, 1h)"))
}

/// Runs the parsed command; returns the exit code for commands that report a state by it.
pub fn run(cli: Cli) -> Result<u8> {
    style::init(cli.color);
    output::set_quiet(cli.quiet);
    let paths = Paths::from_env()?;
    crate::store::set_flag(cli.backend);
    let format = cli.format;
    match cli.command {
        Command::Add(args) => add::run(args, &paths, format),
        Command::List(args) => list::run(args, &paths, format),
        Command::Login(args) => login::run(args, &paths, format),
        Command::Use(args) => use_slot::run(args, &paths, format),
        Command::Status(args) => status::run(args, &paths, format),
        Command::Get(args) => get::run(args, &paths, format),
        Command::Check(args) => check::run(args, &paths, format),
        Command::Export(args) => export::run(args, &paths, format),
        Command::Refresh(args) => refresh::run(args, &paths, format),
        Command::Daemon(args) => daemon::run(args, &paths, format),
        Command::Usage(args) => usage::run(args, &paths, format),
        Command::Remove(args) => remove::run(args, &paths, format),
        Command::Rename(args) => rename::run(args, &paths, format),
        Command::Migrate(args) => migrate::run(args, &paths, format),
        Command::Doctor(args) => doctor::run(args, &paths, format),
        Command::Proxy(args) => proxy::run(*args, &paths, format),
        Command::ProxyClients(args) => proxy_clients::run(args, &paths, format),
        Command::Exec(args) => exec::run(args, &paths),
        Command::Setup(args) => setup::setup(args, &paths, format),
        Command::Rotate(args) => setup::rotate(args, &paths, format),
        Command::Revoke(args) => setup::revoke(args, &paths, format),
        Command::GithubSync(args) => github_sync::run(args, &paths, format),
        Command::StoreToken(args) => ralph::store(args, &paths, format),
        Command::CheckToken(args) => ralph::check(args, &paths, format),
        Command::GetToken(args) => ralph::get(args, &paths, format),
        Command::Ui(args) => ui::run(args, &paths, format),
        Command::Completions(args) => completions::completions(args),
        Command::Man(args) => completions::man(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hoisted(words: &str) -> String {
        let args = words.split(' ').map(std::ffi::OsString::from).collect();
        hoist_agent(args)
            .iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn an_agent_before_the_subcommand_moves_after_it() {
        assert_eq!(
            hoisted("tk --agent codex check-token"),
            "tk check-token --agent codex"
        );
        assert_eq!(
            hoisted("tk --agent=codex -v get-token"),
            "tk -v get-token --agent=codex"
        );
        assert_eq!(
            hoisted("tk --format json --agent codex ls --all"),
            "tk --format json ls --agent codex --all"
        );
        assert_eq!(
            hoisted("tk check-token --agent codex"),
            "tk check-token --agent codex"
        );
        assert_eq!(hoisted("tk --agent codex"), "tk --agent codex");
        // Words after the subcommand are never touched (an exec'd command's own --agent).
        assert_eq!(
            hoisted("tk exec -- prog --agent x"),
            "tk exec -- prog --agent x"
        );
    }
}
