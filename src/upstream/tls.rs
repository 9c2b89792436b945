//! The TLS settings of upstream connections: which roots are trusted, and
//! which protocols are offered by ALPN.
//!
//! Every connection trusts the system's roots (rustls-native-certs) plus
//! `upstream.tls_ca_file`; a backend's own `tls_ca_file` takes the place of
//! the shared one for that backend's host. ALPN offers `h2` then
//! `http/1.1`, so an endpoint that speaks HTTP/2 gets it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use crate::config::tls::read_ca_certificates;

/// The client TLS configs, by the `host:port` they are for.
#[derive(Debug, Clone)]
pub(crate) struct TlsConfigs {
    /// The system's roots, read once.
    system: Vec<CertificateDer<'static>>,
    shared: Arc<ClientConfig>,
    by_authority: HashMap<String, Arc<ClientConfig>>,
}

/// A CA file that cannot be used: why, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CaFileError(String);

impl TlsConfigs {
    /// The shared config: the system's roots and, when given, `ca_file`'s.
    pub(crate) fn new(ca_file: Option<&Path>) -> Result<Self, CaFileError> {
        // Unreadable system certificates are skipped, as every TLS client
        // does; a host with none still trusts the CA file.
        let system = rustls_native_certs::load_native_certs().certs;
        if system.is_empty() && ca_file.is_none() {
            tracing::warn!(
                "no CA certificates found on this system and no upstream.tls_ca_file: \
                 every https backend will be refused (install ca-certificates or set \
                 SSL_CERT_FILE)"
            );
        }
        Ok(Self {
            shared: client_config(&system, ca_file)?,
            system,
            by_authority: HashMap::new(),
        })
    }

    /// Trusts `ca_file` (and the system's roots) for `authority` instead of
    /// the shared set.
    pub(crate) fn add(&mut self, authority: String, ca_file: &Path) -> Result<(), CaFileError> {
        let config = client_config(&self.system, Some(ca_file))?;
        self.by_authority.insert(authority, config);
        Ok(())
    }

    /// The config for a connection to `authority` (`host:port`).
    pub(crate) fn for_authority(&self, authority: &str) -> Arc<ClientConfig> {
        Arc::clone(self.by_authority.get(authority).unwrap_or(&self.shared))
    }
}

fn client_config(
    system: &[CertificateDer<'static>],
    ca_file: Option<&Path>,
) -> Result<Arc<ClientConfig>, CaFileError> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(system.iter().cloned());
    if let Some(path) = ca_file {
        for cert in read_ca_certificates(path).map_err(CaFileError)? {
            roots.add(cert).map_err(|e| {
                CaFileError(format!(
                    "{}: not a usable CA certificate: {e}",
                    path.display()
                ))
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| CaFileError(format!("no TLS protocol version available: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
