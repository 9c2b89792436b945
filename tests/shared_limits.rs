//! Rate limits shared through a real redis-server (`rate_limits.store =
//! "redis"`): three gateway processes share one bucket exactly; a refused
//! client costs no Redis call until its wait is over; Redis stopped mid-run
//! is what `on_store_error` says, and sharing resumes when it is back; the
//! same on a three-node Redis Cluster, each group on its slot's node.

#[cfg(test)]
mod common;

#[cfg(test)]
mod support {
    //! The config of the gateway processes, paced load.

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    pub const KEY: &str = "shared-limits-canary-key";

    /// A config for one gateway: route `hf` on the emulator, client `web`
    /// with `client_limits` (lines of its table), buckets in the Redis that
    /// `store` names (its lines of `[rate_limits]`).
    pub fn config(hf: &str, store: &str, client_limits: &str, on_error: &str) -> String {
        let head = crate::common::redis::gateway_config(hf, store, on_error);
        format!(
            r#"{head}
    [routes.hf]
    backends = ["hf"]

    [clients.web]
    api_key = "{KEY}"
    admin = true
    {client_limits}
    "#
        )
    }

    pub fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    pub async fn predict(client: &reqwest::Client, base: &str) -> reqwest::Response {
        predict_on(client, base, "hf").await
    }

    /// The `Retry-After` of an answer, in seconds.
    pub fn retry_after(headers: &http::HeaderMap) -> u64 {
        headers["retry-after"].to_str().unwrap().parse().unwrap()
    }

