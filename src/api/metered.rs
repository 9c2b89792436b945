//! An answer's tokens, charged to the request's token buckets
//! (`tokens_per_minute`, [`crate::limits::Charge`]): from TGI's headers when
//! the backend sent them, at once; else from the body's JSON once it has
//! passed (the body goes to the client as it comes, a copy of its first
//! [`MAX_READ`] bytes is kept to read the count from). A stream's events
//! are counted by its relay ([`super::stream`]).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use crate::body::{BoxError, ResBody};
use crate::limits::Charge;
use crate::protocol::usage;

/// The most of a body kept to read its token count from; past it the
/// answer is charged nothing (bodies that long are not token counts).
const MAX_READ: usize = 1 << 20;

/// `body`, charging its tokens to `charge` (if any) by the end.
pub fn body(body: ResBody, headers: &HeaderMap, charge: Option<Charge>) -> ResBody {
    let Some(charge) = charge else {
        return body;
    };
    if let Some(tokens) = usage::from_headers(headers) {
        charge.tokens(tokens);
        return body;
    }
    Metered {
        body,
        seen: Vec::new(),
        charge: Some(charge),
    }
    .boxed_unsync()
}

/// A body that keeps a copy of its first bytes, and charges what they
/// report when it is dropped (sent whole, or abandoned).
struct Metered {
    body: ResBody,
    seen: Vec<u8>,
    /// `None` once the body passed [`MAX_READ`].
    charge: Option<Charge>,
}

impl Body for Metered {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let (Some(data), Some(_)) = (frame.data_ref(), &this.charge) {
                if this.seen.len() + data.len() > MAX_READ {
                    this.charge = None;
                    this.seen = Vec::new();
                } else {
                    this.seen.extend_from_slice(data);
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        if let Some(charge) = self.charge.take() {
            if let Some(tokens) = usage::from_body(&self.seen) {
                charge.tokens(tokens);
            }
        }
    }
}
