#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Resilience end to end: retries, the retry budget, failover, outlier
//! ejection, `Retry-After`, deadlines, cancellation, sticky sessions, cold
//! starts, hedging, load shedding and priority balancing, driven through the
//! emulators' fault injection over loopback sockets.
//!
//! Every assertion is on counts (client statuses, emulator counters, gateway
//! metrics, `/v1/routes` states), never on how long something took; waits
//! are bounded polls on a condition.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{error_json, Harness, Setup};
use futures_util::StreamExt;
use infergate::emulator::{self, EmulatorHandle, FaultConfig, InjectedError, ModelFormat};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

const BODY: &str = r#"{"inputs": "one stable inference URL", "parameters": {"max_new_tokens": 8}}"#;

/// Longest any condition is waited for.
const WAIT: Duration = Duration::from_secs(10);

// === config ===

const SERVER: &str = r#"
[server]
listen = "127.0.0.1:0"
max_body_bytes = 4096
request_timeout = "5s"
shutdown_grace = "1s"
"#;

/// A TGI-format SageMaker backend at `${url_var}`, with extra keys.
fn sm_backend(name: &str, url_var: &str, extra: &str) -> String {
    format!(
        "\n[backends.{name}]\nkind = \"sagemaker\"\nendpoint_name = \"flan-t5-small\"\n\
         region = \"us-east-1\"\nendpoint_url = \"${{{url_var}}}\"\n{extra}\n"
    )
}

/// An HF backend at `url` (a `${VAR}` or a literal URL), with extra keys.
fn hf_backend(name: &str, url: &str, extra: &str) -> String {
    format!(
        "\n[backends.{name}]\nkind = \"huggingface\"\nurl = \"{url}\"\ntoken = \"${{HF_TOKEN}}\"\n{extra}\n"
    )
}

/// A route over `backends` (in order), with extra keys.
fn route(name: &str, backends: &[&str], extra: &str) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{b}\"")).collect();
    format!(
        "\n[routes.{name}]\nbackends = [{}]\n{extra}\n",
        list.join(", ")
    )
}

/// The server section, the `sm` and `hf` backends (with extra keys each)
/// and the given routes.
fn config(sm_extra: &str, hf_extra: &str, routes: &[String]) -> String {
    let mut c = String::from(SERVER);
    c += &sm_backend("sm", "SM_URL", sm_extra);
    c += &hf_backend("hf", "${HF_URL}", hf_extra);
    for r in routes {
        c += r;
    }
    c
}

async fn harness(config: String) -> Harness {
    Harness::with(Setup {
        config,
        ..Setup::default()
    })
    .await
}

// === helpers ===

/// Waits until `cond` holds, at most [`WAIT`].
async fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until the async `cond` holds, at most [`WAIT`].
async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Status and answering backend of one request; the body is read so the
/// connection is reused.
async fn call(h: &Harness, route: &str) -> (u16, String) {
    let res = h.predict(route, BODY).await;
    let status = res.status().as_u16();
    let backend = res
        .headers()
        .get("x-infergate-backend")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let _ = res.bytes().await;
    (status, backend)
}

/// Sends `n` requests, `concurrency` at a time; returns their statuses.
async fn send_many(h: &Harness, route: &str, n: usize, concurrency: usize) -> Vec<u16> {
    futures_util::stream::iter(0..n)
        .map(|_| async { call(h, route).await.0 })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

/// The sum of the series of metric `name` whose labels include `labels`.
async fn metric(h: &Harness, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = h
        .client
        .get(h.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
            if n != name {
                return None;
            }
            let have: Vec<&str> = rest.trim_end_matches('}').split(',').collect();
            labels
                .iter()
                .all(|(k, v)| have.contains(&format!("{k}=\"{v}\"").as_str()))
                .then(|| value.parse::<f64>().unwrap())
        })
        .sum()
}

