//! The whole exposition: it parses, every family is documented, and every
//! label value is in a closed set: no path, request id, token, query or
//! message reaches `/metrics`.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::{error_json, with_route_keys, Harness, BODY, CONFIG, HF_TOKEN, SECRET_KEY};
use crate::metrics::{scrape_until, STATES};
use crate::traffic::{error_events, stream, stream_body};
use infergate::emulator::InjectedError;
use prometheus_parse::Value;
use serde_json::Value as Json;

const ROUTES: &[&str] = &["sm", "hf", "js", "both"];

const BACKENDS: &[&str] = &["sm", "js", "hf"];

const CODE_CLASSES: &[&str] = &["1xx", "2xx", "3xx", "4xx", "5xx"];

const OUTCOMES: &[&str] = &["success", "client_error", "upstream_error", "gateway_error"];

/// `FailureKind::as_str`: the reasons of retries and results of attempts.
const FAILURE_KINDS: &[&str] = &[
    "upstream_unreachable",
    "upstream_connection_error",
    "upstream_timeout",
    "rate_limited",
    "backend_unavailable",
    "model_error",
    "upstream_auth_rejected",
    "credentials_unavailable",
    "upstream_rejected",
    "upstream_error",
    "upstream_protocol_error",
    "invalid_input",
    "internal_error",
];

const STREAM_ERROR_KINDS: &[&str] = &[
    "model_stream_error",
    "internal_stream_failure",
    "model_error",
    "protocol",
    "connection",
    "idle_timeout",
];

/// Every family the gateway exports and its label names.
const FAMILIES: &[(&str, &str, &[&str])] = &[
    (
        "infergate_requests_total",
        "counter",
        &["route", "backend", "code_class", "outcome"],
    ),
    (
        "infergate_request_duration_seconds",
        "histogram",
        &["route"],
    ),
    ("infergate_overhead_seconds", "histogram", &["route"]),
    (
        "infergate_upstream_duration_seconds",
        "histogram",
        &["backend", "code_class"],
    ),
    (
        "infergate_upstream_attempts_total",
        "counter",
        &["backend", "result"],
    ),
    ("infergate_retries_total", "counter", &["route", "reason"]),
    (
        "infergate_retry_budget_exhausted_total",
        "counter",
        &["route"],
    ),
    (
        "infergate_failovers_total",
        "counter",
        &["route", "from", "to"],
    ),
    ("infergate_hedges_total", "counter", &["route"]),
    ("infergate_shed_total", "counter", &["route"]),
    ("infergate_backend_in_flight", "gauge", &["backend"]),
    ("infergate_backend_state", "gauge", &["backend", "state"]),
    ("infergate_backend_ejections_total", "counter", &["backend"]),
    (
        "infergate_stream_time_to_first_byte_seconds",
        "histogram",
        &["route", "backend"],
    ),
    (
        "infergate_stream_events_total",
        "counter",
        &["route", "backend"],
    ),
    (
        "infergate_stream_errors_total",
        "counter",
        &["route", "backend", "kind"],
    ),
    (
        "infergate_credentials_refresh_total",
        "counter",
        &["backend", "result"],
    ),
    ("infergate_build_info", "gauge", &["version"]),
    (
        "infergate_connections_accepted_total",
        "counter",
        &["worker"],
    ),
    (
        "infergate_client_requests_total",
        "counter",
        &["client", "route", "outcome"],
    ),
    (
        "infergate_rate_limited_total",
        "counter",
        &["route", "limit"],
    ),
    (
        "infergate_ratelimit_store_errors_total",
        "counter",
        &["operation"],
    ),
    ("infergate_ratelimit_decisions_total", "counter", &["path"]),
    ("infergate_config_reloads_total", "counter", &["result"]),
    ("infergate_config_info", "gauge", &["hash"]),
    (
        "infergate_cache_requests_total",
        "counter",
        &["route", "result"],
    ),
    ("infergate_cache_bytes", "gauge", &["route"]),
    ("infergate_cache_evictions_total", "counter", &["route"]),
    (
        "infergate_cache_store_errors_total",
        "counter",
        &["route", "operation"],
    ),
    (
        "infergate_shadow_requests_total",
        "counter",
        &["route", "shadow", "outcome"],
    ),
    (
        "infergate_shadow_similarity",
        "histogram",
        &["route", "shadow"],
    ),
    (
        "infergate_shadow_duration_seconds",
        "histogram",
        &["route", "shadow"],
    ),
    ("infergate_shadow_log_lines_total", "counter", &[]),
    ("infergate_shadow_log_dropped_total", "counter", &[]),
];

