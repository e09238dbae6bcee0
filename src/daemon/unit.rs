//! Service definitions that start the daemon at login: a systemd user unit or a launchd
//! LaunchAgent. They carry over the environment variables that decide where tokenkeeper and
//! Claude Code keep their files (never a secret: none of these hold one).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::paths;

/// Variables a service needs to find the same files, the same backend and the same provider
/// as the shell that installed it. None holds a secret; the secret ones (`BAO_TOKEN`,
/// `VAULT_TOKEN`) are never carried: the daemon reads a token file instead.
const CARRIED_ENV: [&str; 27] = [
    "TOKENKEEPER_HOME",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "CLAUDE_CONFIG_DIR",
    "CLAUDE_SECURESTORAGE_CONFIG_DIR",
    "TOKENKEEPER_CLAUDE_LIVE",
    "TOKENKEEPER_REFRESH_MARGIN",
    "TOKENKEEPER_TIMEOUT",
    "TOKENKEEPER_LOCK_TIMEOUT",
    "TOKENKEEPER_CLAUDE_OAUTH_URL",
    "TOKENKEEPER_CLAUDE_API_URL",
    "TOKENKEEPER_CLAUDE_CLIENT_ID",
    "TOKENKEEPER_CLAUDE_USER_AGENT",
    "TOKENKEEPER_BACKEND",
    "BAO_ADDR",
    "VAULT_ADDR",
    "BAO_CACERT",
    "VAULT_CACERT",
    "TOKENKEEPER_OPENBAO_MOUNT",
    "TOKENKEEPER_OPENBAO_PREFIX",
    "TOKENKEEPER_OPENBAO_TOKEN_FILE",
    "TOKENKEEPER_OP_VAULT",
    "TOKENKEEPER_OP_ACCOUNT",
    "OP_ACCOUNT",
    "SSL_CERT_FILE",
    "TOKENKEEPER_ON_EVENT",
    "TOKENKEEPER_NO_NOTIFY",
];

/// Secret variables a service must not hold; `daemon install` says how to do without them.
pub const NOT_CARRIED: [&str; 2] = ["BAO_TOKEN", "VAULT_TOKEN"];

pub const SYSTEMD_NAME: &str = "tokenkeeper.service";
pub const LAUNCHD_LABEL: &str = "dev.tokenkeeper.daemon";
/// Where the LaunchAgent sends the daemon's stderr, under the home directory.
const LAUNCHD_LOG: &str = "Library/Logs/tokenkeeper.log";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    Systemd,
    Launchd,
}

impl Manager {
    /// launchd on macOS, systemd elsewhere.
    pub fn native() -> Self {
        if cfg!(target_os = "macos") {
            Manager::Launchd
        } else {
            Manager::Systemd
        }
    }

    /// Where the definition goes for the current user.
    pub fn path(self) -> Result<PathBuf> {
        Ok(match self {
            Manager::Systemd => paths::env_path("XDG_CONFIG_HOME")
                .unwrap_or(paths::home_dir()?.join(".config"))
                .join("systemd/user")
                .join(SYSTEMD_NAME),
            Manager::Launchd => paths::home_dir()?
                .join("Library/LaunchAgents")
                .join(format!("{LAUNCHD_LABEL}.plist")),
        })
    }

    /// What to run after writing the definition.
    pub fn enable_hint(self, path: &Path) -> String {
        match self {
            Manager::Systemd => format!(
                "systemctl --user daemon-reload && systemctl --user enable --now {SYSTEMD_NAME}"
            ),
            Manager::Launchd => format!("launchctl bootstrap gui/$(id -u) {}", path.display()),
        }
    }

    /// What to run before removing the definition of a running service.
    pub fn disable_hint(self, path: &Path) -> String {
        match self {
            Manager::Systemd => format!(
                "systemctl --user disable --now {SYSTEMD_NAME} && systemctl --user daemon-reload"
            ),
            Manager::Launchd => format!("launchctl bootout gui/$(id -u) {}", path.display()),
        }
    }

    /// Where the service's logs go, and the command that shows them.
    pub fn logs(self) -> (String, String) {
        match self {
            Manager::Systemd => (
                "the systemd journal".to_string(),
                format!("journalctl --user -u {SYSTEMD_NAME} -e"),
            ),
            Manager::Launchd => {
                let log = paths::home_dir()
                    .map(|home| home.join(LAUNCHD_LOG).display().to_string())
                    .unwrap_or_else(|_| format!("~/{LAUNCHD_LOG}"));
                (log.clone(), format!("tail -f '{log}'"))
            }
        }
    }

