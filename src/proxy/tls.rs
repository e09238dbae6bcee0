//! TLS on the proxy's own listener, for clients on other machines: the certificate and key are
//! read at start-up and again on SIGHUP, so a renewed certificate needs no restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::error::{Error, Result};

pub struct ListenerTls {
    cert: PathBuf,
    key: PathBuf,
    config: ArcSwap<ServerConfig>,
}

impl ListenerTls {
    pub fn open(cert: &Path, key: &Path) -> Result<Self> {
        Ok(Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            config: ArcSwap::new(load(cert, key)?),
        })
    }

    /// Re-reads the certificate and key; on failure the ones in use stay.
    pub fn reload(&self) -> Result<()> {
        self.config.store(load(&self.cert, &self.key)?);
        Ok(())
    }

    /// An acceptor with the certificate in use now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.load_full())
    }
}

fn load(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|err| {
            Error::failure(format!(
                "cannot read the certificate from {}: {err}",
                cert.display()
            ))
        })?;
    if chain.is_empty() {
        return Err(Error::failure(format!(
            "{} holds no PEM certificate",
            cert.display()
        )));
    }
    // The key is a secret: its file must be the user's own and private, as tokenkeeper's are.
    crate::perms::check_private(key, false)?;
    let private = PrivateKeyDer::from_pem_file(key).map_err(|err| {
        Error::failure(format!(
            "cannot read the private key from {}: {err}",
            key.display()
        ))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| Error::failure(format!("cannot set up TLS: {err}")))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|err| {
            Error::failure(format!(
                "the certificate in {} and the key in {} do not make a TLS identity: {err}",
                cert.display(),
                key.display()
            ))
        })?;
    // The proxy speaks HTTP/1.1 to its clients, as over plain HTTP.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