    /// A request of client `web` to `route` on the gateway at `base`.
    pub async fn predict_on(
        client: &reqwest::Client,
        base: &str,
        route: &str,
    ) -> reqwest::Response {
        client
            .post(format!("{base}/v1/predict/{route}"))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(r#"{"inputs":"shared limits"}"#)
            .send()
            .await
            .unwrap()
    }

    /// The statuses of six requests in a row to the gateway at `base`.
    pub async fn statuses(client: &reqwest::Client, base: &str) -> Vec<u16> {
        let mut got = Vec::new();
        for _ in 0..6 {
            got.push(predict(client, base).await.status().as_u16());
        }
        got
    }

    pub async fn metric(client: &reqwest::Client, base: &str, name: &str) -> f64 {
        crate::common::net::metric(client, base, KEY, name).await
    }

    /// 100 requests a second to `route` for `secs` seconds, spread over
    /// `bases` in turn; the count of each status.
    pub async fn paced(bases: &[String], route: &str, secs: u64) -> (usize, usize, usize) {
        let (ok, limited, other) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let client = client();
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut sent = Vec::new();
        for i in 0..(secs * 100) as usize {
            tick.tick().await;
            let (client, base) = (client.clone(), bases[i % bases.len()].clone());
            let (ok, limited, other) = (ok.clone(), limited.clone(), other.clone());
            let route = route.to_owned();
            sent.push(tokio::spawn(async move {
                let res = predict_on(&client, &base, &route).await;
                match res.status().as_u16() {
                    200 => ok.fetch_add(1, Ordering::Relaxed),
                    429 => limited.fetch_add(1, Ordering::Relaxed),
                    _ => other.fetch_add(1, Ordering::Relaxed),
                };
            }));
        }
        for task in sent {
            task.await.unwrap();
        }
        let n = |c: &AtomicUsize| c.load(Ordering::Relaxed);
        (n(&ok), n(&limited), n(&other))
    }
}

#[cfg(test)]
use std::time::Duration;

#[cfg(test)]
use common::child::ChildGateway;
#[cfg(test)]
use common::hf_emulator;
#[cfg(test)]
use common::redis::{RedisCluster, RedisServer};
#[cfg(test)]
use common::wait_until;
#[cfg(test)]
use support::{client, config, metric, paced, predict, predict_on, retry_after, statuses, KEY};

/// A redis-server, the HF emulator, and the config of a gateway in front of
/// both with `client_limits` and `on_store_error`.
#[cfg(test)]
async fn setup(
    client_limits: &str,
    on_error: &str,
) -> (RedisServer, infergate::emulator::EmulatorHandle, String) {
    let redis = RedisServer::start();
    let hf = hf_emulator().await;
    let config = config(&hf.url(), &redis.store(), client_limits, on_error);
    (redis, hf, config)
}

/// 10/s with a burst of 20, offered 100/s for 10 s: GCRA admits the burst
/// and then one request per 100 ms, 120 in all, whichever of the three
/// gateways each request reaches.
#[tokio::test]
async fn three_gateways_sharing_one_redis_admit_what_one_bucket_admits() {
    let (_redis, _hf, config) = setup(
        "rate_limit = { requests_per_second = 10, burst = 20 }",
        "allow",
    )
    .await;
    three_gateways_admit_120(&config, "hf", "one Redis").await;
}

/// Three gateways of `config` offered 100/s for 10 s on `route`: 120 ± 2
/// admitted, with no store error.
#[cfg(test)]
async fn three_gateways_admit_120(config: &str, route: &str, store: &str) {
    let gateways: Vec<ChildGateway> = (0..3).map(|_| ChildGateway::start(config, &[])).collect();
    let bases: Vec<String> = gateways.iter().map(|g| g.base.clone()).collect();
    let (ok, limited, other) = paced(&bases, route, 10).await;
    eprintln!("three gateways, {store}: {ok} admitted, {limited} refused");
    assert_eq!(other, 0, "answers neither 200 nor 429");
    assert!(
        (118..=122).contains(&ok),
        "{ok} admitted ({limited} refused); GCRA admits 120 ± 2"
    );
    for base in &bases {
        let errors = metric(
            &client(),
            base,
            r#"infergate_ratelimit_store_errors_total{operation="decide"}"#,
        )
        .await;
        assert_eq!(errors, 0.0, "{base}");
    }
}

/// Far from its limit a request goes ahead without waiting for Redis,
/// which takes its cost just after; within `rate_limits.headroom` of the
/// limit each request waits for Redis. Either way three gateways in turn
/// admit exactly the burst of 100 (the refill, one request in 100 s, adds
/// none during the test); with `headroom = 1` no request goes ahead.
#[tokio::test]
async fn far_from_the_limit_requests_go_ahead_and_redis_still_counts_each() {
    let redis = RedisServer::start();
    let hf = hf_emulator().await;
    let limit = "rate_limit = { requests_per_second = 0.01, burst = 100 }";
    for (headroom, prefix) in [(None, "ahead"), (Some("1"), "waits")] {
        let mut store = format!("{}\nkey_prefix = \"{prefix}\"", redis.store());
        if let Some(h) = headroom {
            store.push_str(&format!("\nheadroom = {h}"));
        }
        let config = config(&hf.url(), &store, limit, "allow");
        let gateways: Vec<ChildGateway> =
            (0..3).map(|_| ChildGateway::start(&config, &[])).collect();
        let client = client();
        let mut admitted = 0;
        let mut remaining = Vec::new();
        for i in 0..150 {
            let res = predict(&client, &gateways[i % 3].base).await;
            match res.status().as_u16() {
                200 => {
                    admitted += 1;
                    let left = res.headers()["x-ratelimit-remaining"].to_str().unwrap();
                    remaining.push(left.parse::<u32>().unwrap());
                }
                429 => {}
                other => panic!("status {other}"),
            }
        }
        assert_eq!(admitted, 100, "headroom {headroom:?}: {remaining:?}");
        let (mut ahead, mut waited) = (0.0, 0.0);
        for g in &gateways {
            ahead += metric(&client, &g.base, &decisions("ahead")).await;
            waited += metric(&client, &g.base, &decisions("waited")).await;
        }
        eprintln!("headroom {headroom:?}: {ahead} went ahead, {waited} waited");
        match headroom {
            // Each gateway waits for its first answer, and from about
            // half the burst on.
            None => assert!(
                (30.0..=50.0).contains(&ahead),
                "{ahead} went ahead, {waited} waited"
            ),
            Some(_) => assert_eq!(ahead, 0.0, "{waited} waited"),
        }
        // Redis holds every admission: its bucket is spent to the last.
        let key = format!("{prefix}:{{c:web}}:rate");
        assert!(redis.integer(&format!("PTTL {key}")).unwrap() > 0, "{key}");
    }
}

/// Redis stopped while requests go ahead: the first one's charge fails,
/// which is counted and takes the store to be down, so that with
/// `on_store_error = "deny"` the requests after it are refused.
#[tokio::test]
async fn a_charge_after_going_ahead_that_fails_takes_the_store_to_be_down() {
    let mut redis = RedisServer::start();
    let hf = hf_emulator().await;
    let limit = "rate_limit = { requests_per_second = 1000, burst = 1000 }";
    let deny = ChildGateway::start(&config(&hf.url(), &redis.store(), limit, "deny"), &[]);
    let client = client();
    assert_eq!(statuses(&client, &deny.base).await, [200; 6]);
    let waited = metric(&client, &deny.base, &decisions("waited")).await;
    let ahead = metric(&client, &deny.base, &decisions("ahead")).await;
    assert_eq!((waited, ahead), (1.0, 5.0));

    redis.stop();
    // Went ahead on the note it has: not taken back.
    assert_eq!(predict(&client, &deny.base).await.status(), 200);
    wait_until("the failed charge to be counted", || async {
        let errors = metric(
            &client,
            &deny.base,
            r#"infergate_ratelimit_store_errors_total{operation="decide"}"#,
        )
        .await;
        errors >= 1.0
    })
    .await;
    assert_eq!(statuses(&client, &deny.base).await, [503; 6]);
    // Past the second the store is taken to be down, the notes from before
    // the failure still let nothing go ahead: each request waits, and is
    // denied.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(statuses(&client, &deny.base).await, [503; 6]);
    let ahead_after = metric(&client, &deny.base, &decisions("ahead")).await;
    assert_eq!(ahead_after, ahead + 1.0, "went ahead during the outage");

    // Back: one request waits for Redis, and the next go ahead again.
    let _redis = RedisServer::start_on(redis.port);
    wait_until("the gateway to reach Redis again", || async {
        predict(&client, &deny.base).await.status() == 200
    })
    .await;
    assert_eq!(statuses(&client, &deny.base).await, [200; 6]);
    let ahead_back = metric(&client, &deny.base, &decisions("ahead")).await;
    assert!(
        ahead_back > ahead_after,
        "none went ahead once Redis was back"
    );
}

/// The series of `infergate_ratelimit_decisions_total` on `path`.
#[cfg(test)]
fn decisions(path: &str) -> String {
    format!(r#"infergate_ratelimit_decisions_total{{path="{path}"}}"#)
}

/// Once Redis refused a client, its next requests within the wait are
/// refused by the gateway itself, without a Redis call; an admitted answer
/// says how much is left.
#[tokio::test]
async fn a_refused_client_costs_no_redis_call_until_its_wait_is_over() {
    let (redis, _hf, config) = setup(
        "rate_limit = { requests_per_second = 0.5, burst = 2 }",
        "allow",
    )
    .await;
    let gateway = ChildGateway::start(&config, &[]);
    let client = client();
    let first = predict(&client, &gateway.base).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-ratelimit-limit"], "2");
    assert_eq!(first.headers()["x-ratelimit-remaining"], "1");
    assert_eq!(predict(&client, &gateway.base).await.status(), 200);
    let before = redis.evalsha_calls();
    for _ in 0..20 {
        let res = predict(&client, &gateway.base).await;
        assert_eq!(res.status(), 429);
        let after: u64 = retry_after(res.headers());
        assert!((1..=2).contains(&after), "Retry-After {after}");
    }
    let calls = redis.evalsha_calls() - before;
    assert!(calls <= 1, "{calls} Redis calls for 20 refusals");
}

/// Redis stopped: with "allow" every request goes on, counted as a store
/// error; with "deny" the answer is 503. Restarted (its scripts forgotten),
/// the shared limit applies again with no restart of the gateways.
#[tokio::test]
async fn redis_stopped_mid_run_is_what_on_store_error_says_and_sharing_resumes() {
    let mut redis = RedisServer::start();
    let hf = hf_emulator().await;
    let limit = "rate_limit = { requests_per_second = 1, burst = 3 }";
    let allow = ChildGateway::start(&config(&hf.url(), &redis.store(), limit, "allow"), &[]);
    let deny = ChildGateway::start(&config(&hf.url(), &redis.store(), limit, "deny"), &[]);
    let client = client();
    // Shared: the two gateways spend one bucket of 3 between them.
    let mut shared = statuses(&client, &allow.base).await;
    shared.extend(statuses(&client, &deny.base).await);
    assert_eq!(
        shared.iter().filter(|s| **s == 200).count(),
        3,
        "{shared:?}"
    );

    redis.stop();
    // Past the waits the gateways noted, so each asks Redis again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(statuses(&client, &allow.base).await, [200; 6]);
    let denied = statuses(&client, &deny.base).await;
    assert_eq!(denied, [503; 6]);
    let res = predict(&client, &deny.base).await;
    assert_eq!(res.headers()["retry-after"], "1");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_unavailable", "{body}");
    let errors = metric(
        &client,
        &allow.base,
        r#"infergate_ratelimit_store_errors_total{operation="decide"}"#,
    )
    .await;
    assert!(errors >= 6.0, "{errors} store errors counted");
    let log = allow.process.output();
    let warnings = log.matches("no decision from the store").count();
    // Down: decided without asking Redis for a second after each failure.
    assert!(
        (1..=3).contains(&warnings),
        "{warnings} warnings for 6 failures within a second or two:\n{log}"
    );
    assert!(!log.contains(KEY), "a client key in the log");

    let _redis = RedisServer::start_on(redis.port);
    wait_until("the deny gateway to reach Redis again", || async {
        predict(&client, &deny.base).await.status() != 503
    })
    .await;
    let after = statuses(&client, &allow.base).await;
    assert!(
        after.contains(&429),
        "the shared limit did not apply again: {after:?}"
    );
}

/// Tokens are shared too: a stream through one gateway puts the client's
/// bucket in debt, and the other gateway refuses its next request with the
/// wait that debt takes to refill.
#[tokio::test]
async fn a_token_debt_run_up_on_one_gateway_holds_on_the_other() {
    let (_redis, _hf, config) = setup("tokens_per_minute = 60", "allow").await;
    let (one, two) = (
        ChildGateway::start(&config, &[]),
        ChildGateway::start(&config, &[]),
    );
    let client = client();
    let inputs = (0..100)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let res = client
        .post(format!("{}/v1/predict/hf/stream", one.base))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(
            serde_json::json!({"inputs": inputs, "parameters": {"max_new_tokens": 100}})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert_eq!(text.matches("data:").count(), 100, "the stream was cut");
    // The charge is sent to Redis once the stream ended. Each request the
    // other gateway answers meanwhile is charged its own tokens too.
    let charged = std::sync::atomic::AtomicU64::new(0);
    let refused = common::wait_some("the debt to reach the other gateway", || async {
        let res = predict(&client, &two.base).await;
        if res.status() == 200 {
            let tokens = res.headers()["x-generated-tokens"].to_str().unwrap();
            let tokens: u64 = tokens.parse().unwrap();
            charged.fetch_add(tokens, std::sync::atomic::Ordering::Relaxed);
        }
        (res.status() == 429).then_some(res)
    })
    .await;
    let retry: u64 = retry_after(refused.headers());
    // 40 tokens owed at one a second, and what the answers meanwhile cost
    // (less what the wait let refill).
    let owed = 40 + charged.into_inner();
    assert!(
        (35..=owed).contains(&retry),
        "Retry-After {retry}, {owed} owed"
    );
    assert_eq!(refused.headers()["x-ratelimit-limit"], "60");
}

/// A request the route refuses takes nothing from its client's bucket: on
/// one server both groups are decided in one all-or-nothing call; on a
/// Cluster the client's group, admitted by its own node, is given back its
/// token.
#[tokio::test]
async fn a_request_the_route_refuses_costs_its_client_nothing() {
    let (_redis, hf, config) = setup(
        "rate_limit = { requests_per_second = 0.01, burst = 3 }",
        "allow",
    )
    .await;
    route_refusal_costs_the_client_nothing(config).await;
    let cluster = RedisCluster::start();
    let config = support::config(
        &hf.url(),
        &cluster.store(),
        "rate_limit = { requests_per_second = 0.01, burst = 3 }",
        "allow",
    );
    route_refusal_costs_the_client_nothing(config).await;
}

/// Routes `tgi` (a bucket of 1) and `llm` (none) in `config`, whose client
/// has a bucket of 3: a request `tgi` refuses leaves the client its 3.
#[cfg(test)]
async fn route_refusal_costs_the_client_nothing(config: String) {
    let config = config.replacen(
        "[routes.hf]",
        "[routes.llm]\nbackends = [\"hf\"]\n\n[routes.tgi]\nrate_limit = { requests_per_second = 0.01, burst = 1 }",
        1,
    );
    let gateway = ChildGateway::start(&config, &[]);
    let client = client();
    let on = |route: &'static str| {
        let (client, base) = (client.clone(), gateway.base.clone());
        async move { predict_on(&client, &base, route).await.status().as_u16() }
    };
    assert_eq!(on("tgi").await, 200);
    // The route's bucket of 1 is spent: refused by Redis, then by the
    // gateway's own note.
    assert_eq!(on("tgi").await, 429);
    assert_eq!(on("tgi").await, 429);
    // Let a give-back land.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The client has 2 of its 3 left.
    assert_eq!(on("llm").await, 200);
    assert_eq!(on("llm").await, 200);
    assert_eq!(on("llm").await, 429);
}

/// A Redis Cluster: three gateways share the client's bucket exactly (120
/// ± 2, as on one server), and each group's keys live on the node of their
/// slot, the client's (`{c:web}`, slot 5871) on the second node and the
/// route's (`{r:tgi}`, slot 14013) on the third.
#[tokio::test]
async fn three_gateways_sharing_a_redis_cluster_admit_what_one_bucket_admits() {
    let cluster = RedisCluster::start();
    let hf = hf_emulator().await;
    let config = config(
        &hf.url(),
        &cluster.store(),
        "rate_limit = { requests_per_second = 10, burst = 20 }",
        "allow",
    )
    .replacen(
        "[routes.hf]",
        "[routes.tgi]\nrate_limit = { requests_per_second = 1000, burst = 1000 }",
        1,
    );
    three_gateways_admit_120(&config, "tgi", "a Redis Cluster").await;
    assert_eq!(cluster.holder("infergate:{c:web}:rate"), Some(1));
    assert_eq!(cluster.holder("infergate:{r:tgi}:rate"), Some(2));
}

/// A Cluster node down: its decisions are what `on_store_error` says; back
/// (its keys forgotten), the client's bucket is shared again, with no
/// restart of the gateway. And a gateway started while the whole Cluster
/// was down reaches it once it is up.
#[tokio::test]
async fn a_cluster_node_down_is_what_on_store_error_says_and_sharing_resumes() {
    let mut cluster = RedisCluster::start();
    let hf = hf_emulator().await;
    let limit = "rate_limit = { requests_per_second = 1, burst = 3 }";
    let deny = ChildGateway::start(&config(&hf.url(), &cluster.store(), limit, "deny"), &[]);
    let client = client();
    assert_eq!(
        statuses(&client, &deny.base).await,
        [200, 200, 200, 429, 429, 429]
    );

    // The client's keys are on the second node.
    cluster.nodes[1].stop();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(statuses(&client, &deny.base).await, [503; 6]);
    cluster.restart(1);
    cluster.wait_ok();
    wait_until("the gateway to reach the node again", || async {
        predict(&client, &deny.base).await.status() != 503
    })
    .await;
    let after = statuses(&client, &deny.base).await;
    assert!(
        after.contains(&429),
        "the shared limit did not apply again: {after:?}"
    );

    // The whole Cluster down before a gateway starts.
    for node in &mut cluster.nodes {
        node.stop();
    }
    let late = ChildGateway::start(&config(&hf.url(), &cluster.store(), limit, "deny"), &[]);
    assert_eq!(predict(&client, &late.base).await.status(), 503);
    for i in 0..3 {
        cluster.restart(i);
    }
    cluster.wait_ok();
    wait_until("the late gateway to reach the Cluster", || async {
        predict(&client, &late.base).await.status() != 503
    })
    .await;
    let shared = statuses(&client, &late.base).await;
    assert!(shared.contains(&429), "no shared limit: {shared:?}");
}

/// On a Cluster, a request that one node could not decide takes nothing
/// from the group another node admitted: the client's token (second node)
/// is given back when the route's node (the third) is down.
#[tokio::test]
async fn a_group_admitted_when_the_other_node_failed_is_given_back() {
    let mut cluster = RedisCluster::start();
    let hf = hf_emulator().await;
    let config = config(
        &hf.url(),
        &cluster.store(),
        "rate_limit = { requests_per_second = 0.01, burst = 3 }",
        "deny",
    )
    .replacen(
        "[routes.hf]",
        "[routes.tgi]\nrate_limit = { requests_per_second = 1000, burst = 1000 }",
        1,
    );
    let gateway = ChildGateway::start(&config, &[]);
    let client = client();
    cluster.nodes[2].stop();
    // At once, before the Cluster marks the node failed: the client's node
    // admits, the route's cannot answer.
    assert_eq!(
        predict_on(&client, &gateway.base, "tgi").await.status(),
        503
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.restart(2);
    cluster.wait_ok();
    let first = common::wait_some("the gateway to reach the node again", || async {
        let status = predict_on(&client, &gateway.base, "tgi").await.status();
        (status != 503).then_some(status.as_u16())
    })
    .await;
    let mut got = vec![first];
    for _ in 0..3 {
        got.push(
            predict_on(&client, &gateway.base, "tgi")
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(
        got,
        [200, 200, 200, 429],
        "the client's 3 were not all left"
    );
}
