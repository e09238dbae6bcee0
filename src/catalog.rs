//! The slot registry, `slots.json`: which slots exist, per agent which one is active, and what
//! tokenkeeper last wrote to each agent's live credential location.
//!
//! It holds metadata only (names, emails, plans, expiry times); the credentials themselves live
//! in the secret store under `SecretKey::slot(agent, id)`. Slots keep a random id so a secret's
//! key never depends on a name the user may change.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::agent::{Credential, Kind, Profile};
use crate::durable;
use crate::error::{Error, Result};
use crate::perms;
use crate::store::{Backend, SecretKey};
use crate::usage::Snapshot;

const VERSION: u32 = 1;
const MAX_NAME_LEN: usize = 64;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Catalog {
    pub version: u32,
    /// Agent name → id of its active slot.
    #[serde(default)]
    pub active: BTreeMap<String, String>,
    /// Agent name → what tokenkeeper last wrote to that agent's live location.
    #[serde(default)]
    pub live: BTreeMap<String, LiveRecord>,
    #[serde(default)]
    pub slots: Vec<Slot>,
}

/// Fingerprint of the bytes tokenkeeper wrote to an agent's live credential, so a later change
/// made by the agent itself (a refresh, a new login) can be told apart from our own write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveRecord {
    pub slot: String,
    pub sha256: String,
    pub written_at: Timestamp,
    /// The account Claude Code's login record named then (`uuid|email`): offline, an
    /// unchanged record means Claude Code refreshed this slot rather than logged in anew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
}

