//! The serve loop both emulators run on, and the plumbing they share.
//!
//! hyper 1 with hyper-util's auto builder (HTTP/1.1 and h2c prior knowledge)
//! on one listener; in HTTPS mode each connection first completes a rustls
//! handshake ([`super::tls`]) and then speaks what ALPN chose. Each request is first checked for the `/_emulator/*`
//! control routes, then recorded in the [`Counters`](super::Counters), its body
//! read up to the emulator's limit, and handed to the [`Emulator`]. An
//! emulator answers a response or [`Reset`]: the connection is then dropped
//! with `SO_LINGER` 0, so the client sees ECONNRESET and no response — the
//! closest a local server gets to a load balancer cutting a connection.
//! A [`RequestGuard`] rides in the response body to keep the in-flight gauge
//! and count clients that go away before the body is fully sent.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{BoxStream, Stream, StreamExt};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::faults::{FaultConfig, InjectedError, Outcome};
use super::tls::{self, Negotiated, Protocol, TlsOptions};
use super::{EmulatorHandle, RecordedRequest, Shared, TlsSession};

/// How long a graceful shutdown waits for open requests before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
const CONTROL_BODY_LIMIT: usize = 64 * 1024;

/// "Cut this connection instead of answering."
#[derive(Debug)]
pub(crate) struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset injected by the emulator")
    }
}

impl std::error::Error for Reset {}

/// Why a request body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyError {
    TooLarge,
    Io,
}

/// A request with its body read.
pub(crate) struct EmuRequest {
    pub parts: http::request::Parts,
    pub body: Result<Bytes, BodyError>,
}

pub(crate) type Answer = Result<Response<EmuBody>, Reset>;

/// One emulator's request handling, behind the shared serve loop.
pub(crate) trait Emulator: Send + Sync + 'static {
    /// Largest request body read; larger ones arrive as `BodyError::TooLarge`.
    const MAX_BODY: usize;

    fn handle(&self, req: EmuRequest, shared: &Arc<Shared>) -> impl Future<Output = Answer> + Send;
}

// === impl EmuBody ===

/// A response body: empty, one chunk, or a stream, carrying the request's
/// guard so the counters see when it is done or abandoned.
pub(crate) struct EmuBody {
    kind: Kind,
    guard: Option<RequestGuard>,
}

enum Kind {
    Full(Option<Bytes>),
    Stream(BoxStream<'static, Result<Bytes, io::Error>>),
}

impl EmuBody {
    pub fn empty() -> Self {
        EmuBody {
            kind: Kind::Full(None),
            guard: None,
        }
    }

    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        EmuBody {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
            guard: None,
        }
    }

    pub fn stream(s: impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static) -> Self {
        EmuBody {
            kind: Kind::Stream(s.boxed()),
            guard: None,
        }
    }

    fn with_guard(mut self, mut guard: RequestGuard) -> Self {
        // An empty body may never be polled: it is complete as it stands.
        if matches!(self.kind, Kind::Full(None)) {
            guard.done = true;
        }
        self.guard = Some(guard);
        self
    }

    fn finish(&mut self) {
        if let Some(g) = self.guard.as_mut() {
            g.done = true;
        }
    }
}

impl Body for EmuBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        match &mut this.kind {
            Kind::Full(chunk) => {
                let next = chunk.take();
                this.finish();
                Poll::Ready(next.map(|b| Ok(Frame::data(b))))
            }
            Kind::Stream(s) => match s.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    this.finish();
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.kind, Kind::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Stream(_) => SizeHint::default(),
        }
    }
}

/// Lives from a request's arrival until its response body is done or
/// dropped; a drop before done means the client went away.
pub(crate) struct RequestGuard {
    shared: Arc<Shared>,
    done: bool,
}

impl RequestGuard {
    fn new(shared: Arc<Shared>) -> Self {
        shared.counters.enter();
        RequestGuard {
            shared,
            done: false,
        }
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.shared.counters.leave(!self.done);
    }
}

// === response helpers ===

pub(crate) fn json_response(status: StatusCode, value: &Value) -> Response<EmuBody> {
    let mut resp = Response::new(EmuBody::full(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

pub(crate) fn empty_response(status: StatusCode) -> Response<EmuBody> {
    let mut resp = Response::new(EmuBody::empty());
    *resp.status_mut() = status;
    resp
}

/// Adds `Retry-After` to an injected error when the faults ask for it.
pub(crate) fn with_retry_after(
    mut resp: Response<EmuBody>,
    faults: &super::faults::Faults,
) -> Response<EmuBody> {
    if let Some(after) = faults.get().retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(after.as_secs()));
    }
    resp
}

/// Inserts a header when the value is a valid header value (values built
/// from request input may not be); never panics.
pub(crate) fn set_header(resp: &mut Response<EmuBody>, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

/// A UUID-shaped request id (version 4 layout).
pub(crate) fn request_id() -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        fastrand::u32(..),
        fastrand::u16(..),
        fastrand::u16(..0x1000),
        0x8000 | fastrand::u16(..0x4000),
        fastrand::u64(..1 << 48)
    )
}

