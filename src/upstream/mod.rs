//! The upstream HTTP client: hyper's connections under a per-worker
//! [`pool`], opened by the gateway's own [`connect::Connector`] (TCP,
//! proxies from the environment, rustls).
//!
//! [`Egress`] is built once from the config: the TLS roots (the system's,
//! `upstream.tls_ca_file`, a backend's own `tls_ca_file`), the proxies and
//! the pool settings. Each worker gets its own [`Client`] from it, with its
//! own pool of connections driven by the worker's runtime. A backend turns
//! its URL into a [`Target`] once, at start, so a request costs no URL
//! parsing and no proxy lookup.

pub mod connect;
mod deadline;
mod pool;
mod proxy;
pub mod tls;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{PROXY_AUTHORIZATION, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::Full;

use crate::config::{BackendConfig, Config};

pub use connect::{ConnectError, ConnectErrorKind};
pub use deadline::Deadline;
pub use tls::CaFileError;

/// `user-agent` of every upstream request.
const USER_AGENT_VALUE: HeaderValue =
    HeaderValue::from_static(concat!("infergate/", env!("CARGO_PKG_VERSION")));

/// A request's body: the gateway reads a request whole before it sends it.
pub type RequestBody = Full<Bytes>;

/// An upstream answer, its body still to read.
pub type Response = http::Response<hyper::body::Incoming>;

/// A request on its way, until its answer's head: boxed, so that the
/// futures which await it (the attempt, the hedge, the door's) stay small
/// and cheap to move.
pub type Sending<'a> = Pin<Box<dyn Future<Output = Result<Response, Error>> + Send + 'a>>;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not connect")]
    Connect(#[source] ConnectError),
    #[error("the request failed")]
    Http(#[source] hyper::Error),
    #[error("a new connection closed before the request was sent")]
    Closed,
}

impl Error {
    /// Whether no connection was made.
    pub fn is_connect(&self) -> bool {
        matches!(self, Error::Connect(_))
    }
}

/// What every worker's client shares, built once from the config.
#[derive(Debug)]
pub struct Egress {
    shared: Arc<connect::Shared>,
    pool_idle_timeout: Duration,
    pool_max_idle_per_host: usize,
}

/// Why the upstream client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("{key}: {source}")]
    CaFile {
        key: String,
        #[source]
        source: CaFileError,
    },
    #[error("{url}: {why}")]
    Proxy { url: String, why: String },
    #[error(
        "backends.{first} and backends.{second} both reach {authority} but trust different \
         tls_ca_file: one connection pool serves a host, so give them the same file"
    )]
    CaConflict {
        first: String,
        second: String,
        authority: String,
    },
}

impl Egress {
    /// The TLS roots and proxies of `config` and of this process's
    /// environment.
    pub fn new(config: &Config) -> Result<Self, EgressError> {
        Self::with_proxies(config, proxy::Proxies::from_env())
    }

    fn with_proxies(config: &Config, proxies: proxy::Proxies) -> Result<Self, EgressError> {
        let upstream = &config.upstream;
        let mut tls = tls::TlsConfigs::new(upstream.tls_ca_file.as_deref()).map_err(|source| {
            EgressError::CaFile {
                key: "upstream.tls_ca_file".into(),
                source,
            }
        })?;
        let mut seen: Vec<(String, &Path, &str)> = Vec::new();
        for backend in &config.backends {
            let Some(file) = backend.tls_ca_file.as_deref() else {
                continue;
            };
            let authority = backend_authority(backend);
            if let Some((_, other, first)) = seen.iter().find(|(a, ..)| *a == authority) {
                if *other != file {
                    return Err(EgressError::CaConflict {
                        first: first.to_string(),
                        second: backend.name.clone(),
                        authority,
                    });
                }
                continue;
            }
            tls.add(authority.clone(), file)
                .map_err(|source| EgressError::CaFile {
                    key: format!("backends.{}.tls_ca_file", backend.name),
                    source,
                })?;
            seen.push((authority, file, &backend.name));
        }
        Ok(Self {
            shared: Arc::new(connect::Shared {
                tls,
                proxies,
                connect_timeout: upstream.connect_timeout,
            }),
            pool_idle_timeout: upstream.pool_idle_timeout,
            pool_max_idle_per_host: upstream.pool_max_idle_per_host,
        })
    }

