//! The Redis store (`rate_limits.store = "redis"`): buckets every gateway
//! sharing one Redis shares.
//!
//! A bucket is one Redis key holding its GCRA "theoretical arrival time"
//! in microseconds of Redis's own clock (`TIME`), so the gateways' clocks
//! never need to agree. [`GCRA`] decides for one bucket atomically; it is
//! loaded once (`SCRIPT LOAD`) and called by its hash (`EVALSHA`), loaded
//! again when Redis answers `NOSCRIPT` (a restarted Redis has forgotten
//! it). A request's buckets come in two groups, the client's (its own and
//! its own on the route) and the route's; each group's keys share a hash
//! tag (`infergate:{c:web-app}:rate`, `infergate:{r:flan}:tokens`) and one
//! script call can decide them together, all or nothing.
//!
//! On one server (`redis_mode = "single"`) a decision is one script
//! call over both groups, all or nothing: one round trip, and nothing to
//! give back. On a Redis Cluster (`redis_mode = "cluster"`) each group is
//! a call of its own, sent to its slot's node (the redis crate's cluster
//! client follows the slot map and its redirections), both at once; a
//! group admitted when the other refused or failed is then given back its
//! costs.
//!
//! The connections (one per worker, each call bounded by
//! `rate_limits.timeout`) are the gateway's one [`RedisStore`], which the
//! response caches with `store = "redis"` use too.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, RedisResult, Script, ServerErrorKind};

use crate::redis_store::{Conn, RedisStore, StoreError};

/// GCRA for a group of buckets, atomic: `KEYS` are the buckets (one hash
/// tag for them all, so they share a slot). `ARGV[1]` is the mode: `0`
/// admits (each bucket takes its cost, all of them or, if any would go over,
/// none), `1` charges whatever the state (tokens already spent: a bucket
/// may go into debt), `2` refunds (gives back what an admission took, when
/// another group refused the request). Then three numbers per bucket: the
/// emission interval in microseconds (one unit's share of the refill), the
/// burst in units, the cost. Returns `{allowed, wait_us, remaining}` per
/// bucket: `wait_us` until the cost would be allowed (after a charge: until
/// the bucket is out of debt), `remaining` units left in the burst. Times
/// are Redis's own clock (`TIME`), so the gateways' clocks need not agree.
pub const GCRA: &str = r"
if redis.replicate_commands then pcall(redis.replicate_commands) end
local mode = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tats, out, refused = {}, {}, false
for i = 1, #KEYS do
  local interval = tonumber(ARGV[3 * i - 1])
  local burst = tonumber(ARGV[3 * i])
  local cost = tonumber(ARGV[3 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  local new_tat = tat + cost * interval
  if mode == '2' then new_tat = math.max(now, tat - cost * interval) end
  local allow_at = new_tat - burst * interval
  local wait = 0
  if allow_at > now then wait = math.ceil(allow_at - now) end
  if wait > 0 and mode == '0' then refused = true end
  local remaining = math.floor((now - allow_at) / interval)
  if remaining < 0 then remaining = 0 end
  tats[i] = new_tat
  out[3 * i - 2] = 1
  out[3 * i - 1] = wait
  out[3 * i] = remaining
end
if refused then
  for i = 1, #KEYS do
    if out[3 * i - 1] > 0 then out[3 * i - 2] = 0 end
    out[3 * i] = 0
  end
  return out
end
for i = 1, #KEYS do
  local ttl = math.ceil((tats[i] - now) / 1000) + 1000
  redis.call('SET', KEYS[i], string.format('%.0f', tats[i]), 'PX', string.format('%.0f', ttl))
end
return out
";

/// What a call asks of a group of buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Each takes its cost, all of them or none.
    Admit = 0,
    /// Each takes its cost, into debt if need be.
    Charge = 1,
    /// Each gets its cost back.
    Refund = 2,
}

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
}

/// The Redis store's connections and the script.
pub struct Shared {
    redis: Arc<RedisStore>,
    /// `infergate_ratelimit_store_errors_total{operation="refund"}`.
    refund_errors: prometheus::IntCounter,
    script: Script,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("redis", &self.redis)
            .finish()
    }
}

impl Shared {
    /// The buckets' store on `redis`; `refund_errors` counts the
    /// give-backs that failed.
    pub fn new(redis: Arc<RedisStore>, refund_errors: prometheus::IntCounter) -> Self {
        Self {
            redis,
            refund_errors,
            script: Script::new(GCRA),
        }
    }

    /// The key of bucket `rest` of group `tag` (`c:web-app`, `r:flan`):
    /// `infergate:{c:web-app}:rate`. A group's keys share their hash tag,
    /// so they live in one slot and one script call takes them all.
    pub fn key(&self, tag: &str, rest: &str) -> String {
        format!("{}:{{{tag}}}:{rest}", self.redis.prefix())
    }

