//! `tls_ca_file`, in `[upstream]` and per backend: read and checked with
//! the config, errors named by key, and the upstream client refusing a file
//! whose certificates rustls cannot use.

use std::path::PathBuf;

use super::*;

/// A new file holding `body`, in a directory of its own (each call its
/// own, as tests run side by side).
pub(super) fn pem_file(name: &str, body: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("infergate-ca-{}-{name}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ca.pem");
    std::fs::write(&path, body).unwrap();
    path
}

/// A PEM block whose DER is no certificate: the config (which reads PEM)
/// takes it, rustls does not.
pub(super) const PEM_BLOCK: &str =
    "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n";

/// The minimal config with `upstream` in `[upstream]` and `hf` in the HF
/// backend's table.
fn config_with(upstream: &str, hf: &str) -> String {
    format!("{SM}{HF}{hf}\n{ROUTE}\n[upstream]\n{upstream}\n")
}

fn key(path: &std::path::Path) -> String {
    format!("tls_ca_file = {:?}", path.display().to_string())
}

#[test]
fn a_ca_file_is_read_and_named_in_the_summary() {
    let path = pem_file("ok", PEM_BLOCK);
    let config = parse(&config_with(&key(&path), ""));
    assert_eq!(config.upstream.tls_ca_file.as_deref(), Some(path.as_path()));
    let summary = config.summary();
    assert!(summary.contains("also trusts the CAs of"), "{summary}");
    // The client refuses DER that is no certificate, naming the key.
    let err = crate::upstream::Egress::new(&config)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("upstream.tls_ca_file: "), "{err}");
    assert!(err.contains("not a usable CA certificate"), "{err}");
    // A backend's own file, likewise.
    let config = parse(&config_with("", &key(&path)));
    assert_eq!(config.upstream.tls_ca_file, None);
    assert_eq!(
        config.backend("hf-flan").unwrap().tls_ca_file.as_deref(),
        Some(path.as_path())
    );
    let err = crate::upstream::Egress::new(&config)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("backends.hf-flan.tls_ca_file: "), "{err}");
}

#[test]
fn missing_or_empty_files_are_errors_named_by_key() {
    let missing = std::path::Path::new("/nonexistent/ca.pem");
    let errs = errors(&config_with(&key(missing), ""));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("upstream.tls_ca_file: cannot read /nonexistent/ca.pem: "),
        "{errs:?}"
    );
    let empty = pem_file("empty", "no PEM here\n");
    let errs = errors(&config_with("", &key(&empty)));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("backends.hf-flan.tls_ca_file: ")
            && errs[0].ends_with("holds no PEM certificate"),
        "{errs:?}"
    );
}
