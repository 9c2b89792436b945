//! Configuration: one TOML file, parsed then validated into runtime types that
//! cannot hold invalid values.
//!
//! Loading runs in two phases, vector / TensorZero style:
//!
//! 1. **shape** (`raw.rs`): the text is parsed as TOML, every string value is
//!    interpolated (`${VAR}`, `${VAR:-default}`, `${VAR:?message}`, `$$`; see
//!    `interpolate.rs`), then each section is deserialized into serde structs with
//!    `deny_unknown_fields`, defaults and humantime durations;
//! 2. **meaning** (`validate.rs`): ranges, names, URLs, header values and
//!    cross-references are checked and the public types below are built.
//!    Every number and duration has an upper bound (`bounds.rs`), so no value
//!    that passes can overflow a clock or a counter at run time.
//!
//! Both phases collect every error instead of stopping at the first, and each
//! error starts with the key path it is about
//! (`routes.flan.backends[1]: unknown backend "hf-flann"`; a TOML syntax
//! error too, see `syntax.rs`), so one run of
//! `infergate check` lists everything to fix. An interpolated value never appears
//! in an error: it may be a secret.
//!
//! Neighbours: `server.rs` reads [`ServerConfig`], the shared upstream client
//! reads [`UpstreamConfig`], `backend/` builds one backend per [`BackendConfig`]
//! and `route/` builds the route table from [`RouteConfig`]; `commands.rs`
//! starts span export from [`TelemetryConfig`].

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::secret::Secret;

mod backend;
mod bounds;
mod cache;
mod callers;
mod clients;
mod diag;
mod diff_log;
mod doors;
mod interpolate;
mod limits;
mod raw;
mod resilience;
mod shadow;
mod summary;
mod syntax;
mod telemetry;
pub mod tls;
mod validate;

pub use crate::protocol::container::{Container, Operation};
pub use callers::{
    route_matches, ClientAwsKey, ClientConfig, KeyHash, LimitStore, OnStoreError, RateLimit,
    RateLimitsConfig, RedisMode, RedisStoreConfig, SpendLimits, DEFAULT_HEADROOM,
};
pub use clients::key_hash;
pub use doors::{Door, DoorKind, DoorsConfig, SageMakerDoorConfig};

#[cfg(test)]
mod tests;

// === defaults ===
// The single place defaults live; the example file documents the same values.

const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    8080,
));
/// SageMaker's own InvokeEndpoint body limit.
const DEFAULT_MAX_BODY_BYTES: usize = 6_291_456;
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// `server.shutdown_delay` in Kubernetes: endpoint updates reach kube-proxy
/// and load balancers within seconds of a pod's termination.
const DEFAULT_SHUTDOWN_DELAY_KUBERNETES: Duration = Duration::from_secs(5);
const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_MAX_CONNECTIONS: usize = 4096;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// As many as `server.max_connections` can need: a cap below the peak
/// concurrency closes a connection after every request above it and opens a
/// new one for the next, and under load that churn costs more than the
/// requests (the load benchmark's rate search collapsed at 15,000/s with 64).
const DEFAULT_POOL_MAX_IDLE_PER_HOST: usize = DEFAULT_MAX_CONNECTIONS;
const DEFAULT_ATTEMPTS: u32 = 3;
const DEFAULT_WEIGHT: u32 = 1;
const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(25);
const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(1);
const DEFAULT_RETRY_BUDGET_RATIO: f64 = 0.2;
const DEFAULT_RETRY_BUDGET_MIN_PER_SECOND: u32 = 10;
const DEFAULT_RETRY_BUDGET_WINDOW: Duration = Duration::from_secs(10);
const DEFAULT_STICKY_SESSIONS: bool = true;
const DEFAULT_STREAM_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_STREAM_KEEPALIVE: Duration = Duration::from_secs(15);
const DEFAULT_EJECT_AFTER: u32 = 5;
const DEFAULT_EJECTION_TIME: Duration = Duration::from_secs(30);
const DEFAULT_MAX_EJECTION_TIME: Duration = Duration::from_secs(300);
const DEFAULT_HEALTH_CHECK_PATH: &str = "/health";
const DEFAULT_HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_SERVICE_NAME: &str = "infergate";
/// The OTLP exporters' own default.
const DEFAULT_OTLP_TIMEOUT: Duration = Duration::from_secs(10);

