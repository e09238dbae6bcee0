//! `Credential`: one account's tokens, parsed from and written back to raw JSON.
//!
//! Two shapes are understood:
//! - Claude Code's blob, `{"claudeAiOauth":{"accessToken","refreshToken","expiresAt",…},…}`, as
//!   found in `.credentials.json` and the macOS Keychain;
//! - the flat ralph shape, `{"accessToken","expiresAt"}`, used for long-lived setup tokens.
//!
//! The document is kept as parsed (every unknown key, nested object and key order survives), and
//! only the fields tokenkeeper means to change are rewritten. Serialisation is compact, exactly as
//! Claude Code writes the file. All string values are zeroed when a credential is dropped.

use std::fmt;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use zeroize::Zeroize;

use crate::agent::codex;
use crate::error::{Error, Result};
use crate::secret::Secret;

/// Key of the OAuth object in Claude Code's credential blob.
pub const CLAUDE_OAUTH_KEY: &str = "claudeAiOauth";

/// How long a bare setup token is taken to live when nothing says otherwise (the ralph rule).
pub const BARE_TOKEN_LIFETIME: SignedDuration = SignedDuration::from_hours(365 * 24);

/// Tokens shorter than this are taken, with a warning: Claude's are about 100 characters.
const SHORT_TOKEN: usize = 16;

/// Timestamps below this many milliseconds (March 1973) are almost surely seconds.
const MIN_PLAUSIBLE_MS: i64 = 100_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Access token plus a refresh token: refreshable, about 8 hours per access token.
    Oauth,
    /// An access token alone, such as `claude setup-token` prints: valid about a year.
    LongLived,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Oauth => "oauth",
            Kind::LongLived => "long-lived",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a user handed in: a whole JSON credential, or a bare token that tokenkeeper wrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputForm {
    Json,
    BareToken,
}

/// Which agent's document a credential is, which decides where its fields are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Claude Code's blob: fields under `claudeAiOauth`.
    ClaudeBlob,
    /// The flat ralph shape `{"accessToken","expiresAt"}`.
    Flat,
    /// Codex's `auth.json` (see `agent::codex`).
    Codex,
}

#[derive(Clone)]
pub struct Credential {
    doc: Map<String, Value>,
    shape: Shape,
}

