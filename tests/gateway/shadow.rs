//! Shadow traffic (`routes.<name>.shadow`) end to end: a route over the
//! SageMaker emulator copies its requests to the Hugging Face emulator and
//! compares the answers. The client's answers never change; what was
//! compared shows in `/v1/routes` and the metrics, exactly when every
//! request is shadowed.

use std::time::Duration;

use infergate::emulator::{FaultConfig, InjectedError};
use serde_json::{json, Value};

use crate::common::net::refusing_port;
use crate::common::wait::wait_until;
use crate::common::{Harness, Setup, BODY, CONFIG};

/// Routes `shadowed` (every request copied to `hf`), `narrow` (the same,
/// one shadow call at a time), `down` (copied to `gone`, a refusing port)
/// `never` (percent 0), `brief` (a 300 ms route timeout, which bounds its
/// shadow calls too) and `kept` (with a response cache), all served by
/// `sm`; and `gone`, served by the
/// refusing port.
fn config() -> String {
    format!(
        r#"{CONFIG}
[backends.gone]
kind = "huggingface"
url = "http://127.0.0.1:${{DOWN_PORT}}"

[routes.shadowed]
backends = ["sm"]
shadow = [{{ backend = "hf", percent = 100 }}]

[routes.narrow]
backends = ["sm"]
shadow = [{{ backend = "hf", percent = 100.0 }}]
shadow_max_in_flight = 1

[routes.down]
backends = ["sm"]
shadow = [{{ backend = "gone", percent = 100 }}]

[routes.gone]
backends = ["gone"]

[routes.never]
backends = ["sm"]
shadow = [{{ backend = "hf", percent = 0 }}]

[routes.brief]
backends = ["sm"]
timeout = "300ms"
shadow = [{{ backend = "hf", percent = 100 }}]

[routes.kept]
backends = ["sm"]
cache = {{ ttl = "10m" }}
shadow = [{{ backend = "hf", percent = 100 }}]
"#
    )
}

async fn harness() -> (Harness, tokio::net::TcpSocket) {
    harness_with("").await
}

/// The gateway on [`config`] with `more` routes, and the socket that keeps
/// the refusing port taken.
pub(super) async fn harness_with(more: &str) -> (Harness, tokio::net::TcpSocket) {
    let (socket, port) = refusing_port();
    let h = Harness::with(Setup {
        config: config() + more,
        extra_vars: vec![("DOWN_PORT".to_owned(), port.to_string())],
        ..Setup::default()
    })
    .await;
    (h, socket)
}

