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
//! Each worker has its own connection (the redis crate's tokio connection
//! manager, or its cluster connection; both reconnect by themselves), made
//! on the worker's runtime at its first decision, so a decision never
//! wakes another thread. Every call is bounded by `rate_limits.timeout`,
//! connecting included.

use std::sync::OnceLock;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;
use redis::{Cmd, ErrorKind, IntoConnectionInfo, RedisResult, Script, ServerErrorKind};

use crate::config::{RedisMode, RedisStoreConfig};

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

/// Why the store gave no decision: never a URL or a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the rate limit store at {at}: {why}")]
pub struct StoreError {
    at: String,
    why: String,
}

/// What the store's connections are made from.
enum Link {
    Single(redis::Client),
    Cluster(Box<ClusterClient>),
}

/// One worker's connection.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// The Redis store's client, its script and one connection per worker.
pub struct Shared {
    link: Link,
    connections: Vec<OnceLock<Option<Conn>>>,
    /// `infergate_ratelimit_store_errors_total{operation="refund"}`.
    refund_errors: prometheus::IntCounter,
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
    /// `refund_errors` counts the give-backs that failed.
    pub fn new(
        config: &RedisStoreConfig,
        workers: usize,
        refund_errors: prometheus::IntCounter,
    ) -> Result<Self, StoreError> {
        let at = config.shown.clone();
        let unfit = || StoreError {
            at: at.clone(),
            why: "not a Redis URL the client takes".into(),
        };
        // The crate leaves Nagle on; a decision is one small write.
        let tcp = TcpSettings::default().set_nodelay(true);
        let link = match config.mode {
            RedisMode::Single => {
                let url = config.urls.first().ok_or_else(unfit)?;
                let info = url.expose().into_connection_info().map_err(|_| unfit())?;
                let client =
                    redis::Client::open(info.set_tcp_settings(tcp)).map_err(|_| unfit())?;
                Link::Single(client)
            }
            RedisMode::Cluster => {
                let seeds = config.urls.iter().map(|u| u.expose().to_owned());
                let client = ClusterClientBuilder::new(seeds)
                    .connection_timeout(config.timeout)
                    .response_timeout(config.timeout)
                    .retries(3)
                    .tcp_settings(tcp)
                    .build()
                    .map_err(|_| unfit())?;
                Link::Cluster(Box::new(client))
            }
        };
        Ok(Self {
            link,
            connections: (0..workers.max(1)).map(|_| OnceLock::new()).collect(),
            refund_errors,
            script: Script::new(GCRA),
            timeout: config.timeout,
            prefix: config.key_prefix.clone(),
            shown: at,
        })
    }

    /// The key of bucket `rest` of group `tag` (`c:web-app`, `r:flan`):
    /// `infergate:{c:web-app}:rate`. A group's keys share their hash tag,
    /// so they live in one slot and one script call takes them all.
    pub fn key(&self, tag: &str, rest: &str) -> String {
        format!("{}:{{{tag}}}:{rest}", self.prefix)
    }

    fn fail(&self, why: impl std::fmt::Display) -> StoreError {
        StoreError {
            at: self.shown.clone(),
            why: why.to_string(),
        }
    }

    /// Worker `worker`'s connection, made on first use on the calling
    /// runtime (lazily: it connects at its first command).
    fn connection(&self, worker: usize) -> Result<Conn, StoreError> {
        let slot = self
            .connections
            .get(worker)
            .or_else(|| self.connections.first())
            .ok_or_else(|| self.fail("no connection slot"))?;
        let made = slot.get_or_init(|| match &self.link {
            Link::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(100))
                    .set_max_delay(Duration::from_secs(2));
                ConnectionManager::new_lazy_with_config(client.clone(), config)
                    .ok()
                    .map(Conn::Single)
            }
            Link::Cluster(client) => Some(Conn::Cluster(
                client.get_pending_async_connection_with_config(ClusterConfig::new()),
            )),
        });
        made.clone()
            .ok_or_else(|| self.fail("could not make a connection"))
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
        let conn = self.connection(worker)?;
        let answers = match conn {
            Conn::Single(mut conn) => {
                let all = groups.iter().flat_map(|g| g.iter());
                let answer = self.bounded(self.run(&mut conn, mode, all)).await;
                answer.map(|a| split(&a, groups))
            }
            Conn::Cluster(conn) => {
                // Each call bounded on its own: a group that answered in
                // time is known to have taken its costs when the other did
                // not answer.
                let calls = groups.iter().map(|g| {
                    let mut conn = conn.clone();
                    async move { self.bounded(self.run(&mut conn, mode, g.iter())).await }
                });
                let answers = futures_util::future::join_all(calls).await;
                self.settle_partial(&conn, mode, groups, answers)
            }
        }
        .map_err(|e| self.fail(e))?;
        let shaped = answers.len() == groups.len()
            && answers
                .iter()
                .zip(groups)
                .all(|(a, g)| a.len() == 3 * g.len());
        if !shaped {
            return Err(self.fail("an answer of the wrong shape"));
        }
        Ok(answers.iter().map(|a| decisions(a)).collect())
    }

    /// `call`, within the timeout; a Redis error or the timeout as words.
    async fn bounded(
        &self,
        call: impl std::future::Future<Output = RedisResult<Vec<i64>>>,
    ) -> Result<Vec<i64>, String> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(answer) => answer.map_err(|e| describe(&e)),
            Err(_) => Err(format!(
                "no answer within rate_limits.timeout ({})",
                humantime::format_duration(self.timeout)
            )),
        }
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
                let (mut conn, timeout) = (conn.clone(), self.timeout);
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
