//! The response cache in Redis (`routes.<name>.cache.store = "redis"`, on
//! the Redis of `[rate_limits]`), end to end through a real redis-server:
//! two gateway processes with the same config in front of one HF emulator
//! share their answers (the emulator's counters do not move on a hit),
//! never between two clients, token streams included; a value that does
//! not decode is a miss; Redis stopped mid-run is what `on_store_error`
//! says, and hits come back with it; and the same on a Redis Cluster.

#[cfg(test)]
mod common;

#[cfg(test)]
use common::child::ChildGateway;
#[cfg(test)]
use common::redis::{RedisCluster, RedisServer};
#[cfg(test)]
use common::{hf_emulator, wait_for, wait_until, BODY};
#[cfg(test)]
use infergate::emulator::EmulatorHandle;

#[cfg(test)]
const WEB: &str = "cache-redis-web-app-key-5d21";
#[cfg(test)]
const BATCH: &str = "cache-redis-batch-job-key-0be7";

/// A gateway's config: route `cached` on the emulator at `hf` with its
/// cache in the Redis that `store` names (its lines of `[rate_limits]`),
/// two clients (`batch-job` an admin, for `/metrics`).
#[cfg(test)]
fn config(hf: &str, store: &str, on_error: &str) -> String {
    let head = common::redis::gateway_config(hf, store, on_error);
    format!(
        r#"{head}
[routes.cached]
backends = ["hf"]
cache = {{ ttl = "10m", store = "redis" }}

[clients.web-app]
api_key = "{WEB}"

[clients.batch-job]
api_key = "{BATCH}"
admin = true
"#
    )
}

/// One answer, read whole.
#[cfg(test)]
#[derive(Debug)]
struct Got {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

#[cfg(test)]
impl Got {
    /// A header's value; "" when absent.
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map_or("", |v| v.to_str().unwrap_or("(not text)"))
    }

    /// `x-infergate-cache`.
    fn cache(&self) -> &str {
        self.header("x-infergate-cache")
    }
}

/// `BODY` to `path` on the gateway at `base`, as the client of `key`.
#[cfg(test)]
async fn send(base: &str, path: &str, key: &str) -> Got {
    let res = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(BODY)
        .send()
        .await
        .unwrap();
    Got {
        status: res.status().as_u16(),
        headers: res.headers().clone(),
        body: res.text().await.unwrap(),
    }
}

/// A redis-server, the emulator, and two gateway processes of `config`
/// with `on_error` in front of both.
#[cfg(test)]
async fn two_gateways(on_error: &str) -> (RedisServer, EmulatorHandle, [ChildGateway; 2]) {
    let redis = RedisServer::start();
    let hf = hf_emulator().await;
    let config = config(&hf.url(), &redis.store(), on_error);
    let gateways = [(); 2].map(|()| ChildGateway::start(&config, &[]));
    (redis, hf, gateways)
}

#[cfg(test)]
async fn predict(base: &str, key: &str) -> Got {
    send(base, "/v1/predict/cached", key).await
}

/// Waits until Redis holds `n` keys: a store is a `SET` sent after the
/// answer.
#[cfg(test)]
async fn wait_keys(redis: &RedisServer, n: i64) {
    wait_for(&format!("{n} keys in Redis"), || {
        redis.integer("DBSIZE") == Some(n)
    })
    .await;
}

