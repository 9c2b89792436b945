//! The accept loop: HTTP/1.1 and h2c on one listener (or HTTPS with h2 or
//! HTTP/1.1 by ALPN, `[server.tls]`: [`tls`]), connection limits and
//! timeouts, and a graceful shutdown. With `server.admin_listen` a second,
//! plain listener serves only the operator paths, with 64 connection slots
//! of its own, on the first worker's runtime.
//!
//! Limits: at most `server.max_connections` connections served (more wait in
//! the accept backlog; each worker holds at most one accepted connection
//! until a slot frees), at most 256 concurrent h2 streams per connection,
//! and h2 keep-alive pings. A request head has `server.header_read_timeout`
//! from its first byte (from accept for the first request and the h2
//! preface) until it is complete; a connection with nothing in flight is
//! closed after `server.idle_timeout`, between requests only, so idle
//! clients cannot hold the slots ([`conn`] keeps both timers; hyper's own
//! header timer is off). The gateway's head limits ([`crate::layers::head_limit`]:
//! header count and bytes, the same on HTTP/1 and h2) answer in the JSON
//! error shape; hyper's, set above them, only stop what is far beyond.
//! On shutdown the listener closes, `/readyz` turns 503, every connection is
//! asked to finish what it is doing (HTTP/1: after the current response;
//! h2: GOAWAY), and the gateway waits up to `server.shutdown_grace` for them.
//!
//! Workers (`server.workers`): each worker is a thread with its own
//! single-threaded runtime and its own listening socket on the same address
//! (`SO_REUSEPORT`; Linux spreads new connections over them). A
//! connection, its requests, the upstream calls they make (through the
//! worker's own pool of upstream connections, [`crate::gateway::current_worker`]) and the
//! response all stay on one thread: no task is handed between threads and
//! no thread is woken to steal work, which on a loaded machine costs more
//! than the work itself. The state that matters across requests (routes,
//! backend health, budgets, metrics, the connection limit) is shared.

mod conn;
mod io;
mod spread;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, AcquireError, OwnedSemaphorePermit, Semaphore, SemaphorePermit};

use crate::app::Listener;
use crate::gateway::{current_worker, set_current_worker, Gateway, Live};
use crate::layers::head_limit::{MAX_HEADERS, MAX_HEADER_BYTES};
use crate::telemetry::access_log;
use conn::Serving;
use spread::{Handoff, Spread};
use tls::Tls;

/// Largest request head hyper reads before refusing with an empty 431 and
/// closing. Above the gateway's own limit, so that a head between the two
/// reaches [`crate::layers::head_limit`] and is answered in the JSON shape.
const MAX_HEAD_BYTES: usize = 4 * MAX_HEADER_BYTES;
/// Most header lines hyper parses on HTTP/1 before the same empty 431.
/// Above the gateway's limit for the same reason; the price is hyper's:
/// any setting moves its header scratch space (64 bytes a header) from the
/// stack to the heap, one allocation per head parsed.
const HYPER_MAX_HEADERS: usize = 256;
// hyper's limits must stay above the gateway's, or its empty 431 would
// answer what the gateway should.
const _: () = assert!(HYPER_MAX_HEADERS > MAX_HEADERS && MAX_HEAD_BYTES > MAX_HEADER_BYTES);
/// Connections the admin listener serves at once.
const ADMIN_CONNECTIONS: usize = 64;
/// Most concurrent streams on one h2 connection.
const MAX_H2_STREAMS: u32 = 256;
/// Interval of h2 keep-alive pings, and how long a ping may go unanswered.
const H2_KEEPALIVE: Duration = Duration::from_secs(20);

/// Connections a listening socket holds before `accept` (the kernel caps it
/// at `net.core.somaxconn`, 4096 by default). A burst of new connections
/// beyond it is not refused: the kernel drops the handshakes and the clients
/// send them again after a second, which under load showed up as stalls of
/// a second with idle CPUs. tokio's own `TcpListener::bind` uses 1024.
pub const BACKLOG: u32 = 4096;

