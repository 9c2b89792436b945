//! A gateway process whose environment names a proxy (`HTTPS_PROXY`,
//! `HTTP_PROXY`, `NO_PROXY`), in front of an HTTPS emulator reached through
//! a CONNECT tunnel and a plain one reached in absolute form; refused
//! proxy credentials and a proxy that is down are `upstream_unreachable`,
//! and the proxy's password shows nowhere. These need the gateway's new
//! client (proxies from the environment).

use crate::common::net::free_port;
use crate::common::proxy::{base64, Proxy};
use crate::common::tls::{Pki, HOST};
use crate::common::{hf_options, BODY};
use crate::support::{
    ca_line, hf_config, hf_https, localhost, loopback, predict, ChildGateway, DEBUG_LOG,
};
use infergate::emulator;
use serde_json::Value;

const USER: &str = "proxy-user";
const PASSWORD: &str = "proxy-pass-canary-5e1d";

fn basic() -> String {
    format!("Basic {}", base64(&format!("{USER}:{PASSWORD}")))
}

#[tokio::test]
async fn https_goes_through_a_connect_tunnel() {
    let pki = Pki::new();
    let emu = hf_https(pki.leaf.options()).await;
    let proxy = Proxy::with_credentials(USER, PASSWORD).await;
    let config = hf_config(&localhost(&emu), &ca_line(&pki.ca), "");
    let proxy_url = proxy.url(Some((USER, PASSWORD)));
    let gw = ChildGateway::start(&config, &[DEBUG_LOG, ("HTTPS_PROXY", &proxy_url)]);

    for _ in 0..2 {
        let res = predict(&gw.base, "hf", BODY).await;
        assert_eq!(res.status(), 200);
        let _ = res.bytes().await.unwrap();
    }
    assert!(proxy.connects() >= 1);
    let authority = format!("{HOST}:{}", emu.addr().port());
    for seen in proxy.seen() {
        assert_eq!(seen.method, "CONNECT");
        assert_eq!(seen.authority, authority);
        assert_eq!(seen.proxy_authorization, Some(basic()));
    }
    // TLS end to end: the emulator, not the proxy, answered the handshake.
    assert_eq!(emu.connections().accepted(), proxy.connects());
    assert_eq!(
        emu.counters().last().unwrap().server_name.as_deref(),
        Some(HOST)
    );
    let log = gw.stop();
    assert!(
        !log.contains(PASSWORD),
        "the password is in the log:\n{log}"
    );
}

/// One request through a proxy that will not carry it: the error, checked
/// for the proxy's name and the password's absence, with the gateway's log.
async fn refused_by_proxy(proxy_url: &str, proxy_addr: &str) {
    let pki = Pki::new();
    let emu = hf_https(pki.leaf.options()).await;
    let config = hf_config(&localhost(&emu), &ca_line(&pki.ca), "");
    let gw = ChildGateway::start(&config, &[DEBUG_LOG, ("HTTPS_PROXY", proxy_url)]);
    let res = predict(&gw.base, "hf", BODY).await;
    assert_eq!(res.status(), 502);
    let text = res.text().await.unwrap();
    let log = gw.stop();
    let e: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(e["error"]["type"], "upstream_unreachable", "{text}");
    let message = e["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("proxy") && message.contains(proxy_addr),
        "the message names the proxy: {message}"
    );
    for secret in [PASSWORD, "wrong-pass-canary-77a0"] {
        assert!(!text.contains(secret), "a password in the answer: {text}");
        assert!(!log.contains(secret), "a password in the log:\n{log}");
    }
    assert_eq!(emu.connections().accepted(), 0);
}

#[tokio::test]
async fn wrong_or_missing_proxy_credentials_are_unreachable() {
    let proxy = Proxy::with_credentials(USER, PASSWORD).await;
    let addr = proxy.addr().to_string();
    refused_by_proxy(&proxy.url(Some((USER, "wrong-pass-canary-77a0"))), &addr).await;
    refused_by_proxy(&proxy.url(None), &addr).await;
    assert!(proxy.refused() >= 2);
    assert_eq!(proxy.connects(), 0);
}

#[tokio::test]
async fn a_proxy_that_is_down_is_unreachable() {
    let addr = format!("127.0.0.1:{}", free_port());
    refused_by_proxy(&format!("http://{USER}:{PASSWORD}@{addr}"), &addr).await;
}

#[tokio::test]
async fn no_proxy_bypasses_the_proxy() {
    let pki = Pki::new();
    let emu = hf_https(pki.leaf.options()).await;
    let proxy = Proxy::open().await;
    let config = hf_config(&localhost(&emu), &ca_line(&pki.ca), "");
    let proxy_url = proxy.url(None);
    let gw = ChildGateway::start(
        &config,
        &[
            DEBUG_LOG,
            ("HTTPS_PROXY", &proxy_url),
            ("HTTP_PROXY", &proxy_url),
            ("NO_PROXY", "127.0.0.1,localhost"),
        ],
    );
    let res = predict(&gw.base, "hf", BODY).await;
    assert_eq!(res.status(), 200);
    gw.stop();
    assert_eq!(proxy.seen(), []);
    assert_eq!(emu.connections().handshakes(), 1);
}

#[tokio::test]
async fn http_goes_through_the_proxy_in_absolute_form() {
    let emu = emulator::huggingface::start(loopback(), hf_options())
        .await
        .unwrap();
    let proxy = Proxy::with_credentials(USER, PASSWORD).await;
    let config = hf_config(&emu.url(), "", "");
    let proxy_url = proxy.url(Some((USER, PASSWORD)));
    let gw = ChildGateway::start(&config, &[DEBUG_LOG, ("HTTP_PROXY", &proxy_url)]);

    let res = predict(&gw.base, "hf", BODY).await;
    assert_eq!(res.status(), 200);
    let _ = res.bytes().await.unwrap();
    let res = predict(&gw.base, "hf/stream", BODY).await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().ends_with("\n\n"));
    let log = gw.stop();

    assert_eq!((proxy.forwarded(), proxy.connects()), (2, 0));
    let seen = proxy.seen();
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].target, format!("{}/", emu.url()));
    assert_eq!(seen[1].target, format!("{}/generate_stream", emu.url()));
    assert!(seen.iter().all(|s| s.proxy_authorization == Some(basic())));
    // The origin got origin form, and not the proxy's credentials.
    let last = emu.counters().last().unwrap();
    assert_eq!(last.path, "/generate_stream");
    assert!(last.headers.get("proxy-authorization").is_none());
    assert!(
        !log.contains(PASSWORD),
        "the password is in the log:\n{log}"
    );
}
