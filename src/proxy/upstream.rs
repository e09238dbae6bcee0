//! The client side. Each worker thread keeps its own connections to the one target: HTTP/1.1
//! connections in an idle list, or a single multiplexed HTTP/2 connection when the target offers
//! it by ALPN; rustls with the system's roots plus any the user adds.
//!
//! A general-purpose client pool would key connections by host, lock a shared map and spawn a
//! task per request to take its connection back; with one target and one thread none of that is
//! needed, and the proxy spends most of its own time per request here.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tracing::{debug, warn};

use super::body::ProxyBody;
use super::rewrite::Target;
use crate::error::{Error, Result, with_causes};

/// Why a request got no answer from the target.
#[derive(Debug)]
pub enum Failed {
    /// The target could not be reached, or broke off.
    Upstream(String),
    /// The client's request body could not be read.
    Client(String),
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Extra trusted roots (PEM), on top of the system's (or `SSL_CERT_FILE`'s).
    pub ca_cert: Option<PathBuf>,
    /// How long connecting (TCP and TLS) may take.
    pub connect_timeout: Duration,
    /// How long an unused connection is kept (closed within half as long again).
    pub idle_timeout: Duration,
}

/// The TLS settings every worker shares: loaded (roots read) once.
pub fn tls(options: &Options) -> Result<Arc<rustls::ClientConfig>> {
    let roots = roots(options.ca_cert.as_deref())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| Error::failure(format!("cannot set up TLS: {err}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// One worker's connections to the target.
pub struct Upstream {
    scheme: Scheme,
    authority: Authority,
    /// The host to connect to: the authority's, without IPv6 brackets.
    host: String,
    port: u16,
    /// `Host` for HTTP/1.1 requests: the target's authority, as given.
    host_header: HeaderValue,
    /// Present for https targets.
    tls: Option<(TlsConnector, ServerName<'static>)>,
    options: Options,
    pool: Arc<Mutex<Pool>>,
}

#[derive(Default)]
struct Pool {
    /// HTTP/1.1 connections between requests, the most recently used last.
    idle: Vec<Idle>,
    /// The HTTP/2 connection every request shares, once the target has chosen HTTP/2.
    shared: Option<Idle<http2::SendRequest<ProxyBody>>>,
}

struct Idle<S = http1::SendRequest<ProxyBody>> {
    sender: S,
    since: Instant,
}

/// A connection taken for one request.
enum Taken {
    Http1 {
        sender: http1::SendRequest<ProxyBody>,
        reused: bool,
    },
    Http2 {
        sender: http2::SendRequest<ProxyBody>,
        reused: bool,
    },
}

impl Upstream {
    pub fn new(target: &Target, tls: Arc<rustls::ClientConfig>, options: Options) -> Result<Self> {
        let authority = target.authority().clone();
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let https = *target.scheme() == Scheme::HTTPS;
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = match https {
            true => {
                let name = ServerName::try_from(host.clone()).map_err(|_| {
                    Error::usage(format!("'{host}' is not a name a certificate can be for"))
                })?;
                Some((TlsConnector::from(tls), name))
            }
            false => None,
        };
        Ok(Self {
            scheme: target.scheme().clone(),
            host_header: HeaderValue::from_str(authority.as_str())
                .expect("an authority is a valid header value"),
            authority,
            host,
            port,
            tls,
            options,
            pool: Arc::default(),
        })
    }

    /// Sends `request` (origin-form URI, no `Host`) over a pooled connection or a new one. A
    /// request an idle connection could not take (the target closed it meanwhile) goes out
    /// again on another.
    pub async fn send(
        &self,
        mut request: Request<ProxyBody>,
    ) -> std::result::Result<Response<Pooled>, Failed> {
        loop {
            let (mut error, reused) = match self.take().await.map_err(Failed::Upstream)? {
                Taken::Http1 { mut sender, reused } => {
                    request
                        .headers_mut()
                        .insert(header::HOST, self.host_header.clone());
                    match sender.try_send_request(request).await {
                        Ok(response) => {
                            let back = Some((sender, Arc::downgrade(&self.pool)));
                            return Ok(response.map(|inner| Pooled { inner, back }));
                        }
                        Err(err) => (err, reused),
                    }
                }
                Taken::Http2 { mut sender, reused } => {
                    request.headers_mut().remove(header::HOST);
                    *request.uri_mut() = self.absolute(request.uri());
                    *request.version_mut() = Version::HTTP_2;
                    match sender.try_send_request(request).await {
                        Ok(response) => {
                            return Ok(response.map(|inner| Pooled { inner, back: None }));
                        }
                        Err(err) => (err, reused),
                    }
                }
            };
            match error.take_message() {
                Some(unsent) if reused => {
                    debug!(error = %with_causes(error.error()), "a pooled connection was closed; sending on another");
                    request = unsent;
                    *request.version_mut() = Version::HTTP_11;
                    if let Some(path) = request.uri().path_and_query().cloned() {
                        *request.uri_mut() = Uri::from(path);
                    }
                }
                _ => {
                    let error = error.into_error();
                    // The client's own body failed (cut short, malformed): not the target's doing.
                    if error.is_user() {
                        return Err(Failed::Client(with_causes(&error)));
                    }
                    return Err(Failed::Upstream(with_causes(&error)));
                }
            }
        }
    }

    /// Drops the connections unused for longer than the idle timeout.
    pub fn sweep(&self) {
        let timeout = self.options.idle_timeout;
        let mut pool = self.pool.lock().expect("pool lock");
        pool.idle
            .retain(|idle| !idle.sender.is_closed() && idle.since.elapsed() < timeout);
        if pool
            .shared
            .as_ref()
            .is_some_and(|shared| shared.sender.is_closed() || shared.since.elapsed() >= timeout)
        {
            pool.shared = None;
        }
    }

    /// How often [`Upstream::sweep`] should run.
    pub fn sweep_interval(&self) -> Duration {
        (self.options.idle_timeout / 2).max(Duration::from_millis(100))
    }

    /// A connection ready for a request: an idle one if any is still open, else a new one.
    async fn take(&self) -> std::result::Result<Taken, String> {
        loop {
            let candidate = {
                let mut pool = self.pool.lock().expect("pool lock");
                if let Some(shared) = &mut pool.shared {
                    if !shared.sender.is_closed() {
                        shared.since = Instant::now();
                        let sender = shared.sender.clone();
                        return Ok(Taken::Http2 {
                            sender,
                            reused: true,
                        });
                    }
                    pool.shared = None;
                }
                // Connections unused for too long are left to the sweep.
                std::iter::from_fn(|| pool.idle.pop())
                    .find(|idle| !idle.sender.is_closed())
                    .map(|idle| idle.sender)
            };
            let Some(mut sender) = candidate else { break };
            // Ready as soon as its connection has finished with the last response.
            if sender.ready().await.is_ok() {
                return Ok(Taken::Http1 {
                    sender,
                    reused: true,
                });
            }
        }
        // Boxed: connecting holds TLS and HTTP/2 handshakes, kilobytes every request's future
        // would otherwise carry (and copy) while taking an idle connection.
        let connect = Box::pin(self.connect());
        match tokio::time::timeout(self.options.connect_timeout, connect).await {
            Ok(connected) => connected,
            Err(_) => Err(format!(
                "cannot connect to {}:{} within {}s",
                self.host,
                self.port,
                self.options.connect_timeout.as_secs_f64()
            )),
        }
    }

    async fn connect(&self) -> std::result::Result<Taken, String> {
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|err| format!("cannot connect to {}:{}: {err}", self.host, self.port))?;
        let _ = stream.set_nodelay(true);
        let Some((connector, name)) = &self.tls else {
            return http1_over(stream).await;
        };
        let stream = connector
            .connect(name.clone(), stream)
            .await
            .map_err(|err| format!("TLS with {}: {}", self.host, with_causes(&err)))?;
        if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
            return http1_over(stream).await;
        }
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|err| format!("HTTP/2 with {}: {}", self.host, with_causes(&err)))?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                debug!(error = %with_causes(&err), "upstream HTTP/2 connection ended");
            }
        });
        self.pool.lock().expect("pool lock").shared = Some(Idle {
            sender: sender.clone(),
            since: Instant::now(),
        });
        Ok(Taken::Http2 {
            sender,
            reused: false,
        })
    }

    fn absolute(&self, uri: &Uri) -> Uri {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(
            uri.path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
        Uri::from_parts(parts).expect("scheme, authority and path make a URI")
    }
}

