//! A fake Anthropic: the OAuth token endpoint, profile and usage, on 127.0.0.1, behaving like
//! the real thing where it matters to tokenkeeper:
//! - refresh tokens are single-use and rotate on every refresh; the previous access token dies;
//! - replaying a spent refresh token answers `invalid_grant` and revokes the whole family;
//! - expired or revoked access tokens get 401 `authentication_error`;
//! - it counts the refresh calls it received and served, and can be told to fail
//!   (status code, slowness, dropped connection) for the next N requests;
//! - `POST /v1/messages` answers JSON, or SSE events with `"stream": true`, which the test can
//!   hold back and release one by one; it remembers the headers of the last request;
//! - `POST /test/upload` and `GET /test/download?bytes=N` move large bodies, counting bytes;
//! - `start_tls` serves HTTPS (HTTP/2 by ALPN) with a certificate from a fresh test CA.
//!
//! Run it alone with `cargo run --example fake_provider`.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::Listener;
use futures_util::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::lineage::{Ledger, Refused};
use tokio::sync::Semaphore;

pub const CLIENT_ID: &str = "9d1c250a-e61b-44d9-88ed-5944d1962f5e";
pub const OAUTH_BETA: &str = "oauth-2025-04-20";

#[derive(Debug, Clone)]
pub enum Failure {
    /// Answer with this status and an error body.
    Status(u16),
    /// Wait this long, then answer normally.
    Slow(Duration),
    /// Close the connection without an answer.
    Drop,
    /// Answer normally, then close the connection (`Connection: close`).
    Close,
    /// Accept the request and never answer.
    Hang,
    /// Token endpoint: rotate (the old refresh token is spent), then drop the connection
    /// without an answer, as a lost answer looks to the client.
    DropAfterRotate,
    /// Token endpoint: rotate, then answer the usual JSON with these keys replaced (a `null`
    /// removes the key), e.g. an absurd `expires_in`.
    Patch(Value),
    /// Token endpoint: rotate, then answer 200 with this body as it is.
    RawAfterRotate(String),
}

/// An account's quota as `/v1/messages` reports it in `anthropic-ratelimit-unified-*` headers:
/// utilisation as a fraction, resets in seconds from now. `rejected` answers 429 instead,
/// the way an account whose limit is reached is answered.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub five_hour: f64,
    pub seven_day: f64,
    pub five_hour_reset_s: i64,
    pub seven_day_reset_s: i64,
    pub rejected: bool,
}

impl Limits {
    pub fn at(five_hour: f64, seven_day: f64) -> Self {
        Self {
            five_hour,
            seven_day,
            five_hour_reset_s: 3 * 3600,
            seven_day_reset_s: 4 * 86_400,
            rejected: false,
        }
    }
}

/// Tokens the provider issued for one login.
#[derive(Debug, Clone)]
pub struct Issued {
    pub access: String,
    pub refresh: String,
    pub expires_at_ms: i64,
    pub account_uuid: String,
    pub email: String,
}

#[derive(Default)]
struct Family {
    account_uuid: String,
    email: String,
}

struct AccessInfo {
    family: usize,
    expires_at_ms: i64,
    /// A setup token: scope `user:inference` only, so profile and usage answer 403.
    inference_only: bool,
}

struct Inner {
    families: Vec<Family>,
    /// Every refresh token ever issued → its family.
    /// The refresh tokens of every family.
    ledger: Ledger,
    /// Live access tokens (a refresh removes the family's previous one).
    access: HashMap<String, AccessInfo>,
    access_lifetime: Duration,
    counter: u64,
    refresh_calls: usize,
    refreshes_served: usize,
    failures: VecDeque<Failure>,
    usage: Value,
    /// Usage answers for one account (by email), in place of `usage`.
    usage_of: HashMap<String, Value>,
    /// What `/v1/messages` tells one account (by email) of its quota.
    limits_of: HashMap<String, Limits>,
    usage_calls: usize,
    usage_in_flight: usize,
    usage_peak: usize,
    /// Added to every profile and usage answer, like a distant server.
    latency: Duration,
    /// Headers and HTTP version of the last `/v1/messages` request.
    last_messages: Option<(HeaderMap, Version)>,
    messages_calls: usize,
    count_tokens_calls: usize,
    profile_calls: usize,
    /// TCP connections accepted so far.
    connections: usize,
    /// Requests to `/test/unauthorized`, a path that refuses every token.
    unauthorized_calls: usize,
    /// When set, SSE events after the first wait for a permit each.
    held: Option<Arc<Semaphore>>,
    /// Bytes `/test/download` has produced so far (a slow reader holds this back).
    downloaded: Arc<AtomicU64>,
}

