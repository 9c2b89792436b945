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

// === the listener: `[server.tls]` and `server.admin_listen` ===

/// A self-signed certificate for `localhost` and its key, as PEM files in
/// a directory of their own; the certificate doubles as a client CA.
pub(super) fn listener_files(name: &str) -> (PathBuf, PathBuf) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = pem_file(&format!("{name}-cert"), &made.cert.pem());
    let key = cert.with_file_name("key.pem");
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

fn listener(cert: &std::path::Path, key: &std::path::Path, extra: &str) -> String {
    minimal(&format!(
        "[server.tls]\ncert_file = {:?}\nkey_file = {:?}\n{extra}",
        cert.display().to_string(),
        key.display().to_string()
    ))
}

#[test]
fn server_tls_reads_both_files_and_an_optional_client_ca() {
    let (cert, key) = listener_files("ok");
    let config = parse(&listener(&cert, &key, ""));
    let tls = config.server.tls.unwrap();
    assert_eq!((tls.cert_file, tls.key_file), (cert.clone(), key.clone()));
    assert_eq!(tls.client_ca_file, None);
    let ca = format!("client_ca_file = {:?}", cert.display().to_string());
    let config = parse(&listener(&cert, &key, &ca));
    let summary = config.summary();
    assert!(
        summary.contains(&format!(
            "server: HTTPS with {}, client certificates of {} required",
            cert.display(),
            cert.display()
        )),
        "{summary}"
    );
    assert_eq!(config.server.tls.unwrap().client_ca_file, Some(cert));
}

#[test]
fn server_tls_errors_name_the_file_at_fault() {
    let (cert, key) = listener_files("bad");
    let (_, other_key) = listener_files("other");
    let missing = cert.with_file_name("missing.pem");
    let garbage = pem_file("garbage", "not pem at all");
    let cases = [
        (
            listener(&missing, &key, ""),
            "server.tls.cert_file: cannot read",
        ),
        (
            listener(&garbage, &key, ""),
            "server.tls.cert_file: holds no PEM certificate",
        ),
        (
            listener(&cert, &garbage, ""),
            "server.tls.key_file: no PEM private key",
        ),
        (
            listener(&cert, &other_key, ""),
            "server.tls.key_file: does not go with the certificate in cert_file",
        ),
        (
            listener(
                &cert,
                &key,
                &format!("client_ca_file = {:?}", garbage.display().to_string()),
            ),
            "server.tls.client_ca_file: holds no PEM certificate",
        ),
        (
            minimal(&format!(
                "[server.tls]\ncert_file = {:?}\n",
                cert.display().to_string()
            )),
            "server.tls.key_file: required in [server.tls]",
        ),
        (
            listener(&cert, &key, "reload = true"),
            "server.tls.reload: unknown key",
        ),
    ];
    for (text, expected) in cases {
        let errors = errors(&text);
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "{expected:?} not in {errors:?}"
        );
    }
}

#[test]
fn admin_listen_must_be_an_address_other_than_listen() {
    let config = parse(&minimal("[server]\nadmin_listen = \"127.0.0.1:9090\"\n"));
    assert_eq!(
        config.server.admin_listen,
        Some("127.0.0.1:9090".parse().unwrap())
    );
    for (server, expected) in [
        (
            "listen = \"127.0.0.1:8080\"\nadmin_listen = \"127.0.0.1:8080\"",
            "server.admin_listen: must differ from server.listen",
        ),
        (
            "listen = \"0.0.0.0:8080\"\nadmin_listen = \"127.0.0.1:8080\"",
            "server.admin_listen: must differ from server.listen",
        ),
        (
            "admin_listen = \"localhost:9090\"",
            "server.admin_listen: invalid socket address",
        ),
    ] {
        let errors = errors(&minimal(&format!("[server]\n{server}\n")));
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "{expected:?} not in {errors:?}"
        );
    }
    // Another port, or another address on the same port, is fine.
    parse(&minimal(
        "[server]\nlisten = \"127.0.0.1:8080\"\nadmin_listen = \"127.0.0.2:8080\"\n",
    ));
}

#[test]
fn keys_required_off_loopback_without_tls_is_a_warning() {
    let clients = "[clients.a]\napi_key = \"k\"\n";
    let config = parse(&minimal(&format!(
        "[server]\nlisten = \"0.0.0.0:8080\"\n{clients}"
    )));
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.starts_with("server.tls: clients' keys cross the network in clear")),
        "{:?}",
        config.warnings
    );
    let (cert, key) = listener_files("warn");
    let text = listener(&cert, &key, "").replace(
        "[server.tls]",
        &format!("{clients}[server]\nlisten = \"0.0.0.0:8080\"\n[server.tls]"),
    );
    let config = parse(&text);
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}