/// The `server.max_connections` slots, shared by every worker.
#[derive(Debug, Clone)]
pub struct Slots {
    semaphore: Arc<Semaphore>,
    max: u32,
}

impl Slots {
    /// At most `u32::MAX` slots (and the semaphore's own maximum): the drain
    /// takes them all back in one `acquire_many`, which counts in `u32`, and
    /// slots beyond what it can ask for would not be waited for.
    pub fn new(max_connections: usize) -> Self {
        let max = u32::try_from(max_connections.min(Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
        Self {
            semaphore: Arc::new(Semaphore::new(max as usize)),
            max,
        }
    }

    /// Resolves once every slot is free, that is every connection closed.
    async fn all_free(&self) -> Result<SemaphorePermit<'_>, AcquireError> {
        self.semaphore.acquire_many(self.max).await
    }
}

/// Serves `gateway` on `listener` until `shutdown` resolves, then drains:
/// one worker, on the calling runtime.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_workers(vec![listener], gateway, shutdown).await
}

/// [`serve_live`] of a gateway that never reloads, whose shutdown delay
/// (if any) runs to its end.
pub async fn serve_workers(
    listeners: Vec<TcpListener>,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let shutdown = Shutdown {
        begin: shutdown,
        cut_short: std::future::pending(),
    };
    serve_live(listeners, Live::new(gateway), shutdown).await
}

/// When the gateway shuts down: `begin` starts it (`/readyz` turns 503);
/// `cut_short` ends `server.shutdown_delay` early.
pub struct Shutdown<B, C> {
    pub begin: B,
    pub cut_short: C,
}

/// One worker's place among the others: its index, the spread of
/// connections over all of them, and its inbox of connections handed to it.
struct Worker {
    index: usize,
    spread: Arc<Spread>,
    inbox: mpsc::UnboundedReceiver<Handoff>,
}

/// Serves the current gateway of `live` with one worker per listener (from
/// [`bind_workers`]): the first on the calling runtime, each other on a
/// thread of its own with a single-threaded runtime. Once shutdown begins,
/// `/readyz` answers 503 and the gateway serves on for
/// `server.shutdown_delay` ([`not_ready_then_wait`]), then drains. Returns
/// once every worker drained.
pub async fn serve_live(
    mut listeners: Vec<TcpListener>,
    live: Arc<Live>,
    shutdown: Shutdown<impl Future<Output = ()>, impl Future<Output = ()>>,
) -> std::io::Result<()> {
    if listeners.is_empty() {
        return Err(std::io::Error::other("no listener to serve"));
    }
    let shutdown = not_ready_then_wait(Arc::clone(&live), shutdown);
    // What cannot change without a restart is read once, here.
    let gateway = live.load();
    let first = listeners.remove(0);
    let tls = match &gateway.config.server.tls {
        Some(files) => Some(Tls::load(files)?),
        None => None,
    };
    let admin = match gateway.config.server.admin_listen {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let main = Serving {
        listener: Listener::Main,
        tls: tls.clone(),
    };
    let slots = Slots::new(gateway.config.server.max_connections);
    let (spread, inboxes) = Spread::new(listeners.len() + 1);
    let mut workers = inboxes
        .into_iter()
        .enumerate()
        .map(|(index, inbox)| Worker {
            index,
            spread: Arc::clone(&spread),
            inbox,
        });
    let first_worker = workers
        .next()
        .ok_or_else(|| std::io::Error::other("no worker"))?;
    let (stop, stopped) = watch::channel(false);
    // Every socket is listening: connections queue until their worker runs.
    // Set once here, so a worker that starts late cannot undo a shutdown.
    gateway.set_ready(true);
    // Not held on: a reload's old gateway goes with its last request.
    drop(gateway);
    let mut threads = Vec::with_capacity(listeners.len());
    for (listener, worker) in listeners.into_iter().zip(workers) {
        let index = worker.index;
        let listener = listener.into_std()?;
        let live = Arc::clone(&live);
        let slots = slots.clone();
        let mut stopped = stopped.clone();
        let serving = main.clone();
        let thread = std::thread::Builder::new()
            .name(format!("infergate-worker-{index}"))
            .spawn(move || -> std::io::Result<()> {
                set_current_worker(index);
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let served = rt.block_on(async move {
                    let listener = TcpListener::from_std(listener)?;
                    // A dropped sender (the first worker failed) stops too.
                    let shutdown = async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    };
                    serve_worker(listener, live, shutdown, slots, worker, serving).await
                });
                if let Err(e) = &served {
                    tracing::error!(worker = index, error = %e, "a worker stopped");
                }
                served
            })?;
        threads.push(thread);
    }
    let stopped_now = |mut stopped: watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let first = serve_worker(
        first,
        Arc::clone(&live),
        async move {
            shutdown.await;
            let _ = stop.send(true);
        },
        slots,
        first_worker,
        main,
    );
    let admin = serve_admin(admin, Arc::clone(&live), stopped_now(stopped.clone()));
    let reload = async {
        if let Some(tls) = tls {
            tls.watch(stopped_now(stopped.clone())).await;
        }
    };
    let (result, admin, ()) = tokio::join!(first, admin, reload);
    let result = result.and(admin);
    // The other workers drain on their own threads; this runtime (which
    // runs the health checks) keeps going meanwhile.
    let joined = tokio::task::spawn_blocking(move || {
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("a worker thread panicked")))
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(std::io::Error::other)?;
    joined.into_iter().fold(result, Result::and)
}

