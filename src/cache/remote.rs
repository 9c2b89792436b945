//! The Redis store (`store = "redis"`): a route's answers in the gateway's
//! one Redis ([`RedisStore`], configured in `[rate_limits]`), so every
//! gateway sharing it serves what any of them stored.
//!
//! An entry is one key, `<key_prefix>:cache:<route>:<key in hex>` (the key
//! is a hash, the client's name within it: no client name or key is ever
//! in clear), its value the entry's encoding ([`super::encode`]), set with
//! `PX` the ttl, so Redis expires it. A lookup is one round trip, `GET`
//! and `PTTL` pipelined: the entry's age (for `Age`) is the ttl less what
//! Redis has left of it, on Redis's clock, so the gateways' clocks need
//! not agree. A store is a `SET` sent by a task of its own: the client's
//! answer never waits for it. `max_bytes` is the most one entry may take;
//! Redis's own `maxmemory` (and its eviction policy) bounds the whole.
//!
//! Each call is bounded by `rate_limits.timeout`. A lookup that fails or is
//! late is [`Lookup::Unavailable`] (the core does as
//! `rate_limits.on_store_error` says), counted in
//! `infergate_cache_store_errors_total{operation="get"}`, and for the next
//! second the route's lookups do not ask Redis; a store that fails is
//! counted (`operation="set"`), and the answer was not kept. A value that
//! does not decode (another version's, say) is a miss, counted as a `get`
//! error; the miss's answer then replaces it. Failures are logged at most
//! once a second per route, never with a URL.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{encode, Entry, Key, Lookup};
use crate::metrics::CacheStoreErrors;
use crate::redis_store::{Outage, RedisStore, StoreError};

/// One route's answers in Redis.
pub(super) struct Remote {
    redis: Arc<RedisStore>,
    route: String,
    /// `<key_prefix>:cache:<route>:`.
    prefix: String,
    ttl: Duration,
    errors: CacheStoreErrors,
    outage: Outage,
}

impl Remote {
    pub(super) fn new(
        redis: Arc<RedisStore>,
        route: &str,
        ttl: Duration,
        errors: CacheStoreErrors,
    ) -> Self {
        Self {
            prefix: format!("{}:cache:{route}:", redis.prefix()),
            redis,
            route: route.to_owned(),
            ttl,
            errors,
            outage: Outage::default(),
        }
    }

    fn redis_key(&self, key: &Key) -> String {
        format!("{}{}", self.prefix, hex::encode(key))
    }

    /// The entry of `key` and its age, in one round trip.
    pub(super) async fn get(&self, key: &Key, worker: usize) -> Lookup {
        if self.outage.is_down() {
            self.errors.get.inc();
            return Lookup::Unavailable;
        }
        let at = self.redis_key(key);
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(&at).cmd("PTTL").arg(&at);
        let (value, left) = match self
            .redis
            .query::<(Option<Vec<u8>>, i64)>(worker, &pipe)
            .await
        {
            Ok(answer) => answer,
            Err(e) => {
                self.outage.mark_down();
                self.failed(Op::Get, &e);
                return Lookup::Unavailable;
            }
        };
        let Some(value) = value else {
            return Lookup::Miss;
        };
        let Some(entry) = encode::decode(Bytes::from(value)) else {
            self.failed(Op::Get, &self.redis.fail("a value that does not decode"));
            return Lookup::Miss;
        };
        // PTTL is -1 for a key without an expiry, which this store never
        // sets, and -2 for one gone since the GET; more than the ttl left,
        // it was stored under a longer ttl than the route has now: none of
        // these is served.
        let left = match u64::try_from(left) {
            Ok(ms) if Duration::from_millis(ms) <= self.ttl => Duration::from_millis(ms),
            _ => return Lookup::Miss,
        };
        Lookup::Hit {
            entry: Arc::new(entry),
            age: self.ttl.saturating_sub(left),
        }
    }

    /// Stores `entry` under `key` by a task of its own on the calling
    /// runtime, with worker `worker`'s connection.
    pub(super) fn insert(self: &Arc<Self>, key: Key, entry: Entry, worker: usize) {
        // Not while Redis is taken to be down: the value would only wait
        // for its timeout.
        let runtime = match self.outage.is_down() {
            true => None,
            false => tokio::runtime::Handle::try_current().ok(),
        };
        let Some(runtime) = runtime else {
            self.errors.set.inc();
            return;
        };
        let this = Arc::clone(self);
        runtime.spawn(async move {
            let Some(value) = encode::encode(&entry) else {
                this.errors.set.inc();
                return;
            };
            drop(entry);
            // PX 0 is refused: a ttl under a millisecond is one.
            let ttl = u64::try_from(this.ttl.as_millis()).unwrap_or(u64::MAX);
            let mut pipe = redis::pipe();
            pipe.cmd("SET")
                .arg(this.redis_key(&key))
                .arg(value)
                .arg("PX")
                .arg(ttl.max(1))
                .ignore();
            if let Err(e) = this.redis.query::<()>(worker, &pipe).await {
                this.failed(Op::Set, &e);
            }
        });
    }

    /// Counts a failure of `op` and logs it unless one was logged this
    /// second.
    fn failed(&self, op: Op, e: &StoreError) {
        let (count, operation) = match op {
            Op::Get => (&self.errors.get, "get"),
            Op::Set => (&self.errors.set, "set"),
        };
        count.inc();
        if self.outage.log_due() {
            tracing::warn!(error = %e, route = %self.route, operation, "response cache: the store failed; a lookup it cannot answer is decided by rate_limits.on_store_error, and for a second after one the route's lookups do not ask it");
        }
    }
}

/// A store operation, for its count and its log line.
#[derive(Debug, Clone, Copy)]
enum Op {
    Get,
    Set,
}