/// The shadow entry of `route` in `/v1/routes`.
pub(super) async fn shadow_view(h: &Harness, route: &str) -> Value {
    let v = h.get_json("/v1/routes").await;
    let r = v["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == route)
        .unwrap()
        .clone();
    r["shadow"][0].clone()
}

/// match + differ + shadow_error + dropped of `route`'s shadow.
pub(super) async fn settled(h: &Harness, route: &str) -> u64 {
    let s = shadow_view(h, route).await;
    ["match", "differ", "shadow_error", "dropped"]
        .iter()
        .map(|k| s[k].as_u64().unwrap())
        .sum()
}

pub(super) async fn wait_settled(h: &Harness, route: &str, n: u64) {
    wait_until(&format!("{n} shadow outcomes of {route}"), || async {
        settled(h, route).await >= n
    })
    .await;
}

/// A [`BODY`]-like request whose prompt is `prompt`.
pub(super) fn body(prompt: &str) -> String {
    json!({"inputs": prompt, "parameters": {"max_new_tokens": 8}}).to_string()
}

/// Status, backend, attempts and body of one request.
async fn ask(h: &Harness, route: &str, body: &str) -> (u16, String, String, String) {
    let res = h.predict(route, body).await;
    let header = |n: &str| res.headers()[n].to_str().unwrap().to_owned();
    let (backend, attempts) = (
        header("x-infergate-backend"),
        header("x-infergate-attempts"),
    );
    (
        res.status().as_u16(),
        backend,
        attempts,
        res.text().await.unwrap(),
    )
}

#[tokio::test]
async fn identical_models_agree_and_marked_inputs_differ_exactly() {
    let (h, _socket) = harness().await;
    for i in 0..5 {
        let (status, backend, _, _) = ask(&h, "shadowed", &body(&format!("plain words {i}"))).await;
        assert_eq!((status, backend.as_str()), (200, "sm"));
    }
    wait_settled(&h, "shadowed", 5).await;
    let s = shadow_view(&h, "shadowed").await;
    assert_eq!(
        (&s["match"], &s["differ"], &s["agreement"]),
        (&json!(5), &json!(0), &json!(1.0))
    );
    assert_eq!(h.hf.counters().requests(), 5, "one shadow call each");

    h.hf.faults().set(FaultConfig {
        alter_inputs_containing: Some("MARK".into()),
        ..FaultConfig::default()
    });
    for i in 0..10 {
        let prompt = match i % 4 == 0 && i < 9 {
            true => format!("MARK one {i}"),
            false => format!("one {i}"),
        };
        let (status, _, _, got) = ask(&h, "shadowed", &body(&prompt)).await;
        assert_eq!(status, 200);
        // The client gets the primary's answer, never the shadow's.
        assert!(!got.contains("altered"), "{got}");
    }
    wait_settled(&h, "shadowed", 15).await;
    let s = shadow_view(&h, "shadowed").await;
    assert_eq!(
        s,
        json!({"backend": "hf", "percent": 100.0, "match": 12, "differ": 3,
               "shadow_error": 0, "dropped": 0, "agreement": 0.8})
    );
    let metrics = h.get_text("/metrics").await;
    let line = |outcome: &str| {
        format!(
            r#"infergate_shadow_requests_total{{outcome="{outcome}",route="shadowed",shadow="hf"}}"#
        )
    };
    assert!(
        metrics.contains(&format!("{} 12\n", line("match"))),
        "{metrics}"
    );
    assert!(metrics.contains(&format!("{} 3\n", line("differ"))));
    assert!(metrics.contains(&format!("{} 0\n", line("dropped"))));
    assert!(metrics
        .contains(r#"infergate_shadow_duration_seconds_count{route="shadowed",shadow="hf"} 15"#));
    assert!(
        metrics.contains(r#"infergate_shadow_similarity_count{route="shadowed",shadow="hf"} 15"#)
    );
    // The client's metrics count the client's requests only.
    assert!(metrics.contains(
        r#"infergate_requests_total{backend="sm",code_class="2xx",outcome="success",route="shadowed"} 15"#
    ));
}

#[tokio::test]
async fn a_shadow_that_is_down_changes_nothing_for_the_client() {
    let (h, _socket) = harness().await;
    let plain = ask(&h, "sm", BODY).await;
    for _ in 0..3 {
        assert_eq!(ask(&h, "down", BODY).await, plain);
    }
    wait_settled(&h, "down", 3).await;
    let s = shadow_view(&h, "down").await;
    assert_eq!(
        (&s["shadow_error"], &s["agreement"]),
        (&json!(3), &Value::Null)
    );
    // The shadow's failures are not its backend's: where it serves a
    // route of its own, its passive health has not moved.
    let view = h.backend_view("gone", "gone").await;
    assert_eq!(
        (&view["consecutive_failures"], &view["state"]),
        (&json!(0), &json!("available")),
        "{view}"
    );
}

#[tokio::test]
async fn shadow_calls_past_the_limit_are_dropped_and_counted() {
    let (h, _socket) = harness().await;
    h.hf.faults().set(FaultConfig {
        latency: Duration::from_millis(1500),
        ..FaultConfig::default()
    });
    for _ in 0..5 {
        let started = std::time::Instant::now();
        assert_eq!(ask(&h, "narrow", BODY).await.0, 200);
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "the client never waits on the shadow"
        );
    }
    wait_settled(&h, "narrow", 5).await;
    let s = shadow_view(&h, "narrow").await;
    assert_eq!((&s["match"], &s["dropped"]), (&json!(1), &json!(4)));
    assert_eq!(h.hf.counters().requests(), 1);
}

#[tokio::test]
async fn percent_zero_sends_nothing() {
    let (h, _socket) = harness().await;
    for _ in 0..5 {
        assert_eq!(ask(&h, "never", BODY).await.0, 200);
    }
    // The shadowed route's call settles after these would have.
    ask(&h, "shadowed", BODY).await;
    wait_settled(&h, "shadowed", 1).await;
    assert_eq!(settled(&h, "never").await, 0);
    assert_eq!(h.hf.counters().requests(), 1);
}

#[tokio::test]
async fn a_shadow_slower_than_the_route_timeout_is_a_shadow_error() {
    let (h, _socket) = harness().await;
    h.hf.faults().set(FaultConfig {
        latency: Duration::from_secs(3),
        ..FaultConfig::default()
    });
    for _ in 0..2 {
        assert_eq!(ask(&h, "brief", BODY).await.0, 200);
    }
    let started = std::time::Instant::now();
    wait_settled(&h, "brief", 2).await;
    // Cut at the route's timeout, long before the shadow would answer.
    assert!(started.elapsed() < Duration::from_secs(2));
    let s = shadow_view(&h, "brief").await;
    assert_eq!(
        (&s["shadow_error"], &s["match"], &s["agreement"]),
        (&json!(2), &json!(0), &Value::Null)
    );
    let metrics = h.get_text("/metrics").await;
    assert!(metrics.contains(
        r#"infergate_shadow_requests_total{outcome="shadow_error",route="brief",shadow="hf"} 2"#
    ));
}

#[tokio::test]
async fn a_shadow_that_refuses_the_input_differs_and_one_that_fails_is_an_error() {
    let (h, _socket) = harness().await;
    // A candidate whose model refuses what the primary accepts (a 422 of
    // its own) answers otherwise: a difference, not an error.
    h.hf.faults().fail_next(1, InjectedError::ValidationError);
    assert_eq!(ask(&h, "shadowed", BODY).await.0, 200);
    wait_settled(&h, "shadowed", 1).await;
    // One that fails as a service (a 503) gave no answer to compare.
    h.hf.faults().fail_next(1, InjectedError::Status(503));
    assert_eq!(ask(&h, "shadowed", BODY).await.0, 200);
    wait_settled(&h, "shadowed", 2).await;
    let s = shadow_view(&h, "shadowed").await;
    assert_eq!(
        (&s["match"], &s["differ"], &s["shadow_error"]),
        (&json!(0), &json!(1), &json!(1)),
        "{s}"
    );
}

#[tokio::test]
async fn a_miss_is_stored_and_shadowed_and_a_hit_is_not_shadowed() {
    let (h, _socket) = harness().await;
    let first = h.predict("kept", BODY).await;
    assert_eq!(first.headers()["x-infergate-cache"], "miss");
    let first = first.text().await.unwrap();
    wait_settled(&h, "kept", 1).await;
    let second = h.predict("kept", BODY).await;
    assert_eq!(second.headers()["x-infergate-cache"], "hit");
    assert_eq!(second.text().await.unwrap(), first);
    // The shadow compared the miss with the same bytes the cache kept.
    let s = shadow_view(&h, "kept").await;
    assert_eq!((&s["match"], &s["differ"]), (&json!(1), &json!(0)), "{s}");
    assert_eq!(h.sm.counters().requests(), 1);
    assert_eq!(h.hf.counters().requests(), 1, "a hit is not shadowed");
}
