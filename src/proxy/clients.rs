//! Who may use the proxy: anyone who can connect (loopback only), whoever holds the one phantom
//! token, or named clients — one phantom per machine or sandbox, each revocable alone.
//!
//! Named clients live in a file of `NAME sha256:HEX` lines (the SHA-256 of the client's token;
//! the file holds no secret), re-read on SIGHUP. A file that does not parse leaves the clients
//! as they were: a typo must not lock every machine out, or let every machine in.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::HeaderMap;
use http::header::{self, HeaderValue};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};
use crate::secret::Secret;

/// How a client's token is written in the clients file.
pub const HASH_PREFIX: &str = "sha256:";

pub enum Clients {
    /// No token asked for: only sound on loopback.
    Anyone,
    /// One phantom token shared by every client.
    One(Secret),
    /// Named tokens from a file.
    Named(NamedClients),
}

/// Whether a request may go on, and who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    Named(Arc<str>),
    Refused,
}

impl Admission {
    pub fn refused(&self) -> bool {
        *self == Self::Refused
    }

    /// The client's name, for the access log.
    pub fn name(&self) -> Option<&Arc<str>> {
        match self {
            Self::Named(name) => Some(name),
            _ => None,
        }
    }
}

impl Clients {
    /// Whether clients must present a token.
    pub fn checked(&self) -> bool {
        !matches!(self, Self::Anyone)
    }

    pub fn admit(&self, headers: &HeaderMap) -> Admission {
        match self {
            Self::Anyone => Admission::Admitted,
            Self::One(expected) => {
                let expected = expected.expose_secret().as_bytes();
                // Both places are compared whatever the first gave, in time independent of
                // the contents.
                let [bearer, api_key] = presented(headers);
                let by_bearer = bearer.is_some_and(|given| bool::from(given.ct_eq(expected)));
                let by_api_key = api_key.is_some_and(|given| bool::from(given.ct_eq(expected)));
                if by_bearer | by_api_key {
                    Admission::Admitted
                } else {
                    Admission::Refused
                }
            }
            Self::Named(named) => named.admit(headers),
        }
    }

    /// Re-reads the clients file; the number of clients now admitted. `None` when there is no
    /// file to re-read.
    pub fn reload(&self) -> Result<Option<usize>> {
        match self {
            Self::Named(named) => named.reload().map(Some),
            _ => Ok(None),
        }
    }
}

/// The token a request carries as `Authorization: Bearer` and as `x-api-key`.
fn presented(headers: &HeaderMap) -> [Option<&[u8]>; 2] {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "));
    let api_key = headers.get("x-api-key").map(HeaderValue::as_bytes);
    [bearer, api_key]
}

pub struct NamedClients {
    path: PathBuf,
    table: ArcSwap<Vec<Entry>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: Arc<str>,
    pub hash: [u8; 32],
}

impl NamedClients {
    pub fn open(path: &Path) -> Result<Self> {
        let table = read(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            table: ArcSwap::from_pointee(table),
        })
    }

    pub fn len(&self) -> usize {
        self.table.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn reload(&self) -> Result<usize> {
        let table = read(&self.path)?;
        let n = table.len();
        self.table.store(Arc::new(table));
        Ok(n)
    }

    fn admit(&self, headers: &HeaderMap) -> Admission {
        let table = self.table.load();
        let mut found = None;
        for given in presented(headers).into_iter().flatten() {
            let hash: [u8; 32] = Sha256::digest(given).into();
            // Every entry is compared: how long this takes says nothing about which matched.
            for entry in table.iter() {
                if bool::from(entry.hash.ct_eq(&hash)) {
                    found = Some(entry.name.clone());
                }
            }
        }
        found.map_or(Admission::Refused, Admission::Named)
    }
}

/// The SHA-256 of a client token as the clients file writes it.
pub fn hash_line_value(token: &str) -> String {
    format!(
        "{HASH_PREFIX}{}",
        crate::hex::encode(&Sha256::digest(token.as_bytes()))
    )
}

/// Whether `name` may name a client: it appears in log lines and the file, so it stays plain.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
}

