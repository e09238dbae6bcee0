//! `Keeper`: the slot operations — add, use, remove, read — over the catalog, the secret store
//! and the agent's live credential, kept consistent with each other.
//!
//! Every operation runs under the state lock. Writes go in an order that makes a crash at any
//! point harmless: a secret is stored before the catalog names it, the catalog forgets a slot
//! before its secret is deleted, and a live credential that changed outside tokenkeeper (Claude
//! Code refreshed it, or the user logged in again) is saved back into a slot before anything may
//! overwrite it. Each step is idempotent, so the next command finishes what a killed one began.

use jiff::Timestamp;
use tracing::{debug, info};

use crate::agent::identity::Account;
use crate::agent::{Agent, LoginAccount, Profile};

use crate::agent::Credential;
use crate::catalog::{self, Catalog, LiveRecord, Slot};
use crate::durable::failpoint;
use crate::error::{Error, Result};
use crate::journal::{Entry, Journal, Pending, Resolved};
use crate::lock::FileLock;
use crate::paths::Paths;
use crate::perms;
use crate::secret::Secret;
use crate::shared;
use crate::store::{self, Backend, Stores};
use crate::usage::Snapshot;

pub struct Keeper {
    paths: Paths,
    stores: Stores,
    /// Where new slots' secrets go: chosen when first needed, since `auto` may ask D-Bus.
    backend: std::cell::OnceCell<Backend>,
    catalog: Catalog,
    now: Timestamp,
    /// Things the user should hear about that are not errors (printed to stderr).
    pub notices: Vec<String>,
    /// Slots whose newest tokens are in the journal because their store did not take them:
    /// read from here until a write succeeds, so nothing ever uses (or spends) the older copy.
    unapplied: std::collections::HashMap<String, Unapplied>,
    _lock: FileLock,
}

/// A slot's journalled credential its store has not taken yet.
struct Unapplied {
    credential: Credential,
    /// Every journal entry of the slot, all superseded once a write of the slot succeeds.
    paths: Vec<std::path::PathBuf>,
    why: String,
}

/// Result of `add`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    New,
    /// Same account as an existing slot: that slot now holds the newer credential.
    Updated,
    /// The credential is the current one of a shared slot: this install now uses that slot.
    Joined,
}

/// Result of `use`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switched {
    Switched,
    AlreadyActive,
}

/// Result of `remove`.
pub struct Removed {
    pub slot: Slot,
    /// Path of the live credential that was deleted with the slot.
    pub cleared_live: Option<String>,
}

impl Keeper {
    /// Opens the data directory (0700), takes the state lock and loads the catalog.
    pub fn open(paths: Paths) -> Result<Self> {
        perms::ensure_private_dir(&paths.data_dir)?;
        let lock = FileLock::acquire_within(
            &paths.state_lock(),
            &crate::deadline::doing(),
            crate::deadline::lock_wait()?,
        )?;
        let catalog = Catalog::load(&paths.catalog_file())?;
        debug!(data_dir = %paths.data_dir.display(), slots = catalog.slots.len(), "opened");
        let mut keeper = Self {
            stores: Stores::new(&paths),
            backend: std::cell::OnceCell::new(),
            paths,
            catalog,
            now: Timestamp::now(),
            notices: Vec::new(),
            unapplied: std::collections::HashMap::new(),
            _lock: lock,
        };
        keeper.replay_journal()?;
        Ok(keeper)
    }

    /// Applies updates a previous process made durable but may not have finished.
    ///
    /// Per slot only the newest entry counts (each holds the whole credential, and the older
    /// ones' tokens were spent to get it). An entry that cannot be read is set aside and its slot
    /// marked; one whose store is unreachable stays, and the slot is read from it meanwhile.
    /// Neither stops this command or touches other slots.
    fn replay_journal(&mut self) -> Result<()> {
        let journal = Journal::new(&self.paths);
        let mut by_slot: Vec<(Option<String>, Vec<Pending>)> = Vec::new();
        for pending in journal.pending()? {
            let slot = pending.entry.as_ref().ok().map(|e| e.slot.clone());
            match by_slot
                .iter_mut()
                .find(|(s, _)| slot.is_some() && *s == slot)
            {
                Some((_, list)) => list.push(pending),
                None => by_slot.push((slot, vec![pending])),
            }
        }
        for (slot, mut entries) in by_slot {
            let newest = entries.pop().expect("groups are never empty");
            let resolved = match &newest.entry {
                Ok(entry) => entry.resolve(),
                Err(why) => Err(why.clone()),
            };
            let Some(slot_id) = slot.filter(|id| self.catalog.get(id).is_some()) else {
                if let Ok(entry) = &newest.entry {
                    info!(slot = %entry.slot, "journal entry for a removed slot; dropping it");
                    for pending in entries.iter().chain([&newest]) {
                        journal.remove(&pending.path)?;
                    }
                } else {
                    let kept = journal.set_aside(&newest.path)?;
                    self.notices.push(format!(
                        "a damaged journal entry was moved to {}",
                        kept.display()
                    ));
                }
                continue;
            };
            let entry = newest
                .entry
                .as_ref()
                .expect("grouped by a readable entry's slot");
            match resolved {
                Err(why) => {
                    // Older entries' tokens were spent to get this answer: none is usable now.
                    for pending in &entries {
                        journal.set_aside(&pending.path)?;
                    }
                    let kept = journal.set_aside(&newest.path)?;
                    self.strand(&slot_id, &why, &kept)?;
                }
                Ok(resolved) => match self.apply(entry, &resolved) {
                    Ok(()) => {
                        for pending in entries.iter().chain([&newest]) {
                            journal.remove(&pending.path)?;
                        }
                    }
                    Err(err) => {
                        let name = self.catalog.get(&slot_id).map_or("?", |s| s.name.as_str());
                        self.notices.push(format!(
                            "slot '{name}' has new tokens its store did not take ({}); they stay in the journal and the next command stores them",
                            err.message()
                        ));
                        self.unapplied.insert(
                            slot_id,
                            Unapplied {
                                credential: resolved.credential,
                                paths: entries
                                    .iter()
                                    .chain([&newest])
                                    .map(|p| p.path.clone())
                                    .collect(),
                                why: err.message().to_string(),
                            },
                        );
                    }
                },
            }
        }
        Ok(())
    }

