//! `tokenkeeper exec [SLOT] -- COMMAND…`: runs an agent behind a private, ephemeral proxy.

use std::ffi::OsString;
use std::io::ErrorKind;
use std::net::Ipv4Addr;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::SignalsInfo;
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::low_level::siginfo::Cause;
use tracing::debug;

use super::AgentArg;
use super::proxy::{AuthArgs, UpstreamArgs};
use crate::error::{Error, Result};
use crate::paths::Paths;
use crate::proxy::{self, Proxy, SlotPool, SlotTokens, Target, TokenSource};
use crate::refresh;

/// How long the private proxy lets streams finish once the command has exited.
const GRACE: Duration = Duration::from_secs(2);
/// Signals passed on to the command when they are sent to tokenkeeper.
const FORWARDED: [i32; 6] = [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2];

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Starts a proxy on 127.0.0.1 (random port, random client token) that holds the slot's real
token, and runs COMMAND with ANTHROPIC_BASE_URL pointing at it and CLAUDE_CODE_OAUTH_TOKEN set to
the phantom client token; ANTHROPIC_API_KEY, ANTHROPIC_AUTH_TOKEN and
CLAUDE_CODE_OAUTH_TOKEN_FILE_DESCRIPTOR are removed from its environment. The real token never
enters the command's environment, and is refreshed as needed while it runs.
Signals sent to tokenkeeper are passed on; exits with the command's exit code (128+N when a
signal N ended it).

Examples:
  tokenkeeper exec -- claude
  tokenkeeper exec work -- claude -p 'summarise README.md'
  tokenkeeper exec ci --env -- ./run-agent.sh      (real token in the environment, for CI)
  tokenkeeper exec --pool all -- claude            (another account when one's limit is reached)")]
pub struct Args {
    /// Slot name or #N [default: the active slot].
    #[arg(add = super::slot_completer())]
    pub slot: Option<String>,

    #[command(flatten)]
    pub agent: AgentArg,

    /// Serve COMMAND from several slots of the agent (comma-separated names, or `all`): a
    /// request whose slot has reached its limit goes again on another, and COMMAND sees no
    /// error (see `tokenkeeper proxy --help`).
    #[arg(
        long,
        value_name = "NAME,...|all",
        value_delimiter = ',',
        conflicts_with_all = ["slot", "env"]
    )]
    pub pool: Vec<String>,

    /// How the pool picks a slot: `best` or `next`.
    #[arg(long, value_enum, default_value = "best", value_name = "HOW")]
    pub strategy: crate::pool::Strategy,

    /// Put the real token in COMMAND's environment instead of running a proxy (for CI, where
    /// nothing else runs beside the agent). Refreshed first when due; an expired token that
    /// cannot be refreshed stops exec before COMMAND runs.
    #[arg(long)]
    pub env: bool,

    /// Base URL the private proxy forwards to [default: the provider's API, or
    /// TOKENKEEPER_CLAUDE_API_URL]: a gateway in front of it, say.
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,

    #[command(flatten)]
    pub route: AuthArgs,

    /// Start COMMAND without first asking the provider whether the token is still accepted
    /// (the probe's answer is cached for TOKENKEEPER_PROBE_TTL, default 10m).
    #[arg(long)]
    pub no_probe: bool,

    #[command(flatten)]
    pub upstream: UpstreamArgs,

    /// The command to run, and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

