//! Sticky sessions: a request carrying `X-Amzn-SageMaker-Session-Id` goes to
//! the backend that opened that session.
//!
//! SageMaker stateful sessions live in one model container: the answer to a
//! `NEW_SESSION` request names the session in
//! `X-Amzn-SageMaker-New-Session-Id: <id>; Expires=<time>`, and later
//! requests must reach the same endpoint. Each route remembers which of its
//! backends opened which session until it expires or is closed
//! (`X-Amzn-SageMaker-Closed-Session-Id`). The table is bounded: past its
//! capacity, expired entries are dropped first, then the oldest.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_smithy_types::date_time::Format;
use aws_smithy_types::DateTime;

/// The value a client sends to open a session.
pub const NEW_SESSION: &str = "NEW_SESSION";

/// How long a session is remembered when its answer gave no expiry.
const DEFAULT_TTL: Duration = Duration::from_secs(20 * 60);

/// Most sessions remembered per route.
const CAPACITY: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    backend: usize,
    expires: SystemTime,
}

/// Session id → index of the backend in the route's pool.
#[derive(Debug, Default)]
pub struct SessionTable {
    entries: Mutex<HashMap<String, Entry>>,
}

impl SessionTable {
    /// The backend that opened `session`, if it is known and not expired.
    pub fn lookup(&self, session: &str, now: SystemTime) -> Option<usize> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(session)
            .filter(|e| e.expires > now)
            .map(|e| e.backend)
    }

    /// Records the session a backend's answer opened, from the value of
    /// `X-Amzn-SageMaker-New-Session-Id`.
    pub fn opened(&self, header: &str, backend: usize, now: SystemTime) {
        let Some((id, expires)) = parse_new_session(header) else {
            return;
        };
        let expires = expires.unwrap_or(now + DEFAULT_TTL);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CAPACITY {
            entries.retain(|_, e| e.expires > now);
            if entries.len() >= CAPACITY {
                if let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.expires)
                    .map(|(k, _)| k.clone())
                {
                    entries.remove(&oldest);
                }
            }
        }
        entries.insert(id.to_string(), Entry { backend, expires });
    }

    /// Forgets a session the backend closed.
    pub fn closed(&self, session: &str) {
        let id = session.split(';').next().unwrap_or_default().trim();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(id);
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `<id>; Expires=2026-11-27T10:00:00Z` → the id and the expiry.
fn parse_new_session(header: &str) -> Option<(&str, Option<SystemTime>)> {
    let mut parts = header.split(';');
    let id = parts.next()?.trim();
    if id.is_empty() {
        return None;
    }
    let expires = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("expires") {
            return None;
        }
        let dt = DateTime::from_str(v.trim(), Format::DateTime).ok()?;
        SystemTime::try_from(dt).ok()
    });
    Some((id, expires))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_new_session_header() {
        let (id, exp) = parse_new_session("sess-1; Expires=2026-11-27T10:00:00Z").unwrap();
        assert_eq!(id, "sess-1");
        let want = SystemTime::try_from(DateTime::from_secs(1_795_773_600)).unwrap();
        assert_eq!(exp, Some(want));
        assert_eq!(parse_new_session("sess-2").unwrap(), ("sess-2", None));
        assert!(parse_new_session(" ; Expires=x").is_none());
    }

    #[test]
    fn remembers_until_expiry_or_close() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let table = SessionTable::default();
        table.opened("a", 1, t);
        assert_eq!(table.lookup("a", t), Some(1));
        assert_eq!(table.lookup("a", t + DEFAULT_TTL), None, "expired");
        table.closed("a");
        assert_eq!(table.lookup("a", t), None);
        assert!(table.is_empty());
    }
}
