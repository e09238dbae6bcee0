//! GitHub Actions secrets: fetch a repository's (or environment's) public key, seal each value
//! to it (libsodium's sealed box: X25519 + XSalsa20-Poly1305, what GitHub decrypts), and PUT it
//! through the REST API. The values travel only in request bodies, never in argv or a log.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::json;

use crate::error::{Error, Result};
use crate::net;
use crate::secret::Secret;

pub const ENV_API_URL: &str = "GITHUB_API_URL";
const DEFAULT_API_URL: &str = "https://api.github.com";
const API_VERSION: &str = "2022-11-28";
const TIMEOUT: Duration = Duration::from_secs(20);

/// Where the secrets go: a repository, or one of its environments.
#[derive(Debug, Clone)]
pub struct Target {
    pub owner: String,
    pub repo: String,
    pub environment: Option<String>,
}

impl Target {
    /// `OWNER/REPO`, each part as GitHub allows it.
    pub fn parse(repo: &str, environment: Option<String>) -> Result<Self> {
        let bad = || {
            Error::usage(format!("'{repo}' is not a repository: expected OWNER/REPO"))
                .with_hint("e.g. --repo octo-org/agent-ci")
        };
        let (owner, name) = repo.split_once('/').ok_or_else(bad)?;
        let valid = |part: &str| {
            !part.is_empty()
                && part.len() <= 100
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if !valid(owner) || !valid(name) {
            return Err(bad());
        }
        if let Some(env) = &environment
            && (env.is_empty()
                || env.len() > 255
                || env.contains('/')
                || env.chars().any(char::is_control))
        {
            return Err(Error::usage(format!("'{env}' is not an environment name")));
        }
        Ok(Self {
            owner: owner.to_string(),
            repo: name.to_string(),
            environment,
        })
    }

    fn secrets_path(&self) -> String {
        let repo = format!("/repos/{}/{}", self.owner, self.repo);
        match &self.environment {
            Some(env) => format!("{repo}/environments/{}/secrets", encode(env)),
            None => format!("{repo}/actions/secrets"),
        }
    }

    /// `octo/ci` or `octo/ci (environment prod)`.
    pub fn describe(&self) -> String {
        match &self.environment {
            Some(env) => format!("{}/{} (environment {env})", self.owner, self.repo),
            None => format!("{}/{}", self.owner, self.repo),
        }
    }
}

/// Checks a secret name as GitHub does: letters, digits and underscores, not starting with a
/// digit or `GITHUB_`.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && !name.to_ascii_uppercase().starts_with("GITHUB_")
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "'{name}' is not a GitHub secret name: letters, digits and _, not starting with a digit or GITHUB_"
        )))
    }
}

#[derive(Deserialize)]
pub struct PublicKey {
    pub key_id: String,
    pub key: String,
}

/// What a PUT did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Created,
    Updated,
}

pub struct Client {
    http: reqwest::Client,
    api_url: String,
    token: Secret,
}

impl Client {
    /// A client for `GITHUB_API_URL` (default api.github.com) authenticated with `token`.
    pub fn new(token: Secret) -> Self {
        net::install_crypto_provider();
        let api_url = std::env::var(ENV_API_URL)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_API_URL.to_string())
            .trim_end_matches('/')
            .to_string();
        let http = reqwest::Client::builder()
            .user_agent(concat!("tokenkeeper/", env!("CARGO_PKG_VERSION")))
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the HTTP client configuration is valid");
        Self {
            http,
            api_url,
            token,
        }
    }

    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.api_url))
            .bearer_auth(self.token.expose_secret())
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", API_VERSION)
    }

    pub fn public_key(&self, target: &Target) -> Result<PublicKey> {
        let path = format!("{}/public-key", target.secrets_path());
        let (status, body) = self.exchange(self.request(reqwest::Method::GET, &path))?;
        if !(200..300).contains(&status) {
            return Err(refused(status, target, "read the secrets' public key of"));
        }
        serde_json::from_slice(&body).map_err(|_| {
            Error::failure(format!(
                "GitHub's answer for the public key of {} is not the expected JSON",
                target.describe()
            ))
        })
    }

    /// Sends a request and reads the whole answer, all within the runtime (a response dropped
    /// outside it could not hand its connection back).
    fn exchange(&self, request: reqwest::RequestBuilder) -> Result<(u16, Vec<u8>)> {
        net::block_on(async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            Ok((status, response.bytes().await?.to_vec()))
        })
        .map_err(|err: reqwest::Error| unreachable(&self.api_url, &err))
    }

    /// Seals `value` to `key` and stores it as secret `name`.
    pub fn put(&self, target: &Target, key: &PublicKey, name: &str, value: &Secret) -> Result<Put> {
        let sealed = seal(key, value)?;
        let path = format!("{}/{name}", target.secrets_path());
        let body = json!({"encrypted_value": sealed, "key_id": key.key_id});
        let (status, _) = self.exchange(self.request(reqwest::Method::PUT, &path).json(&body))?;
        match status {
            201 => Ok(Put::Created),
            204 | 200 => Ok(Put::Updated),
            status => Err(refused(status, target, &format!("set secret {name} on"))),
        }
    }
}

