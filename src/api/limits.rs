//! The limits on a request head, one rule on HTTP/1 and HTTP/2, answered
//! in the JSON error shape (431) like every other refusal.
//!
//! hyper has limits of its own, set above these in [`crate::server`]: a head
//! beyond them never reaches the gateway and gets hyper's empty 431.

use http::HeaderMap;

use crate::error::ApiError;

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
