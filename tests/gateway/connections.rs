//! The admin endpoints and the client's connections: h2c, a body that stops
//! arriving, idle keep-alive connections.

use std::time::Duration;

use crate::common::{patch, Harness, BODY, CONFIG, HF_TOKEN};
use serde_json::Value;

#[tokio::test]
async fn admin_endpoints() {
    let h = Harness::start().await;
    let res = h.client.get(h.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = h.client.get(h.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let routes: Value = h.get_json("/v1/routes").await;
    let both = routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "both")
        .unwrap();
    assert_eq!(both["backends"][0]["name"], "sm");
    assert_eq!(both["backends"][0]["auth"], "sigv4");
    assert_eq!(both["backends"][1]["name"], "hf");
    assert_eq!(both["backends"][1]["auth"], "bearer");
    assert!(!routes.to_string().contains(HF_TOKEN));

    assert_eq!(h.predict("sm", BODY).await.status(), 200);
    let metrics = h.get_text("/metrics").await;
    assert!(metrics.contains(
        r#"infergate_requests_total{backend="sm",code_class="2xx",outcome="success",route="sm"} 1"#
    ));
    h.shutdown().await;
}

#[tokio::test]
async fn h2c_clients_are_served() {
    let h = Harness::start().await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let res = client
        .post(h.url("/v1/predict/hf"))
        .header("content-type", "application/json")
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert_eq!(res.status(), 200);
    h.shutdown().await;
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_a_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = patch(
        CONFIG,
        "[routes.hf]\n",
        "[routes.hf]\ntimeout = \"300ms\"\n",
    );
    let h = Harness::with_config(config).await;
    let mut stream = tokio::net::TcpStream::connect(h.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream
        .write_all(b"POST /v1/predict/hf HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"inputs\":")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&answer).contains("request_timeout") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the gateway answered");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains(r#""type":"request_timeout""#), "{text}");
    assert_eq!(h.hf.counters().requests(), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn idle_client_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = patch(
        CONFIG,
        "shutdown_grace = \"1s\"\n",
        "shutdown_grace = \"1s\"\nidle_timeout = \"200ms\"\n",
    );
    let h = Harness::with_config(config).await;
    let mut stream = tokio::net::TcpStream::connect(h.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    // The answer, then the server closes the idle keep-alive connection.
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut all = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return all,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the idle connection was closed");
    assert!(String::from_utf8_lossy(&closed).starts_with("HTTP/1.1 200"));
    h.shutdown().await;
}
