//! The credential-injecting reverse proxy: requests come in carrying a phantom token (or none),
//! leave for the one configured target carrying the real one, and stream back unbuffered.

mod body;
pub mod clients;
mod connection;
mod failover;
mod limit;
mod metrics;
mod pool;
mod quota;
mod rewrite;
mod server;
mod tls;
mod token;
mod upstream;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use serde_json::json;
use tracing::{debug, warn};

pub use body::REPLAY_LIMIT;
use body::{Exchange, ProxyBody, Recorded};
pub use clients::{Admission, Clients, NamedClients};
use metrics::Metrics;
pub use pool::SlotPool;
use rewrite::Credential;
pub use rewrite::{Auth, Target};
pub use server::{Running, bind, start};
pub use tls::ListenerTls;
pub use token::{SlotTokens, TokenSource};
pub use upstream::Options as UpstreamOptions;
use upstream::{Pooled, Upstream};

/// What sending a request upstream came to.
type Sent = std::result::Result<(Response<Pooled>, Duration), upstream::Failed>;

use crate::error::Result;

/// The body of `GET /health`, as the agent-loop proxy answers it (its launchers read the
/// version and the mode): `agent-loop-proxy ok v=<version> mode=<oauth|api_key|gateway>`.
fn health_body(auth: &rewrite::Auth) -> String {
    let mode = match auth {
        rewrite::Auth::Bearer => "oauth",
        rewrite::Auth::ApiKey => "api_key",
        rewrite::Auth::Gateway { .. } => "gateway",
    };
    format!(
        "agent-loop-proxy ok v={} mode={mode}\n",
        env!("CARGO_PKG_VERSION")
    )
}
/// Marks every answer the proxy made itself rather than relayed, with the reason as its value.
pub const ERROR_HEADER: &str = "x-tokenkeeper-error";

pub struct Settings {
    pub target: Target,
    pub auth: Auth,
    /// Who may use the proxy.
    pub clients: Clients,
    /// TLS on the listener, when clients reach it over a network.
    pub tls: Option<Arc<ListenerTls>>,
    /// How long to wait for the upstream's response headers.
    pub response_timeout: Duration,
    pub upstream: UpstreamOptions,
    /// Requests the proxy answers itself, for anyone who can connect (e.g. Codex's token
    /// refresh, which gets phantom tokens back: the real ones never leave the proxy).
    pub local_answers: Vec<LocalAnswer>,
    /// Non-secret headers the upstream expects beside the token (Codex's
    /// `chatgpt-account-id`), set when the client did not send them.
    pub extra_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// What one client may hold of the proxy.
    pub limits: Limits,
    /// Listening beyond loopback: `/metrics` then wants the client token too.
    pub public: bool,
}

/// Bounds that keep hostile or broken clients from starving the others.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A request's head must arrive within this long, and an idle keep-alive connection is
    /// closed after it.
    pub header_timeout: Duration,
    /// Connections open at once; the next ones get a 503 and are closed.
    pub max_connections: usize,
    /// The most a request head may take (bytes); past it the client gets a 431.
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(75),
            max_connections: 4096,
            max_header_bytes: 64 * 1024,
        }
    }
}

/// A fixed answer to `POST`/`GET` of one path.
#[derive(Debug, Clone)]
pub struct LocalAnswer {
    pub method: Method,
    pub path: String,
    pub content_type: &'static str,
    pub body: String,
}

/// What every worker thread shares: settings, the token, the metrics.
pub struct Proxy {
    health: String,
    settings: Settings,
    tokens: TokenSource,
    tls: Arc<rustls::ClientConfig>,
    metrics: Arc<Metrics>,
}

impl Proxy {
    pub fn new(settings: Settings, tokens: TokenSource) -> Result<Self> {
        let tls = upstream::tls(&settings.upstream)?;
        Ok(Self {
            health: health_body(&settings.auth),
            settings,
            tokens,
            tls,
            metrics: Arc::new(Metrics::new()),
        })
    }

    /// Whether clients must present a client token.
    pub fn checks_clients(&self) -> bool {
        self.settings.clients.checked()
    }

    /// Re-reads the clients file and the listener's certificate (SIGHUP). On failure what was
    /// in use stays in use; the message says what went wrong.
    pub fn reload(&self) -> Vec<Result<String>> {
        let mut done = Vec::new();
        match self.settings.clients.reload() {
            Ok(Some(n)) => done.push(Ok(format!("clients file re-read: {n} clients"))),
            Ok(None) => {}
            Err(err) => done.push(Err(err)),
        }
        if let Some(tls) = &self.settings.tls {
            done.push(tls.reload().map(|()| "certificate re-read".to_string()));
        }
        done
    }

    /// The listener's TLS, when it has one.
    fn listener_tls(&self) -> Option<Arc<ListenerTls>> {
        self.settings.tls.clone()
    }

    /// The target, for start-up messages.
    pub fn target(&self) -> &Target {
        &self.settings.target
    }
}

