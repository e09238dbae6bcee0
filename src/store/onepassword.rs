//! The 1Password backend, through the 1Password CLI `op`.
//!
//! A secret never goes in `op`'s arguments: items are created and edited from a JSON template
//! on stdin (`op item create … -`, `op item edit ID …`), and read with `op read op://…` (the
//! value on stdout). Every write is read back; a new item that does not read back is deleted.
//! The vault comes from `TOKENKEEPER_OP_VAULT` (default `Private`), the account from
//! `TOKENKEEPER_OP_ACCOUNT` (else `op`'s own default or `OP_ACCOUNT`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::store::{SecretKey, SecretStore};

pub const ENV_VAULT: &str = "TOKENKEEPER_OP_VAULT";
pub const ENV_ACCOUNT: &str = "TOKENKEEPER_OP_ACCOUNT";
/// The field that holds the secret.
const FIELD: &str = "credential";

static WRITERS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `op` from `PATH`, or the program it was given.
pub struct OnePasswordStore {
    program: PathBuf,
}

impl Default for OnePasswordStore {
    fn default() -> Self {
        Self::new("op".into())
    }
}

impl OnePasswordStore {
    pub fn new(program: PathBuf) -> Self {
        Self { program }
    }

    fn op(&self) -> Op<'_> {
        let var = |name| {
            std::env::var(name)
                .ok()
                .filter(|v: &String| !v.trim().is_empty())
        };
        Op {
            program: &self.program,
            vault: var(ENV_VAULT).unwrap_or_else(|| "Private".into()),
            account: var(ENV_ACCOUNT),
        }
    }
}

struct Op<'a> {
    program: &'a Path,
    vault: String,
    account: Option<String>,
}

impl Op<'_> {
    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<Output> {
        let mut command = Command::new(self.program);
        command.args(args);
        if let Some(account) = &self.account {
            command.args(["--account", account]);
        }
        let mut child = command
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| match err.kind() {
                std::io::ErrorKind::NotFound => Error::failure(
                    "the 1password backend needs the 1Password CLI `op`, which is not on PATH",
                )
                .with_hint("install it (https://developer.1password.com/docs/cli), or choose another backend: --backend file"),
                _ => Error::failure(format!("1password: cannot run op: {err}")),
            })?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input)
                .map_err(|err| Error::failure(format!("1password: cannot talk to op: {err}")))?;
        }
        child
            .wait_with_output()
            .map_err(|err| Error::failure(format!("1password: op did not finish: {err}")))
    }

    /// The item's title: one per key, and usable in an `op://` reference (no `/`).
    fn title(key: &SecretKey) -> String {
        format!("tokenkeeper {} {}", key.service, key.account).replace('/', "-")
    }

    fn reference(&self, key: &SecretKey) -> String {
        format!("op://{}/{}/{FIELD}", self.vault, Self::title(key))
    }

    /// The item's id, if it exists.
    fn find(&self, key: &SecretKey) -> Result<Option<String>> {
        let title = Self::title(key);
        let output = self.run(
            &[
                "item",
                "get",
                &title,
                "--vault",
                &self.vault,
                "--format",
                "json",
            ],
            None,
        )?;
        if !output.status.success() {
            return if not_found(&output) {
                Ok(None)
            } else {
                Err(failed("look up", key, &output))
            };
        }
        let item: Value = serde_json::from_slice(&output.stdout).map_err(|_| {
            Error::failure(format!(
                "1password: op answered something other than JSON for {key}"
            ))
        })?;
        Ok(item["id"].as_str().map(str::to_string))
    }
}

fn not_found(output: &Output) -> bool {
    let stderr = String::from_utf8_lossy(&output.stderr).to_lowercase();
    stderr.contains("isn't an item")
        || stderr.contains("could not find item")
        || stderr.contains("no item found")
}

