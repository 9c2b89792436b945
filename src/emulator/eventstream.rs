//! AWS event-stream output of the SageMaker emulator's
//! `InvokeEndpointWithResponseStream`: frames written with
//! aws-smithy-eventstream (the same crate the AWS SDK decodes with), and the
//! paced stream that turns the container's stream events (TGI's SSE, LMI's
//! JSON lines: any bytes) into `PayloadPart` frames,
//! with the stream faults applied — parts re-sliced at arbitrary offsets
//! (`stream_split`), one frame's message CRC corrupted (`corrupt_crc_at`), and
//! an exception frame in place of the rest (`stream_error_after`).

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use aws_smithy_types::event_stream::Message;
use bytes::{Bytes, BytesMut};
use futures_util::stream::Stream;

use crate::protocol::eventstream::{self as wire, encode, payload_part, Exception};

use super::faults::StreamError;

/// The exception frame of an injected stream error.
fn exception(kind: StreamError) -> Message {
    match kind {
        StreamError::ModelStreamError => wire::exception(
            Exception::ModelStreamError,
            "Model stream broken (injected by the infergate emulator).",
            Some("StreamBroken"),
        ),
        StreamError::InternalStreamFailure => wire::exception(
            Exception::InternalStreamFailure,
            "Internal stream failure (injected by the infergate emulator).",
            None,
        ),
    }
}

/// Flips every bit of the trailing message CRC, leaving the prelude intact,
/// so a decoder reads the whole frame and then rejects it.
pub(crate) fn corrupt_message_crc(frame: &mut BytesMut) {
    let len = frame.len();
    if len >= 4 {
        for b in &mut frame[len - 4..] {
            *b ^= 0xff;
        }
    }
}

/// How the stream of frames misbehaves.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct StreamFaults {
    pub token_latency: Duration,
    pub split: Option<usize>,
    pub corrupt_crc_at: Option<usize>,
    pub error_after: Option<usize>,
    pub error: StreamError,
}

struct FrameStream {
    events: std::vec::IntoIter<Bytes>,
    faults: StreamFaults,
    /// Bytes not yet framed (only when splitting).
    pending: BytesMut,
    /// Frames ready to send.
    ready: VecDeque<Bytes>,
    frames_made: usize,
    events_sent: usize,
    finished: bool,
}

impl FrameStream {
    fn push(&mut self, message: &Message) -> io::Result<()> {
        let mut frame = encode(message)?;
        if self.faults.corrupt_crc_at == Some(self.frames_made) {
            corrupt_message_crc(&mut frame);
        }
        self.frames_made += 1;
        self.ready.push_back(frame.freeze());
        Ok(())
    }

    /// Frames the pending bytes: all of them (`flush`), or as many random-sized
    /// parts of at most `split` bytes as are full.
    fn cut(&mut self, flush: bool) -> io::Result<()> {
        let Some(max) = self.faults.split else {
            if !self.pending.is_empty() {
                let part = self.pending.split().freeze();
                self.push(&payload_part(part))?;
            }
            return Ok(());
        };
        let max = max.max(1);
        loop {
            let size = fastrand::usize(1..=max);
            let enough = self.pending.len() >= size;
            let flushing = flush && !self.pending.is_empty();
            if !enough && !flushing {
                return Ok(());
            }
            let take = size.min(self.pending.len());
            let part = self.pending.split_to(take).freeze();
            self.push(&payload_part(part))?;
        }
    }

    async fn next_frame(&mut self) -> Option<io::Result<Bytes>> {
        loop {
            if let Some(frame) = self.ready.pop_front() {
                return Some(Ok(frame));
            }
            if self.finished {
                return None;
            }
            if let Err(e) = self.step().await {
                self.finished = true;
                return Some(Err(e));
            }
        }
    }

    /// Produces the next event's frames, or the end of the stream.
    async fn step(&mut self) -> io::Result<()> {
        let error_due = self.faults.error_after == Some(self.events_sent);
        match self.events.next() {
            Some(event) if !error_due => {
                if !self.faults.token_latency.is_zero() {
                    tokio::time::sleep(self.faults.token_latency).await;
                }
                self.events_sent += 1;
                self.pending.extend_from_slice(&event);
                self.cut(false)
            }
            // Events remain but the error is due: send what was generated,
            // then the exception, then stop.
            Some(_) => {
                self.finished = true;
                self.cut(true)?;
                self.push(&exception(self.faults.error))
            }
            None => {
                self.finished = true;
                self.cut(true)
            }
        }
    }
}

