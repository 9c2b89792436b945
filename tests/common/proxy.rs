//! A forward proxy a test starts on `127.0.0.1:0`, as a corporate proxy
//! stands between the gateway and the endpoints: `CONNECT host:port` opens a
//! tunnel (bytes both ways, TLS end to end through it), and an absolute-form
//! HTTP/1.1 request (`POST http://host:port/path`) is forwarded in origin
//! form on a connection of its own to that target, the answer relayed back
//! byte for byte (so a streamed, chunked answer streams). It can require
//! `Proxy-Authorization: Basic …` (407 otherwise), and it records what it
//! was asked, so a test can tell traffic really went through it.
//!
//! It only ever connects to loopback: `localhost` is taken as 127.0.0.1,
//! any other host is refused with 502.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// One request the proxy was asked to carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// `CONNECT`, or the forwarded request's method.
    pub method: String,
    /// The target's authority, `host:port`, as the client named it.
    pub authority: String,
    /// The request target as received (`localhost:8443`,
    /// `http://127.0.0.1:9000/generate`).
    pub target: String,
    /// The `Proxy-Authorization` header, if any.
    pub proxy_authorization: Option<String>,
}

#[derive(Default)]
struct State {
    /// `Basic base64(user:pass)` when credentials are required.
    required: Option<String>,
    connects: AtomicU64,
    forwarded: AtomicU64,
    refused: AtomicU64,
    seen: Mutex<Vec<Seen>>,
}

/// A running proxy; dropping it stops accepting (open tunnels finish on
/// their own tasks when either side closes).
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// A proxy that lets anyone through.
    pub async fn open() -> Self {
        Self::start(None).await
    }

    /// A proxy that wants these credentials in `Proxy-Authorization: Basic`.
    pub async fn with_credentials(user: &str, password: &str) -> Self {
        Self::start(Some(format!(
            "Basic {}",
            base64(&format!("{user}:{password}"))
        )))
        .await
    }

    async fn start(required: Option<String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            required,
            ..State::default()
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, st.clone()));
            }
        });
        Proxy { addr, state, task }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, or with `user:password@` when given.
    pub fn url(&self, credentials: Option<(&str, &str)>) -> String {
        match credentials {
            Some((user, password)) => format!("http://{user}:{password}@{}", self.addr),
            None => format!("http://{}", self.addr),
        }
    }

    /// Tunnels opened (refused CONNECTs not included).
    pub fn connects(&self) -> u64 {
        self.state.connects.load(Ordering::SeqCst)
    }

    /// Absolute-form requests forwarded.
    pub fn forwarded(&self) -> u64 {
        self.state.forwarded.load(Ordering::SeqCst)
    }

    /// Requests answered 407 (missing or wrong credentials).
    pub fn refused(&self) -> u64 {
        self.state.refused.load(Ordering::SeqCst)
    }

    /// Everything asked of it, refused requests included, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A request head: its request line's parts and its header lines.
