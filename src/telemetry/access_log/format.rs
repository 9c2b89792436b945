//! One access line, formatted by hand into a byte buffer: the bytes
//! tracing-subscriber's `fmt` layer writes for the same event (text, or
//! JSON with the event flattened), ANSI colour off, without its per-event
//! machinery (field visitors, `fmt::Write` through `dyn`, a `String` per
//! JSON value). Integers go through a stack buffer, strings are escaped
//! byte by byte, the timestamp is computed from the Unix time.
//!
//! The tests compare each line with what tracing-subscriber itself writes
//! for the event [`super::Record::emit_event`] emits.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Format, Record, TARGET};

/// Appends `record`'s line, newline included, to `out`.
pub fn line(out: &mut Vec<u8>, format: Format, now: SystemTime, record: &Record<'_>) {
    match format {
        Format::Text => text(out, now, record),
        Format::Json => json(out, now, record),
    }
}

/// `{timestamp}  INFO infergate::access: request request_id=… …`, the
/// fields as tracing-subscriber's default field formatter writes them:
/// `request_id` by `Display`, strings by `Debug` (quoted), numbers and
/// booleans bare, an absent backend left out.
fn text(out: &mut Vec<u8>, now: SystemTime, r: &Record<'_>) {
    timestamp(out, now);
    out.extend_from_slice(b"  INFO ");
    out.extend_from_slice(TARGET.as_bytes());
    out.extend_from_slice(b": request request_id=");
    out.extend_from_slice(r.request_id.as_bytes());
    out.extend_from_slice(b" trace_id=\"");
    trace_hex(out, r.trace_id);
    out.extend_from_slice(b"\" route=");
    debug_str(out, r.route);
    if let Some(backend) = r.backend {
        out.extend_from_slice(b" backend=");
        debug_str(out, backend);
    }
    if let Some(client) = r.client {
        out.extend_from_slice(b" client=");
        debug_str(out, client);
    }
    for (name, value) in r.numbers() {
        out.push(b' ');
        out.extend_from_slice(name.as_bytes());
        out.push(b'=');
        value.write(out);
    }
    out.push(b'\n');
}

/// The object `json().flatten_event(true)` writes: timestamp, level, the
/// event's fields in their order (message first), then the target.
fn json(out: &mut Vec<u8>, now: SystemTime, r: &Record<'_>) {
    out.extend_from_slice(b"{\"timestamp\":\"");
    timestamp(out, now);
    out.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"request\",\"request_id\":");
    json_str(out, r.request_id);
    out.extend_from_slice(b",\"trace_id\":\"");
    trace_hex(out, r.trace_id);
    out.extend_from_slice(b"\",\"route\":");
    json_str(out, r.route);
    if let Some(backend) = r.backend {
        out.extend_from_slice(b",\"backend\":");
        json_str(out, backend);
    }
    if let Some(client) = r.client {
        out.extend_from_slice(b",\"client\":");
        json_str(out, client);
    }
    for (name, value) in r.numbers() {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        value.write(out);
    }
    out.extend_from_slice(b",\"target\":\"");
    out.extend_from_slice(TARGET.as_bytes());
    out.extend_from_slice(b"\"}\n");
}

/// A field after the strings: a number or a boolean, written bare in both
/// formats.
#[derive(Debug, Clone, Copy)]
enum Value {
    Number(u64),
    Bool(bool),
}

impl Value {
    fn write(self, out: &mut Vec<u8>) {
        match self {
            Value::Number(n) => decimal(out, n),
            Value::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        }
    }
}

impl Record<'_> {
    /// The fields after `backend`, in the event's order.
    fn numbers(&self) -> [(&'static str, Value); 9] {
        use Value::{Bool, Number};
        [
            ("status", Number(u64::from(self.status))),
            ("attempts", Number(u64::from(self.attempts))),
            ("stream", Bool(self.stream)),
            ("head_us", Number(self.head_us)),
            ("total_us", Number(self.total_us)),
            ("upstream_us", Number(self.upstream_us)),
            ("bytes_in", Number(self.bytes_in)),
            ("bytes_out", Number(self.bytes_out)),
            ("complete", Bool(self.complete)),
        ]
    }
}

/// `n` in decimal, without `fmt`.
fn decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `n` in decimal, zero-padded to two digits (`n` < 100).
fn two(out: &mut Vec<u8>, n: u64) {
    out.push(b'0' + (n / 10 % 10) as u8);
    out.push(b'0' + (n % 10) as u8);
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The trace id in lowercase hex; nothing without one (an empty string, as
/// today's `unwrap_or_default`).
fn trace_hex(out: &mut Vec<u8>, id: Option<&[u8; 16]>) {
    if let Some(id) = id {
        let mut hex = [0u8; 32];
        if hex::encode_to_slice(id, &mut hex).is_ok() {
            out.extend_from_slice(&hex);
        }
    }
}

/// `s` as `{:?}` writes it. Printable ASCII other than the quotes and the
/// backslash is copied (route and backend names from the config always
/// are); anything else takes `Debug` itself, so its escapes stay exact.
fn debug_str(out: &mut Vec<u8>, s: &str) {
    let plain = s
        .bytes()
        .all(|b| (b' '..=b'~').contains(&b) && !matches!(b, b'"' | b'\'' | b'\\'));
    if plain {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let mut escaped = String::with_capacity(s.len() + 8);
        let _ = write!(escaped, "{s:?}");
        out.extend_from_slice(escaped.as_bytes());
    }
}

/// `s` as a JSON string, escaped as serde_json escapes it: `"` and `\`,
/// the short forms `\b \f \n \r \t`, other control characters as `\u00XX`;
/// everything else (UTF-8 included) as is.
fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` in UTC, as tracing-subscriber's default
/// timer writes it (a clock before 1970 writes the epoch).
fn timestamp(out: &mut Vec<u8>, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil(secs / 86_400);
    let rem = secs % 86_400;
    // Four digits from 1970 to 9999, as `{:04}` writes them.
    decimal(out, year);
    out.push(b'-');
    two(out, month);
    out.push(b'-');
    two(out, day);
    out.push(b'T');
    two(out, rem / 3600);
    out.push(b':');
    two(out, rem / 60 % 60);
    out.push(b':');
    two(out, rem % 60);
    out.push(b'.');
    let micros = u64::from(since.subsec_micros());
    for div in [100_000, 10_000, 1_000, 100, 10, 1] {
        out.push(b'0' + (micros / div % 10) as u8);
    }
    out.push(b'Z');
}

/// Year, month and day of the `days`th day after 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, for days on or after the epoch).
fn civil(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;