#[derive(Clone)]
pub struct FakeProvider {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

/// `now + secs` as RFC 3339 with microseconds and a `+00:00` offset, as the provider writes it.
fn rfc3339_in(secs: i64) -> String {
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(secs);
    at.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

impl FakeProvider {
    /// Starts a provider on a free loopback port, serving from a background thread.
    pub fn start() -> Self {
        Self::serve(Self::fresh_state(), None)
    }

    fn fresh_state() -> Arc<Mutex<Inner>> {
        Arc::new(Mutex::new(Inner {
            families: Vec::new(),
            ledger: Ledger::default(),
            access: HashMap::new(),
            access_lifetime: Duration::from_secs(8 * 3600),
            counter: 0,
            refresh_calls: 0,
            refreshes_served: 0,
            failures: VecDeque::new(),
            usage_of: HashMap::new(),
            limits_of: HashMap::new(),
            usage_calls: 0,
            usage_in_flight: 0,
            usage_peak: 0,
            latency: Duration::ZERO,
            last_messages: None,
            messages_calls: 0,
            count_tokens_calls: 0,
            profile_calls: 0,
            connections: 0,
            unauthorized_calls: 0,
            held: None,
            downloaded: Arc::new(AtomicU64::new(0)),
            // Reset times ahead of now, in both of the provider's spellings.
            usage: json!({
                "five_hour": {"utilization": 24.0, "resets_at": rfc3339_in(2 * 3600)},
                "seven_day": {"utilization": 61.5, "resets_at": now_ms() / 1000 + 3 * 86_400},
                "seven_day_sonnet": {"utilization": 3.0, "resets_at": null},
                "seven_day_opus": null,
                "extra_usage": {"is_enabled": false}
            }),
        }))
    }

    /// Starts a provider serving HTTPS at `https://localhost:PORT`, its certificate issued by a
    /// new CA whose PEM is written to `dir/provider-ca.pem` (returned).
    pub fn start_tls(dir: &Path) -> (Self, PathBuf) {
        let (acceptor, ca) = test_ca(dir);
        (Self::serve(Self::fresh_state(), Some(acceptor)), ca)
    }

    fn serve(inner: Arc<Mutex<Inner>>, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let url = match tls {
            Some(_) => format!("https://localhost:{}", addr.port()),
            None => format!("http://{addr}"),
        };
        let app = Router::new()
            .route("/v1/oauth/token", post(token))
            .route("/api/oauth/profile", get(profile))
            .route("/api/oauth/usage", get(usage))
            .route("/v1/messages", post(messages))
            .route("/v1/messages/count_tokens", post(count_tokens))
            .route("/test/upload", post(upload))
            .route("/test/download", get(download))
            .route("/test/stats", get(stats))
            .route("/test/unauthorized", get(unauthorized).post(unauthorized))
            .with_state(inner.clone());
        let counted = inner.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = Counted {
                    listener: tokio::net::TcpListener::from_std(listener).unwrap(),
                    inner: counted,
                };
                match tls {
                    None => axum::serve(listener, app).await.unwrap(),
                    Some(acceptor) => axum::serve(TlsListener { listener, acceptor }, app)
                        .await
                        .unwrap(),
                }
            });
        });
        Self { url, inner }
    }

    /// The environment that points tokenkeeper at this provider.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "TOKENKEEPER_CLAUDE_OAUTH_URL".into(),
                format!("{}/v1/oauth/token", self.url),
            ),
            ("TOKENKEEPER_CLAUDE_API_URL".into(), self.url.clone()),
        ]
    }

    /// A new login: a fresh token family for the account of `email`.
    pub fn issue(&self, email: &str) -> Issued {
        self.issue_with_expiry(email, None)
    }

    /// A login whose access token has already expired (the refresh token is fine).
    pub fn issue_expired(&self, email: &str) -> Issued {
        self.issue_with_expiry(email, Some(now_ms() - 60_000))
    }

    fn issue_with_expiry(&self, email: &str, expires_at_ms: Option<i64>) -> Issued {
        let mut inner = self.inner.lock().unwrap();
        let family = inner.ledger.new_family();
        let account_uuid = format!("uuid-{}", email.split('@').next().unwrap());
        inner.families.push(Family {
            account_uuid: account_uuid.clone(),
            email: email.to_string(),
        });
        let (access, refresh, expires) = inner.mint(family);
        let expires = expires_at_ms.unwrap_or(expires);
        inner.access.get_mut(&access).unwrap().expires_at_ms = expires;
        Issued {
            access,
            refresh,
            expires_at_ms: expires,
            account_uuid,
            email: email.to_string(),
        }
    }

    /// Refreshes as Claude Code would (spending `refresh`), returning the new tokens.
    pub fn refresh_as_claude(&self, refresh: &str) -> Option<Issued> {
        let mut inner = self.inner.lock().unwrap();
        inner.refresh_calls += 1;
        let family = inner.rotate(refresh).ok()?;
        inner.refreshes_served += 1;
        let (access, refresh, expires) = inner.mint(family);
        let f = &inner.families[family];
        Some(Issued {
            access,
            refresh,
            expires_at_ms: expires,
            account_uuid: f.account_uuid.clone(),
            email: f.email.clone(),
        })
    }

    /// Claude Code's credential blob for issued tokens.
    pub fn blob(issued: &Issued) -> String {
        format!(
            r#"{{"claudeAiOauth":{{"accessToken":"{}","refreshToken":"{}","expiresAt":{},"scopes":["user:inference","user:profile"],"subscriptionType":"max","rateLimitTier":"default_claude_max_5x"}},"mcpOAuth":{{"keep":"me"}}}}"#,
            issued.access, issued.refresh, issued.expires_at_ms
        )
    }

    pub fn refresh_calls(&self) -> usize {
        self.inner.lock().unwrap().refresh_calls
    }

    pub fn refreshes_served(&self) -> usize {
        self.inner.lock().unwrap().refreshes_served
    }

    /// Whether `refresh` is its family's current (unspent) token and the family is alive.
    pub fn is_current(&self, refresh: &str) -> bool {
        self.inner.lock().unwrap().ledger.is_current(refresh)
    }

    pub fn family_revoked(&self, refresh: &str) -> bool {
        self.inner.lock().unwrap().ledger.family_revoked(refresh)
    }

    /// Revokes the family of `refresh`, as a logout elsewhere or a detected replay would.
    pub fn revoke(&self, refresh: &str) {
        let mut inner = self.inner.lock().unwrap();
        if let Some(f) = inner.ledger.revoke(refresh) {
            inner.access.retain(|_, a| a.family != f);
        }
    }

    /// The next `n` requests (to any endpoint) fail this way.
    pub fn fail_next(&self, n: usize, failure: Failure) {
        let mut inner = self.inner.lock().unwrap();
        for _ in 0..n {
            inner.failures.push_back(failure.clone());
        }
    }

    pub fn set_access_lifetime(&self, lifetime: Duration) {
        self.inner.lock().unwrap().access_lifetime = lifetime;
    }

    pub fn set_usage(&self, usage: Value) {
        self.inner.lock().unwrap().usage = usage;
    }

    /// The usage answer for the account of `email` from now on.
    pub fn set_usage_of(&self, email: &str, usage: Value) {
        self.inner
            .lock()
            .unwrap()
            .usage_of
            .insert(email.to_string(), usage);
    }

    /// What `/v1/messages` reports of the quota of the account of `email` from now on.
    pub fn set_limits_of(&self, email: &str, limits: Limits) {
        self.inner
            .lock()
            .unwrap()
            .limits_of
            .insert(email.to_string(), limits);
    }

    /// Usage requests answered, refused ones included.
    pub fn usage_calls(&self) -> usize {
        self.inner.lock().unwrap().usage_calls
    }

    /// The most usage requests that were ever being answered at once.
    pub fn usage_peak_concurrency(&self) -> usize {
        self.inner.lock().unwrap().usage_peak
    }

    pub fn set_latency(&self, latency: Duration) {
        self.inner.lock().unwrap().latency = latency;
    }

    /// Headers of the last `/v1/messages` request (names lower-case), and its HTTP version.
    pub fn last_messages_request(&self) -> Option<(Vec<(String, String)>, Version)> {
        let inner = self.inner.lock().unwrap();
        let (headers, version) = inner.last_messages.as_ref()?;
        let pairs = headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    v.to_str().unwrap_or("<binary>").to_string(),
                )
            })
            .collect();
        Some((pairs, *version))
    }

    pub fn messages_calls(&self) -> usize {
        self.inner.lock().unwrap().messages_calls
    }

    /// Requests `/test/unauthorized` refused so far.
    pub fn unauthorized_calls(&self) -> usize {
        self.inner.lock().unwrap().unauthorized_calls
    }

    /// TCP connections accepted so far, on any endpoint.
    pub fn connections(&self) -> usize {
        self.inner.lock().unwrap().connections
    }

    /// From now on, SSE answers send their first event at once and each later one only when
    /// `release_events` allows it.
    pub fn hold_events(&self) {
        self.inner.lock().unwrap().held = Some(Arc::new(Semaphore::new(0)));
    }

    pub fn release_events(&self, n: usize) {
        if let Some(held) = &self.inner.lock().unwrap().held {
            held.add_permits(n);
        }
    }

    /// Bytes `/test/download` has produced so far.
    pub fn downloaded(&self) -> u64 {
        self.inner.lock().unwrap().downloaded.load(Ordering::SeqCst)
    }

    /// A long-lived token as `claude setup-token` prints it (108 characters, valid a year,
    /// scope `user:inference` only: profile and usage answer 403).
    pub fn issue_setup_token(&self, email: &str) -> String {
        let mut inner = self.inner.lock().unwrap();
        let family = inner.ledger.new_family();
        inner.families.push(Family {
            account_uuid: format!("uuid-{}", email.split('@').next().unwrap()),
            email: email.to_string(),
        });
        inner.counter += 1;
        let head = format!("sk-ant-oat01-setup{family}n{}-PLANTED-", inner.counter);
        let token = format!("{head}{}", "Ab1_-x".repeat(20))[..108].to_string();
        inner.access.insert(
            token.clone(),
            AccessInfo {
                family,
                expires_at_ms: now_ms() + 365 * 86_400_000,
                inference_only: true,
            },
        );
        token
    }

    /// Requests to `/v1/messages/count_tokens` so far (the setup token's validity probe).
    pub fn count_tokens_calls(&self) -> usize {
        self.inner.lock().unwrap().count_tokens_calls
    }

    /// Requests to `/api/oauth/profile` so far.
    pub fn profile_calls(&self) -> usize {
        self.inner.lock().unwrap().profile_calls
    }

    /// Makes an access token unusable (401) while its family and refresh token stay alive.
    pub fn kill_access(&self, access: &str) {
        self.inner.lock().unwrap().access.remove(access);
    }
}