    /// Marks a slot whose newest journal entry could not be applied (kept at `kept`).
    fn strand(&mut self, slot_id: &str, why: &str, kept: &std::path::Path) -> Result<()> {
        if let Some(slot) = self.catalog.get_mut(slot_id) {
            info!(slot = %slot.name, why, "a refresh's answer cannot be applied; set aside");
            slot.needs_login = Some("unusable refresh answer".into());
            slot.stranded = Some(catalog::Stranded {
                why: why.to_string(),
                kept: kept.display().to_string(),
            });
        }
        self.save()
    }

    /// Why a slot's newest tokens are still only in the journal, if they are.
    pub fn unapplied(&self, slot_id: &str) -> Option<&str> {
        self.unapplied.get(slot_id).map(|u| u.why.as_str())
    }

    /// Applies one journal entry: store, then live file (only if it still holds what the
    /// refresh started from), then catalog. Each step is idempotent. The live file is written
    /// even when the store fails: if the agent kept the spent token there, its next refresh
    /// would replay it and revoke the lineage.
    fn apply(&mut self, entry: &Entry, resolved: &Resolved) -> Result<()> {
        let slot = self
            .catalog
            .get(&entry.slot)
            .cloned()
            .expect("checked by the caller");
        let credential = &resolved.credential;
        debug!(slot = %slot.name, "applying journal entry");
        let stored = self.put(&slot, credential);
        failpoint("apply:after-store");
        if let Some(before) = &entry.live_before {
            let agent = Agent::from_name(&entry.agent).unwrap_or_default();
            let live = agent.live()?;
            let current = live.read()?.map(|c| c.fingerprint());
            let new = live.fingerprint_of(credential);
            if current.as_ref() == Some(before) || current.as_ref() == Some(&new) {
                let written = live.write(credential)?;
                failpoint("apply:after-live");
                self.record_live(&entry.agent, &slot.id, written);
            }
        }
        if let Err(err) = stored {
            self.save()?;
            return Err(err);
        }
        let now = self.now;
        let slot = self.catalog.get_mut(&slot.id).expect("present");
        slot.absorb(credential, now);
        slot.refreshed_at = Some(entry.created_at);
        if slot.account_uuid.is_none() {
            slot.account_uuid = resolved.account_uuid.clone();
        }
        if slot.email.is_none() {
            slot.email = resolved.email.clone();
        }
        self.save()
    }

    /// Whether the agent's live credential is the one tokenkeeper wrote for this slot.
    pub fn owns_live(&self, agent: Agent, slot_id: &str) -> bool {
        self.catalog
            .live
            .get(agent.name())
            .is_some_and(|r| r.slot == slot_id)
    }

    /// Fingerprint of the agent's live credential as it is now.
    pub fn live_fingerprint(&self, agent: Agent) -> Result<Option<String>> {
        Ok(agent.live()?.read()?.map(|c| c.fingerprint()))
    }

    /// Marks a slot whose refresh token the provider refused.
    pub fn mark_needs_login(&mut self, slot_id: &str, code: &str) -> Result<()> {
        let now = self.now;
        if let Some(slot) = self.catalog.get_mut(slot_id) {
            slot.needs_login = Some(code.to_string());
            slot.updated_at = now;
        }
        self.save()?;
        // Every install should learn the lineage is dead, not only this one.
        if let Some(slot) = self.catalog.get(slot_id).filter(|s| s.shared) {
            self.write_record(slot, None)?;
        }
        Ok(())
    }

    /// Records that a slot's lineage was handed over: it is not refreshed here from now on.
    pub fn mark_handed_over(&mut self, slot_id: &str) -> Result<()> {
        let now = self.now;
        if let Some(slot) = self.catalog.get_mut(slot_id) {
            slot.handed_over = Some(now);
        }
        self.save()
    }

    /// Keeps Claude Code's `oauthAccount` for a slot, for `use` to put back — when it names
    /// the slot's account.
    pub fn set_login_record(&mut self, slot_id: &str, record: serde_json::Value) -> Result<()> {
        if let Some(slot) = self.catalog.get_mut(slot_id) {
            let uuid = record.get("accountUuid").and_then(|v| v.as_str());
            if slot.account_uuid.is_none() || uuid == slot.account_uuid.as_deref() {
                slot.login_record = Some(record);
            }
        }
        self.save()
    }

    /// Records the provider profile of a slot's account.
    pub fn set_profile(&mut self, slot_id: &str, profile: &Profile) -> Result<()> {
        if let Some(slot) = self.catalog.get_mut(slot_id) {
            slot.absorb_profile(profile);
        }
        self.save()
    }

    /// Keeps the latest usage readings, by slot id; `None` notes an attempt that got none.
    pub fn record_usage(&mut self, readings: Vec<(String, Option<Snapshot>)>) -> Result<()> {
        if readings.is_empty() {
            return Ok(());
        }
        let now = self.now;
        for (id, reading) in readings {
            if let Some(slot) = self.catalog.get_mut(&id) {
                match reading {
                    Some(snapshot) => {
                        slot.usage = Some(snapshot);
                        slot.usage_tried_at = None;
                    }
                    None => slot.usage_tried_at = Some(now),
                }
            }
        }
        self.save()
    }

    /// Keeps a reading the proxy took off the answers it relayed, unless the slot already holds
    /// a newer one. Windows the answers do not mention (per-model weekly ones) and credits keep
    /// their last polled values. Whether it was kept.
    pub fn record_observed_usage(&mut self, slot_id: &str, reading: Snapshot) -> Result<bool> {
        let Some(slot) = self.catalog.get_mut(slot_id) else {
            return Ok(false);
        };
        let mut reading = reading;
        if let Some(last) = &slot.usage {
            if last.taken_at >= reading.taken_at {
                return Ok(false);
            }
            for window in &last.windows {
                if reading.window(&window.id).is_none() {
                    reading.windows.push(window.clone());
                }
            }
            reading.credits = reading.credits.or_else(|| last.credits.clone());
        }
        slot.usage = Some(reading);
        slot.usage_tried_at = None;
        self.save().map(|()| true)
    }

