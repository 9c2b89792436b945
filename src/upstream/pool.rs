//! One worker's upstream connections: hyper's connection API under a pool
//! of the gateway's own, keyed by the endpoint's slot number, which a
//! [`super::Target`] gets once at start ([`slot_of`]): a request costs no
//! hashing, no URL work and no task of its own.
//!
//! An HTTP/1 connection serves one request at a time. It goes back to its
//! endpoint's list as soon as the answer's head arrived, and is taken again
//! only once hyper says it is ready, which it is once that answer's body
//! has been read. The list keeps at most `upstream.pool_max_idle_per_host`
//! connections (one busy answer's included); one found closed, or idle for
//! longer than `upstream.pool_idle_timeout`, is let go, and a sweep does the
//! same every half of that timeout for an endpoint no request asks for. An
//! HTTP/2 connection (negotiated by ALPN) is shared by every request to its
//! endpoint while it lives, and let go the same way once no request took
//! it for the idle timeout.
//!
//! A new connection is made by a task of its own, so one whose request
//! stopped waiting (a hedge that lost, a deadline) goes to the pool
//! instead of being dropped half made. HTTP/2 connections are pinged every
//! 20 s, so a shared one gone half-open is found and let go.
//!
//! A request that a pooled connection turned out closed before sending it
//! (the server closed it while it was idle) is sent once more on a new
//! connection: it had not left the gateway.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use http::header::HOST;
use http::Request;
use hyper::client::conn::{http1, http2};
use hyper_util::client::legacy::connect::Connection;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::connect::Connector;
use super::{Error, RequestBody, Response, Target};

/// How often an HTTP/2 connection is pinged, and how long it may take to
/// answer before it is closed.
const H2_PING_EVERY: Duration = Duration::from_secs(20);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);

/// A sender of requests on one connection.
enum Sender {
    H1 {
        tx: http1::SendRequest<RequestBody>,
        /// Requests go to a forward proxy, in absolute form.
        proxied: bool,
    },
    H2(http2::SendRequest<RequestBody>),
}

/// An HTTP/1 connection in its endpoint's list.
struct Kept {
    tx: http1::SendRequest<RequestBody>,
    proxied: bool,
    /// When it was put back.
    since: Instant,
}

impl Kept {
    /// Whether to keep it at `now`: not closed, and not idle since before
    /// `stale`. One still busy (its answer's body being read) is idle from
    /// no earlier than now.
    fn keep(&mut self, now: Instant, stale: Option<Instant>) -> bool {
        if self.tx.is_closed() {
            return false;
        }
        if !self.tx.is_ready() {
            self.since = now;
            return true;
        }
        stale.is_none_or(|t| self.since >= t)
    }
}

/// An HTTP/2 connection in its endpoint's slot.
struct Shared2 {
    tx: http2::SendRequest<RequestBody>,
    /// When a request last took it.
    used: Instant,
}

impl Shared2 {
    /// Whether to keep it: not closed, and taken since `stale`. Requests
    /// still on it when it is let go finish; the connection closes after.
    fn keep(&self, stale: Option<Instant>) -> bool {
        !self.tx.is_closed() && stale.is_none_or(|t| self.used >= t)
    }
}

/// One endpoint's connections.
#[derive(Default)]
struct Slot {
    h1: Vec<Kept>,
    h2: Option<Shared2>,
}

impl Slot {
    /// Lets go of the connections closed, or idle since before `stale`.
    fn tidy(&mut self, now: Instant, stale: Option<Instant>) {
        self.h1.retain_mut(|k| k.keep(now, stale));
        if self.h2.as_ref().is_some_and(|h2| !h2.keep(stale)) {
            self.h2 = None;
        }
    }
}

/// One worker's pool.
pub(crate) struct Pool {
    connector: Connector,
    idle_timeout: Duration,
    max_kept: usize,
    slots: Mutex<Vec<Slot>>,
    /// Whether the sweep task runs.
    sweeping: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("idle_timeout", &self.idle_timeout)
            .field("max_kept", &self.max_kept)
            .finish_non_exhaustive()
    }
}

impl Pool {
    pub(crate) fn new(connector: Connector, idle_timeout: Duration, max_kept: usize) -> Self {
        Self {
            connector,
            idle_timeout,
            max_kept,
            slots: Mutex::default(),
            sweeping: Default::default(),
        }
    }

