//! The emulators' HTTPS mode: a certificate chain and its private key, both
//! PEM files, served with rustls (aws-lc-rs, as the rest of the tree), so the
//! gateway's upstream TLS — trust roots, host-name checks, ALPN, proxies'
//! CONNECT tunnels — is tested against a real handshake, as real SageMaker
//! and Hugging Face endpoints are reached.
//!
//! ALPN offers `h2` and `http/1.1` by default, or only `http/1.1`
//! ([`Alpn::Http1Only`]); the serve loop (`serve.rs`) then speaks the
//! protocol that was negotiated. What each handshake gave (SNI, ALPN) is
//! recorded in [`Connections`](super::Connections) and on every
//! [`RecordedRequest`](super::RecordedRequest), never on the wire.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

use crate::config::tls::{alpn_h2_and_http1, ListenerPem};

/// Which application protocols the emulator offers by ALPN.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Alpn {
    /// `h2` first, then `http/1.1`: what the real endpoints' load balancers offer.
    #[default]
    H2AndHttp1,
    /// Only `http/1.1`, to see a client fall back.
    Http1Only,
}

impl Alpn {
    fn protocols(self) -> Vec<Vec<u8>> {
        match self {
            Alpn::H2AndHttp1 => alpn_h2_and_http1(),
            Alpn::Http1Only => vec![b"http/1.1".to_vec()],
        }
    }
}

/// Serve HTTPS instead of plain HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file: the leaf certificate first, then any intermediates.
    pub cert_chain: PathBuf,
    /// PEM file: the leaf's private key (PKCS#8, PKCS#1 or SEC1).
    pub private_key: PathBuf,
    pub alpn: Alpn,
}

impl TlsOptions {
    /// These files, offering `h2` and `http/1.1`.
    pub fn new(cert_chain: impl Into<PathBuf>, private_key: impl Into<PathBuf>) -> Self {
        TlsOptions {
            cert_chain: cert_chain.into(),
            private_key: private_key.into(),
            alpn: Alpn::default(),
        }
    }
}

/// How the connection's HTTP is to be read: from ALPN when TLS negotiated
/// one, else by the client's first bytes (HTTP/1.1 or h2 prior knowledge).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    Auto,
    Http1,
    Http2,
}

/// What a TLS handshake gave, as the serve loop passes it on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Negotiated {
    pub server_name: Option<String>,
    pub alpn: Option<String>,
}

impl Negotiated {
    pub(crate) fn protocol(&self) -> Protocol {
        match self.alpn.as_deref() {
            Some("h2") => Protocol::Http2,
            Some("http/1.1") => Protocol::Http1,
            _ => Protocol::Auto,
        }
    }

    pub(crate) fn of(conn: &rustls::ServerConnection) -> Self {
        Negotiated {
            server_name: conn.server_name().map(str::to_owned),
            alpn: conn
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
        }
    }
}

/// The acceptor for these options; an unreadable or mismatched file is an
/// `InvalidInput` error naming it, at start rather than at the first client.
pub(crate) fn acceptor(opts: &TlsOptions) -> io::Result<TlsAcceptor> {
    let pem = ListenerPem::new(read(&opts.cert_chain)?, read(&opts.private_key)?);
    let config = pem.server_config(opts.alpn.protocols()).map_err(|e| {
        let file = match e.key {
            "key_file" => &opts.private_key,
            _ => &opts.cert_chain,
        };
        invalid(format!("{}: {}", file.display(), e.why))
    })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn read(path: &Path) -> io::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

fn invalid(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_empty_files_are_named() {
        let dir = std::env::temp_dir().join(format!("infergate-tls-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let err = acceptor(&TlsOptions::new(dir.join("nope.pem"), &empty))
            .err()
            .unwrap();
        assert!(err.to_string().contains("nope.pem"), "{err}");
        let err = acceptor(&TlsOptions::new(&empty, &empty)).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn alpn_follows_the_option() {
        assert_eq!(
            Alpn::default().protocols(),
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert_eq!(Alpn::Http1Only.protocols(), [b"http/1.1".to_vec()]);
        let h2 = Negotiated {
            server_name: None,
            alpn: Some("h2".into()),
        };
        assert_eq!(h2.protocol(), Protocol::Http2);
        assert_eq!(Negotiated::default().protocol(), Protocol::Auto);
    }
}