/// A backend's entry in `/v1/routes` for `route`.
async fn backend_view(h: &Harness, route: &str, backend: &str) -> Value {
    let v: Value = h
        .client
        .get(h.url("/v1/routes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = v["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == route)
        .unwrap_or_else(|| panic!("no route {route}"));
    r["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == backend)
        .unwrap_or_else(|| panic!("no backend {backend} in route {route}"))
        .clone()
}

async fn state(h: &Harness, route: &str, backend: &str) -> String {
    backend_view(h, route, backend).await["state"]
        .as_str()
        .unwrap()
        .to_string()
}

/// One more TGI-format SageMaker emulator, for routes of two SageMaker
/// backends.
async fn second_sagemaker() -> EmulatorHandle {
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    emulator::sagemaker::start(loopback, common::sm_options(ModelFormat::Tgi))
        .await
        .unwrap()
}

fn failing(rate: f64, error: InjectedError) -> FaultConfig {
    FaultConfig {
        error_rate: rate,
        error,
        ..FaultConfig::default()
    }
}

// === retries and the budget ===

#[tokio::test]
async fn a_healthy_second_backend_absorbs_a_30_percent_failure_rate() {
    // Ejection off on the failing backend, so it keeps taking its share of
    // the traffic and the failures are really exercised.
    let h = harness(config(
        "eject_after = 0",
        "",
        &[route("pair", &["sm", "hf"], "")],
    ))
    .await;
    h.sm.faults()
        .set(failing(0.3, InjectedError::ServiceUnavailable));
    let n = 300;
    let statuses = send_many(&h, "pair", n, 8).await;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        ok * 100 >= n * 99,
        "client success {ok}/{n} is below 99%: {statuses:?}"
    );
    let injected = h.sm.counters().errors_injected();
    assert!(injected >= 10, "only {injected} faults were injected");
    assert!(metric(&h, "infergate_retries_total", &[("route", "pair")]).await >= injected as f64);
    h.shutdown().await;
}

#[tokio::test]
async fn the_retry_budget_bounds_amplification_on_a_single_failing_backend() {
    // No reserve: retries are 20% of the requests at most.
    let h = harness(config(
        "",
        "",
        &[route(
            "solo",
            &["sm"],
            "retry_budget_ratio = 0.2\nretry_budget_min_per_second = 0\nretry_budget_window = \"60s\"",
        )],
    ))
    .await;
    h.sm.faults()
        .set(failing(0.3, InjectedError::ServiceUnavailable));
    let n = 400;
    let statuses = send_many(&h, "solo", n, 8).await;
    assert_eq!(statuses.len(), n);
    let upstream = h.sm.counters().requests();
    let amplification = upstream as f64 / n as f64;
    assert!(
        amplification <= 1.25,
        "{upstream} upstream attempts for {n} requests ({amplification:.3})"
    );
    // Every attempt past the first of a request is a retry the budget paid.
    let retries = metric(&h, "infergate_retries_total", &[("route", "solo")]).await;
    assert_eq!(upstream as f64, n as f64 + retries);
    assert!(retries > 0.0, "the budget allowed no retry at all");
    // 30% failures want more retries than 20% of the traffic: some refused.
    let refused = metric(
        &h,
        "infergate_retry_budget_exhausted_total",
        &[("route", "solo")],
    )
    .await;
    assert!(refused > 0.0, "the retry budget was never exhausted");
    h.shutdown().await;
}

// === outlier ejection ===

#[tokio::test]
async fn a_failing_backend_is_ejected_then_probed_back_in() {
    let h = harness(config(
        "eject_after = 3\nejection_time = \"600ms\"",
        "",
        &[route("pair", &["sm", "hf"], "balance = \"priority\"")],
    ))
    .await;
    h.sm.faults()
        .set(failing(1.0, InjectedError::ServiceUnavailable));
    // Three consecutive failures (each request fails over to hf).
    for _ in 0..3 {
        assert_eq!(call(&h, "pair").await, (200, "hf".into()));
    }
    assert_eq!(h.sm.counters().requests(), 3);
    let view = backend_view(&h, "pair", "sm").await;
    assert_eq!(view["state"], "ejected", "{view}");
    assert!(view["ejected_until"].is_string(), "{view}");
    assert_eq!(
        metric(
            &h,
            "infergate_backend_ejections_total",
            &[("backend", "sm")]
        )
        .await,
        1.0
    );
    // While ejected, nothing reaches it.
    for _ in 0..5 {
        assert_eq!(call(&h, "pair").await, (200, "hf".into()));
    }
    assert_eq!(h.sm.counters().requests(), 3);
    assert_eq!(
        state(&h, "pair", "sm").await,
        "ejected",
        "the machine is too slow for this test's ejection time"
    );

    // The backend heals; once the ejection runs out, one probe brings it back.
    h.sm.faults().set(FaultConfig::default());
    wait_until("a request to reach sm again", || async {
        call(&h, "pair").await.1 == "sm"
    })
    .await;
    assert_eq!(h.sm.counters().requests(), 4, "a single probe");
    let view = backend_view(&h, "pair", "sm").await;
    assert_eq!(view["state"], "available", "{view}");
    assert!(view["ejected_until"].is_null(), "{view}");
    for _ in 0..5 {
        assert_eq!(call(&h, "pair").await, (200, "sm".into()));
    }
    assert_eq!(h.sm.counters().requests(), 9);
    assert_eq!(
        metric(
            &h,
            "infergate_backend_ejections_total",
            &[("backend", "sm")]
        )
        .await,
        1.0
    );
    h.shutdown().await;
}

// === Retry-After ===

#[tokio::test]
async fn a_retry_after_beyond_the_deadline_is_answered_at_once() {
    let h = harness(config(
        "",
        "",
        &[route("sm", &["sm"], ""), route("hf", &["hf"], "")],
    ))
    .await;
    // SageMaker 503 asking for 3 s, HF 429 asking for 4 s; the client gives 1 s.
    h.sm.faults().update(|f| {
        f.fail_next = 1;
        f.error = InjectedError::ServiceUnavailable;
        f.retry_after = Some(Duration::from_secs(3));
    });
    h.hf.faults().update(|f| {
        f.fail_next = 1;
        f.error = InjectedError::Status(429);
        f.retry_after = Some(Duration::from_secs(4));
    });
    for (route, status, after, kind) in [
        ("sm", 503, "3", "backend_unavailable"),
        ("hf", 429, "4", "rate_limited"),
    ] {
        let res = h
            .client
            .post(h.url(&format!("/v1/predict/{route}")))
            .header("content-type", "application/json")
            .header("x-infergate-timeout-ms", "1000")
            .body(BODY)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{route}");
        assert_eq!(res.headers()["retry-after"], after, "{route}");
        assert_eq!(res.headers()["x-infergate-attempts"], "1", "{route}");
        assert_eq!(error_json(res).await["type"], kind);
    }
    assert_eq!(h.sm.counters().requests(), 1);
    assert_eq!(h.hf.counters().requests(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn a_retry_not_sent_because_of_retry_after_is_not_counted_as_a_retry() {
    let h = harness(config("", "", &[route("sm", &["sm"], "")])).await;
    h.sm.faults().update(|f| {
        f.fail_next = 1;
        f.error = InjectedError::ServiceUnavailable;
        f.retry_after = Some(Duration::from_secs(3));
    });
    let res = h
        .client
        .post(h.url("/v1/predict/sm"))
        .header("content-type", "application/json")
        .header("x-infergate-timeout-ms", "1000")
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["x-infergate-attempts"], "1");
    assert_eq!(h.sm.counters().requests(), 1);
    assert_eq!(
        metric(&h, "infergate_retries_total", &[("route", "sm")]).await,
        0.0,
        "no retry was sent"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_retry_after_within_the_deadline_is_waited_for() {
    let h = harness(config("", "", &[route("sm", &["sm"], "")])).await;
    h.sm.faults().update(|f| {
        f.fail_next = 1;
        f.error = InjectedError::ServiceUnavailable;
        f.retry_after = Some(Duration::from_secs(1));
    });
    let res = h.predict("sm", BODY).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-infergate-attempts"], "2");
    assert_eq!(h.sm.counters().requests(), 2);
    assert_eq!(h.sm.counters().errors_injected(), 1);
    h.shutdown().await;
}

// === deadlines and cancellation ===

#[tokio::test]
async fn a_hung_backend_gets_a_504_and_its_attempt_is_cancelled() {
    let h = harness(config("", "", &[route("sm", &["sm"], "")])).await;
    h.sm.faults()
        .update(|f| f.latency = Duration::from_secs(60));
    let res = h
        .client
        .post(h.url("/v1/predict/sm"))
        .header("content-type", "application/json")
        .header("x-infergate-timeout-ms", "300")
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 504);
    assert_eq!(error_json(res).await["type"], "deadline_exceeded");
    let c = h.sm.counters();
    wait_for("the emulator to see the attempt cancelled", || {
        c.cancelled() == 1
    })
    .await;
    wait_for("nothing in flight upstream", || c.in_flight() == 0).await;
    assert_eq!(c.requests(), 1);
    assert_eq!(backend_view(&h, "sm", "sm").await["in_flight"], 0);
    h.shutdown().await;
}

#[tokio::test]
async fn a_client_that_leaves_cancels_the_attempt() {
    let h = harness(config(
        "",
        "",
        &[route("pair", &["sm", "hf"], "balance = \"priority\"")],
    ))
    .await;
    h.sm.faults().update(|f| f.latency = Duration::from_secs(5));
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let err = impatient
        .post(h.url("/v1/predict/pair"))
        .header("content-type", "application/json")
        .body(BODY)
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let c = h.sm.counters();
    wait_for("the emulator to see the attempt cancelled", || {
        c.cancelled() == 1
    })
    .await;
    wait_for("nothing in flight upstream", || c.in_flight() == 0).await;
    wait_until("the gateway's in-flight count to drop", || async {
        backend_view(&h, "pair", "sm").await["in_flight"] == 0
    })
    .await;
    // No further attempt anywhere.
    assert_eq!(c.requests(), 1);
    assert_eq!(h.hf.counters().requests(), 0);
    h.shutdown().await;
}

// === failover ===

#[tokio::test]
async fn throttled_sagemaker_fails_over_to_hf() {
    let h = harness(config(
        "",
        "",
        &[route("both", &["sm", "hf"], "balance = \"priority\"")],
    ))
    .await;
    h.sm.faults()
        .fail_next(1, InjectedError::ThrottlingException);
    let res = h.predict("both", BODY).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-infergate-backend"], "hf");
    assert_eq!(res.headers()["x-infergate-attempts"], "2");
    assert_eq!(h.sm.counters().requests(), 1);
    assert_eq!(h.hf.counters().requests(), 1);
    let failovers = [("route", "both"), ("from", "sm"), ("to", "hf")];
    assert_eq!(
        metric(&h, "infergate_failovers_total", &failovers).await,
        1.0
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_cold_hf_endpoint_fails_over_to_sagemaker_and_is_avoided() {
    let h = harness(config(
        "",
        "",
        &[route("both", &["hf", "sm"], "balance = \"priority\"")],
    ))
    .await;
    h.hf.faults()
        .update(|f| f.cold_start = Some(Duration::from_secs(60)));
    assert_eq!(call(&h, "both").await, (200, "sm".into()));
    let failovers = [("route", "both"), ("from", "hf"), ("to", "sm")];
    assert_eq!(
        metric(&h, "infergate_failovers_total", &failovers).await,
        1.0
    );
    assert_eq!(state(&h, "both", "hf").await, "cold");
    // While cold, the balancer goes straight to SageMaker.
    for _ in 0..5 {
        assert_eq!(call(&h, "both").await, (200, "sm".into()));
    }
    assert_eq!(h.hf.counters().requests(), 1);
    assert_eq!(h.sm.counters().requests(), 6);
    h.shutdown().await;
}

#[tokio::test]
async fn a_rejected_hf_token_fails_over_to_sagemaker() {
    let h = harness(config(
        "",
        "",
        &[route("both", &["hf", "sm"], "balance = \"priority\"")],
    ))
    .await;
    h.hf.set_token(Some("other".into()));
    let res = h.predict("both", BODY).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-infergate-backend"], "sm");
    assert_eq!(res.headers()["x-infergate-attempts"], "2");
    assert_eq!(h.hf.counters().auth_rejections(), 1);
    let failovers = [("route", "both"), ("from", "hf"), ("to", "sm")];
    assert_eq!(
        metric(&h, "infergate_failovers_total", &failovers).await,
        1.0
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_rejected_aws_signature_fails_over_to_hf() {
    let h = Harness::with(Setup {
        config: config(
            "",
            "",
            &[route("both", &["sm", "hf"], "balance = \"priority\"")],
        ),
        sm_secret: "not-the-secret".into(),
        ..Setup::default()
    })
    .await;
    let res = h.predict("both", BODY).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-infergate-backend"], "hf");
    assert_eq!(res.headers()["x-infergate-attempts"], "2");
    assert_eq!(h.sm.counters().auth_rejections(), 1);
    h.shutdown().await;
}

// === what is never retried ===

#[tokio::test]
async fn a_model_error_is_neither_retried_nor_failed_over() {
    let h = harness(config(
        "",
        "",
        &[
            route("sm", &["sm"], ""),
            route("both", &["sm", "hf"], "balance = \"priority\""),
        ],
    ))
    .await;
    for r in ["sm", "both"] {
        h.sm.faults().fail_next(
            1,
            InjectedError::ModelError {
                original_status: 400,
            },
        );
        let res = h.predict(r, BODY).await;
        assert_eq!(res.status(), 400, "{r}");
        assert_eq!(res.headers()["x-infergate-attempts"], "1", "{r}");
        assert_eq!(error_json(res).await["type"], "model_error");
    }
    assert_eq!(h.sm.counters().requests(), 2);
    assert_eq!(h.hf.counters().requests(), 0);
    assert_eq!(metric(&h, "infergate_retries_total", &[]).await, 0.0);
    h.shutdown().await;
}

/// A one-request-per-connection HTTP/1.1 server that answers 200 with the
/// start of a chunked JSON body, then closes the connection mid-body.
/// Returns its URL and the number of requests it received.
async fn broken_body_server() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read the head and a Content-Length body.
                loop {
                    let Ok(n) = stream.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                    if buf.len() >= end + 4 + length {
                        break;
                    }
                }
                seen.fetch_add(1, Ordering::SeqCst);
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                          transfer-encoding: chunked\r\n\r\n8\r\n[{\"gener\r\n",
                    )
                    .await;
                let _ = stream.flush().await;
                // Closing without the last chunk: the body is truncated.
            });
        }
    });
    (url, count)
}

#[tokio::test]
async fn a_body_that_breaks_after_the_first_byte_is_not_retried() {
    let (url, count) = broken_body_server().await;
    let mut c = config(
        "",
        "",
        &[route("broken", &["broken", "hf"], "attempts = 3")],
    );
    c += &hf_backend("broken", &url, "");
    let h = harness(c).await;
    let res = h.predict("broken", BODY).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-infergate-backend"], "broken");
    assert_eq!(res.headers()["x-infergate-attempts"], "1");
    let body = res.bytes().await;
    assert!(
        body.is_err(),
        "the truncated body must reach the client as an error: {body:?}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 1);
    assert_eq!(h.hf.counters().requests(), 0);
    h.shutdown().await;
}

// === sticky sessions ===

#[tokio::test]
async fn a_session_sticks_to_the_backend_that_opened_it() {
    let sm2 = second_sagemaker().await;
    let mut c = config("", "", &[route("sessions", &["sm", "sm2"], "")]);
    c += &sm_backend("sm2", "SM2_URL", "");
    let h = Harness::with(Setup {
        config: c,
        extra_vars: vec![("SM2_URL".into(), sm2.url())],
        ..Setup::default()
    })
    .await;
    let session_call = |id: String| {
        let h = &h;
        async move {
            let res = h
                .client
                .post(h.url("/v1/predict/sessions"))
                .header("content-type", "application/json")
                .header("x-amzn-sagemaker-session-id", id)
                .body(BODY)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            let backend = res.headers()["x-infergate-backend"]
                .to_str()
                .unwrap()
                .to_string();
            let opened = res
                .headers()
                .get("x-amzn-sagemaker-new-session-id")
                .map(|v| v.to_str().unwrap().to_string());
            let _ = res.bytes().await;
            (backend, opened)
        }
    };
    // Open sessions until both backends hold at least one (p2c spreads them).
    let mut sessions: Vec<(String, String)> = Vec::new();
    for _ in 0..40 {
        let (backend, opened) = session_call("NEW_SESSION".into()).await;
        let opened = opened.expect("a new session id");
        let id = opened.split(';').next().unwrap().trim().to_string();
        sessions.push((id, backend));
        if sessions.iter().any(|(_, b)| b == "sm") && sessions.iter().any(|(_, b)| b == "sm2") {
            break;
        }
    }
    let on = |b: &str| sessions.iter().filter(|(_, o)| o == b).count() as u64;
    assert!(on("sm") > 0 && on("sm2") > 0, "{sessions:?}");
    for round in 0..4 {
        for (id, opener) in &sessions {
            let (backend, opened) = session_call(id.clone()).await;
            assert_eq!(&backend, opener, "round {round}, session {id}");
            assert!(opened.is_none());
        }
    }
    // Each backend saw its own sessions only: the open and four uses each
    // (a session sent to the other emulator would have been refused).
    assert_eq!(h.sm.counters().requests(), on("sm") * 5);
    assert_eq!(sm2.counters().requests(), on("sm2") * 5);
    h.shutdown().await;
}

// === cold start ===

#[tokio::test]
async fn the_first_request_to_an_hf_endpoint_scaled_to_zero_waits_for_it() {
    let h = harness(config("", "", &[route("hf", &["hf"], "")])).await;
    h.hf.faults()
        .update(|f| f.cold_start = Some(Duration::from_millis(500)));
    let res = h.predict("hf", BODY).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-infergate-attempts"], "2");
    let recent = h.hf.counters().recent();
    assert_eq!(recent.len(), 2);
    assert!(recent[0].headers.get("x-scale-up-timeout").is_none());
    let wait = recent[1].headers["x-scale-up-timeout"].to_str().unwrap();
    assert!(wait.parse::<u64>().unwrap() >= 1, "{wait}");
    assert_eq!(state(&h, "hf", "hf").await, "available");
    h.shutdown().await;
}

// === hedging ===

#[tokio::test]
async fn a_slow_backend_is_hedged_and_the_loser_cancelled() {
    let h = harness(config(
        "",
        "",
        &[route(
            "hedged",
            &["sm", "hf"],
            "balance = \"priority\"\nhedge_after = \"100ms\"",
        )],
    ))
    .await;
    h.sm.faults().update(|f| f.latency = Duration::from_secs(3));
    let res = h.predict("hedged", BODY).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-infergate-backend"], "hf");
    assert_eq!(res.headers()["x-infergate-attempts"], "2");
    let _ = res.bytes().await;
    assert_eq!(
        metric(&h, "infergate_hedges_total", &[("route", "hedged")]).await,
        1.0
    );
    let c = h.sm.counters();
    wait_for("the slow attempt to be cancelled", || c.cancelled() == 1).await;
    wait_for("nothing in flight on the slow backend", || {
        c.in_flight() == 0
    })
    .await;
    assert_eq!(c.requests(), 1);
    assert_eq!(h.hf.counters().requests(), 1);
    h.shutdown().await;
}

// === load shedding ===

/// Starts a request in the background and waits until `emu` holds it.
async fn hold_one(
    h: &Harness,
    route: &str,
    emu: &EmulatorHandle,
) -> tokio::task::JoinHandle<(u16, String)> {
    let client = h.client.clone();
    let url = h.url(&format!("/v1/predict/{route}"));
    let task = tokio::spawn(async move {
        let res = client
            .post(url)
            .header("content-type", "application/json")
            .body(BODY)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let backend = res.headers()["x-infergate-backend"]
            .to_str()
            .unwrap()
            .to_string();
        let _ = res.bytes().await;
        (status, backend)
    });
    let c = emu.counters();
    wait_for("the first request to be held", || c.in_flight() == 1).await;
    task
}

#[tokio::test]
async fn past_max_in_flight_a_lone_backend_sheds_with_retry_after() {
    let h = harness(config(
        "max_in_flight = 1",
        "",
        &[route("solo", &["sm"], "")],
    ))
    .await;
    h.sm.faults().update(|f| f.latency = Duration::from_secs(1));
    let first = hold_one(&h, "solo", &h.sm).await;
    assert_eq!(state(&h, "solo", "sm").await, "saturated");
    let res = h.predict("solo", BODY).await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "1");
    assert_eq!(res.headers()["x-infergate-attempts"], "0");
    assert_eq!(error_json(res).await["type"], "overloaded");
    assert_eq!(h.sm.counters().requests(), 1, "never queued upstream");
    assert_eq!(first.await.unwrap(), (200, "sm".into()));
    assert_eq!(
        metric(&h, "infergate_shed_total", &[("route", "solo")]).await,
        1.0
    );
    h.shutdown().await;
}

#[tokio::test]
async fn past_max_in_flight_requests_spill_to_the_next_backend() {
    let h = harness(config(
        "max_in_flight = 1",
        "",
        &[route("spill", &["sm", "hf"], "balance = \"priority\"")],
    ))
    .await;
    h.sm.faults().update(|f| f.latency = Duration::from_secs(1));
    let first = hold_one(&h, "spill", &h.sm).await;
    assert_eq!(call(&h, "spill").await, (200, "hf".into()));
    assert_eq!(first.await.unwrap(), (200, "sm".into()));
    assert_eq!(h.sm.counters().requests(), 1);
    assert_eq!(h.hf.counters().requests(), 1);
    assert_eq!(h.sm.counters().max_in_flight(), 1);
    h.shutdown().await;
}

// === priority balancing ===

#[tokio::test]
async fn priority_sends_everything_to_the_first_backend_until_it_throttles() {
    let h = harness(config(
        "eject_after = 3\nejection_time = \"30s\"",
        "",
        &[route("prio", &["sm", "hf"], "balance = \"priority\"")],
    ))
    .await;
    for _ in 0..20 {
        assert_eq!(call(&h, "prio").await, (200, "sm".into()));
    }
    assert_eq!(h.hf.counters().requests(), 0);

    // Throttled: each request spills to hf, until sm is ejected after three.
    h.sm.faults()
        .set(failing(1.0, InjectedError::ThrottlingException));
    for _ in 0..10 {
        assert_eq!(call(&h, "prio").await, (200, "hf".into()));
    }
    assert_eq!(h.sm.counters().requests(), 23);
    assert_eq!(h.hf.counters().requests(), 10);
    assert_eq!(state(&h, "prio", "sm").await, "ejected");
    let failovers = [("route", "prio"), ("from", "sm"), ("to", "hf")];
    assert_eq!(
        metric(&h, "infergate_failovers_total", &failovers).await,
        3.0
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_hedge_never_sends_a_session_to_another_backend() {
    let sm2 = second_sagemaker().await;
    let mut c = config(
        "",
        "",
        &[route(
            "sessions",
            &["sm", "sm2"],
            "balance = \"priority\"\nhedge_after = \"100ms\"",
        )],
    );
    c += &sm_backend("sm2", "SM2_URL", "");
    let h = Harness::with(Setup {
        config: c,
        extra_vars: vec![("SM2_URL".into(), sm2.url())],
        ..Setup::default()
    })
    .await;
    let res = h
        .client
        .post(h.url("/v1/predict/sessions"))
        .header("content-type", "application/json")
        .header("x-amzn-sagemaker-session-id", "NEW_SESSION")
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-infergate-backend"], "sm");
    let opened = res.headers()["x-amzn-sagemaker-new-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let id = opened.split(';').next().unwrap().trim().to_string();
    // The session's backend is slow: the hedge must not go elsewhere.
    h.sm.faults()
        .update(|f| f.latency = Duration::from_millis(500));
    let res = h
        .client
        .post(h.url("/v1/predict/sessions"))
        .header("content-type", "application/json")
        .header("x-amzn-sagemaker-session-id", &id)
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-infergate-backend"], "sm");
    assert_eq!(sm2.counters().requests(), 0, "the session went to sm2");
    h.shutdown().await;
}

#[tokio::test]
async fn a_backend_marked_cold_gets_traffic_again() {
    // Cold is checked again after one ejection time.
    let h = harness(config(
        "",
        "ejection_time = \"300ms\"",
        &[route("pair", &["sm", "hf"], "")],
    ))
    .await;
    // One 503 from hf, answered by failing over to sm.
    h.hf.faults().fail_next(1, InjectedError::Status(503));
    wait_until("hf to answer its 503", || async {
        call(&h, "pair").await;
        h.hf.counters().errors_injected() == 1
    })
    .await;
    assert_eq!(state(&h, "pair", "hf").await, "cold");
    // hf is healthy again: it must eventually serve again.
    let before = h.hf.counters().requests();
    wait_until("hf to get traffic again", || async {
        call(&h, "pair").await;
        h.hf.counters().requests() > before
    })
    .await;
    h.shutdown().await;
}