/// One line naming the backend, with the fix for the usual causes. `op`'s messages name
/// items and vaults, never field values.
fn failed(action: &str, key: &SecretKey, output: &Output) -> Error {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lower = stderr.to_lowercase();
    if lower.contains("not currently signed in")
        || lower.contains("not signed in")
        || lower.contains("no accounts configured")
    {
        return Error::failure(format!(
            "1password: cannot {action} {key}: op is not signed in"
        ))
        .with_hint(
            "sign in: eval \"$(op signin)\", or set OP_SERVICE_ACCOUNT_TOKEN for unattended use",
        );
    }
    if lower.contains("isn't a vault") || lower.contains("vault not found") {
        return Error::failure(format!("1password: cannot {action} {key}: no such vault"))
            .with_hint(format!(
                "set {ENV_VAULT} to a vault you can write (op vault list)"
            ));
    }
    let reason = stderr
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or("op failed");
    Error::failure(format!("1password: cannot {action} {key}: {reason}"))
}

/// The JSON template `op item create` and `op item edit` read on stdin.
fn template(key: &SecretKey, value: &Secret) -> zeroize::Zeroizing<String> {
    zeroize::Zeroizing::new(
        json!({
            "title": Op::title(key),
            "category": "PASSWORD",
            "tags": ["tokenkeeper"],
            "fields": [{
                "id": FIELD,
                "label": FIELD,
                "type": "CONCEALED",
                "value": value.expose_secret(),
            }],
        })
        .to_string(),
    )
}

impl SecretStore for OnePasswordStore {
    fn name(&self) -> &'static str {
        "1password"
    }

    fn get(&self, key: &SecretKey) -> Result<Option<Secret>> {
        let op = self.op();
        let output = op.run(&["read", "--no-newline", &op.reference(key)], None)?;
        let stdout = zeroize::Zeroizing::new(output.stdout.clone());
        if !output.status.success() {
            return if not_found(&output) {
                Ok(None)
            } else {
                Err(failed("read", key, &output))
            };
        }
        let text = std::str::from_utf8(&stdout)
            .map_err(|_| Error::failure(format!("1password: the item {key} does not hold text")))?;
        Ok(Some(Secret::new(text.to_string())))
    }

    fn put(&self, key: &SecretKey, value: &Secret) -> Result<()> {
        // Find-then-create is not atomic in 1Password: two writers could both create an item
        // with the same title. Writers in other processes are already serialised by
        // tokenkeeper's state and slot locks; this serialises the threads of one process.
        let _one_writer = WRITERS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let op = self.op();
        let body = template(key, value);
        let created = match op.find(key)? {
            Some(id) => {
                let output = op.run(
                    &[
                        "item", "edit", &id, "--vault", &op.vault, "--format", "json",
                    ],
                    Some(body.as_bytes()),
                )?;
                if !output.status.success() {
                    return Err(failed("write", key, &output));
                }
                None
            }
            None => {
                let output = op.run(
                    &[
                        "item", "create", "--vault", &op.vault, "--format", "json", "-",
                    ],
                    Some(body.as_bytes()),
                )?;
                if !output.status.success() {
                    return Err(failed("write", key, &output));
                }
                let item: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
                item["id"].as_str().map(str::to_string)
            }
        };
        // Read back before the write counts: a new item that does not is removed again.
        match self.get(key) {
            Ok(Some(stored)) if stored == *value => Ok(()),
            outcome => {
                if let Some(id) = created {
                    let _ = op.run(&["item", "delete", &id, "--vault", &op.vault], None);
                }
                Err(match outcome {
                    Err(err) => err,
                    _ => Error::failure(format!("1password: {key} did not read back as written")),
                })
            }
        }
    }

    fn delete(&self, key: &SecretKey) -> Result<bool> {
        let _one_writer = WRITERS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let op = self.op();
        let Some(id) = op.find(key)? else {
            return Ok(false);
        };
        let output = op.run(&["item", "delete", &id, "--vault", &op.vault], None)?;
        if !output.status.success() {
            return Err(failed("delete", key, &output));
        }
        Ok(true)
    }
}
