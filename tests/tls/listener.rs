//! HTTPS on the gateway's own listener (`[server.tls]`): clients that
//! trust the test CA, h2 by ALPN, mutual TLS, and certificate files
//! rotated under load without a failed request.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::tls::{LeafFiles, Pki};
use crate::common::{wait_until, Harness, Setup, CONFIG};

const KEY: &str = "tls-canary-client-key";

/// The harness's config with a client and `[server.tls]` of these files.
fn config(cert: &LeafFiles, client_ca: Option<&std::path::Path>) -> String {
    let ca = client_ca
        .map(|p| format!("client_ca_file = {:?}\n", p.display().to_string()))
        .unwrap_or_default();
    format!(
        "{CONFIG}\n[clients.web]\napi_key = \"{KEY}\"\n\n[server.tls]\ncert_file = {:?}\nkey_file = {:?}\n{ca}",
        cert.chain.display().to_string(),
        cert.key.display().to_string(),
    )
}

async fn gateway(config: String) -> Harness {
    Harness::with(Setup {
        config,
        ..Setup::default()
    })
    .await
}

/// `https://localhost:PORT` of the harness's listener.
fn https(h: &Harness, path: &str) -> String {
    let port = h.base.rsplit(':').next().unwrap();
    format!("https://localhost:{port}{path}")
}

fn client(builder: reqwest::ClientBuilder) -> reqwest::Client {
    builder
        .timeout(Duration::from_secs(10))
        .resolve("localhost", ([127, 0, 0, 1], 0).into())
        .build()
        .unwrap()
}

async fn predict(client: &reqwest::Client, url: &str) -> Result<u16, reqwest::Error> {
    let res = client
        .post(url)
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(r#"{"inputs":"over TLS to the gateway"}"#)
        .send()
        .await?;
    let status = res.status().as_u16();
    res.bytes().await?;
    Ok(status)
}

#[tokio::test]
async fn a_client_that_trusts_the_ca_is_served_over_https_with_h2_by_alpn() {
    let pki = Pki::new();
    let h = gateway(config(&pki.leaf, None)).await;
    let trusting = client(reqwest::Client::builder().add_root_certificate(pki.ca_certificate()));
    assert_eq!(
        predict(&trusting, &https(&h, "/v1/predict/hf"))
            .await
            .unwrap(),
        200
    );
    let res = trusting.get(https(&h, "/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), http::Version::HTTP_2, "ALPN gave h2");
    let http1 = client(
        reqwest::Client::builder()
            .add_root_certificate(pki.ca_certificate())
            .http1_only(),
    );
    let res = http1.get(https(&h, "/readyz")).send().await.unwrap();
    assert_eq!(res.version(), http::Version::HTTP_11);

    // A client that does not trust the CA gets no answer; plain HTTP to
    // the HTTPS port gets none either; the gateway serves on.
    let untrusting = client(reqwest::Client::builder());
    let err = untrusting
        .get(https(&h, "/readyz"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    let plain = h.client.get(h.url("/readyz")).send().await;
    assert!(plain.is_err(), "plain HTTP answered on the HTTPS port");
    assert_eq!(
        predict(&trusting, &https(&h, "/v1/predict/hf"))
            .await
            .unwrap(),
        200
    );
    h.shutdown().await;
}

#[tokio::test]
async fn with_a_client_ca_only_clients_with_its_certificates_connect() {
    let pki = Pki::new();
    let h = gateway(config(&pki.leaf, Some(&pki.ca))).await;
    let url = https(&h, "/v1/predict/hf");
    let trusting = || reqwest::Client::builder().add_root_certificate(pki.ca_certificate());
    let anonymous = client(trusting());
    assert!(
        predict(&anonymous, &url).await.is_err(),
        "served without a client certificate"
    );
    let stranger = client(trusting().identity(pki.untrusted_client.identity()));
    assert!(
        predict(&stranger, &url).await.is_err(),
        "served a certificate of another CA"
    );
    let known = client(trusting().identity(pki.client.identity()));
    assert_eq!(predict(&known, &url).await.unwrap(), 200);
    h.shutdown().await;
}

/// The files are replaced (the key first, so the gateway reads a key that
/// does not go with the certificate for a while) while requests run on
/// new connections and on one kept-alive connection: not one fails, and
/// the new certificate is served within a few reloads.
#[tokio::test]
async fn rotating_the_certificate_files_under_load_fails_no_request() {
    let pki = Pki::new();
    let dir = pki.dir.join("served");
    std::fs::create_dir_all(&dir).unwrap();
    let served = LeafFiles {
        chain: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    };
    std::fs::copy(&pki.leaf.chain, &served.chain).unwrap();
    std::fs::copy(&pki.leaf.key, &served.key).unwrap();
    let h = gateway(config(&served, None)).await;
    let url = https(&h, "/v1/predict/hf");
    // Trusts both the old certificate's CA and the new one's.
    let both = || {
        reqwest::Client::builder()
            .add_root_certificate(pki.ca_certificate())
            .add_root_certificate(pki.untrusted_ca_certificate())
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for fresh in [true, true, false] {
        let (stop, ok, failed, url) = (stop.clone(), ok.clone(), failed.clone(), url.clone());
        let builder = if fresh {
            both().pool_max_idle_per_host(0)
        } else {
            both()
        };
        let client = client(builder);
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match predict(&client, &url).await {
                    Ok(200) => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        eprintln!("failed during rotation: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let new_only =
        client(reqwest::Client::builder().add_root_certificate(pki.untrusted_ca_certificate()));
    assert!(
        predict(&new_only, &url).await.is_err(),
        "the new CA's client connected before the rotation"
    );
    // A half-done rotation first: the new key with the old certificate.
    std::fs::copy(&pki.untrusted_leaf.key, &served.key).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Then the certificate, renamed into place as a secret mount swaps it.
    let staged = dir.join("tls.crt.new");
    std::fs::copy(&pki.untrusted_leaf.chain, &staged).unwrap();
    std::fs::rename(&staged, &served.chain).unwrap();
    wait_until("the new certificate to be served", || async {
        predict(&new_only, &url).await.is_ok()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(
        failed, 0,
        "{failed} requests failed during the rotation ({ok} ok)"
    );
    assert!(ok > 20, "too little load to show anything: {ok} requests");
    h.shutdown().await;
}