    /// Sends `req` to `target`: on a ready pooled connection, or on a new
    /// one (once more on a new one when the pooled one was closed before
    /// the request left).
    pub(crate) async fn send(
        self: &Arc<Self>,
        target: &Target,
        req: Request<RequestBody>,
    ) -> Result<Response, Error> {
        let req = match self.checkout(target.0.slot) {
            Some(sender) => match self.try_send(target, sender, req).await {
                Ok(res) => return Ok(res),
                Err(Unsent::Back(req)) => *req,
                Err(Unsent::Failed(e)) => return Err(e),
            },
            None => req,
        };
        let sender = self.connect_whole(target).await?;
        match self.try_send(target, sender, req).await {
            Ok(res) => Ok(res),
            Err(Unsent::Failed(e)) => Err(e),
            Err(Unsent::Back(_)) => Err(Error::Closed),
        }
    }

    /// `req` on `sender`, which goes back to the pool once the answer's
    /// head arrived.
    async fn try_send(
        self: &Arc<Self>,
        target: &Target,
        sender: Sender,
        mut req: Request<RequestBody>,
    ) -> Result<Response, Unsent> {
        match sender {
            Sender::H1 { mut tx, proxied } => {
                *req.uri_mut() = if proxied {
                    target.0.uri.clone()
                } else {
                    target.0.origin.clone()
                };
                req.headers_mut()
                    .entry(HOST)
                    .or_insert_with(|| target.0.host.clone());
                let sent = tx.try_send_request(req).await;
                self.put_back(target.0.slot, tx, proxied);
                sent.map_err(Unsent::of)
            }
            Sender::H2(mut tx) => {
                *req.uri_mut() = target.0.uri.clone();
                req.headers_mut().remove(HOST);
                tx.try_send_request(req).await.map_err(Unsent::of)
            }
        }
    }

    /// A ready connection to slot `slot`, if the pool has one.
    fn checkout(&self, slot: usize) -> Option<Sender> {
        let mut slots = self.slots();
        let s = slots.get_mut(slot)?;
        let now = Instant::now();
        s.tidy(now, now.checked_sub(self.idle_timeout));
        if let Some(h2) = &mut s.h2 {
            h2.used = now;
            return Some(Sender::H2(h2.tx.clone()));
        }
        let ready = s.h1.iter().rposition(|k| k.tx.is_ready())?;
        let kept = s.h1.swap_remove(ready);
        Some(Sender::H1 {
            tx: kept.tx,
            proxied: kept.proxied,
        })
    }

    /// `tx` back into slot `slot`'s list, unless it is closed or the list
    /// is full.
    fn put_back(self: &Arc<Self>, slot: usize, tx: http1::SendRequest<RequestBody>, proxied: bool) {
        if tx.is_closed() {
            return;
        }
        let mut slots = self.slots();
        let list = &mut grown(&mut slots, slot).h1;
        if list.len() < self.max_kept {
            list.push(Kept {
                tx,
                proxied,
                since: Instant::now(),
            });
        }
    }

    /// A new connection to `target`, made by a task of its own: a request
    /// that stops waiting for it (a hedge that lost, a deadline) leaves it
    /// to the pool instead of wasting its handshakes.
    async fn connect_whole(self: &Arc<Self>, target: &Target) -> Result<Sender, Error> {
        let (give, take) = tokio::sync::oneshot::channel();
        let (pool, target) = (Arc::clone(self), target.clone());
        tokio::spawn(async move {
            let made = pool.connect(&target).await;
            if let Err(Ok(Sender::H1 { tx, proxied })) = give.send(made) {
                // Nobody waits for it any more: kept for the next request
                // (an HTTP/2 one is in its slot already).
                pool.put_back(target.0.slot, tx, proxied);
            }
        });
        take.await.unwrap_or(Err(Error::Closed))
    }