pub fn run(args: Args, paths: &Paths) -> Result<u8> {
    let agent = args.agent.agent;
    let mut command = Command::new(&args.command[0]);
    command.args(&args.command[1..]);
    for name in agent.overriding_env() {
        command.env_remove(name);
    }

    if args.env {
        let fresh = super::usable_token(paths, agent, args.slot.as_deref())?;
        if !args.no_probe {
            probe_before_launch(paths, &fresh)?;
        }
        eprintln!(
            "tokenkeeper: warning: the real token of slot '{}' is in the command's environment, readable by everything it runs; leave out --env to keep it behind a proxy",
            fresh.slot.name
        );
        agent.put_token_in_env(&mut command, &fresh.credential)?;
        return supervise(command, &args.command[0]);
    }

    let pool = match args.pool.is_empty() {
        true => None,
        false => Some(SlotPool::open(paths, agent, &args.pool, args.strategy)?),
    };
    // What the command is set up with (its phantom login) follows the slot, or the pool's
    // first member.
    let first = pool
        .as_ref()
        .map(|pool| pool.member(0).tokens.name().to_string());
    let fresh = super::usable_token(paths, agent, first.as_deref().or(args.slot.as_deref()))?;
    if !args.no_probe {
        probe_before_launch(paths, &fresh)?;
    }
    let plan = agent.exec_plan(&fresh.credential)?;
    let target = match &args.target {
        Some(url) => Target::parse(url)?,
        None => Target::parse(&plan.default_target)?,
    };
    let mut settings = args.upstream.settings(
        target,
        args.route.auth()?,
        proxy::Clients::One(plan.client_token.clone()),
    );
    settings.local_answers = plan.local_answers.clone();
    let tokens = match pool {
        Some(pool) => TokenSource::Pool(Box::new(pool)),
        None => {
            let tokens = SlotTokens::open(paths.clone(), agent, args.slot.clone())?;
            debug!(slot = tokens.name(), "proxy for the command");
            TokenSource::Slot(Box::new(tokens))
        }
    };
    let proxy = Arc::new(Proxy::new(settings, tokens)?);
    let listener = proxy::bind((Ipv4Addr::LOCALHOST, 0).into())
        .map_err(|err| Error::failure(format!("cannot start the proxy: {err}")))?;
    // One agent's requests: one thread is plenty.
    let running = proxy::start(proxy, listener, 1, GRACE)?;
    let address = running.addr();

    let guard = match plan.prepare_child(&mut command, address) {
        Ok(guard) => guard,
        Err(err) => {
            running.stop();
            return Err(err);
        }
    };
    let code = supervise(command, &args.command[0]);
    drop(guard);
    running.stop();
    code
}

/// Asks the provider (or the probe cache) whether the slot's token is still accepted, so a
/// token revoked or rotated elsewhere stops here rather than as a 401 inside the agent's
/// session. No answer (offline) is only a warning.
pub(super) fn probe_before_launch(paths: &Paths, fresh: &refresh::Fresh) -> Result<()> {
    let probe = crate::probe::probe(
        paths,
        crate::agent::Agent::from_name(&fresh.slot.agent).unwrap_or_default(),
        &fresh.credential,
        false,
    )?;
    match probe.verdict {
        crate::probe::Verdict::Valid => Ok(()),
        crate::probe::Verdict::Refused { status } => {
            let hint = match fresh.credential.kind() {
                crate::agent::credential::Kind::LongLived => {
                    format!("make a new one: tokenkeeper rotate {}", fresh.slot.name)
                }
                crate::agent::credential::Kind::Oauth => format!(
                    "log in again with `claude` (/login), then: tokenkeeper add {}",
                    fresh.slot.name
                ),
            };
            Err(Error::failure(format!(
                "the provider refuses the token of slot '{}' (HTTP {status}): it was revoked, replaced or has expired",
                fresh.slot.name
            ))
            .with_hint(hint))
        }
        crate::probe::Verdict::Unknown { why } => {
            super::output::warn(&format!(
                "could not check that the token of slot '{}' is still accepted: {why}",
                fresh.slot.name
            ));
            Ok(())
        }
    }
}

/// Runs the command to its end, passing on signals sent to tokenkeeper, and returns its exit
/// code the way a shell reports it.
fn supervise(mut command: Command, program: &OsString) -> Result<u8> {
    // Installed before the spawn, so no signal falls between the two.
    let mut signals = SignalsInfo::<WithOrigin>::new(FORWARDED)
        .map_err(|err| Error::failure(format!("cannot watch signals: {err}")))?;
    let mut child = command.spawn().map_err(|err| {
        let name = program.to_string_lossy();
        match err.kind() {
            ErrorKind::NotFound => {
                Error::failure(format!("cannot run '{name}': command not found"))
                    .with_exit_code(127)
            }
            ErrorKind::PermissionDenied => {
                Error::failure(format!("cannot run '{name}': permission denied"))
                    .with_exit_code(126)
            }
            _ => Error::failure(format!("cannot run '{name}': {err}")).with_exit_code(126),
        }
    })?;
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pids fit in i32"));
    let handle = signals.handle();
    let forwarder = std::thread::spawn(move || {
        for origin in signals.forever() {
            // A terminal's ^C or hang-up (sent by the kernel) reaches the command already, as
            // part of the foreground process group; passing it on would deliver it twice.
            if origin.cause == Cause::Kernel {
                continue;
            }
            if let Ok(signal) = Signal::try_from(origin.signal) {
                debug!(%signal, "passing the signal on");
                let _ = kill(pid, signal);
            }
        }
    });
    let status = child
        .wait()
        .map_err(|err| Error::failure(format!("cannot wait for the command: {err}")));
    handle.close();
    let _ = forwarder.join();
    let status = status?;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(255),
        (None, None) => 1,
    })
}
