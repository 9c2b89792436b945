//! Client keys on the predict door and the operator paths: who may call,
//! which routes, and every refusal in the JSON error shape, before any
//! route is looked up and without a key ever leaving the gateway.

use crate::common::{error_json, Harness, CONFIG};

const WEB_KEY: &str = "web-canary-key-0001";
const WEB_NEXT_KEY: &str = "web-canary-key-0002";
const BATCH_KEY: &str = "batch-canary-key-0003";

/// Two clients: `web` (two keys while rotating, routes `hf` and `s*`) and
/// `batch` (every route, its key given as a hash, an admin).
fn config() -> String {
    let batch_hash = hex::encode(infergate::config::key_hash(BATCH_KEY.as_bytes()).0);
    let clients = format!(
        r#"
[clients.web]
api_keys = ["{WEB_KEY}", "${{WEB_NEXT_KEY}}"]
routes = ["hf", "s*"]

[clients.batch]
api_key_sha256 = "{batch_hash}"
admin = true
"#
    );
    format!("{CONFIG}{clients}")
}

async fn harness() -> Harness {
    let setup = crate::common::Setup {
        config: config(),
        extra_vars: vec![("WEB_NEXT_KEY".to_string(), WEB_NEXT_KEY.to_string())],
        ..crate::common::Setup::default()
    };
    Harness::with(setup).await
}