    /// Prints and clears pending notices.
    pub fn flush_notices_to_stderr(&mut self) {
        for text in self.notices.drain(..) {
            eprintln!("tokenkeeper: {text}");
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// The backend new slots go to.
    pub fn backend(&self) -> Result<Backend> {
        if let Some(backend) = self.backend.get() {
            return Ok(*backend);
        }
        let selection = store::select(&self.paths)?;
        debug!(backend = %selection.backend, why = %selection.why, "backend for new secrets");
        Ok(*self.backend.get_or_init(|| selection.backend))
    }

    fn save(&self) -> Result<()> {
        self.catalog.save(&self.paths.catalog_file())
    }

    /// The stored credential of a slot (its journalled one while its store has not taken it).
    pub fn credential(&self, slot: &Slot) -> Result<Credential> {
        if let Some(unapplied) = self.unapplied.get(&slot.id) {
            return Ok(unapplied.credential.clone());
        }
        let key = slot.secret_key();
        let store = self.stores.get(slot.backend);
        let secret = store.get(&key)?.ok_or_else(|| {
            Error::failure(format!(
                "the credential of slot '{}' is missing from the {} store",
                slot.name,
                store.name()
            ))
            .with_hint(format!(
                "add it again: tokenkeeper add {} --from stdin",
                slot.name
            ))
        })?;
        Credential::parse(
            secret.expose_secret().as_bytes(),
            &format!("the {} store entry of slot '{}'", store.name(), slot.name),
        )
    }

    /// Stores a slot's credential. It supersedes whatever the journal still held for the slot.
    fn put(&mut self, slot: &Slot, credential: &Credential) -> Result<()> {
        self.stores
            .get(slot.backend)
            .put(&slot.secret_key(), &credential.to_secret_json())?;
        if slot.shared {
            // The record follows the secret: the new refresh token's hash goes first, so
            // every install's `add` can tell the current lineage from a stale copy. The
            // secret is what must not be lost; a record left behind only shows other installs
            // an older expiry until the next write (and an `add` that cannot tell a copy by
            // its hash still finds the lineage by reading the secret).
            let mut now_holds = slot.clone();
            now_holds.absorb(credential, self.now);
            if let Err(err) = self.write_record(&now_holds, Some(credential)) {
                self.notices.push(format!(
                    "the shared record of slot '{}' was not updated: {}",
                    slot.name,
                    err.message()
                ));
            }
        }
        if let Some(unapplied) = self.unapplied.remove(&slot.id) {
            let journal = Journal::new(&self.paths);
            for path in &unapplied.paths {
                journal.remove(path)?;
            }
        }
        Ok(())
    }

    /// Writes `slot`'s record in its home, keeping the hashes the record already had.
    fn write_record(&self, slot: &Slot, credential: Option<&Credential>) -> Result<()> {
        let store = self.stores.get(slot.backend);
        let former = shared::read(store, slot)?
            .map(|record| record.refresh_hashes)
            .unwrap_or_default();
        shared::write(store, slot, credential, former)
    }

    /// The lineage home new slots go to, when the configured backend is one.
    fn home(&self) -> Option<Backend> {
        self.backend().ok().filter(|b| b.is_lineage_home())
    }

    /// Takes the lineage home's records into the catalog: slots another install added appear,
    /// cached entries take up what changed, and slots removed elsewhere go. Gives back the
    /// records read; without a home configured, there are none and nothing happens.
    pub fn sync_shared(&mut self) -> Result<Vec<shared::Record>> {
        let Some(home) = self.home() else {
            return Ok(Vec::new());
        };
        let records = shared::read_all(self.stores.get(home))?;
        let before = serde_json::to_string(&self.catalog.slots).expect("slots serialise");
        for record in &records {
            let taken = self
                .catalog
                .slots
                .iter()
                .any(|s| s.agent == record.agent && s.name == record.name && s.id != record.id);
            match self.catalog.get_mut(&record.id) {
                Some(slot) => {
                    let name = slot.name.clone();
                    record.apply_to(slot);
                    slot.backend = home;
                    if taken {
                        slot.name = name;
                    }
                }
                None => {
                    let mut slot = Slot::from_record(record, home);
                    if taken {
                        slot.name = self.catalog.unique_name(&record.agent, &record.name);
                        self.notices.push(format!(
                            "the shared slot '{}' is '{}' here: this install has a slot of that name",
                            record.name, slot.name
                        ));
                    }
                    debug!(slot = %slot.name, "took up a shared slot");
                    self.catalog.slots.push(slot);
                }
            }
        }
        let gone: Vec<String> = self
            .catalog
            .slots
            .iter()
            .filter(|s| s.shared && s.backend == home && !records.iter().any(|r| r.id == s.id))
            .map(|s| s.id.clone())
            .collect();
        for id in gone {
            if let Some(slot) = self.catalog.remove(&id) {
                self.notices.push(format!(
                    "slot '{}' was removed from {home} by another install",
                    slot.name
                ));
            }
        }
        if serde_json::to_string(&self.catalog.slots).expect("slots serialise") != before {
            self.save()?;
        }
        Ok(records)
    }

    /// The slot `selector` names (`None`: the active one); a name this install does not know
    /// yet is looked for among the lineage home's records.
    pub fn resolve(&mut self, agent: Agent, selector: Option<&str>) -> Result<Slot> {
        match self.catalog.resolve_or_active(agent.name(), selector) {
            Ok(slot) => Ok(slot.clone()),
            Err(err) if selector.is_some() && self.home().is_some() => {
                self.sync_shared()?;
                self.catalog
                    .resolve_or_active(agent.name(), selector)
                    .cloned()
                    .map_err(|_| err)
            }
            Err(err) => Err(err),
        }
    }

    /// The shared slots holding other logins of `credential`'s account, none known to be dead:
    /// adding `credential` would replace a live lineage every install uses. Empty when one is
    /// dead (that is the one to replace) or none is there.
    pub fn live_lineages_of_account(
        &mut self,
        agent: Agent,
        credential: &Credential,
    ) -> Result<Vec<Slot>> {
        if self.home().is_none() {
            return Ok(Vec::new());
        }
        self.sync_shared()?;
        let Some(uuid) = agent
            .identify(credential, self.now)
            .and_then(|profile| profile.account_uuid)
        else {
            return Ok(Vec::new());
        };
        if self.find_lineage(agent.name(), credential)?.is_some() {
            return Ok(Vec::new());
        }
        let of_account: Vec<Slot> = self
            .catalog
            .slots_of(agent.name())
            .filter(|s| s.shared && s.account_uuid.as_deref() == Some(uuid.as_str()))
            .cloned()
            .collect();
        if of_account.iter().any(|s| s.needs_login.is_some()) {
            return Ok(Vec::new());
        }
        Ok(of_account)
    }

    /// Refuses a credential whose refresh token a shared slot (one of `records`) had before its
    /// last refresh: a copy left on another machine, which would revoke the lineage if stored
    /// or used.
    fn refuse_stale_copy(
        records: &[shared::Record],
        agent: Agent,
        credential: &Credential,
    ) -> Result<()> {
        for record in records {
            if record.agent == agent.name()
                && record.lineage_of(credential) == shared::Lineage::Former
            {
                return Err(Error::failure(format!(
                    "this credential is a stale copy of shared slot '{}': its refresh token was already replaced by a refresh (on this or another machine), so it was not stored",
                    record.name
                ))
                .with_hint(format!(
                    "use the shared slot instead (tokenkeeper use {0}, tokenkeeper get {0}); a refresh with this copy would revoke its login",
                    record.name
                )));
            }
        }
        Ok(())
    }

    /// The slot holding the same lineage as `credential`, if any.
    fn find_lineage(&self, agent: &str, credential: &Credential) -> Result<Option<String>> {
        for slot in self.catalog.slots_of(agent) {
            if self.credential(slot)?.same_lineage(credential) {
                return Ok(Some(slot.id.clone()));
            }
        }
        Ok(None)
    }

    /// Saves a live credential that changed since tokenkeeper wrote it back into its slot.
    ///
    /// The owner is the slot of the same lineage (same refresh token). When no slot has it and
    /// tokenkeeper manages the live location, the account cannot be told for sure — a refresh
    /// by Claude Code and a login to another account look alike — so the credential is kept as
    /// a new slot beside the old one rather than overwriting either. A login tokenkeeper never
    /// managed is left alone until the user adds it.
    pub fn sync_live(&mut self, agent: Agent) -> Result<()> {
        let live = agent.live()?;
        let Some(current) = live.read()? else {
            return Ok(());
        };
        let fingerprint = current.fingerprint();
        let record = self.catalog.live.get(agent.name()).cloned();
        if record.as_ref().is_some_and(|r| r.sha256 == fingerprint) {
            return Ok(());
        }
        let credential = match current.parsed {
            Ok(credential) if agent.accepts(&credential) => credential,
            Ok(_) | Err(_) => {
                if record.is_some() {
                    self.notices.push(format!(
                        "{} holds a credential tokenkeeper cannot read; a copy is kept before anything replaces it",
                        live.describe()
                    ));
                }
                return Ok(());
            }
        };
        let owner = match self.find_lineage(agent.name(), &credential)? {
            Some(id) => {
                let slot = self.catalog.get(&id).expect("found above").clone();
                let stored = self.credential(&slot)?;
                if stored != credential {
                    info!(slot = %slot.name, agent = %agent, "saving the credential the agent updated");
                    self.put(&slot, &credential)?;
                    let now = self.now;
                    let saved = self.catalog.get_mut(&id).expect("found above");
                    if stored.access_token() != credential.access_token() {
                        saved.refreshed_at = Some(now);
                    }
                    saved.absorb(&credential, now);
                }
                id
            }
            None => {
                let Some(record) = record else {
                    debug!("live credential is not managed by tokenkeeper; leaving it");
                    return Ok(());
                };
                // A refresh by Claude Code and a login to another account look alike; only the
                // provider can tell whose tokens these are. Offline, Claude Code's login record
                // can: unchanged since tokenkeeper wrote the live credential, it was a refresh.
                let profile = agent.identify(&credential, self.now);
                let unchanged_login = record.login.is_some()
                    && agent.login_key() == record.login
                    && self.catalog.get(&record.slot).is_some();
                let account_slot = match profile.as_ref().and_then(|p| p.account_uuid.as_deref()) {
                    Some(uuid) => self
                        .catalog
                        .slots_of(agent.name())
                        .find(|s| s.account_uuid.as_deref() == Some(uuid))
                        .map(|s| s.id.clone()),
                    None if unchanged_login => {
                        info!(
                            "the agent's login record is unchanged: the new credential is a refresh of the active slot"
                        );
                        Some(record.slot.clone())
                    }
                    None => None,
                };
                match (account_slot, profile) {
                    (Some(id), _) => {
                        let slot = self.catalog.get(&id).expect("found above").clone();
                        info!(slot = %slot.name, agent = %agent, "saving the credential the agent refreshed (same account)");
                        self.put(&slot, &credential)?;
                        let now = self.now;
                        self.catalog
                            .get_mut(&id)
                            .expect("found above")
                            .absorb(&credential, now);
                        id
                    }
                    (None, profile) => {
                        let base = match profile
                            .as_ref()
                            .and_then(|p| p.email.as_deref())
                            .and_then(catalog::name_from_email)
                        {
                            Some(name) => name,
                            None => format!(
                                "{}-recovered",
                                self.catalog
                                    .get(&record.slot)
                                    .map_or("live", |s| s.name.as_str())
                            ),
                        };
                        let name = self.catalog.unique_name(agent.name(), &base);
                        let mut slot =
                            Slot::new(agent.name(), &name, &credential, self.backend()?, self.now);
                        if let Some(profile) = &profile {
                            slot.absorb_profile(profile);
                        }
                        self.put(&slot, &credential)?;
                        let id = slot.id.clone();
                        if profile.is_some() {
                            self.notices.push(format!("{} is logged in to an account no slot holds; saved it as slot '{name}'", agent.program()));
                        } else {
                            // If this was a refresh, the old slot's refresh token is spent, and
                            // replaying it would revoke these new tokens too.
                            let old = self.catalog.get_mut(&record.slot);
                            let old_name = old.as_ref().map(|s| s.name.clone());
                            if let Some(old) = old {
                                old.superseded_by = Some(id.clone());
                            }
                            self.notices.push(format!(
                                "{}'s credential changed since tokenkeeper wrote it (a refresh or a new login) and its account could not be confirmed; saved it as slot '{name}' so no tokens are lost{}",
                                agent.program(),
                                old_name.map(|old| format!(", and '{old}' is not refreshed until the account is confirmed")).unwrap_or_default()
                            ));
                        }
                        self.catalog.slots.push(slot);
                        id
                    }
                }
            }
        };
        failpoint("sync:before-catalog");
        self.record_live(agent.name(), &owner, fingerprint);
        self.save()
    }

    /// Keeps a verbatim copy of the live credential when nothing tokenkeeper holds has its
    /// bytes: a shape tokenkeeper cannot read, or a login no slot holds. Its refresh token may
    /// be the only copy there is. Called before the live credential is overwritten or removed
    /// (after `sync_live`, which saves every credential it can read into its slot).
    fn rescue_live(&mut self, agent: Agent) -> Result<()> {
        let live = agent.live()?;
        let Some(current) = live.read()? else {
            return Ok(());
        };
        let fingerprint = current.fingerprint();
        if self
            .catalog
            .live
            .get(agent.name())
            .is_some_and(|r| r.sha256 == fingerprint)
        {
            return Ok(());
        }
        if let Ok(credential) = &current.parsed
            && let Some(id) = self.find_lineage(agent.name(), credential)?
        {
            let slot = self.catalog.get(&id).expect("found above").clone();
            if self.credential(&slot)? == *credential {
                return Ok(());
            }
        }
        let dir = self.paths.rescued_dir();
        perms::ensure_private_dir(&dir)?;
        let path = dir.join(format!("{}-{}.json", agent.name(), &fingerprint[..16]));
        if !path.exists() {
            crate::durable::write_atomic(&path, current.bytes.expose_secret().as_bytes())?;
        }
        let why = match &current.parsed {
            Err(err) => format!("a shape tokenkeeper cannot read: {}", err.message()),
            Ok(_) => "a login no slot holds".to_string(),
        };
        self.notices.push(format!(
            "{} held {why}; kept a copy in {} before replacing it",
            live.describe(),
            path.display()
        ));
        Ok(())
    }

    fn record_live(&mut self, agent: &str, slot_id: &str, sha256: String) {
        self.catalog
            .active
            .insert(agent.to_string(), slot_id.to_string());
        self.catalog.live.insert(
            agent.to_string(),
            LiveRecord {
                slot: slot_id.to_string(),
                sha256,
                written_at: self.now,
                login: Agent::from_name(agent).and_then(Agent::login_key),
            },
        );
    }

    /// Registers a credential as a slot, or updates the slot that already holds its account.
    ///
    /// `live` is the fingerprint of the live file when the credential was read from it: the
    /// slot then becomes the active one, the one tokenkeeper manages the live file for. With
    /// `new_lineage`, another login of an account a shared slot holds becomes a slot of its
    /// own instead of replacing that slot's (which happens only once it is dead).
    pub fn add(
        &mut self,
        agent: Agent,
        name: Option<&str>,
        credential: &Credential,
        account: Option<&LoginAccount>,
        live: Option<String>,
        new_lineage: bool,
    ) -> Result<(Added, String)> {
        if !agent.holds(credential) {
            let other = Agent::ALL
                .into_iter()
                .find(|a| a.holds(credential))
                .unwrap_or(agent);
            return Err(Error::usage(format!(
                "this is a {} login, not a {} one",
                other.program(),
                agent.program()
            ))
            .with_hint(format!("add it with --agent {other}")));
        }
        // The provider's word on the account beats Claude Code's login record.
        let profile = agent.identify(credential, self.now);
        let from_profile = profile.as_ref().map(|p| LoginAccount {
            uuid: p.account_uuid.clone(),
            email: p.email.clone(),
        });
        let account = from_profile.as_ref().or(account);
        if let Some(name) = name {
            catalog::validate_name(name)?;
        }
        let uuid = account.and_then(|a| a.uuid.as_deref());
        let home = self.home();
        let records = self.sync_shared()?;
        Self::refuse_stale_copy(&records, agent, credential)?;
        let same_lineage = self.find_lineage(agent.name(), credential)?;
        let same_account = match &same_lineage {
            Some(id) => Some(id.clone()),
            None => uuid.and_then(|uuid| {
                let of_account = || {
                    self.catalog
                        .slots_of(agent.name())
                        // Another login beside a shared one only when asked for.
                        .filter(|s| !(new_lineage && s.shared))
                        .filter(|s| s.account_uuid.as_deref() == Some(uuid))
                };
                // A dead login of the account is the one a new login replaces.
                of_account()
                    .find(|s| s.needs_login.is_some())
                    .or_else(|| of_account().next())
                    .map(|s| s.id.clone())
            }),
        };
        let (outcome, id) = match same_account {
            Some(id) => {
                let slot = self.catalog.get(&id).expect("found above").clone();
                if let Some(name) = name.filter(|n| *n != slot.name) {
                    self.notices.push(format!("this is the account of slot '{}'; updated that slot and kept its name (not '{name}')", slot.name));
                }
                if slot.shared && same_lineage.is_none() && slot.needs_login.is_none() {
                    // A live lineage every install uses is not replaced by another login.
                    return Err(Error::failure(format!(
                        "shared slot '{}' holds another login of this account, and it is not known to be dead",
                        slot.name
                    ))
                    .with_hint("keep both with --new-lineage, or log that slot in again once it needs it"));
                }
                if slot.shared && same_lineage.is_some() {
                    // The current tokens of a shared slot: nothing to store; this install
                    // now knows the slot, and the store keeps the one copy.
                    (Added::Joined, id)
                } else {
                    self.put(&slot, credential)?;
                    (Added::Updated, id)
                }
            }
            None => {
                let name = match name {
                    Some(name) => name.to_string(),
                    // A name of tokenkeeper's choosing that is taken gets a suffix instead.
                    None => account
                        .and_then(|a| a.email.as_deref())
                        .and_then(catalog::name_from_email)
                        .map(|base| self.catalog.unique_name(agent.name(), &base))
                        .ok_or_else(|| {
                            Error::usage("cannot name the new slot: its account's email is unknown")
                                .with_hint("give it a name: tokenkeeper add NAME")
                        })?,
                };
                match self.catalog.by_name(agent.name(), &name) {
                    // A dead slot of unknown account, named on purpose: this is its new login.
                    Some(slot) if slot.needs_login.is_some() && slot.account_uuid.is_none() => {
                        let slot = slot.clone();
                        self.put(&slot, credential)?;
                        (Added::Updated, slot.id)
                    }
                    Some(_) => {
                        return Err(Error::usage(format!("a {agent} slot named '{name}' already exists and holds another account"))
                            .with_hint(format!("choose another name, or remove the old slot first: tokenkeeper remove {name}")));
                    }
                    None => {
                        let mut slot =
                            Slot::new(agent.name(), &name, credential, self.backend()?, self.now);
                        self.put(&slot, credential)?;
                        // Its record is written below, once the slot knows its account.
                        slot.shared = home == Some(slot.backend);
                        let id = slot.id.clone();
                        self.catalog.slots.push(slot);
                        (Added::New, id)
                    }
                }
            }
        };
        failpoint("add:before-catalog");
        let now = self.now;
        let slot = self.catalog.get_mut(&id).expect("present");
        slot.absorb(credential, now);
        if let Some(account) = account {
            slot.account_uuid = account.uuid.clone().or(slot.account_uuid.take());
            slot.email = account.email.clone().or(slot.email.take());
        }
        if let Some(profile) = &profile {
            slot.absorb_profile(profile);
        }
        if let Some(fingerprint) = live {
            // Claude Code's own word on the account, kept for `use` to put back — when it
            // names this slot's account (it may be stale after a swap underneath it).
            let slot = self.catalog.get_mut(&id).expect("present");
            if let Some(record) = agent.login_record().filter(|record| {
                slot.account_uuid.is_none()
                    || record.get("accountUuid").and_then(|v| v.as_str())
                        == slot.account_uuid.as_deref()
            }) {
                slot.login_record = Some(record);
            }
            self.record_live(agent.name(), &id, fingerprint);
        }
        self.save()?;
        let slot = self.catalog.get(&id).expect("present");
        if slot.shared && outcome == Added::New {
            self.write_record(slot, Some(credential))?;
        }
        Ok((outcome, id))
    }

    /// Makes a slot the one Claude Code uses, first saving any newer live credential.
    pub fn switch(&mut self, agent: Agent, selector: &str) -> Result<(Switched, Slot)> {
        self.sync_live(agent)?;
        let slot = self.resolve(agent, Some(selector))?;
        let settled = self.settle(&slot.id)?;
        let live = agent.live()?;
        let record = self.catalog.live.get(agent.name());
        let current = live.read()?.map(|c| c.fingerprint());
        if record.is_some_and(|r| r.slot == slot.id && Some(&r.sha256) == current.as_ref()) {
            return Ok((Switched::AlreadyActive, slot));
        }
        let credential = self.credential(&slot)?;
        if !agent.accepts(&credential) {
            return Err(agent.cannot_take(&slot.name));
        }
        // A slot whose account is not confirmed since Claude Code superseded it may hold a
        // spent refresh token: Claude Code gets the access token alone, which it uses until it
        // expires and which can replay nothing.
        let credential = match settled {
            Settled::Unconfirmed { newer } => {
                self.notices.push(format!(
                    "slot '{}' waits for its account to be confirmed (the newer tokens are in '{newer}'); {} gets its access token without the refresh token meanwhile",
                    slot.name,
                    agent.program()
                ));
                credential.without_refresh_token()
            }
            _ => credential,
        };
        self.rescue_live(agent)?;
        failpoint("use:before-live-write");
        let fingerprint = live.write(&credential)?;
        failpoint("use:after-live-write");
        info!(slot = %slot.name, live = %live.describe(), "wrote the live credential");
        // Claude Code names the account from its login record, not from the credential.
        if let Some(account) = slot.login_account_object() {
            match agent.set_login_record(&account) {
                Ok(_) => {}
                Err(err) => self.notices.push(format!(
                    "{} may still name the previous account: {}",
                    agent.program(),
                    err.message()
                )),
            }
        }
        self.record_live(agent.name(), &slot.id, fingerprint);
        self.save()?;
        Ok((Switched::Switched, slot))
    }

    /// The slot holding agent `agent`'s ralph token, if the catalog knows one.
    pub fn ralph_slot(&self, agent: &str) -> Option<&Slot> {
        self.catalog
            .slots
            .iter()
            .find(|s| s.ralph && s.agent == agent)
    }

    /// Stores agent `agent`'s ralph token: in the backend its slot already names, else in the
    /// one for new secrets, as a long-lived slot named `<agent>-token` (a suffix if taken).
    /// `stored`: the token is already in `backend` (found there, not handed in), so only the
    /// catalog learns of it.
    pub fn keep_ralph(
        &mut self,
        agent: &str,
        credential: &Credential,
        stored: Option<Backend>,
    ) -> Result<()> {
        let id = match self.ralph_slot(agent) {
            Some(slot) => slot.id.clone(),
            None => {
                let name = self.catalog.unique_name(agent, &format!("{agent}-token"));
                let backend = match stored {
                    Some(backend) => backend,
                    None => self.backend()?,
                };
                let mut slot = Slot::new(agent, &name, credential, backend, self.now);
                slot.ralph = true;
                let id = slot.id.clone();
                self.catalog.slots.push(slot);
                id
            }
        };
        let slot = self.catalog.get(&id).expect("present").clone();
        if stored.is_none() {
            self.put(&slot, credential)?;
        }
        let now = self.now;
        self.catalog
            .get_mut(&id)
            .expect("present")
            .absorb(credential, now);
        self.save()
    }

    /// Renames a slot; returns its old name. Only the catalog changes: the secret's key is
    /// the slot's id, so nothing stored moves.
    pub fn rename(&mut self, agent: Agent, selector: &str, new: &str) -> Result<String> {
        catalog::validate_name(new)?;
        let slot = self.resolve(agent, Some(selector))?;
        if let Some(other) = self.catalog.by_name(agent.name(), new)
            && other.id != slot.id
        {
            return Err(
                Error::usage(format!("a {agent} slot named '{new}' already exists")).with_hint(
                    format!(
                        "choose another name, or remove that slot first: tokenkeeper remove {new}"
                    ),
                ),
            );
        }
        self.catalog.get_mut(&slot.id).expect("resolved").name = new.to_string();
        self.save()?;
        if slot.shared {
            // Every install takes up the new name at its next look at the records.
            let renamed = self.catalog.get(&slot.id).expect("resolved");
            self.write_record(renamed, None)?;
        }
        Ok(slot.name)
    }

    /// Stores a long-lived token (from `setup`) as a new slot: the secret first, read back and
    /// compared, and only then the catalog, so a store that did not really keep it leaves no
    /// slot behind.
    pub fn add_long_lived(
        &mut self,
        agent: Agent,
        name: &str,
        credential: &Credential,
    ) -> Result<Slot> {
        catalog::validate_name(name)?;
        if self.catalog.by_name(agent.name(), name).is_some() {
            return Err(
                Error::usage(format!("a {agent} slot named '{name}' already exists")).with_hint(
                    format!("replace its token: tokenkeeper rotate {name}; or choose another name"),
                ),
            );
        }
        let slot = Slot::new(agent.name(), name, credential, self.backend()?, self.now);
        self.put_verified(&slot, credential)?;
        failpoint("setup:before-catalog");
        self.catalog.slots.push(slot.clone());
        self.save()?;
        Ok(slot)
    }

    /// Replaces a long-lived slot's token in place (`rotate`). The new token is written, read
    /// back and compared; if the store does not hold it, the old one is put back.
    pub fn replace_long_lived(&mut self, slot_id: &str, credential: &Credential) -> Result<Slot> {
        let slot = self
            .catalog
            .get(slot_id)
            .cloned()
            .ok_or_else(|| Error::failure("the slot went away meanwhile"))?;
        let old = self.credential(&slot).ok();
        if let Err(err) = self.put_verified(&slot, credential) {
            if let Some(old) = old {
                let _ = self.put(&slot, &old);
            }
            return Err(err);
        }
        let now = self.now;
        let kept = self.catalog.get_mut(slot_id).expect("present");
        kept.absorb(credential, now);
        let kept = kept.clone();
        self.save()?;
        Ok(kept)
    }

    /// `put`, then a read-back: the store must give back exactly what was written.
    fn put_verified(&mut self, slot: &Slot, credential: &Credential) -> Result<()> {
        self.put(slot, credential)?;
        let store = self.stores.get(slot.backend);
        let written = credential.to_secret_json();
        match store.get(&slot.secret_key())? {
            Some(back) if back.expose_secret() == written.expose_secret() => Ok(()),
            Some(_) => Err(Error::failure(format!(
                "the {} store gave back something else than was just written for slot '{}'",
                store.name(),
                slot.name
            ))),
            None => Err(Error::failure(format!(
                "the {} store does not hold what was just written for slot '{}'",
                store.name(),
                slot.name
            ))),
        }
    }

    /// Removes a slot. The active slot's live credential goes too, but only when `clear_live`.
    pub fn remove(&mut self, agent: Agent, selector: &str, clear_live: bool) -> Result<Removed> {
        self.remove_leaving(agent, selector, clear_live, None)
    }

    /// `remove`, but the store item is overwritten with `tombstone` instead of deleted, for
    /// whatever reads it by name to learn the token was revoked.
    pub fn revoke(
        &mut self,
        agent: Agent,
        selector: &str,
        tombstone: Option<&Secret>,
    ) -> Result<Removed> {
        self.remove_leaving(agent, selector, true, tombstone)
    }

    fn remove_leaving(
        &mut self,
        agent: Agent,
        selector: &str,
        clear_live: bool,
        tombstone: Option<&Secret>,
    ) -> Result<Removed> {
        self.sync_live(agent)?;
        let slot = self.resolve(agent, Some(selector))?;
        let owns_live = self
            .catalog
            .live
            .get(agent.name())
            .is_some_and(|r| r.slot == slot.id);
        let live = agent.live()?;
        let live_exists = live.exists()?;
        if owns_live && live_exists && !clear_live {
            return Err(Error::failure(format!(
                "slot '{}' is the one {} uses now; removing it also deletes {}",
                slot.name,
                agent.program(),
                live.describe()
            ))
            .with_hint(format!(
                "to remove it and log {} out, run: tokenkeeper remove {} --yes",
                agent.program(),
                slot.name
            )));
        }
        self.catalog.remove(&slot.id);
        self.save()?;
        failpoint("remove:after-catalog");
        if owns_live {
            self.rescue_live(agent)?;
        }
        let cleared_live = if owns_live && live.remove()? {
            Some(live.describe())
        } else {
            None
        };
        let store = self.stores.get(slot.backend);
        if slot.shared {
            // Before the secret: a record without its secret would show every install a slot
            // it cannot use, while a secret left by a crash here is only a leftover.
            shared::delete(store, &slot)?;
        }
        match tombstone {
            Some(tombstone) => store.put(&slot.secret_key(), tombstone)?,
            None => {
                store.delete(&slot.secret_key())?;
            }
        }
        Ok(Removed { slot, cleared_live })
    }
}

impl Keeper {
    /// Moves one slot's secret to `to`: copy, read back and compare, switch the catalog, then
    /// delete the old copy. A crash between any two steps leaves the slot readable from the
    /// backend the catalog names (at worst with a stale copy left in the other).
    /// Call with the slot's lock held, so no refresh writes the secret meanwhile.
    pub fn migrate(&mut self, slot_id: &str, to: Backend) -> Result<Migrated> {
        let slot = self
            .catalog
            .get(slot_id)
            .cloned()
            .ok_or_else(|| Error::failure("the slot was removed meanwhile"))?;
        let from = slot.backend;
        let key = slot.secret_key();
        if from == to {
            // A migration killed after switching the catalog left the old copy behind: a
            // secret nobody reads any more. Best effort: a backend that cannot be reached
            // holds nothing to clean up that this could reach anyway.
            // Shared backends (OpenBao, a 1Password vault) are left alone: another install may
            // keep the same slot there.
            let local = Backend::ALL.into_iter().filter(|b| !b.is_shared());
            for other in local.filter(|b| *b != to) {
                if let Ok(true) = self.stores.get(other).delete(&key) {
                    debug!(slot = %slot.name, backend = %other, "deleted a leftover copy");
                }
            }
            return Ok(Migrated::AlreadyThere);
        }
        let secret = self.stores.get(from).get(&key)?.ok_or_else(|| {
            Error::failure(format!(
                "the credential of slot '{}' is missing from the {from} store",
                slot.name
            ))
        })?;
        let target = self.stores.get(to);
        target.put(&key, &secret)?;
        failpoint("migrate:after-copy");
        if target.get(&key)?.as_ref() != Some(&secret) {
            // Best effort: the catalog still points at the intact original.
            let _ = target.delete(&key);
            return Err(Error::failure(format!(
                "slot '{}' read back from the {to} store differs from what was written; left in the {from} store",
                slot.name
            )));
        }
        // Into a lineage home, the slot becomes one every install sees; out of it, the
        // record goes first, so no install is shown a slot whose secret is leaving.
        let into_home = to.is_lineage_home() && !slot.ralph;
        if slot.shared && !into_home {
            shared::delete(self.stores.get(from), &slot)?;
        }
        let moved = self.catalog.get_mut(slot_id).expect("present");
        moved.backend = to;
        moved.shared = into_home;
        self.save()?;
        if into_home {
            let moved = self.catalog.get(slot_id).expect("present");
            let credential = Credential::parse(
                secret.expose_secret().as_bytes(),
                &format!("slot '{}'", slot.name),
            )
            .ok();
            self.write_record(moved, credential.as_ref())?;
        }
        failpoint("migrate:after-catalog");
        let removed = match self.stores.get(from).delete(&key) {
            Ok(_) => true,
            Err(err) => {
                self.notices.push(format!(
                    "slot '{}' moved, but its old copy in the {from} store could not be deleted: {}",
                    slot.name,
                    err.message()
                ));
                false
            }
        };
        Ok(Migrated::Moved { from, removed })
    }
}

/// What `Keeper::settle` found about a superseded slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Not superseded (any more): the two slots are different accounts, or the newer is gone.
    Distinct,
    /// The same account: the slot now holds the newer slot's tokens, and that slot is gone.
    Merged { from: String },
    /// Not known yet; the name of the slot holding the newer tokens.
    Unconfirmed { newer: String },
}

impl Keeper {
    /// Settles a slot whose live copy was superseded while its account could not be told.
    /// The newer slot's account must be known (its first refresh online names it); the old
    /// slot's is its recorded one or, failing that, the one its own access token answers for —
    /// a token the provider refuses was retired by the refresh that made the newer tokens.
    pub fn settle(&mut self, slot_id: &str) -> Result<Settled> {
        let Some(slot) = self.catalog.get(slot_id).cloned() else {
            return Ok(Settled::Distinct);
        };
        let Some(newer_id) = slot.superseded_by.clone() else {
            return Ok(Settled::Distinct);
        };
        let Some(newer) = self.catalog.get(&newer_id).cloned() else {
            self.catalog
                .get_mut(slot_id)
                .expect("present")
                .superseded_by = None;
            self.save()?;
            return Ok(Settled::Distinct);
        };
        let Some(newer_uuid) = newer.account_uuid.clone() else {
            return Ok(Settled::Unconfirmed { newer: newer.name });
        };
        let same = match slot.account_uuid.as_deref() {
            Some(uuid) => Some(uuid == newer_uuid),
            None => match Agent::from_name(&slot.agent)
                .unwrap_or_default()
                .account_of(&self.credential(&slot)?, self.now)
            {
                Account::Known(uuid) => Some(uuid == newer_uuid),
                Account::Refused => Some(true),
                Account::Unknown => None,
            },
        };
        match same {
            None => Ok(Settled::Unconfirmed { newer: newer.name }),
            Some(false) => {
                self.catalog
                    .get_mut(slot_id)
                    .expect("present")
                    .superseded_by = None;
                self.save()?;
                Ok(Settled::Distinct)
            }
            Some(true) => {
                let credential = self.credential(&newer)?;
                self.put(&slot, &credential)?;
                let now = self.now;
                let merged = self.catalog.get_mut(slot_id).expect("present");
                merged.absorb(&credential, now);
                merged.account_uuid = newer.account_uuid.clone();
                merged.email = newer.email.clone().or(merged.email.take());
                merged.refreshed_at = newer.refreshed_at;
                for record in self.catalog.live.values_mut() {
                    if record.slot == newer.id {
                        record.slot = slot.id.clone();
                    }
                }
                for active in self.catalog.active.values_mut() {
                    if *active == newer.id {
                        *active = slot.id.clone();
                    }
                }
                self.catalog.remove(&newer.id);
                self.save()?;
                failpoint("settle:after-catalog");
                self.stores.get(newer.backend).delete(&newer.secret_key())?;
                Ok(Settled::Merged { from: newer.name })
            }
        }
    }
}

/// What `Keeper::migrate` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrated {
    AlreadyThere,
    /// `removed`: the old copy is gone (false: it could not be deleted, see the notices).
    Moved {
        from: Backend,
        removed: bool,
    },
}

/// The credential Claude Code uses now, with its fingerprint and the account it logged in as.
pub struct LiveLogin {
    pub credential: Credential,
    pub fingerprint: String,
    pub account: Option<LoginAccount>,
    pub path: String,
}

/// Reads Claude Code's live credential for `add --from live`.
pub fn read_live_login(agent: Agent, managed: bool) -> Result<LiveLogin> {
    let live = agent.live()?;
    let current = live.read()?.ok_or_else(|| {
        Error::failure(format!(
            "{} has no stored login in {}",
            agent.program(),
            live.describe()
        ))
        .with_hint(format!(
            "{}, or pipe a credential: tokenkeeper add NAME --agent {agent} --from stdin",
            agent.login_hint()
        ))
    })?;
    let fingerprint = current.fingerprint();
    let credential = current.parsed?;
    // The login record names the account only while tokenkeeper has not swapped credentials
    // underneath it; after a `use` it may describe another account, so it is not trusted then.
    let account = if managed { None } else { agent.login_account() };
    Ok(LiveLogin {
        credential,
        fingerprint,
        account,
        path: live.describe(),
    })
}