    /// The definition's text for running `exe daemon`.
    pub fn render(self, exe: &Path) -> Result<String> {
        let exe = exe
            .to_str()
            .ok_or_else(|| Error::failure("the path of the tokenkeeper binary is not UTF-8"))?;
        if exe.chars().any(char::is_control) {
            return Err(Error::failure(
                "the path of the tokenkeeper binary holds a control character; refusing to write it into a service definition",
            ));
        }
        let mut env: Vec<(&str, String)> = Vec::new();
        for name in CARRIED_ENV {
            let Some(value) = std::env::var(name).ok().filter(|v| !v.is_empty()) else {
                continue;
            };
            // A newline would end the line and start another: a unit line of the caller's
            // choosing (ExecStartPre=…). Refused, not escaped: no such value is meant.
            if value.chars().any(char::is_control) {
                return Err(Error::usage(format!(
                    "{name} holds a control character (a newline?); refusing to write it into a service definition"
                ))
                .with_hint(format!("set {name} to a plain value, or unset it, and try again")));
            }
            env.push((name, value));
        }
        Ok(match self {
            Manager::Systemd => systemd(exe, &env),
            Manager::Launchd => launchd(exe, &env)?,
        })
    }
}

fn systemd(exe: &str, env: &[(&str, String)]) -> String {
    let mut unit = String::from(
        "[Unit]\n\
         Description=tokenkeeper: keeps AI coding agents' OAuth credentials alive\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         Type=simple\n",
    );
    unit.push_str(&format!("ExecStart={} daemon\n", systemd_quote(exe)));
    for (name, value) in env {
        unit.push_str(&format!(
            "Environment={}\n",
            systemd_quote(&format!("{name}={value}"))
        ));
    }
    unit.push_str(
        "Restart=on-failure\n\
         RestartSec=30\n\
         UMask=0077\n\
         NoNewPrivileges=yes\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
    );
    unit
}

/// A double-quoted systemd word: `\` and `"` escaped, `%` doubled so no specifier expands.
fn systemd_quote(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('%', "%%");
    format!("\"{escaped}\"")
}

fn launchd(exe: &str, env: &[(&str, String)]) -> Result<String> {
    let log = paths::home_dir()?.join(LAUNCHD_LOG);
    let log = xml(&log.display().to_string());
    let mut vars = String::new();
    if !env.is_empty() {
        vars.push_str("  <key>EnvironmentVariables</key>\n  <dict>\n");
        for (name, value) in env {
            vars.push_str(&format!(
                "    <key>{}</key>\n    <string>{}</string>\n",
                xml(name),
                xml(value)
            ));
        }
        vars.push_str("  </dict>\n");
    }
    Ok(format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>Label</key>
  <string>{LAUNCHD_LABEL}</string>
  <key>ProgramArguments</key>
  <array>
    <string>{}</string>
    <string>daemon</string>
  </array>
{vars}  <key>RunAtLoad</key>
  <true/>
  <key>KeepAlive</key>
  <dict>
    <key>SuccessfulExit</key>
    <false/>
  </dict>
  <key>ThrottleInterval</key>
  <integer>30</integer>
  <key>StandardErrorPath</key>
  <string>{log}</string>
</dict>
</plist>
"#,
        xml(exe)
    ))
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_words_are_quoted_and_specifiers_escaped() {
        assert_eq!(systemd_quote("/a b/x"), "\"/a b/x\"");
        assert_eq!(systemd_quote("a\"b\\c%d"), "\"a\\\"b\\\\c%%d\"");
    }

    #[test]
    fn units_run_the_daemon_with_the_carried_environment() {
        let env = [("TOKENKEEPER_HOME", "/srv/tk & co".to_string())];
        let unit = systemd("/usr/bin/tokenkeeper", &env);
        assert!(unit.contains("ExecStart=\"/usr/bin/tokenkeeper\" daemon\n"));
        assert!(unit.contains("Environment=\"TOKENKEEPER_HOME=/srv/tk & co\"\n"));
        assert!(unit.contains("WantedBy=default.target"));
        let plist = launchd("/usr/local/bin/tokenkeeper", &env).unwrap();
        assert!(
            plist.contains(
                "<string>/usr/local/bin/tokenkeeper</string>\n    <string>daemon</string>"
            )
        );
        assert!(plist.contains("<string>/srv/tk &amp; co</string>"));
    }
}