/// An HTTP/1.1 connection over `io`, driven by a task of its own.
async fn http1_over<T>(io: T) -> std::result::Result<Taken, String>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = http1::Builder::new()
        // One buffer per write, as on the server side.
        .writev(false)
        .handshake(TokioIo::new(io))
        .await
        .map_err(|err| format!("HTTP/1.1 handshake: {}", with_causes(&err)))?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            debug!(error = %with_causes(&err), "upstream connection ended");
        }
    });
    Ok(Taken::Http1 {
        sender,
        reused: false,
    })
}

/// A response body from the target. An HTTP/1.1 connection goes back to the idle list once
/// its response has been read to the end; one given up halfway is closed.
pub struct Pooled {
    inner: Incoming,
    back: Option<(http1::SendRequest<ProxyBody>, Weak<Mutex<Pool>>)>,
}

impl Body for Pooled {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if !self.inner.is_end_stream() {
            return;
        }
        if let Some((sender, pool)) = self.back.take()
            && let Some(pool) = pool.upgrade()
        {
            pool.lock().expect("pool lock").idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }
}

/// The system's roots (`SSL_CERT_FILE` / `SSL_CERT_DIR` replace them, as with OpenSSL), plus
/// the certificates in `extra`.
fn roots(extra: Option<&Path>) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for err in &native.errors {
        debug!(error = %err, "skipping a system certificate source");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    debug!(added, ignored, "system roots");
    if let Some(path) = extra {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|iter| iter.collect::<std::result::Result<Vec<_>, _>>())
            .map_err(|err| {
                Error::failure(format!(
                    "cannot read CA certificates from {}: {err}",
                    path.display()
                ))
            })?;
        if certs.is_empty() {
            return Err(Error::failure(format!(
                "no PEM certificates in {}",
                path.display()
            )));
        }
        for cert in certs {
            roots.add(cert).map_err(|err| {
                Error::failure(format!("bad CA certificate in {}: {err}", path.display()))
            })?;
        }
    }
    if roots.is_empty() {
        warn!(
            "no trusted root certificates found; https targets will fail (install ca-certificates or pass --ca-cert)"
        );
    }
    Ok(roots)
}
