//! `tokenkeeper daemon [--once]` and `tokenkeeper daemon install`

use std::time::Duration;

use serde_json::json;

use super::output::{self, Format};
use crate::daemon::unit::{self, Manager};
use crate::daemon::{self, Daemon, Options, record};
use crate::durable;
use crate::error::{Error, Result};
use crate::paths::Paths;
use crate::perms;
use crate::refresh::Policy;
use crate::timefmt;
use jiff::Timestamp;

#[derive(Debug, clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "\
Each pass refreshes the slots that are due — expiring within the refresh margin
(TOKENKEEPER_REFRESH_MARGIN, default 10m), or idle so long their refresh token could lapse —
and, every --usage-every, reads each slot's usage for `list`. A slot that fails is retried with
backoff (30s, doubling, at most 30m) while the others carry on. One daemon runs per user.
Events are told once per occurrence: a slot needs a new login, a long-lived token expires
within 30 and within 7 days, a 5-hour or weekly window crosses 80 % and 95 %, a spent window
resets. They go to the log, to a desktop notification where a session bus (freedesktop
notifications) or macOS is there, and to --on-event CMD with the event as JSON on stdin:
  {\"kind\":\"quota-high\",\"agent\":\"claude\",\"slot\":\"work\",\"message\":\"…\",\"at\":…,\"details\":{…}}
SIGTERM or SIGINT lets a refresh in progress finish, then exits 0. Logs go to stderr (info by
default; -v, -vv or RUST_LOG for more); tokens are never logged.

Examples:
  tokenkeeper daemon                        run in the foreground
  tokenkeeper daemon --once                 one pass, for cron (exit 1 if a slot failed)
  tokenkeeper daemon --on-event 'curl -s -d @- ntfy.sh/my-topic'
  tokenkeeper daemon install                start it at login (systemd or launchd)
  tokenkeeper daemon install --print        show the unit instead of writing it"
)]
pub struct Args {
    #[command(subcommand)]
    pub action: Option<Action>,

    /// Make one pass, then exit: 0 when every slot is fine, 1 when one failed.
    #[arg(long)]
    pub once: bool,

    /// Time between passes (e.g. 30s, 1m).
    #[arg(long, default_value = "60s", value_parser = super::duration)]
    pub interval: Duration,

    /// Time between usage readings of each slot; 0 turns them off.
    #[arg(long, default_value = "5m", value_parser = super::duration)]
    pub usage_every: Duration,

    /// How many slots' usage to read at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,

    /// Only this agent's slots [default: every agent's].
    #[arg(long, value_enum)]
    pub agent: Option<crate::agent::Agent>,

    /// Run this shell command once per event, with the event as JSON on stdin (for ntfy, Slack,
    /// a status bar); TOKENKEEPER_EVENT holds its kind.
    #[arg(long, env = "TOKENKEEPER_ON_EVENT", value_name = "CMD")]
    pub on_event: Option<String>,

    /// No desktop notifications (they are shown where a session bus or macOS is there).
    #[arg(long, env = "TOKENKEEPER_NO_NOTIFY", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_notify: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Write a user service (systemd unit or launchd LaunchAgent) that runs the daemon.
    Install(InstallArgs),
    /// Whether a daemon runs (its pid), its last pass, the slot due next and what failed.
    Status,
    /// Stop the running daemon (SIGTERM; a refresh in progress finishes first).
    Stop,
    /// Remove the service definition `daemon install` wrote.
    Uninstall(ManagerArgs),
    /// Where the daemon's logs are, and the last of them when they can be read.
    Logs(ManagerArgs),
}

#[derive(Debug, clap::Args)]
pub struct ManagerArgs {
    /// The systemd user unit (the default on Linux).
    #[arg(long, conflicts_with = "launchd")]
    pub systemd: bool,

    /// The launchd LaunchAgent (the default on macOS).
    #[arg(long)]
    pub launchd: bool,
}

