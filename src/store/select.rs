//! Which backend new secrets go to: `--backend`, else `TOKENKEEPER_BACKEND`, else `backend` in
//! the config file, else `auto` — and why, for `doctor`.

use std::path::Path;

use serde::Deserialize;

use super::{Backend, SecretServiceStore};
use crate::error::{Error, Result};
use crate::paths::Paths;

/// Environment variable naming the backend.
pub const ENV_BACKEND: &str = "TOKENKEEPER_BACKEND";

/// A backend as the user names it: one of the backends, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendArg {
    /// The Keychain on macOS; the Secret Service on Linux when one answers; else files.
    Auto,
    /// 0600 files under the data directory.
    File,
    /// The macOS Keychain (through /usr/bin/security).
    Keychain,
    /// The Secret Service over D-Bus (GNOME Keyring, KWallet).
    SecretService,
    /// OpenBao or Vault (KV v2), from BAO_ADDR and BAO_TOKEN.
    #[value(name = "openbao")]
    #[serde(rename = "openbao")]
    OpenBao,
    /// 1Password, through the `op` CLI (TOKENKEEPER_OP_VAULT, TOKENKEEPER_OP_ACCOUNT).
    #[value(name = "1password")]
    #[serde(rename = "1password")]
    OnePassword,
}

/// The backend in use, and where that choice came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub backend: Backend,
    pub why: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    backend: Option<BackendArg>,
}

/// `--backend`, given once per process by the command line.
static FLAG: std::sync::OnceLock<BackendArg> = std::sync::OnceLock::new();

/// Records the command line's `--backend` for every later `select`.
pub fn set_flag(arg: Option<BackendArg>) {
    if let Some(arg) = arg {
        let _ = FLAG.set(arg);
    }
}

/// The backend for new secrets, from the flag (`--backend`), the environment, the config
/// file or the platform's default.
pub fn select(paths: &Paths) -> Result<Selection> {
    select_with(paths, FLAG.get().copied())
}

/// `select`, with `flag` standing for the command line's `--backend`.
pub fn select_with(paths: &Paths, flag: Option<BackendArg>) -> Result<Selection> {
    if let Some(arg) = flag {
        return Ok(resolve(arg, "--backend"));
    }
    if let Some(text) = std::env::var(ENV_BACKEND).ok().filter(|v| !v.is_empty()) {
        let arg = <BackendArg as clap::ValueEnum>::from_str(&text, true).map_err(|_| {
            Error::usage(format!("{ENV_BACKEND}={text} is not a backend"))
                .with_hint("use one of: auto, file, keychain, secret-service, openbao, 1password")
        })?;
        return Ok(resolve(arg, ENV_BACKEND));
    }
    let config = paths.config_file();
    if let Some(arg) = read_config(&config)?.backend {
        return Ok(resolve(arg, &config.display().to_string()));
    }
    Ok(resolve(BackendArg::Auto, "the default"))
}

fn resolve(arg: BackendArg, source: &str) -> Selection {
    let (backend, why) = match arg {
        BackendArg::File => (Backend::File, format!("set by {source}")),
        BackendArg::Keychain => (Backend::Keychain, format!("set by {source}")),
        BackendArg::SecretService => (Backend::SecretService, format!("set by {source}")),
        BackendArg::OpenBao => (Backend::OpenBao, format!("set by {source}")),
        BackendArg::OnePassword => (Backend::OnePassword, format!("set by {source}")),
        BackendArg::Auto if cfg!(target_os = "macos") => (
            Backend::Keychain,
            format!("auto ({source}): the Keychain on macOS"),
        ),
        BackendArg::Auto if SecretServiceStore::reachable() => (
            Backend::SecretService,
            format!("auto ({source}): a Secret Service answers on the session bus"),
        ),
        BackendArg::Auto => (
            Backend::File,
            format!("auto ({source}): no Secret Service on the session bus, so 0600 files"),
        ),
    };
    Selection { backend, why }
}

fn read_config(path: &Path) -> Result<ConfigFile> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(ConfigFile::default()),
        Err(err) => return Err(Error::io("cannot read", path, err)),
    };
    toml::from_str(&text).map_err(|err| {
        let reason = err.message().to_string();
        Error::usage(format!("{}: {reason}", path.display())).with_hint(
            "e.g. backend = \"file\" (one of auto, file, keychain, secret-service, openbao, 1password)",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        assert!(
            read_config(&path).unwrap().backend.is_none(),
            "missing file"
        );
        std::fs::write(&path, "backend = \"keychain\"\n").unwrap();
        assert_eq!(
            read_config(&path).unwrap().backend,
            Some(BackendArg::Keychain)
        );
        std::fs::write(&path, "backend = \"vault9\"\n").unwrap();
        assert!(read_config(&path).is_err());
        std::fs::write(&path, "colour = \"blue\"\n").unwrap();
        assert!(read_config(&path).is_err(), "unknown keys are mistakes");
    }

    #[test]
    fn explicit_choices_say_where_they_came_from() {
        // `auto` depends on the session bus; the CLI tests cover it with and without one.
        assert!(
            resolve(BackendArg::Auto, "the default")
                .why
                .starts_with("auto (the default)")
        );
        let chosen = resolve(BackendArg::SecretService, "--backend");
        assert_eq!(chosen.backend, Backend::SecretService);
        assert_eq!(chosen.why, "set by --backend");
        assert_eq!(resolve(BackendArg::File, "x").backend, Backend::File);
        assert_eq!(
            resolve(BackendArg::Keychain, "x").backend,
            Backend::Keychain
        );
    }
}
