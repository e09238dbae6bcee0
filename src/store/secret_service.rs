//! The Secret Service backend (GNOME Keyring, KWallet, KeePassXC) over D-Bus, through the
//! `secret-service` crate. Items sit in the default collection with the attributes `service`
//! and `account`, so `secret-tool lookup service tokenkeeper account claude.<id>` finds them.
//! Secrets travel in an encrypted session (Diffie-Hellman), never in clear on the bus.

use std::collections::HashMap;

use secret_service::{EncryptionType, Error as SsError, SecretService};

use crate::error::{Error, Result};
use crate::net;
use crate::secret::Secret;
use crate::store::{SecretKey, SecretStore};

const CONTENT_TYPE: &str = "application/json";

/// How items are named: tokenkeeper's own (`service` + `account`), or as the `keyring` crate
/// (v3) names them, for items another program reads (Codex's login).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ItemStyle {
    #[default]
    Tokenkeeper,
    /// `service`, `username`, `target=default`, `application=rust-keyring`; text/plain.
    RustKeyring,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SecretServiceStore {
    style: ItemStyle,
}

impl SecretServiceStore {
    /// Items named as the `keyring` crate names them.
    pub fn rust_keyring() -> Self {
        Self {
            style: ItemStyle::RustKeyring,
        }
    }

    /// Whether a Secret Service answers on the session bus (for `auto`). A plain session is
    /// enough to tell, and skips the key exchange.
    pub fn reachable() -> bool {
        std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some()
            && net::block_on(async { SecretService::connect(EncryptionType::Plain).await.is_ok() })
    }
}

impl SecretServiceStore {
    /// What finds the item.
    fn attributes<'a>(&self, key: &'a SecretKey) -> HashMap<&'static str, &'a str> {
        match self.style {
            ItemStyle::Tokenkeeper => HashMap::from([
                ("service", key.service.as_str()),
                ("account", key.account.as_str()),
            ]),
            ItemStyle::RustKeyring => HashMap::from([
                ("service", key.service.as_str()),
                ("username", key.account.as_str()),
            ]),
        }
    }

    /// What a new item carries: the search attributes and, for the keyring crate's items,
    /// the two it adds.
    fn item_attributes<'a>(&self, key: &'a SecretKey) -> HashMap<&'static str, &'a str> {
        let mut attributes = self.attributes(key);
        if self.style == ItemStyle::RustKeyring {
            attributes.insert("target", "default");
            attributes.insert("application", "rust-keyring");
        }
        attributes
    }

    fn label(&self, key: &SecretKey) -> String {
        match self.style {
            ItemStyle::Tokenkeeper => format!("tokenkeeper: {key}"),
            ItemStyle::RustKeyring => {
                format!("{}@{}:default (keyring v3.6.3)", key.account, key.service)
            }
        }
    }

    fn content_type(&self) -> &'static str {
        match self.style {
            ItemStyle::Tokenkeeper => CONTENT_TYPE,
            ItemStyle::RustKeyring => "text/plain",
        }
    }
}

/// A one-line error naming the backend, with the fix for the usual causes.
fn failed(action: &str, key: &SecretKey, err: &SsError) -> Error {
    let message = format!("secret-service: cannot {action} {key}");
    match err {
        SsError::Unavailable | SsError::Zbus(_) | SsError::ZbusFdo(_) => {
            Error::failure(format!("{message}: no Secret Service on the session bus ({err})"))
                .with_hint("start a keyring (gnome-keyring-daemon, KWallet) in this session, or choose another backend: --backend file")
        }
        SsError::Locked | SsError::Prompt | SsError::PromptDisconnected => {
            Error::failure(format!("{message}: the keyring is locked"))
                .with_hint("unlock it (log in to the desktop session, or `gnome-keyring-daemon --unlock`), then try again")
        }
        _ => Error::failure(format!("{message}: {err}")),
    }
}

impl SecretStore for SecretServiceStore {
    fn name(&self) -> &'static str {
        "secret-service"
    }

    fn get(&self, key: &SecretKey) -> Result<Option<Secret>> {
        net::block_on(async {
            let service = SecretService::connect(EncryptionType::Dh)
                .await
                .map_err(|err| failed("read", key, &err))?;
            let found = service
                .search_items(self.attributes(key))
                .await
                .map_err(|err| failed("read", key, &err))?;
            let item = match (
                found.unlocked.into_iter().next(),
                found.locked.into_iter().next(),
            ) {
                (Some(item), _) => item,
                (None, Some(item)) => {
                    item.unlock()
                        .await
                        .map_err(|err| failed("read", key, &err))?;
                    item
                }
                (None, None) => return Ok(None),
            };
            let bytes = zeroize::Zeroizing::new(
                item.get_secret()
                    .await
                    .map_err(|err| failed("read", key, &err))?,
            );
            let text = std::str::from_utf8(&bytes).map_err(|_| {
                Error::failure(format!("secret-service: the item {key} does not hold text"))
            })?;
            Ok(Some(Secret::new(text.to_string())))
        })
    }

    fn put(&self, key: &SecretKey, value: &Secret) -> Result<()> {
        net::block_on(async {
            let service = SecretService::connect(EncryptionType::Dh)
                .await
                .map_err(|err| failed("write", key, &err))?;
            let collection = service
                .get_default_collection()
                .await
                .map_err(|err| failed("write", key, &err))?;
            collection
                .ensure_unlocked()
                .await
                .map_err(|err| failed("write", key, &err))?;
            // `replace`: an item with the same attributes is updated in place, atomically.
            collection
                .create_item(
                    &self.label(key),
                    self.item_attributes(key),
                    value.expose_secret().as_bytes(),
                    true,
                    self.content_type(),
                )
                .await
                .map_err(|err| failed("write", key, &err))?;
            Ok(())
        })
    }

    fn delete(&self, key: &SecretKey) -> Result<bool> {
        net::block_on(async {
            let service = SecretService::connect(EncryptionType::Dh)
                .await
                .map_err(|err| failed("delete", key, &err))?;
            let found = service
                .search_items(self.attributes(key))
                .await
                .map_err(|err| failed("delete", key, &err))?;
            let mut deleted = false;
            for item in found.unlocked.iter().chain(found.locked.iter()) {
                item.delete()
                    .await
                    .map_err(|err| failed("delete", key, &err))?;
                deleted = true;
            }
            Ok(deleted)
        })
    }
}
