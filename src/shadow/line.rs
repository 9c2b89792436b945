//! One line of the shadow diff log, the field names in one place: the
//! writer ([`super::diff_log`]) serializes a [`DiffLine`], `infergate
//! shadow-report` ([`crate::commands`]) reads them back.
//!
//! A line holds what the comparison saw and nothing of the request: no
//! header, no body, no credential; the answers only, each cut to
//! `shadow.diff_log_answer_bytes`.

use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// One compared shadow call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffLine {
    /// When the shadow's answer was compared, RFC 3339 in UTC.
    pub time: String,
    pub route: String,
    /// The shadow's backend.
    pub shadow: String,
    /// The backend that gave the client its answer.
    pub primary: Option<String>,
    /// The request's `x-request-id`, as the client got it.
    pub request_id: String,
    /// `predict`, `generate`, `chat`, `completion` or `embed`.
    pub operation: String,
    pub outcome: Outcome,
    pub primary_status: u16,
    /// `None` when the shadow gave no answer.
    pub shadow_status: Option<u16>,
    /// From the dispatch to the primary's last body byte: what the client
    /// waited, retries included.
    pub primary_ms: f64,
    /// The shadow call, until its answer was read whole (or it failed).
    pub shadow_ms: f64,
    /// In `[0, 1]`, for answers that measure one (text, embeddings).
    pub similarity: Option<f64>,
    /// Where the answers part, or why the shadow has none; `None` for a
    /// match.
    pub difference: Option<String>,
    pub primary_answer: Answer,
    /// `None` when the shadow gave no answer.
    pub shadow_answer: Option<Answer>,
}

/// How a shadow call ended, as the line says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Match,
    Differ,
    ShadowError,
}

/// An answer, cut: as text when its kept bytes are UTF-8, else as base64;
/// neither when nothing is kept (`diff_log_answer_bytes = 0`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
    /// The whole answer's length.
    #[serde(default)]
    pub bytes: u64,
    /// Less than the whole answer is kept.
    #[serde(default)]
    pub truncated: bool,
}

impl Answer {
    /// `body`, cut to at most `max` bytes: text cut at a character
    /// boundary when the bytes kept are UTF-8 (a character the cut went
    /// through is left out whole), else the bytes kept in base64.
    pub fn cut(body: &[u8], max: usize) -> Self {
        let kept = &body[..body.len().min(max)];
        let (text, base64) = match std::str::from_utf8(kept) {
            Ok(text) => (Some(text), None),
            // Only the end is cut short: the text before it.
            Err(e) if e.error_len().is_none() => {
                (std::str::from_utf8(&kept[..e.valid_up_to()]).ok(), None)
            }
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(kept)),
            ),
        };
        let held = text.map_or(kept.len(), str::len);
        Self {
            text: text
                .filter(|t| !t.is_empty() || body.is_empty())
                .map(str::to_owned),
            base64,
            bytes: body.len() as u64,
            truncated: held < body.len(),
        }
    }
}

/// `d` in milliseconds, to the microsecond.
pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cut_at_a_character_boundary() {
        let a = Answer::cut("héllo".as_bytes(), 2);
        assert_eq!(
            a,
            Answer {
                text: Some("h".into()),
                base64: None,
                bytes: 6,
                truncated: true
            }
        );
        assert_eq!(
            Answer::cut("héllo".as_bytes(), 3).text.as_deref(),
            Some("hé")
        );
        let whole = Answer::cut("héllo".as_bytes(), 64);
        assert_eq!(
            (whole.text.as_deref(), whole.truncated),
            (Some("héllo"), false)
        );
        // Four bytes of one character: nothing before it is kept.
        let emoji = Answer::cut("🦀 crab".as_bytes(), 3);
        assert_eq!(
            (emoji.text, emoji.base64, emoji.truncated),
            (None, None, true)
        );
        let empty = Answer::cut(b"", 8);
        assert_eq!((empty.text.as_deref(), empty.truncated), (Some(""), false));
    }

    #[test]
    fn bytes_that_are_not_utf8_are_base64() {
        let a = Answer::cut(&[0xff, 0x00, 0x41, 0x42], 3);
        assert_eq!(a.text, None);
        assert_eq!(a.base64.as_deref(), Some("/wBB"));
        assert_eq!((a.bytes, a.truncated), (4, true));
        let none = Answer::cut(b"anything", 0);
        assert_eq!((none.text, none.base64, none.bytes), (None, None, 8));
        assert!(none.truncated);
    }

    #[test]
    fn a_line_reads_back_as_written() {
        let line = DiffLine {
            time: "2025-01-02T03:04:05.678Z".into(),
            route: "flan".into(),
            shadow: "hf".into(),
            primary: Some("sm".into()),
            request_id: "r-1".into(),
            operation: "generate".into(),
            outcome: Outcome::ShadowError,
            primary_status: 200,
            shadow_status: None,
            primary_ms: millis(Duration::from_micros(12_345)),
            shadow_ms: 0.5,
            similarity: None,
            difference: Some("no answer".into()),
            primary_answer: Answer::cut(b"{}", 10),
            shadow_answer: None,
        };
        let text = serde_json::to_string(&line).unwrap();
        assert!(text.contains(r#""outcome":"shadow_error""#), "{text}");
        assert!(text.contains(r#""primary_ms":12.345"#), "{text}");
        assert_eq!(serde_json::from_str::<DiffLine>(&text).unwrap(), line);
    }
}