/// The validated configuration of the whole gateway.
///
/// `PartialEq` only: a route's retry budget ratio is an `f64`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server: ServerConfig,
    pub upstream: UpstreamConfig,
    pub telemetry: TelemetryConfig,
    /// Sorted by name.
    pub backends: Vec<BackendConfig>,
    /// Sorted by name.
    pub routes: Vec<RouteConfig>,
    /// Sorted by name; empty when no client is configured.
    pub clients: Vec<ClientConfig>,
    /// `[rate_limits]`: where the limits' buckets are kept.
    pub rate_limits: RateLimitsConfig,
    /// `[doors]`: which front doors besides the unified API are open.
    pub doors: DoorsConfig,
    /// `[shadow]`: what the shadows of every route share.
    pub shadow: ShadowSettings,
    /// Things worth a look that do not stop the gateway (e.g. a backend no route
    /// uses), each formatted `<key path>: <message>` like the errors.
    pub warnings: Vec<String>,
}

/// `[server]`: the listener clients connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Larger request bodies are refused with 413 before any upstream call; > 0.
    pub max_body_bytes: usize,
    /// Whole-request deadline, every attempt and backoff included; > 0.
    pub request_timeout: Duration,
    /// How long in-flight requests may run on after a shutdown signal.
    pub shutdown_grace: Duration,
    /// After a shutdown signal, how long `/readyz` answers 503 while the
    /// gateway still accepts and serves, before the drain begins: the time
    /// load balancers need to stop sending ([`default_shutdown_delay`]).
    pub shutdown_delay: Duration,
    /// Re-read the config file when its content changes (looked at every
    /// `watch_interval`); SIGHUP reloads either way.
    pub watch_config: bool,
    pub watch_interval: Duration,
    /// Where the running gateway writes its process id, for `infergate
    /// reload`; removed on exit.
    pub pid_file: Option<PathBuf>,
    /// How long a client may take to send its complete request head; > 0.
    pub header_read_timeout: Duration,
    /// A client connection with no request in flight for this long is
    /// closed; > 0.
    pub idle_timeout: Duration,
    /// Most client connections open at once; 1..=1,000,000, so it fits the
    /// `u32` of `Semaphore::acquire_many`.
    pub max_connections: usize,
    /// Worker threads, each with its own listener socket, event loop and
    /// upstream connections (1..=[`MAX_WORKERS`]); `None`: one per CPU the
    /// process may use ([`ServerConfig::worker_count`]).
    pub workers: Option<usize>,
    /// Whether a request needs a client's key (`server.auth`).
    pub auth: AuthMode,
    /// `server.admin_listen`: where `/metrics` and `/v1/routes` are served
    /// (plain HTTP, no key) instead of on `listen`.
    pub admin_listen: Option<SocketAddr>,
    /// `[server.tls]`: HTTPS on `listen`; `None` serves plain HTTP.
    pub tls: Option<ListenerTls>,
}

/// The largest config file read: far above any real one (the example,
/// every key commented, is some 30 KiB), far below what would hurt.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// The text at `path`, refused past [`MAX_CONFIG_BYTES`].
fn read_capped(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(format!("larger than {} MiB", MAX_CONFIG_BYTES >> 20));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_owned())
}

/// `server.shutdown_delay` when the file sets none: 5s in Kubernetes (where
/// `KUBERNETES_SERVICE_HOST` is set in every container), else none.
fn default_shutdown_delay(env: &dyn Fn(&str) -> Option<String>) -> Duration {
    match env("KUBERNETES_SERVICE_HOST") {
        Some(_) => DEFAULT_SHUTDOWN_DELAY_KUBERNETES,
        None => Duration::ZERO,
    }
}

/// `[server.tls]`: the listener's certificate, re-read when its files
/// change, and the CAs whose client certificates it requires, if any.
/// Every file was read and checked with the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// PEM: the leaf certificate first, then any intermediates.
    pub cert_file: PathBuf,
    /// PEM: the leaf's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM CA certificates: set, every client must present a certificate
    /// one of them signed (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
}

