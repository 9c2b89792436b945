//! Opening one upstream connection: TCP to the endpoint (or to the proxy the
//! environment names for it), a CONNECT tunnel through that proxy for an
//! `https` endpoint, then TLS with the endpoint's name (SNI) and ALPN.
//!
//! The pool ([`super::pool`]) opens one only when it has no ready
//! connection for the endpoint, so none of this runs per request. The
//! whole of it, tunnel and handshake included, is bounded by
//! `upstream.connect_timeout`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::{Scheme, Uri};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;
use tower::ServiceExt;

use super::proxy::{Proxies, Proxy};
use super::tls::TlsConfigs;

/// TCP keep-alive: idle time before the first probe, and between probes.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// What every connection of the gateway shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) tls: TlsConfigs,
    pub(crate) proxies: Proxies,
    pub(crate) connect_timeout: Duration,
}

/// Opens connections to upstream endpoints.
#[derive(Debug, Clone)]
pub(crate) struct Connector {
    tcp: HttpConnector,
    shared: Arc<Shared>,
}

impl Connector {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        // As reqwest did: a peer that vanished (a NAT or balancer dropping
        // an idle pooled connection) is found within a minute, not at the
        // next request's timeout.
        tcp.set_keepalive(Some(KEEPALIVE));
        tcp.set_keepalive_interval(Some(KEEPALIVE));
        tcp.set_keepalive_retries(Some(3));
        Self { tcp, shared }
    }

    async fn connect(self, dst: Uri) -> Result<Conn, ConnectError> {
        let https = dst.scheme() == Some(&Scheme::HTTPS);
        let tcp = match self.shared.proxies.for_uri(&dst) {
            None => self
                .tcp
                .oneshot(dst.clone())
                .await
                .map_err(ConnectError::tcp)?,
            Some(proxy) if https => {
                let mut tunnel = Tunnel::new(proxy.uri().clone(), self.tcp);
                if let Some(auth) = proxy.authorization() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                tunnel
                    .oneshot(dst.clone())
                    .await
                    .map_err(|e| ConnectError::proxy(&proxy, &e))?
            }
            // An `http` endpoint through a proxy: requests go to the proxy
            // in absolute form.
            Some(proxy) => {
                let io = self
                    .tcp
                    .oneshot(proxy.uri().clone())
                    .await
                    .map_err(|e| ConnectError::proxy(&proxy, &e))?;
                return Ok(Conn::Tcp { io, proxied: true });
            }
        };
        if !https {
            return Ok(Conn::Tcp {
                io: tcp,
                proxied: false,
            });
        }
        let host = dst.host().unwrap_or_default();
        let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
            .map_err(|_| {
                ConnectError::new(ConnectErrorKind::Tls, "the host is not a TLS server name")
            })?
            .to_owned();
        let config = self.shared.tls.for_authority(&authority(&dst));
        let stream = TlsConnector::from(config)
            .connect(name, tcp.into_inner())
            .await
            .map_err(ConnectError::tls)?;
        Ok(Conn::Tls(Box::new(TokioIo::new(stream))))
    }
}

impl Connector {
    /// A new connection to `dst`, all of it within the connect timeout.
    pub(crate) async fn open(self, dst: Uri) -> Result<Conn, ConnectError> {
        let limit = self.shared.connect_timeout;
        tokio::time::timeout(limit, self.connect(dst))
            .await
            .unwrap_or_else(|_| {
                Err(ConnectError::new(
                    ConnectErrorKind::TimedOut,
                    format!("no connection within {limit:?}"),
                ))
            })
    }
}

/// `host:port` of `uri`, with the scheme's default port when it names none.
pub(crate) fn authority(uri: &Uri) -> String {
    let port = uri.port_u16().unwrap_or(default_port(uri));
    format!("{}:{port}", uri.host().unwrap_or_default())
}