    /// A new connection to `target`, its driver spawned on this runtime:
    /// HTTP/2 when ALPN chose it (then shared from the pool), else HTTP/1.
    async fn connect(self: &Arc<Self>, target: &Target) -> Result<Sender, Error> {
        let conn = self
            .connector
            .clone()
            .open(target.0.uri.clone())
            .await
            .map_err(Error::Connect)?;
        let connected = conn.connected();
        self.sweep_later();
        if connected.is_negotiated_h2() {
            let (tx, driver) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                // A shared connection gone half-open would hold up every
                // request to the endpoint: pinged, it is found and let go.
                .keep_alive_interval(H2_PING_EVERY)
                .keep_alive_timeout(H2_PING_TIMEOUT)
                .keep_alive_while_idle(true)
                .handshake(conn)
                .await
                .map_err(Error::Http)?;
            tokio::spawn(driver);
            // `pool_max_idle_per_host = 0` turns pooling off, HTTP/2's too.
            if self.max_kept > 0 {
                grown(&mut self.slots(), target.0.slot).h2 = Some(Shared2 {
                    tx: tx.clone(),
                    used: Instant::now(),
                });
            }
            return Ok(Sender::H2(tx));
        }
        let (tx, driver) = http1::Builder::new()
            .handshake(conn)
            .await
            .map_err(Error::Http)?;
        tokio::spawn(driver);
        Ok(Sender::H1 {
            tx,
            proxied: connected.is_proxied(),
        })
    }

    /// Starts the sweep, once: every half idle timeout, the connections
    /// closed or idle too long are let go. It ends with the pool.
    fn sweep_later(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        if self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let pool: Weak<Self> = Arc::downgrade(self);
        let every = (self.idle_timeout / 2).max(Duration::from_millis(100));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(pool) = pool.upgrade() else { return };
                pool.sweep();
            }
        });
    }

    fn sweep(&self) {
        let now = Instant::now();
        let stale = now.checked_sub(self.idle_timeout);
        for s in self.slots().iter_mut() {
            s.tidy(now, stale);
        }
    }

    /// The slots, locked (only this worker's tasks ever wait on it).
    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A request that got no answer: given back when it never left, so that a
/// new connection may carry it.
enum Unsent {
    Back(Box<Request<RequestBody>>),
    Failed(Error),
}

impl Unsent {
    fn of(mut e: hyper::client::conn::TrySendError<Request<RequestBody>>) -> Self {
        match e.take_message() {
            Some(req) => Unsent::Back(Box::new(req)),
            None => Unsent::Failed(Error::Http(e.into_error())),
        }
    }
}

/// Slot `i` of `slots`, made (empty) if there was none yet.
fn grown(slots: &mut Vec<Slot>, i: usize) -> &mut Slot {
    if slots.len() <= i {
        slots.resize_with(i + 1, Slot::default);
    }
    &mut slots[i]
}

