//! TLS files, both ways, read when the config is checked, so a missing or
//! malformed file stops the gateway at start with the key that names it:
//!
//! - `tls_ca_file` (in `[upstream]` and in a backend): a PEM file of CA
//!   certificates to trust for upstream TLS;
//! - `[server.tls]`: the listener's certificate and key, and the CAs of
//!   client certificates for mutual TLS ([`ListenerPem`], also what
//!   `crate::server` re-reads when the files change).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

use super::diag::{key_path, Diagnostics};
use super::raw::RawServerTls;
use super::ListenerTls;

/// The path at `key`, when set and it holds at least one PEM certificate.
pub(super) fn ca_file(raw: Option<String>, key: &str, diag: &mut Diagnostics) -> Option<PathBuf> {
    let raw = raw?;
    let path = PathBuf::from(&raw);
    match read_ca_certificates(&path) {
        Ok(_) => Some(path),
        Err(why) => {
            diag.error(key, why);
            None
        }
    }
}

/// The certificates of a PEM file: at least one, or why not.
pub fn read_ca_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{shown} is not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{shown} holds no PEM certificate"));
    }
    Ok(certs)
}

// === the listener: `[server.tls]` and `server.admin_listen` ===

/// `server.admin_listen`: an address other than `listen`'s.
pub(super) fn admin_listen(
    raw: Option<String>,
    listen: SocketAddr,
    diag: &mut Diagnostics,
) -> Option<SocketAddr> {
    let key = "server.admin_listen";
    let addr = super::validate::socket_address(&raw?, key, diag)?;
    if addr.port() != 0 && addr.port() == listen.port() && overlap(addr.ip(), listen.ip()) {
        diag.error(key, format!("must differ from server.listen ({listen})"));
        return None;
    }
    Some(addr)
}

/// Whether two listening addresses can collide on one port.
fn overlap(a: IpAddr, b: IpAddr) -> bool {
    a == b || a.is_unspecified() || b.is_unspecified()
}

/// `[server.tls]`: both files given, readable and matching, the client CA
/// file too when given. Each error names the key of the file at fault.
pub(super) fn listener_tls(raw: RawServerTls, diag: &mut Diagnostics) -> Option<ListenerTls> {
    let p = |key: &str| key_path("server.tls", key);
    let required = |value: Option<String>, key: &str, diag: &mut Diagnostics| {
        if value.is_none() {
            diag.error(&p(key), "required in [server.tls]");
        }
        value.map(PathBuf::from)
    };
    let cert_file = required(raw.cert_file, "cert_file", diag);
    let key_file = required(raw.key_file, "key_file", diag);
    let tls = ListenerTls {
        cert_file: cert_file?,
        key_file: key_file?,
        client_ca_file: raw.client_ca_file.map(PathBuf::from),
    };
    match ListenerPem::read(&tls).and_then(|pem| pem.server_config(alpn_h2_and_http1())) {
        Ok(_) => Some(tls),
        Err(TlsFileError { key, why }) => {
            diag.error(&p(key), why);
            None
        }
    }
}

/// What is wrong with one of the listener's TLS files, and the key that
/// names it (`cert_file`, `key_file` or `client_ca_file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFileError {
    pub key: &'static str,
    pub why: String,
}

impl std::fmt::Display for TlsFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "server.tls.{}: {}", self.key, self.why)
    }
}

/// ALPN of a server that speaks both: `h2` first, then `http/1.1`.
pub fn alpn_h2_and_http1() -> Vec<Vec<u8>> {
    vec![b"h2".to_vec(), b"http/1.1".to_vec()]
}

/// The contents of a listener's TLS files, as read at one moment: what a
/// reload compares with what it read before. Its `Debug` shows sizes, never
/// the private key.
#[derive(Clone, PartialEq, Eq)]
pub struct ListenerPem {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for ListenerPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerPem")
            .field("cert_bytes", &self.cert.len())
            .field("key", &"***")
            .field("client_ca_bytes", &self.client_ca.as_ref().map(Vec::len))
            .finish()
    }
}

impl ListenerPem {
    /// Reads every file `tls` names.
    pub fn read(tls: &ListenerTls) -> Result<Self, TlsFileError> {
        let read = |path: &Path, key: &'static str| {
            std::fs::read(path).map_err(|e| TlsFileError {
                key,
                why: format!("cannot read {}: {e}", path.display()),
            })
        };
        Ok(Self {
            cert: read(&tls.cert_file, "cert_file")?,
            key: read(&tls.key_file, "key_file")?,
            client_ca: match &tls.client_ca_file {
                Some(path) => Some(read(path, "client_ca_file")?),
                None => None,
            },
        })
    }

    /// A certificate chain and key given as PEM text, no client CA.
    pub fn new(cert: Vec<u8>, key: Vec<u8>) -> Self {
        Self {
            cert,
            key,
            client_ca: None,
        }
    }

    /// The rustls server config of these files (aws-lc-rs, TLS 1.2 and 1.3,
    /// these ALPN protocols): the key must match the leaf, and with a client
    /// CA every client must present a certificate it signed.
    pub fn server_config(&self, alpn: Vec<Vec<u8>>) -> Result<ServerConfig, TlsFileError> {
        let fail = |key: &'static str, why: String| TlsFileError { key, why };
        let certs = CertificateDer::pem_slice_iter(&self.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail("cert_file", format!("not a PEM certificate file: {e}")))?;
        if certs.is_empty() {
            return Err(fail("cert_file", "holds no PEM certificate".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(&self.key)
            .map_err(|e| fail("key_file", format!("no PEM private key: {e}")))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| fail("cert_file", e.to_string()))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(pem) => builder.with_client_cert_verifier(client_verifier(pem, provider)?),
        };
        let mut config = builder.with_single_cert(certs, key).map_err(|e| {
            fail(
                "key_file",
                format!("does not go with the certificate in cert_file: {e}"),
            )
        })?;
        config.alpn_protocols = alpn;
        Ok(config)
    }
}

/// Requires a client certificate signed by one of the CAs in `pem`.
fn client_verifier(
    pem: &[u8],
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsFileError> {
    let fail = |why: String| TlsFileError {
        key: "client_ca_file",
        why,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| fail(format!("not a PEM certificate file: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| fail(format!("not a CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(fail("holds no PEM certificate".into()));
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| fail(e.to_string()))
}