struct Head {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The origin connection of the last forwarded request, kept while the
/// client keeps asking for the same authority, as a keep-alive connection
/// would; its answers flow back on a task of their own.
struct Upstream {
    authority: String,
    write: OwnedWriteHalf,
    stop: oneshot::Sender<()>,
    relay: JoinHandle<Option<OwnedWriteHalf>>,
}

async fn serve(stream: TcpStream, state: Arc<State>) {
    let (read, write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut upstream: Option<Upstream> = None;
    // The client's write half, while no relay task holds it.
    let mut write = Some(write);
    loop {
        let Some(head) = read_head(&mut reader).await else {
            break;
        };
        let authority = match authority_of(&head) {
            Some(a) => a,
            None => {
                answer(&mut write, "400 Bad Request").await;
                break;
            }
        };
        let proxy_authorization = head.header("proxy-authorization").map(str::to_owned);
        state.seen.lock().unwrap().push(Seen {
            method: head.method.clone(),
            authority: authority.clone(),
            target: head.target.clone(),
            proxy_authorization: proxy_authorization.clone(),
        });
        if let Some(required) = &state.required {
            if proxy_authorization.as_deref() != Some(required.as_str()) {
                state.refused.fetch_add(1, Ordering::SeqCst);
                answer(
                    &mut write,
                    "407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"",
                )
                .await;
                break;
            }
        }
        let reuse = head.method != "CONNECT"
            && matches!(&upstream, Some(u) if u.authority == authority && !u.relay.is_finished());
        if !reuse {
            // Another target: take the client's write half back first.
            if let Some(u) = upstream.take() {
                let _ = u.stop.send(());
                match u.relay.await {
                    Ok(Some(w)) => write = Some(w),
                    _ => break,
                }
            }
        }
        let target = if reuse {
            None
        } else {
            match connect_loopback(&authority).await {
                Some(t) => Some(t),
                None => {
                    answer(&mut write, "502 Bad Gateway").await;
                    break;
                }
            }
        };
        if head.method == "CONNECT" {
            let Some(target) = target else {
                break;
            };
            state.connects.fetch_add(1, Ordering::SeqCst);
            let Some(mut client_w) = write.take() else {
                break;
            };
            if client_w
                .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                .await
                .is_err()
            {
                break;
            }
            let (mut up_r, mut up_w) = target.into_split();
            let down = tokio::spawn(async move {
                let _ = tokio::io::copy(&mut up_r, &mut client_w).await;
                let _ = client_w.shutdown().await;
            });
            // Whatever the client sent after the head is in the reader's buffer.
            let _ = tokio::io::copy(&mut reader, &mut up_w).await;
            let _ = up_w.shutdown().await;
            let _ = down.await;
            return;
        }
        // Absolute form: forward in origin form on the target's connection.
        state.forwarded.fetch_add(1, Ordering::SeqCst);
        if let Some(target) = target {
            let Some(client_w) = write.take() else {
                break;
            };
            let (up_r, up_w) = target.into_split();
            let (stop, stopped) = oneshot::channel();
            upstream = Some(Upstream {
                authority: authority.clone(),
                write: up_w,
                stop,
                relay: tokio::spawn(relay(up_r, client_w, stopped)),
            });
        }
        let Some(u) = upstream.as_mut() else {
            break;
        };
        if forward(&head, &mut reader, &mut u.write).await.is_err() {
            break;
        }
    }
    if let Some(mut u) = upstream {
        let _ = u.write.shutdown().await;
        let _ = u.relay.await;
    }
}

/// Copies the origin's answers to the client until the origin closes (then
/// closes the client's side too) or the proxy wants the client's write half
/// back for another target.
async fn relay(
    mut up: OwnedReadHalf,
    mut client: OwnedWriteHalf,
    mut stop: oneshot::Receiver<()>,
) -> Option<OwnedWriteHalf> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            _ = &mut stop => return Some(client),
            n = up.read(&mut buf) => match n {
                Ok(0) | Err(_) => {
                    let _ = client.shutdown().await;
                    return None;
                }
                Ok(n) => {
                    if client.write_all(&buf[..n]).await.is_err() {
                        return None;
                    }
                }
            },
        }
    }
}

/// A short answer that closes the client's connection.
async fn answer(write: &mut Option<OwnedWriteHalf>, status: &str) {
    if let Some(w) = write.as_mut() {
        let msg = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        let _ = w.write_all(msg.as_bytes()).await;
        let _ = w.shutdown().await;
    }
}

async fn read_head(reader: &mut BufReader<OwnedReadHalf>) -> Option<Head> {
    let mut line = String::new();
    if reader.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let version = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    Some(Head {
        method,
        target,
        version,
        headers,
    })
}

/// `host:port` of a CONNECT target or of an absolute-form URL.
fn authority_of(head: &Head) -> Option<String> {
    if head.method == "CONNECT" {
        return Some(head.target.clone());
    }
    let rest = head.target.strip_prefix("http://")?;
    let authority = rest.split('/').next()?;
    Some(if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    })
}

async fn connect_loopback(authority: &str) -> Option<TcpStream> {
    let (host, port) = authority.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    match host {
        "127.0.0.1" | "localhost" => TcpStream::connect(("127.0.0.1", port)).await.ok(),
        _ => None,
    }
}

/// Sends the request in origin form, its body after it as framed.
async fn forward(
    head: &Head,
    reader: &mut BufReader<OwnedReadHalf>,
    up: &mut OwnedWriteHalf,
) -> std::io::Result<()> {
    let rest = head.target.strip_prefix("http://").unwrap_or(&head.target);
    let path = rest.find('/').map(|i| &rest[i..]).unwrap_or("/");
    let mut out = format!("{} {path} {}\r\n", head.method, head.version);
    for (name, value) in &head.headers {
        if name.eq_ignore_ascii_case("proxy-authorization")
            || name.eq_ignore_ascii_case("proxy-connection")
        {
            continue;
        }
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    up.write_all(out.as_bytes()).await?;
    let chunked = head
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        relay_chunked(reader, up).await
    } else {
        let len: u64 = head
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let copied = tokio::io::copy(&mut reader.take(len), up).await?;
        if copied < len {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

/// Copies a chunked body as it is framed, up to and with its last chunk and
/// trailers.
async fn relay_chunked(
    reader: &mut BufReader<OwnedReadHalf>,
    up: &mut OwnedWriteHalf,
) -> std::io::Result<()> {
    loop {
        let mut size_line = String::new();
        if reader.read_line(&mut size_line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        up.write_all(size_line.as_bytes()).await?;
        let size = u64::from_str_radix(size_line.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
        if size == 0 {
            // Trailers, then the blank line.
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).await? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                up.write_all(line.as_bytes()).await?;
                if line.trim_end().is_empty() {
                    return Ok(());
                }
            }
        }
        // The data and its CRLF.
        tokio::io::copy(&mut (&mut *reader).take(size + 2), up).await?;
    }
}

/// Standard base64 with padding, for `Proxy-Authorization: Basic`.
pub fn base64(input: &str) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = input.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
