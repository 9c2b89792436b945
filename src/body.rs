//! The body type of every answer the gateway gives, and its error type.
//!
//! One boxed body type lets a passed-through upstream body, a complete
//! answer and an event stream share a response type; it lives here, below
//! the doors and the layers that all produce it.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

/// The response body type of every answer the gateway gives.
pub type ResBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// A boxed error for bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response body with a complete payload.
pub fn full(body: impl Into<Bytes>) -> ResBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}
