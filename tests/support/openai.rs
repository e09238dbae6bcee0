//! A fake OpenAI for Codex logins, on 127.0.0.1: the token endpoint (`/oauth/token`) with
//! single-use rotating refresh tokens and family revocation on reuse, as auth.openai.com does,
//! and the ChatGPT backend's usage reading (`/backend-api/wham/usage`). Tokens are JWT-shaped
//! (unsigned, `alg: none`) and carry the claims Codex reads: `exp`, `email`, and under
//! `https://api.openai.com/auth` the plan and ChatGPT account id.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::lineage::{Ledger, Refused};

pub const CODEX_CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";

/// One Codex login as the provider issued it.
#[derive(Debug, Clone)]
pub struct CodexLogin {
    pub access: String,
    pub refresh: String,
    pub id_token: String,
    pub account_id: String,
    pub email: String,
    pub expires_at: i64,
}

impl CodexLogin {
    /// `auth.json` as Codex writes it (pretty, its own key order).
    pub fn auth_json(&self) -> String {
        serde_json::to_string_pretty(&json!({
            "auth_mode": "chatgpt",
            "OPENAI_API_KEY": null,
            "tokens": {
                "id_token": self.id_token,
                "access_token": self.access,
                "refresh_token": self.refresh,
                "account_id": self.account_id,
            },
            "last_refresh": "2026-12-01T09:54:11.493646Z",
        }))
        .unwrap()
    }
}

/// An unsigned JWT with these claims.
pub fn jwt(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.PLANTEDsig")
}

struct Family {
    email: String,
    plan: String,
    account_id: String,
}

struct Inner {
    families: Vec<Family>,
    /// The refresh tokens of every family.
    ledger: Ledger,
    /// Live access tokens → family.
    access: HashMap<String, usize>,
    counter: u64,
    access_lifetime_secs: i64,
    refresh_calls: usize,
    refreshes_served: usize,
    usage_calls: usize,
    last_usage_account: Option<String>,
    /// Every `/codex/responses` POST: its authorization and account headers, as received.
    turns: Vec<(String, Option<String>)>,
    /// Token requests to come that rotate and then lose their answer (the connection drops).
    drop_after_rotate: usize,
    /// What `/codex/responses` tells one account (by email) of its quota.
    quota_of: HashMap<String, CodexQuota>,
}

/// An account's quota as the Codex backend reports it in `x-codex-primary-*` (the 5-hour
/// window) and `x-codex-secondary-*` (the weekly one) headers, in percent. `reached` answers
/// 429 `usage_limit_reached` instead, resetting in `reset_s`.
#[derive(Debug, Clone, Copy)]
pub struct CodexQuota {
    pub primary: f64,
    pub secondary: f64,
    pub reset_s: i64,
    pub reached: bool,
}

#[derive(Clone)]
pub struct FakeOpenAi {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

impl Inner {
    fn mint(&mut self, family: usize) -> CodexLogin {
        self.counter += 1;
        let n = self.counter;
        let f = &self.families[family];
        let exp = now() + self.access_lifetime_secs;
        let auth = json!({
            "chatgpt_plan_type": f.plan,
            "chatgpt_account_id": f.account_id,
            "chatgpt_user_id": format!("user-{family}"),
        });
        let access =
            jwt(&json!({"exp": exp, "n": n, "https://api.openai.com/auth": auth, "PLANTED": true}));
        let id_token =
            jwt(&json!({"email": f.email, "exp": exp, "https://api.openai.com/auth": auth}));
        let refresh = format!("rt_fake{family}n{n}PLANTED");
        let login = CodexLogin {
            access: access.clone(),
            refresh: refresh.clone(),
            id_token,
            account_id: f.account_id.clone(),
            email: f.email.clone(),
            expires_at: exp,
        };
        self.access.retain(|_, fam| *fam != family);
        self.access.insert(access, family);
        self.ledger.issue(family, &refresh);
        login
    }

    /// Spends a refresh token; OpenAI's error code when it is not taken.
    fn rotate(&mut self, refresh: &str) -> Result<usize, &'static str> {
        self.ledger
            .rotate(refresh)
            .map_err(|refused| match refused {
                Refused::Unknown | Refused::Revoked => "refresh_token_invalidated",
                Refused::Reused { family } => {
                    self.access.retain(|_, fam| *fam != family);
                    "refresh_token_reused"
                }
            })
    }
}

