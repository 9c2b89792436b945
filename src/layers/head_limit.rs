//! The limits on a request head, the same on HTTP/1 and HTTP/2: at most
//! [`MAX_HEADERS`] header fields and [`MAX_HEADER_BYTES`] bytes of names and
//! values. Over either, the answer is a 431 in the JSON error shape.
//!
//! hyper's own limits (`crate::server`) are set above these, so a head the
//! gateway refuses reaches this layer and gets a JSON answer, instead of
//! hyper's empty one.

use std::future::{ready, Ready};
use std::task::{Context, Poll};

use futures_util::future::Either;
use http::{HeaderMap, Request, Response};
use tower::{Layer, Service};

use crate::body::ResBody;
use crate::error::{reply, ApiError, ErrorContext};

/// Most header fields a request may carry.
pub const MAX_HEADERS: usize = 100;

/// Most header bytes (names and values) a request may carry.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Checks a request head against [`MAX_HEADERS`] and [`MAX_HEADER_BYTES`].
pub fn check_head(headers: &HeaderMap) -> Result<(), ApiError> {
    let count = headers.len();
    let bytes: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len())
        .sum();
    if count > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return Err(ApiError::HeadersTooLarge {
            limit: MAX_HEADER_BYTES,
            max_headers: MAX_HEADERS,
        });
    }
    Ok(())
}

/// Refuses a request whose head is over the limits.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeadLimitLayer;

impl<S> Layer<S> for HeadLimitLayer {
    type Service = HeadLimit<S>;

    fn layer(&self, inner: S) -> HeadLimit<S> {
        HeadLimit { inner }
    }
}

/// The service of [`HeadLimitLayer`].
#[derive(Debug, Clone)]
pub struct HeadLimit<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for HeadLimit<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response<ResBody>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match check_head(req.headers()) {
            Ok(()) => Either::Right(self.inner.call(req)),
            Err(err) => {
                let ctx = ErrorContext {
                    request_id: Some(super::request_id::of(req.headers())),
                    ..ErrorContext::default()
                };
                Either::Left(ready(Ok(reply(&err, ctx))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn count_and_bytes_are_both_limits() {
        let mut h = HeaderMap::new();
        for i in 0..MAX_HEADERS {
            h.insert(
                http::HeaderName::from_bytes(format!("x-h{i}").as_bytes()).unwrap(),
                HeaderValue::from_static("v"),
            );
        }
        assert!(check_head(&h).is_ok());
        h.insert("x-one-more", HeaderValue::from_static("v"));
        assert!(matches!(
            check_head(&h),
            Err(ApiError::HeadersTooLarge { .. })
        ));
        let mut h = HeaderMap::new();
        h.insert(
            "x-big",
            HeaderValue::from_str(&"a".repeat(MAX_HEADER_BYTES)).unwrap(),
        );
        assert!(check_head(&h).is_err());
    }
}
