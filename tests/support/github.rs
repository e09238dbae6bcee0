//! A fake GitHub REST API for Actions secrets, on 127.0.0.1. It holds a real X25519 key pair
//! per repository (and per environment), opens every sealed value it receives with the secret
//! key, and keeps what it opened, so a test can compare it with the token. It also keeps the
//! sealed value as sent, for libsodium itself (PyNaCl) to open.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

pub const GITHUB_TOKEN: &str = "ghp_faketokenPLANTED0123456789";

/// One secret as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub plaintext: String,
    pub sealed: String,
    pub key_id: String,
}

struct Inner {
    /// Secrets path (`octo/ci` or `octo/ci/env/prod`) → key pair.
    keys: BTreeMap<String, crypto_box::SecretKey>,
    /// Secrets path → name → what arrived.
    secrets: BTreeMap<String, BTreeMap<String, Received>>,
    /// `METHOD path` of every request.
    requests: Vec<String>,
    /// Headers of every request, for leak checks.
    seen_headers: Vec<String>,
}

#[derive(Clone)]
pub struct FakeGitHub {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakeGitHub {
    /// Knows the repositories `known` (e.g. `octo/ci`) and their environment `production`.
    pub fn start(known: &[&str]) -> Self {
        let mut keys = BTreeMap::new();
        for repo in known {
            for place in [repo.to_string(), format!("{repo}/env/production")] {
                keys.insert(
                    place,
                    crypto_box::SecretKey::generate(&mut crypto_box::aead::OsRng),
                );
            }
        }
        let inner = Arc::new(Mutex::new(Inner {
            keys,
            secrets: BTreeMap::new(),
            requests: Vec::new(),
            seen_headers: Vec::new(),
        }));
        let app = Router::new()
            .route(
                "/repos/{owner}/{repo}/actions/secrets/public-key",
                get(repo_key),
            )
            .route(
                "/repos/{owner}/{repo}/actions/secrets/{name}",
                put(repo_put),
            )
            .route(
                "/repos/{owner}/{repo}/environments/{env}/secrets/public-key",
                get(env_key),
            )
            .route(
                "/repos/{owner}/{repo}/environments/{env}/secrets/{name}",
                put(env_put),
            )
            .with_state(inner.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        super::serve_in_background(listener, app);
        Self { url, inner }
    }

    /// The secrets received for `place` (`octo/ci`, or `octo/ci/env/production`).
    pub fn secrets(&self, place: &str) -> BTreeMap<String, Received> {
        self.inner
            .lock()
            .unwrap()
            .secrets
            .get(place)
            .cloned()
            .unwrap_or_default()
    }

    /// The secret key of `place`, raw, for PyNaCl.
    pub fn secret_key(&self, place: &str) -> [u8; 32] {
        self.inner.lock().unwrap().keys[place].to_bytes()
    }

    pub fn requests(&self) -> Vec<String> {
        self.inner.lock().unwrap().requests.clone()
    }

    pub fn headers_seen(&self) -> String {
        self.inner.lock().unwrap().seen_headers.join("\n")
    }
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {GITHUB_TOKEN}"))
        && headers.get("x-github-api-version").is_some()
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"message": message, "documentation_url": "https://docs.github.com/rest"})),
    )
        .into_response()
}

fn key_for(
    inner: Arc<Mutex<Inner>>,
    place: String,
    headers: HeaderMap,
    request: String,
) -> Response {
    let mut inner = inner.lock().unwrap();
    inner.requests.push(request);
    inner.seen_headers.push(format!("{headers:?}"));
    if !authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    match inner.keys.get(&place) {
        Some(secret) => Json(json!({
            "key_id": format!("key-{}", place.len()),
            "key": BASE64.encode(secret.public_key().as_bytes()),
        }))
        .into_response(),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

fn put_for(
    inner: Arc<Mutex<Inner>>,
    place: String,
    name: String,
    headers: HeaderMap,
    body: Value,
    request: String,
) -> Response {
    let mut inner = inner.lock().unwrap();
    inner.requests.push(request);
    inner.seen_headers.push(format!("{headers:?}"));
    if !authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    let Some(secret) = inner.keys.get(&place) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let key_id = body["key_id"].as_str().unwrap_or_default().to_string();
    if key_id != format!("key-{}", place.len()) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "key_id does not match");
    }
    let sealed = body["encrypted_value"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let Some(plaintext) = BASE64
        .decode(&sealed)
        .ok()
        .and_then(|bytes| secret.unseal(&bytes).ok())
    else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "cannot decrypt encrypted_value",
        );
    };
    let received = Received {
        plaintext: String::from_utf8(plaintext).unwrap(),
        sealed,
        key_id,
    };
    let secrets = inner.secrets.entry(place).or_default();
    let existed = secrets.insert(name, received).is_some();
    if existed {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (StatusCode::CREATED, Json(json!({}))).into_response()
    }
}

async fn repo_key(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let request = format!("GET /repos/{owner}/{repo}/actions/secrets/public-key");
    key_for(inner, format!("{owner}/{repo}"), headers, request)
}

async fn env_key(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path((owner, repo, env)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let request = format!("GET /repos/{owner}/{repo}/environments/{env}/secrets/public-key");
    key_for(inner, format!("{owner}/{repo}/env/{env}"), headers, request)
}

async fn repo_put(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path((owner, repo, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let request = format!("PUT /repos/{owner}/{repo}/actions/secrets/{name}");
    put_for(
        inner,
        format!("{owner}/{repo}"),
        name,
        headers,
        body,
        request,
    )
}

async fn env_put(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path((owner, repo, env, name)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let request = format!("PUT /repos/{owner}/{repo}/environments/{env}/secrets/{name}");
    put_for(
        inner,
        format!("{owner}/{repo}/env/{env}"),
        name,
        headers,
        body,
        request,
    )
}