    /// One script call deciding `asks`: by the script's hash (`EVALSHA`),
    /// or with `body` by its text (`EVAL`, which also loads it on the node
    /// that runs it).
    fn command<'a>(
        &self,
        mode: Mode,
        asks: impl Iterator<Item = &'a Ask<'a>> + Clone,
        body: bool,
    ) -> Cmd {
        let mut cmd = if body {
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(GCRA);
            cmd
        } else {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(self.script.get_hash());
            cmd
        };
        cmd.arg(asks.clone().count());
        for ask in asks.clone() {
            cmd.arg(ask.key);
        }
        cmd.arg(mode as u8);
        for ask in asks {
            cmd.arg(ask.interval_us).arg(ask.burst).arg(ask.cost);
        }
        cmd
    }

    /// One decision per ask of each group, in one round trip, within the
    /// timeout: one call for every group on one server, a call per group,
    /// all at once, on a Cluster. Either way an admission is all or
    /// nothing: on a Cluster, when one group refused or failed, the groups
    /// admitted are given back their costs.
    pub async fn decide(
        &self,
        worker: usize,
        mode: Mode,
        groups: &[&[Ask<'_>]],
    ) -> Result<Vec<Vec<Decision>>, StoreError> {
        let redis = &self.redis;
        let answers = match redis.connection(worker)? {
            Conn::Single(conn) => {
                let all = groups.iter().flat_map(|g| g.iter());
                let call = || {
                    let (mut conn, all) = (conn.clone(), all.clone());
                    async move { self.run(&mut conn, mode, all).await }
                };
                let answer = redis.bounded_single(call).await;
                answer.map(|a| split(&a, groups))
            }
            Conn::Cluster(conn) => {
                // Each call bounded on its own: a group that answered in
                // time is known to have taken its costs when the other did
                // not answer.
                let calls = groups.iter().map(|g| {
                    let mut conn = conn.clone();
                    async move { redis.bounded(self.run(&mut conn, mode, g.iter())).await }
                });
                let answers = futures_util::future::join_all(calls).await;
                self.settle_partial(&conn, mode, groups, answers)
            }
        }
        .map_err(|e| redis.fail(e))?;
        let shaped = answers.len() == groups.len()
            && answers
                .iter()
                .zip(groups)
                .all(|(a, g)| a.len() == 3 * g.len());
        if !shaped {
            return Err(redis.fail("an answer of the wrong shape"));
        }
        Ok(answers.iter().map(|a| decisions(a)).collect())
    }

    /// The script for `asks` by its hash, and when the server has
    /// forgotten it (`NOSCRIPT`: it restarted, or a Cluster node is new)
    /// by its text, which loads it there again. (`SCRIPT LOAD` would go to
    /// every node of a Cluster and fail while any is down.)
    async fn run<'a, C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        mode: Mode,
        asks: impl Iterator<Item = &'a Ask<'a>> + Clone,
    ) -> RedisResult<Vec<i64>> {
        let cmd = self.command(mode, asks.clone(), false);
        match cmd.query_async::<Vec<i64>>(conn).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.command(mode, asks, true).query_async(conn).await
            }
            answered => answered,
        }
    }

    /// A Cluster's answers by group: all of them, or the first failure.
    /// An admission the groups did not all grant (one refused, or did not
    /// answer) gives each group that granted it back its costs, by a task
    /// of its own, so that a request not admitted takes nothing.
    fn settle_partial(
        &self,
        conn: &ClusterConnection,
        mode: Mode,
        groups: &[&[Ask<'_>]],
        answers: Vec<Result<Vec<i64>, String>>,
    ) -> Result<Vec<Vec<i64>>, String> {
        let granted = |a: &Result<Vec<i64>, String>| {
            a.as_ref()
                .is_ok_and(|a| a.chunks_exact(3).all(|d| d[0] == 1))
        };
        if mode == Mode::Admit && !answers.iter().all(granted) {
            for (group, _) in groups.iter().zip(&answers).filter(|(_, a)| granted(a)) {
                let refund = self.command(Mode::Refund, group.iter(), false);
                let (mut conn, timeout) = (conn.clone(), self.redis.timeout());
                let errors = self.refund_errors.clone();
                tokio::spawn(async move {
                    let call = refund.query_async::<Vec<i64>>(&mut conn);
                    if !matches!(tokio::time::timeout(timeout, call).await, Ok(Ok(_))) {
                        errors.inc();
                    }
                });
            }
        }
        answers.into_iter().collect()
    }
}

/// One call's answer for every group, cut back into each group's part
/// (three numbers per ask); a short answer leaves parts short.
fn split(answer: &[i64], groups: &[&[Ask<'_>]]) -> Vec<Vec<i64>> {
    let mut rest = answer;
    groups
        .iter()
        .map(|g| {
            let (this, after) = rest.split_at(rest.len().min(3 * g.len()));
            rest = after;
            this.to_vec()
        })
        .collect()
}

/// `{allowed, wait_us, remaining}` triples as decisions.
fn decisions(answer: &[i64]) -> Vec<Decision> {
    answer
        .chunks_exact(3)
        .map(|d| Decision {
            allowed: d[0] == 1,
            wait: Duration::from_micros(u64::try_from(d[1]).unwrap_or(0)),
            remaining: u32::try_from(d[2].max(0)).unwrap_or(u32::MAX),
        })
        .collect()
}
