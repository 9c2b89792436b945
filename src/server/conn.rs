//! One connection: its service, its two timers and how it ends.
//!
//! The timers are the gateway's, not hyper's. hyper's HTTP/1 header timer
//! also runs while a kept-alive connection waits for its next request, so
//! the real idle limit would be the smaller of the two settings, and
//! hyper-util's auto builder runs no timer at all while it reads the h2
//! preface. Here, what a connection is doing is kept in an [`Activity`]
//! (atomics, no lock; written by the socket wrapper, the service and the
//! response bodies) and one sleep per connection enforces:
//!
//! - `header_read_timeout` while a request head is being read: from accept
//!   for the first request (HTTP/1) or the preface and the first request
//!   (h2), then, on HTTP/1, from the first byte of each next request until
//!   the service is called. Past it the connection is dropped: no request
//!   is complete, so none is lost.
//! - `idle_timeout` from the end of the last response while nothing is in
//!   flight and, on HTTP/1, no byte of a next request has arrived. Past it
//!   the connection is closed the way hyper's graceful shutdown does it
//!   (HTTP/1: only between requests; h2: GOAWAY), so a close does not cut
//!   a request short.
//!
//! On h2, bytes after the first request (pings, window updates) start no
//! head timer: requests are streams, and an idle connection is ended by
//! GOAWAY, which a client retries safely.
//!
//! The sleep is lazy: it is not moved when a request starts or ends, only
//! re-aimed when it fires, at the earliest deadline the state can lead to
//! (see [`Activity::check`]), so a request costs two clock reads and a few
//! atomic operations, and no timer operation.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio::time::Instant;
use tower::ServiceExt;

use super::io::{Tracked, Watched};
use super::spread::Live;
use super::tls::Tls;
use crate::app::Listener;

/// `head_since` when no request head is being read.
const NO_HEAD: u64 = u64::MAX;

/// What a connection is doing, for its timers. Times are nanoseconds since
/// accept, so they fit atomics; h2 streams run on tasks of their own.
pub(super) struct Activity {
    accepted: Instant,
    /// Requests whose response has not completed.
    in_flight: AtomicUsize,
    /// When the head being read began, or [`NO_HEAD`].
    head_since: AtomicU64,
    /// When the last response completed (accept, before the first).
    idle_since: AtomicU64,
    /// The connection speaks h2 (known from its first request).
    h2: AtomicBool,
}

/// What [`Activity::check`] found.
#[derive(Debug, PartialEq, Eq)]
enum Check {
    /// Nothing is due before this instant.
    Until(Instant),
    /// A request head took longer than the header timeout.
    HeadTimeout,
    /// Idle for the idle timeout.
    Idle,
}

impl Activity {
    fn new(accepted: Instant) -> Self {
        Self {
            accepted,
            in_flight: AtomicUsize::new(0),
            // The first head (or the h2 preface) is timed from accept.
            head_since: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            h2: AtomicBool::new(false),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.accepted).as_nanos();
        u64::try_from(since).unwrap_or(NO_HEAD - 1).min(NO_HEAD - 1)
    }

    fn instant(&self, nanos: u64) -> Instant {
        self.accepted + Duration::from_nanos(nanos)
    }

    /// Bytes arrived on the socket. On HTTP/1, between requests, they are
    /// the start of the next request's head. Three loads on every read; a
    /// clock read only when a head starts.
    pub(super) fn bytes_arrived(&self) {
        if self.head_since.load(Ordering::Relaxed) == NO_HEAD
            && self.in_flight.load(Ordering::Acquire) == 0
            && !self.h2.load(Ordering::Relaxed)
        {
            let now = self.nanos(Instant::now());
            self.head_since.store(now, Ordering::Relaxed);
        }
    }

