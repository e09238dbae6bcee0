//! Several slots of one agent behind one proxy, for one person's own accounts.
//!
//! Each request goes to a slot chosen by the pool's strategy. A conversation stays on its slot
//! (the agent's prompt cache lives with the account), named by the session header the agent
//! sends, or the whole proxy when it sends none. A slot whose limit is reached cools down until
//! its reset time; the request goes again on another slot, and the conversation moves with it.
//! Each slot keeps its own lineage and refresh.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::HeaderMap;
use jiff::Timestamp;
use tracing::{info, warn};

use super::token::SlotTokens;
use crate::agent::Agent;
use crate::error::{Error, Result};
use crate::keeper::Keeper;
use crate::paths::Paths;
use crate::pool::{self, Standing, Strategy};
use crate::usage::{self, Snapshot};

/// Conversations remembered; past this, those quiet longest are forgotten.
const SESSIONS: usize = 4096;
/// A conversation quiet this long is forgotten.
const SESSION_IDLE: Duration = Duration::from_secs(3600);

pub struct SlotPool {
    agent: Agent,
    strategy: Strategy,
    /// Where the pool's requests go by default: the same for every member.
    target: String,
    members: Vec<Member>,
    state: Mutex<State>,
}

pub struct Member {
    pub tokens: SlotTokens,
    pub name: Arc<str>,
    id: String,
    /// Non-secret headers this slot's account wants beside its token (Codex's account id);
    /// they replace whatever the client sent.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

struct State {
    /// The last reading of each member: the catalog's at start, then what answers reported.
    readings: Vec<Option<Snapshot>>,
    /// Until when a member whose limit was reached is left alone.
    cooled: Vec<Option<Timestamp>>,
    /// Conversation → member, with when it was last seen. The empty key is the conversation
    /// of clients that name none.
    sessions: HashMap<String, (usize, Instant)>,
}

impl SlotPool {
    /// Opens the named slots of `agent` (every one of them for `all`), each ready with a
    /// usable token. Slots that need a new login are left out with a warning.
    pub fn open(paths: &Paths, agent: Agent, names: &[String], strategy: Strategy) -> Result<Self> {
        let (slots, logins) = {
            let mut keeper = Keeper::open(paths.clone())?;
            if let Err(err) = keeper.sync_shared() {
                warn!(error = %err.message(), "pooling the slots known here");
            }
            let known: Vec<_> = keeper.catalog().slots_of(agent.name()).cloned().collect();
            let slots = if names.iter().any(|name| name == "all") {
                known
            } else {
                let mut chosen = Vec::new();
                for name in names {
                    let slot = keeper.resolve(agent, Some(name))?;
                    if chosen
                        .iter()
                        .all(|s: &crate::catalog::Slot| s.id != slot.id)
                    {
                        chosen.push(slot);
                    }
                }
                chosen
            };
            // What each account wants upstream, told by its stored credential.
            let logins: Vec<_> = slots
                .iter()
                .map(|slot| {
                    keeper.credential(slot).map(|credential| {
                        (
                            agent.proxy_target(Some(&credential)),
                            agent.upstream_headers(&credential),
                        )
                    })
                })
                .collect();
            (slots, logins)
        };
        let mut target: Option<String> = None;
        let mut members = Vec::new();
        let mut readings = Vec::new();
        for (slot, login) in slots.into_iter().zip(logins) {
            if slot.needs_login.is_some() {
                warn!(slot = %slot.name, "left out of the pool: it needs a new login");
                continue;
            }
            let (slot_target, headers) = match login {
                Ok(login) => login,
                Err(err) => {
                    warn!(slot = %slot.name, error = %err.message(), "left out of the pool");
                    continue;
                }
            };
            if let Some(target) = target.as_ref().filter(|t| **t != slot_target) {
                return Err(Error::usage(format!(
                    "slot '{}' is served at {slot_target}, the rest of the pool at {target}: a pool takes one kind of login",
                    slot.name
                )));
            }
            target = Some(slot_target);
            match SlotTokens::open(paths.clone(), agent, Some(slot.name.clone())) {
                Ok(tokens) => {
                    members.push(Member {
                        tokens,
                        name: slot.name.as_str().into(),
                        id: slot.id.clone(),
                        headers,
                    });
                    readings.push(slot.usage.clone());
                }
                Err(err) => {
                    warn!(slot = %slot.name, error = %err.message(), "left out of the pool");
                }
            }
        }
        if members.is_empty() {
            return Err(
                Error::failure(format!("no {agent} slot of the pool can be used")).with_hint(
                    format!("see which need a new login: tokenkeeper list --agent {agent}"),
                ),
            );
        }
        let names: Vec<&str> = members.iter().map(|m| &*m.name).collect();
        info!(slots = %names.join(","), strategy = ?strategy, "pool ready");
        let n = members.len();
        Ok(Self {
            agent,
            strategy,
            target: target.unwrap_or_default(),
            members,
            state: Mutex::new(State {
                readings,
                cooled: vec![None; n],
                sessions: HashMap::new(),
            }),
        })
    }

