//! Routes over several backends: the traffic shared by weight, failover
//! when one is cold or slow, and active health checks taking one out of
//! rotation and back.

use std::time::Duration;

use crate::common::{
    error_json, patch, wait_until, with_route_keys, Harness, BODY, CONFIG, HF_TOKEN,
};
use crate::expected_answer;
use infergate::emulator::FaultConfig;
use serde_json::Value;

#[tokio::test]
async fn both_backends_answer_alike_and_share_the_traffic() {
    let h = Harness::start().await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..40 {
        let res = h.predict("both", BODY).await;
        assert_eq!(res.status(), 200);
        seen.insert(
            res.headers()["x-infergate-backend"]
                .to_str()
                .unwrap()
                .to_string(),
        );
        let v: Value = res.json().await.unwrap();
        assert_eq!(v, expected_answer());
    }
    assert_eq!(
        seen.len(),
        2,
        "40 requests at equal weight reach both backends"
    );
    assert_eq!(h.sm.counters().requests() + h.hf.counters().requests(), 40);
    h.shutdown().await;
}

#[tokio::test]
async fn weights_are_respected() {
    let config = patch(CONFIG,
        "[routes.both]\nbackends = [\"sm\", \"hf\"]",
        "[routes.both]\nbackends = [{ backend = \"sm\", weight = 1000 }, { backend = \"hf\", weight = 1 }]",
    );
    let h = Harness::with_config(config).await;
    for _ in 0..30 {
        assert_eq!(h.predict("both", BODY).await.status(), 200);
    }
    // With p2c the weight divides each backend's load: hf wins a draw only
    // when sm is a thousand times busier, which sequential requests never make it.
    assert!(h.hf.counters().requests() < 5);
    h.shutdown().await;
}

#[tokio::test]
async fn cold_hf_endpoint_fails_over_to_sagemaker() {
    let h = Harness::start().await;
    h.hf.faults().set(FaultConfig {
        cold_start: Some(Duration::from_secs(60)),
        ..FaultConfig::default()
    });
    let mut failed_over = 0;
    for _ in 0..10 {
        let res = h.predict("both", BODY).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["x-infergate-backend"], "sm");
        failed_over += u32::from(res.headers()["x-infergate-attempts"] == "2");
    }
    assert!(h.hf.counters().requests() > 0, "the cold backend was tried");
    assert!(failed_over > 0);
    h.shutdown().await;
}

#[tokio::test]
async fn per_try_timeout_fails_over_and_alone_is_upstream_timeout() {
    let config = with_route_keys(
        CONFIG,
        "both",
        "per_try_timeout = \"200ms\"\nbalance = \"priority\"",
    );
    let config = with_route_keys(&config, "sm", "per_try_timeout = \"100ms\"");
    let h = Harness::with_config(config).await;
    h.sm.faults().update(|f| f.latency = Duration::from_secs(2));
    let res = h.predict("both", BODY).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-infergate-backend"], "hf");
    assert_eq!(res.headers()["x-infergate-attempts"], "2");

    let res = h.predict("sm", BODY).await;
    assert_eq!(res.status(), 504);
    assert_eq!(res.headers()["x-infergate-attempts"], "3");
    assert_eq!(error_json(res).await["type"], "upstream_timeout");
    h.shutdown().await;
}

#[tokio::test]
async fn active_health_checks_take_a_failing_endpoint_out_and_back() {
    let config = patch(CONFIG,
        "token = \"${HF_TOKEN}\"\n",
        "token = \"${HF_TOKEN}\"\nhealth_check_interval = \"50ms\"\nhealth_check_timeout = \"1s\"\n",
    );
    let h = Harness::with_config(config).await;
    // The check fails (the endpoint now refuses the token): unhealthy.
    h.hf.set_token(Some("rotated-elsewhere".into()));
    wait_until("hf to be unhealthy", || async {
        h.backend_state("both", "hf").await == "unhealthy"
    })
    .await;
    let before = h.hf.counters().requests();
    for _ in 0..10 {
        let res = h.predict("both", BODY).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["x-infergate-backend"], "sm");
    }
    // Only health checks reached hf, no predictions.
    let seen: Vec<String> =
        h.hf.counters()
            .recent()
            .into_iter()
            .skip(before as usize)
            .map(|r| r.path)
            .collect();
    assert!(seen.iter().all(|p| p == "/health"), "{seen:?}");
    // The check passes again: back in rotation.
    h.hf.set_token(Some(HF_TOKEN.into()));
    wait_until("hf to be available again", || async {
        h.backend_state("both", "hf").await == "available"
    })
    .await;
    h.shutdown().await;
}