/// The port `uri`'s scheme implies: 443 for `https`, else 80.
pub(crate) fn default_port(uri: &Uri) -> u16 {
    if uri.scheme() == Some(&Scheme::HTTPS) {
        443
    } else {
        80
    }
}

/// What went wrong opening a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectErrorKind {
    /// The TCP connection to the endpoint failed (refused, unreachable, no
    /// such host).
    Tcp,
    /// No connection within the connect timeout.
    TimedOut,
    /// The TLS handshake failed (an untrusted or wrong certificate, no
    /// common protocol).
    Tls,
    /// The proxy could not be reached or refused the tunnel.
    Proxy,
}

/// Why no connection was made. Its message names the step that failed and
/// never a credential (a proxy is named by host and port only).
#[derive(Debug)]
pub struct ConnectError {
    pub kind: ConnectErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ConnectError {
    fn new(kind: ConnectErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    fn tcp(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        let err = err.into();
        let why = io_reason(&*err).unwrap_or_else(|| err.to_string());
        Self {
            source: Some(err),
            ..Self::new(
                ConnectErrorKind::Tcp,
                format!("TCP connection failed: {why}"),
            )
        }
    }

    /// A failed handshake: TLS's own refusal (tokio-rustls carries rustls's
    /// error inside the `io::Error`), or the connection breaking during it,
    /// which is no verdict on the certificate and may be tried again.
    fn tls(err: io::Error) -> Self {
        let refused = err
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .map(rustls::Error::to_string);
        let (kind, message) = match refused {
            Some(why) => (
                ConnectErrorKind::Tls,
                format!("TLS handshake failed: {why}"),
            ),
            None => (
                ConnectErrorKind::Tcp,
                format!("the connection broke during the TLS handshake: {err}"),
            ),
        };
        Self {
            source: Some(Box::new(err)),
            ..Self::new(kind, message)
        }
    }

    fn proxy(proxy: &Proxy, err: &(dyn std::error::Error + 'static)) -> Self {
        let mut why = err.to_string();
        if let Some(io) = io_reason(err) {
            why = format!("{why}: {io}");
        }
        Self::new(
            ConnectErrorKind::Proxy,
            format!("through the proxy at {}: {why}", proxy.address()),
        )
    }
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

/// The first I/O error among `err` and its sources, as text.
fn io_reason(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    super::find_source::<io::Error>(err).map(io::Error::to_string)
}

/// One upstream connection: plain TCP (to the endpoint or to a forward
/// proxy) or TLS.
#[derive(Debug)]
pub(crate) enum Conn {
    Tcp {
        io: TokioIo<TcpStream>,
        /// Requests on it go in absolute form to a proxy.
        proxied: bool,
    },
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        match self {
            Conn::Tcp { io, proxied } => io.connected().proxy(*proxied),
            Conn::Tls(io) => {
                let (tcp, session) = io.inner().get_ref();
                let connected = tcp.connected();
                if session.alpn_protocol() == Some(b"h2") {
                    connected.negotiated_h2()
                } else {
                    connected
                }
            }
        }
    }
}

impl Read for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp { io, .. } => Pin::new(io).poll_read(cx, buf),
            Conn::Tls(io) => Pin::new(&mut **io).poll_read(cx, buf),
        }
    }
}

impl Write for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Tcp { io, .. } => Pin::new(io).poll_write(cx, buf),
            Conn::Tls(io) => Pin::new(&mut **io).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp { io, .. } => Pin::new(io).poll_flush(cx),
            Conn::Tls(io) => Pin::new(&mut **io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp { io, .. } => Pin::new(io).poll_shutdown(cx),
            Conn::Tls(io) => Pin::new(&mut **io).poll_shutdown(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Tcp { io, .. } => io.is_write_vectored(),
            Conn::Tls(io) => io.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Tcp { io, .. } => Pin::new(io).poll_write_vectored(cx, bufs),
            Conn::Tls(io) => Pin::new(&mut **io).poll_write_vectored(cx, bufs),
        }
    }
}
