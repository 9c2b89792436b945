//! The hand-made lines against tracing-subscriber's own, byte for byte
//! (the timestamp aside, which is checked on its own), and the escapes.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing_subscriber::fmt::MakeWriter;

use super::*;

/// What a subscriber writes, kept.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// The line the gateway's subscriber (`commands::Logging::init`, colour
/// off) writes for the record's event.
fn subscriber_line(format: Format, record: &Record<'_>) -> String {
    let captured = Captured::default();
    let builder = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false);
    match format {
        Format::Text => {
            tracing::subscriber::with_default(builder.finish(), || record.emit_event());
        }
        Format::Json => {
            let subscriber = builder.json().flatten_event(true).finish();
            tracing::subscriber::with_default(subscriber, || record.emit_event());
        }
    }
    let bytes = captured.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

fn our_line(format: Format, now: SystemTime, record: &Record<'_>) -> String {
    let mut out = Vec::new();
    line(&mut out, format, now, record);
    String::from_utf8(out).unwrap()
}

/// Where the timestamp is in a line of `format`.
fn stamp_at(format: Format) -> std::ops::Range<usize> {
    let start = match format {
        Format::Text => 0,
        Format::Json => r#"{"timestamp":""#.len(),
    };
    start..start + "2024-01-01T00:00:00.000000Z".len()
}

/// Ours and the subscriber's line for `record` are the same but for the
/// time they were written.
fn assert_same(format: Format, record: &Record<'_>) -> String {
    let theirs = subscriber_line(format, record);
    let ours = our_line(format, SystemTime::now(), record);
    let at = stamp_at(format);
    let shape = |s: &str| {
        let t = s[at.clone()].as_bytes();
        t.len() == 27 && t[4] == b'-' && t[10] == b'T' && t[19] == b'.' && t[26] == b'Z'
    };
    assert!(shape(&theirs), "{theirs}");
    assert!(shape(&ours), "{ours}");
    assert_eq!(
        format!("{}{}", &ours[..at.start], &ours[at.end..]),
        format!("{}{}", &theirs[..at.start], &theirs[at.end..]),
        "{format:?}"
    );
    ours
}

const TRACE: [u8; 16] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];

fn ok() -> Record<'static> {
    Record {
        request_id: "req-1",
        trace_id: Some(&TRACE),
        route: "flan",
        backend: Some("sm-flan"),
        client: Some("web-app"),
        status: 200,
        attempts: 1,
        stream: false,
        head_us: 1234,
        total_us: 5678,
        upstream_us: 1000,
        bytes_in: 42,
        bytes_out: 1_048_576,
        complete: true,
    }
}

/// An unknown route: no backend, no attempt; no trace either.
fn unknown() -> Record<'static> {
    Record {
        request_id: "0123456789abcdef0123456789abcdef",
        trace_id: None,
        route: "unknown",
        backend: None,
        client: None,
        status: 404,
        attempts: 0,
        stream: true,
        head_us: 0,
        total_us: u64::MAX,
        upstream_us: 0,
        bytes_in: 0,
        bytes_out: 0,
        complete: false,
    }
}

#[test]
fn text_lines_are_the_subscribers() {
    let line = assert_same(Format::Text, &ok());
    assert!(
        line.ends_with(
            "  INFO infergate::access: request request_id=req-1 \
             trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\" route=\"flan\" \
             backend=\"sm-flan\" client=\"web-app\" status=200 attempts=1 stream=false head_us=1234 \
             total_us=5678 upstream_us=1000 bytes_in=42 bytes_out=1048576 complete=true\n"
        ),
        "{line}"
    );
    let line = assert_same(Format::Text, &unknown());
    assert!(
        line.contains(" trace_id=\"\" route=\"unknown\" status=404 "),
        "{line}"
    );
    assert!(!line.contains("backend"), "{line}");
}

#[test]
fn json_lines_are_the_subscribers() {
    let line = assert_same(Format::Json, &ok());
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["target"], "infergate::access");
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["message"], "request");
    assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(v["backend"], "sm-flan");
    assert_eq!(v["bytes_out"], 1_048_576);
    assert_eq!(v["complete"], true);
    let line = assert_same(Format::Json, &unknown());
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["trace_id"], "");
    assert!(v.get("backend").is_none(), "{line}");
    assert_eq!(v["total_us"], u64::MAX);
    assert_eq!(v["stream"], true);
}

/// Client-chosen text (request ids are visible ASCII, quotes and
/// backslashes included) and names with anything in them stay one valid
/// line, escaped as the subscriber escapes them.
#[test]
fn strings_are_escaped_as_the_subscriber_escapes_them() {
    let odd = [
        r#"a"b"#,
        r"back\slash",
        "it's",
        "{\"json\":1}",
        "new\nline\r\ttab",
        "ctl\u{1}\u{8}\u{c}\u{1f}\u{7f}",
        "ümlaut ✓",
        "esc\u{1b}[31mred",
        "",
    ];
    for s in odd {
        let record = Record {
            request_id: s,
            route: s,
            backend: Some(s),
            client: Some(s),
            ..ok()
        };
        assert_same(Format::Text, &record);
        let line = assert_same(Format::Json, &record);
        assert_eq!(line.matches('\n').count(), 1, "{line:?}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["request_id"], s);
        assert_eq!(v["route"], s);
        assert_eq!(v["backend"], s);
        let mut escaped = Vec::new();
        json_str(&mut escaped, s);
        assert_eq!(escaped, serde_json::to_vec(s).unwrap(), "{s:?}");
    }
}

#[test]
fn timestamps_are_utc_with_microseconds() {
    let at = |secs: u64, micros: u64| {
        let mut out = Vec::new();
        let t = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros);
        timestamp(&mut out, t);
        String::from_utf8(out).unwrap()
    };
    assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
    assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
    assert_eq!(at(1_709_251_199, 123_456), "2024-02-29T23:59:59.123456Z");
    assert_eq!(at(1_735_689_599, 999_999), "2024-12-31T23:59:59.999999Z");
    assert_eq!(at(4_102_444_800, 0), "2100-01-01T00:00:00.000000Z");
    assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000000Z");
    // A clock before the epoch writes the epoch rather than failing.
    let mut out = Vec::new();
    timestamp(&mut out, UNIX_EPOCH - Duration::from_secs(1));
    assert_eq!(out, b"1970-01-01T00:00:00.000000Z");
}

#[test]
fn numbers_are_decimal() {
    for n in [0, 7, 10, 99, 100, 65_535, u64::from(u32::MAX), u64::MAX] {
        let mut out = Vec::new();
        decimal(&mut out, n);
        assert_eq!(out, n.to_string().as_bytes());
    }
}