impl Inner {
    fn mint(&mut self, family: usize) -> (String, String, i64) {
        self.counter += 1;
        let n = self.counter;
        let access = format!("sk-ant-oat01-fake{family}n{n}-PLANTED");
        let refresh = format!("sk-ant-ort01-fake{family}n{n}-PLANTED");
        let expires = now_ms() + self.access_lifetime.as_millis() as i64;
        // The previous access token of the family dies with the rotation.
        self.access.retain(|_, a| a.family != family);
        self.access.insert(
            access.clone(),
            AccessInfo {
                family,
                expires_at_ms: expires,
                inference_only: false,
            },
        );
        self.ledger.issue(family, &refresh);
        (access, refresh, expires)
    }

    /// Spends a refresh token: Ok(family) if it was current; a replay revokes the family.
    fn rotate(&mut self, refresh: &str) -> Result<usize, &'static str> {
        self.ledger
            .rotate(refresh)
            .map_err(|refused| match refused {
                Refused::Unknown => "unknown refresh token",
                Refused::Revoked => "refresh token revoked",
                Refused::Reused { family } => {
                    // The replay revoked the family: its access tokens die with it.
                    self.access.retain(|_, a| a.family != family);
                    "refresh token reused; family revoked"
                }
            })
    }

    /// Whether the request's bearer token is a live setup token (inference scope only).
    fn inference_only(&self, headers: &HeaderMap) -> bool {
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|t| self.access.get(t))
            .is_some_and(|info| info.inference_only)
    }

    /// The token family of a request's bearer token, or why it is refused.
    fn authorize(&self, headers: &HeaderMap) -> Result<usize, &'static str> {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let info = token.and_then(|t| self.access.get(t));
        match info {
            Some(info) if info.expires_at_ms > now_ms() => Ok(info.family),
            Some(_) => Err("OAuth token has expired"),
            None => Err("Invalid bearer token"),
        }
    }
}

