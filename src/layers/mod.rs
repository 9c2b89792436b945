//! The steps every front door shares, each a tower [`Layer`](tower::Layer)
//! in a file of its own: the request id, the limits on the request head and
//! body, and the access log with the request metrics. [`crate::app`]
//! composes them, in one place, in front of the doors.
//!
//! Each layer's future is a named type (pin-project-lite), so the whole
//! stack is statically typed and boxes nothing per request.

pub mod access;
pub mod body_limit;
pub mod head_limit;
pub mod request_id;

pub use access::{Access, AccessLayer, Answer};
pub use body_limit::{BodyLimitLayer, BodyTooLarge, CappedBody};
pub use head_limit::HeadLimitLayer;
pub use request_id::{RequestIdLayer, REQUEST_ID};