impl FakeOpenAi {
    pub fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            families: Vec::new(),
            ledger: Ledger::default(),
            access: HashMap::new(),
            counter: 0,
            access_lifetime_secs: 8 * 86_400,
            refresh_calls: 0,
            refreshes_served: 0,
            usage_calls: 0,
            last_usage_account: None,
            turns: Vec::new(),
            drop_after_rotate: 0,
            quota_of: HashMap::new(),
        }));
        let app = Router::new()
            .route("/oauth/token", post(token))
            .route("/backend-api/wham/usage", get(usage))
            .route("/backend-api/wham/accounts/check", get(accounts_check))
            .route(
                "/backend-api/codex/responses",
                post(responses).get(responses_websocket),
            )
            .with_state(inner.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        super::serve_in_background(listener, app);
        Self { url, inner }
    }

    /// Points tokenkeeper's Codex endpoints here.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "TOKENKEEPER_CODEX_OAUTH_URL".into(),
                format!("{}/oauth/token", self.url),
            ),
            (
                "TOKENKEEPER_CODEX_API_URL".into(),
                format!("{}/backend-api", self.url),
            ),
        ]
    }

    /// A new login of `email` on `plan`.
    pub fn issue(&self, email: &str, plan: &str) -> CodexLogin {
        let mut inner = self.inner.lock().unwrap();
        let family = inner.ledger.new_family();
        inner.families.push(Family {
            email: email.to_string(),
            plan: plan.to_string(),
            account_id: format!("acct-{}", email.split('@').next().unwrap()),
        });
        inner.mint(family)
    }

    /// Access tokens issued from now on live this long.
    pub fn set_access_lifetime(&self, secs: i64) {
        self.inner.lock().unwrap().access_lifetime_secs = secs;
    }

    /// Refreshes as Codex itself would, spending `refresh`.
    pub fn refresh_as_codex(&self, refresh: &str) -> Option<CodexLogin> {
        let mut inner = self.inner.lock().unwrap();
        inner.refresh_calls += 1;
        let family = inner.rotate(refresh).ok()?;
        inner.refreshes_served += 1;
        Some(inner.mint(family))
    }

    /// Makes an access token unusable (401) while its family and refresh token stay alive, as
    /// a token revoked server-side looks.
    pub fn kill_access(&self, access: &str) {
        self.inner.lock().unwrap().access.remove(access);
    }

    /// The next `n` refreshes rotate the token and then lose the answer.
    pub fn drop_answers_after_rotating(&self, n: usize) {
        self.inner.lock().unwrap().drop_after_rotate = n;
    }

    pub fn refresh_calls(&self) -> usize {
        self.inner.lock().unwrap().refresh_calls
    }

    pub fn refreshes_served(&self) -> usize {
        self.inner.lock().unwrap().refreshes_served
    }

    pub fn is_current(&self, refresh: &str) -> bool {
        self.inner.lock().unwrap().ledger.is_current(refresh)
    }

    pub fn family_revoked(&self, refresh: &str) -> bool {
        self.inner.lock().unwrap().ledger.family_revoked(refresh)
    }

    pub fn usage_calls(&self) -> usize {
        self.inner.lock().unwrap().usage_calls
    }

    /// The authorization and `chatgpt-account-id` headers of every turn Codex sent.
    /// What `/codex/responses` reports of the quota of the account of `email` from now on.
    pub fn set_quota_of(&self, email: &str, quota: CodexQuota) {
        self.inner
            .lock()
            .unwrap()
            .quota_of
            .insert(email.to_string(), quota);
    }

    pub fn turns(&self) -> Vec<(String, Option<String>)> {
        self.inner.lock().unwrap().turns.clone()
    }

    /// The `chatgpt-account-id` header of the last usage request.
    pub fn last_usage_account(&self) -> Option<String> {
        self.inner.lock().unwrap().last_usage_account.clone()
    }
}

fn refused(code: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": {"message": "Could not refresh the token", "type": "invalid_request_error", "param": null, "code": code}})),
    )
        .into_response()
}

async fn token(State(inner): State<Arc<Mutex<Inner>>>, body: String) -> Response {
    let mut inner = inner.lock().unwrap();
    inner.refresh_calls += 1;
    let Ok(request) = serde_json::from_str::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_request"})),
        )
            .into_response();
    };
    if request["client_id"] != CODEX_CLIENT_ID || request["grant_type"] != "refresh_token" {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let refresh = request["refresh_token"].as_str().unwrap_or_default();
    match inner.rotate(refresh) {
        Ok(family) => {
            inner.refreshes_served += 1;
            let login = inner.mint(family);
            if inner.drop_after_rotate > 0 {
                inner.drop_after_rotate -= 1;
                drop(inner);
                // Panicking in a handler makes the server drop the connection unanswered.
                panic!("injected: answer lost after rotating");
            }
            Json(json!({
                "id_token": login.id_token,
                "access_token": login.access,
                "refresh_token": login.refresh,
                "expires_in": inner.access_lifetime_secs,
            }))
            .into_response()
        }
        Err(code) => refused(code),
    }
}