fn auth_error(message: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"type":"error","error":{"type":"authentication_error","message":message}})),
    )
        .into_response()
}

/// Takes the next injected failure, if any; `Some(response)` short-circuits the request.
async fn injected(inner: &Arc<Mutex<Inner>>) -> Option<Response> {
    let failure = inner.lock().unwrap().failures.pop_front()?;
    match failure {
        Failure::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap();
            Some((status, Json(json!({"type":"error","error":{"type":"api_error","message":"injected failure"}}))).into_response())
        }
        Failure::Slow(delay) => {
            tokio::time::sleep(delay).await;
            None
        }
        // `/v1/messages` takes this one itself; elsewhere it is answered normally.
        Failure::Close => None,
        // The token endpoint takes these itself; elsewhere they are answered normally.
        Failure::DropAfterRotate | Failure::Patch(_) | Failure::RawAfterRotate(_) => None,
        Failure::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            None
        }
        Failure::Drop => {
            // Hang past the client's patience is not needed: panicking in a handler makes hyper
            // drop the connection without a response.
            panic!("injected dropped connection");
        }
    }
}

async fn token(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let after_rotate = {
        let mut inner = inner.lock().unwrap();
        inner.refresh_calls += 1;
        match inner.failures.front() {
            Some(Failure::DropAfterRotate | Failure::Patch(_) | Failure::RawAfterRotate(_)) => {
                inner.failures.pop_front()
            }
            _ => None,
        }
    };
    if after_rotate.is_none()
        && let Some(response) = injected(&inner).await
    {
        return response;
    }
    if headers.get("anthropic-beta").and_then(|v| v.to_str().ok()) != Some(OAUTH_BETA) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error":"invalid_request","error_description":"missing anthropic-beta"})),
        )
            .into_response();
    }
    let Ok(request) = serde_json::from_str::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error":"invalid_request"})),
        )
            .into_response();
    };
    if request["grant_type"] != "refresh_token" || request["client_id"] != CLIENT_ID {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error":"invalid_client"})),
        )
            .into_response();
    }
    let refresh = request["refresh_token"].as_str().unwrap_or_default();
    let mut inner = inner.lock().unwrap();
    match inner.rotate(refresh) {
        Ok(family) => {
            let (access, refresh, _) = inner.mint(family);
            inner.refreshes_served += 1;
            let f = &inner.families[family];
            let mut answer = json!({
                "access_token": access,
                "refresh_token": refresh,
                "expires_in": inner.access_lifetime.as_secs(),
                "scope": "user:inference user:profile",
                "token_type": "Bearer",
                "account": {"uuid": f.account_uuid, "email_address": f.email},
            });
            match after_rotate {
                Some(Failure::DropAfterRotate) => {
                    // Unlocked first: a panic holding the lock would poison it for the test.
                    drop(inner);
                    panic!("injected: answer lost after rotating");
                }
                Some(Failure::RawAfterRotate(body)) => return body.into_response(),
                Some(Failure::Patch(Value::Object(patch))) => {
                    let map = answer.as_object_mut().unwrap();
                    for (key, value) in patch {
                        match value {
                            Value::Null => map.remove(&key),
                            value => map.insert(key, value),
                        };
                    }
                }
                _ => {}
            }
            Json(answer).into_response()
        }
        Err(why) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error":"invalid_grant","error_description":why})),
        )
            .into_response(),
    }
}