async fn post(h: &Harness, path: &str, auth: Option<(&str, &str)>) -> reqwest::Response {
    let mut req = h
        .client
        .post(h.url(path))
        .header("content-type", "application/json")
        .body(r#"{"inputs":"one stable inference URL"}"#);
    if let Some((name, value)) = auth {
        req = req.header(name, value);
    }
    req.send().await.unwrap()
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

#[tokio::test]
async fn without_a_valid_key_the_answer_is_401_before_any_route_lookup() {
    let h = harness().await;
    let wrong = bearer("not-a-key");
    let revoked = bearer("web-canary-key-0000");
    let cases = [
        None,
        Some(("authorization", wrong.as_str())),
        Some(("authorization", revoked.as_str())),
        Some(("authorization", "Basic d2ViOmtleQ==")),
        Some(("x-api-key", "")),
    ];
    for auth in cases {
        for path in [
            "/v1/predict/hf",
            "/v1/predict/no-such-route",
            "/v1/predict/hf/stream",
        ] {
            let res = post(&h, path, auth).await;
            assert_eq!(res.status(), 401, "{path} {auth:?}");
            assert_eq!(
                res.headers()["www-authenticate"],
                r#"Bearer realm="infergate""#
            );
            let err = error_json(res).await;
            assert_eq!(err["type"], "unauthenticated", "{err}");
            // A caller without a key learns no route name, real or not.
            assert!(err.get("route").is_none(), "{err}");
            assert!(!err.to_string().contains("no-such-route"), "{err}");
        }
    }
    assert_eq!(h.hf.counters().requests(), 0, "nothing reached a backend");
    h.shutdown().await;
}

#[tokio::test]
async fn every_key_of_a_client_is_accepted_in_either_header() {
    let h = harness().await;
    let web = bearer(WEB_KEY);
    let next = bearer(WEB_NEXT_KEY);
    for auth in [
        ("authorization", web.as_str()),
        ("authorization", next.as_str()),
        ("x-api-key", WEB_KEY),
        ("x-api-key", BATCH_KEY),
    ] {
        let res = post(&h, "/v1/predict/hf", Some(auth)).await;
        assert_eq!(res.status(), 200, "{auth:?}");
        assert_eq!(res.headers()["x-infergate-backend"], "hf");
    }
    // The streaming door too, with either of the rotated keys.
    for auth in [("x-api-key", WEB_KEY), ("authorization", next.as_str())] {
        let res = post(&h, "/v1/predict/hf/stream", Some(auth)).await;
        assert_eq!(res.status(), 200, "{auth:?}");
        assert!(res.text().await.unwrap().contains("data:"));
    }
    // The backend got the gateway's own token, never a client's key.
    let last = h.hf.counters().last().unwrap();
    assert_eq!(
        last.headers["authorization"],
        format!("Bearer {}", crate::common::HF_TOKEN)
    );
    assert!(
        last.headers.get("x-api-key").is_none(),
        "{:?}",
        last.headers
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_route_outside_the_clients_list_is_403_and_an_unknown_one_404() {
    let h = harness().await;
    let web = bearer(WEB_KEY);
    let auth = Some(("authorization", web.as_str()));
    // "sm" matches "s*"; "both" and "js" are not the client's.
    assert_eq!(post(&h, "/v1/predict/sm", auth).await.status(), 200);
    for route in ["both", "js"] {
        for door in ["", "/stream"] {
            let res = post(&h, &format!("/v1/predict/{route}{door}"), auth).await;
            assert_eq!(res.status(), 403, "{route}{door}");
            let err = error_json(res).await;
            assert_eq!(err["type"], "forbidden");
            assert_eq!(err["route"], route);
        }
    }
    let res = post(&h, "/v1/predict/no-such-route", auth).await;
    assert_eq!(res.status(), 404);
    // batch may use every route.
    let res = post(&h, "/v1/predict/both", Some(("x-api-key", BATCH_KEY))).await;
    assert_eq!(res.status(), 200);
    h.shutdown().await;
}

#[tokio::test]
async fn probes_stay_open_and_the_operator_paths_need_a_key() {
    let h = harness().await;
    for path in ["/healthz", "/readyz"] {
        let res = h.client.get(h.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
    }
    for path in ["/metrics", "/v1/routes"] {
        let get = |key: Option<&str>| {
            let req = h.client.get(h.url(path));
            match key {
                Some(key) => req.bearer_auth(key),
                None => req,
            }
        };
        let res = get(None).send().await.unwrap();
        assert_eq!(res.status(), 401, "{path}");
        // A valid key, but not an admin's: backend URLs are not its to see.
        let res = get(Some(WEB_KEY)).send().await.unwrap();
        assert_eq!(res.status(), 403, "{path}");
        let err = error_json(res).await;
        assert_eq!(err["type"], "forbidden", "{err}");
        assert!(err["message"].as_str().unwrap().contains("admin"), "{err}");
        let res = get(Some(BATCH_KEY)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
    }
    h.shutdown().await;
}

/// `server.admin_listen`: the operator paths move there, open (where it
/// listens guards it), and the main port no longer has them.
#[tokio::test]
async fn an_admin_listener_serves_the_operator_paths_and_only_those() {
    let admin = format!("127.0.0.1:{}", crate::common::net::free_port());
    let config = crate::common::patch_first(
        &config(),
        "[server]",
        &format!("[server]\nadmin_listen = \"{admin}\""),
    );
    let setup = crate::common::Setup {
        config,
        extra_vars: vec![("WEB_NEXT_KEY".to_string(), WEB_NEXT_KEY.to_string())],
        ..crate::common::Setup::default()
    };
    let h = Harness::with(setup).await;
    // Bound as the gateway starts serving, after the main listener.
    crate::common::wait_until("the admin listener", || async {
        reqwest::get(format!("http://{admin}/healthz"))
            .await
            .is_ok()
    })
    .await;
    for path in ["/healthz", "/readyz", "/metrics", "/v1/routes"] {
        let res = h
            .client
            .get(format!("http://{admin}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path} on the admin listener");
    }
    let routes = h.client.get(format!("http://{admin}/v1/routes")).send();
    let routes: serde_json::Value = routes.await.unwrap().json().await.unwrap();
    assert!(routes.to_string().contains("hf"), "{routes}");
    // No predict door there, key or not.
    let res = h
        .client
        .post(format!("http://{admin}/v1/predict/hf"))
        .bearer_auth(WEB_KEY)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    // On the main port: gone for everyone, an admin's key included; the
    // probes stay.
    for path in ["/metrics", "/v1/routes"] {
        let res = h
            .client
            .get(h.url(path))
            .bearer_auth(BATCH_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "{path} on the main port");
    }
    let res = h.client.get(h.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    // The admin listener's connections are not counted as the clients'.
    let accepted = || async {
        let metrics = h.client.get(format!("http://{admin}/metrics")).send();
        let metrics = metrics.await.unwrap().text().await.unwrap();
        metrics
            .lines()
            .filter(|l| l.starts_with("infergate_connections_accepted_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let before = accepted().await;
    for _ in 0..5 {
        // A client of its own each time: a new connection.
        let res = reqwest::get(format!("http://{admin}/healthz"))
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    assert_eq!(accepted().await, before, "admin connections counted");
    h.shutdown().await;
}

#[tokio::test]
async fn requests_are_counted_by_client_name_and_no_key_is_shown() {
    let h = harness().await;
    let web = bearer(WEB_KEY);
    post(&h, "/v1/predict/hf", Some(("authorization", web.as_str()))).await;
    post(
        &h,
        "/v1/predict/both",
        Some(("authorization", web.as_str())),
    )
    .await;
    let metrics = h.get_text_as("/metrics", Some(BATCH_KEY)).await;
    let count = |line: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(line))
            .unwrap_or_else(|| panic!("no {line} in\n{metrics}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        count(r#"infergate_client_requests_total{client="web",outcome="success",route="hf"}"#),
        "1"
    );
    // The 403 is the client's error, counted under the route it asked for.
    assert_eq!(
        count(
            r#"infergate_client_requests_total{client="web",outcome="client_error",route="both"}"#
        ),
        "1"
    );
    // Every route batch may use is there from the start.
    count(r#"infergate_client_requests_total{client="batch",outcome="success",route="js"}"#);
    for key in [WEB_KEY, WEB_NEXT_KEY, BATCH_KEY] {
        assert!(!metrics.contains(key), "a key in /metrics");
    }
    h.shutdown().await;
}

/// `POST /v1/reload` on the main port: an admin client's only, and never
/// anyone's when keys are off; a gateway not started from a file says it
/// has nothing to reload.
#[tokio::test]
async fn a_reload_on_the_main_port_is_an_admin_clients_only() {
    let h = harness().await;
    let post = |key: Option<&str>| {
        let req = h.client.post(h.url("/v1/reload"));
        match key {
            Some(key) => req.bearer_auth(key),
            None => req,
        }
        .send()
    };
    assert_eq!(post(None).await.unwrap().status(), 401);
    assert_eq!(post(Some(WEB_KEY)).await.unwrap().status(), 403);
    let res = post(Some(BATCH_KEY)).await.unwrap();
    assert_eq!(res.status(), 409, "no file to read again in-process");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["type"], "reload_unavailable", "{body}");
    h.shutdown().await;
    // Keys off: the metrics stay open, a reload does not.
    let open = Harness::start().await;
    let res = open.client.get(open.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = open
        .client
        .post(open.url("/v1/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    open.shutdown().await;
}