/// `server.auth`: whether every request (but the health probes) must carry
/// a configured client's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// The default once any `[clients.NAME]` exists.
    Required,
    /// Anyone who reaches the port may call: no client configured, or
    /// `auth = "none"`.
    #[default]
    None,
}

/// Most `server.workers`.
pub const MAX_WORKERS: usize = 256;

impl ServerConfig {
    /// How many workers serve: `workers`, else one per CPU the process may
    /// use (its CPU affinity and cgroup quota count), at most
    /// [`MAX_WORKERS`].
    pub fn worker_count(&self) -> usize {
        self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(1, std::num::NonZeroUsize::get)
                .min(MAX_WORKERS)
        })
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            shutdown_delay: Duration::ZERO,
            watch_config: true,
            watch_interval: DEFAULT_WATCH_INTERVAL,
            pid_file: None,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            workers: None,
            auth: AuthMode::None,
            admin_listen: None,
            tls: None,
        }
    }
}

/// `[upstream]`: the HTTP client every backend is called with (one per
/// worker, each with its own pool).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// TCP + TLS connect timeout; > 0.
    pub connect_timeout: Duration,
    /// Idle pooled connections are closed after this long; > 0.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per host, in each worker's pool; 0 disables
    /// pooling.
    pub pool_max_idle_per_host: usize,
    /// CA certificates (PEM) trusted for upstream TLS besides the system's
    /// roots; read and checked with the config.
    pub tls_ca_file: Option<PathBuf>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            pool_idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
            pool_max_idle_per_host: DEFAULT_POOL_MAX_IDLE_PER_HOST,
            tls_ca_file: None,
        }
    }
}

/// `[telemetry]`: where finished request spans go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP collector (http(s), no credentials, query or fragment);
    /// `None` = no span export. Only ever set in a build with the `otlp`
    /// cargo feature. Spans are sent to [`TelemetryConfig::otlp_traces_url`].
    pub otlp_endpoint: Option<reqwest::Url>,
    /// The `service.name` resource attribute of exported spans; not empty.
    pub service_name: String,
    /// Longest one export request may take; > 0.
    pub otlp_timeout: Duration,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: DEFAULT_SERVICE_NAME.to_owned(),
            otlp_timeout: DEFAULT_OTLP_TIMEOUT,
        }
    }
}

impl TelemetryConfig {
    /// Where spans are POSTed: `otlp_endpoint` itself when its path already
    /// ends in `/v1/traces`, else that path appended to it (as the OTLP
    /// exporters do with `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub fn otlp_traces_url(&self) -> Option<reqwest::Url> {
        let mut url = self.otlp_endpoint.clone()?;
        if !url.path().ends_with("/v1/traces") {
            let path = format!("{}/v1/traces", url.path().trim_end_matches('/'));
            url.set_path(&path);
        }
        Some(url)
    }
}

/// `[backends.<name>]`: one model deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// `[A-Za-z0-9._-]+`; sent back to clients as `x-infergate-backend`.
    pub name: String,
    /// Per-attempt timeout; `None` leaves only the request deadline.
    pub timeout: Option<Duration>,
    /// Most attempts in flight to this backend at once (>= 1); past it a request
    /// spills to another backend of the route or is shed with a fast 503.
    /// `None` = unlimited.
    pub max_in_flight: Option<u32>,
    /// Passive health: when consecutive failures eject this backend.
    pub outlier: OutlierConfig,
    /// This backend's own trusted CAs (PEM), instead of
    /// `upstream.tls_ca_file`.
    pub tls_ca_file: Option<PathBuf>,
    /// The model server behind the endpoint: which operations it answers
    /// and in which shapes.
    pub container: Container,
    pub kind: BackendKind,
}

impl BackendConfig {
    /// The scheme and authority requests go to (`https://host[:port]`
    /// and any path prefix).
    pub fn base_url(&self) -> String {
        match &self.kind {
            BackendKind::SageMaker(sm) => sm.base_url(),
            BackendKind::HuggingFace(hf) => hf.url.as_str().to_string(),
        }
    }
}

