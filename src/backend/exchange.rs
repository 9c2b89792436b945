//! One HTTP exchange with an upstream, the same for every backend kind.
//!
//! A backend builds its request (URL, payload, authentication) and hands it
//! to [`exchange`] with its [`Wire`]: which response headers the client may
//! see, how a token stream is framed and how an error answer is classified.
//! The exchange sends within the attempt's time, waits for a stream's first
//! event, passes a success's body through unread, and turns anything else
//! into a [`Failure`]. Only what differs between backends lives in their
//! files, so a fix to the exchange reaches both.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Method};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::events::{Events, StreamItem};
use super::format::{EventMap, Reshape};
use super::{Failure, FailureKind, UpstreamBody, UpstreamRequest, UpstreamResponse};
use crate::upstream::{Client, Deadline, Target};

/// At most this much of an upstream error body is read to classify it.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// What one backend kind's answers look like on the wire.
#[derive(Debug)]
pub(crate) struct Wire {
    /// Response headers of a success the client gets back.
    pub returned: &'static [HeaderName],
    /// Response headers of a stream the client gets back.
    pub stream_returned: &'static [HeaderName],
    /// How a successful stream's body is cut into events.
    pub framing: fn(Incoming) -> Events,
    /// Turns an error answer (backend name, status, headers, body) into a
    /// [`Failure`].
    pub classify: fn(&str, u16, &HeaderMap, &[u8]) -> Failure,
}

/// One request as a backend built it: where it goes, its headers (signed
/// or carrying a token) and its body.
pub(crate) struct Outgoing<'a> {
    pub target: &'a Target,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// How a whole answer is turned into the operation's shape.
    pub reshape: Reshape,
    /// How a stream's events are.
    pub events: Option<EventMap>,
}

/// The largest answer read whole to be reshaped (SageMaker's own limit
/// on an `InvokeEndpoint` answer, 6 MB).
const MAX_RESHAPED_BYTES: usize = 6 * 1024 * 1024;

/// Sends one attempt and reads its answer as `wire` says: a stream once its
/// first event arrived, a success with its body still to read (which must
/// end within `req.total`), or the classified failure. The caller bounds
/// the exchange by the attempt's timeout ([`crate::dispatch`]).
pub(crate) async fn exchange(
    client: &Client,
    outgoing: Outgoing<'_>,
    req: &UpstreamRequest,
    wire: &Wire,
    backend: &str,
) -> Result<UpstreamResponse, Failure> {
    let started = tokio::time::Instant::now();
    let Outgoing {
        target,
        headers,
        body,
        reshape,
        events,
    } = outgoing;
    let sent = client.send(Method::POST, target, headers, body);
    let res = sent
        .await
        .map_err(|e| Failure::from_transport(&e, backend))?;
    let (parts, body) = res.into_parts();
    let status = parts.status;
    if !status.is_success() {
        let body = read_error_body(body).await;
        return Err((wire.classify)(
            backend,
            status.as_u16(),
            &parts.headers,
            &body,
        ));
    }
    // The headers passed on hold no `Cache-Control`, but a backend's
    // refusal to have its answer stored must reach the response cache (and
    // the client's own caches): it is kept when it says so.
    let refusal = crate::cache::refuses_storing(&parts.headers, req.stream).then(|| {
        parts
            .headers
            .get_all(http::header::CACHE_CONTROL)
            .iter()
            .cloned()
            .collect::<Vec<_>>()
    });
    let keep = |from: HeaderMap, names| {
        let mut kept = keep_headers(from, names);
        for value in refusal.into_iter().flatten() {
            kept.append(http::header::CACHE_CONTROL, value);
        }
        kept
    };
    if req.stream {
        let headers = keep(parts.headers, wire.stream_returned);
        let events = (wire.framing)(body).mapped(events);
        let (first, events) = first_event(events, backend).await?;
        return Ok(UpstreamResponse {
            status,
            headers,
            body: UpstreamBody::Events { first, events },
        });
    }
    let mut headers = keep(parts.headers, wire.returned);
    let body = Deadline::new(body, started + req.total);
    if reshape == Reshape::Pass {
        return Ok(UpstreamResponse {
            status,
            headers,
            body: UpstreamBody::Stream(http_body_util::BodyExt::boxed_unsync(body)),
        });
    }
    let raw = read_limited(body, MAX_RESHAPED_BYTES, backend).await?;
    let reshaped = reshape.apply(&raw).ok_or_else(|| {
        Failure::new(
            FailureKind::Protocol,
            format!("backend \"{backend}\" answered a body that is not what its container answers"),
        )
        .with_status(status.as_u16())
    })?;
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    headers.remove(http::header::CONTENT_LENGTH);
    Ok(UpstreamResponse {
        status,
        headers,
        body: UpstreamBody::Full(reshaped),
    })
}

