//! Keeping a copy of an answer as it passes to the client: a body
//! ([`Recording`]) is handed to each [`Consumer`] once its last byte
//! passed, never when it broke or grew past that consumer's limit; a token
//! stream is kept by its own tap ([`crate::backend::events::Events::tapped`]).
//! One copy serves every consumer (the response cache, the shadows).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use crate::body::{BoxError, ResBody};

/// What to do with the whole body once it passed.
pub type Done = Box<dyn FnOnce(Bytes) + Send>;

/// One who wants the whole body: at most `limit` bytes of it.
pub struct Consumer {
    pub limit: usize,
    pub done: Done,
}

/// `inner`, with a copy of its bytes handed to each consumer when it ends
/// well.
pub struct Recording {
    inner: ResBody,
    kept: BytesMut,
    /// Those still wanting the copy; none once it broke, or handed over.
    consumers: Vec<Consumer>,
}

impl Recording {
    /// `inner` as it is when no consumer can have it (none, or a declared
    /// length past every limit), else recorded for them.
    pub fn wrap(inner: ResBody, mut consumers: Vec<Consumer>) -> ResBody {
        let expected = inner.size_hint().exact().map(usize::try_from);
        if let Some(Ok(len)) = expected {
            consumers.retain(|c| len <= c.limit);
        }
        let Some(most) = consumers.iter().map(|c| c.limit).max() else {
            return inner;
        };
        // A declared length sizes the copy at once (within the limits).
        let capacity = expected.and_then(Result::ok).unwrap_or(0).min(most);
        Self {
            inner,
            kept: BytesMut::with_capacity(capacity),
            consumers,
        }
        .boxed_unsync()
    }

    fn keep(&mut self, data: &Bytes) {
        let len = self.kept.len() + data.len();
        self.consumers.retain(|c| len <= c.limit);
        if self.consumers.is_empty() {
            self.kept = BytesMut::new();
        } else {
            self.kept.extend_from_slice(data);
        }
    }

    fn finish(&mut self) {
        let consumers = std::mem::take(&mut self.consumers);
        if consumers.is_empty() {
            return;
        }
        let kept = std::mem::take(&mut self.kept);
        // An entry is weighed by its length: it must not keep a buffer
        // grown much larger.
        let bytes = if kept.capacity() > kept.len() + kept.len() / 4 {
            Bytes::copy_from_slice(&kept)
        } else {
            kept.freeze()
        };
        for c in consumers {
            (c.done)(bytes.clone());
        }
    }
}

impl Body for Recording {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if !this.consumers.is_empty() {
                        this.keep(data);
                    }
                }
                // A server stops polling a body that says it has ended.
                if this.inner.is_end_stream() {
                    this.finish();
                }
            }
            Poll::Ready(Some(Err(_))) => this.consumers.clear(),
            Poll::Ready(None) => this.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use futures_util::stream;
    use http_body_util::{Full, StreamBody};

    type Got = Arc<Mutex<Option<Bytes>>>;

    fn consumer(limit: usize) -> (Consumer, Got) {
        let got: Got = Arc::default();
        let sink = Arc::clone(&got);
        let done: Done = Box::new(move |b| *sink.lock().unwrap() = Some(b));
        (Consumer { limit, done }, got)
    }

    fn chunked(chunks: Vec<Result<&'static str, &'static str>>) -> ResBody {
        let frames = chunks.into_iter().map(|c| match c {
            Ok(s) => Ok(Frame::data(Bytes::from_static(s.as_bytes()))),
            Err(e) => Err(BoxError::from(e)),
        });
        StreamBody::new(stream::iter(frames)).boxed_unsync()
    }

    #[tokio::test]
    async fn a_whole_body_is_kept_for_every_consumer_within_its_limit() {
        let (small, got_small) = consumer(3);
        let (large, got_large) = consumer(10);
        let body = Recording::wrap(chunked(vec![Ok("ab"), Ok("cd")]), vec![small, large]);
        let out = body.collect().await.unwrap().to_bytes();
        assert_eq!(out, "abcd");
        assert!(got_small.lock().unwrap().is_none());
        assert_eq!(got_large.lock().unwrap().as_deref(), Some(&b"abcd"[..]));
    }

    #[tokio::test]
    async fn a_broken_or_oversized_body_is_not() {
        let (c, got) = consumer(10);
        let body = Recording::wrap(chunked(vec![Ok("ab"), Err("reset")]), vec![c]);
        assert!(body.collect().await.is_err());
        assert!(got.lock().unwrap().is_none());
        let (c, got) = consumer(10);
        let body = Recording::wrap(chunked(vec![Ok("abcdef"), Ok("ghijkl")]), vec![c]);
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 12);
        assert!(got.lock().unwrap().is_none());
    }

    #[tokio::test]
    async fn a_declared_length_past_the_limit_gives_the_consumer_nothing() {
        let (c, got) = consumer(3);
        let body = Full::new(Bytes::from_static(b"abcd"))
            .map_err(|never| match never {})
            .boxed_unsync();
        let body = Recording::wrap(body, vec![c]);
        assert_eq!(body.size_hint().exact(), Some(4));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcd");
        assert!(got.lock().unwrap().is_none());
    }
}