/// Serves the operator paths on the admin listener, if any, until
/// `shutdown` resolves: on the calling runtime, with connection slots of
/// its own, so that scrapes neither wait for nor take the clients'.
async fn serve_admin(
    listener: Option<TcpListener>,
    live: Arc<Live>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let Some(listener) = listener else {
        return Ok(());
    };
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(admin_listen = %addr, "operator paths on their own listener");
    }
    let (spread, mut inboxes) = Spread::new(1);
    let worker = Worker {
        index: 0,
        spread,
        inbox: inboxes.remove(0),
    };
    let serving = Serving {
        listener: Listener::Admin,
        tls: None,
    };
    let slots = Slots::new(ADMIN_CONNECTIONS);
    serve_worker(listener, live, shutdown, slots, worker, serving).await
}

/// `shutdown`, then what Kubernetes and load balancers need before the
/// drain: `/readyz` answers 503 at once while the gateway accepts and
/// serves on for `server.shutdown_delay` (the endpoint update takes that
/// long to reach everyone still sending), cut short by a second signal.
async fn not_ready_then_wait(
    live: Arc<Live>,
    shutdown: Shutdown<impl Future<Output = ()>, impl Future<Output = ()>>,
) {
    shutdown.begin.await;
    let gateway = live.load();
    gateway.set_ready(false);
    let delay = gateway.config.server.shutdown_delay;
    drop(gateway);
    if delay.is_zero() {
        return;
    }
    tracing::info!(
        delay_secs = delay.as_secs_f64(),
        "shutting down: /readyz answers 503, serving on until the drain"
    );
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = shutdown.cut_short => tracing::info!("a second signal: draining now"),
    }
}

/// The HTTP/1.1 + h2c connection builder every connection of a worker uses.
fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // Off: it would also bound the wait between requests
        // (`server.header_read_timeout` below `server.idle_timeout` would
        // close idle connections early). `conn` keeps the header timer.
        .header_read_timeout(None)
        .max_headers(HYPER_MAX_HEADERS)
        .max_buf_size(MAX_HEAD_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .max_concurrent_streams(MAX_H2_STREAMS)
        .keep_alive_interval(Some(H2_KEEPALIVE))
        .keep_alive_timeout(H2_KEEPALIVE);
    builder
}