/// The clients in `path`.
pub fn read(path: &Path) -> Result<Vec<Entry>> {
    crate::perms::check_private(path, false)?;
    let text = std::fs::read_to_string(path)
        .map_err(|err| Error::io("cannot read the clients file", path, err))?;
    parse(&text).map_err(|(line, why)| {
        Error::failure(format!("{}:{line}: {why}", path.display())).with_hint(
            "each line is NAME sha256:HEX (see `tokenkeeper proxy-clients add --help`); # starts a comment",
        )
    })
}

/// Entries of a clients file, or the first bad line's number and what is wrong with it.
pub fn parse(text: &str) -> std::result::Result<Vec<Entry>, (usize, String)> {
    let mut entries: Vec<Entry> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let bad = |why: String| (n + 1, why);
        let mut words = line.split_whitespace();
        let (Some(name), Some(hash), None) = (words.next(), words.next(), words.next()) else {
            return Err(bad("expected two words, a name and a token hash".into()));
        };
        if !valid_name(name) {
            return Err(bad(format!(
                "'{name}' is not a client name (letters, digits, . _ - @; at most 64)"
            )));
        }
        let hash = decode_hash(hash).ok_or_else(|| {
            // The value is not echoed: someone may have pasted a token instead of its hash.
            bad(format!(
                "the token hash of '{name}' is not {HASH_PREFIX} and 64 hex digits"
            ))
        })?;
        if entries.iter().any(|e| *e.name == *name) {
            return Err(bad(format!("client '{name}' is listed twice")));
        }
        if let Some(other) = entries.iter().find(|e| e.hash == hash) {
            return Err(bad(format!(
                "'{name}' has the same token as '{}': the log could not tell them apart",
                other.name
            )));
        }
        entries.push(Entry {
            name: name.into(),
            hash,
        });
    }
    Ok(entries)
}

fn decode_hash(text: &str) -> Option<[u8; 32]> {
    let hex = text.strip_prefix(HASH_PREFIX).unwrap_or(text);
    crate::hex::decode(hex)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn one_token_is_accepted_as_bearer_or_api_key_only_when_equal() {
        let one = Clients::One(Secret::new("phantom".into()));
        let admitted = |pairs: &[(&str, &str)]| !one.admit(&headers(pairs)).refused();
        assert!(admitted(&[("authorization", "Bearer phantom")]));
        assert!(admitted(&[("x-api-key", "phantom")]));
        assert!(!admitted(&[("authorization", "Bearer phantom2")]));
        assert!(!admitted(&[("authorization", "phantom")]));
        assert!(!admitted(&[("x-api-key", "phanto")]));
        assert!(!admitted(&[]));
    }

    #[test]
    fn named_clients_are_known_by_the_hash_of_their_token() {
        let text = format!(
            "# machines\nlaptop {}\n\nci-1 {}  # the runner\n",
            hash_line_value("tok-laptop"),
            hash_line_value("tok-ci").trim_start_matches(HASH_PREFIX)
        );
        let entries = parse(&text).unwrap();
        let named = NamedClients {
            path: PathBuf::new(),
            table: ArcSwap::from_pointee(entries),
        };
        let who = |pairs: &[(&str, &str)]| named.admit(&headers(pairs));
        assert_eq!(
            who(&[("authorization", "Bearer tok-laptop")])
                .name()
                .unwrap()
                .as_ref(),
            "laptop"
        );
        assert_eq!(
            who(&[("x-api-key", "tok-ci")]).name().unwrap().as_ref(),
            "ci-1"
        );
        assert!(who(&[("x-api-key", "tok-other")]).refused());
        assert!(who(&[]).refused());
    }

    #[test]
    fn a_bad_clients_file_names_the_line_and_never_echoes_a_value() {
        let good = hash_line_value("a");
        let cases = [
            ("laptop\n".to_string(), 1, "two words"),
            (format!("# x\nlaptop {good} extra\n"), 2, "two words"),
            ("laptop sk-ant-oat01-secret\n".to_string(), 1, "64 hex"),
            (format!("bad/name {good}\n"), 1, "not a client name"),
            (
                format!("a {good}\na {}\n", hash_line_value("b")),
                2,
                "twice",
            ),
            (format!("a {good}\nb {good}\n"), 2, "same token"),
        ];
        for (text, line, why) in cases {
            let (at, message) = parse(&text).unwrap_err();
            assert_eq!(at, line, "{text}");
            assert!(message.contains(why), "{message}");
            assert!(!message.contains("sk-ant"), "{message}");
        }
        assert!(parse("").unwrap().is_empty());
    }
}
