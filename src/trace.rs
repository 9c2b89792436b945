//! W3C trace context: a request's trace continues through the gateway.
//!
//! An incoming `traceparent` (`00-<trace id>-<parent id>-<flags>`) keeps its
//! trace id and flags; the gateway's hop gets a new span id, which becomes
//! the parent id sent to the backend. A request without a valid
//! `traceparent` starts a new trace when the gateway exports spans, and has
//! none otherwise: with nothing to continue and nothing recorded, the
//! request path does no trace work. `tracestate` is passed on unchanged
//! (when at most 512 bytes, as the spec asks of vendors). The trace id goes
//! into the access log, so a request can be followed across the gateway.

use http::{HeaderMap, HeaderName, HeaderValue};

/// The trace context of one request.
#[derive(Debug, Clone)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    /// The gateway's own span id: the parent id the backend sees.
    pub span_id: [u8; 8],
    /// The client's span, when it sent a `traceparent`.
    pub parent_id: Option<[u8; 8]>,
    pub flags: u8,
    pub tracestate: Option<HeaderValue>,
}

const MAX_TRACESTATE: usize = 512;

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

impl TraceContext {
    /// The request's trace: the client's continued, else a new one when
    /// the gateway records spans (`recording`), else none.
    pub fn of_request(headers: &HeaderMap, recording: bool) -> Option<Self> {
        if recording || headers.contains_key(TRACEPARENT) {
            let trace = Self::from_headers(headers, recording);
            // An invalid traceparent is no trace to continue.
            (recording || trace.parent_id.is_some()).then_some(trace)
        } else {
            None
        }
    }

    /// Continues the client's trace, or starts one; a new trace is marked
    /// sampled when the gateway records spans (`recording`).
    pub fn from_headers(headers: &HeaderMap, recording: bool) -> Self {
        let parsed = headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_traceparent);
        let span_id = nonzero_id::<8>();
        match parsed {
            Some((trace_id, parent_id, flags)) => Self {
                trace_id,
                span_id,
                parent_id: Some(parent_id),
                flags,
                tracestate: headers
                    .get(TRACESTATE)
                    .filter(|v| v.len() <= MAX_TRACESTATE)
                    .cloned(),
            },
            None => Self {
                trace_id: nonzero_id::<16>(),
                span_id,
                parent_id: None,
                flags: u8::from(recording),
                tracestate: None,
            },
        }
    }

    /// The trace id in lowercase hex.
    pub fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id)
    }

    /// The `traceparent` for the backend: this hop is the parent.
    pub fn traceparent(&self) -> HeaderValue {
        let value = format!(
            "00-{}-{}-{:02x}",
            hex::encode(self.trace_id),
            hex::encode(self.span_id),
            self.flags
        );
        // Hex digits and dashes are always a valid header value.
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// Adds `traceparent` (and `tracestate`) to an upstream request.
    pub fn inject(&self, headers: &mut HeaderMap) {
        headers.insert(TRACEPARENT, self.traceparent());
        if let Some(state) = &self.tracestate {
            headers.insert(TRACESTATE, state.clone());
        }
    }
}

/// `00-<32 hex>-<16 hex>-<2 hex>` with non-zero ids; later versions are read
/// by their first four fields, as the spec asks.
fn parse_traceparent(s: &str) -> Option<([u8; 16], [u8; 8], u8)> {
    let s = s.trim();
    let mut parts = s.split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let parent = parts.next()?;
    let flags = parts.next()?;
    if version.len() != 2 || version == "ff" || !is_lower_hex(version) {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    if trace.len() != 32 || parent.len() != 16 || flags.len() != 2 {
        return None;
    }
    if !is_lower_hex(trace) || !is_lower_hex(parent) || !is_lower_hex(flags) {
        return None;
    }
    let mut trace_id = [0u8; 16];
    hex::decode_to_slice(trace, &mut trace_id).ok()?;
    let mut parent_id = [0u8; 8];
    hex::decode_to_slice(parent, &mut parent_id).ok()?;
    if trace_id == [0; 16] || parent_id == [0; 8] {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some((trace_id, parent_id, flags))
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn nonzero_id<const N: usize>() -> [u8; N] {
    loop {
        let mut id = [0u8; N];
        for b in &mut id {
            *b = fastrand::u8(..);
        }
        if id != [0; N] {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn continues_the_clients_trace_with_a_new_span() {
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ctx = TraceContext::from_headers(
            &headers(&[
                ("traceparent", incoming),
                ("tracestate", "congo=t61rcWkgMzE"),
            ]),
            false,
        );
        assert_eq!(ctx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let out = ctx.traceparent();
        let out = out.to_str().unwrap();
        assert!(out.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(out.ends_with("-01"));
        assert_ne!(&out[36..52], "00f067aa0ba902b7", "a new span id");
        let mut up = HeaderMap::new();
        ctx.inject(&mut up);
        assert_eq!(up["tracestate"], "congo=t61rcWkgMzE");
    }

    #[test]
    fn invalid_or_missing_traceparent_starts_a_trace() {
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "garbage",
        ] {
            let ctx = TraceContext::from_headers(
                &headers(&[("traceparent", bad), ("tracestate", "a=b")]),
                false,
            );
            assert_ne!(
                ctx.trace_id_hex(),
                "4bf92f3577b34da6a3ce929d0e0e4736",
                "{bad}"
            );
            assert!(ctx.tracestate.is_none());
            assert_eq!(ctx.flags, 0);
            // With no spans recorded, nothing to continue is no trace.
            let h = headers(&[("traceparent", bad), ("tracestate", "a=b")]);
            assert!(TraceContext::of_request(&h, false).is_none(), "{bad}");
            assert!(TraceContext::of_request(&h, true).is_some(), "{bad}");
        }
        assert!(TraceContext::of_request(&HeaderMap::new(), false).is_none());
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ctx = TraceContext::of_request(&headers(&[("traceparent", valid)]), false).unwrap();
        assert_eq!(ctx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        // When the gateway records spans, a new trace is sampled.
        let ctx = TraceContext::from_headers(&HeaderMap::new(), true);
        assert_eq!(ctx.flags, 1);
        assert!(ctx.traceparent().to_str().unwrap().ends_with("-01"));
        // A later version with extra fields is read by its first four.
        let ctx = TraceContext::from_headers(
            &headers(&[(
                "traceparent",
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more",
            )]),
            false,
        );
        assert_eq!(ctx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }
}