/// Serves until `shutdown` resolves, then drains, taking connection slots
/// from `slots` (shared with the other workers, if any). A connection this
/// worker accepts is served here or handed to a less busy worker
/// ([`spread`]); connections handed to this one arrive in its inbox.
async fn serve_worker(
    listener: TcpListener,
    live: Arc<Live>,
    shutdown: impl Future<Output = ()>,
    slots: Slots,
    mut worker: Worker,
    serving: Serving,
) -> std::io::Result<()> {
    // This worker's access lines are batched until it has drained; lines
    // of connections cut when its runtime ends are written one by one.
    let _access_log = access_log::Batching::start();
    let builder = Arc::new(builder());
    let (stop, stopped) = watch::channel(false);
    // The clients' connections, by worker; not the admin listener's (the
    // metrics are the same for every gateway of the process).
    let connections = (serving.listener == Listener::Main)
        .then(|| live.load().metrics.connections_accepted(current_worker()));
    let me = worker.index;
    let spread = Arc::clone(&worker.spread);
    // A connection this worker serves: its own task on this runtime.
    let serve_here = |stream, peer, slot| {
        if let Some(counter) = &connections {
            counter.inc();
        }
        tokio::spawn(conn::connection(
            stream,
            peer,
            Arc::clone(&live),
            Arc::clone(&builder),
            stopped.clone(),
            (slot, spread.live(me)),
            serving.clone(),
        ));
    };
    tokio::pin!(shutdown);

    loop {
        let (stream, peer, slot) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // The slot is taken once a connection is there, so an
                    // idle worker holds none. At the limit a worker holds
                    // the one connection it accepted until a slot frees,
                    // and the others wait in the backlog.
                    let slot = tokio::select! {
                        slot = Arc::clone(&slots.semaphore).acquire_owned() => match slot {
                            Ok(slot) => slot,
                            Err(_) => break,
                        },
                        () = &mut shutdown => break,
                    };
                    match place(&worker, stream, peer, slot) {
                        Some(here) => here,
                        None => continue,
                    }
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off
                    // briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(handed) = worker.inbox.recv() => match received(&worker, handed) {
                Some(here) => here,
                None => continue,
            },
            () = &mut shutdown => break,
        };
        serve_here(stream, peer, slot);
    }

    live.load().set_ready(false);
    drop(listener);
    let _ = stop.send(true);
    // Connections already handed to this worker are served (and asked to
    // finish at once); none is handed to it from now on.
    worker.inbox.close();
    while let Ok(handed) = worker.inbox.try_recv() {
        if let Some((stream, peer, slot)) = received(&worker, handed) {
            serve_here(stream, peer, slot);
        }
    }
    let grace = live.load().config.server.shutdown_grace;
    if me == 0 && serving.listener == Listener::Main {
        tracing::info!(
            grace_secs = grace.as_secs_f64(),
            "shutting down: draining connections"
        );
    }
    // Every connection holds a slot until it closes.
    if tokio::time::timeout(grace, slots.all_free()).await.is_err() {
        tracing::warn!("shutdown grace elapsed; closing remaining connections");
    }
    Ok(())
}

/// A connection to serve on this worker, with its slot.
type Here = (TcpStream, SocketAddr, OwnedSemaphorePermit);

/// Serves an accepted connection here (`Some`), or hands it to the worker
/// with the fewest connections (`None`).
fn place(
    worker: &Worker,
    stream: TcpStream,
    peer: SocketAddr,
    slot: OwnedSemaphorePermit,
) -> Option<Here> {
    let to = worker.spread.place(worker.index);
    if to == worker.index {
        return Some((stream, peer, slot));
    }
    match worker.spread.hand_off(worker.index, to, stream, peer, slot) {
        Ok(()) => None,
        Err(Some((stream, slot))) => Some((stream, peer, slot)),
        Err(None) => {
            tracing::debug!(%peer, "a connection could not move to another worker");
            None
        }
    }
}

/// A connection another worker handed to this one, on this runtime.
fn received(worker: &Worker, (stream, peer, slot): Handoff) -> Option<Here> {
    match TcpStream::from_std(stream) {
        Ok(stream) => Some((stream, peer, slot)),
        Err(e) => {
            worker.spread.dropped(worker.index);
            tracing::debug!(%peer, error = %e, "a connection handed over could not be registered");
            None
        }
    }
}

