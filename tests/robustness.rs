//! Nothing panics on any input: mutated config files, and random requests
//! thrown at a running gateway.

#[cfg(test)]
mod common;

use std::time::Duration;

use common::Harness;
use infergate::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const EXAMPLE: &str = include_str!("../config/infergate.example.toml");

/// Flips, drops, duplicates and inserts bytes of the example config.
fn mutate(rng: &mut fastrand::Rng, text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..rng.usize(1..8) {
        if bytes.is_empty() {
            break;
        }
        let at = rng.usize(..bytes.len());
        match rng.u8(..4) {
            0 => bytes[at] = rng.u8(..),
            1 => {
                bytes.remove(at);
            }
            2 => {
                let end = (at + rng.usize(1..64)).min(bytes.len());
                let chunk = bytes[at..end].to_vec();
                bytes.splice(at..at, chunk);
            }
            _ => {
                let pieces: [&[u8]; 8] = [
                    b"${",
                    b"}",
                    b"\"",
                    b"[",
                    b"=",
                    b"\n[routes.x]\nbackends = [",
                    b"-1",
                    b"99999999999999999999",
                ];
                let piece = pieces[rng.usize(..pieces.len())];
                bytes.splice(at..at, piece.iter().copied());
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn mutated_configs_are_errors_never_panics() {
    let mut rng = fastrand::Rng::with_seed(2026);
    let env = |name: &str| match name {
        "HF_TOKEN" => Some("hf_x".to_string()),
        "WEB_APP_KEY" => Some("key_x".to_string()),
        _ => None,
    };
    let mut errors = 0;
    for _ in 0..3000 {
        let text = mutate(&mut rng, EXAMPLE);
        match Config::from_toml(&text, &env) {
            Ok(_) => {}
            Err(e) => {
                errors += 1;
                // Every error names a key path or a position.
                for line in &e.0 {
                    assert!(line.contains(':'), "{line}");
                }
            }
        }
    }
    assert!(errors > 1000, "the mutations do break the file ({errors})");
}

/// Random requests on raw sockets; afterwards the gateway still serves.
#[tokio::test]
async fn random_requests_never_bring_the_gateway_down() {
    let h = Harness::start().await;
    let addr = h.base.trim_start_matches("http://").to_string();
    let mut rng = fastrand::Rng::with_seed(7);
    let methods = [
        "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "B@D",
    ];
    let paths = [
        "/v1/predict/sm",
        "/v1/predict/hf/stream",
        "/v1/predict/",
        "/v1/predict/%ff%00",
        "/v1/predict/../../etc/passwd",
        "/metrics",
        "/v1/routes",
        "/healthz",
        "//",
        "/v1/predict/both?x=1#frag",
    ];
    for _ in 0..200 {
        let method = methods[rng.usize(..methods.len())];
        let path = paths[rng.usize(..paths.len())];
        let body: Vec<u8> = (0..rng.usize(0..300)).map(|_| rng.u8(..)).collect();
        let mut req = format!("{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n");
        for _ in 0..rng.usize(0..4) {
            let headers = [
                "content-type: application/json\r\n".to_string(),
                "x-amzn-sagemaker-session-id: NEW_SESSION\r\n".to_string(),
                format!(
                    "x-amzn-sagemaker-target-variant: {}\r\n",
                    "v".repeat(rng.usize(0..80))
                ),
                format!("x-infergate-timeout-ms: {}\r\n", rng.i64(-5..100_000)),
                "traceparent: 00-zz-yy-01\r\n".to_string(),
                "x-request-id: \r\n".to_string(),
            ];
            req.push_str(&headers[rng.usize(..headers.len())]);
        }
        let mut raw = req.into_bytes();
        if rng.bool() {
            raw.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
            raw.extend_from_slice(&body);
        } else {
            raw.extend_from_slice(b"\r\n");
        }
        let Ok(mut stream) = tokio::net::TcpStream::connect(&addr).await else {
            panic!("the gateway stopped accepting connections");
        };
        let _ = stream.write_all(&raw).await;
        let mut answer = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
        let text = String::from_utf8_lossy(&answer);
        if let Some(status) = text.split(' ').nth(1) {
            // A 5xx from the gateway itself would mean a bug; the emulators
            // behind answer normally for these inputs.
            assert!(
                !status.starts_with('5') || text.contains("\"error\""),
                "{status}: {text}"
            );
        }
    }
    let res = h.client.get(h.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    h.shutdown().await;
}
