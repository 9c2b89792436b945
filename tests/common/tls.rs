//! Certificates made at test time with rcgen, written as PEM files into a
//! directory of their own (removed when the [`Pki`] is dropped): a trusted
//! CA and its leaf for `localhost` and `127.0.0.1`, a leaf of that same CA
//! for another host name, and a second, untrusted CA with a leaf for
//! `localhost`. Nothing is checked in, so nothing expires.

use std::path::{Path, PathBuf};

use infergate::emulator::{Alpn, TlsOptions};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// The host name the good leaf's SANs hold besides `127.0.0.1`.
pub const HOST: &str = "localhost";
/// The only SAN of the wrong-host leaf.
pub const WRONG_HOST: &str = "not-this-host.example";

/// A leaf certificate (the chain, here the leaf alone) and its key.
#[derive(Clone, Debug)]
pub struct LeafFiles {
    pub chain: PathBuf,
    pub key: PathBuf,
}

impl LeafFiles {
    /// A reqwest identity of this leaf (its certificate and key), for a
    /// client that presents it.
    pub fn identity(&self) -> reqwest::Identity {
        let mut pem = std::fs::read(&self.chain).unwrap();
        pem.extend(std::fs::read(&self.key).unwrap());
        reqwest::Identity::from_pem(&pem).unwrap()
    }

    /// Emulator options serving this leaf, offering `h2` and `http/1.1`.
    pub fn options(&self) -> TlsOptions {
        TlsOptions::new(&self.chain, &self.key)
    }

    /// The same, offering only `http/1.1`.
    pub fn http1_only(&self) -> TlsOptions {
        TlsOptions {
            alpn: Alpn::Http1Only,
            ..self.options()
        }
    }
}

/// Every file a TLS test needs.
pub struct Pki {
    pub dir: PathBuf,
    /// The CA the gateway is told to trust (`tls_ca_file`).
    pub ca: PathBuf,
    /// Its PEM text, for test clients.
    pub ca_pem: String,
    /// Signed by `ca`, for `localhost` and `127.0.0.1`.
    pub leaf: LeafFiles,
    /// Signed by `ca`, for [`WRONG_HOST`] only.
    pub wrong_host: LeafFiles,
    /// A CA nobody trusts.
    pub untrusted_ca: PathBuf,
    /// Signed by `untrusted_ca`, for `localhost` and `127.0.0.1`.
    pub untrusted_leaf: LeafFiles,
    /// A client certificate (mutual TLS) signed by `ca`.
    pub client: LeafFiles,
    /// A client certificate signed by `untrusted_ca`.
    pub untrusted_client: LeafFiles,
}

impl Pki {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "infergate-tls-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();

        let ca = authority("infergate test CA");
        let ca_pem = ca.pem();
        let ca_path = write(&dir, "ca.pem", &ca_pem);
        let leaf = make_leaf(&dir, "leaf", &[HOST, "127.0.0.1"], &ca);
        let wrong_host = make_leaf(&dir, "wrong-host", &[WRONG_HOST], &ca);

        let other = authority("untrusted test CA");
        let untrusted_ca = write(&dir, "untrusted-ca.pem", &other.pem());
        let untrusted_leaf = make_leaf(&dir, "untrusted-leaf", &[HOST, "127.0.0.1"], &other);
        let client_auth = ExtendedKeyUsagePurpose::ClientAuth;
        let client = make_leaf_for(&dir, "client", &["web-app"], &ca, client_auth.clone());
        let untrusted_client =
            make_leaf_for(&dir, "untrusted-client", &["web-app"], &other, client_auth);
        Pki {
            dir,
            ca: ca_path,
            ca_pem,
            leaf,
            wrong_host,
            untrusted_ca,
            untrusted_leaf,
            client,
            untrusted_client,
        }
    }

    /// The PEM text of the untrusted CA, for clients that trust only it.
    pub fn untrusted_ca_certificate(&self) -> reqwest::Certificate {
        let pem = std::fs::read(&self.untrusted_ca).unwrap();
        reqwest::Certificate::from_pem(&pem).unwrap()
    }

    /// A reqwest certificate of the trusted CA, for clients in tests.
    pub fn ca_certificate(&self) -> reqwest::Certificate {
        reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap()
    }
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn make_leaf(
    dir: &Path,
    name: &str,
    sans: &[&str],
    ca: &CertifiedIssuer<'_, KeyPair>,
) -> LeafFiles {
    make_leaf_for(dir, name, sans, ca, ExtendedKeyUsagePurpose::ServerAuth)
}

fn make_leaf_for(
    dir: &Path,
    name: &str,
    sans: &[&str],
    ca: &CertifiedIssuer<'_, KeyPair>,
    usage: ExtendedKeyUsagePurpose,
) -> LeafFiles {
    let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(sans.clone()).unwrap();
    params.distinguished_name.push(DnType::CommonName, &sans[0]);
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    LeafFiles {
        chain: write(dir, &format!("{name}.pem"), &cert.pem()),
        key: write(dir, &format!("{name}-key.pem"), &key.serialize_pem()),
    }
}

fn write(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    path
}
