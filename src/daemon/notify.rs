//! Where the daemon's events go: a desktop notification where there is a desktop (the
//! freedesktop notification service on the session bus, or `osascript` on macOS), and
//! `--on-event CMD`, run with the event as JSON on stdin (for ntfy, Slack, a status bar).
//! Delivery never stops a pass: what fails is logged.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::alerts::Event;

/// How long an `--on-event` command may run before it is killed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the notification service may take to answer.
const DESKTOP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Default)]
pub struct Notifier {
    /// Desktop notifications, where a desktop answers.
    pub desktop: bool,
    /// A shell command run once per event.
    pub on_event: Option<String>,
}

impl Notifier {
    pub fn deliver(&self, event: &Event) {
        info!(kind = event.kind, slot = %event.slot, "{}", event.message);
        if self.desktop
            && let Err(why) = desktop(event)
        {
            warn!("cannot show a desktop notification: {why}");
        }
        if let Some(command) = &self.on_event
            && let Err(why) = run(command, event)
        {
            warn!("the --on-event command failed: {why}");
        }
    }
}

fn run(command: &str, event: &Event) -> Result<(), String> {
    let json = serde_json::to_vec(event).map_err(|err| err.to_string())?;
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .env("TOKENKEEPER_EVENT", event.kind)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|err| format!("cannot start it: {err}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its input is its own business.
        let _ = stdin.write_all(&json);
        let _ = stdin.write_all(b"\n");
    }
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("it exited with {status}")),
            Ok(None) if started.elapsed() > COMMAND_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("killed after {}s", COMMAND_TIMEOUT.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(err) => return Err(err.to_string()),
        }
    }
}

#[cfg(target_os = "macos")]
fn desktop(event: &Event) -> Result<(), String> {
    // The message goes in as an argument of the script, never into its text.
    let status = Command::new("/usr/bin/osascript")
        .args([
            "-e",
            "on run argv",
            "-e",
            "display notification (item 1 of argv) with title \"tokenkeeper\"",
            "-e",
            "end run",
            &event.message,
        ])
        .stdout(Stdio::null())
        .status()
        .map_err(|err| err.to_string())?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("osascript exited with {status}"))
}

#[cfg(not(target_os = "macos"))]
fn desktop(event: &Event) -> Result<(), String> {
    use std::collections::HashMap;
    let summary = match event.kind {
        "needs-login" => "tokenkeeper: a new login is needed",
        "expires-soon" => "tokenkeeper: a token expires soon",
        "quota-high" => "tokenkeeper: quota running low",
        "quota-reset" => "tokenkeeper: quota is back",
        _ => "tokenkeeper",
    };
    crate::net::block_on(async {
        let notify = async {
            let bus = zbus::Connection::session().await?;
            let hints: HashMap<&str, zbus::zvariant::Value<'_>> = HashMap::new();
            bus.call_method(
                Some("org.freedesktop.Notifications"),
                "/org/freedesktop/Notifications",
                Some("org.freedesktop.Notifications"),
                "Notify",
                &(
                    "tokenkeeper",
                    0u32,
                    "",
                    summary,
                    event.message.as_str(),
                    Vec::<&str>::new(),
                    hints,
                    -1i32,
                ),
            )
            .await
            .map(|_| ())
        };
        match tokio::time::timeout(DESKTOP_TIMEOUT, notify).await {
            Ok(result) => result.map_err(|err| err.to_string()),
            Err(_) => Err("the notification service did not answer".to_string()),
        }
    })
}

/// Whether a desktop may be there to show notifications.
pub fn desktop_present() -> bool {
    cfg!(target_os = "macos") || std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some()
}
