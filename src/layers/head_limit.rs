//! The limits on a request head, the same on HTTP/1 and HTTP/2: at most
//! [`MAX_HEADERS`] header fields and [`MAX_HEADER_BYTES`] bytes of names and
//! values. Over either, the answer is a 431 in the JSON error shape.
//!
//! hyper's own limits (`crate::server`) are set above these, so a head the
//! gateway refuses reaches this layer and gets a JSON answer, instead of
//! hyper's empty one; a head beyond hyper's never reaches the gateway.

use std::future::{ready, Ready};
use std::task::{Context, Poll};

use futures_util::future::Either;
use http::{HeaderMap, Request, Response};
use tower::{Layer, Service};

use crate::body::ResBody;
use crate::error::{reply, ApiError, ErrorContext};

/// Most header fields a request may carry, each value of a repeated name
/// counted. hyper's HTTP/1 default, applied to h2 too; `Host` counts on
/// HTTP/1, the h2 pseudo-headers (`:authority`, `:path`, …) do not.
pub const MAX_HEADERS: usize = 100;

/// Most header bytes (names and values) a request may carry.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Whether the request's headers are within [`MAX_HEADERS`] and
/// [`MAX_HEADER_BYTES`].
pub fn check_head(headers: &HeaderMap) -> Result<(), ApiError> {
    if headers.len() > MAX_HEADERS {
        return Err(ApiError::TooManyHeaders { limit: MAX_HEADERS });
    }
    let bytes: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len())
        .sum();
    if bytes > MAX_HEADER_BYTES {
        return Err(ApiError::HeadersTooLarge {
            limit: MAX_HEADER_BYTES,
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
    use http::{HeaderName, HeaderValue};

    fn headers(n: usize) -> HeaderMap {
        let mut h = HeaderMap::new();
        for i in 0..n {
            let name = HeaderName::from_bytes(format!("x-h-{i}").as_bytes()).unwrap();
            h.insert(name, HeaderValue::from_static("v"));
        }
        h
    }

    #[test]
    fn counts_every_value() {
        assert!(check_head(&headers(MAX_HEADERS)).is_ok());
        let e = check_head(&headers(MAX_HEADERS + 1)).unwrap_err();
        assert_eq!(e.status(), 431);
        assert_eq!(e.kind(), "headers_too_large");
        let mut h = headers(MAX_HEADERS);
        h.append("x-h-0", HeaderValue::from_static("again"));
        assert!(check_head(&h).is_err(), "a repeated name counts twice");
    }

    #[test]
    fn counts_name_and_value_bytes() {
        let mut h = HeaderMap::new();
        let value = "a".repeat(MAX_HEADER_BYTES - 5);
        h.insert("x-big", HeaderValue::from_str(&value).unwrap());
        assert!(check_head(&h).is_ok());
        h.insert(
            "x-big",
            HeaderValue::from_str(&format!("{value}a")).unwrap(),
        );
        let e = check_head(&h).unwrap_err();
        assert_eq!(e.status(), 431);
    }
}