    pub fn member(&self, i: usize) -> &Member {
        &self.members[i]
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The member for the next request of conversation `session`, none of `tried`: its own
    /// while that one can take it, else the strategy's choice. `None` when every other
    /// member is cooled down, spent or refused.
    pub fn pick(&self, session: &str, tried: &[usize]) -> Option<usize> {
        let now = Timestamp::now();
        let mut state = self.state.lock().expect("pool lock");
        let available = |state: &State, i: usize| {
            !tried.contains(&i)
                && state.cooled[i].is_none_or(|until| until <= now)
                && pool::usable(self.standing(state, i), now)
        };
        let previous = state.sessions.get(session).map(|(i, _)| *i);
        if let Some(i) = previous.filter(|&i| available(&state, i)) {
            state
                .sessions
                .insert(session.to_string(), (i, Instant::now()));
            return Some(i);
        }
        // Candidates in `list` order, starting after the member the conversation leaves, so
        // `next` goes round the pool.
        let n = self.members.len();
        let start = previous.map_or(0, |i| i + 1);
        let candidates: Vec<usize> = (0..n)
            .map(|step| (start + step) % n)
            .filter(|&i| available(&state, i))
            .collect();
        let standings: Vec<Standing<'_>> = candidates
            .iter()
            .map(|&i| self.standing(&state, i))
            .collect();
        let chosen = candidates[pool::choose(&standings, None, self.strategy, now)?];
        drop(standings);
        if state.sessions.len() >= SESSIONS {
            state
                .sessions
                .retain(|_, (_, seen)| seen.elapsed() < SESSION_IDLE);
            if state.sessions.len() >= SESSIONS {
                state.sessions.clear();
            }
        }
        state
            .sessions
            .insert(session.to_string(), (chosen, Instant::now()));
        Some(chosen)
    }

    /// Of the members not in `tried`, the one whose limit resets first.
    pub fn back_soonest(&self, tried: &[usize]) -> Option<usize> {
        let now = Timestamp::now();
        let state = self.state.lock().expect("pool lock");
        (0..self.members.len())
            .filter(|i| !tried.contains(i))
            .min_by_key(|&i| {
                let spent = pool::spent_until(self.standing(&state, i), now);
                state.cooled[i].max(spent).unwrap_or(now)
            })
    }

    fn standing<'a>(&'a self, state: &'a State, i: usize) -> Standing<'a> {
        Standing {
            id: &self.members[i].id,
            needs_login: false,
            usage: state.readings[i].as_ref(),
        }
    }

    /// Takes note of the quota an answer to member `i` reports.
    pub fn observe(&self, i: usize, headers: &HeaderMap) {
        let member = &self.members[i];
        member.tokens.observe(headers);
        if let Some(reading) = usage::headers::snapshot(self.agent, headers, Timestamp::now()) {
            let mut state = self.state.lock().expect("pool lock");
            state.readings[i] = Some(reading);
        }
    }

    /// Leaves member `i` alone until `until`: its limit is reached.
    pub fn cool(&self, i: usize, until: Timestamp) {
        let mut state = self.state.lock().expect("pool lock");
        state.cooled[i] = Some(until);
        info!(slot = %self.members[i].name, until = %until, "limit reached; cooling down");
    }

    pub fn agent(&self) -> Agent {
        self.agent
    }

    /// Where the pool's requests go unless told otherwise.
    pub fn target(&self) -> &str {
        &self.target
    }
}