fn permission_error() -> Response {
    (
        StatusCode::FORBIDDEN,
        Json(json!({"type":"error","error":{"type":"permission_error","message":"OAuth token does not meet scope requirement user:profile"}})),
    )
        .into_response()
}

/// Counts a prompt's tokens: free, and the one thing a setup token is good for besides
/// inference.
async fn count_tokens(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap) -> Response {
    inner.lock().unwrap().count_tokens_calls += 1;
    if let Some(response) = injected(&inner).await {
        return response;
    }
    let inner = inner.lock().unwrap();
    match inner.authorize(&headers) {
        Ok(_) => Json(json!({"input_tokens": 8})).into_response(),
        Err(why) => auth_error(why),
    }
}

async fn profile(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap) -> Response {
    inner.lock().unwrap().profile_calls += 1;
    if let Some(response) = injected(&inner).await {
        return response;
    }
    let latency = inner.lock().unwrap().latency;
    tokio::time::sleep(latency).await;
    let inner = inner.lock().unwrap();
    if inner.inference_only(&headers) {
        return permission_error();
    }
    match inner.authorize(&headers) {
        Ok(family) => {
            let f = &inner.families[family];
            Json(json!({
                "account": {"uuid": f.account_uuid, "email": f.email, "full_name": "Test User", "display_name": "Test", "has_claude_max": true, "has_claude_pro": false},
                "organization": {"uuid": format!("org-{}", f.account_uuid), "name": "Test Org", "organization_type": "claude_max", "rate_limit_tier": "default_claude_max_5x", "subscription_status": "active"},
            }))
            .into_response()
        }
        Err(why) => auth_error(why),
    }
}

