//! The macOS Keychain backend, through `/usr/bin/security` — the tool Claude Code itself uses,
//! so an item either of them writes the other reads without a prompt.
//!
//! A secret never goes in `security`'s arguments, where every local user could read it: writes
//! send `add-generic-password … -X <hex>` as a command on the stdin of `security -i`, reads get
//! the value on stdout. A write counts as done when `security` reported no error and the item
//! is there.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::store::{SecretKey, SecretStore};

/// Where macOS keeps the tool; elsewhere (tests, other setups) it is looked up on `PATH`.
const SECURITY: &str = "/usr/bin/security";
/// `security`'s exit code for "the specified item could not be found in the keychain".
const NOT_FOUND: i32 = 44;
/// `security`'s exit code for "user interaction is not allowed" (locked, or not authorised).
const INTERACTION_NOT_ALLOWED: i32 = 51;

pub struct KeychainStore {
    /// Looked up when first used: every command opens every backend, few use this one.
    /// `None` inside: no `security` on this system.
    program: OnceLock<Option<PathBuf>>,
}

impl KeychainStore {
    /// Uses the first `security` on `PATH`, else `/usr/bin/security`.
    pub fn from_env() -> Self {
        Self {
            program: OnceLock::new(),
        }
    }

    pub fn new(program: PathBuf) -> Self {
        Self {
            program: OnceLock::from(Some(program)),
        }
    }

    fn program(&self) -> Option<&PathBuf> {
        self.program
            .get_or_init(|| {
                let on_path = std::env::var_os("PATH").and_then(|path| {
                    std::env::split_paths(&path)
                        .map(|dir| dir.join("security"))
                        .find(|candidate| candidate.is_file())
                });
                on_path.or_else(|| Path::new(SECURITY).is_file().then(|| SECURITY.into()))
            })
            .as_ref()
    }

    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<Output> {
        let program = self.program().ok_or_else(|| {
            Error::failure(
                "the keychain backend needs the macOS `security` tool, which is not on this system",
            )
            .with_hint("choose another backend: --backend file (or TOKENKEEPER_BACKEND=file)")
        })?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| {
                Error::failure(format!("keychain: cannot run {}: {err}", program.display()))
            })?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input).map_err(|err| {
                Error::failure(format!("keychain: cannot talk to security: {err}"))
            })?;
        }
        child
            .wait_with_output()
            .map_err(|err| Error::failure(format!("keychain: security did not finish: {err}")))
    }

    fn failed(&self, action: &str, key: &SecretKey, output: &Output) -> Error {
        // security's messages name the item, never its contents.
        let stderr = String::from_utf8_lossy(&output.stderr);
        // Under `-i` the exit status stays 0; the message tells.
        let locked = output.status.code() == Some(INTERACTION_NOT_ALLOWED)
            || stderr.contains("User interaction is not allowed");
        if locked {
            return Error::failure(format!(
                "keychain: cannot {action} {key}: the Keychain is locked or does not allow tokenkeeper"
            ))
            .with_hint(format!(
                "unlock it (security unlock-keychain), or allow unattended use: security set-generic-password-partition-list -S apple-tool:,apple: -s \"{}\" -a \"{}\"",
                key.service, key.account
            ));
        }
        let reason = stderr.lines().next().unwrap_or("").trim();
        Error::failure(format!(
            "keychain: cannot {action} {key}: {}",
            if reason.is_empty() {
                "security failed"
            } else {
                reason
            }
        ))
    }
}