    /// A new client with its own connection pool: one per worker.
    pub fn client(&self) -> Client {
        let connector = connect::Connector::new(Arc::clone(&self.shared));
        Client {
            pool: Arc::new(pool::Pool::new(
                connector,
                self.pool_idle_timeout,
                self.pool_max_idle_per_host,
            )),
        }
    }

    /// Where requests to `url` go: refused when the environment's proxy
    /// for it is one the connector cannot use.
    pub fn target(&self, url: &reqwest::Url) -> Result<Target, EgressError> {
        let fail = |why: String| EgressError::Proxy {
            url: url.to_string(),
            why,
        };
        let uri: Uri = url.as_str().parse().map_err(|e| fail(format!("{e}")))?;
        let proxy = self.shared.proxies.check(&uri).map_err(fail)?;
        // A tunnel carries its own credentials; requests in absolute form to
        // a forward proxy carry them on every request.
        let proxy_authorization = proxy
            .filter(|_| uri.scheme_str() == Some("http"))
            .and_then(|p| p.authorization());
        Ok(Target::new(uri, proxy_authorization))
    }
}

/// The `host:port` a backend's requests go to.
fn backend_authority(backend: &BackendConfig) -> String {
    match backend.base_url().parse::<Uri>() {
        Ok(uri) => connect::authority(&uri),
        Err(_) => backend.base_url(),
    }
}

/// One URL of a backend's, ready to send to: its absolute form (for
/// HTTP/2 and forward proxies), its origin form and `Host` (for HTTP/1),
/// and its endpoint's slot in every worker's pool.
#[derive(Debug, Clone)]
pub struct Target(Arc<TargetParts>);

#[derive(Debug)]
struct TargetParts {
    uri: Uri,
    origin: Uri,
    host: HeaderValue,
    slot: usize,
    /// `Proxy-Authorization` for a forward proxy, marked sensitive.
    proxy_authorization: Option<HeaderValue>,
}

impl Target {
    fn new(uri: Uri, proxy_authorization: Option<HeaderValue>) -> Self {
        let origin = uri
            .path_and_query()
            .and_then(|p| Uri::try_from(p.as_str()).ok())
            .unwrap_or_else(|| Uri::from_static("/"));
        let host = uri.host().unwrap_or_default();
        let host = match uri.port_u16() {
            Some(port) if port != connect::default_port(&uri) => format!("{host}:{port}"),
            _ => host.to_owned(),
        };
        let scheme = uri.scheme_str().unwrap_or("http");
        let slot = pool::slot_of(&format!("{scheme}://{}", connect::authority(&uri)));
        Self(Arc::new(TargetParts {
            host: HeaderValue::from_str(&host).unwrap_or(HeaderValue::from_static("")),
            origin,
            slot,
            uri,
            proxy_authorization,
        }))
    }

    /// `url` reached directly, whatever the environment says: for tests and
    /// benchmarks that never send.
    pub fn direct(url: &reqwest::Url) -> Self {
        Self::new(url.as_str().parse().unwrap_or_default(), None)
    }

    pub fn uri(&self) -> &Uri {
        &self.0.uri
    }
}

/// One worker's upstream client.
#[derive(Debug, Clone)]
pub struct Client {
    pool: Arc<pool::Pool>,
}

impl Client {
    /// Sends `method` to `target` with `headers` and `body`; resolves once
    /// the response headers arrived.
    pub fn send<'a>(
        &'a self,
        method: Method,
        target: &'a Target,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Sending<'a> {
        headers.insert(USER_AGENT, USER_AGENT_VALUE);
        if let Some(auth) = &target.0.proxy_authorization {
            headers.insert(PROXY_AUTHORIZATION, auth.clone());
        }
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = method;
        *req.headers_mut() = headers;
        crate::boxed::boxed(|| self.pool.send(target, req))
    }
}

/// The first of `err` and its sources that is a `T`.
pub(crate) fn find_source<'e, T: std::error::Error + 'static>(
    err: &'e (dyn std::error::Error + 'static),
) -> Option<&'e T> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        next = e.source();
    }
    None
}