async fn usage(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap) -> Response {
    inner.lock().unwrap().usage_calls += 1;
    if let Some(response) = injected(&inner).await {
        return response;
    }
    let latency = {
        let mut inner = inner.lock().unwrap();
        inner.usage_in_flight += 1;
        inner.usage_peak = inner.usage_peak.max(inner.usage_in_flight);
        inner.latency
    };
    tokio::time::sleep(latency).await;
    let mut inner = inner.lock().unwrap();
    inner.usage_in_flight -= 1;
    if inner.inference_only(&headers) {
        return permission_error();
    }
    match inner.authorize(&headers) {
        Ok(family) => {
            let email = &inner.families[family].email;
            Json(inner.usage_of.get(email).unwrap_or(&inner.usage).clone()).into_response()
        }
        Err(why) => auth_error(why),
    }
}

/// The SSE events of one streamed answer, as the Messages API sends them.
pub const SSE_EVENTS: [(&str, &str); 7] = [
    (
        "message_start",
        r#"{"type":"message_start","message":{"id":"msg_fake","type":"message","role":"assistant","model":"claude-fake","content":[],"stop_reason":null,"usage":{"input_tokens":1,"output_tokens":1}}}"#,
    ),
    (
        "content_block_start",
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    ),
    (
        "content_block_delta",
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hello"}}"#,
    ),
    (
        "content_block_delta",
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" from the fake provider"}}"#,
    ),
    (
        "content_block_stop",
        r#"{"type":"content_block_stop","index":0}"#,
    ),
    (
        "message_delta",
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":5}}"#,
    ),
    ("message_stop", r#"{"type":"message_stop"}"#),
];

