//! The response cache of a route (`routes.<name>.cache`): a successful
//! answer kept (in memory, or in Redis) and served again, without an
//! upstream call, to the same request.
//!
//! It sits in the request core ([`crate::core`]), so every door reaches it
//! with the request as the core has it: two doors share an entry only when
//! they would send the same upstream call. The key ([`RouteCache::key`]) is
//! a SHA-256 of the route, the client (never shared between clients unless
//! the route says `shared = true`; an anonymous caller is its own client),
//! the operation, stream or not, the body, `Content-Type`, `Accept` and the
//! `X-Amzn-SageMaker-*` headers.
//!
//! Only what is safe to serve again is kept: a 2xx answer, without the
//! backend's `Cache-Control: no-store` (nor `private` on a `shared` cache;
//! the backend passes those on, [`refuses_storing`]); a body
//! only once it arrived whole ([`record`]), a token stream only once it
//! ended well (never one cut, or ended by an error event). A request with
//! `Cache-Control: no-cache` or `no-store` (or `Pragma: no-cache`) is
//! neither served from the cache nor stored, and so are a request in a
//! SageMaker stateful session (`X-Amzn-SageMaker-Session-Id`) and a
//! sampling request ([`sampling`]) unless the route says `sampling = true`.
//!
//! Where the answers are kept is `store`: in this process ([`memory`]: a
//! moka cache weighed in bytes, `max_bytes` its capacity), or in the
//! gateway's one Redis, the one `[rate_limits]` configures, shared by
//! every gateway that uses it ([`remote`]: `max_bytes` the most one answer
//! may take, Redis's `maxmemory` the bound of the whole; its values in
//! [`encode`]'s form). Either way `ttl` is each entry's time to live. A
//! lookup in Redis that fails or is late is [`Lookup::Unavailable`]: the
//! core then does as `rate_limits.on_store_error` says. The cache lives in
//! the route's state ([`crate::route::Route`]), so a reload that keeps the
//! route keeps its entries, and a changed route starts empty in memory;
//! Redis keeps its entries by route name, so a route whose backends changed
//! meets the answers stored before until their ttl runs out (change
//! `rate_limits.key_prefix` to start afresh).

mod control;
mod encode;
mod memory;
pub mod record;
mod remote;
mod sampling;

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest::{Context, SHA256};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::config::{CacheConfig, CacheStore};
use crate::metrics::{CacheSeries, CacheStoreErrors};
use crate::redis_store::RedisStore;
use memory::Memory;
use remote::Remote;

pub use control::{bypass_requested, may_store, refuses_storing};
pub use sampling::is_sampling;

/// The largest answer kept, whatever `max_bytes` allows: a body is copied
/// as it passes, and a copy this size is already a lot of memory to hold
/// per request in flight.
pub const MAX_ENTRY_BYTES: usize = 32 << 20;

/// What the cache did with a request, for `x-infergate-cache` and the
/// metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Served from the cache; stored this long ago.
    Hit { age: Duration },
    /// Sent to a backend; its answer is stored if it may be.
    Miss,
    /// Not cacheable: neither looked up nor stored.
    Bypass,
}

impl CacheOutcome {
    /// The `x-infergate-cache` value.
    pub fn header(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            CacheOutcome::Hit { .. } => "hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Bypass => "bypass",
        })
    }
}

/// What the cache reads of a request (the core's, which it is kept apart
/// from: the core calls in here, not the other way round).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub route: &'a str,
    /// The client's config name; `None` for an anonymous caller.
    pub caller: Option<&'a str>,
    /// The operation's name ([`crate::config::Operation::as_str`]).
    pub op: &'a str,
    pub stream: bool,
    pub body: &'a [u8],
    pub content_type: Option<&'a HeaderValue>,
    pub accept: Option<&'a HeaderValue>,
    pub sagemaker_headers: &'a [(HeaderName, HeaderValue)],
    /// The client asked for no cache ([`bypass_requested`]).
    pub no_cache: bool,
}

/// A request's key: the SHA-256 of what makes its upstream call.
pub type Key = [u8; 32];

