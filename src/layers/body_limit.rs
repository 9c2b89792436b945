//! The limit on a request body, `server.max_body_bytes`: a declared
//! `Content-Length` over it fails at the first read, before a byte is
//! taken from the client; an undeclared (chunked) body fails as soon as it
//! passes the limit. The layer only wraps the body: the door that reads it
//! answers the 413 in its own shape, with its route known.

use std::pin::Pin;
use std::task::{Context, Poll};

use http::{header, Request};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{LengthLimitError, Limited};
use tower::{Layer, Service};

use crate::body::BoxError;

/// The body was, or said it would be, larger than the limit.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("request body exceeds the limit of {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: usize,
}

impl BodyTooLarge {
    /// Whether a body read failed on the limit (this layer's or
    /// [`Limited`]'s own error), and not on the connection.
    pub fn is(err: &BoxError) -> bool {
        err.is::<BodyTooLarge>() || err.is::<LengthLimitError>()
    }
}

/// Caps every request body at `limit` bytes.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimitLayer {
    limit: usize,
}

impl BodyLimitLayer {
    pub fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimit<S>;

    fn layer(&self, inner: S) -> BodyLimit<S> {
        BodyLimit {
            inner,
            limit: self.limit,
        }
    }
}

/// The service of [`BodyLimitLayer`].
#[derive(Debug, Clone)]
pub struct BodyLimit<S> {
    inner: S,
    limit: usize,
}

impl<S, B> Service<Request<B>> for BodyLimit<S>
where
    S: Service<Request<CappedBody<B>>>,
    B: Body,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<u64>().ok());
        let over = declared.is_some_and(|n| n > self.limit as u64);
        let limit = self.limit;
        self.inner
            .call(req.map(|body| CappedBody::new(body, limit, over)))
    }
}

pin_project_lite::pin_project! {
    /// A request body of at most `limit` bytes.
    pub struct CappedBody<B> {
        #[pin]
        inner: Limited<B>,
        limit: usize,
        // The declared length is over the limit: fail before reading.
        over: bool,
    }
}

impl<B: Body> CappedBody<B> {
    pub fn new(body: B, limit: usize, declared_over: bool) -> Self {
        Self {
            inner: Limited::new(body, limit),
            limit,
            over: declared_over,
        }
    }
}

impl<B> Body for CappedBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let this = self.project();
        if *this.over {
            let limit = *this.limit;
            return Poll::Ready(Some(Err(Box::new(BodyTooLarge { limit }))));
        }
        this.inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        !self.over && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};

    #[tokio::test]
    async fn a_declared_length_over_the_limit_fails_before_reading() {
        let body = CappedBody::new(Full::new(Bytes::from_static(b"0123456789a")), 10, true);
        let err = body.collect().await.unwrap_err();
        assert!(BodyTooLarge::is(&err));
    }

    #[tokio::test]
    async fn an_undeclared_body_over_the_limit_fails() {
        let body = CappedBody::new(Full::new(Bytes::from_static(b"0123456789a")), 10, false);
        let err = body.collect().await.unwrap_err();
        assert!(BodyTooLarge::is(&err));
        let body = CappedBody::new(Full::new(Bytes::from_static(b"0123456789")), 10, false);
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 10);
    }
}
