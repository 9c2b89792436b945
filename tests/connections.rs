//! The transport's timers and head limits, over real sockets with raw bytes:
//! `server.header_read_timeout` bounds only the reading of a request head
//! (from its first byte, or from accept for the first request and the h2
//! preface), `server.idle_timeout` alone bounds the wait between requests,
//! and every head the gateway refuses gets the JSON error shape, on HTTP/1
//! and HTTP/2 alike.
//!
//! Timing asserts are orderings with wide margins ("still open at half the
//! idle timeout, closed before three times it"), never tight upper bounds:
//! the tests share two cores with other builds.

use std::time::Duration;

use support::{Gateway, HttpResponse};
use tokio::io::AsyncWriteExt;

/// The gateway's limits, as the README states them.
const MAX_HEADERS: usize = 100;
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// `GET /healthz` with `extra` header lines, `host` first.
fn healthz(extra: &str) -> Vec<u8> {
    format!("GET /healthz HTTP/1.1\r\nhost: gateway\r\n{extra}\r\n").into_bytes()
}

/// `n` header lines `x-h-{i}: v`.
fn header_lines(n: usize) -> String {
    (0..n).map(|i| format!("x-h-{i}: v\r\n")).collect()
}

#[cfg(test)]
mod support {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use infergate::config::Config;
    use infergate::gateway::BuildOptions;
    use infergate::server;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::time::Instant;

    /// A gateway on loopback with the given timeouts; its one route's
    /// backend is never called by these tests.
    pub struct Gateway {
        pub addr: SocketAddr,
        stop: tokio::sync::oneshot::Sender<()>,
        server: tokio::task::JoinHandle<std::io::Result<()>>,
    }

    impl Gateway {
        pub async fn start(header_read_timeout: &str, idle_timeout: &str) -> Self {
            let text = format!(
                r#"
[server]
listen = "127.0.0.1:0"
workers = 1
shutdown_grace = "1s"
header_read_timeout = "{header_read_timeout}"
idle_timeout = "{idle_timeout}"

[backends.hf]
kind = "huggingface"
url = "http://127.0.0.1:9"

[routes.r]
backends = ["hf"]
"#
            );
            let config = Config::from_toml(&text, &|_| None).unwrap();
            let listeners = server::bind_workers(config.server.listen, 1).await.unwrap();
            let addr = listeners[0].local_addr().unwrap();
            let gateway = infergate::gateway::Gateway::build(config, BuildOptions::default())
                .await
                .unwrap();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn(server::serve_workers(
                listeners,
                Arc::clone(&gateway),
                async {
                    let _ = stopped.await;
                },
            ));
            Self { addr, stop, server }
        }

        pub async fn connect(&self) -> TcpStream {
            TcpStream::connect(self.addr).await.unwrap()
        }

        pub async fn stop(self) {
            let _ = self.stop.send(());
            let _ = self.server.await;
        }
    }

    /// An HTTP/1.1 response as read off the socket.
    #[derive(Debug)]
    pub struct HttpResponse {
        pub status: u16,
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    impl HttpResponse {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        pub fn json(&self) -> serde_json::Value {
            assert_eq!(self.header("content-type"), Some("application/json"));
            serde_json::from_slice(&self.body).unwrap()
        }
    }

    /// Reads one response with a `content-length` body; `None` when the
    /// connection closes before a whole one arrived.
    pub async fn read_response(stream: &mut TcpStream) -> Option<HttpResponse> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        let head_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = buf[head_end..].to_vec();
        while body.len() < len {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        Some(HttpResponse {
            status,
            headers,
            body,
        })
    }

    /// Sends `request` and reads its response.
    pub async fn exchange(stream: &mut TcpStream, request: &[u8]) -> Option<HttpResponse> {
        stream.write_all(request).await.ok()?;
        read_response(stream).await
    }