/// One stored answer.
#[derive(Debug)]
pub struct Entry {
    pub status: StatusCode,
    /// The upstream headers, as the door got them.
    pub headers: HeaderMap,
    pub body: Stored,
    /// The config name of the backend that answered.
    pub backend: Option<String>,
    /// Bytes it takes in the store, for the weigher and the entry limit.
    weight: u32,
}

/// A stored body.
#[derive(Debug)]
pub enum Stored {
    Full(Bytes),
    /// A token stream's events, in order, as the core's stream gave them.
    Events {
        first: Bytes,
        rest: Vec<Bytes>,
        json_lines: bool,
    },
}

impl Entry {
    pub fn new(
        status: StatusCode,
        headers: HeaderMap,
        body: Stored,
        backend: Option<String>,
    ) -> Self {
        let head: usize = headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum();
        let body_bytes = match &body {
            Stored::Full(b) => b.len(),
            Stored::Events { first, rest, .. } => {
                first.len() + rest.iter().map(|e| e.len() + 32).sum::<usize>()
            }
        };
        // The key, the entry itself and the store's own bookkeeping.
        let overhead = 256 + backend.as_ref().map_or(0, String::len);
        let weight = u32::try_from(head + body_bytes + overhead).unwrap_or(u32::MAX);
        Self {
            status,
            headers,
            body,
            backend,
            weight,
        }
    }
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    /// The stored answer, stored `age` ago.
    Hit {
        entry: Arc<Entry>,
        age: Duration,
    },
    Miss,
    /// The store (Redis) failed or was late: neither served nor stored,
    /// as `rate_limits.on_store_error` says.
    Unavailable,
}

/// Where a route's answers are.
enum Store {
    Memory(Memory),
    Redis(Arc<Remote>),
}

/// The gateway's Redis, for a cache with `store = "redis"`, and the
/// route's count of its failures.
pub struct InRedis {
    pub redis: Arc<RedisStore>,
    pub errors: CacheStoreErrors,
}

/// One route's cache.
pub struct RouteCache {
    store: Store,
    config: CacheConfig,
    series: CacheSeries,
}

impl std::fmt::Debug for RouteCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteCache")
            .field("config", &self.config)
            .field("entries", &self.entry_count())
            .finish_non_exhaustive()
    }
}

impl RouteCache {
    /// An empty cache of route `route` as `config` sets it, counted in
    /// `series`; with `store = "redis"`, on `redis` (the validated config
    /// has one for it: without, the answers stay in memory, and an error
    /// says so).
    pub fn new(
        route: &str,
        config: &CacheConfig,
        series: CacheSeries,
        redis: Option<InRedis>,
    ) -> Self {
        // A route built afresh by a reload starts its gauge from its own 0.
        series.bytes.set(0);
        let remote = match (&config.store, redis) {
            (CacheStore::Redis(_), Some(r)) => {
                Some(Remote::new(r.redis, route, config.ttl, r.errors))
            }
            (CacheStore::Redis(_), None) => {
                let why = "no Redis in [rate_limits]; its answers are kept in memory";
                tracing::error!(route, "the route's cache: {why}");
                None
            }
            (CacheStore::Memory, _) => None,
        };
        let store = match remote {
            Some(remote) => Store::Redis(Arc::new(remote)),
            None => Store::Memory(Memory::new(config, series.evictions.clone())),
        };
        Self {
            store,
            config: config.clone(),
            series,
        }
    }

    /// Whether an answer with `headers` (a `stream`'s or a whole one) may
    /// be kept for `caller` ([`may_store`]): anonymous callers share their
    /// entries, as a `shared` route's clients do.
    pub fn may_store(&self, headers: &HeaderMap, stream: bool, caller: Option<&str>) -> bool {
        may_store(headers, stream, self.config.shared || caller.is_none())
    }

    /// The most bytes one answer may take to be stored.
    pub fn entry_limit(&self) -> usize {
        usize::try_from(self.config.max_bytes)
            .unwrap_or(usize::MAX)
            .min(MAX_ENTRY_BYTES)
    }

