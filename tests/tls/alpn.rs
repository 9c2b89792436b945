//! What the gateway's connection to an HTTPS backend negotiated, as the
//! emulator saw it: HTTP/2 when `h2` is offered by ALPN, HTTP/1.1 when only
//! `http/1.1` is, and SNI the URL's host name. These need the gateway's
//! rustls client.

use crate::common::tls::{Pki, HOST};
use crate::common::BODY;
use crate::support::{
    ca_line, hf_config, hf_https, localhost, predict, serve, sm_config, sm_https,
};
use http::Version;
use infergate::emulator::{EmulatorHandle, TlsOptions};

/// Two requests to `route`: the version each came in, and the handshakes.
async fn versions(emu: &EmulatorHandle, config: String, route: &str) -> Vec<Version> {
    let gw = serve(&config).await;
    for _ in 0..2 {
        let res = predict(&gw.base, route, BODY).await;
        assert_eq!(res.status(), 200);
        let _ = res.bytes().await.unwrap();
    }
    gw.stop().await;
    let seen = emu.counters().recent();
    assert!(seen.iter().all(|r| r.server_name.as_deref() == Some(HOST)));
    let sessions = emu.connections().sessions();
    assert!(!sessions.is_empty());
    assert!(sessions
        .iter()
        .all(|s| s.server_name.as_deref() == Some(HOST)));
    seen.iter().map(|r| r.version).collect()
}

async fn hf(pki: &Pki, tls: TlsOptions) -> (EmulatorHandle, String) {
    let emu = hf_https(tls).await;
    let config = hf_config(&localhost(&emu), &ca_line(&pki.ca), "");
    (emu, config)
}

#[tokio::test]
async fn http2_when_the_backend_offers_h2() {
    let pki = Pki::new();
    let (emu, config) = hf(&pki, pki.leaf.options()).await;
    assert_eq!(versions(&emu, config, "hf").await, [Version::HTTP_2; 2]);
    assert!(emu
        .connections()
        .sessions()
        .iter()
        .all(|s| s.alpn.as_deref() == Some("h2")));
}

#[tokio::test]
async fn http1_when_the_backend_offers_only_http1() {
    let pki = Pki::new();
    let (emu, config) = hf(&pki, pki.leaf.http1_only()).await;
    assert_eq!(versions(&emu, config, "hf").await, [Version::HTTP_11; 2]);
    assert!(emu
        .connections()
        .sessions()
        .iter()
        .all(|s| s.alpn.as_deref() == Some("http/1.1")));
}

#[tokio::test]
async fn sagemaker_alike_in_both_versions() {
    for (h2, want) in [(true, Version::HTTP_2), (false, Version::HTTP_11)] {
        let pki = Pki::new();
        let tls = if h2 {
            pki.leaf.options()
        } else {
            pki.leaf.http1_only()
        };
        let emu = sm_https(tls).await;
        let config = sm_config(&localhost(&emu), "", &ca_line(&pki.ca));
        assert_eq!(versions(&emu, config, "sm").await, [want; 2]);
        assert_eq!(
            emu.counters().auth_rejections(),
            0,
            "signed host over {want:?}"
        );
    }
}

/// HTTP/2 is one connection per endpoint and worker, shared: requests at
/// once and one after another, through one worker, open one connection;
/// over HTTP/1.1 the same requests at once open one each; with
/// `pool_max_idle_per_host = 0` nothing is pooled, HTTP/2 included.
#[tokio::test]
async fn an_h2_connection_is_shared_by_requests_at_once() {
    for (h2, pooled, most) in [(true, true, 1), (false, true, 8), (true, false, 9)] {
        let pki = Pki::new();
        let tls = if h2 {
            pki.leaf.options()
        } else {
            pki.leaf.http1_only()
        };
        let (emu, config) = hf(&pki, tls).await;
        let mut config = config.replacen("[server]\n", "[server]\nworkers = 1\n", 1);
        if !pooled {
            config = config.replacen(
                "[upstream]\n",
                "[upstream]\npool_max_idle_per_host = 0\n",
                1,
            );
        }
        let gw = serve(&config).await;
        let res = predict(&gw.base, "hf", BODY).await;
        assert_eq!(res.status(), 200);
        let _ = res.bytes().await.unwrap();
        let at_once = (0..8).map(|_| async {
            let res = predict(&gw.base, "hf", BODY).await;
            assert_eq!(res.status(), 200);
            res.bytes().await.unwrap()
        });
        futures_util::future::join_all(at_once).await;
        gw.stop().await;
        let sessions = emu.connections().sessions().len();
        if h2 {
            assert_eq!(
                sessions, most,
                "HTTP/2, pooled {pooled}: {sessions} connections"
            );
        } else {
            assert!(
                (2..=most + 1).contains(&sessions),
                "HTTP/1.1: {sessions} connections"
            );
        }
    }
}
