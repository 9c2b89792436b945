//! Shadowing token streams: the primary's events are copied as they pass
//! (one tap of [`Events`], shared with the response cache's), and once the
//! stream ended well its final text is what the shadows' answers are
//! compared against, by [`super::compare`] like a unary answer's
//! `generated_text`.
//!
//! The final text of a stream is made of its events, whatever shape the
//! backend's container streams in (after [`crate::backend::format`] put
//! them in the operation's shape):
//!
//! | events | a token's text | the whole text |
//! | --- | --- | --- |
//! | TGI's `generate_stream` (SSE), LMI's token lines (JSON lines) | `token.text`, nothing for a `token.special` one | `generated_text`, on the last event |
//! | a bare token line | `token`, a string | `generated_text` |
//! | OpenAI's `chat.completion.chunk`s | `choices[0].delta.content` | — |
//! | OpenAI's `text_completion` chunks | `choices[0].text` | — |
//!
//! The text is the last event's `generated_text` when it has one, else the
//! tokens' texts in order; a stream none of whose events has one of these
//! shapes is compared as the list of its events (as JSON).
//!
//! A shadow's backend that streams the operation is sent a stream and
//! read whole ([`read`]: within [`BODY_LIMIT`], an error event or a cut
//! is the shadow's failure); one that does not is sent the request unary
//! ([`request_for`]), and its answer's generated text is compared. The
//! client's stream is never held back: the tap keeps references to the
//! events the relay already has, and the text is made on a task of its
//! own once the last event passed.

use bytes::Bytes;
use http::StatusCode;
use serde_json::{json, Value};

use super::{Picked, BODY_LIMIT};
use crate::backend::events::{Events, StreamItem, TapDone};
use crate::backend::{Backend, UpstreamRequest};

/// `events` (after the primary's `first`), tapped for `picked`'s shadow
/// calls: they start once the stream ended well, with its final text; a
/// stream cut, ended by an error, left by the client or past
/// [`BODY_LIMIT`] is not shadowed.
pub(super) fn tap(picked: Picked, status: StatusCode, first: &Bytes, events: Events) -> Events {
    let limit = BODY_LIMIT.saturating_sub(first.len());
    let first = first.clone();
    let done: TapDone = Box::new(move |rest, _json_lines| {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let mut all = Vec::with_capacity(rest.len() + 1);
            all.push(first);
            all.extend(rest);
            picked.start(status, answer(&all));
        });
    });
    events.tapped(limit, done)
}

/// The request a shadow is sent: the primary's, unary when the shadow's
/// backend does not stream its operation.
pub(super) fn request_for(backend: &Backend, primary: &UpstreamRequest) -> UpstreamRequest {
    let mut request = primary.clone();
    request.stream = primary.stream && backend.serves(primary.op, true);
    request
}

/// A shadow's stream read whole, as the answer compared ([`answer`]);
/// `None` when it failed (an error event, a cut) or passed [`BODY_LIMIT`].
pub(super) async fn read(first: Bytes, mut events: Events) -> Option<Bytes> {
    let mut size = first.len();
    let mut all = vec![first];
    while let Some(item) = events.next().await {
        let StreamItem::Data(event) = item else {
            return None;
        };
        size += event.len();
        if size > BODY_LIMIT {
            return None;
        }
        all.push(event);
    }
    Some(answer(&all))
}

/// A whole stream's events as the comparison reads them:
/// `{"generated_text": final text}`, or the events as a JSON list when
/// none of them carries text.
pub fn answer(events: &[Bytes]) -> Bytes {
    let values: Vec<Value> = events
        .iter()
        .filter_map(|e| serde_json::from_slice(e).ok())
        .collect();
    let v = match final_text(&values) {
        Some(text) => json!({ "generated_text": text }),
        None => Value::Array(values),
    };
    Bytes::from(v.to_string())
}

/// The final text of a stream's events: the last event's
/// `generated_text` when it has one, else the tokens' texts in order;
/// `None` when no event has a shape that carries text.
pub fn final_text(events: &[Value]) -> Option<String> {
    let mut text = String::new();
    let mut any = false;
    let mut whole = None;
    for event in events {
        let piece = piece(event);
        if let Some(t) = piece.text {
            text.push_str(t);
            any = true;
        }
        whole = piece.whole;
    }
    match whole {
        Some(whole) => Some(whole.to_owned()),
        None => any.then_some(text),
    }
}

/// What one event says of the text.
#[derive(Debug, PartialEq)]
struct Piece<'a> {
    /// Its token's text ("" for a special token).
    text: Option<&'a str>,
    /// The whole text so far, when the event carries it.
    whole: Option<&'a str>,
}

fn piece(event: &Value) -> Piece<'_> {
    let whole = event.get("generated_text").and_then(Value::as_str);
    let text = match event.get("token") {
        Some(Value::String(text)) => Some(text.as_str()),
        Some(token) if token.get("special").and_then(Value::as_bool) == Some(true) => Some(""),
        Some(token) => token.get("text").and_then(Value::as_str),
        None => choice_text(event),
    };
    Piece { text, whole }
}