/// Binds the configured listener, with a message that names the address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    listen(addr, false).map_err(|e| bind_error(addr, &e))
}

/// A listening socket on `addr` with [`BACKLOG`], `SO_REUSEADDR` (as
/// tokio's `TcpListener::bind`) and, when asked, `SO_REUSEPORT`.
pub fn listen(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = socket(addr)?;
    if reuse_port {
        #[cfg(unix)]
        socket.set_reuseport(true)?;
        #[cfg(not(unix))]
        return Err(std::io::Error::other(
            "more than one worker needs SO_REUSEPORT; set server.workers = 1",
        ));
    }
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Binds (without listening) and closes a plain socket on `addr`: fails
/// when anything listens there.
fn probe(addr: SocketAddr) -> std::io::Result<()> {
    socket(addr)?.bind(addr)
}

/// A TCP socket of `addr`'s family with `SO_REUSEADDR`, not yet bound.
fn socket(addr: SocketAddr) -> std::io::Result<tokio::net::TcpSocket> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }?;
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    Ok(socket)
}

fn bind_error(addr: SocketAddr, e: &std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("could not listen on {addr}: {e}"))
}

/// Binds `workers` listening sockets on `addr`, one per worker. One worker
/// gets a plain socket, as [`bind`]; more share the address through
/// `SO_REUSEPORT` (port 0 is resolved by the first and reused by the rest).
/// A port something else listens on is refused as with one socket, even if
/// that listener shares it too (another infergate): first a plain socket
/// must be able to bind it.
pub async fn bind_workers(addr: SocketAddr, workers: usize) -> std::io::Result<Vec<TcpListener>> {
    if workers <= 1 {
        return Ok(vec![bind(addr).await?]);
    }
    if addr.port() != 0 {
        probe(addr).map_err(|e| bind_error(addr, &e))?;
    }
    let first = listen(addr, true).map_err(|e| bind_error(addr, &e))?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..workers {
        listeners.push(listen(addr, true).map_err(|e| bind_error(addr, &e))?);
    }
    Ok(listeners)
}

/// Ctrl-C and SIGTERM, counted from the moment [`Signals::listen`] is
/// called, so that a second one is not missed however soon it follows.
#[derive(Debug, Clone)]
pub struct Signals(watch::Receiver<u32>);

impl Signals {
    /// Needs a runtime: a task of its own counts the signals.
    pub fn listen() -> std::io::Result<Self> {
        let (tx, rx) = watch::channel(0u32);
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate())?;
            let mut int = signal(SignalKind::interrupt())?;
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        Some(()) = term.recv() => {}
                        Some(()) = int.recv() => {}
                        else => return,
                    }
                    tx.send_modify(|n| *n += 1);
                }
            });
        }
        #[cfg(not(unix))]
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                tx.send_modify(|n| *n += 1);
            }
        });
        Ok(Self(rx))
    }

    /// Resolves once `n` signals came.
    pub fn nth(&self, n: u32) -> impl Future<Output = ()> + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|count| *count >= n).await;
        }
    }

    /// The shutdown these signals drive: the first begins it, the second
    /// cuts its delay short.
    pub fn shutdown(&self) -> Shutdown<impl Future<Output = ()>, impl Future<Output = ()>> {
        Shutdown {
            begin: self.nth(1),
            cut_short: self.nth(2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More slots than `acquire_many` can ask for: the drain must still
    /// wait for a connection that holds one.
    #[tokio::test]
    async fn the_drain_waits_for_every_slot_however_many_are_configured() {
        let slots = Slots::new(usize::MAX);
        let held = Arc::clone(&slots.semaphore).acquire_owned().await.unwrap();
        let drain = tokio::time::timeout(Duration::from_millis(50), slots.all_free()).await;
        assert!(drain.is_err(), "the drain did not wait for a held slot");
        drop(held);
        let drain = tokio::time::timeout(Duration::from_secs(5), slots.all_free()).await;
        assert!(
            drain.unwrap().is_ok(),
            "the drain did not end once all were free"
        );
    }
}