    /// The request's key, or `None` when it bypasses the cache (the
    /// client said `no-cache`/`no-store`, it belongs to a SageMaker
    /// session, whose answers are the session's state, or it is a sampling
    /// request on a route that does not cache those). Counts a bypass.
    pub fn key(&self, req: &Request<'_>) -> Option<Key> {
        let session = crate::protocol::sagemaker::session_id(req.sagemaker_headers).is_some();
        if req.no_cache || session || (!self.config.sampling && is_sampling(req.op, req.body)) {
            self.series.bypass.inc();
            return None;
        }
        let mut h = Context::new(&SHA256);
        let mut part = |bytes: &[u8]| {
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        part(req.route.as_bytes());
        match (req.caller, self.config.shared) {
            (_, true) => part(b"shared"),
            (Some(caller), false) => {
                part(b"client");
                part(caller.as_bytes());
            }
            (None, false) => part(b"anonymous"),
        }
        part(req.op.as_bytes());
        part(if req.stream { b"stream" } else { b"unary" });
        for value in [req.content_type, req.accept] {
            match value {
                Some(v) => {
                    part(b"some");
                    part(v.as_bytes());
                }
                None => part(b"none"),
            }
        }
        let mut sagemaker: Vec<&(HeaderName, HeaderValue)> = req.sagemaker_headers.iter().collect();
        sagemaker.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        part(&(sagemaker.len() as u64).to_le_bytes());
        for (name, value) in sagemaker {
            part(name.as_str().as_bytes());
            part(value.as_bytes());
        }
        part(req.body);
        let digest = h.finish();
        let mut key = [0; 32];
        key.copy_from_slice(digest.as_ref());
        Some(key)
    }

    /// The stored answer of `key`, counting a hit, a miss, or (the store
    /// unavailable) a bypass. `worker` is the calling worker's index,
    /// whose connection to Redis is used.
    pub async fn get(&self, key: &Key, worker: usize) -> Lookup {
        let found = match &self.store {
            Store::Memory(memory) => match memory.get(key) {
                Some((entry, age)) => Lookup::Hit { entry, age },
                None => Lookup::Miss,
            },
            Store::Redis(remote) => remote.get(key, worker).await,
        };
        match &found {
            Lookup::Hit { .. } => self.series.hit.inc(),
            Lookup::Miss => self.series.miss.inc(),
            Lookup::Unavailable => self.series.bypass.inc(),
        }
        found
    }

    /// Stores `entry` under `key` if it fits: at once in memory, by a task
    /// of its own (on worker `worker`'s connection) in Redis.
    pub fn insert(&self, key: Key, entry: Entry, worker: usize) {
        if entry.weight as usize > self.entry_limit() {
            return;
        }
        match &self.store {
            Store::Memory(memory) => memory.insert(key, entry),
            Store::Redis(remote) => remote.insert(key, entry, worker),
        }
    }

    /// Sets `infergate_cache_bytes` (at scrape time) to what the memory
    /// store holds; a Redis store leaves it at 0 (Redis's own
    /// `used_memory` says what it holds).
    pub fn set_gauges(&self) {
        if let Store::Memory(memory) = &self.store {
            self.series
                .bytes
                .set(i64::try_from(memory.bytes()).unwrap_or(i64::MAX));
        }
    }

    /// Entries this process holds (0 with a Redis store), for tests and
    /// `Debug`.
    pub fn entry_count(&self) -> u64 {
        match &self.store {
            Store::Memory(memory) => memory.entry_count(),
            Store::Redis(_) => 0,
        }
    }
}

/// `events` in one buffer of their own: an event read from the upstream is
/// a slice of the chunk it came in, which it would keep alive (and unweighed)
/// for the entry's whole life.
pub fn compact(events: Vec<Bytes>) -> Vec<Bytes> {
    let mut all = bytes::BytesMut::with_capacity(events.iter().map(Bytes::len).sum());
    for e in &events {
        all.extend_from_slice(e);
    }
    let all = all.freeze();
    let mut at = 0;
    events
        .iter()
        .map(|e| {
            let part = all.slice(at..at + e.len());
            at += e.len();
            part
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    const KEY: Key = [7; 32];

    fn cache(store: CacheStore, redis: Option<InRedis>) -> (RouteCache, crate::metrics::Metrics) {
        let config = CacheConfig {
            ttl: Duration::from_secs(60),
            store,
            max_bytes: 4096,
            shared: false,
            sampling: false,
        };
        let metrics = crate::metrics::Metrics::new().unwrap();
        let cache = RouteCache::new("r", &config, metrics.cache_series("r"), redis);
        (cache, metrics)
    }

    fn entry(body: &'static [u8]) -> Entry {
        let body = Stored::Full(Bytes::from_static(body));
        Entry::new(StatusCode::OK, HeaderMap::new(), body, None)
    }

    /// moka's clock cannot be paused; the ttl is held on tokio's, which
    /// can, and `Age` with it.
    #[tokio::test(start_paused = true)]
    async fn an_entry_as_old_as_its_ttl_is_a_miss_on_a_paused_clock() {
        let (cache, _metrics) = cache(CacheStore::Memory, None);
        cache.insert(KEY, entry(b"{}"), 0);
        tokio::time::advance(Duration::from_secs(59)).await;
        match cache.get(&KEY, 0).await {
            Lookup::Hit { entry, age } => {
                assert_eq!(age, Duration::from_secs(59));
                assert!(matches!(&entry.body, Stored::Full(b) if b == "{}"));
            }
            other => panic!("{other:?}"),
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(matches!(cache.get(&KEY, 0).await, Lookup::Miss));
        assert_eq!(cache.entry_count(), 0, "the expired entry was dropped");
        assert_eq!(cache.series.hit.get(), 1);
        assert_eq!(cache.series.miss.get(), 1);
    }

    #[tokio::test]
    async fn an_answer_past_max_bytes_is_not_stored_and_the_gauge_weighs_the_rest() {
        let (cache, _metrics) = cache(CacheStore::Memory, None);
        cache.insert(KEY, entry(&[b'x'; 4096]), 0);
        assert!(matches!(cache.get(&KEY, 0).await, Lookup::Miss));
        cache.insert(KEY, entry(b"{}"), 0);
        cache.set_gauges();
        let weight = i64::from(entry(b"{}").weight);
        assert_eq!(cache.series.bytes.get(), weight);
    }

    #[tokio::test]
    async fn entries_past_max_bytes_are_evicted_and_counted() {
        let (cache, _metrics) = cache(CacheStore::Memory, None);
        static BODY: [u8; 1000] = [b'x'; 1000];
        for i in 0..10u8 {
            cache.insert([i; 32], entry(&BODY), 0);
        }
        let held = cache.entry_count();
        cache.set_gauges();
        assert!(
            (1..=3).contains(&held),
            "{held} entries of ~1.3 KB in 4 KiB"
        );
        assert!(cache.series.bytes.get() <= 4096);
        assert_eq!(cache.series.evictions.get(), 10 - held);
    }

    #[tokio::test]
    async fn no_answer_over_32_mib_is_kept_whatever_max_bytes_allows() {
        let config = CacheConfig {
            ttl: Duration::from_secs(60),
            store: CacheStore::Memory,
            max_bytes: 1 << 30,
            shared: false,
            sampling: false,
        };
        let metrics = crate::metrics::Metrics::new().unwrap();
        let cache = RouteCache::new("r", &config, metrics.cache_series("r"), None);
        assert_eq!(cache.entry_limit(), MAX_ENTRY_BYTES);
        assert_eq!(MAX_ENTRY_BYTES, 32 << 20);
        let big = Bytes::from(vec![b'x'; MAX_ENTRY_BYTES]);
        let over = Entry::new(StatusCode::OK, HeaderMap::new(), Stored::Full(big), None);
        cache.insert(KEY, over, 0);
        assert!(matches!(cache.get(&KEY, 0).await, Lookup::Miss));
        let small = Bytes::from(vec![b'x'; 1 << 20]);
        let within = Entry::new(StatusCode::OK, HeaderMap::new(), Stored::Full(small), None);
        cache.insert(KEY, within, 0);
        assert!(matches!(cache.get(&KEY, 0).await, Lookup::Hit { .. }));
    }

    /// Nothing listens on port 1: each lookup is unavailable, a bypass and
    /// a store error.
    #[tokio::test]
    async fn a_redis_that_does_not_answer_is_unavailable_and_counted() {
        let redis = crate::config::RedisStoreConfig {
            urls: vec![crate::secret::Secret::new("redis://127.0.0.1:1".to_owned())],
            mode: crate::config::RedisMode::Single,
            shown: "127.0.0.1:1".into(),
            timeout: Duration::from_millis(200),
            key_prefix: "infergate".into(),
        };
        let store = Arc::new(RedisStore::new(&redis, 1).unwrap());
        let metrics = crate::metrics::Metrics::new().unwrap();
        let errors = metrics.cache_store_errors("r");
        let in_redis = InRedis {
            redis: store,
            errors: errors.clone(),
        };
        let (cache, _metrics) = cache(CacheStore::Redis(redis), Some(in_redis));
        for _ in 0..3 {
            assert!(matches!(cache.get(&KEY, 0).await, Lookup::Unavailable));
        }
        assert_eq!(errors.get.get(), 3);
        assert_eq!(cache.series.bypass.get(), 3);
        assert_eq!((cache.series.hit.get(), cache.series.miss.get()), (0, 0));
    }

    #[test]
    fn compacted_events_are_the_same_events() {
        let chunk = Bytes::from_static(b"abcdefgh");
        let events = vec![chunk.slice(0..3), Bytes::new(), chunk.slice(5..8)];
        let compacted = compact(events.clone());
        assert_eq!(compacted, events);
        // One buffer of their own: none points into the chunk, and each
        // starts where the one before ended.
        let inside = chunk.as_ptr_range();
        assert!(compacted.iter().all(|e| !inside.contains(&e.as_ptr())));
        let ends = |e: &Bytes| e.as_ptr_range().end;
        assert_eq!(ends(&compacted[0]), compacted[2].as_ptr());
    }

    #[test]
    fn a_client_asks_for_a_bypass_with_no_cache_or_no_store() {
        assert!(bypass_requested(&headers(&[("cache-control", "no-cache")])));
        assert!(bypass_requested(&headers(&[(
            "cache-control",
            "max-age=0, No-Store"
        )])));
        assert!(bypass_requested(&headers(&[("pragma", "no-cache")])));
        assert!(bypass_requested(&headers(&[(
            "cache-control",
            "max-age=0"
        )])));
        assert!(!bypass_requested(&headers(&[(
            "cache-control",
            "max-age=60"
        )])));
        assert!(!bypass_requested(&HeaderMap::new()));
    }

    #[test]
    fn no_store_is_never_kept_and_private_only_for_its_client() {
        let no_store = headers(&[
            ("cache-control", "max-age=5"),
            ("cache-control", "no-store"),
        ]);
        let private = headers(&[("cache-control", "private=\"x\", max-age=5")]);
        for stream in [false, true] {
            assert!(refuses_storing(&no_store, stream) && refuses_storing(&private, stream));
            for shared in [false, true] {
                assert!(!may_store(&no_store, stream, shared));
                assert!(may_store(
                    &headers(&[("set-cookie", "AWSALB=x")]),
                    stream,
                    shared
                ));
                assert!(may_store(&HeaderMap::new(), stream, shared));
            }
            assert!(may_store(&private, stream, false));
            assert!(!may_store(&private, stream, true));
        }
        let public = headers(&[("cache-control", "public, max-age=60")]);
        assert!(!refuses_storing(&public, false));
    }

    #[test]
    fn a_private_answer_is_kept_for_a_client_never_for_anonymous_callers() {
        let (cache, _metrics) = cache(CacheStore::Memory, None);
        let private = headers(&[("cache-control", "private")]);
        assert!(cache.may_store(&private, false, Some("web")));
        assert!(!cache.may_store(&private, false, None));
        assert!(cache.may_store(&HeaderMap::new(), false, None));
    }

    #[test]
    fn a_whole_answer_to_revalidate_is_not_kept_but_an_event_streams_no_cache_is() {
        for value in ["no-cache", "max-age=0", "public, s-maxage=\"0\""] {
            let h = headers(&[("cache-control", value)]);
            assert!(refuses_storing(&h, false), "{value}");
            assert!(!may_store(&h, false, false), "{value}");
        }
        let sse = headers(&[("cache-control", "no-cache")]);
        assert!(!refuses_storing(&sse, true));
        assert!(may_store(&sse, true, true));
        assert!(may_store(
            &headers(&[("cache-control", "max-age=60")]),
            false,
            true
        ));
    }
}
