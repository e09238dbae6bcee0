//! Where secrets live: the `SecretStore` trait and its backends.
//!
//! A secret is addressed by a `SecretKey` (service + account), the shape every OS secret store
//! uses, so a key means the same thing in every backend. Values are UTF-8 JSON documents held in
//! `Secret`.

mod file;
mod keychain;
mod onepassword;
mod openbao;
mod secret_service;
mod select;

pub use file::FileStore;
pub use keychain::KeychainStore;
pub use onepassword::OnePasswordStore;
pub use openbao::{ENV_TOKEN_FILE as ENV_OPENBAO_TOKEN_FILE, OpenBaoConfig, OpenBaoStore};
pub use secret_service::SecretServiceStore;
pub use select::{BackendArg, ENV_BACKEND, Selection, select, select_with, set_flag};

use std::fmt;

use crate::error::Result;
use crate::secret::Secret;

/// Service name under which tokenkeeper keeps its slots.
pub const SLOT_SERVICE: &str = "tokenkeeper";
/// Account used by the ralph token commands (`<agent>-token` / `agent-loop`).
pub const RALPH_ACCOUNT: &str = "agent-loop";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SecretKey {
    pub service: String,
    pub account: String,
}

impl SecretKey {
    /// The key of one slot's credential.
    pub fn slot(agent: &str, slot_id: &str) -> Self {
        Self {
            service: SLOT_SERVICE.to_string(),
            account: format!("{agent}.{slot_id}"),
        }
    }

    /// The key of an agent's ralph-style long-lived token.
    pub fn ralph(agent: &str) -> Self {
        Self {
            service: format!("{agent}-token"),
            account: RALPH_ACCOUNT.to_string(),
        }
    }
}

impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.service, self.account)
    }
}

/// A place that keeps secrets.
///
/// - `get`: `Ok(Some)` the value, `Ok(None)` nothing stored under that key, `Err` the backend
///   itself failed (unreachable, refused, unreadable, unsafe permissions).
/// - `put`: stores or replaces atomically: afterwards `get` returns either the old or the new
///   value, never a mix, even across a crash.
/// - `delete`: `Ok(true)` removed, `Ok(false)` there was nothing.
pub trait SecretStore {
    /// Short backend name for messages, e.g. `file`.
    fn name(&self) -> &'static str;
    fn get(&self, key: &SecretKey) -> Result<Option<Secret>>;
    fn put(&self, key: &SecretKey, value: &Secret) -> Result<()>;
    fn delete(&self, key: &SecretKey) -> Result<bool>;

    /// For a backend several machines share: the right to refresh `key`'s lineage, held
    /// until the returned lease is dropped, waiting up to `wait` for another holder. Backends
    /// on one machine need none (the local slot lock is enough) and return `None`.
    fn lease(&self, _key: &SecretKey, _wait: std::time::Duration) -> Result<Option<Lease>> {
        Ok(None)
    }

    /// The accounts stored under `service`, for a backend that can list them (the lineage
    /// home); `None` when it cannot.
    fn list(&self, _service: &str) -> Result<Option<Vec<String>>> {
        Ok(None)
    }
}

/// A refresh lease taken from a shared backend; released when dropped.
pub struct Lease(Option<Box<dyn FnOnce() + Send>>);

impl Lease {
    pub fn new(release: impl FnOnce() + Send + 'static) -> Self {
        Self(Some(Box::new(release)))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(release) = self.0.take() {
            release();
        }
    }
}

/// The backends a slot's secret can live in. Recorded per slot in the catalog, so slots in
/// different backends (during a migration, after a change of mind) are all found.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// Files under the data directory, 0600.
    #[default]
    File,
    /// The macOS Keychain, through `/usr/bin/security`.
    Keychain,
    /// The Secret Service on the session D-Bus (GNOME Keyring, KWallet).
    SecretService,
    /// An OpenBao or Vault KV v2 engine over HTTP.
    #[serde(rename = "openbao")]
    OpenBao,
    /// 1Password, through the `op` CLI.
    #[serde(rename = "1password")]
    OnePassword,
}

impl Backend {
    pub const ALL: [Backend; 5] = [
        Backend::File,
        Backend::Keychain,
        Backend::SecretService,
        Backend::OpenBao,
        Backend::OnePassword,
    ];

    /// Whether other machines may use the same secrets (a server, a shared vault).
    pub fn is_shared(self) -> bool {
        matches!(self, Backend::OpenBao | Backend::OnePassword)
    }

    /// Whether the backend can be the one home of a lineage for every install that uses it:
    /// shared, with a check-and-set write (one refresh at a time across machines) and a way to
    /// list what it holds. 1Password is shared but has neither, so it is not.
    pub fn is_lineage_home(self) -> bool {
        matches!(self, Backend::OpenBao)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::File => "file",
            Backend::Keychain => "keychain",
            Backend::SecretService => "secret-service",
            Backend::OpenBao => "openbao",
            Backend::OnePassword => "1password",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every backend, ready to use. Opening one does no I/O; each reports its own failures (not
/// reachable, not installed) when used, with the fix.
pub struct Stores {
    file: FileStore,
    keychain: KeychainStore,
    secret_service: SecretServiceStore,
    openbao: OpenBaoStore,
    onepassword: OnePasswordStore,
}

impl Stores {
    pub fn new(paths: &crate::paths::Paths) -> Self {
        Self {
            file: FileStore::new(paths.store_dir()),
            keychain: KeychainStore::from_env(),
            secret_service: SecretServiceStore::default(),
            openbao: OpenBaoStore::for_install(paths.data_dir.join("openbao-index")),
            onepassword: OnePasswordStore::default(),
        }
    }

    /// Whether `backend` can be reached: asks it for an item that does not exist.
    pub fn probe(&self, backend: Backend) -> Result<()> {
        let probe = SecretKey {
            service: SLOT_SERVICE.to_string(),
            account: "doctor-probe".to_string(),
        };
        self.get(backend).get(&probe).map(drop)
    }

    pub fn get(&self, backend: Backend) -> &dyn SecretStore {
        match backend {
            Backend::File => &self.file,
            Backend::Keychain => &self.keychain,
            Backend::SecretService => &self.secret_service,
            Backend::OpenBao => &self.openbao,
            Backend::OnePassword => &self.onepassword,
        }
    }
}