/// The slot number of the endpoint `key` (`scheme://host:port`): the same
/// number for the same endpoint, every pool's index for it.
pub(crate) fn slot_of(key: &str) -> usize {
    static KEYS: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut keys = KEYS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(i) = keys.iter().position(|k| k == key) {
        return i;
    }
    keys.push(key.to_owned());
    keys.len() - 1
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use futures_util::StreamExt;
    use http_body_util::{BodyExt, Full};
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    use super::*;
    use crate::upstream::connect::Shared;
    use crate::upstream::proxy::Proxies;
    use crate::upstream::tls::TlsConfigs;

    /// How the test upstream answers.
    #[derive(Clone, Copy, PartialEq)]
    enum Answer {
        /// 64 KiB at once.
        Whole,
        /// 32 KiB, then 32 KiB more after 300 ms.
        Slow,
        /// 64 KiB, then the connection closed without a word (as a server
        /// dropping an idle connection).
        ThenClose,
    }

    /// An HTTP/1.1 upstream on loopback: its URL, the connections it
    /// accepted, and those that ended.
    async fn upstream(answer: Answer) -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/x", listener.local_addr().unwrap());
        let (accepted, ended) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (a, e) = (Arc::clone(&accepted), Arc::clone(&ended));
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                a.fetch_add(1, Ordering::SeqCst);
                let e = Arc::clone(&e);
                tokio::spawn(async move {
                    serve(tcp, answer).await;
                    e.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        (url, accepted, ended)
    }

    async fn serve(tcp: tokio::net::TcpStream, answer: Answer) {
        let half = || {
            Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(vec![
                b'x';
                32 * 1024
            ])))
        };
        let service = service_fn(move |_req| async move {
            let later = async move {
                if answer == Answer::Slow {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                half()
            };
            let chunks = futures_util::stream::once(async move { half() })
                .chain(futures_util::stream::once(later));
            let mut res = http::Response::new(http_body_util::StreamBody::new(chunks));
            res.headers_mut()
                .insert(http::header::CONTENT_LENGTH, (64 * 1024).into());
            Ok::<_, std::convert::Infallible>(res)
        });
        let conn =
            hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service);
        if answer != Answer::ThenClose {
            let _ = conn.await;
            return;
        }
        let mut conn = std::pin::pin!(conn);
        // One answer written, then the socket dropped under the connection.
        let _ = tokio::time::timeout(Duration::from_millis(30), conn.as_mut()).await;
    }

    fn pool(idle_timeout: Duration, max_kept: usize) -> Arc<Pool> {
        let shared = Shared {
            tls: TlsConfigs::new(None).unwrap(),
            proxies: Proxies::none(),
            connect_timeout: Duration::from_secs(2),
        };
        Arc::new(Pool::new(
            Connector::new(Arc::new(shared)),
            idle_timeout,
            max_kept,
        ))
    }

    fn target(url: &str) -> Target {
        Target::direct(&reqwest::Url::parse(url).unwrap())
    }

    async fn get(pool: &Arc<Pool>, target: &Target) -> Response {
        let res = pool
            .send(target, Request::new(Full::new(Bytes::new())))
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res
    }

    async fn read(res: Response) {
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 64 * 1024);
    }

    #[tokio::test]
    async fn a_connection_is_taken_again_only_once_its_answer_was_read() {
        let (url, accepted, _) = upstream(Answer::Slow).await;
        let (pool, target) = (pool(Duration::from_secs(30), 8), target(&url));
        for _ in 0..3 {
            read(get(&pool, &target).await).await;
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one connection for three"
        );
        // An answer whose body is still coming holds its connection: the
        // next request opens a second one.
        let held = get(&pool, &target).await;
        read(get(&pool, &target).await).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        read(held).await;
        for _ in 0..4 {
            read(get(&pool, &target).await).await;
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "both kept and taken again"
        );
    }

    #[tokio::test]
    async fn idle_connections_are_let_go_after_the_idle_timeout() {
        let (url, accepted, ended) = upstream(Answer::Whole).await;
        let (pool, target) = (pool(Duration::from_millis(200), 8), target(&url));
        read(get(&pool, &target).await).await;
        // No request after it: the sweep lets it go.
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(
            ended.load(Ordering::SeqCst),
            1,
            "the idle connection was closed"
        );
        read(get(&pool, &target).await).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_answer_longer_than_the_idle_timeout_leaves_its_connection_fresh() {
        let (url, accepted, _) = upstream(Answer::Slow).await;
        // The body takes 300 ms; the connection was busy, not idle.
        let (pool, target) = (pool(Duration::from_millis(200), 8), target(&url));
        read(get(&pool, &target).await).await;
        read(get(&pool, &target).await).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_its_request_stopped_waiting_for_is_kept() {
        use futures_util::FutureExt;
        let (url, accepted, _) = upstream(Answer::Whole).await;
        let (pool, target) = (pool(Duration::from_secs(30), 8), target(&url));
        // Polled once, then dropped: the connection is on its way.
        let dropped = pool
            .send(&target, Request::new(Full::new(Bytes::new())))
            .now_or_never();
        assert!(dropped.is_none());
        settle(&accepted, 1).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        read(get(&pool, &target).await).await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "the connection was kept"
        );
    }

    #[tokio::test]
    async fn at_most_max_idle_per_host_connections_are_kept() {
        let (url, accepted, ended) = upstream(Answer::Slow).await;
        let (pool, target) = (pool(Duration::from_secs(30), 1), target(&url));
        let held = vec![
            get(&pool, &target).await,
            get(&pool, &target).await,
            get(&pool, &target).await,
        ];
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
        for res in held {
            read(res).await;
        }
        settle(&ended, 2).await;
        for _ in 0..3 {
            read(get(&pool, &target).await).await;
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            3,
            "the kept one was taken again"
        );
    }

    #[tokio::test]
    async fn a_server_closing_each_connection_after_one_answer_costs_no_request() {
        let (url, accepted, ended) = upstream(Answer::ThenClose).await;
        let (pool, target) = (pool(Duration::from_secs(30), 8), target(&url));
        for i in 1..=5 {
            read(get(&pool, &target).await).await;
            settle(&ended, i).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 5);
    }

    /// Waits up to 2 s for `count` to reach `n`.
    async fn settle(count: &AtomicUsize, n: usize) {
        for _ in 0..200 {
            if count.load(Ordering::SeqCst) >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(count.load(Ordering::SeqCst), n);
    }
}