impl SecretStore for KeychainStore {
    fn name(&self) -> &'static str {
        "keychain"
    }

    fn get(&self, key: &SecretKey) -> Result<Option<Secret>> {
        check_name(key)?;
        let args = [
            "find-generic-password",
            "-s",
            &key.service,
            "-a",
            &key.account,
            "-w",
        ];
        let output = self.run(&args, None)?;
        let stdout = Zeroizing::new(output.stdout.clone());
        match output.status.code() {
            Some(0) => decode(&stdout).map(Some).ok_or_else(|| {
                Error::failure(format!("keychain: the item {key} does not hold text"))
            }),
            Some(NOT_FOUND) => Ok(None),
            _ => Err(self.failed("read", key, &output)),
        }
    }

    fn put(&self, key: &SecretKey, value: &Secret) -> Result<()> {
        check_name(key)?;
        // `-U` updates an existing item in place; `-X` takes the value as hex, so no quoting
        // of the value is ever needed.
        let command = Zeroizing::new(format!(
            "add-generic-password -U -s \"{}\" -a \"{}\" -X {}\n",
            key.service,
            key.account,
            crate::hex::encode(value.expose_secret().as_bytes())
        ));
        let output = self.run(&["-i"], Some(command.as_bytes()))?;
        // `security -i` reports a failed command on stderr, not always in its exit status.
        if !output.status.success() || !output.stderr.is_empty() {
            return Err(self.failed("write", key, &output));
        }
        // And the item must be there now (another writer's value is as good as ours).
        match self.get(key)? {
            Some(_) => Ok(()),
            None => Err(Error::failure(format!(
                "keychain: writing {key} did not take effect"
            ))),
        }
    }

    fn delete(&self, key: &SecretKey) -> Result<bool> {
        check_name(key)?;
        let args = [
            "delete-generic-password",
            "-s",
            &key.service,
            "-a",
            &key.account,
        ];
        let output = self.run(&args, None)?;
        match output.status.code() {
            Some(0) => Ok(true),
            Some(NOT_FOUND) => Ok(false),
            _ => Err(self.failed("delete", key, &output)),
        }
    }
}

/// Service and account go inside double quotes on `security -i`'s command line.
fn check_name(key: &SecretKey) -> Result<()> {
    let bad = |name: &str| {
        name.is_empty()
            || name
                .chars()
                .any(|c| c == '"' || c == '\\' || c.is_control())
    };
    if bad(&key.service) || bad(&key.account) {
        return Err(Error::failure(format!(
            "keychain: {key} is not a name the keychain backend can use"
        )));
    }
    Ok(())
}

/// The value `find-generic-password -w` printed: the text itself, or — for values `security`
/// deems unprintable — its hex encoding. Values tokenkeeper stores are JSON objects.
fn decode(stdout: &[u8]) -> Option<Secret> {
    let text = std::str::from_utf8(stdout).ok()?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    let looks_hex = !text.is_empty()
        && text.len() % 2 == 0
        && !text.starts_with('{')
        && text.bytes().all(|b| b.is_ascii_hexdigit());
    if !looks_hex {
        return Some(Secret::new(text.to_string()));
    }
    let bytes = Zeroizing::new(crate::hex::decode(text)?);
    String::from_utf8(bytes.to_vec()).ok().map(Secret::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_come_back_plain_or_hex_encoded() {
        assert_eq!(decode(b"{\"a\":1}\n").unwrap().expose_secret(), "{\"a\":1}");
        let encoded = crate::hex::encode("{\"name\":\"Jürgen ✓\"}".as_bytes());
        assert_eq!(
            decode(format!("{encoded}\n").as_bytes())
                .unwrap()
                .expose_secret(),
            "{\"name\":\"Jürgen ✓\"}"
        );
        assert_eq!(
            decode(b"sk-ant-oat01-x\n").unwrap().expose_secret(),
            "sk-ant-oat01-x"
        );
    }

    #[test]
    fn names_that_cannot_be_quoted_are_refused() {
        let key = |service: &str| SecretKey {
            service: service.into(),
            account: "a".into(),
        };
        assert!(check_name(&key("Claude Code-credentials")).is_ok());
        assert!(check_name(&key("bad\"name")).is_err());
        assert!(check_name(&key("bad\nname")).is_err());
        assert!(check_name(&key("")).is_err());
    }

    #[test]
    fn a_missing_security_tool_is_a_clear_error() {
        let store = KeychainStore {
            program: OnceLock::from(None),
        };
        let err = store.get(&SecretKey::ralph("claude")).unwrap_err();
        assert!(err.message().contains("needs the macOS `security` tool"));
        assert!(err.hint().unwrap().contains("--backend file"));
    }
}
