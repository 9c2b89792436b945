//! The test side alone, against reqwest: the emulators in HTTPS mode (ALPN,
//! SNI, refused handshakes, the same answers as in plain mode, the CLI
//! flags) and the forward proxy (CONNECT, absolute form, 407).

use std::collections::BTreeSet;
use std::process::Command;

use crate::common::child::{Running, Stream, BIN};
use crate::common::model::expected_sse;
use crate::common::proxy::{base64, Proxy};
use crate::common::tls::{Pki, HOST};
use crate::common::{hf_options, wait_for, HF_TOKEN};
use crate::support::{hf_https, localhost, loopback};
use http::Version;
use infergate::emulator::{self, EmulatorHandle};

const BODY: &str = r#"{"inputs": "one stable inference URL", "parameters": {"max_new_tokens": 8}}"#;

/// A client trusting the test CA, sending `localhost` to 127.0.0.1 only.
fn trusting(pki: &Pki, emu: &EmulatorHandle) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(pki.ca_certificate())
        .resolve(HOST, emu.addr())
}

async fn generate(client: &reqwest::Client, base: &str) -> reqwest::Response {
    client
        .post(format!("{base}/generate"))
        .bearer_auth(HF_TOKEN)
        .header("content-type", "application/json")
        .body(BODY)
        .send()
        .await
        .unwrap()
}

/// Header names of an answer, without the ones that vary per answer.
fn header_names(res: &reqwest::Response) -> BTreeSet<String> {
    res.headers()
        .keys()
        .map(|k| k.as_str().to_string())
        .filter(|k| k != "date")
        .collect()
}

#[tokio::test]
async fn https_emulator_offers_h2_and_records_version_and_sni() {
    let pki = Pki::new();
    let emu = hf_https(pki.leaf.options()).await;
    assert!(emu.is_tls());
    assert!(emu.url().starts_with("https://127.0.0.1:"), "{}", emu.url());
    let client = trusting(&pki, &emu).build().unwrap();
    let res = generate(&client, &localhost(&emu)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), Version::HTTP_2);
    let names = header_names(&res);
    let body = res.text().await.unwrap();

    let seen = emu.counters().last().unwrap();
    assert_eq!(seen.version, Version::HTTP_2);
    assert_eq!(seen.server_name.as_deref(), Some(HOST));
    let c = emu.connections();
    assert_eq!(
        (c.accepted(), c.handshakes(), c.handshake_failures()),
        (1, 1, 0)
    );
    let session = &c.sessions()[0];
    assert_eq!(session.server_name.as_deref(), Some(HOST));
    assert_eq!(session.alpn.as_deref(), Some("h2"));

    // The same answer, head and body, as the plain emulator gives over h2c.
    let plain = emulator::huggingface::start(loopback(), hf_options())
        .await
        .unwrap();
    let h2c = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let res = generate(&h2c, &plain.url()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(header_names(&res), names, "no header for TLS on the wire");
    assert_eq!(res.text().await.unwrap(), body);
    let seen = plain.counters().last().unwrap();
    assert_eq!((seen.version, seen.server_name), (Version::HTTP_2, None));
    assert!(!plain.is_tls());
    assert_eq!(plain.connections().handshakes(), 0);
}

#[tokio::test]
async fn http1_only_emulator_is_spoken_to_in_http1() {
    let pki = Pki::new();
    let emu = hf_https(pki.leaf.http1_only()).await;
    let client = trusting(&pki, &emu).build().unwrap();
    let res = generate(&client, &localhost(&emu)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), Version::HTTP_11);
    assert_eq!(emu.counters().last().unwrap().version, Version::HTTP_11);
    assert_eq!(
        emu.connections().sessions()[0].alpn.as_deref(),
        Some("http/1.1")
    );
    // A stream over TLS: the whole SSE body.
    let res = client
        .post(format!("{}/generate_stream", localhost(&emu)))
        .bearer_auth(HF_TOKEN)
        .header("content-type", "application/json")
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.text().await.unwrap(),
        expected_sse("one stable inference URL", Some(8))
    );
}

#[tokio::test]
async fn an_ip_address_url_sends_no_sni() {
    let pki = Pki::new();
    let emu = hf_https(pki.leaf.options()).await;
    let client = trusting(&pki, &emu).build().unwrap();
    assert_eq!(generate(&client, &emu.url()).await.status(), 200);
    assert_eq!(emu.counters().last().unwrap().server_name, None);
}

#[tokio::test]
async fn a_client_refusing_the_certificate_is_a_failed_handshake() {
    let pki = Pki::new();
    for leaf in [&pki.untrusted_leaf, &pki.wrong_host] {
        let emu = hf_https(leaf.options()).await;
        let client = trusting(&pki, &emu).build().unwrap();
        let err = client
            .post(format!("{}/generate", localhost(&emu)))
            .body(BODY)
            .send()
            .await
            .unwrap_err();
        assert!(err.is_connect(), "{err:?}");
        let c = emu.connections();
        wait_for("the failed handshake", || c.handshake_failures() == 1).await;
        assert_eq!((c.accepted(), c.handshakes()), (1, 0));
        assert!(c.last_failure().is_some());
        assert_eq!(emu.counters().requests(), 0);
    }
}