async fn usage(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap) -> Response {
    let mut inner = inner.lock().unwrap();
    inner.usage_calls += 1;
    let account = headers
        .get("chatgpt-account-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    inner.last_usage_account = account.clone();
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(&family) = token.and_then(|t| inner.access.get(t)) else {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"detail": "Unauthorized"})),
        )
            .into_response();
    };
    if account.as_deref() != Some(inner.families[family].account_id.as_str()) {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"detail": "account mismatch"})),
        )
            .into_response();
    }
    let reset = now() + 3600;
    // The account's own quota when a test set one; the same answer for all otherwise.
    let quota = inner.quota_of.get(&inner.families[family].email).copied();
    let (primary, secondary, reset) = quota.map_or((37.0, 12.0, reset), |q| {
        (q.primary, q.secondary, now() + q.reset_s)
    });
    Json(json!({
        "plan_type": inner.families[family].plan,
        "rate_limit": {
            "allowed": true,
            "limit_reached": quota.is_some_and(|q| q.reached),
            "primary_window": {"used_percent": primary, "limit_window_seconds": 18000, "reset_after_seconds": 3600, "reset_at": reset},
            "secondary_window": {"used_percent": secondary, "limit_window_seconds": 604800, "reset_after_seconds": 86400, "reset_at": reset + 86_400},
        },
        "credits": {"has_credits": true, "unlimited": false, "balance": "12.50"},
    }))
    .into_response()
}

/// What the real backend answers: the account's workspace on the real origin. A client that
/// follows it with a phantom token would send the phantom to OpenAI.
async fn accounts_check(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap) -> Response {
    let inner = inner.lock().unwrap();
    let account = headers
        .get("chatgpt-account-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Json(json!({"accounts": [{
        "id": account,
        "workspace_backend_origin": "https://chatgpt.com",
        "account_routing_override": "NO_CONSTRAINT",
        "plan_type": inner.families.first().map(|f| f.plan.clone()),
    }]}))
    .into_response()
}

/// The WebSocket attempt Codex makes first: not offered, so it falls back to HTTP.
async fn responses_websocket() -> Response {
    (
        StatusCode::UPGRADE_REQUIRED,
        "websockets are not offered here",
    )
        .into_response()
}

/// One turn: the assistant answers `HELLO-FROM-FAKE-OPENAI`, streamed as SSE.
async fn responses(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap) -> Response {
    let mut inner = inner.lock().unwrap();
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let account = headers
        .get("chatgpt-account-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    inner.turns.push((authorization.clone(), account));
    let family = authorization
        .strip_prefix("Bearer ")
        .and_then(|t| inner.access.get(t))
        .copied();
    let Some(family) = family else {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"message": "invalid token", "code": "token_invalid"}})),
        )
            .into_response();
    };
    let quota = inner.quota_of.get(&inner.families[family].email).copied();
    let quota_headers = |response: &mut Response, quota: &CodexQuota| {
        let reset = now() + quota.reset_s;
        for (name, value) in [
            ("x-codex-primary-used-percent", quota.primary.to_string()),
            ("x-codex-primary-window-minutes", "300".to_string()),
            ("x-codex-primary-reset-at", reset.to_string()),
            (
                "x-codex-secondary-used-percent",
                quota.secondary.to_string(),
            ),
            ("x-codex-secondary-window-minutes", "10080".to_string()),
            (
                "x-codex-secondary-reset-at",
                (now() + 5 * 86_400).to_string(),
            ),
        ] {
            response.headers_mut().insert(name, value.parse().unwrap());
        }
    };
    if let Some(quota) = quota.filter(|q| q.reached) {
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({"error": {
                "type": "usage_limit_reached",
                "message": "The usage limit has been reached",
                "plan_type": "plus",
                "resets_at": now() + quota.reset_s,
                "resets_in_seconds": quota.reset_s,
            }})),
        )
            .into_response();
        quota_headers(&mut response, &quota);
        return response;
    }
    let events = [
        json!({"type": "response.created", "response": {"id": "resp_1"}}),
        json!({"type": "response.output_item.done", "item": {"type": "message", "role": "assistant", "id": "msg_1", "content": [{"type": "output_text", "text": "HELLO-FROM-FAKE-OPENAI"}]}}),
        json!({"type": "response.completed", "response": {"id": "resp_1", "usage": {"input_tokens": 1, "input_tokens_details": null, "output_tokens": 1, "output_tokens_details": null, "total_tokens": 2}}}),
    ];
    let body: String = events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
        .collect();
    let mut response = ([("content-type", "text/event-stream")], body).into_response();
    if let Some(quota) = &quota {
        quota_headers(&mut response, quota);
    }
    response
}