// === the whole exposition ===

/// Canaries that must never become a label value.
const ODD_ROUTE: &str = "canary-route-9f1e";

const ODD_REQUEST_ID: &str = "canary-request-id-4d2a";

const CLIENT_TOKEN: &str = "canary-client-token-55d0";

const ODD_QUERY: &str = "canary-query-7d3b";

const ODD_PATH: &str = "canary-path-6e2a";

#[tokio::test]
async fn the_whole_exposition_parses_and_every_label_value_is_bounded() {
    let config = format!(
        "{}\n[routes.solo]\nbackends = [\"sm\"]\nretry_budget_ratio = 0.0\n\
         retry_budget_min_per_second = 0\ncache = {{ ttl = \"1m\" }}\n\
         shadow = [{{ backend = \"hf\", percent = 100 }}]\n",
        with_route_keys(CONFIG, "both", "balance = \"priority\"")
    );
    let h = Harness::with_config(config).await;
    let mut messages: Vec<String> = Vec::new();
    let odd = |path: String| {
        h.client
            .post(h.url(&path))
            .header("content-type", "application/json")
            .header("x-request-id", ODD_REQUEST_ID)
            .header("authorization", format!("Bearer {CLIENT_TOKEN}"))
            .header("x-api-key", CLIENT_TOKEN)
            .header("cookie", format!("session={CLIENT_TOKEN}"))
            .body(BODY)
    };
    // Unknown routes of every shape, plain and streaming.
    for path in [
        format!("/v1/predict/{ODD_ROUTE}"),
        format!("/v1/predict/{ODD_ROUTE}/stream"),
        format!("/v1/predict/{ODD_ROUTE}%0Ainjected%22label"),
        "/v1/predict/..%2F..%2Fetc%2Fpasswd".to_string(),
        format!("/v1/predict/a/{ODD_ROUTE}/c"),
        format!("/v1/predict/{}", "x".repeat(2000)),
        "/v1/predict/%F0%9F%92%A5/stream".to_string(),
        format!("/v1/predict/{ODD_ROUTE}?token={ODD_QUERY}"),
    ] {
        let res = odd(path.clone()).send().await.unwrap();
        assert_eq!(res.status(), 404, "{path}");
        assert_eq!(res.headers()["x-request-id"], ODD_REQUEST_ID);
        let e = error_json(res).await;
        assert_eq!(e["type"], "unknown_route");
        messages.push(e["message"].as_str().unwrap().to_string());
    }
    // Not a predict path at all; a wrong method.
    let res = h
        .client
        .get(h.url(&format!("/{ODD_PATH}?token={ODD_QUERY}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let res = h
        .client
        .get(h.url(&format!("/v1/predict/{ODD_ROUTE}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    // Known routes with a query string, an odd request id and client keys.
    for route in ["sm", "hf", "js", "both"] {
        let res = odd(format!("/v1/predict/{route}?api_key={ODD_QUERY}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{route}");
    }
    // Errors with messages of their own.
    h.sm.faults().fail_next(
        1,
        InjectedError::ModelError {
            original_status: 400,
        },
    );
    let res = odd("/v1/predict/sm".into()).send().await.unwrap();
    assert_eq!(res.status(), 400);
    messages.push(error_json(res).await["message"].as_str().unwrap().into());
    h.hf.faults().fail_next(1, InjectedError::Status(422));
    let res = odd("/v1/predict/hf".into()).send().await.unwrap();
    assert_eq!(res.status(), 422);
    messages.push(error_json(res).await["message"].as_str().unwrap().into());
    let res = odd("/v1/predict/js".into())
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    messages.push(error_json(res).await["message"].as_str().unwrap().into());
    let res = odd("/v1/predict/sm".into())
        .header("x-infergate-timeout-ms", "soon")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    messages.push(error_json(res).await["message"].as_str().unwrap().into());
    // A retry, a failover, an exhausted budget, a rejected token.
    h.sm.faults()
        .fail_next(2, InjectedError::ThrottlingException);
    assert_eq!(
        odd("/v1/predict/both".into())
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        odd("/v1/predict/solo".into())
            .send()
            .await
            .unwrap()
            .status(),
        429
    );
    h.hf.set_token(Some("another-token".into()));
    let res = odd("/v1/predict/hf".into()).send().await.unwrap();
    assert_eq!(res.status(), 502);
    messages.push(error_json(res).await["message"].as_str().unwrap().into());
    h.hf.set_token(Some(HF_TOKEN.into()));
    // Streams, one ended by an error.
    h.sm.faults().update(|f| f.stream_error_after = Some(3));
    let (status, _, sse) = stream(&h, "sm", &stream_body(10)).await;
    assert_eq!((status, error_events(&sse)), (200, 1));
    let (status, _, _) = stream(&h, "hf", &stream_body(10)).await;
    assert_eq!(status, 200);
    let event = sse
        .split("\n\n")
        .find_map(|b| b.strip_prefix("event: error\ndata:"))
        .unwrap();
    let event: Json = serde_json::from_str(event).unwrap();
    messages.push(event["error"]["message"].as_str().unwrap().into());

    let m = scrape_until(&h, "the stream tallies", |m| {
        m.counted("infergate_stream_events_total").len() == 2
    })
    .await;

    // Every sample line was read: none was skipped as unparseable.
    let sample_lines = m
        .text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .count();
    let parsed: usize = m
        .scrape
        .samples
        .iter()
        .map(|s| match &s.value {
            Value::Histogram(b) => b.len(),
            _ => 1,
        })
        .sum();
    assert_eq!(
        sample_lines, parsed,
        "lines the parser skipped in\n{}",
        m.text
    );
    // Each family has its HELP and TYPE, the TYPE the documented one.
    let mut types: BTreeMap<&str, &str> = BTreeMap::new();
    for line in m.text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut parts = line.split_whitespace().skip(2);
        types.insert(parts.next().unwrap(), parts.next().unwrap());
    }
    let documented: BTreeMap<&str, &str> = FAMILIES.iter().map(|(n, t, _)| (*n, *t)).collect();
    for (name, ty) in &types {
        assert_eq!(
            documented.get(name),
            Some(ty),
            "family {name} in\n{}",
            m.text
        );
        assert!(m.scrape.docs.contains_key(*name), "no HELP for {name}");
    }
    // With this traffic, every family but ejections and shedding shows (and
    // the clients' requests: this config has no client).
    let shown: BTreeSet<&str> = types.keys().copied().collect();
    let expected: BTreeSet<&str> = FAMILIES
        .iter()
        .map(|(n, _, _)| *n)
        .filter(|n| {
            !matches!(
                *n,
                "infergate_backend_ejections_total"
                    | "infergate_shed_total"
                    | "infergate_hedges_total"
                    | "infergate_client_requests_total"
                    // Set by `infergate serve`, which reads a file.
                    | "infergate_config_info"
                    // Only for a cache in Redis, which this config has not.
                    | "infergate_cache_store_errors_total"
            )
        })
        .collect();
    assert!(
        expected.is_subset(&shown),
        "missing {:?}",
        expected.difference(&shown).collect::<Vec<_>>()
    );

    let routes: BTreeSet<&str> = ROUTES.iter().copied().chain(["solo"]).collect();
    let mut seen_values: BTreeSet<String> = BTreeSet::new();
    for s in &m.scrape.samples {
        let family = FAMILIES
            .iter()
            .find(|(n, _, _)| {
                s.metric == *n
                    || s.metric
                        .strip_suffix("_sum")
                        .or_else(|| s.metric.strip_suffix("_count"))
                        .is_some_and(|base| base == *n)
            })
            .unwrap_or_else(|| panic!("unknown metric {}", s.metric));
        let names: BTreeSet<&str> = s.labels.keys().map(String::as_str).collect();
        let want_names: BTreeSet<&str> = family.2.iter().copied().collect();
        assert_eq!(names, want_names, "labels of {}", s.metric);
        for (k, v) in s.labels.iter() {
            let v = v.as_str();
            let ok = match k.as_str() {
                "route" => routes.contains(v) || v == "unknown",
                "backend" => {
                    BACKENDS.contains(&v) || (v == "none" && family.0 == "infergate_requests_total")
                }
                "from" | "to" => BACKENDS.contains(&v),
                "code_class" => {
                    CODE_CLASSES.contains(&v)
                        || (v == "none" && family.0 == "infergate_upstream_duration_seconds")
                }
                "outcome" if family.0 == "infergate_shadow_requests_total" => {
                    ["match", "differ", "shadow_error", "dropped"].contains(&v)
                }
                "outcome" => OUTCOMES.contains(&v),
                "shadow" => BACKENDS.contains(&v),
                "result" if family.0 == "infergate_config_reloads_total" => {
                    ["applied", "rejected"].contains(&v)
                }
                "result" if family.0 == "infergate_cache_requests_total" => {
                    ["hit", "miss", "bypass"].contains(&v)
                }
                "hash" => v.len() == 16 && v.bytes().all(|b| b.is_ascii_hexdigit()),
                "result" if family.0 == "infergate_credentials_refresh_total" => {
                    ["success", "failure"].contains(&v)
                }
                "result" => ["success", "cancelled"].contains(&v) || FAILURE_KINDS.contains(&v),
                "reason" => FAILURE_KINDS.contains(&v),
                "state" => STATES.contains(&v),
                "kind" => STREAM_ERROR_KINDS.contains(&v),
                "version" => v == env!("CARGO_PKG_VERSION"),
                "limit" => [
                    "client_rate",
                    "client_tokens",
                    "client_in_flight",
                    "client_route_rate",
                    "client_route_tokens",
                    "route_rate",
                    "route_tokens",
                ]
                .contains(&v),
                "operation" if family.0 == "infergate_cache_store_errors_total" => {
                    ["get", "set"].contains(&v)
                }
                "operation" => ["decide", "charge", "refund"].contains(&v),
                "path" => ["waited", "ahead"].contains(&v),
                "client" => h.gateway.config.clients.iter().any(|c| c.name == v),
                "worker" => v
                    .parse::<usize>()
                    .is_ok_and(|w| w < h.gateway.config.server.worker_count()),
                _ => false,
            };
            assert!(ok, "{}: {k}={v:?} is not a bounded value", s.metric);
            seen_values.insert(v.to_string());
        }
    }
    // The odd route names all count as one.
    assert!(seen_values.contains("unknown"));
    assert_eq!(
        m.get(
            "infergate_requests_total",
            &[
                ("route", "unknown"),
                ("backend", "none"),
                ("code_class", "4xx"),
                ("outcome", "client_error"),
            ]
        ),
        Some(8.0)
    );
    // No path, request id, token, query or message anywhere in the text.
    let mut canaries: Vec<String> = vec![
        ODD_ROUTE.into(),
        ODD_REQUEST_ID.into(),
        CLIENT_TOKEN.into(),
        ODD_QUERY.into(),
        ODD_PATH.into(),
        HF_TOKEN.into(),
        SECRET_KEY.into(),
        "another-token".into(),
        "passwd".into(),
        "injected".into(),
        "xxxxxxxxxx".into(),
        "/v1/".into(),
    ];
    canaries.extend(messages);
    for c in &canaries {
        assert!(!c.is_empty());
        assert!(
            !m.text.contains(c.as_str()),
            "{c:?} reached /metrics:\n{}",
            m.text
        );
    }
    h.shutdown().await;
}
