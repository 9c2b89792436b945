//! `Cache-Control` as the cache reads it: a request's (does it bypass the
//! cache?) and an answer's (may it be stored, and for whom?). Each reading
//! is one pass over the header's values, and a lookup of the header alone
//! when there is none, as on most answers.

use http::{header, HeaderMap};

/// The directives that matter here, from every `Cache-Control` value.
#[derive(Debug, Default, Clone, Copy)]
struct Directives {
    no_store: bool,
    no_cache: bool,
    private: bool,
    max_age_zero: bool,
    s_maxage_zero: bool,
}

impl Directives {
    /// Read by name, in any case, with or without a value (`private="x"`
    /// counts); `max-age` and `s-maxage` by their value, quoted or not.
    fn of(headers: &HeaderMap) -> Self {
        let mut d = Self::default();
        let values = headers.get_all(header::CACHE_CONTROL);
        for directive in values
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
        {
            let (name, value) = match directive.split_once('=') {
                Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
                None => (directive.trim(), None),
            };
            let is = |want: &str| name.eq_ignore_ascii_case(want);
            if is("no-store") {
                d.no_store = true;
            } else if is("no-cache") {
                d.no_cache = true;
            } else if is("private") {
                d.private = true;
            } else if is("max-age") {
                d.max_age_zero |= value == Some("0");
            } else if is("s-maxage") {
                d.s_maxage_zero |= value == Some("0");
            }
        }
        d
    }

    /// Not to be served again without asking the backend, which a gateway
    /// cache does not do: `no-cache`, `max-age=0` or `s-maxage=0`.
    fn must_revalidate(self) -> bool {
        self.no_cache || self.max_age_zero || self.s_maxage_zero
    }

    /// Never to be kept: `no-store`, or on a whole answer (not a `stream`,
    /// whose `no-cache` is the event stream's own convention) one to
    /// revalidate.
    fn never(self, stream: bool) -> bool {
        self.no_store || (!stream && self.must_revalidate())
    }
}

/// Whether a request's headers ask not to be served from (or stored in) a
/// cache: `Cache-Control: no-cache`, `no-store` or `max-age=0` (what a
/// browser's reload sends), or `Pragma: no-cache`.
pub fn bypass_requested(headers: &HeaderMap) -> bool {
    let d = Directives::of(headers);
    let pragma = headers
        .get_all(header::PRAGMA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("no-cache"));
    d.no_cache || d.no_store || d.max_age_zero || pragma
}

/// Whether an answer's headers restrict storing it: `Cache-Control:
/// no-store` (never), `private` (for its one client only), or, on a whole
/// answer (not a `stream`), `no-cache`, `max-age=0` or `s-maxage=0`.
pub fn refuses_storing(headers: &HeaderMap, stream: bool) -> bool {
    let d = Directives::of(headers);
    d.never(stream) || d.private
}

/// Whether an answer with `headers` (a stream's, or a whole one) may be
/// kept in a cache whose entries are `shared` between callers or not:
/// never when it [`refuses_storing`], but for `private`, which only a
/// caller's own entries may keep. (A `Set-Cookie` does not forbid it: the
/// cookie is the gateway's, never passed on.)
pub fn may_store(headers: &HeaderMap, stream: bool, shared: bool) -> bool {
    let d = Directives::of(headers);
    !(d.never(stream) || (shared && d.private))
}