#[tokio::test]
async fn missing_certificate_files_fail_the_start() {
    let pki = Pki::new();
    let mut tls = pki.leaf.options();
    tls.private_key = pki.dir.join("no-such-key.pem");
    let err = emulator::huggingface::start(
        loopback(),
        emulator::HuggingFaceOptions {
            tls: Some(tls),
            ..hf_options()
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("no-such-key.pem"), "{err}");
}

#[tokio::test]
async fn emulate_command_serves_https_with_the_flags() {
    let pki = Pki::new();
    let mut cmd = Command::new(BIN);
    cmd.args(["emulate", "huggingface", "--listen", "127.0.0.1:0"])
        .arg("--tls-cert")
        .arg(&pki.leaf.chain)
        .arg("--tls-key")
        .arg(&pki.leaf.key)
        .args(["--tls-alpn", "http1-only"])
        .env_remove("HF_TOKEN");
    let mut child = Running::spawn(cmd, Stream::Stdout);
    let line = child.wait_for_line("listening on ");
    let url = line.rsplit(' ').next().unwrap().to_string();
    let addr: std::net::SocketAddr = url.strip_prefix("https://").unwrap().parse().unwrap();
    let client = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(pki.ca_certificate())
        .resolve(HOST, addr)
        .build()
        .unwrap();
    let res = client
        .get(format!("https://{HOST}:{}/info", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), Version::HTTP_11);
    child.stop();
}

// === the proxy ===

#[tokio::test]
async fn proxy_tunnels_connect_with_its_credentials() {
    let pki = Pki::new();
    let emu = hf_https(pki.leaf.options()).await;
    let proxy = Proxy::with_credentials("user", "pass").await;
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(proxy.url(Some(("user", "pass")))).unwrap())
        .add_root_certificate(pki.ca_certificate())
        .build()
        .unwrap();
    let res = generate(&client, &localhost(&emu)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(proxy.connects(), 1);
    let seen = &proxy.seen()[0];
    assert_eq!(seen.method, "CONNECT");
    assert_eq!(seen.authority, format!("{HOST}:{}", emu.addr().port()));
    assert_eq!(
        seen.proxy_authorization.as_deref(),
        Some(format!("Basic {}", base64("user:pass")).as_str())
    );
    // TLS was end to end: the emulator saw the SNI through the tunnel.
    assert_eq!(
        emu.counters().last().unwrap().server_name.as_deref(),
        Some(HOST)
    );

    // Wrong credentials: 407, and no tunnel.
    let wrong = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(proxy.url(Some(("user", "nope")))).unwrap())
        .add_root_certificate(pki.ca_certificate())
        .build()
        .unwrap();
    let err = wrong
        .post(format!("{}/generate", localhost(&emu)))
        .body(BODY)
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert_eq!((proxy.connects(), proxy.refused()), (1, 1));
    assert_eq!(emu.connections().accepted(), 1);
}

#[tokio::test]
async fn proxy_forwards_absolute_form_and_streams_the_answer() {
    let emu = emulator::huggingface::start(loopback(), hf_options())
        .await
        .unwrap();
    let proxy = Proxy::with_credentials("user", "pass").await;
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(proxy.url(Some(("user", "pass")))).unwrap())
        .build()
        .unwrap();
    assert_eq!(generate(&client, &emu.url()).await.status(), 200);
    // A second request on the kept-alive proxy connection, streamed back.
    let res = client
        .post(format!("{}/generate_stream", emu.url()))
        .bearer_auth(HF_TOKEN)
        .header("content-type", "application/json")
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.text().await.unwrap(),
        expected_sse("one stable inference URL", Some(8))
    );
    assert_eq!((proxy.forwarded(), proxy.connects()), (2, 0));
    let seen = proxy.seen();
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].target, format!("{}/generate", emu.url()));
    assert_eq!(seen[1].target, format!("{}/generate_stream", emu.url()));
    // The origin got origin form, without the proxy's credentials.
    let last = emu.counters().last().unwrap();
    assert_eq!(last.path, "/generate_stream");
    assert!(last.headers.get("proxy-authorization").is_none());

    // Without credentials: the proxy's own 407.
    let anonymous = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(proxy.url(None)).unwrap())
        .build()
        .unwrap();
    let res = generate(&anonymous, &emu.url()).await;
    assert_eq!(res.status(), 407);
    assert_eq!(proxy.refused(), 1);
    assert_eq!(emu.counters().requests(), 2);
}
