//! The Redis store (`rate_limits.store = "redis"`): buckets every gateway
//! sharing one Redis shares.
//!
//! A bucket is one Redis key holding its GCRA "theoretical arrival time"
//! in microseconds of Redis's own clock (`TIME`), so the gateways' clocks
//! never need to agree. [`GCRA`] decides for one bucket atomically; it is
//! loaded once (`SCRIPT LOAD`) and called by its hash (`EVALSHA`), loaded
//! again when Redis answers `NOSCRIPT` (a restarted Redis has forgotten
//! it). A request's buckets (its client's, its route's) go in one pipeline:
//! one round trip. Each key carries its own hash tag
//! (`infergate:{c:web-app}`), so on a Redis Cluster every bucket lives on
//! one node and the script's single key never crosses slots.
//!
//! Each worker has its own connection (the redis crate's tokio connection
//! manager, which reconnects by itself), made on the worker's runtime at
//! its first decision, so a decision never wakes another thread. Every
//! call is bounded by `rate_limits.timeout`, connecting included.

use std::sync::OnceLock;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, Script, ServerErrorKind};

use crate::config::RedisStoreConfig;

/// GCRA for one bucket, with a cost (1 for a request, a number of tokens)
/// and a mode. `KEYS[1]`: the bucket. `ARGV`: the emission interval in
/// microseconds (one unit's share of the refill), the burst in units, the
/// cost, and `1` to charge whatever the state (tokens reported after an
/// answer: the bucket may go into debt) or `0` to charge only if allowed.
/// Returns `{allowed, wait_us, remaining}`: `wait_us` until the cost would
/// be allowed, `remaining` units left in the burst.
pub const GCRA: &str = r"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now) or now
if tat < now then tat = now end
local new_tat = tat + cost * interval
local allow_at = new_tat - burst * interval
if allow_at > now and ARGV[4] ~= '1' then
  return {0, math.ceil(allow_at - now), 0}
end
local ttl = math.ceil((new_tat - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl)
local remaining = math.floor((now - allow_at) / interval)
if remaining < 0 then remaining = 0 end
local wait = 0
if allow_at > now then wait = math.ceil(allow_at - now) end
return {1, wait, remaining}
";

/// What Redis decided for one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Until the cost would be allowed (after a charge: until the bucket is
    /// out of debt).
    pub wait: Duration,
    /// Units left in the burst.
    pub remaining: u32,
}

/// One bucket's part of a call.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub key: &'a str,
    /// Microseconds of refill per unit.
    pub interval_us: f64,
    pub burst: u32,
    pub cost: u64,
    /// Charge even when over (into debt), as for tokens already spent.
    pub charge: bool,
}

/// Why the store gave no decision: never a URL or a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the rate limit store at {at}: {why}")]
pub struct StoreError {
    at: String,
    why: String,
}

/// The Redis store's client, its script and one connection per worker.
pub struct Shared {
    client: redis::Client,
    connections: Vec<OnceLock<Option<ConnectionManager>>>,
    script: Script,
    timeout: Duration,
    prefix: String,
    shown: String,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("at", &self.shown).finish()
    }
}

impl Shared {
    /// The store of `config`, for `workers` workers; nothing connects yet.
    pub fn new(config: &RedisStoreConfig, workers: usize) -> Result<Self, StoreError> {
        let at = config.shown.clone();
        let client = redis::Client::open(config.url.expose()).map_err(|_| StoreError {
            at: at.clone(),
            why: "not a Redis URL the client takes".into(),
        })?;
        Ok(Self {
            client,
            connections: (0..workers.max(1)).map(|_| OnceLock::new()).collect(),
            script: Script::new(GCRA),
            timeout: config.timeout,
            prefix: config.key_prefix.clone(),
            shown: at,
        })
    }

    /// The key of bucket `what` (`c:web-app`, `r:flan`), hash-tagged.
    pub fn key(&self, what: &str) -> String {
        format!("{}:{{{what}}}", self.prefix)
    }

    fn fail(&self, why: impl std::fmt::Display) -> StoreError {
        StoreError {
            at: self.shown.clone(),
            why: why.to_string(),
        }
    }

    /// Worker `worker`'s connection, made on first use on the calling
    /// runtime (lazily: it connects at its first command).
    fn connection(&self, worker: usize) -> Result<ConnectionManager, StoreError> {
        let slot = self
            .connections
            .get(worker)
            .or_else(|| self.connections.first())
            .ok_or_else(|| self.fail("no connection slot"))?;
        let made = slot.get_or_init(|| {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.timeout))
                .set_response_timeout(Some(self.timeout))
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(100))
                .set_max_delay(Duration::from_secs(2));
            ConnectionManager::new_lazy_with_config(self.client.clone(), config).ok()
        });
        made.clone()
            .ok_or_else(|| self.fail("could not make a connection"))
    }

    /// One decision per ask, in one round trip, within the timeout.
    pub async fn decide(
        &self,
        worker: usize,
        asks: &[Ask<'_>],
    ) -> Result<Vec<Decision>, StoreError> {
        let mut conn = self.connection(worker)?;
        let mut pipe = redis::pipe();
        for ask in asks {
            pipe.cmd("EVALSHA")
                .arg(self.script.get_hash())
                .arg(1)
                .arg(ask.key)
                .arg(ask.interval_us)
                .arg(ask.burst)
                .arg(ask.cost)
                .arg(u8::from(ask.charge));
        }
        let call = async {
            match pipe.query_async::<Vec<(i64, i64, i64)>>(&mut conn).await {
                Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    self.script.prepare_invoke().load_async(&mut conn).await?;
                    pipe.query_async::<Vec<(i64, i64, i64)>>(&mut conn).await
                }
                answered => answered,
            }
        };
        let answers = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(answers)) => answers,
            Ok(Err(e)) => return Err(self.fail(describe(&e))),
            Err(_) => {
                return Err(self.fail(format!(
                    "no answer within rate_limits.timeout ({})",
                    humantime::format_duration(self.timeout)
                )))
            }
        };
        if answers.len() != asks.len() {
            return Err(self.fail("an answer of the wrong shape"));
        }
        Ok(answers
            .into_iter()
            .map(|(allowed, wait_us, remaining)| Decision {
                allowed: allowed == 1,
                wait: Duration::from_micros(u64::try_from(wait_us).unwrap_or(0)),
                remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
            })
            .collect())
    }
}

/// A Redis error in a few words: its kind, and for an I/O error what the
/// system said. The redis crate's own `Display` may quote the command.
fn describe(e: &redis::RedisError) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connection_refusal() {
        "connection refused".into()
    } else if e.is_io_error() || e.is_connection_dropped() {
        "connection lost".into()
    } else {
        format!("{:?}", e.kind())
    }
}