/// `eject_after`, `ejection_time`, `max_ejection_time`: passive outlier
/// ejection. After `eject_after` consecutive failures the backend is ejected
/// for `base_ejection` × its ejection count, capped at `max_ejection`; then a
/// single probe request decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierConfig {
    /// Consecutive failures that eject the backend; 0 disables ejection.
    pub eject_after: u32,
    /// > 0.
    pub base_ejection: Duration,
    /// >= `base_ejection`.
    pub max_ejection: Duration,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        Self {
            eject_after: DEFAULT_EJECT_AFTER,
            base_ejection: DEFAULT_EJECTION_TIME,
            max_ejection: DEFAULT_MAX_EJECTION_TIME,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendKind {
    SageMaker(SageMakerConfig),
    HuggingFace(HuggingFaceConfig),
}

impl SageMakerConfig {
    /// `endpoint_url` without a trailing `/`, or the region's runtime URL.
    pub fn base_url(&self) -> String {
        match &self.endpoint_url {
            Some(url) => url.as_str().trim_end_matches('/').to_string(),
            None => crate::protocol::sagemaker::default_base(&self.region, self.fips),
        }
    }
}

/// `kind = "sagemaker"`: a SageMaker real-time endpoint, SigV4-signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SageMakerConfig {
    /// Matches `^[a-zA-Z0-9](-*[a-zA-Z0-9])*$`, at most 63 characters.
    pub endpoint_name: String,
    /// Lowercase letters, digits and dashes, e.g. `us-east-1`.
    pub region: String,
    /// Used as given instead of `runtime.sagemaker.{region}.amazonaws.com`.
    /// http(s), no credentials, query or fragment.
    pub endpoint_url: Option<reqwest::Url>,
    /// Use `runtime-fips.sagemaker.{region}.amazonaws.com`. Never set together
    /// with `endpoint_url`; only for regions of the `aws` partition.
    pub fips: bool,
    /// Shared-config profile for the default credential chain.
    pub profile: Option<String>,
    /// Role assumed on top of the default chain; starts with `arn:`.
    pub role_arn: Option<String>,
    /// Only set when `role_arn` is.
    pub role_session_name: Option<String>,
    /// Only set when `role_arn` is.
    pub external_id: Option<Secret>,
    /// Fixed `x-amzn-sagemaker-*` request headers, in a stable order, already
    /// checked against the service's length limits.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

/// `kind = "huggingface"`: a Hugging Face Inference Endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HuggingFaceConfig {
    /// http(s), no credentials, query or fragment.
    pub url: reqwest::Url,
    /// Sent as `Authorization: Bearer …`; `None` for a public endpoint.
    /// Visible ASCII only, so it always makes a valid header value.
    pub token: Option<Secret>,
    /// Active health checks; `None` (the default) = passive ejection only.
    pub health_check: Option<HealthCheckConfig>,
}

/// `health_check_interval`, `health_check_path`, `health_check_timeout`:
/// `GET {url}{path}` every `interval`; a check fails on a non-2xx answer, an
/// error or no answer within `timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckConfig {
    /// > 0.
    pub interval: Duration,
    /// Starts with `/`; visible ASCII without `#`, so it is a valid URL path
    /// (and query) to append to the endpoint's URL.
    pub path: String,
    /// > 0.
    pub timeout: Duration,
}

/// `[routes.<name>]`: what `/v1/predict/{name}` sends to.
///
/// `PartialEq` only: the retry budget ratio is an `f64`.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    /// `[A-Za-z0-9._-]+`, so it is safe in a URL path segment.
    pub name: String,
    /// At least one, each backend at most once, in the order written.
    pub backends: Vec<RouteBackend>,
    /// The doors the route is served on (`doors = [...]`); `None`: every
    /// open door its backends can serve.
    pub doors: Option<Vec<DoorKind>>,
    /// Overrides `server.request_timeout` for this route; > 0.
    pub timeout: Option<Duration>,
    /// Total tries per request, the first included; 1..=10.
    pub attempts: u32,
    /// How each attempt picks a backend.
    pub balance: Balance,
    /// Longest one attempt may take; > 0. `None`: an attempt may use what is
    /// left of the deadline. A backend's own `timeout` applies too: an attempt
    /// ends at the earliest of the three.
    pub per_try_timeout: Option<Duration>,
    /// Wait before a retry.
    pub backoff: BackoffConfig,
    /// Bounds retries (and hedged attempts) relative to requests.
    pub retry_budget: RetryBudgetConfig,
    /// Send one more attempt to another backend when the first has not
    /// answered after this long (> 0); first answer wins. `None` = no hedging.
    pub hedge_after: Option<Duration>,
    /// Timeouts and keep-alives of `/v1/predict/{route}/stream`.
    pub stream: StreamConfig,
    /// Requests carrying `X-Amzn-SageMaker-Session-Id` go to the backend that
    /// opened the session.
    pub sticky_sessions: bool,
    /// Requests per second for the route as a whole, every client together.
    pub rate_limit: Option<RateLimit>,
    /// Tokens per minute for the route as a whole, charged after each answer.
    pub tokens_per_minute: Option<u32>,
    /// The route's response cache, when it has one.
    pub cache: Option<CacheConfig>,
    /// Where copies of the route's requests go to be compared
    /// ([`crate::shadow`]); empty: none.
    pub shadow: Vec<ShadowConfig>,
    /// Shadow calls of the route in flight at once, every shadow together;
    /// 1..=10000.
    pub shadow_max_in_flight: u32,
    /// Embeddings agree when every vector's cosine similarity is at least
    /// this; 0.0..=1.0.
    pub shadow_cosine_threshold: f64,
}