impl Credential {
    /// Parses a JSON credential. `origin` names where it came from, for the error message.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Self> {
        let invalid = |why: String| {
            Error::failure(format!("{origin} does not hold a valid credential: {why}"))
        };
        let value: Value = serde_json::from_slice(bytes).map_err(|err| {
            let what = match err.classify() {
                serde_json::error::Category::Eof => "truncated JSON",
                _ => "not valid JSON",
            };
            invalid(format!(
                "{what} (line {}, column {})",
                err.line(),
                err.column()
            ))
        })?;
        let Value::Object(mut doc) = value else {
            return Err(invalid(format!(
                "expected a JSON object, found {}",
                type_name(&value)
            )));
        };
        let shape = match doc.get(CLAUDE_OAUTH_KEY) {
            Some(Value::Object(_)) => Shape::ClaudeBlob,
            Some(other) => {
                return Err(invalid(format!(
                    "`{CLAUDE_OAUTH_KEY}` must be an object, found {}",
                    type_name(other)
                )));
            }
            // The inner object alone, as some scripts save it: put it back where Claude Code wants it.
            None if codex::is_auth_json(&doc) => Shape::Codex,
            None if doc.contains_key("refreshToken") => {
                let inner = std::mem::take(&mut doc);
                doc.insert(CLAUDE_OAUTH_KEY.to_string(), Value::Object(inner));
                Shape::ClaudeBlob
            }
            None if doc.contains_key("accessToken") => Shape::Flat,
            // What `revoke` leaves in an item that something else may read by name.
            None if doc.get("revoked") == Some(&Value::Bool(true)) => {
                let at = doc.get("revokedAt").and_then(Value::as_str).unwrap_or("?");
                return Err(invalid(format!(
                    "its token was revoked at {at} (tokenkeeper revoke); store a new one"
                )));
            }
            None => {
                return Err(invalid(format!(
                    "expected `{CLAUDE_OAUTH_KEY}` (Claude Code's credential), `tokens` (Codex's) or `accessToken`"
                )));
            }
        };
        let credential = Self { doc, shape };
        credential.validate().map_err(invalid)?;
        Ok(credential)
    }

    /// Parses a credential a user hands in, which tokenkeeper may later write where Claude
    /// Code reads it: on top of `parse`, `scopes` must be an array of strings (Claude Code
    /// hangs on anything else) and times must be numbers.
    pub fn parse_input(bytes: &[u8], origin: &str) -> Result<Self> {
        let credential = Self::parse(bytes, origin)?;
        credential.validate_strict().map_err(|why| {
            Error::failure(format!("{origin} does not hold a valid credential: {why}"))
        })?;
        Ok(credential)
    }

    /// Reads what a user piped in: a JSON credential, or a bare token (optionally surrounded by
    /// other text, as `claude setup-token` prints it) which gets an expiry of `now + 365 days`.
    pub fn from_input(input: &Secret, origin: &str, now: Timestamp) -> Result<(Self, InputForm)> {
        let text = input.expose_secret().trim();
        if text.starts_with(['{', '[']) {
            let mut credential = Self::parse_input(text.as_bytes(), origin)?;
            credential.set_expires_at_if_missing(now + BARE_TOKEN_LIFETIME);
            return Ok((credential, InputForm::Json));
        }
        let token =
            extract_bare_token(text).map_err(|why| Error::failure(format!("{origin}: {why}")))?;
        Ok((
            Self::from_bare_token(token, now + BARE_TOKEN_LIFETIME),
            InputForm::BareToken,
        ))
    }

    /// Wraps a long-lived token in the flat ralph shape.
    pub fn from_bare_token(token: Secret, expires_at: Timestamp) -> Self {
        let mut doc = Map::new();
        doc.insert(
            "accessToken".into(),
            Value::String(token.expose_secret().to_string()),
        );
        doc.insert("expiresAt".into(), Value::from(expires_at.as_millisecond()));
        Self {
            doc,
            shape: Shape::Flat,
        }
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if self.shape == Shape::Codex {
            return codex::validate(&self.doc);
        }
        let prefix = if self.shape == Shape::ClaudeBlob {
            "claudeAiOauth."
        } else {
            ""
        };
        let fields = self.fields();
        match fields.get("accessToken") {
            Some(Value::String(s)) if s.trim().is_empty() => {
                return Err(format!("`{prefix}accessToken` is empty"));
            }
            Some(Value::String(_)) => {}
            None | Some(Value::Null) => return Err(format!("`{prefix}accessToken` is missing")),
            Some(other) => {
                return Err(format!(
                    "`{prefix}accessToken` must be a string, found {}",
                    type_name(other)
                ));
            }
        }
        match fields.get("refreshToken") {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(other) => {
                return Err(format!(
                    "`{prefix}refreshToken` must be a string, found {}",
                    type_name(other)
                ));
            }
        }
        // Lenient where Claude Code may change a shape (a number as a string, scopes as one
        // string): what it wrote is kept byte for byte and read as meant.
        for key in ["expiresAt", "refreshTokenExpiresAt"] {
            match fields.get(key) {
                None | Some(Value::Null) => {}
                Some(value) => match millis(value) {
                    Some(ms)
                        if ms >= MIN_PLAUSIBLE_MS && Timestamp::from_millisecond(ms).is_ok() => {}
                    Some(ms) if (0..MIN_PLAUSIBLE_MS).contains(&ms) => {
                        return Err(format!(
                            "`{prefix}{key}` ({ms}) looks like seconds; it must be Unix milliseconds"
                        ));
                    }
                    Some(ms) => {
                        return Err(format!(
                            "`{prefix}{key}` must be Unix milliseconds, found {ms}"
                        ));
                    }
                    None => {
                        return Err(format!(
                            "`{prefix}{key}` must be a number (Unix milliseconds), found {}",
                            type_name(value)
                        ));
                    }
                },
            }
        }
        Ok(())
    }

    /// The shapes tokenkeeper itself would write; see `parse_input`.
    fn validate_strict(&self) -> std::result::Result<(), String> {
        if self.shape == Shape::Codex {
            return Ok(());
        }
        let prefix = if self.shape == Shape::ClaudeBlob {
            "claudeAiOauth."
        } else {
            ""
        };
        let fields = self.fields();
        for key in ["expiresAt", "refreshTokenExpiresAt"] {
            match fields.get(key) {
                None | Some(Value::Null) | Some(Value::Number(_)) => {}
                Some(other) => {
                    return Err(format!(
                        "`{prefix}{key}` must be a number (Unix milliseconds), found {}",
                        type_name(other)
                    ));
                }
            }
        }
        match fields.get("scopes") {
            None => {}
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => {}
            Some(Value::Array(_)) => {
                return Err(format!("`{prefix}scopes` must hold only strings"));
            }
            // Claude Code hangs on a non-array value, so never let one through.
            Some(other) => {
                return Err(format!(
                    "`{prefix}scopes` must be an array, found {}",
                    type_name(other)
                ));
            }
        }
        for key in ["subscriptionType", "rateLimitTier"] {
            match fields.get(key) {
                None | Some(Value::Null) | Some(Value::String(_)) => {}
                Some(other) => {
                    return Err(format!(
                        "`{prefix}{key}` must be a string, found {}",
                        type_name(other)
                    ));
                }
            }
        }
        Ok(())
    }

    /// Claude's fields (under `claudeAiOauth`, or the flat document). For Codex's document,
    /// which has none of them, the document itself: every lookup there finds nothing.
    fn fields(&self) -> &Map<String, Value> {
        if self.shape == Shape::ClaudeBlob {
            match self.doc.get(CLAUDE_OAUTH_KEY) {
                Some(Value::Object(inner)) => inner,
                _ => unreachable!("validated at parse time"),
            }
        } else {
            &self.doc
        }
    }

    fn fields_mut(&mut self) -> &mut Map<String, Value> {
        if self.shape == Shape::ClaudeBlob {
            match self.doc.get_mut(CLAUDE_OAUTH_KEY) {
                Some(Value::Object(inner)) => inner,
                _ => unreachable!("validated at parse time"),
            }
        } else {
            &mut self.doc
        }
    }

    fn str_field(&self, key: &str) -> Option<&str> {
        self.fields().get(key).and_then(Value::as_str)
    }

    fn time_field(&self, key: &str) -> Option<Timestamp> {
        let ms = millis(self.fields().get(key)?)?;
        Timestamp::from_millisecond(ms).ok()
    }

    pub fn access_token(&self) -> Secret {
        if self.shape == Shape::Codex {
            return Secret::new(codex::access_token(&self.doc).unwrap_or_default());
        }
        Secret::new(
            self.str_field("accessToken")
                .unwrap_or_default()
                .to_string(),
        )
    }

    pub fn refresh_token(&self) -> Option<Secret> {
        if self.shape == Shape::Codex {
            return codex::refresh_token(&self.doc).map(Secret::new);
        }
        self.str_field("refreshToken")
            .filter(|s| !s.is_empty())
            .map(|s| Secret::new(s.to_string()))
    }

    pub fn kind(&self) -> Kind {
        if self.refresh_token().is_some() {
            Kind::Oauth
        } else {
            Kind::LongLived
        }
    }

    /// True for Claude Code's blob shape, the only shape its credentials file accepts.
    pub fn is_claude_blob(&self) -> bool {
        self.shape == Shape::ClaudeBlob
    }

    /// True for Codex's `auth.json`.
    pub fn is_codex(&self) -> bool {
        self.shape == Shape::Codex
    }

    /// The account a Codex login's `id_token` names.
    pub fn codex_identity(&self) -> Option<codex::Identity> {
        (self.shape == Shape::Codex).then(|| codex::identity(&self.doc))
    }

    pub fn expires_at(&self) -> Option<Timestamp> {
        if self.shape == Shape::Codex {
            return codex::expires_at(&self.doc);
        }
        self.time_field("expiresAt")
    }

    pub fn refresh_expires_at(&self) -> Option<Timestamp> {
        if self.shape == Shape::Codex {
            return None;
        }
        self.time_field("refreshTokenExpiresAt")
    }

    pub fn subscription_type(&self) -> Option<String> {
        if self.shape == Shape::Codex {
            return codex::identity(&self.doc).plan;
        }
        self.str_field("subscriptionType").map(str::to_string)
    }

    pub fn rate_limit_tier(&self) -> Option<&str> {
        if self.shape == Shape::Codex {
            return None;
        }
        self.str_field("rateLimitTier")
    }

    pub fn scopes(&self) -> Vec<&str> {
        if self.shape == Shape::Codex {
            return Vec::new();
        }
        match self.fields().get("scopes") {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            Some(Value::String(text)) => text.split_whitespace().collect(),
            _ => Vec::new(),
        }
    }

    pub fn set_expires_at_if_missing(&mut self, at: Timestamp) {
        // A Codex token's expiry is inside it.
        if self.shape == Shape::Codex {
            return;
        }
        let fields = self.fields_mut();
        if fields.get("expiresAt").is_none_or(Value::is_null) {
            fields.insert("expiresAt".into(), Value::from(at.as_millisecond()));
        }
    }

    /// Takes the tokens of a refresh: new access token, the rotated refresh token (the old one is
    /// kept when the answer has none), the new expiry and scopes. Every other field stays.
    /// An answer without an access token still carries the lineage: the old access token (dead
    /// since the rotation) stays, marked expired, so the next use refreshes with the new one.
    pub fn apply_refresh(&mut self, tokens: &crate::agent::provider::Tokens, now: Timestamp) {
        if self.shape == Shape::Codex {
            let text = |s: &Option<Secret>| s.as_ref().map(|s| s.expose_secret().to_string());
            let (access, refresh, id) = (
                text(&tokens.access_token),
                text(&tokens.refresh_token),
                text(&tokens.id_token),
            );
            codex::apply_refresh(
                &mut self.doc,
                access.as_deref(),
                refresh.as_deref(),
                id.as_deref(),
                now,
            );
            return;
        }
        let fields = self.fields_mut();
        let Some(access) = &tokens.access_token else {
            if let Some(refresh) = &tokens.refresh_token {
                fields.insert(
                    "refreshToken".into(),
                    Value::String(refresh.expose_secret().to_string()),
                );
            }
            fields.insert("expiresAt".into(), Value::from(now.as_millisecond()));
            return;
        };
        fields.insert(
            "accessToken".into(),
            Value::String(access.expose_secret().to_string()),
        );
        if let Some(refresh) = &tokens.refresh_token {
            fields.insert(
                "refreshToken".into(),
                Value::String(refresh.expose_secret().to_string()),
            );
        }
        if let Some(at) = crate::agent::provider::expires_at(tokens, now) {
            fields.insert("expiresAt".into(), Value::from(at.as_millisecond()));
        }
        if let Some(scopes) = &tokens.scopes {
            fields.insert("scopes".into(), Value::from(scopes.clone()));
        }
    }

    /// The same credential without its refresh token: it works until the access token
    /// expires (Claude Code runs with such a file), and cannot spend or fork the lineage.
    pub fn without_refresh_token(&self) -> Self {
        let mut copy = self.clone();
        if copy.shape == Shape::Codex {
            codex::strip_refresh_token(&mut copy.doc);
        } else {
            copy.fields_mut().shift_remove("refreshToken");
        }
        copy
    }

    /// Two credentials of one lineage share their refresh token (or, without one, the access token).
    pub fn same_lineage(&self, other: &Credential) -> bool {
        match (self.refresh_token(), other.refresh_token()) {
            (Some(a), Some(b)) => a == b,
            (None, None) => self.access_token() == other.access_token(),
            _ => false,
        }
    }

    /// Compact JSON, key order as parsed: byte-for-byte what Claude Code writes.
    pub fn to_secret_json(&self) -> Secret {
        Secret::new(serde_json::to_string(&self.doc).expect("a JSON map always serialises"))
    }

    /// Indented by two spaces, key order as parsed: what Codex writes.
    pub fn to_pretty_json(&self) -> Secret {
        Secret::new(serde_json::to_string_pretty(&self.doc).expect("a JSON map always serialises"))
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("kind", &self.kind())
            .field("expires_at", &self.expires_at())
            .field("tokens", &"[redacted]")
            .finish()
    }
}