/// One worker thread's side of the proxy: the shared part and its own upstream pool, so a
/// request and its upstream exchange stay on one thread.
struct Worker {
    proxy: Arc<Proxy>,
    upstream: Upstream,
    /// The header for a token that never changes, built once.
    fixed: Option<Arc<Credential>>,
}

impl Worker {
    fn new(proxy: Arc<Proxy>) -> Result<Self> {
        let upstream = Upstream::new(
            &proxy.settings.target,
            proxy.tls.clone(),
            proxy.settings.upstream.clone(),
        )?;
        let fixed = match &proxy.tokens {
            TokenSource::Fixed(token) => Some(Arc::new(Credential::new(
                &proxy.settings.auth,
                token.clone(),
            )?)),
            TokenSource::Slot(_) | TokenSource::Pool(_) => None,
        };
        Ok(Self {
            proxy,
            upstream,
            fixed,
        })
    }

    /// Answers one request. Each step either answers itself or hands on to the next.
    async fn handle(
        self: Arc<Self>,
        request: Request<connection::Received>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let exchange = Exchange::new(
            self.clone(),
            request.method().clone(),
            // The query is not logged: it is the one place a client might put a secret.
            request.uri().clone(),
            Instant::now(),
        );

        // 1. The proxy's own endpoints, open to anyone who can connect: they reveal nothing.
        if request.method() == Method::GET {
            match request.uri().path() {
                "/health" => {
                    return Ok(local(
                        exchange,
                        "text/plain; charset=utf-8",
                        self.proxy.health.clone(),
                    ));
                }
                "/metrics"
                    if self.proxy.settings.public
                        && self
                            .proxy
                            .settings
                            .clients
                            .admit(request.headers())
                            .refused() =>
                {
                    return Ok(synthetic(
                        exchange,
                        StatusCode::UNAUTHORIZED,
                        "authentication_error",
                        "tokenkeeper proxy: /metrics beyond loopback needs a client token",
                        "client-token",
                    ));
                }
                "/metrics" => {
                    return Ok(local(
                        exchange,
                        metrics::CONTENT_TYPE,
                        self.proxy.metrics.render(),
                    ));
                }
                _ => {}
            }
        }

        if let Some(answer) = self
            .proxy
            .settings
            .local_answers
            .iter()
            .find(|a| a.method == request.method() && a.path == request.uri().path())
        {
            return Ok(local(exchange, answer.content_type, answer.body.clone()));
        }

        // 2. Only requests for the target, in origin form: this is not a forward proxy.
        if let Some(why) = rewrite::refuse_form(&request) {
            return Ok(synthetic(
                exchange,
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                why,
                "refused-request-form",
            ));
        }

        // 3. Only this proxy's own clients: they present a phantom token.
        let admission = self.proxy.settings.clients.admit(request.headers());
        let mut exchange = exchange;
        if let Some(name) = admission.name() {
            exchange.client(name.clone());
        }
        if admission.refused() {
            return Ok(synthetic(
                exchange,
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "tokenkeeper proxy: this request does not carry the proxy's client token",
                "client-token",
            ));
        }

        // 4. Swap the credentials and forward; resend once if the upstream refuses the token.
        Ok(self.forward(request, exchange).await)
    }

    async fn forward(
        &self,
        request: Request<connection::Received>,
        exchange: Exchange,
    ) -> Response<ProxyBody> {
        let (mut parts, incoming) = request.into_parts();
        rewrite::strip_hop_by_hop(&mut parts.headers);
        for (name, value) in &self.proxy.settings.extra_headers {
            if !parts.headers.contains_key(name) {
                parts.headers.insert(name.clone(), value.clone());
            }
        }
        let uri = Uri::from(
            self.proxy
                .settings
                .target
                .path_for(parts.uri.path_and_query()),
        );
        match &self.proxy.tokens {
            TokenSource::Fixed(_) => {
                let Some(credential) = self.fixed.clone() else {
                    return no_token(exchange, "the proxy's token was not read");
                };
                let sent = self
                    .send(
                        &parts.method,
                        uri,
                        parts.headers,
                        body::boxed(incoming),
                        &credential,
                    )
                    .await;
                self.relay(sent, exchange, 0)
            }
            // A refused token can be replaced, so the body is kept (by reference, as it
            // streams) for a resend.
            TokenSource::Slot(slot) => {
                let (recorded, replay) = Recorded::new(incoming);
                let sent = self
                    .send_renewing(
                        slot,
                        &parts.method,
                        &parts.headers,
                        uri,
                        body::boxed(recorded),
                        &replay,
                    )
                    .await;
                match sent {
                    Ok(sent) => self.relay(sent, exchange, 0),
                    Err(why) => no_token(exchange, &why),
                }
            }
            TokenSource::Pool(pool) => {
                self.forward_pooled(pool, parts, uri, incoming, exchange)
                    .await
            }
        }
    }

