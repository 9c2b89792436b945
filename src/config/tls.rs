//! `tls_ca_file` (in `[upstream]` and in a backend): a PEM file of CA
//! certificates to trust for upstream TLS. It is read when the config is
//! checked, so a missing or malformed file stops the gateway at start with
//! the key that names it.

use std::path::{Path, PathBuf};

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;

use super::diag::Diagnostics;

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