/// Applies latency, then the drawn fault. `Ok(Some(e))` means "answer with
/// this injected error"; `Err(Reset)` means cut the connection.
pub(crate) async fn apply_faults(shared: &Shared) -> Result<Option<InjectedError>, Reset> {
    let draw = shared.faults.draw();
    if !draw.latency.is_zero() {
        tokio::time::sleep(draw.latency).await;
    }
    match draw.outcome {
        Outcome::Proceed => Ok(None),
        Outcome::Reset => {
            shared.counters.reset_injected();
            Err(Reset)
        }
        Outcome::Fail(e) => {
            shared.counters.error_injected();
            Ok(Some(e))
        }
    }
}

/// Emits `events` one per `interval` (the first after one interval too).
pub(crate) fn paced(
    events: Vec<Bytes>,
    interval: Duration,
) -> impl Stream<Item = Result<Bytes, io::Error>> + Send {
    futures_util::stream::unfold(events.into_iter(), move |mut it| async move {
        let next = it.next()?;
        if !interval.is_zero() {
            tokio::time::sleep(interval).await;
        }
        Some((Ok(next), it))
    })
}

// === server ===

/// Binds `listen` and serves `emu` (over TLS when `tls` is given) until the
/// returned handle is shut down or dropped.
pub(crate) async fn start<E: Emulator>(
    listen: SocketAddr,
    emu: E,
    shared: Arc<Shared>,
    tls: Option<&TlsOptions>,
) -> io::Result<EmulatorHandle> {
    let acceptor = tls.map(tls::acceptor).transpose()?;
    let listener = crate::server::listen(listen, false)?;
    let addr = listener.local_addr()?;
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(accept_loop(
        listener,
        acceptor.clone(),
        Arc::new(emu),
        shared.clone(),
        stop_rx,
    ));
    Ok(EmulatorHandle {
        addr,
        tls: acceptor.is_some(),
        shared,
        stop,
        task: Some(task),
    })
}

async fn accept_loop<E: Emulator>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    emu: Arc<E>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    // Dropping the set (handle dropped → this task aborted) aborts every
    // connection task with it, so no server outlives its handle.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    shared.connections.accept();
                    conns.spawn(serve_connection(stream, tls.clone(), emu.clone(), shared.clone(), stop.clone()));
                }
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "emulator accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    let drain = async { while conns.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, drain).await;
}

/// Per-connection switch the handler flips to have the connection reset.
struct ConnReset {
    flag: AtomicBool,
    notify: Notify,
}

async fn serve_connection<E: Emulator>(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    emu: Arc<E>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let ctl = Arc::new(ConnReset {
        flag: AtomicBool::new(false),
        notify: Notify::new(),
    });
    let io = ResetIo {
        stream,
        ctl: ctl.clone(),
    };
    let Some(acceptor) = tls else {
        let plain = Negotiated::default();
        return serve_http(io, plain, ctl, emu, shared, stop).await;
    };
    let accepted = tokio::select! {
        r = acceptor.accept(io) => r,
        _ = stop.changed() => return,
    };
    match accepted {
        Ok(tls) => {
            let negotiated = Negotiated::of(tls.get_ref().1);
            shared.connections.handshake(TlsSession {
                server_name: negotiated.server_name.clone(),
                alpn: negotiated.alpn.clone(),
            });
            serve_http(tls, negotiated, ctl, emu, shared, stop).await;
        }
        Err(e) => shared.connections.handshake_failed(e.to_string()),
    }
}

