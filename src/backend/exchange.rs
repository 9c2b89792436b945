//! One HTTP exchange with an upstream, the same for every backend kind.
//!
//! A backend builds its request (URL, payload, authentication) and hands it
//! to [`exchange`] with its [`Wire`]: which response headers the client may
//! see, how a token stream is framed and how an error answer is classified.
//! The exchange sends within the attempt's time, waits for a stream's first
//! event, passes a success's body through unread, and turns anything else
//! into a [`Failure`]. Only what differs between backends lives in their
//! files, so a fix to the exchange reaches both.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName};

use super::events::{Events, StreamItem};
use super::{Failure, FailureKind, UpstreamBody, UpstreamRequest, UpstreamResponse};

/// At most this much of an upstream error body is read to classify it.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// What one backend kind's answers look like on the wire.
#[derive(Debug)]
pub(crate) struct Wire {
    /// Response headers of a success the client gets back.
    pub returned: &'static [&'static str],
    /// Response headers of a stream the client gets back.
    pub stream_returned: &'static [&'static str],
    /// How a successful stream's body is cut into events.
    pub framing: fn(reqwest::Response) -> Events,
    /// Turns an error answer (backend name, status, headers, body) into a
    /// [`Failure`].
    pub classify: fn(&str, u16, &HeaderMap, &[u8]) -> Failure,
}

/// Sends one attempt and reads its answer as `wire` says: a stream once its
/// first event arrived (within `req.timeout` of the send), a success with its
/// body still to read, or the classified failure.
pub(crate) async fn exchange(
    builder: reqwest::RequestBuilder,
    req: &UpstreamRequest,
    wire: &Wire,
    backend: &str,
) -> Result<UpstreamResponse, Failure> {
    let started = tokio::time::Instant::now();
    let res = send(builder, req, backend).await?;
    let status = res.status();
    if !status.is_success() {
        let headers = res.headers().clone();
        let body = read_error_body(res, req.timeout).await;
        return Err((wire.classify)(backend, status.as_u16(), &headers, &body));
    }
    let mut headers = HeaderMap::new();
    if req.stream {
        copy_headers(res.headers(), wire.stream_returned, &mut headers);
        let events = (wire.framing)(res);
        let (first, events) = first_event(events, started + req.timeout, backend).await?;
        return Ok(UpstreamResponse {
            status,
            headers,
            body: UpstreamBody::Events { first, events },
        });
    }
    copy_headers(res.headers(), wire.returned, &mut headers);
    Ok(UpstreamResponse {
        status,
        headers,
        body: UpstreamBody::Stream(res),
    })
}

/// Sends a request: `timeout` bounds the wait for the response headers,
/// `total` (set on the request) the whole exchange.
async fn send(
    builder: reqwest::RequestBuilder,
    req: &UpstreamRequest,
    backend: &str,
) -> Result<reqwest::Response, Failure> {
    // A stream's body is bounded by its idle timeout, not the deadline.
    let builder = if req.stream {
        builder
    } else {
        builder.timeout(req.total)
    };
    match tokio::time::timeout(req.timeout, builder.send()).await {
        Ok(Ok(res)) => Ok(res),
        Ok(Err(e)) => Err(Failure::from_transport(&e, backend)),
        Err(_) => Err(Failure::timed_out(backend)),
    }
}

/// Waits, until `deadline`, for a stream's first event: only then is the
/// attempt a success, so a stream that fails before it is retried like any
/// other attempt.
async fn first_event(
    mut events: Events,
    deadline: tokio::time::Instant,
    backend: &str,
) -> Result<(Bytes, Events), Failure> {
    match tokio::time::timeout_at(deadline, events.next()).await {
        Ok(Some(StreamItem::Data(first))) => Ok((first, events)),
        Ok(Some(StreamItem::Error(e))) => Err(Failure::new(
            FailureKind::ServerError,
            format!(
                "backend \"{backend}\": the stream failed before its first event: {}",
                e.message
            ),
        )
        .retryable(true)),
        Ok(None) => Err(Failure::new(
            FailureKind::Protocol,
            format!("backend \"{backend}\": the stream ended without an event"),
        )
        .retryable(true)),
        Err(_) => Err(Failure::new(
            FailureKind::Timeout,
            format!("backend \"{backend}\": no first event in time"),
        )),
    }
}

/// Reads a whole answer of at most `limit` bytes.
pub(crate) async fn read_limited(
    mut res: reqwest::Response,
    limit: usize,
    backend: &str,
) -> Result<Bytes, Failure> {
    let mut buf = Vec::new();
    while let Some(chunk) = res
        .chunk()
        .await
        .map_err(|e| Failure::from_transport(&e, backend))?
    {
        if buf.len() + chunk.len() > limit {
            return Err(Failure::new(
                FailureKind::Protocol,
                format!("backend \"{backend}\" answered more than {limit} bytes"),
            ));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// Reads at most [`MAX_ERROR_BODY`] bytes of an error answer, within `timeout`.
async fn read_error_body(mut res: reqwest::Response, timeout: Duration) -> Bytes {
    let read = async {
        let mut buf = Vec::new();
        while let Ok(Some(chunk)) = res.chunk().await {
            let room = MAX_ERROR_BODY.saturating_sub(buf.len());
            buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if buf.len() >= MAX_ERROR_BODY {
                break;
            }
        }
        Bytes::from(buf)
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or_default()
}

/// Copies the named response headers the client may see.
fn copy_headers(from: &HeaderMap, names: &[&'static str], to: &mut HeaderMap) {
    for name in names {
        for value in from.get_all(*name) {
            to.append(HeaderName::from_static(name), value.clone());
        }
    }
}