fn sse_answer(held: Option<Arc<Semaphore>>) -> Response {
    let events = futures_util::stream::unfold(0usize, move |i| {
        let held = held.clone();
        async move {
            let (name, data) = SSE_EVENTS.get(i)?;
            if i > 0
                && let Some(held) = held
            {
                held.acquire().await.unwrap().forget();
            }
            let text = format!("event: {name}\ndata: {data}\n\n");
            Some((Ok::<_, std::io::Error>(Bytes::from(text)), i + 1))
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(Body::from_stream(events))
        .unwrap()
}

/// `POST /v1/messages`: a short canned answer for a valid access token (SSE events when the
/// request asks to stream), 401 otherwise.
async fn messages(
    State(inner): State<Arc<Mutex<Inner>>>,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let close = {
        let mut inner = inner.lock().unwrap();
        inner.messages_calls += 1;
        inner.last_messages = Some((headers.clone(), version));
        let close = matches!(inner.failures.front(), Some(Failure::Close));
        if close {
            inner.failures.pop_front();
        }
        close
    };
    if let Some(response) = injected(&inner).await {
        return response;
    }
    let inner = inner.lock().unwrap();
    let stream = serde_json::from_slice::<Value>(&body).is_ok_and(|v| v["stream"] == true);
    let limits = inner
        .authorize(&headers)
        .ok()
        .and_then(|family| inner.limits_of.get(&inner.families[family].email).copied());
    let mut response = match inner.authorize(&headers) {
        Ok(_) if limits.is_some_and(|l| l.rejected) => (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed your account's rate limit. Please try again later."}})),
        )
            .into_response(),
        Ok(_) if stream => sse_answer(inner.held.clone()),
        Ok(_) => Json(json!({
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": "claude-fake",
            "content": [{"type": "text", "text": "hello from the fake provider"}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 1, "output_tokens": 5}
        }))
        .into_response(),
        Err(why) => auth_error(why),
    };
    if close {
        response
            .headers_mut()
            .insert("connection", HeaderValue::from_static("close"));
    }
    if let Some(limits) = limits {
        unified_headers(response.headers_mut(), &limits);
    }
    response
}

/// The quota headers the Messages API sends a subscription account on every answer.
fn unified_headers(headers: &mut HeaderMap, limits: &Limits) {
    let now = now_ms() / 1000;
    let five_reset = now + limits.five_hour_reset_s;
    let seven_reset = now + limits.seven_day_reset_s;
    let status_of = |used: f64| match (limits.rejected, used) {
        (true, used) if used >= 1.0 => "rejected",
        (_, used) if used >= 0.8 => "allowed_warning",
        _ => "allowed",
    };
    let binding = if limits.seven_day > limits.five_hour {
        ("seven_day", seven_reset)
    } else {
        ("five_hour", five_reset)
    };
    let overall = if limits.rejected {
        "rejected"
    } else {
        status_of(limits.five_hour.max(limits.seven_day))
    };
    for (name, value) in [
        ("anthropic-ratelimit-unified-status", overall.to_string()),
        ("anthropic-ratelimit-unified-reset", binding.1.to_string()),
        (
            "anthropic-ratelimit-unified-representative-claim",
            binding.0.to_string(),
        ),
        (
            "anthropic-ratelimit-unified-5h-status",
            status_of(limits.five_hour).to_string(),
        ),
        (
            "anthropic-ratelimit-unified-5h-utilization",
            limits.five_hour.to_string(),
        ),
        (
            "anthropic-ratelimit-unified-5h-reset",
            five_reset.to_string(),
        ),
        (
            "anthropic-ratelimit-unified-7d-status",
            status_of(limits.seven_day).to_string(),
        ),
        (
            "anthropic-ratelimit-unified-7d-utilization",
            limits.seven_day.to_string(),
        ),
        (
            "anthropic-ratelimit-unified-7d-reset",
            seven_reset.to_string(),
        ),
        (
            "anthropic-ratelimit-unified-overage-status",
            "rejected".to_string(),
        ),
    ] {
        headers.insert(name, HeaderValue::from_str(&value).unwrap());
    }
}

/// `POST /test/upload`: reads the whole body as it streams in; answers its length and SHA-256.
async fn upload(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(why) = inner.lock().unwrap().authorize(&headers) {
        return auth_error(why);
    }
    let mut stream = body.into_data_stream();
    let (mut bytes, mut hash) = (0u64, Sha256::new());
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return StatusCode::BAD_REQUEST.into_response();
        };
        bytes += chunk.len() as u64;
        hash.update(&chunk);
    }
    let sha256: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Json(json!({"bytes": bytes, "sha256": sha256})).into_response()
}

/// `/test/unauthorized`: 401 whatever the token, as an endpoint the account may not use.
async fn unauthorized(State(inner): State<Arc<Mutex<Inner>>>) -> Response {
    inner.lock().unwrap().unauthorized_calls += 1;
    auth_error("this endpoint refuses every token")
}

/// The byte at `offset` of every download: a pattern a reader can check without a copy.
pub fn download_byte(offset: u64) -> u8 {
    (offset % 251) as u8
}

/// `GET /test/stats`: refreshes served and families revoked so far, for benchmarks that run
/// the provider on its own.
async fn stats(State(inner): State<Arc<Mutex<Inner>>>) -> Json<Value> {
    let inner = inner.lock().unwrap();
    Json(json!({
        "refreshes": inner.refreshes_served,
        "revoked_families": inner.ledger.revoked_families(),
    }))
}

/// `GET /test/download?bytes=N`: streams N pattern bytes in 64 KiB chunks, produced only as
/// fast as they are taken.
async fn download(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, u64>>,
) -> Response {
    let counter = {
        let inner = inner.lock().unwrap();
        if let Err(why) = inner.authorize(&headers) {
            return auth_error(why);
        }
        inner.downloaded.clone()
    };
    let total = query.get("bytes").copied().unwrap_or(0);
    let chunks = futures_util::stream::unfold(0u64, move |offset| {
        let counter = counter.clone();
        async move {
            if offset >= total {
                return None;
            }
            let len = (total - offset).min(64 << 10);
            let chunk: Vec<u8> = (offset..offset + len).map(download_byte).collect();
            counter.fetch_add(len, Ordering::SeqCst);
            Some((Ok::<_, std::io::Error>(Bytes::from(chunk)), offset + len))
        }
    });
    Response::builder()
        .header("content-type", "application/octet-stream")
        .header("content-length", total)
        .body(Body::from_stream(chunks))
        .unwrap()
}

/// A fresh CA (written to `dir/provider-ca.pem`) and a server certificate it issued for localhost and
/// 127.0.0.1, offering HTTP/2 and HTTP/1.1 by ALPN.
fn test_ca(dir: &Path) -> (tokio_rustls::TlsAcceptor, PathBuf) {
    let identity = TlsIdentity::new(dir, "provider");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = rustls_pki_types::PrivateKeyDer::try_from(identity.key_der.clone()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![identity.cert_der.clone().into()], key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (
        tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        identity.ca,
    )
}

/// A fresh test CA and a certificate it signed for `localhost` and `127.0.0.1`, written as PEM
/// files (`NAME-ca.pem`, `NAME.pem`, `NAME-key.pem`, the key 0600) under `dir`.
pub struct TlsIdentity {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

impl TlsIdentity {
    pub fn new(dir: &Path, name: &str) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        use std::os::unix::fs::PermissionsExt;
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("tokenkeeper test CA {name}"));
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let identity = Self {
            ca: dir.join(format!("{name}-ca.pem")),
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}-key.pem")),
            cert_der: leaf.der().to_vec(),
            key_der: leaf_key.serialize_der(),
        };
        std::fs::write(&identity.ca, ca_cert.pem()).unwrap();
        std::fs::write(&identity.cert, leaf.pem()).unwrap();
        std::fs::write(&identity.key, leaf_key.serialize_pem()).unwrap();
        std::fs::set_permissions(&identity.key, std::fs::Permissions::from_mode(0o600)).unwrap();
        identity
    }
}

/// A TCP listener that counts the connections it accepts.
struct Counted {
    listener: tokio::net::TcpListener,
    inner: Arc<Mutex<Inner>>,
}

impl Listener for Counted {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let accepted = Listener::accept(&mut self.listener).await;
        self.inner.lock().unwrap().connections += 1;
        accepted
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// A TCP listener that hands axum TLS streams; failed handshakes are skipped.
struct TlsListener {
    listener: Counted,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = self.listener.accept().await;
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}