impl PartialEq for Credential {
    fn eq(&self, other: &Self) -> bool {
        self.doc == other.doc
    }
}

impl Drop for Credential {
    fn drop(&mut self) {
        for value in self.doc.values_mut() {
            wipe(value);
        }
    }
}

fn wipe(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(wipe),
        Value::Object(map) => map.values_mut().for_each(wipe),
        _ => {}
    }
}

/// Unix milliseconds from a number or a string of digits.
fn millis(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Finds the one token in `text`: the whole text when it is a single word, else the single
/// `sk-ant-oat…` word among other output (ANSI escapes removed).
fn extract_bare_token(text: &str) -> std::result::Result<Secret, String> {
    let cleaned = strip_ansi(text);
    let words: Vec<&str> = cleaned.split_whitespace().collect();
    let token =
        match words.as_slice() {
            [] => return Err("no token found".into()),
            [one] => *one,
            _ => {
                let candidates: Vec<&str> = words
                    .iter()
                    .copied()
                    .filter(|w| w.starts_with("sk-ant-oat"))
                    .collect();
                match candidates.as_slice() {
                    [one] => *one,
                    [] => return Err(
                        "expected one token (or a JSON credential), found several words of text"
                            .into(),
                    ),
                    _ => return Err("found more than one token; pipe exactly one".into()),
                }
            }
        };
    if token.starts_with("sk-ant-ort") {
        return Err("that is a refresh token; store the access token (from `claude setup-token`) or the whole credential JSON".into());
    }
    // Refuse only what cannot be a credential: gateway keys (LiteLLM's, say) can be short.
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "that does not look like a token (it contains control or non-ASCII characters)".into(),
        );
    }
    if token.len() < SHORT_TOKEN {
        tracing::warn!(
            length = token.len(),
            "the credential is unusually short; a Claude token is about 100 characters"
        );
    }
    Ok(Secret::new(token.to_string()))
}

