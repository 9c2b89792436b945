//! The response cache under the SageMaker and TGI doors (the cache sits in
//! the core: a door's second identical request is a hit in that door's own
//! shape, and two doors share an entry when they send the same upstream
//! call), and the backend's own `Cache-Control`: `no-store` is never kept,
//! `private` only in its client's own entries.

use std::time::SystemTime;

use aws_sdk_sagemakerruntime::primitives::Blob;
use infergate::emulator::FaultConfig;
use serde_json::{json, Value};

use crate::common::model::data_events;
use crate::common::sdk::{sdk_client, sigv4_headers};
use crate::common::{Harness, Setup, BODY, CONFIG};

const KEY: &str = "cache-doors-key-canary-5a1e";
const AKID: &str = "AKIAINFERGATECACHE01";
const SECRET: &str = "cache-doors-secret-canary-90d3";

/// `smc` over SageMaker, `hfc` over HF (each client its own entries) and
/// `hfs` over HF shared between clients, all cached; client `web` signs
/// with AWS keys or sends a bearer key.
fn config() -> String {
    format!(
        r#"{CONFIG}
[routes.smc]
backends = ["sm"]
cache = {{ ttl = "10m" }}

[routes.hfc]
backends = ["hf"]
cache = {{ ttl = "10m" }}

[routes.hfs]
backends = ["hf"]
cache = {{ ttl = "10m", shared = true }}

[clients.web]
api_key = "{KEY}"
aws_access_key_id = "{AKID}"
aws_secret_access_key = "${{CACHE_AWS_SECRET}}"
admin = true
"#
    )
}

async fn harness() -> Harness {
    Harness::with(Setup {
        config: config(),
        extra_vars: vec![("CACHE_AWS_SECRET".into(), SECRET.into())],
        ..Setup::default()
    })
    .await
}

/// The status, `x-infergate-cache`, `cache-control` and body of an answer.
async fn read(res: reqwest::Response) -> (u16, String, String, String) {
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (cache, control) = (header("x-infergate-cache"), header("cache-control"));
    (
        res.status().as_u16(),
        cache,
        control,
        res.text().await.unwrap(),
    )
}

/// `BODY` to the SageMaker door's `InvokeEndpoint` of `route`, signed with
/// `web`'s key, with `extra` headers (not signed: SigV4 signs only what
/// `SignedHeaders` lists).
async fn invoke(h: &Harness, route: &str, extra: &[(&str, &str)]) -> (u16, String, String, String) {
    let url = h.url(&format!("/endpoints/{route}/invocations"));
    let host = url.trim_start_matches("http://").split('/').next().unwrap();
    let signed = [
        ("content-type", "application/json"),
        ("accept", "application/json"),
        ("host", host),
    ];
    let auth = sigv4_headers(
        &url,
        &signed,
        BODY.as_bytes(),
        (AKID, SECRET, None),
        SystemTime::now(),
    );
    let mut req = h.client.post(&url).body(BODY);
    for (k, v) in signed.iter().take(2).chain(extra) {
        req = req.header(*k, *v);
    }
    for (k, v) in auth {
        req = req.header(k, v);
    }
    read(req.send().await.unwrap()).await
}

/// `body` to `path` with `web`'s bearer key and `extra` headers.
async fn post(
    h: &Harness,
    path: &str,
    body: &str,
    extra: &[(&str, &str)],
) -> (u16, String, String, String) {
    let mut req = h
        .client
        .post(h.url(path))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(body.to_owned());
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    read(req.send().await.unwrap()).await
}

#[tokio::test]
async fn the_sagemaker_door_hits_and_shares_an_entry_with_the_predict_door() {
    let h = harness().await;
    let calls = || h.sm.counters().requests();
    let (status, cache, _, miss) = invoke(&h, "smc", &[]).await;
    assert_eq!((status, cache.as_str()), (200, "miss"), "{miss}");
    let (status, cache, _, hit) = invoke(&h, "smc", &[]).await;
    assert_eq!((status, cache.as_str(), &hit), (200, "hit", &miss));
    assert_eq!(calls(), 1);
    // AWS's own SDK reads the hit as any InvokeEndpoint answer.
    let out = sdk_client(&h.base, AKID, SECRET, None)
        .invoke_endpoint()
        .endpoint_name("smc")
        .content_type("application/json")
        .accept("application/json")
        .body(Blob::new(BODY))
        .send()
        .await
        .unwrap();
    assert_eq!(out.body().unwrap().as_ref(), miss.as_bytes());
    assert_eq!(calls(), 1);
    // The predict door sends the same upstream call for the same client:
    // it is served the entry the SageMaker door stored.
    let (status, cache, _, predicted) = post(&h, "/v1/predict/smc", BODY, &[]).await;
    assert_eq!((status, cache.as_str()), (200, "hit"), "{predicted}");
    assert_eq!(calls(), 1);
    // The client's `no-cache` reaches the core through this door too.
    let (status, cache, _, _) = invoke(&h, "smc", &[("cache-control", "no-cache")]).await;
    assert_eq!((status, cache.as_str()), (200, "bypass"));
    assert_eq!(calls(), 2);
    h.shutdown().await;
}