/// The route's count of store errors of `operation` on the gateway at
/// `base`.
#[cfg(test)]
async fn store_errors(base: &str, operation: &str) -> f64 {
    let series =
        format!(r#"infergate_cache_store_errors_total{{operation="{operation}",route="cached"}}"#);
    common::net::metric(&reqwest::Client::new(), base, BATCH, &series).await
}

/// An answer gateway 1 stored is a hit on gateway 2, with no upstream
/// call; the other client's same request is its own miss. The key names
/// neither client: it is the route and a hash.
#[tokio::test]
async fn an_answer_stored_through_one_gateway_is_a_hit_on_the_other() {
    let (redis, hf, [one, two]) = two_gateways("allow").await;
    let miss = predict(&one.base, WEB).await;
    assert_eq!((miss.status, miss.cache()), (200, "miss"), "{miss:?}");
    assert_eq!(hf.counters().requests(), 1);
    wait_keys(&redis, 1).await;
    let hit = predict(&two.base, WEB).await;
    assert_eq!((hit.status, hit.cache()), (200, "hit"), "{hit:?}");
    assert_eq!(hf.counters().requests(), 1, "a hit calls no backend");
    assert_eq!(hit.body, miss.body);
    assert_eq!(hit.header("content-type"), miss.header("content-type"));
    assert_eq!(hit.header("x-infergate-backend"), "hf");
    assert_eq!(hit.header("x-infergate-attempts"), "0");
    let age: u64 = hit.header("age").parse().unwrap();
    assert!(age < 60, "Age: {age}");

    // The other client: never served the first one's answer.
    assert_eq!(predict(&two.base, BATCH).await.cache(), "miss");
    assert_eq!(hf.counters().requests(), 2);
    wait_keys(&redis, 2).await;
    assert_eq!(predict(&one.base, BATCH).await.cache(), "hit");
    assert_eq!(hf.counters().requests(), 2);

    let key = redis.bulk("RANDOMKEY").unwrap();
    let hash = key.strip_prefix("infergate:cache:cached:").unwrap();
    let hex = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
    assert!(hex, "{key}");
    let left = redis.integer(&format!("PTTL {key}")).unwrap();
    assert!(
        (540_000..=600_000).contains(&left),
        "PTTL {left}: not the ttl"
    );
    for gw in [&one, &two] {
        assert_eq!(store_errors(&gw.base, "get").await, 0.0);
        assert_eq!(store_errors(&gw.base, "set").await, 0.0);
    }
}

/// A token stream kept through gateway 1 is replayed by gateway 2 as the
/// same events, with no upstream call.
#[tokio::test]
async fn a_token_stream_stored_through_one_gateway_replays_identically_on_the_other() {
    let (redis, hf, [one, two]) = two_gateways("allow").await;
    let path = "/v1/predict/cached/stream";
    let miss = send(&one.base, path, WEB).await;
    assert_eq!((miss.status, miss.cache()), (200, "miss"), "{miss:?}");
    assert_eq!(miss.header("content-type"), "text/event-stream");
    assert!(miss.body.matches("data:").count() > 1, "{}", miss.body);
    assert!(!miss.body.contains("event: error"), "{}", miss.body);
    wait_keys(&redis, 1).await;

    let hit = send(&two.base, path, WEB).await;
    assert_eq!((hit.status, hit.cache()), (200, "hit"), "{hit:?}");
    assert_eq!(hit.body, miss.body, "the same events, in order");
    assert_eq!(hit.header("content-type"), "text/event-stream");
    assert_eq!(hf.counters().stream_requests(), 1);
    // A stream is not the unary answer to the same body.
    assert_eq!(predict(&two.base, WEB).await.cache(), "miss");
}

/// A value that does not decode (another version's, or anything else
/// under the key) is a miss, counted as a store error, and the miss's
/// answer takes its place.
#[tokio::test]
async fn a_value_that_does_not_decode_is_a_miss_and_replaced() {
    let (redis, hf, [gw, _]) = two_gateways("deny").await;
    assert_eq!(predict(&gw.base, WEB).await.cache(), "miss");
    wait_keys(&redis, 1).await;
    let key = redis.bulk("RANDOMKEY").unwrap();
    let garbage = redis.command(&format!("SET {key} not-an-entry PX 600000"));
    assert_eq!(garbage.as_deref(), Some("+OK\r\n"));

    let res = predict(&gw.base, WEB).await;
    assert_eq!((res.status, res.cache()), (200, "miss"), "{res:?}");
    assert_eq!(hf.counters().requests(), 2);
    assert_eq!(store_errors(&gw.base, "get").await, 1.0);
    // The entry's value is binary: told apart by its length.
    wait_for("the answer to replace the value", || {
        let len = redis.integer(&format!("STRLEN {key}"));
        len.is_some_and(|n| n > 12)
    })
    .await;
    assert_eq!(predict(&gw.base, WEB).await.cache(), "hit");
    assert_eq!(hf.counters().requests(), 2);
}

/// Redis stopped: with "allow" the request goes to the backend as if the
/// route had no cache (`bypass`, a store error counted), with "deny" it
/// is 503 as the rate limits' would be. Redis back (empty), the answers
/// are stored and hit again, with no restart of the gateways.
#[tokio::test]
async fn redis_stopped_mid_run_is_what_on_store_error_says_and_hits_resume() {
    let (mut redis, hf, [allow, _]) = two_gateways("allow").await;
    let deny = ChildGateway::start(&config(&hf.url(), &redis.store(), "deny"), &[]);
    assert_eq!(predict(&allow.base, WEB).await.cache(), "miss");
    wait_keys(&redis, 1).await;
    assert_eq!(predict(&deny.base, WEB).await.cache(), "hit");

    redis.stop();
    let calls = hf.counters().requests();
    for _ in 0..3 {
        let res = predict(&allow.base, WEB).await;
        assert_eq!((res.status, res.cache()), (200, "bypass"), "{res:?}");
    }
    assert_eq!(hf.counters().requests(), calls + 3, "served by the backend");
    assert!(store_errors(&allow.base, "get").await >= 3.0);
    let denied = predict(&deny.base, WEB).await;
    assert_eq!((denied.status, denied.cache()), (503, "bypass"));
    assert_eq!(denied.header("retry-after"), "1");
    let body: serde_json::Value = serde_json::from_str(&denied.body).unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_unavailable", "{body}");
    assert_eq!(hf.counters().requests(), calls + 3, "deny calls no backend");
    // Requests all through the outage: each second one asks Redis again.
    for _ in 0..25 {
        predict(&allow.base, WEB).await;
        predict(&deny.base, WEB).await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let _redis = RedisServer::start_on(redis.port);
    // Past the second the gateways take Redis to be down, the first lookup
    // finds it, though the connection it is sent on broke while Redis was
    // away.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let first = predict(&allow.base, WEB).await;
    assert_eq!((first.status, first.cache()), (200, "miss"), "{first:?}");
    let first = predict(&deny.base, WEB).await;
    assert_eq!(first.status, 200, "{first:?}");
    wait_until("a hit on the deny gateway again", || async {
        predict(&deny.base, WEB).await.cache() == "hit"
    })
    .await;
    let log = allow.stop();
    let warnings = log.matches("response cache: the store failed").count();
    assert!(warnings >= 1, "no warning:\n{log}");
    assert!(!log.contains("redis://"), "a Redis URL in the log:\n{log}");
    assert!(!log.contains(WEB), "a client key in the log");
}

/// On a Redis Cluster, each entry is on the node of its key's slot, its
/// value and age read there in one pipelined round trip.
#[tokio::test]
async fn a_cache_on_a_redis_cluster_is_shared_too() {
    let cluster = RedisCluster::start();
    let hf = hf_emulator().await;
    let config = config(&hf.url(), &cluster.store(), "deny");
    let [one, two] = [(); 2].map(|()| ChildGateway::start(&config, &[]));
    for key in [WEB, BATCH] {
        assert_eq!(predict(&one.base, key).await.cache(), "miss");
    }
    wait_for("both answers in the Cluster", || {
        let sizes = cluster
            .nodes
            .iter()
            .map(|n| n.integer("DBSIZE").unwrap_or(0));
        sizes.sum::<i64>() == 2
    })
    .await;
    for key in [WEB, BATCH] {
        let hit = predict(&two.base, key).await;
        assert_eq!((hit.status, hit.cache()), (200, "hit"), "{hit:?}");
    }
    assert_eq!(hf.counters().requests(), 2);
    assert_eq!(store_errors(&two.base, "get").await, 0.0);
}