/// Where a refresh answer that could not be applied was kept, and why it could not be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stranded {
    pub why: String,
    pub kept: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Slot {
    pub id: String,
    pub name: String,
    pub agent: String,
    pub kind: Kind,
    /// Where the slot's secret lives.
    #[serde(default)]
    pub backend: Backend,
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
    /// Set when the provider refused the refresh token: the provider's error code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs_login: Option<String>,
    /// The long-lived token of the ralph commands (`store-token`) for agent `agent`: its secret
    /// keeps the item name the ralph spec gives it, `<agent>-token` / `agent-loop`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ralph: bool,
    /// Set when the answer to the slot's last refresh could not be applied; it was set aside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stranded: Option<Stranded>,
    /// Claude Code's `oauthAccount` for this slot's account, as its login record held it when
    /// the slot was added (or built from the profile): `use` puts it back, so Claude Code
    /// names the account it now uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_record: Option<serde_json::Value>,
    /// When the slot's current access token came from a refresh (by tokenkeeper, or by Claude
    /// Code and saved here): a 401 for a token that new is not the token's fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refreshed_at: Option<Timestamp>,
    /// Set when Claude Code replaced this slot's live credential with one whose account could
    /// not be told (offline): the id of the slot holding the newer tokens. Never refreshed
    /// meanwhile, since a refresh with the old token may be a replay that revokes the newer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
    /// When `export --with-refresh-token` handed the lineage to someone else: it is not
    /// refreshed here any more (a refresh would revoke the copy that was handed over).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handed_over: Option<Timestamp>,
    /// Kept in a lineage home (OpenBao) with a record every install sees: this entry is a
    /// cache of that record.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared: bool,
    /// The last usage reading, for `list`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Snapshot>,
    /// When `list` last asked for a reading and got none, so it does not ask on every run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_tried_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Slot {
    pub fn new(
        agent: &str,
        name: &str,
        credential: &Credential,
        backend: Backend,
        now: Timestamp,
    ) -> Self {
        let mut slot = Self::blank(new_id(), name, agent, credential.kind(), backend, now);
        slot.absorb(credential, now);
        slot
    }

    /// A catalog entry for a slot another install made, from its record in `backend`.
    pub fn from_record(record: &crate::shared::Record, backend: Backend) -> Self {
        let mut slot = Self::blank(
            record.id.clone(),
            &record.name,
            &record.agent,
            record.kind,
            backend,
            record.created_at,
        );
        record.apply_to(&mut slot);
        slot
    }

    /// A slot that knows nothing yet beyond what it is called and where it is kept.
    pub(crate) fn blank(
        id: String,
        name: &str,
        agent: &str,
        kind: Kind,
        backend: Backend,
        now: Timestamp,
    ) -> Self {
        Self {
            id,
            name: name.to_string(),
            agent: agent.to_string(),
            kind,
            backend,
            account_uuid: None,
            email: None,
            subscription_type: None,
            rate_limit_tier: None,
            organization_uuid: None,
            organization_name: None,
            expires_at: None,
            refresh_expires_at: None,
            needs_login: None,
            stranded: None,
            ralph: false,
            handed_over: None,
            login_record: None,
            superseded_by: None,
            refreshed_at: None,
            shared: false,
            usage: None,
            usage_tried_at: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// Copies what the credential says about itself into the slot's metadata. A new credential
    /// also clears a "needs login" mark.
    pub fn absorb(&mut self, credential: &Credential, now: Timestamp) {
        self.kind = credential.kind();
        self.needs_login = None;
        self.stranded = None;
        self.handed_over = None;
        self.superseded_by = None;
        if let Some(plan) = credential.subscription_type() {
            self.subscription_type = Some(plan);
        }
        if let Some(tier) = credential.rate_limit_tier() {
            self.rate_limit_tier = Some(tier.to_string());
        }
        self.expires_at = credential.expires_at();
        self.refresh_expires_at = credential.refresh_expires_at();
        self.updated_at = now;
    }

    /// Where the slot's secret is kept in its backend.
    pub fn secret_key(&self) -> SecretKey {
        if self.ralph {
            SecretKey::ralph(&self.agent)
        } else {
            SecretKey::slot(&self.agent, &self.id)
        }
    }

    /// The `oauthAccount` object Claude Code should see while this slot is in use: the one
    /// kept from its login record, else one built from what is known of the account.
    pub fn login_account_object(&self) -> Option<serde_json::Value> {
        if let Some(record) = &self.login_record {
            return Some(record.clone());
        }
        let uuid = self.account_uuid.as_ref()?;
        let mut object = serde_json::Map::new();
        object.insert("accountUuid".into(), uuid.clone().into());
        for (key, value) in [
            ("emailAddress", &self.email),
            ("organizationUuid", &self.organization_uuid),
            ("organizationName", &self.organization_name),
        ] {
            if let Some(value) = value {
                object.insert(key.into(), value.clone().into());
            }
        }
        Some(serde_json::Value::Object(object))
    }

    /// Records what the provider's profile says about the slot's account.
    pub fn absorb_profile(&mut self, profile: &Profile) {
        let keep = |new: &Option<String>, old: &mut Option<String>| {
            if new.is_some() {
                *old = new.clone();
            }
        };
        keep(&profile.account_uuid, &mut self.account_uuid);
        keep(&profile.email, &mut self.email);
        keep(&profile.organization_uuid, &mut self.organization_uuid);
        keep(&profile.organization_name, &mut self.organization_name);
        keep(&profile.rate_limit_tier, &mut self.rate_limit_tier);
        if self.subscription_type.is_none() {
            self.subscription_type = profile.plan.clone();
        }
    }
}

impl Default for Catalog {
    fn default() -> Self {
        Self {
            version: VERSION,
            active: BTreeMap::new(),
            live: BTreeMap::new(),
            slots: Vec::new(),
        }
    }
}

impl Catalog {
    /// Loads the catalog; a missing file is an empty catalog.
    pub fn load(path: &Path) -> Result<Self> {
        perms::check_private(path, false)?;
        let bytes = match perms::read_own(path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(err) => return Err(Error::io("cannot read", path, err)),
        };
        let catalog: Catalog = serde_json::from_slice(&bytes).map_err(|err| {
            Error::failure(format!("slot catalog {} is damaged: {err}", path.display()))
                .with_hint("restore it from a backup, or move it aside to start over (stored secrets are kept)")
        })?;
        if catalog.version > VERSION {
            return Err(Error::failure(format!(
                "slot catalog {} was written by a newer tokenkeeper (format {})",
                path.display(),
                catalog.version
            ))
            .with_hint("upgrade tokenkeeper"));
        }
        Ok(catalog)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("catalog serialises");
        bytes.push(b'\n');
        durable::write_atomic(path, &bytes)
    }

    pub fn slots_of(&self, agent: &str) -> impl Iterator<Item = &Slot> + use<'_> {
        let agent = agent.to_string();
        self.slots.iter().filter(move |s| s.agent == agent)
    }

    pub fn get(&self, id: &str) -> Option<&Slot> {
        self.slots.iter().find(|s| s.id == id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Slot> {
        self.slots.iter_mut().find(|s| s.id == id)
    }

    pub fn by_name(&self, agent: &str, name: &str) -> Option<&Slot> {
        self.slots_of(agent).find(|s| s.name == name)
    }

    pub fn active_id(&self, agent: &str) -> Option<&str> {
        self.active.get(agent).map(String::as_str)
    }

    /// Finds a slot by what a person would type: `#N` or `N` (its place in `list`, when no slot
    /// is named so), its name, its name in another case, or its account's email — the last
    /// two only when they pick one slot. An unknown one gets the closest names offered.
    pub fn resolve(&self, agent: &str, selector: &str) -> Result<&Slot> {
        let slots: Vec<&Slot> = self.slots_of(agent).collect();
        if let Some(slot) = slots.iter().find(|s| s.name == selector) {
            return Ok(slot);
        }
        let number = selector.strip_prefix('#').unwrap_or(selector);
        if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) {
            return number
                .parse::<usize>()
                .ok()
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| slots.get(i).copied())
                .ok_or_else(|| {
                    Error::failure(format!(
                        "there is no {agent} slot #{number} ({} slot{})",
                        slots.len(),
                        if slots.len() == 1 { "" } else { "s" }
                    ))
                    .with_hint("run: tokenkeeper list")
                });
        }
        if selector.starts_with('#') {
            return Err(Error::usage(format!(
                "'{selector}' is not a slot number; use #1, #2, …"
            )));
        }
        let folded = selector.to_lowercase();
        for matches in [
            |s: &Slot, f: &str| s.name.to_lowercase() == f,
            |s: &Slot, f: &str| s.email.as_deref().is_some_and(|e| e.to_lowercase() == f),
        ] {
            let found: Vec<&Slot> = slots
                .iter()
                .copied()
                .filter(|s| matches(s, &folded))
                .collect();
            match found.as_slice() {
                [one] => return Ok(one),
                [] => {}
                several => {
                    let names: Vec<&str> = several.iter().map(|s| s.name.as_str()).collect();
                    return Err(Error::usage(format!(
                        "'{selector}' matches several {agent} slots: {}",
                        names.join(", ")
                    ))
                    .with_hint("name one exactly"));
                }
            }
        }
        Err(unknown_slot(agent, selector, &slots))
    }

    /// The slot a command without a NAME works on: the active one.
    pub fn resolve_or_active(&self, agent: &str, selector: Option<&str>) -> Result<&Slot> {
        match selector {
            Some(selector) => self.resolve(agent, selector),
            None => self
                .active_id(agent)
                .and_then(|id| self.get(id))
                .ok_or_else(|| {
                    Error::failure(format!("no active {agent} slot"))
                        .with_hint("name a slot, or run: tokenkeeper use NAME")
                }),
        }
    }

    /// `base`, or `base-2`, `base-3`, … whichever is free for `agent`.
    pub fn unique_name(&self, agent: &str, base: &str) -> String {
        if self.by_name(agent, base).is_none() {
            return base.to_string();
        }
        (2..)
            .map(|n| format!("{base}-{n}"))
            .find(|name| self.by_name(agent, name).is_none())
            .expect("some suffix is free")
    }

    /// Removes a slot, clearing it as active and as the live owner.
    pub fn remove(&mut self, id: &str) -> Option<Slot> {
        let at = self.slots.iter().position(|s| s.id == id)?;
        let slot = self.slots.remove(at);
        self.active.retain(|_, v| v != id);
        self.live.retain(|_, r| r.slot != id);
        Some(slot)
    }
}

/// "no slot named …", with the closest names (did you mean) and every name.
fn unknown_slot(agent: &str, selector: &str, slots: &[&Slot]) -> Error {
    if slots.is_empty() {
        return Error::failure(format!(
            "no {agent} slot named '{selector}': there are no {agent} slots"
        ))
        .with_hint("add one: tokenkeeper add (the account Claude Code is logged in with)");
    }
    let folded = selector.to_lowercase();
    let mut close: Vec<(usize, &str)> = slots
        .iter()
        .map(|s| {
            (
                strsim::levenshtein(&s.name.to_lowercase(), &folded),
                s.name.as_str(),
            )
        })
        .filter(|(distance, name)| {
            *distance <= 2.max(folded.len() / 3) || name.starts_with(selector)
        })
        .collect();
    close.sort();
    let names: Vec<&str> = slots.iter().map(|s| s.name.as_str()).collect();
    let guess = match close.first() {
        Some((_, name)) => format!("; did you mean '{name}'?"),
        None => String::new(),
    };
    Error::failure(format!("no {agent} slot named '{selector}'{guess}"))
        .with_hint(format!("the {agent} slots are: {}", names.join(", ")))
}

/// Checks a slot name the user chose.
pub fn validate_name(name: &str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "._@+-".contains(c);
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || !name.chars().all(ok_char)
        || name.starts_with(['-', '.'])
    {
        return Err(Error::usage(format!(
            "invalid slot name '{}': use up to {MAX_NAME_LEN} letters, digits and . _ @ + - (not first)",
            name.escape_debug()
        )));
    }
    Ok(())
}

/// Turns an email's local part into a valid slot name, if it yields one.
pub fn name_from_email(email: &str) -> Option<String> {
    let local = email.split('@').next()?;
    let name: String = local
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._+-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(MAX_NAME_LEN)
        .collect();
    let name = name.trim_start_matches(['-', '.']).to_string();
    validate_name(&name).ok().map(|()| name)
}

fn new_id() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    crate::hex::encode(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred() -> Credential {
        Credential::parse(
            br#"{"accessToken":"tok-0123456789abcdef","expiresAt":1800000000000}"#,
            "t",
        )
        .unwrap()
    }

    fn catalog_with(names: &[&str]) -> Catalog {
        let mut c = Catalog::default();
        let now = Timestamp::from_second(1_780_000_000).unwrap();
        for name in names {
            c.slots
                .push(Slot::new("claude", name, &cred(), Backend::File, now));
        }
        c
    }

    #[test]
    fn resolves_names_and_numbers() {
        let c = catalog_with(&["work", "home"]);
        assert_eq!(c.resolve("claude", "#2").unwrap().name, "home");
        assert_eq!(c.resolve("claude", "work").unwrap().name, "work");
        assert!(
            c.resolve("claude", "#3")
                .unwrap_err()
                .message()
                .contains("#3")
        );
        assert_eq!(c.resolve("claude", "#x").unwrap_err().exit_code(), 2);
        assert!(c.resolve("claude", "nope").is_err());
    }

    #[test]
    fn unique_names_get_a_suffix() {
        let c = catalog_with(&["work", "work-2"]);
        assert_eq!(c.unique_name("claude", "work"), "work-3");
        assert_eq!(c.unique_name("claude", "home"), "home");
    }

    #[test]
    fn names_are_checked() {
        for bad in ["", "-x", ".x", "a b", "a/b", &"x".repeat(65), "#1"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        for good in ["work", "jane.doe", "a+b@c", "x-1"] {
            validate_name(good).unwrap();
        }
        assert_eq!(
            name_from_email("jane.doe@example.com").as_deref(),
            Some("jane.doe")
        );
        assert_eq!(name_from_email("j ane@x").as_deref(), Some("j-ane"));
    }

    #[test]
    fn remove_clears_active_and_live() {
        let mut c = catalog_with(&["work"]);
        let id = c.slots[0].id.clone();
        c.active.insert("claude".into(), id.clone());
        assert!(c.remove(&id).is_some());
        assert!(c.active.is_empty());
    }
}
