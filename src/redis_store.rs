//! The gateway's one Redis: `[rate_limits]` with `store = "redis"`
//! (`redis_url` or `redis_urls`, `redis_mode`, `timeout`, `key_prefix`).
//! The shared rate limits ([`crate::limits`]) and the response caches with
//! `store = "redis"` ([`crate::cache`]) both reach it through a
//! [`RedisStore`] of their own, each with its connections (a large
//! answer read or written by a cache never holds a limit decision up
//! behind it on one connection) and its own knowledge that Redis is down.
//!
//! Each worker has its own connection (the redis crate's tokio connection
//! manager, or its cluster connection; both reconnect by themselves), made
//! on the worker's runtime at its first command, so a command never wakes
//! another thread. Every call is bounded by `rate_limits.timeout`,
//! connecting included. Each user keeps its own [`Outage`]: a failure
//! takes the store to be down for a second for that user, which meanwhile
//! decides without asking it, as `rate_limits.on_store_error` says, rather
//! than have every request wait out the timeout. Nothing
//! here ever shows a URL: they may hold a password; messages name the
//! hosts and ports alone (`RedisStoreConfig::shown`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;
use redis::{FromRedisValue, IntoConnectionInfo, Pipeline, RedisResult};

use crate::config::{RedisMode, RedisStoreConfig};

/// How long after a failure the store is not asked again.
const DOWN_FOR: Duration = Duration::from_secs(1);

/// Why the store gave no answer: never a URL or a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the Redis store at {at}: {why}")]
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
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// The Redis client and one connection per worker.
pub struct RedisStore {
    link: Link,
    connections: Vec<OnceLock<Option<Conn>>>,
    timeout: Duration,
    prefix: String,
    shown: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("at", &self.shown)
            .finish()
    }
}

impl RedisStore {
    /// The store of `config`, for `workers` workers; nothing connects yet.
    pub fn new(config: &RedisStoreConfig, workers: usize) -> Result<Self, StoreError> {
        let at = config.shown.clone();
        let unfit = || StoreError {
            at: at.clone(),
            why: "not a Redis URL the client takes".into(),
        };
        // The crate leaves Nagle on; a command is one small write.
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
            timeout: config.timeout,
            prefix: config.key_prefix.clone(),
            shown: at,
        })
    }

    /// `rate_limits.key_prefix`: the start of every key.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `rate_limits.timeout`: the longest a call waits.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A failure of this store, for `why`.
    pub fn fail(&self, why: impl std::fmt::Display) -> StoreError {
        StoreError {
            at: self.shown.clone(),
            why: why.to_string(),
        }
    }

    /// Worker `worker`'s connection, made on first use on the calling
    /// runtime (lazily: it connects at its first command).
    pub fn connection(&self, worker: usize) -> Result<Conn, StoreError> {
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

    /// `call`, within the timeout; a Redis error or the timeout as words.
    pub async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = RedisResult<T>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(answer) => answer.map_err(|e| describe(&e)),
            Err(_) => Err(format!(
                "no answer within rate_limits.timeout ({})",
                humantime::format_duration(self.timeout)
            )),
        }
    }

    /// A call on one server's connection, made by `call`, within the
    /// timeout; once more (within the same time) when it failed for want
    /// of a connection: a connection that broke while Redis was away
    /// answers its first command after with that old error, though its
    /// manager reconnects meanwhile, and the command never reached the
    /// Redis that is back.
    pub async fn bounded_single<T, Fut>(&self, mut call: impl FnMut() -> Fut) -> Result<T, String>
    where
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        self.bounded(async {
            match call().await {
                Err(e)
                    if e.is_connection_refusal()
                        || e.is_connection_dropped()
                        || e.is_io_error() =>
                {
                    call().await
                }
                answered => answered,
            }
        })
        .await
    }

    /// `pipe` on worker `worker`'s connection, within the timeout. On a
    /// Cluster every command of `pipe` must be on keys of one slot.
    pub async fn query<T: FromRedisValue>(
        &self,
        worker: usize,
        pipe: &Pipeline,
    ) -> Result<T, StoreError> {
        let answer = match self.connection(worker)? {
            Conn::Single(conn) => {
                let call = || {
                    let mut conn = conn.clone();
                    async move { pipe.query_async(&mut conn).await }
                };
                self.bounded_single(call).await
            }
            Conn::Cluster(mut conn) => self.bounded(pipe.query_async(&mut conn)).await,
        };
        answer.map_err(|e| self.fail(e))
    }
}

/// One user's view of the store's health: down for a second after each
/// failure, and a log line about it at most once a second.
#[derive(Debug)]
pub struct Outage {
    epoch: Instant,
    /// Nanoseconds after `epoch` until which the store is taken to be
    /// down.
    down_until: AtomicU64,
    /// The second (after `epoch`, plus one) of the last line logged.
    logged: AtomicU64,
}

impl Default for Outage {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            down_until: AtomicU64::new(0),
            logged: AtomicU64::new(0),
        }
    }
}

impl Outage {
    fn nanos(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether the store failed less than a second ago.
    pub fn is_down(&self) -> bool {
        self.down_until.load(Ordering::Relaxed) > self.nanos()
    }

    /// Takes the store to be down for the next second.
    pub fn mark_down(&self) {
        let down = u64::try_from(DOWN_FOR.as_nanos()).unwrap_or(u64::MAX);
        self.down_until
            .store(self.nanos().saturating_add(down), Ordering::Relaxed);
    }

    /// Whether a failure is to be logged: the first of each second is.
    pub fn log_due(&self) -> bool {
        let second = self.epoch.elapsed().as_secs() + 1;
        self.logged.swap(second, Ordering::Relaxed) != second
    }
}

/// A Redis error in a few words: its kind, and for an I/O error what the
/// system said. The redis crate's own `Display` may quote the command.
pub fn describe(e: &redis::RedisError) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_down_for_a_second_and_logged_once_a_second() {
        let outage = Outage::default();
        assert!(!outage.is_down());
        outage.mark_down();
        assert!(outage.is_down());
        assert!(outage.log_due());
        assert!(!outage.log_due());
    }
}