/// The response body of a streamed invocation: `events` (raw payload bytes,
/// e.g. SSE events) framed as `PayloadPart`s, paced by `token_latency`.
pub(crate) fn frames(
    events: Vec<Bytes>,
    faults: StreamFaults,
) -> impl Stream<Item = io::Result<Bytes>> + Send {
    let state = FrameStream {
        events: events.into_iter(),
        faults,
        pending: BytesMut::new(),
        ready: VecDeque::new(),
        frames_made: 0,
        events_sent: 0,
        finished: false,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        let item = st.next_frame().await?;
        Some((item, st))
    })
}

#[cfg(test)]
mod tests {

    use super::*;
    use aws_smithy_eventstream::frame::read_message_from;
    use futures_util::StreamExt;

    #[test]
    fn corrupted_crc_is_rejected_by_the_decoder() {
        let mut frame = encode(&payload_part(Bytes::from_static(b"x"))).unwrap();
        corrupt_message_crc(&mut frame);
        assert!(read_message_from(&frame[..]).is_err());
    }

    #[test]
    fn an_injected_model_stream_error_has_its_code() {
        let frame = encode(&exception(StreamError::ModelStreamError)).unwrap();
        let msg = read_message_from(&frame[..]).unwrap();
        let payload: serde_json::Value = serde_json::from_slice(msg.payload()).unwrap();
        assert_eq!(payload["ErrorCode"], "StreamBroken");
    }

    async fn collect(events: &[&str], faults: StreamFaults) -> Vec<Message> {
        let events = events.iter().map(|e| Bytes::from(e.to_string())).collect();
        let frames: Vec<_> = frames(events, faults).collect().await;
        frames
            .into_iter()
            .map(|f| read_message_from(&f.unwrap()[..]).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn one_part_per_event_without_split() {
        let msgs = collect(&["ab", "cd"], StreamFaults::default()).await;
        assert_eq!(msgs.len(), 2);
        assert_eq!(&msgs[1].payload()[..], b"cd");
    }

    #[tokio::test]
    async fn split_reslices_but_keeps_the_bytes() {
        let events = [
            "data:{\"a\":1}\n\n",
            "data:{\"b\":22}\n\n",
            "data:{\"c\":333}\n\n",
        ];
        let faults = StreamFaults {
            split: Some(3),
            ..StreamFaults::default()
        };
        let msgs = collect(&events, faults).await;
        assert!(msgs.len() > 3);
        assert!(msgs.iter().all(|m| (1..=3).contains(&m.payload().len())));
        let joined: Vec<u8> = msgs.iter().flat_map(|m| m.payload().to_vec()).collect();
        assert_eq!(joined, events.concat().into_bytes());
    }

    #[tokio::test]
    async fn error_after_sends_the_exception_last() {
        let faults = StreamFaults {
            error_after: Some(1),
            error: StreamError::InternalStreamFailure,
            ..StreamFaults::default()
        };
        let msgs = collect(&["a", "b", "c"], faults).await;
        assert_eq!(msgs.len(), 2);
        assert_eq!(&msgs[0].payload()[..], b"a");
        let kind = msgs[1].headers()[0]
            .value()
            .as_string()
            .unwrap()
            .as_str()
            .to_owned();
        assert_eq!(kind, "InternalStreamFailure");
    }

    #[tokio::test]
    async fn corrupt_at_hits_only_that_frame() {
        let faults = StreamFaults {
            corrupt_crc_at: Some(1),
            ..StreamFaults::default()
        };
        let events = vec![Bytes::from("a"), Bytes::from("b"), Bytes::from("c")];
        let frames: Vec<_> = frames(events, faults).collect().await;
        let ok: Vec<bool> = frames
            .iter()
            .map(|f| read_message_from(&f.as_ref().unwrap()[..]).is_ok())
            .collect();
        assert_eq!(ok, [true, false, true]);
    }
}