/// One entry of `routes.<name>.shadow`: a configured backend (it need not
/// serve the route) and the share of the route's requests copied to it.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowConfig {
    pub backend: String,
    /// 0.0..=100.0.
    pub percent: f64,
}

/// `[shadow]`: what the shadows of every route share.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ShadowSettings {
    /// `shadow.diff_log` and its keys; `None`: no diff log.
    pub diff_log: Option<DiffLogConfig>,
}

/// `shadow.diff_log`, `diff_log_percent`, `diff_log_answer_bytes`: a JSON
/// line per sampled shadow comparison, appended to a file
/// ([`crate::shadow::diff_log`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DiffLogConfig {
    /// Not empty; when it exists, a regular file. Opened (created) at start
    /// and again at each reload that applies.
    pub path: PathBuf,
    /// The share of compared shadow calls written, whatever their outcome;
    /// 0.0..=100.0.
    pub percent: f64,
    /// Each answer is cut to at most this many bytes (at a UTF-8 boundary
    /// when it is text); 0..=65536.
    pub answer_bytes: usize,
}

/// `shadow.diff_log_percent` when not set.
pub const DEFAULT_DIFF_LOG_PERCENT: f64 = 100.0;
/// `shadow.diff_log_answer_bytes` when not set.
pub const DEFAULT_DIFF_LOG_ANSWER_BYTES: usize = 2048;

/// `routes.<name>.shadow_max_in_flight` when not set.
pub const DEFAULT_SHADOW_MAX_IN_FLIGHT: u32 = 16;
/// `routes.<name>.shadow_cosine_threshold` when not set.
pub const DEFAULT_SHADOW_COSINE_THRESHOLD: f64 = 0.99;

/// `routes.<name>.cache`: answers kept and served again to the same
/// request ([`crate::cache`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// How long an answer is served again; > 0, at most 7 days.
    pub ttl: Duration,
    /// Where the answers are kept.
    pub store: CacheStore,
    /// In memory, the cache's size in bytes (answers, their headers and
    /// keys); in Redis, the most one answer may take (Redis's own
    /// `maxmemory` bounds the whole). 1 KiB to 64 GiB.
    pub max_bytes: u64,
    /// One entry for every client: a client may be served an answer another
    /// client's request brought. Off by default.
    pub shared: bool,
    /// Sampling requests (`do_sample`, a temperature without a seed) are
    /// cached too. Off by default: their answers are meant to differ.
    pub sampling: bool,
}

/// `routes.<name>.cache.store`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheStore {
    /// Each gateway process keeps its own answers (the default).
    Memory,
    /// Every gateway sharing the Redis of `[rate_limits]` (a copy of its
    /// settings, so that a route follows a change of them) shares them.
    Redis(RedisStoreConfig),
}

/// `routes.<name>.cache.max_bytes` when not set: 256 MiB.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 256 << 20;

/// `balance = "p2c" | "weighted" | "priority"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Balance {
    /// Power of two choices on peak-EWMA latency × (in-flight + 1), weights
    /// respected.
    #[default]
    P2c,
    /// Random by weight, skipping unavailable backends.
    Weighted,
    /// Spillover: the first available backend in the order listed takes the
    /// traffic, the next one what it sheds. Weights are not used.
    Priority,
}

