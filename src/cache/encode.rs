//! An [`Entry`] as one Redis value, and back: compact, binary and
//! self-describing, so that any gateway sharing the Redis reads what
//! another stored.
//!
//! ```text
//! version     1 byte, VERSION
//! status      u16
//! backend     u32 length (NONE: no backend), then its name
//! headers     u32 count, then each: u32 length + name, u32 length + value
//! body        1 byte: FULL, EVENTS, EVENTS_JSON_LINES; then
//!               FULL: u32 length + bytes
//!               EVENTS: u32 count (at least 1: the first event), then each:
//!                       u32 length + bytes
//! ```
//!
//! Numbers are big-endian. A value is read whole or not at all: another
//! version, a length past the end, an invalid status or header, a
//! backend name that is not UTF-8 or bytes after the end make
//! [`decode`] give `None`, never a panic.

use bytes::{BufMut, Bytes};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::{Entry, Stored};

/// The encoding's version: a value of another is not read.
const VERSION: u8 = 1;
/// The backend length that says there is none.
const NONE: u32 = u32::MAX;
const FULL: u8 = 0;
const EVENTS: u8 = 1;
const EVENTS_JSON_LINES: u8 = 2;

/// `entry` as a value; `None` when a part is longer than a u32 counts
/// (which no entry within the entry limit is).
pub fn encode(entry: &Entry) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(entry.weight as usize);
    out.put_u8(VERSION);
    out.put_u16(entry.status.as_u16());
    match &entry.backend {
        Some(name) => part(&mut out, name.as_bytes())?,
        None => out.put_u32(NONE),
    }
    out.put_u32(u32::try_from(entry.headers.len()).ok()?);
    for (name, value) in &entry.headers {
        part(&mut out, name.as_str().as_bytes())?;
        part(&mut out, value.as_bytes())?;
    }
    match &entry.body {
        Stored::Full(bytes) => {
            out.put_u8(FULL);
            part(&mut out, bytes)?;
        }
        Stored::Events {
            first,
            rest,
            json_lines,
        } => {
            out.put_u8(if *json_lines {
                EVENTS_JSON_LINES
            } else {
                EVENTS
            });
            out.put_u32(u32::try_from(rest.len() + 1).ok()?);
            for event in std::iter::once(first).chain(rest) {
                part(&mut out, event)?;
            }
        }
    }
    Some(out)
}

/// `bytes` after their length.
fn part(out: &mut Vec<u8>, bytes: &[u8]) -> Option<()> {
    out.put_u32(u32::try_from(bytes.len()).ok()?);
    out.put_slice(bytes);
    Some(())
}

/// The entry a value holds; its body and events are slices of `value`.
pub fn decode(value: Bytes) -> Option<Entry> {
    let mut r = Reader { value, at: 0 };
    if r.u8()? != VERSION {
        return None;
    }
    let status = StatusCode::from_u16(r.u16()?).ok()?;
    let backend = match r.u32()? {
        NONE => None,
        len => Some(String::from_utf8(r.take(len)?.to_vec()).ok()?),
    };
    let count = r.u32()?;
    let mut headers = HeaderMap::new();
    for _ in 0..count {
        let name = HeaderName::from_bytes(&r.part()?).ok()?;
        let value = HeaderValue::from_maybe_shared(r.part()?).ok()?;
        headers.append(name, value);
    }
    let body = match r.u8()? {
        FULL => Stored::Full(r.part()?),
        kind @ (EVENTS | EVENTS_JSON_LINES) => {
            let count = r.u32()?;
            let first = r.part()?;
            // Not sized by the count read: a bad one would allocate.
            let mut rest = Vec::new();
            for _ in 1..count {
                rest.push(r.part()?);
            }
            Stored::Events {
                first,
                rest,
                json_lines: kind == EVENTS_JSON_LINES,
            }
        }
        _ => return None,
    };
    if r.at != r.value.len() {
        return None;
    }
    Some(Entry::new(status, headers, body, backend))
}

/// A value read from the front, every read checked against its end.
struct Reader {
    value: Bytes,
    at: usize,
}

impl Reader {
    fn take(&mut self, len: u32) -> Option<Bytes> {
        let end = self.at.checked_add(usize::try_from(len).ok()?)?;
        let bytes = self.value.get(self.at..end)?;
        let bytes = self.value.slice_ref(bytes);
        self.at = end;
        Some(bytes)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let bytes = self.take(N as u32)?;
        bytes.as_ref().try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    /// A u32 length and that many bytes.
    fn part(&mut self) -> Option<Bytes> {
        let len = self.u32()?;
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Entry {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.append("x-thing", HeaderValue::from_static("one"));
        headers.append("x-thing", HeaderValue::from_static("two"));
        let body = Stored::Full(Bytes::from_static(b"[{\"generated_text\":\"hi\"}]"));
        Entry::new(StatusCode::CREATED, headers, body, Some("hf-flan".into()))
    }

    fn events(json_lines: bool) -> Entry {
        let body = Stored::Events {
            first: Bytes::from_static(b"{\"token\":1}"),
            rest: vec![Bytes::new(), Bytes::from_static(b"{\"token\":2}")],
            json_lines,
        };
        Entry::new(StatusCode::OK, HeaderMap::new(), body, None)
    }

    /// What an entry holds, comparable.
    fn parts(e: &Entry) -> (StatusCode, HeaderMap, String, Option<String>) {
        (
            e.status,
            e.headers.clone(),
            format!("{:?}", e.body),
            e.backend.clone(),
        )
    }

    #[test]
    fn an_entry_comes_back_as_it_was_stored() {
        for entry in [full(), events(false), events(true)] {
            let value = encode(&entry).unwrap();
            let back = decode(Bytes::from(value)).unwrap();
            assert_eq!(parts(&back), parts(&entry));
        }
    }

    #[test]
    fn a_value_cut_short_or_too_long_or_garbled_is_none() {
        let value = encode(&events(true)).unwrap();
        for len in 0..value.len() {
            assert!(
                decode(Bytes::copy_from_slice(&value[..len])).is_none(),
                "{len}"
            );
        }
        let mut longer = value.clone();
        longer.push(0);
        assert!(decode(Bytes::from(longer)).is_none());
        let garbled = |at: usize, byte: u8| {
            let mut v = encode(&full()).unwrap();
            v[at] = byte;
            decode(Bytes::from(v))
        };
        assert!(garbled(0, 2).is_none(), "another version");
        assert!(garbled(1, 0xff).is_none(), "status 65xxx");
        // The backend's length, past the end.
        assert!(garbled(3, 0x7f).is_none());
        for junk in [
            &b""[..],
            b"garbage",
            b"\x01\x00\xc8\xff\xff\xff\xff\xff\xff\xff\xff",
        ] {
            assert!(decode(Bytes::copy_from_slice(junk)).is_none());
        }
    }

    #[test]
    fn a_header_that_is_not_a_header_is_none() {
        let mut value = encode(&full()).unwrap();
        // The first header's name: "content-type" after the version,
        // status, backend ("hf-flan") and the count.
        let at = 1 + 2 + 4 + 7 + 4 + 4;
        assert_eq!(&value[at..at + 12], b"content-type");
        value[at] = b' ';
        assert!(decode(Bytes::from(value)).is_none());
    }
}