#[tokio::test]
async fn the_tgi_door_hits_on_generate_and_replays_a_stream() {
    let h = harness().await;
    let calls = || h.hf.counters().requests();
    let body = |stream: bool| {
        json!({"inputs": "one stable inference URL", "parameters": {"max_new_tokens": 3}, "stream": stream})
            .to_string()
    };
    let (status, cache, _, miss) = post(&h, "/hf/hfc/generate", &body(false), &[]).await;
    assert_eq!((status, cache.as_str()), (200, "miss"), "{miss}");
    let v: Value = serde_json::from_str(&miss).unwrap();
    assert_eq!(v["generated_text"], "URL inference stable");
    let (_, cache, _, hit) = post(&h, "/hf/hfc/generate", &body(false), &[]).await;
    assert_eq!((cache.as_str(), &hit), ("hit", &miss));
    assert_eq!(calls(), 1);

    let path = "/hf/hfc/generate_stream";
    let (status, cache, _, first) = post(&h, path, &body(true), &[]).await;
    assert_eq!((status, cache.as_str()), (200, "miss"), "{first}");
    let (_, cache, _, again) = post(&h, path, &body(true), &[]).await;
    assert_eq!(cache, "hit");
    assert_eq!(calls(), 2);
    // The same TGI events, in the same order, the last with the text.
    let (a, b) = (data_events(&first), data_events(&again));
    assert_eq!(a, b);
    assert!(a.len() >= 3, "{first}");

    let (_, cache, _, _) = post(&h, path, &body(true), &[("pragma", "no-cache")]).await;
    assert_eq!(cache, "bypass");
    assert_eq!(calls(), 3);
    h.shutdown().await;
}

#[tokio::test]
async fn a_backend_no_store_is_never_kept_and_private_only_for_its_client() {
    let h = harness().await;
    let calls = || h.hf.counters().requests();
    let say = |value: &str| {
        h.hf.faults().set(FaultConfig {
            cache_control: Some(value.to_owned()),
            ..FaultConfig::default()
        })
    };
    say("no-store");
    for path in [
        "/v1/predict/hfc",
        "/v1/predict/hfc/stream",
        "/v1/predict/hfs",
    ] {
        for _ in 0..2 {
            let (status, cache, control, _) = post(&h, path, BODY, &[]).await;
            assert_eq!((status, cache.as_str()), (200, "miss"), "{path}");
            // The backend's refusal is passed on to the client.
            assert_eq!(control, "no-store", "{path}");
        }
    }
    assert_eq!(calls(), 6);

    say("private, max-age=60");
    let other = json!({"inputs": "private answer"}).to_string();
    let mut got = Vec::new();
    for path in [
        "/v1/predict/hfc",
        "/v1/predict/hfc",
        "/v1/predict/hfs",
        "/v1/predict/hfs",
    ] {
        got.push(post(&h, path, &other, &[]).await.1);
    }
    // Kept in the client's own entries, never in the shared ones.
    assert_eq!(got, ["miss", "hit", "miss", "miss"]);
    assert_eq!(calls(), 9);

    // A `Cache-Control` that restricts nothing is not passed on, and the
    // answer is kept.
    say("max-age=60");
    let third = json!({"inputs": "public answer"}).to_string();
    let (_, cache, control, _) = post(&h, "/v1/predict/hfs", &third, &[]).await;
    assert_eq!((cache.as_str(), control.as_str()), ("miss", ""));
    assert_eq!(post(&h, "/v1/predict/hfs", &third, &[]).await.1, "hit");
    assert_eq!(calls(), 10);
    h.shutdown().await;
}