    /// hyper called the service: a request head is complete. The request
    /// counts as in flight until the returned guard drops.
    fn request_started(self: &Arc<Self>, h2: bool) -> InFlight {
        if h2 && !self.h2.load(Ordering::Relaxed) {
            self.h2.store(true, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(NO_HEAD, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    fn response_done(&self) {
        // Stored before the count drops, so whoever sees nothing in flight
        // sees this end too; the largest wins when h2 streams end together.
        let now = self.nanos(Instant::now());
        self.idle_since.fetch_max(now, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// The deadline due at `now`, or the next instant worth looking again:
    /// never later than any deadline the connection can reach meanwhile
    /// (any state it enters from now on times from now or later).
    fn check(&self, now: Instant, header: Duration, idle: Duration) -> Check {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            // The earliest a deadline can follow: a head starting, or the
            // idle wait beginning, right now.
            return Check::Until(now + header.min(idle));
        }
        let head = self.head_since.load(Ordering::Relaxed);
        if head != NO_HEAD {
            let due = self.instant(head) + header;
            return if now >= due {
                Check::HeadTimeout
            } else {
                // The head may complete and its answer end right away:
                // then the idle wait, shorter perhaps, starts now.
                Check::Until(due.min(now + idle))
            };
        }
        let due = self.instant(self.idle_since.load(Ordering::Relaxed)) + idle;
        if now >= due {
            Check::Idle
        } else if self.h2.load(Ordering::Relaxed) {
            Check::Until(due)
        } else {
            // A byte arriving now would start a head timer ending sooner.
            Check::Until(due.min(now + header))
        }
    }
}

/// A request in flight; dropping it ends the request for the timers.
pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.response_done();
    }
}

/// What every connection of a listener shares: the doors it reaches and,
/// on HTTPS, the certificate.
#[derive(Clone)]
pub(super) struct Serving {
    pub(super) listener: Listener,
    pub(super) tls: Option<Arc<Tls>>,
}

/// Serves one connection until it closes, a timer ends it, or shutdown
/// asks it to finish. `held` (its connection slot, and its place in its
/// worker's count) is let go when it closes. On HTTPS the handshake comes
/// first, within `server.header_read_timeout` of accept, which then goes on
/// to time the first request head.
pub(super) async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    live: Arc<crate::gateway::Live>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    stopped: watch::Receiver<bool>,
    held: (OwnedSemaphorePermit, Live),
    serving: Serving,
) {
    let _ = stream.set_nodelay(true);
    let accepted = Instant::now();
    // The timers of the config current at accept. Read in a block of its
    // own: a connection must not hold on to that gateway (a reload's old
    // one goes with its last request, not with its last connection).
    let timers = {
        let gateway = live.load();
        let server = &gateway.config.server;
        Timers {
            header: server.header_read_timeout,
            idle: server.idle_timeout,
        }
    };
    let header = timers.header;
    let on = Connection {
        peer,
        live,
        timers,
        builder,
        stopped,
        accepted,
        listener: serving.listener,
    };
    match serving.tls {
        None => on.serve(stream).await,
        Some(tls) => match tokio::time::timeout(header, tls.acceptor().accept(stream)).await {
            Ok(Ok(stream)) => on.serve(stream).await,
            // A client that does not trust the certificate, or speaks
            // plain HTTP to the HTTPS port: nothing to answer it with.
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "no TLS handshake within header_read_timeout"),
        },
    }
    drop(held);
}

/// `server.header_read_timeout` and `server.idle_timeout`.
#[derive(Debug, Clone, Copy)]
struct Timers {
    header: Duration,
    idle: Duration,
}

/// One accepted connection, ready for its HTTP.
struct Connection {
    peer: SocketAddr,
    live: Arc<crate::gateway::Live>,
    timers: Timers,
    builder: Arc<auto::Builder<TokioExecutor>>,
    stopped: watch::Receiver<bool>,
    accepted: Instant,
    listener: Listener,
}

impl Connection {
    async fn serve<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            peer,
            live,
            timers,
            builder,
            mut stopped,
            accepted,
            listener,
        } = self;
        let Timers { header, idle } = timers;
        let activity = Arc::new(Activity::new(accepted));
        let service = {
            let activity = Arc::clone(&activity);
            service_fn(move |req: hyper::Request<Incoming>| {
                // Counted here, when hyper hands the request over, not when
                // the handler first runs: the head is complete now.
                let in_flight = activity.request_started(req.version() == http::Version::HTTP_2);
                // The gateway current now serves the whole request, however
                // long it runs and whatever a reload swaps in meanwhile.
                let app = crate::app::service(live.load(), listener);
                async move {
                    let res = app.oneshot(req).await?;
                    Ok::<_, std::convert::Infallible>(res.map(|body| Tracked::new(body, in_flight)))
                }
            })
        };
        let io = TokioIo::new(Watched::new(stream, Arc::clone(&activity)));
        let conn = builder.serve_connection(io, service);
        tokio::pin!(conn);
        // The earliest any deadline can be, as `Activity::check` would say.
        let timer = tokio::time::sleep_until(activity.accepted + header.min(idle));
        tokio::pin!(timer);
        let mut draining = *stopped.borrow();
        if draining {
            conn.as_mut().graceful_shutdown();
        }
        loop {
            tokio::select! {
                // The connection first: what it read is in `activity` before
                // the timer looks.
                biased;
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    break;
                }
                _ = stopped.changed(), if !draining => {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
                () = &mut timer => match activity.check(Instant::now(), header, idle) {
                    Check::Until(at) => timer.as_mut().reset(at),
                    Check::HeadTimeout => {
                        tracing::debug!(%peer, "no complete request head within header_read_timeout");
                        break;
                    }
                    // Asked to close and still open after another wait (an h2
                    // client that does not answer GOAWAY): let go.
                    Check::Idle if draining => break,
                    Check::Idle => {
                        tracing::debug!(%peer, "closing an idle connection");
                        draining = true;
                        conn.as_mut().graceful_shutdown();
                        timer.as_mut().reset(Instant::now() + header);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: Duration = Duration::from_millis(300);
    const IDLE: Duration = Duration::from_millis(1500);

    fn check(a: &Activity, at: Instant) -> Check {
        a.check(at, HEADER, IDLE)
    }

    #[test]
    fn the_first_head_is_timed_from_accept() {
        let t0 = Instant::now();
        let a = Activity::new(t0);
        assert_eq!(check(&a, t0), Check::Until(t0 + HEADER));
        assert_eq!(check(&a, t0 + HEADER), Check::HeadTimeout);
        // Bytes of that head do not restart it.
        a.bytes_arrived();
        assert_eq!(check(&a, t0 + HEADER), Check::HeadTimeout);
    }

    #[test]
    fn http1_between_requests_waits_for_idle_until_a_byte_arrives() {
        let t0 = Instant::now();
        let a = Arc::new(Activity::new(t0));
        let in_flight = a.request_started(false);
        assert!(matches!(check(&a, t0 + IDLE * 10), Check::Until(_)));
        drop(in_flight);
        let done = a.instant(a.idle_since.load(Ordering::Relaxed));
        // Past the header timeout, within the idle timeout: nothing due,
        // but looked at again within a header timeout.
        let later = done + HEADER * 2;
        assert_eq!(check(&a, later), Check::Until(later + HEADER));
        assert_eq!(check(&a, done + IDLE), Check::Idle);
        // A byte starts the next head's timer.
        a.bytes_arrived();
        let head = a.instant(a.head_since.load(Ordering::Relaxed));
        assert_eq!(check(&a, head), Check::Until(head + HEADER));
        assert_eq!(check(&a, head + HEADER), Check::HeadTimeout);
        // The service called: the head is complete, no timer until the end.
        let _next = a.request_started(false);
        assert!(matches!(check(&a, head + HEADER), Check::Until(_)));
    }

    #[test]
    fn an_idle_timeout_shorter_than_the_header_timeout_is_not_overslept() {
        let t0 = Instant::now();
        let a = Arc::new(Activity::new(t0));
        let (header, idle) = (Duration::from_secs(10), Duration::from_millis(200));
        // Reading the first head: looked at again by the time an answer
        // given right away would have been idle for long enough.
        assert_eq!(a.check(t0, header, idle), Check::Until(t0 + idle));
        drop(a.request_started(false));
        let done = a.instant(a.idle_since.load(Ordering::Relaxed));
        assert_eq!(a.check(done + idle, header, idle), Check::Idle);
    }

    #[test]
    fn h2_after_its_first_request_is_timed_by_idle_only() {
        let t0 = Instant::now();
        let a = Arc::new(Activity::new(t0));
        drop(a.request_started(true));
        let done = a.instant(a.idle_since.load(Ordering::Relaxed));
        // A ping from the client starts no head timer.
        a.bytes_arrived();
        assert_eq!(check(&a, done), Check::Until(done + IDLE));
        assert_eq!(check(&a, done + IDLE), Check::Idle);
    }

    #[test]
    fn concurrent_streams_keep_the_connection_busy_until_the_last_ends() {
        let t0 = Instant::now();
        let a = Arc::new(Activity::new(t0));
        let one = a.request_started(true);
        let two = a.request_started(true);
        drop(one);
        assert!(matches!(check(&a, t0 + IDLE * 10), Check::Until(_)));
        drop(two);
        let done = a.instant(a.idle_since.load(Ordering::Relaxed));
        assert_eq!(check(&a, done + IDLE), Check::Idle);
    }
}