impl Balance {
    /// The name used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Balance::P2c => "p2c",
            Balance::Weighted => "weighted",
            Balance::Priority => "priority",
        }
    }
}

impl fmt::Display for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a route's streams are timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamConfig {
    /// Longest wait for a stream's first event, per attempt (retries may
    /// follow); > 0.
    pub first_byte_timeout: Duration,
    /// Longest silence between two events once the stream began; > 0.
    pub idle_timeout: Duration,
    /// An SSE comment is sent after this much silence, so proxies and
    /// clients keep the connection; > 0.
    pub keepalive: Duration,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            first_byte_timeout: DEFAULT_STREAM_FIRST_BYTE_TIMEOUT,
            idle_timeout: DEFAULT_STREAM_IDLE_TIMEOUT,
            keepalive: DEFAULT_STREAM_KEEPALIVE,
        }
    }
}

/// `backoff_base`, `backoff_max`: capped exponential backoff with full jitter,
/// the n-th retry waiting a random time in `[0, min(max, base × 2^(n-1))]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// > 0.
    pub base: Duration,
    /// >= `base`.
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            base: DEFAULT_BACKOFF_BASE,
            max: DEFAULT_BACKOFF_MAX,
        }
    }
}

/// `retry_budget_ratio`, `retry_budget_min_per_second`, `retry_budget_window`:
/// retries allowed = `ratio` × requests + `min_per_second` × seconds, both
/// counted over the last `window` (Finagle / Linkerd style).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudgetConfig {
    /// 0.0..=1.0 (never NaN).
    pub ratio: f64,
    /// Retries always allowed per second, whatever the ratio; may be 0.
    pub min_per_second: u32,
    /// > 0.
    pub window: Duration,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        Self {
            ratio: DEFAULT_RETRY_BUDGET_RATIO,
            min_per_second: DEFAULT_RETRY_BUDGET_MIN_PER_SECOND,
            window: DEFAULT_RETRY_BUDGET_WINDOW,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteBackend {
    /// Name of an entry of [`Config::backends`]; guaranteed to exist.
    pub backend: String,
    /// Relative share of traffic; 1..=1000.
    pub weight: u32,
}

/// Everything wrong with a configuration, one `<key path>: <message>` per entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(error)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Parses and validates a configuration. `env` answers `${VAR}` lookups
    /// (`None` = unset), so tests never touch the process environment.
    pub fn from_toml(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        validate::load(text, env)
    }

    /// Reads `path` and parses it with the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        Self::parse(&Self::read(path)?)
    }

    /// The text of the file at `path` (through any symlinks, as Kubernetes
    /// mounts a ConfigMap), at most [`MAX_CONFIG_BYTES`].
    pub fn read(path: &Path) -> Result<String, ConfigErrors> {
        read_capped(path).map_err(|why| {
            ConfigErrors(vec![format!(
                "{}: cannot read the configuration file: {why}",
                path.display()
            )])
        })
    }

    /// [`Config::read`] of a regular file only: what a running gateway
    /// reads again, where a FIFO or a device at the path must not block it.
    pub fn read_regular(path: &Path) -> Result<String, ConfigErrors> {
        match std::fs::metadata(path) {
            Ok(meta) if !meta.is_file() => Err(ConfigErrors(vec![format!(
                "{}: cannot read the configuration file: not a regular file",
                path.display()
            )])),
            _ => Self::read(path),
        }
    }

    /// Parses `text` with the process environment.
    pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
        Self::from_toml(text, &|name| {
            std::env::var_os(name).and_then(|v| v.into_string().ok())
        })
    }

    /// A human-readable listing of routes and backends for `infergate check`.
    /// Never prints a secret: tokens show as `auth token`.
    pub fn summary(&self) -> String {
        summary::render(self)
    }

    /// The backend called `name`.
    pub fn backend(&self, name: &str) -> Option<&BackendConfig> {
        self.backends
            .binary_search_by(|b| b.name.as_str().cmp(name))
            .ok()
            .and_then(|i| self.backends.get(i))
    }
}