impl ManagerArgs {
    fn manager(&self) -> Manager {
        match (self.systemd, self.launchd) {
            (true, _) => Manager::Systemd,
            (_, true) => Manager::Launchd,
            _ => Manager::native(),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// A systemd user unit (the default on Linux).
    #[arg(long, conflicts_with = "launchd")]
    pub systemd: bool,

    /// A launchd LaunchAgent (the default on macOS).
    #[arg(long)]
    pub launchd: bool,

    /// Print the definition instead of writing it.
    #[arg(long)]
    pub print: bool,
}

pub fn run(args: Args, paths: &Paths, format: Format) -> Result<u8> {
    match args.action {
        Some(Action::Install(install_args)) => return install(install_args, format),
        Some(Action::Status) => return status(paths, format),
        Some(Action::Stop) => return stop(paths, format),
        Some(Action::Uninstall(which)) => return uninstall(which.manager(), format),
        Some(Action::Logs(which)) => return logs(which.manager(), format),
        None => {}
    }
    if args.interval.is_zero() {
        return Err(Error::usage("--interval must be more than 0"));
    }
    let options = Options {
        agents: match args.agent {
            Some(agent) => vec![agent],
            None => crate::agent::Agent::ALL.to_vec(),
        },
        interval: args.interval,
        usage_every: (!args.usage_every.is_zero()).then_some(args.usage_every),
        policy: Policy::from_env()?,
        jobs: args.jobs.into(),
        notifier: daemon::notify::Notifier {
            desktop: !args.no_notify && daemon::notify::desktop_present(),
            on_event: args.on_event.filter(|command| !command.trim().is_empty()),
        },
    };
    if args.once {
        let mut daemon = Daemon::start(paths.clone(), options)?;
        let pass = daemon.run_once()?;
        if format == Format::Json {
            output::json(&json!({
                "refreshed": pass.refreshed,
                "failed": pass.failed.iter().map(|(slot, error)| json!({"slot": slot, "error": error})).collect::<Vec<_>>(),
                "usage_readings": pass.usage_read,
            }))?;
        } else {
            for name in &pass.refreshed {
                output::line(&format!("refreshed '{name}'"))?;
            }
            for (name, error) in &pass.failed {
                if name.ends_with(" backend") {
                    output::notice(&format!("{name}: {error}"));
                } else {
                    output::notice(&format!("slot '{name}': {error}"));
                }
            }
        }
        if !pass.failed.is_empty() {
            return Err(Error::failure(format!(
                "{} slot(s) or backend(s) could not be refreshed or reached",
                pass.failed.len()
            )));
        }
        return Ok(0);
    }
    // Signals are taken over before the lock, so a stop request is never missed.
    let stop = daemon::stop_on_signals()?;
    let mut daemon = Daemon::start(paths.clone(), options)?;
    daemon.run(&stop)?;
    Ok(0)
}

fn install(args: InstallArgs, format: Format) -> Result<u8> {
    let manager = match (args.systemd, args.launchd) {
        (true, _) => Manager::Systemd,
        (_, true) => Manager::Launchd,
        _ => Manager::native(),
    };
    let exe = std::env::current_exe()
        .map_err(|err| Error::failure(format!("cannot find the tokenkeeper binary: {err}")))?;
    let text = manager.render(&exe)?;
    let uncarried: Vec<&str> = unit::NOT_CARRIED
        .into_iter()
        .filter(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
        .collect();
    if !uncarried.is_empty() {
        output::notice(&format!(
            "{} is not written into the service (a secret): the daemon reads OpenBao's token from ~/.vault-token (bao login) or the file {} names",
            uncarried.join(" and "),
            crate::store::ENV_OPENBAO_TOKEN_FILE
        ));
    }
    if args.print {
        print!("{text}");
        return Ok(0);
    }
    let path = manager.path()?;
    let dir = path.parent().expect("a service path has a directory");
    perms::ensure_dir(dir)?;
    let existed = path.exists();
    durable::write_atomic(&path, text.as_bytes())?;
    let enable = manager.enable_hint(&path);
    if format == Format::Json {
        output::json(&json!({"path": path, "updated": existed, "enable": enable}))?;
    } else {
        output::line(&format!(
            "{} {}",
            if existed { "updated" } else { "wrote" },
            path.display()
        ))?;
        output::line(&format!(
            "start it now and at every login with:\n  {enable}"
        ))?;
    }
    Ok(0)
}

fn status(paths: &Paths, format: Format) -> Result<u8> {
    let pid = daemon::running_pid(paths)?;
    let last = record::PassRecord::load(&record::path(paths));
    let now = Timestamp::now();
    if format == Format::Json {
        output::json(&json!({
            "running": pid.is_some(),
            "pid": pid,
            "last_pass": last,
        }))?;
        return Ok(if pid.is_some() { 0 } else { 1 });
    }
    output::line(&match pid {
        Some(pid) => format!("the daemon is running (pid {pid})"),
        None => "no daemon is running (start it: tokenkeeper daemon, or daemon install)".into(),
    })?;
    if let Some(last) = &last {
        output::line(&format!(
            "last pass {} by pid {}: {} refreshed, {} failed",
            timefmt::relative(last.at.min(now), now),
            last.pid,
            last.refreshed.len(),
            last.failed.len()
        ))?;
        if let Some((slot, at)) = &last.next_due {
            output::line(&format!(
                "next due: '{slot}' {}",
                timefmt::relative((*at).max(now), now)
            ))?;
        }
        for (what, error) in &last.failed {
            output::line(&format!("failed: {what}: {error}"))?;
        }
    }
    Ok(if pid.is_some() { 0 } else { 1 })
}

fn stop(paths: &Paths, format: Format) -> Result<u8> {
    let Some(pid) = daemon::running_pid(paths)? else {
        output::line("no daemon is running")?;
        return Ok(0);
    };
    let target = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
    nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGTERM)
        .map_err(|err| Error::failure(format!("cannot signal the daemon (pid {pid}): {err}")))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while daemon::running_pid(paths)?.is_some() {
        if std::time::Instant::now() >= deadline {
            return Err(
                Error::failure(format!("the daemon (pid {pid}) did not stop within 60s"))
                    .with_hint(format!("stop it by force: kill -9 {pid}")),
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if format == Format::Json {
        output::json(&json!({"stopped": pid}))?;
    } else {
        output::line(&format!("stopped the daemon (pid {pid})"))?;
    }
    Ok(0)
}

fn uninstall(manager: Manager, format: Format) -> Result<u8> {
    let path = manager.path()?;
    let removed = durable::remove(&path)?;
    let disable = manager.disable_hint(&path);
    if format == Format::Json {
        output::json(&json!({"path": path, "removed": removed, "disable": disable}))?;
    } else if removed {
        output::line(&format!("removed {}", path.display()))?;
        output::line(&format!("if it was running, also run:\n  {disable}"))?;
    } else {
        output::line(&format!(
            "nothing to remove: {} does not exist",
            path.display()
        ))?;
    }
    Ok(0)
}

fn logs(manager: Manager, format: Format) -> Result<u8> {
    let (place, command) = manager.logs();
    if format == Format::Json {
        output::json(&json!({"logs": place, "command": command}))?;
        return Ok(0);
    }
    output::line(&format!("the daemon's logs: {place}"))?;
    output::line(&format!("  {command}"))?;
    Ok(0)
}