/// Waits, until `deadline`, for a stream's first event: only then is the
/// attempt a success, so a stream that fails before it is retried like any
/// other attempt.
async fn first_event(mut events: Events, backend: &str) -> Result<(Bytes, Events), Failure> {
    match events.next().await {
        Some(StreamItem::Data(first)) => Ok((first, events)),
        Some(StreamItem::Error(e)) => Err(Failure::new(
            FailureKind::ServerError,
            format!(
                "backend \"{backend}\": the stream failed before its first event: {}",
                e.message
            ),
        )
        .retryable(true)),
        None => Err(Failure::new(
            FailureKind::Protocol,
            format!("backend \"{backend}\": the stream ended without an event"),
        )
        .retryable(true)),
    }
}

/// Reads a whole answer of at most `limit` bytes.
pub(crate) async fn read_limited<B>(body: B, limit: usize, backend: &str) -> Result<Bytes, Failure>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let mut body = std::pin::pin!(body);
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            Failure::new(
                FailureKind::Io,
                format!("backend \"{backend}\": the answer broke off: {e}"),
            )
        })?;
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
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

/// Reads at most [`MAX_ERROR_BODY`] bytes of an error answer (within the
/// attempt's timeout, which bounds the whole exchange).
async fn read_error_body(mut body: Incoming) -> Bytes {
    let mut buf = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        let room = MAX_ERROR_BODY.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    Bytes::from(buf)
}

/// Room in a kept answer's head for what the gateway adds to it (the
/// request id, the backend, the attempts, `server-timing`, a stream's
/// headers, the three `x-ratelimit-*`), so that adding them does not grow
/// the map.
const GATEWAY_HEADERS: usize = 9;

/// The response headers among `names` the client may see. The upstream's
/// own map is kept and the others taken out of it: re-inserting the kept
/// ones into a new map would hash every name again and clone every value
/// (the first clone of a parsed header allocates).
fn keep_headers(mut from: HeaderMap, names: &'static [HeaderName]) -> HeaderMap {
    if names.is_empty() {
        return HeaderMap::with_capacity(GATEWAY_HEADERS);
    }
    let unwanted: Vec<HeaderName> = from
        .keys()
        .filter(|name| !names.contains(name))
        .cloned()
        .collect();
    for name in &unwanted {
        from.remove(name);
    }
    from.reserve(GATEWAY_HEADERS);
    from
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    static KEPT: [HeaderName; 2] = [
        http::header::CONTENT_TYPE,
        HeaderName::from_static("x-generated-tokens"),
    ];

    #[test]
    fn only_the_listed_headers_are_kept_with_every_value() {
        let mut from = HeaderMap::new();
        from.insert("content-length", HeaderValue::from_static("52"));
        from.insert("content-type", HeaderValue::from_static("application/json"));
        from.append("x-generated-tokens", HeaderValue::from_static("6"));
        from.append("x-generated-tokens", HeaderValue::from_static("7"));
        from.insert("date", HeaderValue::from_static("today"));
        let kept = keep_headers(from, &KEPT);
        assert_eq!(kept.len(), 3);
        assert_eq!(kept["content-type"], "application/json");
        let tokens: Vec<_> = kept.get_all("x-generated-tokens").iter().collect();
        assert_eq!(tokens, ["6", "7"]);
        assert!(kept.get("content-length").is_none() && kept.get("date").is_none());
        assert!(keep_headers(HeaderMap::new(), &[]).is_empty());
    }
}
