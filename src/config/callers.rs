//! Who may call and how much, as the config says once validated: the
//! clients (`[clients.NAME]`, their keys by hash, their routes and AWS key
//! pairs) and the limits (`rate_limit`, `tokens_per_minute`,
//! `[rate_limits]`). `clients.rs` and `limits.rs` build them.

use std::fmt;
use std::time::Duration;

use crate::secret::Secret;

/// The SHA-256 of an API key: the only form in which the gateway keeps a
/// key. Its `Debug` shows no digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHash(..)")
    }
}

/// `[clients.<name>]`: one caller and what it may use.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    pub name: String,
    /// Every key that names this client (more than one while rotating).
    pub keys: Vec<KeyHash>,
    /// Route names and `*` patterns it may call; `None`: every route.
    pub routes: Option<Vec<String>>,
    /// Requests per second over every route, with a burst.
    pub rate_limit: Option<RateLimit>,
    /// Most requests of this client in flight at once.
    pub max_in_flight: Option<usize>,
    /// `admin = true`: its key also reads `/metrics` and `/v1/routes` on
    /// the main listener.
    pub admin: bool,
    /// An AWS access key pair, for requests signed with SigV4 instead of a
    /// bearer key (the SageMaker-compatible door).
    pub aws: Option<ClientAwsKey>,
    /// Tokens per minute over every route, charged after each answer.
    pub tokens_per_minute: Option<u32>,
    /// The client's limits on single routes, by route name.
    pub route_limits: std::collections::BTreeMap<String, SpendLimits>,
}

/// The limits of one client on one route (`route_limits.<route>`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SpendLimits {
    pub rate_limit: Option<RateLimit>,
    pub tokens_per_minute: Option<u32>,
}

/// A client's `aws_access_key_id` and its secret, which SigV4 needs in
/// clear to check a signature (read from the environment or a file, never
/// written in the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAwsKey {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    /// For a temporary key pair: the `X-Amz-Security-Token` its requests
    /// must carry. Without one, a request carrying a token is refused.
    pub session_token: Option<Secret>,
}

/// `[rate_limits]`: where the buckets of every `rate_limit` and
/// `tokens_per_minute` are kept.
/// `PartialEq` only: `headroom` is an `f64`.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitsConfig {
    pub store: LimitStore,
    /// What a decision does when the Redis store fails or is late.
    pub on_store_error: OnStoreError,
    /// `rate_limits.headroom`, 0 to 1: the share of every bucket's burst
    /// that Redis's last answer must leave, after a request, for the
    /// request to go ahead without waiting for Redis (which takes its cost
    /// just after). 1: every request waits for Redis's decision.
    pub headroom: f64,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        Self {
            store: LimitStore::Memory,
            on_store_error: OnStoreError::Allow,
            headroom: DEFAULT_HEADROOM,
        }
    }
}

/// `rate_limits.headroom` when not set: a request goes ahead at once while
/// at least half of each of its buckets' bursts would remain.
pub const DEFAULT_HEADROOM: f64 = 0.5;

/// `rate_limits.store`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitStore {
    /// Each gateway process keeps its own buckets (the default).
    Memory,
    /// Every gateway sharing this Redis shares the buckets.
    Redis(RedisStoreConfig),
}

/// `store = "redis"`: where, how long a decision may wait for it, and the
/// prefix of its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisStoreConfig {
    /// `redis://[user:password@]host[:port][/db]`, one (a single server)
    /// or the seeds of a Cluster: secrets, as they may hold a password;
    /// never printed.
    pub urls: Vec<Secret>,
    /// `rate_limits.redis_mode`.
    pub mode: RedisMode,
    /// The hosts and ports alone, for messages.
    pub shown: String,
    /// The longest a decision waits for Redis, connecting included.
    pub timeout: Duration,
    /// The start of every key (letters, digits, `.`, `_`, `-`, `:`).
    pub key_prefix: String,
}

/// `rate_limits.redis_mode`: what the Redis URLs lead to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisMode {
    /// One server, or a primary (the default).
    Single,
    /// A Redis Cluster: each script call goes to the node of its keys' slot.
    Cluster,
}

/// `rate_limits.on_store_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStoreError {
    /// The request goes on, unlimited by the shared buckets (the default).
    Allow,
    /// The request is refused with 503.
    Deny,
}

/// `rate_limit = { requests_per_second = …, burst = … }`: a GCRA bucket
/// that refills at `per_second` and holds at most `burst` requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// More than 0, at most 1,000,000.
    pub per_second: f64,
    /// 1 to 1,000,000; default: `per_second` rounded up.
    pub burst: u32,
}

/// Whether route `name` matches `pattern`, where `*` stands for any run of
/// characters (`flan-*` matches `flan-large`; `*` alone, every route).
pub fn route_matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*`: the whole name.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}
