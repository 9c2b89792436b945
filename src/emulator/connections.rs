//! What an emulator saw of its connections, beside the per-request
//! [`Counters`](super::Counters): how many were accepted, and in HTTPS mode
//! how many handshakes succeeded or failed and what each negotiated. A test
//! reads it to see that a client really spoke TLS, which SNI and ALPN it
//! sent, and how many times it tried when it refused the certificate (a
//! refused handshake never becomes a request, so the counters cannot see it).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// How many handshakes [`Connections::sessions`] keeps.
pub const SESSIONS_CAPACITY: usize = 64;

/// One TLS handshake that succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSession {
    /// The SNI host name the client sent (none for an IP-address URL).
    pub server_name: Option<String>,
    /// The protocol ALPN agreed on (`h2`, `http/1.1`), if any.
    pub alpn: Option<String>,
}

/// Connection-level observations, readable at any time by tests.
#[derive(Debug, Default)]
pub struct Connections {
    accepted: AtomicU64,
    handshakes: AtomicU64,
    handshake_failures: AtomicU64,
    sessions: Mutex<VecDeque<TlsSession>>,
    last_failure: Mutex<Option<String>>,
}

impl Connections {
    /// TCP connections accepted, plain or TLS, whatever became of them.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// TLS handshakes completed.
    pub fn handshakes(&self) -> u64 {
        self.handshakes.load(Ordering::SeqCst)
    }

    /// TLS handshakes that failed: the client refused the certificate, spoke
    /// plain HTTP, or went away mid-handshake.
    pub fn handshake_failures(&self) -> u64 {
        self.handshake_failures.load(Ordering::SeqCst)
    }

    /// The last [`SESSIONS_CAPACITY`] completed handshakes, oldest first.
    pub fn sessions(&self) -> Vec<TlsSession> {
        lock(&self.sessions).iter().cloned().collect()
    }

    /// The server's side of the last failed handshake (e.g. the alert the
    /// client sent).
    pub fn last_failure(&self) -> Option<String> {
        lock(&self.last_failure).clone()
    }

    /// Zeroes the counts and clears the logs.
    pub fn reset(&self) {
        for c in [&self.accepted, &self.handshakes, &self.handshake_failures] {
            c.store(0, Ordering::SeqCst);
        }
        lock(&self.sessions).clear();
        *lock(&self.last_failure) = None;
    }

    pub(crate) fn accept(&self) {
        self.accepted.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn handshake(&self, session: TlsSession) {
        {
            let mut log = lock(&self.sessions);
            if log.len() >= SESSIONS_CAPACITY {
                log.pop_front();
            }
            log.push_back(session);
        }
        // Counted after the log is written, so a test that waits on the
        // count finds the session there.
        self.handshakes.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn handshake_failed(&self, why: String) {
        *lock(&self.last_failure) = Some(why);
        self.handshake_failures.fetch_add(1, Ordering::SeqCst);
    }
}

// A poisoned log is still a valid log; never panic over it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