/// Removes ANSI CSI/OSC escape sequences, which a terminal-captured token may carry.
fn strip_ansi(text: &str) -> zeroize::Zeroizing<String> {
    let mut out = zeroize::Zeroizing::new(String::with_capacity(text.len()));
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('[') => {
                // CSI: parameters, then one final byte in '@'..='~'.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            Some(']') => {
                // OSC: up to BEL or ESC '\'.
                while let Some(c) = chars.next() {
                    if c == '\u{7}' || (c == '\u{1b}' && chars.peek() == Some(&'\\')) {
                        chars.next_if_eq(&'\\');
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOB: &str = r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-AAAA","refreshToken":"sk-ant-ort01-BBBB","expiresAt":1784443682444,"scopes":["user:inference","user:profile"],"subscriptionType":"max","rateLimitTier":"default_claude_max_5x","futureField":{"z":1,"a":[1,2]}},"mcpOAuth":{"srv":{"token":"x"}},"zzz":true}"#;

    fn now() -> Timestamp {
        Timestamp::from_second(1_780_000_000).unwrap()
    }

    #[test]
    fn round_trips_claude_blob_byte_for_byte() {
        let c = Credential::parse(BLOB.as_bytes(), "test").unwrap();
        assert_eq!(c.to_secret_json().expose_secret(), BLOB);
        assert_eq!(c.kind(), Kind::Oauth);
        assert_eq!(c.subscription_type().as_deref(), Some("max"));
        assert_eq!(c.scopes(), vec!["user:inference", "user:profile"]);
        assert_eq!(c.expires_at().unwrap().as_millisecond(), 1784443682444);
    }

    #[test]
    fn numbers_in_unknown_fields_keep_their_spelling() {
        // Spelled as written (1.50, 1e+21 as JSON.stringify writes it, past 64 bits), not re-rounded.
        let blob = r#"{"claudeAiOauth":{"accessToken":"a","refreshToken":"r","expiresAt":1784443682444,"ratio":1.50,"big":1e+21,"tiny":-7.150444777963084e-242},"mcpOAuth":{"n":12345678901234567890123}}"#;
        let c = Credential::parse(blob.as_bytes(), "t").unwrap();
        assert_eq!(c.to_secret_json().expose_secret(), blob);
    }

    #[test]
    fn set_expiry_keeps_key_order() {
        let mut c = Credential::parse(
            br#"{"accessToken":"sk-ant-oat01-XXXXXXXXXXXXXXXX","note":"n"}"#,
            "t",
        )
        .unwrap();
        c.set_expires_at_if_missing(Timestamp::from_millisecond(1_800_000_000_000).unwrap());
        assert_eq!(
            c.to_secret_json().expose_secret(),
            r#"{"accessToken":"sk-ant-oat01-XXXXXXXXXXXXXXXX","note":"n","expiresAt":1800000000000}"#
        );
        assert_eq!(c.kind(), Kind::LongLived);
    }

    #[test]
    fn inner_object_alone_is_wrapped() {
        let c = Credential::parse(br#"{"accessToken":"a-token-value","refreshToken":"r-token-value","expiresAt":1784443682444}"#, "t").unwrap();
        assert!(c.is_claude_blob());
        assert!(
            c.to_secret_json()
                .expose_secret()
                .starts_with(r#"{"claudeAiOauth":{"accessToken""#)
        );
    }

    #[test]
    fn rejects_wrong_types_without_echoing_values() {
        let cases = [
            (
                r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-SECRET","scopes":"user:inference"}}"#,
                "must be an array",
            ),
            (
                r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-SECRET","expiresAt":"tomorrow"}}"#,
                "must be a number",
            ),
            (
                r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-SECRET","expiresAt":1784443682}}"#,
                "looks like seconds",
            ),
            (
                r#"{"claudeAiOauth":{"accessToken":42}}"#,
                "must be a string",
            ),
            (
                r#"{"claudeAiOauth":{"refreshToken":"sk-ant-ort01-SECRET"}}"#,
                "is missing",
            ),
            (
                r#"{"claudeAiOauth":"sk-ant-oat01-SECRET"}"#,
                "must be an object",
            ),
            (
                r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-SECRET""#,
                "truncated JSON",
            ),
            (r#"["sk-ant-oat01-SECRET"]"#, "expected a JSON object"),
            (
                r#"{"token":"sk-ant-oat01-SECRET"}"#,
                "expected `claudeAiOauth`",
            ),
        ];
        for (input, want) in cases {
            let err = Credential::parse_input(input.as_bytes(), "stdin").unwrap_err();
            assert!(err.message().contains(want), "{input}: {}", err.message());
            assert!(!err.message().contains("SECRET"), "{}", err.message());
        }
    }

    #[test]
    fn shapes_claude_code_may_change_are_read_and_kept_byte_for_byte() {
        let blob = r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-A","refreshToken":"sk-ant-ort01-B","expiresAt":"1784443682444","scopes":"user:inference user:profile","subscriptionType":{"tier":"max"}}}"#;
        let c = Credential::parse(blob.as_bytes(), "live").unwrap();
        assert_eq!(c.to_secret_json().expose_secret(), blob);
        assert_eq!(c.scopes(), vec!["user:inference", "user:profile"]);
        assert_eq!(c.expires_at().unwrap().as_millisecond(), 1784443682444);
        assert_eq!(c.kind(), Kind::Oauth);
        // What a user hands in is held to the shapes tokenkeeper would write.
        assert!(Credential::parse_input(blob.as_bytes(), "stdin").is_err());
    }

    #[test]
    fn bare_token_gets_a_year() {
        let (c, form) = Credential::from_input(
            &Secret::new("sk-ant-oat01-abcdefghijklmnop\n".into()),
            "stdin",
            now(),
        )
        .unwrap();
        assert_eq!(form, InputForm::BareToken);
        assert_eq!(c.expires_at().unwrap(), now() + BARE_TOKEN_LIFETIME);
        assert_eq!(
            c.access_token().expose_secret(),
            "sk-ant-oat01-abcdefghijklmnop"
        );
    }

    #[test]
    fn bare_token_is_found_in_setup_token_output() {
        let out = "\u{1b}[1mYour OAuth token (valid for 1 year):\u{1b}[0m\n\n\u{1b}[32msk-ant-oat01-abcdefghijklmnop\u{1b}[0m\n\nStore this token securely.\n";
        let (c, _) = Credential::from_input(&Secret::new(out.into()), "stdin", now()).unwrap();
        assert_eq!(
            c.access_token().expose_secret(),
            "sk-ant-oat01-abcdefghijklmnop"
        );
    }

    #[test]
    fn refresh_token_alone_is_refused() {
        let err = Credential::from_input(
            &Secret::new("sk-ant-ort01-abcdefghijklmnop".into()),
            "stdin",
            now(),
        )
        .unwrap_err();
        assert!(err.message().contains("refresh token"));
        assert!(!err.message().contains("abcdefgh"));
    }

    #[test]
    fn json_without_expiry_gets_one() {
        let (c, form) = Credential::from_input(
            &Secret::new(r#"{"accessToken":"sk-ant-oat01-abcdefghijklmnop"}"#.into()),
            "stdin",
            now(),
        )
        .unwrap();
        assert_eq!(form, InputForm::Json);
        assert_eq!(c.expires_at().unwrap(), now() + BARE_TOKEN_LIFETIME);
    }

    #[test]
    fn debug_is_redacted() {
        let c = Credential::parse(BLOB.as_bytes(), "t").unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("sk-ant"), "{shown}");
    }

    #[test]
    fn lineage_follows_the_refresh_token() {
        let a = Credential::parse(BLOB.as_bytes(), "t").unwrap();
        let b = Credential::parse(BLOB.replace("AAAA", "CCCC").as_bytes(), "t").unwrap();
        let c = Credential::parse(BLOB.replace("BBBB", "DDDD").as_bytes(), "t").unwrap();
        assert!(a.same_lineage(&b));
        assert!(!a.same_lineage(&c));
    }
}
