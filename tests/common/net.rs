//! Loopback sockets for what the emulators do not do: a free port, an upstream with a fixed raw answer, and reading a reset.

use std::error::Error as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A loopback port nothing listens on (bound, noted, closed): a backend
/// that refuses connections, or an address for a child process to take.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A loopback address that refuses every connection for as long as the
/// returned socket lives: bound but never listening, so no other test's
/// listener can take the port meanwhile (a port closed after noting it
/// can be, by an emulator of a test running beside).
pub fn refusing_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

/// Whether a request failed because the connection was reset.
pub fn is_reset(err: &reqwest::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = err.source();
    while let Some(e) = src {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionReset {
                return true;
            }
        }
        src = e.source();
    }
    false
}

/// A loopback HTTP/1.1 server that reads each request (its head and a
/// `Content-Length` body), answers it with the same raw bytes and closes
/// the connection. Returns its address and the number of requests read.
pub async fn raw_upstream(response: &'static [u8]) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                if read_request(&mut stream).await {
                    seen.fetch_add(1, Ordering::SeqCst);
                    let _ = stream.write_all(response).await;
                    let _ = stream.shutdown().await;
                }
            });
        }
    });
    (addr, count)
}

/// Reads one request's head and `Content-Length` body; false if the
/// connection ended first.
async fn read_request(stream: &mut tokio::net::TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Ok(n) = stream.read(&mut chunk).await else {
            return false;
        };
        if n == 0 {
            return false;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse::<usize>().unwrap_or(0));
        if buf.len() >= end + 4 + length {
            return true;
        }
    }
}

/// The `/metrics` text of the gateway at `base`, with `key` when given.
pub async fn metrics_text(client: &reqwest::Client, base: &str, key: Option<&str>) -> String {
    let req = client.get(format!("{base}/metrics"));
    let req = match key {
        Some(key) => req.bearer_auth(key),
        None => req,
    };
    req.send().await.unwrap().text().await.unwrap()
}

/// The value of the first series of the `/metrics` text of the gateway at
/// `base` (read with `key`) that starts with `series`; a test fails when
/// there is none.
pub async fn metric(client: &reqwest::Client, base: &str, key: &str, series: &str) -> f64 {
    let text = metrics_text(client, base, Some(key)).await;
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}