/// The text of an OpenAI chunk's first choice (index 0): a chat delta's
/// `content` or a completion's `text`.
fn choice_text(event: &Value) -> Option<&str> {
    let choice = event
        .get("choices")?
        .as_array()?
        .iter()
        .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)?;
    choice
        .pointer("/delta/content")
        .or_else(|| choice.get("text"))
        .and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::model::{self, Generation};

    fn parse<S: AsRef<str>>(events: &[S]) -> Vec<Value> {
        events
            .iter()
            .map(|e| serde_json::from_str(e.as_ref()).unwrap())
            .collect()
    }

    fn text_of(events: &[&str]) -> Option<String> {
        final_text(&parse(events))
    }

    #[test]
    fn tgi_events_prefer_the_last_generated_text() {
        // TGI's generate_stream, as PROTOCOL.md gives it.
        let events = [
            r#"{"index":0,"token":{"id":5,"text":"b","logprob":-0.1,"special":false},"generated_text":null,"details":null}"#,
            r#"{"index":1,"token":{"id":6,"text":" a","logprob":-0.2,"special":false},"generated_text":"b a","details":null}"#,
        ];
        assert_eq!(text_of(&events).as_deref(), Some("b a"));
        // Without it, the tokens' texts, special ones left out.
        let events = [
            r#"{"token":{"text":"b","special":false},"generated_text":null}"#,
            r#"{"token":{"text":" a","special":false},"generated_text":null}"#,
            r#"{"token":{"text":"</s>","special":true},"generated_text":null}"#,
        ];
        assert_eq!(text_of(&events).as_deref(), Some("b a"));
        // The emulator's stream, empty generation (the special EOS alone) too.
        for inputs in ["one stable inference URL", " "] {
            let gen = Generation::run(inputs, Some(8));
            let events = parse(&model::generate_stream_events(&gen, true));
            assert_eq!(final_text(&events), Some(gen.text()));
        }
    }

    #[test]
    fn lmi_token_lines_and_bare_lines() {
        let gen = Generation::run("a b c", None);
        let lines = parse(&model::lmi::token_lines(&gen, "a b c"));
        assert_eq!(final_text(&lines).as_deref(), Some("c b a"));
        let without_whole: Vec<Value> = lines
            .into_iter()
            .map(|mut v| {
                v["generated_text"] = Value::Null;
                v
            })
            .collect();
        assert_eq!(final_text(&without_whole).as_deref(), Some("c b a"));
        // PROTOCOL.md's reference PayloadPart, and a whole-text line.
        assert_eq!(
            text_of(&[r#"{"token":"hi"}"#, r#"{"token":" there"}"#]).as_deref(),
            Some("hi there")
        );
        assert_eq!(
            text_of(&[r#"{"generated_text":"all of it"}"#]).as_deref(),
            Some("all of it")
        );
    }

    #[test]
    fn openai_chunks_concatenate_the_first_choice() {
        let gen = Generation::run("one two three", None);
        let chat = parse(&model::chat_chunks(&gen, "m", true));
        assert_eq!(final_text(&chat).as_deref(), Some("three two one"));
        let completion = parse(&model::completion_chunks(&gen, "m"));
        assert_eq!(final_text(&completion).as_deref(), Some("three two one"));
        let lmi_chat = parse(&model::lmi::chat_lines(&gen, "id", true));
        assert_eq!(final_text(&lmi_chat).as_deref(), Some("three two one"));
        // Another choice's text and a usage chunk with no choice add nothing.
        let events = [
            r#"{"choices":[{"index":1,"delta":{"content":"x"}},{"index":0,"delta":{"content":"y"}}]}"#,
            r#"{"choices":[],"usage":{"completion_tokens":1}}"#,
        ];
        assert_eq!(text_of(&events).as_deref(), Some("y"));
    }

    #[test]
    fn events_without_text_are_compared_as_json() {
        assert_eq!(text_of(&[r#"{"score":1}"#, "[1,2]"]), None);
        let events = [
            Bytes::from_static(b"{\"score\":1}"),
            Bytes::from_static(b"[1, 2]"),
        ];
        assert_eq!(&answer(&events)[..], br#"[{"score":1},[1,2]]"#);
        let events = [
            Bytes::from_static(br#"{"token":{"text":"a"}}"#),
            Bytes::from_static(br#"{"token":{"text":" \"b\""}}"#),
        ];
        assert_eq!(&answer(&events)[..], br#"{"generated_text":"a \"b\""}"#);
    }

    #[test]
    fn a_stream_matches_the_unary_answer_with_its_text() {
        use super::super::compare::{compare, Verdict};
        let gen = Generation::run("one stable inference URL", Some(8));
        let events: Vec<Bytes> = model::generate_stream_events(&gen, false)
            .into_iter()
            .map(Bytes::from)
            .collect();
        let streamed = answer(&events);
        let unary = json!([{ "generated_text": gen.text() }]).to_string();
        let ok = StatusCode::OK;
        let c = compare((ok, &streamed), (ok, unary.as_bytes()), 0.99);
        assert_eq!((c.verdict, c.similarity), (Verdict::Match, Some(1.0)));
        let other = json!({ "generated_text": "altered inference stable one" }).to_string();
        let c = compare((ok, &streamed), (ok, other.as_bytes()), 0.99);
        assert_eq!(
            (c.verdict, c.similarity),
            (Verdict::Differ, Some(3.0 / 5.0))
        );
    }
}
