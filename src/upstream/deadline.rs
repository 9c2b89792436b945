//! A response body that must end by a deadline: the request's, which bounds
//! the whole exchange. The timer is polled only while the body waits, so a
//! body that is already in when it is read never arms it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::body::BoxError;

pin_project_lite::pin_project! {
    /// `body`, cut with an error at `deadline`.
    pub struct Deadline<B> {
        #[pin]
        body: B,
        #[pin]
        timer: Sleep,
    }
}

impl<B> Deadline<B> {
    pub fn new(body: B, deadline: Instant) -> Self {
        Self {
            body,
            timer: tokio::time::sleep_until(deadline),
        }
    }
}

/// The body did not end by the request's deadline.
#[derive(Debug, thiserror::Error)]
#[error("the backend's answer did not end before the request's deadline")]
pub struct TimedOut;

impl<B> Body for Deadline<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if let Poll::Ready(frame) = this.body.poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match this.timer.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(TimedOut.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http_body_util::{BodyExt, Full, StreamBody};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_body_in_time_passes_whole() {
        let body = Full::new(Bytes::from_static(b"answer"));
        let timed = Deadline::new(body, Instant::now() + Duration::from_secs(1));
        let got = timed.collect().await.unwrap().to_bytes();
        assert_eq!(got, "answer");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_past_the_deadline_is_cut() {
        let never = futures_util::stream::pending::<Result<Frame<Bytes>, std::io::Error>>();
        let timed = Deadline::new(
            StreamBody::new(never),
            Instant::now() + Duration::from_secs(1),
        );
        let err = timed.collect().await.unwrap_err();
        assert!(err.is::<TimedOut>(), "{err}");
    }
}
