//! Refresh tokens as both fake providers keep them: in families (one per login), single-use —
//! refreshing with the family's current token rotates it, and a spent one revokes the family.

#![allow(dead_code)]

use std::collections::HashMap;

/// Why a refresh token was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Unknown,
    Revoked,
    /// A spent token: the family is revoked now.
    Reused {
        family: usize,
    },
}

#[derive(Default)]
pub struct Ledger {
    current: Vec<String>,
    revoked: Vec<bool>,
    family_of: HashMap<String, usize>,
}

impl Ledger {
    /// A new login's family; its index.
    pub fn new_family(&mut self) -> usize {
        self.current.push(String::new());
        self.revoked.push(false);
        self.current.len() - 1
    }

    /// `refresh` becomes `family`'s current token.
    pub fn issue(&mut self, family: usize, refresh: &str) {
        self.family_of.insert(refresh.to_string(), family);
        self.current[family] = refresh.to_string();
    }

    /// Spends `refresh`: its family when it was current; a replay revokes the family.
    pub fn rotate(&mut self, refresh: &str) -> Result<usize, Refused> {
        let Some(&family) = self.family_of.get(refresh) else {
            return Err(Refused::Unknown);
        };
        if self.revoked[family] {
            return Err(Refused::Revoked);
        }
        if self.current[family] != refresh {
            self.revoked[family] = true;
            return Err(Refused::Reused { family });
        }
        Ok(family)
    }

    /// Whether `refresh` is its family's current (unspent) token and the family is alive.
    pub fn is_current(&self, refresh: &str) -> bool {
        self.family_of
            .get(refresh)
            .is_some_and(|&f| !self.revoked[f] && self.current[f] == refresh)
    }

    pub fn family_revoked(&self, refresh: &str) -> bool {
        self.family_of
            .get(refresh)
            .is_some_and(|&f| self.revoked[f])
    }

    /// How many families are revoked.
    pub fn revoked_families(&self) -> usize {
        self.revoked.iter().filter(|r| **r).count()
    }

    pub fn is_revoked(&self, family: usize) -> bool {
        self.revoked[family]
    }

    /// Revokes the family of `refresh`; which one it was.
    pub fn revoke(&mut self, refresh: &str) -> Option<usize> {
        let family = *self.family_of.get(refresh)?;
        self.revoked[family] = true;
        Some(family)
    }
}