    /// Sends with the slot's current token. When the upstream refuses it (401), the token is
    /// renewed and the request sent once more, if its body was kept. `Err`: why there is no
    /// usable token.
    async fn send_renewing(
        &self,
        slot: &SlotTokens,
        method: &Method,
        headers: &HeaderMap,
        uri: Uri,
        body: ProxyBody,
        replay: &body::Replay,
    ) -> std::result::Result<Sent, String> {
        let credential = slot
            .current()
            .await
            .and_then(|token| Credential::new(&self.proxy.settings.auth, token))
            .map_err(|err| err.message().to_string())?;
        let first = self
            .send(method, uri.clone(), headers.clone(), body, &credential)
            .await;
        let refused =
            matches!(&first, Ok((response, _)) if response.status() == StatusCode::UNAUTHORIZED);
        if !refused {
            return Ok(first);
        }
        let rejected = credential.token();
        let renewed = match slot.renew(rejected).await {
            Ok(renewed) if renewed != *rejected => {
                Credential::new(&self.proxy.settings.auth, renewed)
                    .map_err(|err| err.message().to_string())?
            }
            Ok(_) => return Ok(first),
            Err(err) => {
                warn!(error = %err.message(), "cannot renew the token the upstream refused");
                self.proxy.metrics.renewed("failed");
                return Ok(first);
            }
        };
        self.proxy.metrics.renewed("refreshed");
        match replay.body() {
            Some(bytes) => {
                debug!("resending the request with the renewed token");
                let again = self.send(method, uri, headers.clone(), body::full(bytes), &renewed);
                Ok(again.await)
            }
            // The body was too large to keep, or still streaming: the client sees the 401 and
            // its own retry gets the renewed token.
            None => Ok(first),
        }
    }

    async fn send(
        &self,
        method: &Method,
        uri: Uri,
        mut headers: HeaderMap,
        body: ProxyBody,
        credential: &Credential,
    ) -> Result<(Response<Pooled>, Duration), upstream::Failed> {
        rewrite::set_credentials(&mut headers, credential);
        let mut request = Request::new(body);
        *request.method_mut() = method.clone();
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        let started = Instant::now();
        match tokio::time::timeout(
            self.proxy.settings.response_timeout,
            self.upstream.send(request),
        )
        .await
        {
            Ok(Ok(response)) => Ok((response, started.elapsed())),
            Ok(Err(failed)) => Err(failed),
            Err(_) => Err(upstream::Failed::Upstream(format!(
                "no response within {}s",
                self.proxy.settings.response_timeout.as_secs()
            ))),
        }
    }

    /// The upstream's answer (or why there is none) for the client. `member`: the pool
    /// member that answered (0 outside a pool).
    fn relay<B>(
        &self,
        sent: std::result::Result<(Response<B>, Duration), upstream::Failed>,
        exchange: Exchange,
        member: usize,
    ) -> Response<ProxyBody>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
        B::Error: Into<body::BoxError>,
    {
        match sent {
            Ok((response, latency)) => {
                self.proxy.metrics.upstream_answered(latency);
                let (mut parts, incoming) = response.into_parts();
                self.proxy.tokens.observe(member, &parts.headers);
                rewrite::strip_hop_by_hop(&mut parts.headers);
                // The client's connection has its own version, whatever the upstream spoke.
                parts.version = Version::default();
                let status = parts.status.as_u16();
                Response::from_parts(parts, exchange.finish(status, incoming))
            }
            Err(upstream::Failed::Client(why)) => {
                let message =
                    format!("tokenkeeper proxy: the request body could not be read: {why}");
                debug!("{message}");
                synthetic(
                    exchange,
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    &message,
                    "client-body",
                )
            }
            Err(upstream::Failed::Upstream(why)) => {
                self.proxy.metrics.upstream_failed();
                let message = format!(
                    "tokenkeeper proxy: upstream unreachable: cannot reach {}: {why}",
                    self.proxy.settings.target
                );
                warn!("{message}");
                synthetic(
                    exchange,
                    StatusCode::BAD_GATEWAY,
                    "api_error",
                    &message,
                    "upstream-unreachable",
                )
            }
        }
    }
}

fn local(exchange: Exchange, content_type: &'static str, text: String) -> Response<ProxyBody> {
    let mut response =
        Response::new(exchange.finish(200, http_body_util::Full::new(bytes::Bytes::from(text))));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// An answer the proxy makes itself, shaped like the Anthropic API's own errors so clients
/// show its message, and marked with `x-tokenkeeper-error`.
fn synthetic(
    exchange: Exchange,
    status: StatusCode,
    kind: &str,
    message: &str,
    reason: &'static str,
) -> Response<ProxyBody> {
    let body = json!({"type": "error", "error": {"type": kind, "message": message}}).to_string();
    let mut response = Response::new(exchange.finish(
        status.as_u16(),
        http_body_util::Full::new(bytes::Bytes::from(body)),
    ));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(ERROR_HEADER, HeaderValue::from_static(reason));
    response
}

fn no_token(exchange: Exchange, why: &str) -> Response<ProxyBody> {
    let message = format!("tokenkeeper proxy: no usable token: {why}");
    warn!("{message}");
    synthetic(
        exchange,
        StatusCode::BAD_GATEWAY,
        "api_error",
        &message,
        "no-token",
    )
}
