//! The lineage home: a backend several installs share (OpenBao) holds, beside each slot's
//! secret, the slot's non-secret record — what `list` shows, and the one-way hashes of the
//! refresh tokens its lineage has had. An install that sees a record it does not know takes
//! the slot into its catalog; its catalog entry is a cache of the record, never a lineage of
//! its own.
//!
//! The hashes let `add` tell a credential apart without any token leaving its store: the
//! current refresh token joins the slot that holds it, a former one is a stale copy (another
//! machine refreshed since) and is refused, since storing or using it would revoke the
//! lineage.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::agent::{Credential, Kind};
use crate::catalog::Slot;
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::store::{SecretKey, SecretStore};

/// The service the records are kept under, beside the slots' secrets.
pub const RECORD_SERVICE: &str = "tokenkeeper-slots";
/// How many former refresh tokens a record remembers: enough for weeks of refreshes on a
/// laptop that was closed meanwhile.
const HASHES_KEPT: usize = 64;

/// A slot as every install sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub name: String,
    pub agent: String,
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_expires_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs_login: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// SHA-256 of each refresh token the lineage has had, the current one first.
    #[serde(default)]
    pub refresh_hashes: Vec<String>,
}

impl Record {
    fn of(slot: &Slot, refresh_hashes: Vec<String>) -> Self {
        Self {
            id: slot.id.clone(),
            name: slot.name.clone(),
            agent: slot.agent.clone(),
            kind: slot.kind,
            account_uuid: slot.account_uuid.clone(),
            email: slot.email.clone(),
            subscription_type: slot.subscription_type.clone(),
            rate_limit_tier: slot.rate_limit_tier.clone(),
            organization_uuid: slot.organization_uuid.clone(),
            organization_name: slot.organization_name.clone(),
            expires_at: slot.expires_at,
            refresh_expires_at: slot.refresh_expires_at,
            needs_login: slot.needs_login.clone(),
            created_at: slot.created_at,
            updated_at: slot.updated_at,
            refresh_hashes,
        }
    }

    /// Copies the record into a catalog entry (new, or the install's cached one).
    pub fn apply_to(&self, slot: &mut Slot) {
        slot.name = self.name.clone();
        slot.kind = self.kind;
        slot.account_uuid = self.account_uuid.clone();
        slot.email = self.email.clone();
        slot.subscription_type = self.subscription_type.clone();
        slot.rate_limit_tier = self.rate_limit_tier.clone();
        slot.organization_uuid = self.organization_uuid.clone();
        slot.organization_name = self.organization_name.clone();
        // The record's times are the latest any install wrote; a cache only moves forward.
        if self.updated_at >= slot.updated_at {
            slot.expires_at = self.expires_at;
            slot.refresh_expires_at = self.refresh_expires_at;
            slot.needs_login = self.needs_login.clone();
            slot.updated_at = self.updated_at;
        }
        slot.shared = true;
    }

    /// What the record says of a credential's refresh token.
    pub fn lineage_of(&self, credential: &Credential) -> Lineage {
        let Some(token) = credential.refresh_token() else {
            return Lineage::Unknown;
        };
        let hash = refresh_hash(&token);
        match self.refresh_hashes.iter().position(|h| *h == hash) {
            Some(0) => Lineage::Current,
            Some(_) => Lineage::Former,
            None => Lineage::Unknown,
        }
    }
}

/// Where a credential stands in a record's lineage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lineage {
    Current,
    Former,
    Unknown,
}

/// The one-way hash a record keeps of a refresh token (hex SHA-256, with a prefix of its own
/// so it matches no other hash of the token).
pub fn refresh_hash(token: &Secret) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"tokenkeeper refresh token\0");
    hasher.update(token.expose_secret().as_bytes());
    crate::hex::encode(&hasher.finalize())
}

fn key(agent: &str, id: &str) -> SecretKey {
    SecretKey {
        service: RECORD_SERVICE.to_string(),
        account: format!("{agent}.{id}"),
    }
}

/// Every record in `store`.
pub fn read_all(store: &dyn SecretStore) -> Result<Vec<Record>> {
    let Some(accounts) = store.list(RECORD_SERVICE)? else {
        return Ok(Vec::new());
    };
    let mut records = Vec::new();
    for account in accounts {
        let key = SecretKey {
            service: RECORD_SERVICE.to_string(),
            account,
        };
        // Gone between the listing and the read: removed meanwhile.
        let Some(text) = store.get(&key)? else {
            continue;
        };
        let record: Record = serde_json::from_str(text.expose_secret()).map_err(|err| {
            Error::failure(format!(
                "{}: the slot record {key} is not one tokenkeeper wrote: {err}",
                store.name()
            ))
        })?;
        records.push(record);
    }
    Ok(records)
}

/// The record of one slot, if its home has one.
pub fn read(store: &dyn SecretStore, slot: &Slot) -> Result<Option<Record>> {
    let Some(text) = store.get(&key(&slot.agent, &slot.id))? else {
        return Ok(None);
    };
    serde_json::from_str(text.expose_secret())
        .map(Some)
        .map_err(|err| {
            Error::failure(format!(
                "{}: the record of slot '{}' is not one tokenkeeper wrote: {err}",
                store.name(),
                slot.name
            ))
        })
}

/// Writes `slot`'s record, its lineage now at `credential` (when given): that refresh token's
/// hash goes first, the former ones after it.
pub fn write(
    store: &dyn SecretStore,
    slot: &Slot,
    credential: Option<&Credential>,
    former: Vec<String>,
) -> Result<()> {
    let mut hashes = Vec::new();
    if let Some(token) = credential.and_then(Credential::refresh_token) {
        hashes.push(refresh_hash(&token));
    }
    for hash in former {
        if !hashes.contains(&hash) && hashes.len() < HASHES_KEPT {
            hashes.push(hash);
        }
    }
    let record = Record::of(slot, hashes);
    let text = serde_json::to_string(&record).expect("records serialise");
    store.put(&key(&slot.agent, &slot.id), &Secret::new(text))
}

/// Removes a slot's record; `Ok(false)` when there was none.
pub fn delete(store: &dyn SecretStore, slot: &Slot) -> Result<bool> {
    store.delete(&key(&slot.agent, &slot.id))
}
