//! The client side: one pooled client to the target, HTTP/2 when the target offers it by ALPN,
//! rustls with the system's roots plus any the user adds.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tracing::{debug, warn};

use super::body::ProxyBody;
use crate::error::{Error, Result};

pub type Upstream = Client<HttpsConnector<HttpConnector>, ProxyBody>;

#[derive(Debug, Clone)]
pub struct Options {
    /// Extra trusted roots (PEM), on top of the system's (or `SSL_CERT_FILE`'s).
    pub ca_cert: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// How long an unused pooled connection is kept.
    pub idle_timeout: Duration,
}

/// The TLS settings every worker's client shares: loaded (roots read) once.
pub fn tls(options: &Options) -> Result<rustls::ClientConfig> {
    let roots = roots(options.ca_cert.as_deref())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| Error::failure(format!("cannot set up TLS: {err}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A pooled client; its connections are driven on the runtime that first uses it.
pub fn client(tls: rustls::ClientConfig, options: &Options) -> Upstream {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(options.connect_timeout));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(tcp);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(options.idle_timeout)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector)
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
            .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
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