    /// Whether the peer closed the connection within `within`: `Some(time
    /// it took)` when it did, `None` when it was still open then. Anything
    /// the server sends meanwhile is read and dropped.
    pub async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
        let start = Instant::now();
        let mut chunk = [0u8; 4096];
        tokio::time::timeout(within, async {
            loop {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return start.elapsed(),
                    Ok(_) => {}
                }
            }
        })
        .await
        .ok()
    }

    /// Writes `bytes` one at a time, `every` apart (then nothing), until the
    /// server closes the connection or `within` passes: `Some(time until
    /// the close)` or `None`.
    pub async fn closed_while_trickling(
        stream: &mut TcpStream,
        bytes: &[u8],
        every: Duration,
        within: Duration,
    ) -> Option<Duration> {
        let start = Instant::now();
        let mut chunk = [0u8; 4096];
        let mut next = 0;
        while start.elapsed() < within {
            if next < bytes.len() {
                if stream.write_all(&bytes[next..=next]).await.is_err() {
                    return Some(start.elapsed());
                }
                next += 1;
            }
            let read = tokio::time::timeout(every, stream.read(&mut chunk)).await;
            if let Ok(Ok(0) | Err(_)) = read {
                return Some(start.elapsed());
            }
        }
        None
    }

    /// An h2c (prior knowledge) connection: the sender, and a handle that
    /// ends when the connection does.
    pub async fn h2(
        stream: TcpStream,
    ) -> (
        hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
        tokio::task::JoinHandle<()>,
    ) {
        let (send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        (send, conn)
    }

    /// `GET /healthz` over h2 with exactly `headers` (no others are added).
    pub async fn h2_healthz(
        send: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
        headers: &[(String, String)],
    ) -> HttpResponse {
        let mut req = http::Request::get("http://gateway/healthz")
            .body(Empty::<Bytes>::new())
            .unwrap();
        for (n, v) in headers {
            req.headers_mut().append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        let res = send.send_request(req).await.unwrap();
        let status = res.status().as_u16();
        let headers = res
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
        HttpResponse {
            status,
            headers,
            body,
        }
    }
}

// === timers ===

/// The outside check's failure: a pooled connection reused after longer
/// than the header timeout (but within the idle timeout) must still serve.
#[tokio::test]
async fn kept_alive_connection_idle_past_the_header_timeout_serves_the_next_request() {
    let gw = Gateway::start("300ms", "3s").await;
    let mut conn = gw.connect().await;
    let first = support::exchange(&mut conn, &healthz("")).await.unwrap();
    assert_eq!(first.status, 200);
    // Over three header timeouts, a third of the idle timeout.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let post = b"POST /healthz HTTP/1.1\r\nhost: gateway\r\ncontent-length: 2\r\n\r\n{}";
    let second = support::exchange(&mut conn, post)
        .await
        .expect("the kept-alive connection was closed before its idle timeout");
    assert_eq!(second.status, 405);
    assert!(second.header("x-request-id").is_some());
    let third = support::exchange(&mut conn, &healthz("")).await.unwrap();
    assert_eq!(third.status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn idle_connection_is_closed_after_the_idle_timeout() {
    let idle = Duration::from_millis(1500);
    let gw = Gateway::start("300ms", "1500ms").await;
    let mut conn = gw.connect().await;
    let res = support::exchange(&mut conn, &healthz("")).await.unwrap();
    assert_eq!(res.status, 200);
    assert_eq!(
        support::closed_within(&mut conn, idle / 2).await,
        None,
        "closed before half the idle timeout"
    );
    assert!(
        support::closed_within(&mut conn, idle * 3).await.is_some(),
        "an idle connection was still open at three times the idle timeout"
    );
    gw.stop().await;
}

/// An idle timeout shorter than the header timeout is kept as well.
#[tokio::test]
async fn idle_timeout_below_the_header_timeout_closes_at_the_idle_timeout() {
    let gw = Gateway::start("20s", "300ms").await;
    let mut conn = gw.connect().await;
    let res = support::exchange(&mut conn, &healthz("")).await.unwrap();
    assert_eq!(res.status, 200);
    assert!(
        support::closed_within(&mut conn, Duration::from_secs(10))
            .await
            .is_some(),
        "an idle connection was open after 10 s (idle timeout 300 ms)"
    );
    gw.stop().await;
}

/// A connection that never sends a byte holds a slot only for the header
/// timeout, not for the idle timeout.
#[tokio::test]
async fn silent_connection_is_closed_at_the_header_timeout() {
    let gw = Gateway::start("300ms", "20s").await;
    let mut conn = gw.connect().await;
    assert!(
        support::closed_within(&mut conn, Duration::from_secs(10))
            .await
            .is_some(),
        "a connection that sent nothing was open after 10 s (header timeout 300 ms)"
    );
    gw.stop().await;
}

#[tokio::test]
async fn request_head_trickled_slower_than_the_header_timeout_is_cut() {
    let gw = Gateway::start("300ms", "20s").await;
    let mut head = b"GET /healthz HTTP/1.1\r\nhost: gateway\r\nx-slow: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 400));
    // On a new connection.
    let mut conn = gw.connect().await;
    let cut = support::closed_while_trickling(
        &mut conn,
        &head,
        Duration::from_millis(25),
        Duration::from_secs(10),
    )
    .await;
    assert!(cut.is_some(), "a trickled first head was not cut");
    // And on a kept-alive connection, after a served request and a pause
    // longer than the header timeout.
    let mut conn = gw.connect().await;
    let res = support::exchange(&mut conn, &healthz("")).await.unwrap();
    assert_eq!(res.status, 200);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let cut = support::closed_while_trickling(
        &mut conn,
        &head,
        Duration::from_millis(25),
        Duration::from_secs(10),
    )
    .await;
    assert!(cut.is_some(), "a trickled second head was not cut");
    gw.stop().await;
}

#[tokio::test]
async fn h2c_preface_trickled_slower_than_the_header_timeout_is_cut() {
    let gw = Gateway::start("300ms", "20s").await;
    let mut conn = gw.connect().await;
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    // 24 bytes over almost 5 s.
    let cut = support::closed_while_trickling(
        &mut conn,
        preface,
        Duration::from_millis(200),
        Duration::from_secs(10),
    )
    .await;
    assert!(cut.is_some(), "a trickled h2 preface was not cut");
    gw.stop().await;
}

/// The preface and the first request must both arrive within the header
/// timeout: a completed handshake alone does not hold a slot.
#[tokio::test]
async fn h2c_connection_without_a_request_is_closed_at_the_header_timeout() {
    let gw = Gateway::start("300ms", "20s").await;
    let (_send, conn) = support::h2(gw.connect().await).await;
    tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("an h2 connection without a request was open after 10 s")
        .unwrap();
    gw.stop().await;
}

/// After its first request an h2 connection is bounded by the idle timeout
/// alone, as HTTP/1 is.
#[tokio::test]
async fn h2c_connection_idle_past_the_header_timeout_serves_the_next_request() {
    let gw = Gateway::start("300ms", "3s").await;
    let (mut send, conn) = support::h2(gw.connect().await).await;
    assert_eq!(support::h2_healthz(&mut send, &[]).await.status, 200);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!conn.is_finished(), "closed before the idle timeout");
    assert_eq!(support::h2_healthz(&mut send, &[]).await.status, 200);
    tokio::time::timeout(Duration::from_secs(9), conn)
        .await
        .expect("an idle h2 connection was open at three times the idle timeout")
        .unwrap();
    gw.stop().await;
}

// === head limits ===

/// The gateway's 431: JSON, with the client's request id.
fn assert_json_431(res: &HttpResponse, request_id: &str) {
    assert_eq!(res.status, 431, "{res:?}");
    assert_eq!(res.header("x-request-id"), Some(request_id));
    let e = res.json();
    assert_eq!(e["error"]["type"], "headers_too_large");
    assert_eq!(e["error"]["request_id"], request_id);
}

#[tokio::test]
async fn http1_head_limits_answer_json() {
    let gw = Gateway::start("10s", "60s").await;
    let mut conn = gw.connect().await;
    // host + x-request-id + the rest: exactly the limit, then one more.
    let at_limit = healthz(&format!(
        "x-request-id: h1-at-limit\r\n{}",
        header_lines(MAX_HEADERS - 2)
    ));
    let res = support::exchange(&mut conn, &at_limit).await.unwrap();
    assert_eq!(res.status, 200, "{res:?}");
    let over = healthz(&format!(
        "x-request-id: h1-count\r\n{}",
        header_lines(MAX_HEADERS - 1)
    ));
    let res = support::exchange(&mut conn, &over).await.unwrap();
    assert_json_431(&res, "h1-count");
    let big = healthz(&format!(
        "x-request-id: h1-bytes\r\nx-big: {}\r\n",
        "a".repeat(MAX_HEADER_BYTES + 6 * 1024)
    ));
    let mut conn = gw.connect().await;
    let res = support::exchange(&mut conn, &big).await.unwrap();
    assert_json_431(&res, "h1-bytes");
    gw.stop().await;
}

#[tokio::test]
async fn http2_head_limits_answer_json() {
    let gw = Gateway::start("10s", "60s").await;
    let (mut send, _conn) = support::h2(gw.connect().await).await;
    let headers = |id: &str, n: usize| {
        let mut h = vec![("x-request-id".to_string(), id.to_string())];
        h.extend((0..n).map(|i| (format!("x-h-{i}"), "v".to_string())));
        h
    };
    // No `host` on h2 (`:authority` is not a header).
    let res = support::h2_healthz(&mut send, &headers("h2-at-limit", MAX_HEADERS - 1)).await;
    assert_eq!(res.status, 200, "{res:?}");
    let res = support::h2_healthz(&mut send, &headers("h2-count", MAX_HEADERS)).await;
    assert_json_431(&res, "h2-count");
    let mut big = headers("h2-bytes", 0);
    big.push(("x-big".into(), "a".repeat(MAX_HEADER_BYTES + 6 * 1024)));
    let res = support::h2_healthz(&mut send, &big).await;
    assert_json_431(&res, "h2-bytes");
    gw.stop().await;
}

/// A head the parser cannot frame gets hyper's bare 400 (no JSON: no
/// service ran) and the connection closes, as README.md says.
#[tokio::test]
async fn framing_errors_get_the_parsers_400_and_close() {
    let gw = Gateway::start("10s", "60s").await;
    let cases: [(&str, &[u8]); 4] = [
        (
            "transfer-encoding not ending in chunked",
            b"POST /healthz HTTP/1.1\r\nhost: g\r\ntransfer-encoding: gzip\r\n\r\n",
        ),
        (
            "two different content-lengths",
            b"POST /healthz HTTP/1.1\r\nhost: g\r\ncontent-length: 4\r\ncontent-length: 5\r\n\r\n",
        ),
        (
            "obs-fold",
            b"GET /healthz HTTP/1.1\r\nhost: g\r\nx-a: b\r\n c\r\n\r\n",
        ),
        (
            "malformed request line",
            b"GET /healthz HTTP/9.9\r\nhost: g\r\n\r\n",
        ),
    ];
    for (case, bytes) in cases {
        let mut conn = gw.connect().await;
        conn.write_all(bytes).await.unwrap();
        let res = support::read_response(&mut conn).await.unwrap();
        assert_eq!(res.status, 400, "{case}");
        assert!(res.body.is_empty(), "{case}");
        assert!(
            support::closed_within(&mut conn, Duration::from_secs(10))
                .await
                .is_some(),
            "{case}: open after the 400"
        );
    }
    gw.stop().await;
}

/// `content-length` with `transfer-encoding: chunked`: the chunked framing
/// wins, the request is served, and the connection closes after it, so the
/// bytes the length would have framed are never read as a request.
#[tokio::test]
async fn content_length_with_chunked_is_served_once_then_closed() {
    let gw = Gateway::start("10s", "60s").await;
    let mut conn = gw.connect().await;
    let smuggle = b"POST /healthz HTTP/1.1\r\nhost: g\r\ncontent-length: 40\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\nhost: g\r\n\r\n";
    conn.write_all(smuggle).await.unwrap();
    let res = support::read_response(&mut conn).await.unwrap();
    assert_eq!(res.status, 405);
    assert_eq!(res.header("connection"), Some("close"));
    assert!(support::read_response(&mut conn).await.is_none());
    gw.stop().await;
}