/// Serves HTTP on a connection, plain or after its TLS handshake.
async fn serve_http<E, I>(
    io: I,
    negotiated: Negotiated,
    ctl: Arc<ConnReset>,
    emu: Arc<E>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) where
    E: Emulator,
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    let protocol = negotiated.protocol();
    let server_name: Option<Arc<str>> = negotiated.server_name.map(Arc::from);
    let svc_ctl = ctl.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let emu = emu.clone();
        let shared = shared.clone();
        let ctl = svc_ctl.clone();
        let server_name = server_name.clone();
        async move {
            let answer = dispatch(&*emu, &shared, req, server_name.as_deref()).await;
            if answer.is_err() {
                ctl.flag.store(true, Ordering::SeqCst);
                ctl.notify.notify_one();
            }
            answer
        }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let builder = match protocol {
        Protocol::Auto => builder,
        Protocol::Http1 => builder.http1_only(),
        Protocol::Http2 => builder.http2_only(),
    };
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => break,
            // Dropping the connection drops the socket, with linger 0 (see ResetIo).
            _ = ctl.notify.notified() => break,
            _ = stop.changed(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// The TCP stream, which turns its close into a reset when asked to.
struct ResetIo {
    stream: TcpStream,
    ctl: Arc<ConnReset>,
}

impl Drop for ResetIo {
    fn drop(&mut self) {
        if self.ctl.flag.load(Ordering::SeqCst) {
            // Linger 0: close sends RST instead of FIN, discarding unsent data.
            let _ = self.stream.set_zero_linger();
        }
    }
}

impl AsyncRead for ResetIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResetIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Io),
    }
}

async fn dispatch<E: Emulator>(
    emu: &E,
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    server_name: Option<&str>,
) -> Answer {
    if req.uri().path().starts_with("/_emulator/") {
        return Ok(control(shared, req).await);
    }
    let guard = RequestGuard::new(shared.clone());
    let (parts, body) = req.into_parts();
    let body = read_body(body, E::MAX_BODY).await;
    shared.counters.record(RecordedRequest {
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers.clone(),
        body: body.clone().unwrap_or_default(),
        version: parts.version,
        server_name: server_name.map(str::to_owned),
    });
    match emu.handle(EmuRequest { parts, body }, shared).await {
        Ok(resp) => Ok(resp.map(|b| b.with_guard(guard))),
        Err(reset) => {
            // Our doing, not the client's: not a cancellation.
            let mut guard = guard;
            guard.done = true;
            Err(reset)
        }
    }
}

// === control routes ===

fn control_error(status: StatusCode, message: &str) -> Response<EmuBody> {
    json_response(status, &json!({ "error": message }))
}

fn recorded_json(r: &RecordedRequest) -> Value {
    let headers: serde_json::Map<String, Value> = r
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                Value::from(String::from_utf8_lossy(v.as_bytes())),
            )
        })
        .collect();
    json!({
        "method": r.method.as_str(),
        "path": r.path,
        "query": r.query,
        "headers": headers,
        "body": String::from_utf8_lossy(&r.body),
        "version": format!("{:?}", r.version),
        "server_name": r.server_name,
    })
}

async fn control(shared: &Shared, req: Request<Incoming>) -> Response<EmuBody> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let faults_json = |c: &FaultConfig| serde_json::to_value(c).unwrap_or(Value::Null);
    match (&parts.method, path) {
        (&Method::GET, "/_emulator/counters") => {
            let snap = serde_json::to_value(shared.counters.snapshot()).unwrap_or(Value::Null);
            json_response(StatusCode::OK, &snap)
        }
        (&Method::POST, "/_emulator/counters/reset") => {
            shared.counters.reset();
            empty_response(StatusCode::NO_CONTENT)
        }
        (&Method::GET, "/_emulator/requests") => {
            let list: Vec<Value> = shared.counters.recent().iter().map(recorded_json).collect();
            json_response(StatusCode::OK, &Value::Array(list))
        }
        (&Method::GET, "/_emulator/faults") => {
            json_response(StatusCode::OK, &faults_json(&shared.faults.get()))
        }
        (&Method::PUT, "/_emulator/faults") => {
            let bytes = match read_body(body, CONTROL_BODY_LIMIT).await {
                Ok(b) => b,
                Err(_) => return control_error(StatusCode::BAD_REQUEST, "could not read the body"),
            };
            let config: FaultConfig = match serde_json::from_slice(&bytes) {
                Ok(c) => c,
                Err(e) => {
                    return control_error(
                        StatusCode::BAD_REQUEST,
                        &format!("invalid fault config: {e}"),
                    )
                }
            };
            if let Err(e) = config.validate() {
                return control_error(
                    StatusCode::BAD_REQUEST,
                    &format!("invalid fault config: {e}"),
                );
            }
            shared.faults.set(config);
            json_response(StatusCode::OK, &faults_json(&shared.faults.get()))
        }
        (&Method::POST, "/_emulator/scale-to-zero") => {
            shared.faults.scale_to_zero();
            empty_response(StatusCode::NO_CONTENT)
        }
        (_, "/_emulator/counters" | "/_emulator/counters/reset" | "/_emulator/requests")
        | (_, "/_emulator/faults" | "/_emulator/scale-to-zero") => {
            control_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => control_error(StatusCode::NOT_FOUND, "unknown control route"),
    }
}
