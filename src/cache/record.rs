//! Keeping a copy of an answer as it passes to the client: a body
//! ([`Recording`]) is stored once its last byte passed, never when it broke
//! or grew past the entry limit; a token stream is kept by its own tap
//! ([`crate::backend::events::Events::tapped`]).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

use crate::body::{BoxError, ResBody};

/// What to do with the whole body once it passed.
pub type Done = Box<dyn FnOnce(Bytes) + Send>;

/// `inner`, with a copy of its bytes handed to `done` when it ends well.
pub struct Recording {
    inner: ResBody,
    /// `None` once given up, or handed over.
    kept: Option<(BytesMut, Done)>,
    limit: usize,
}

impl Recording {
    pub fn new(inner: ResBody, limit: usize, done: Done) -> Self {
        // A declared length sizes the copy at once (within the limit).
        let expected = inner.size_hint().exact().unwrap_or(0);
        let capacity = usize::try_from(expected).unwrap_or(0).min(limit);
        Self {
            inner,
            kept: Some((BytesMut::with_capacity(capacity), done)),
            limit,
        }
    }

    fn finish(&mut self) {
        if let Some((bytes, done)) = self.kept.take() {
            // The entry is weighed by its length: it must not keep a
            // buffer grown much larger.
            let bytes = if bytes.capacity() > bytes.len() + bytes.len() / 4 {
                Bytes::copy_from_slice(&bytes)
            } else {
                bytes.freeze()
            };
            done(bytes);
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
                if let (Some(data), Some((bytes, _))) = (frame.data_ref(), &mut this.kept) {
                    if bytes.len() + data.len() > this.limit {
                        this.kept = None;
                    } else {
                        bytes.extend_from_slice(data);
                    }
                }
                // A server stops polling a body that says it has ended.
                if this.inner.is_end_stream() {
                    this.finish();
                }
            }
            Poll::Ready(Some(Err(_))) => this.kept = None,
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
    use http_body_util::{BodyExt, StreamBody};

    type Got = Arc<Mutex<Option<Bytes>>>;

    fn recording(
        chunks: Vec<Result<&'static str, &'static str>>,
        limit: usize,
    ) -> (Recording, Got) {
        let got: Got = Arc::default();
        let frames = chunks.into_iter().map(|c| match c {
            Ok(s) => Ok(Frame::data(Bytes::from_static(s.as_bytes()))),
            Err(e) => Err(BoxError::from(e)),
        });
        let body = StreamBody::new(stream::iter(frames)).boxed_unsync();
        let sink = Arc::clone(&got);
        let done: Done = Box::new(move |b| *sink.lock().unwrap() = Some(b));
        (Recording::new(body, limit, done), got)
    }

    #[tokio::test]
    async fn a_whole_body_is_kept() {
        let (body, got) = recording(vec![Ok("ab"), Ok("cd")], 10);
        let out = body.collect().await.unwrap().to_bytes();
        assert_eq!(out, "abcd");
        assert_eq!(got.lock().unwrap().as_deref(), Some(&b"abcd"[..]));
    }

    #[tokio::test]
    async fn a_broken_or_oversized_body_is_not() {
        let (body, got) = recording(vec![Ok("ab"), Err("reset")], 10);
        assert!(body.collect().await.is_err());
        assert!(got.lock().unwrap().is_none());
        let (body, got) = recording(vec![Ok("abcdef"), Ok("ghijkl")], 10);
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 12);
        assert!(got.lock().unwrap().is_none());
    }
}
