//! The request id: the client's own `x-request-id` when it is short visible
//! ASCII, else a new random 128-bit id in hex. The layer writes it into the
//! request's headers, so every later step (doors, logs, the backend call)
//! reads the one id, and sets it on every answer.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use tower::{Layer, Service};

/// The header that carries the request id both ways.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-supplied request id that is kept as is.
const MAX_REQUEST_ID: usize = 128;

/// Sets the request id on the request and its answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestId<S>;

    fn layer(&self, inner: S) -> RequestId<S> {
        RequestId { inner }
    }
}

/// The service of [`RequestIdLayer`].
#[derive(Debug, Clone)]
pub struct RequestId<S> {
    inner: S,
}

impl<S, B, R> Service<Request<B>> for RequestId<S>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = IdFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let id = request_id(req.headers());
        req.headers_mut().insert(REQUEST_ID, id.clone());
        IdFuture {
            inner: self.inner.call(req),
            id: Some(id),
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer of the inner service, with the request id set.
    pub struct IdFuture<F> {
        #[pin]
        inner: F,
        id: Option<HeaderValue>,
    }
}

impl<F, R, E> Future for IdFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = ready!(this.inner.poll(cx))?;
        if let Some(id) = this.id.take() {
            res.headers_mut().insert(REQUEST_ID, id);
        }
        Poll::Ready(Ok(res))
    }
}

/// The client's `x-request-id` when it is short visible ASCII, else a new
/// random 128-bit id in hex.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(REQUEST_ID) {
        let ok = !v.is_empty()
            && v.len() <= MAX_REQUEST_ID
            && v.as_bytes().iter().all(|b| b.is_ascii_graphic());
        if ok {
            return v.clone();
        }
    }
    let mut id = [0u8; 32];
    // 16 random bytes make 32 hex digits: the buffer's exact size.
    let _ = hex::encode_to_slice(fastrand::u128(..).to_be_bytes(), &mut id);
    // An owned buffer, so the id's clones (for the backend, the answer and
    // the log) share one allocation; hex is always a valid header value.
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(id))
        .unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// The request id [`RequestIdLayer`] set, as text (empty outside the stack).
pub fn of(headers: &HeaderMap) -> &str {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_keeps_sane_client_ids_only() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert("x-request-id", HeaderValue::from_static("has space"));
        assert_ne!(request_id(&h), "has space");
        h.insert(
            "x-request-id",
            HeaderValue::from_str(&"a".repeat(200)).unwrap(),
        );
        assert_eq!(request_id(&h).len(), 32);
        let fresh = request_id(&HeaderMap::new());
        assert_eq!(fresh.len(), 32);
        assert!(fresh.as_bytes().iter().all(u8::is_ascii_hexdigit));
        assert_ne!(fresh, request_id(&HeaderMap::new()));
    }

    #[tokio::test]
    async fn the_answer_carries_the_id_the_request_was_given() {
        use tower::ServiceExt;
        let svc = RequestIdLayer.layer(tower::service_fn(|req: Request<()>| async move {
            // The inner service sees the id in the request's headers.
            let seen = req.headers()[REQUEST_ID].clone();
            let mut res = Response::new(());
            res.headers_mut().insert("x-seen", seen);
            Ok::<_, std::convert::Infallible>(res)
        }));
        let req = Request::builder()
            .header("x-request-id", "bad id")
            .body(())
            .unwrap();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.headers()[REQUEST_ID], res.headers()["x-seen"]);
        assert_eq!(res.headers()[REQUEST_ID].len(), 32);
    }
}