/// libsodium's `crypto_box_seal` of `value` to the base64 X25519 key, as base64.
pub fn seal(key: &PublicKey, value: &Secret) -> Result<String> {
    let bytes = BASE64
        .decode(key.key.trim())
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| Error::failure("GitHub's public key is not a base64 X25519 key"))?;
    let public = crypto_box::PublicKey::from(bytes);
    let sealed = public
        .seal(
            &mut crypto_box::aead::OsRng,
            value.expose_secret().as_bytes(),
        )
        .map_err(|_| Error::failure("cannot seal the secret"))?;
    Ok(BASE64.encode(sealed))
}

fn unreachable(api_url: &str, err: &reqwest::Error) -> Error {
    let kind = if err.is_timeout() {
        "did not answer in time"
    } else if err.is_connect() {
        "cannot be reached"
    } else {
        "the request failed"
    };
    Error::failure(format!("GitHub at {api_url} {kind}")).with_hint(format!(
        "for GitHub Enterprise, set {ENV_API_URL} (e.g. https://github.example.com/api/v3)"
    ))
}

fn refused(status: u16, target: &Target, what: &str) -> Error {
    let place = target.describe();
    match status {
        401 => Error::failure(format!("GitHub refused the token (HTTP 401) trying to {what} {place}"))
            .with_hint("log in again: gh auth login, or set GH_TOKEN to a valid token"),
        403 => Error::failure(format!("the token may not {what} {place} (HTTP 403)"))
            .with_hint("it needs admin rights on the repository, or a fine-grained token with Secrets: read and write (Environments too, for --env)"),
        404 => Error::failure(format!("GitHub does not show {place} to this token (HTTP 404): no such repository or environment, or no access"))
            .with_hint("check --repo and --env; a private repository needs a token that can see it"),
        _ => Error::failure(format!("GitHub answered HTTP {status} trying to {what} {place}")),
    }
}

/// A path segment with everything but unreserved characters percent-encoded.
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_box_opens_with_the_matching_secret_key() {
        let secret = crypto_box::SecretKey::generate(&mut crypto_box::aead::OsRng);
        let key = PublicKey {
            key_id: "1".into(),
            key: BASE64.encode(secret.public_key().as_bytes()),
        };
        let sealed = BASE64
            .decode(seal(&key, &Secret::new("sk-ant-oat01-x".into())).unwrap())
            .unwrap();
        assert_eq!(secret.unseal(&sealed).unwrap(), b"sk-ant-oat01-x");
        // 32-byte ephemeral key + 16-byte tag + the message.
        assert_eq!(sealed.len(), 32 + 16 + 14);
    }

    #[test]
    fn a_key_that_is_not_an_x25519_key_is_refused() {
        for bad in ["", "not base64!", "AAAA"] {
            let key = PublicKey {
                key_id: "1".into(),
                key: bad.into(),
            };
            let err = seal(&key, &Secret::new("x".into())).unwrap_err();
            assert!(err.message().contains("not a base64 X25519 key"));
        }
    }

    #[test]
    fn names_and_targets_are_checked_like_github_does() {
        assert!(validate_name("CLAUDE_CODE_OAUTH_TOKEN").is_ok());
        for bad in ["", "1X", "GITHUB_TOKEN", "A-B", "A B"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert!(Target::parse("octo/ci", None).is_ok());
        for bad in ["octo", "/ci", "octo/", "oc to/ci", "octo/../x", "a/b/c"] {
            assert!(Target::parse(bad, None).is_err(), "{bad}");
        }
        let env = Target::parse("octo/ci", Some("prod west".into())).unwrap();
        assert_eq!(
            env.secrets_path(),
            "/repos/octo/ci/environments/prod%20west/secrets"
        );
    }
}
