//! Faithful local stand-ins for the two backends infergate fronts: the
//! SageMaker runtime ([`sagemaker`]) and a Hugging Face Inference Endpoint
//! ([`huggingface`]). The integration tests, the benchmarks and
//! `infergate demo` run them in-process; `infergate emulate …` ([`cli`]) runs
//! them on their own so users can develop offline.
//!
//! Each emulates the model server its endpoint runs, as real endpoints do:
//! on SageMaker, [`ModelFormat`] picks TGI (generate, chat and text
//! completions; SSE streams), DJL serving's LMI (generate objects, chat with
//! `chatcmpl-` ids; JSON-lines streams; 424 validation errors),
//! text-embeddings-inference (TEI: `[[f32]]` embeddings, no streams) or the
//! legacy JumpStart text2text; on Hugging Face, [`HuggingFaceContainer`] picks
//! TGI (its routes, OpenAI's included) or TEI (`/embed`, `/v1/embeddings`,
//! `/info`). A container's refusal of bad input comes back in the service's
//! shape (SageMaker: a ModelError wrapping the container's status and body).
//!
//! Both share the serve loop (`serve.rs`: hyper 1, HTTP/1.1 + h2c, or HTTPS
//! with ALPN when given [`TlsOptions`] ([`tls`]); injected connection resets,
//! graceful shutdown), the fault layer ([`faults`]), the fake model
//! ([`model`]: reversed words, hashed-word embeddings, and every server's
//! wire shapes; same input, same answer on both), and what a test observes:
//! [`Counters`] and the log of recent requests (each with its HTTP version
//! and TLS server name), and [`Connections`] (accepted connections, TLS
//! handshakes and what they negotiated), reached through the
//! [`EmulatorHandle`] that `start` returns. Signatures are checked by
//! [`crate::protocol::sigv4_verify`], which never shares code with the gateway's signer.
//!
//! Control routes, answered by both emulators and never authenticated,
//! counted or faulted:
//! `GET /_emulator/counters` (JSON), `POST /_emulator/counters/reset`,
//! `GET|PUT /_emulator/faults` (a JSON [`FaultConfig`]; durations as humantime
//! strings or milliseconds; a PUT replaces the whole config),
//! `POST /_emulator/scale-to-zero`, `GET /_emulator/requests` (recent requests).

pub mod cli;
mod connections;
mod eventstream;
pub mod faults;
pub mod huggingface;
pub mod model;
pub mod sagemaker;
mod serve;
pub mod tls;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use http::{HeaderMap, Method, Version};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use crate::protocol::sigv4_verify::Credential;
pub use connections::{Connections, TlsSession, SESSIONS_CAPACITY};
pub use faults::{FaultConfig, Faults, InjectedError, ScaleState, StreamError};
pub use huggingface::{HuggingFaceContainer, HuggingFaceOptions};
pub use sagemaker::{ModelFormat, SageMakerOptions};
pub use tls::{Alpn, TlsOptions};

/// How many requests [`Counters::recent`] keeps.
pub const RECENT_CAPACITY: usize = 64;

/// One request as the emulator received it (control routes excluded).
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    /// Empty when the body was over the emulator's size limit.
    pub body: Bytes,
    /// `HTTP_11` or `HTTP_2` (on TLS, what ALPN chose).
    pub version: Version,
    /// The SNI host name of the request's TLS connection; `None` on plain
    /// HTTP or when the client sent none (an IP-address URL).
    pub server_name: Option<String>,
}

/// What an emulator has seen, readable at any time by tests.
///
/// Every request except the `/_emulator/*` control routes counts in
/// `requests` and `recent`. `in_flight` is a gauge: from the moment a request
/// arrives until its response body has been fully handed to the connection
/// (or dropped). `cancelled` counts requests whose client went away before
/// that; an injected reset is counted in `resets_injected` only.
#[derive(Debug, Default)]
pub struct Counters {
    requests: AtomicU64,
    auth_rejections: AtomicU64,
    errors_injected: AtomicU64,
    resets_injected: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    cancelled: AtomicU64,
    stream_requests: AtomicU64,
    recent: Mutex<VecDeque<RecordedRequest>>,
}

/// A point-in-time copy of the counters (the JSON of `GET /_emulator/counters`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CounterSnapshot {
    pub requests: u64,
    pub auth_rejections: u64,
    pub errors_injected: u64,
    pub resets_injected: u64,
    pub in_flight: u64,
    pub max_in_flight: u64,
    pub cancelled: u64,
    pub stream_requests: u64,
}

impl Counters {
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
    pub fn auth_rejections(&self) -> u64 {
        self.auth_rejections.load(Ordering::SeqCst)
    }
    pub fn errors_injected(&self) -> u64 {
        self.errors_injected.load(Ordering::SeqCst)
    }
    pub fn resets_injected(&self) -> u64 {
        self.resets_injected.load(Ordering::SeqCst)
    }
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::SeqCst)
    }
    pub fn max_in_flight(&self) -> u64 {
        self.max_in_flight.load(Ordering::SeqCst)
    }
    pub fn cancelled(&self) -> u64 {
        self.cancelled.load(Ordering::SeqCst)
    }
    pub fn stream_requests(&self) -> u64 {
        self.stream_requests.load(Ordering::SeqCst)
    }

    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            requests: self.requests(),
            auth_rejections: self.auth_rejections(),
            errors_injected: self.errors_injected(),
            resets_injected: self.resets_injected(),
            in_flight: self.in_flight(),
            max_in_flight: self.max_in_flight(),
            cancelled: self.cancelled(),
            stream_requests: self.stream_requests(),
        }
    }

    /// The last [`RECENT_CAPACITY`] requests, oldest first.
    pub fn recent(&self) -> Vec<RecordedRequest> {
        self.recent_log().iter().cloned().collect()
    }

    /// The most recent request.
    pub fn last(&self) -> Option<RecordedRequest> {
        self.recent_log().back().cloned()
    }

    /// Zeroes every counter and clears the log. `in_flight` is a gauge of
    /// requests still running, so it is kept, and `max_in_flight` restarts
    /// from it.
    pub fn reset(&self) {
        for c in [
            &self.requests,
            &self.auth_rejections,
            &self.errors_injected,
            &self.resets_injected,
            &self.cancelled,
            &self.stream_requests,
        ] {
            c.store(0, Ordering::SeqCst);
        }
        self.max_in_flight.store(self.in_flight(), Ordering::SeqCst);
        self.recent_log().clear();
    }

    // A poisoned log is still a valid log; never panic over it.
    fn recent_log(&self) -> std::sync::MutexGuard<'_, VecDeque<RecordedRequest>> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn record(&self, req: RecordedRequest) {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let mut log = self.recent_log();
        if log.len() >= RECENT_CAPACITY {
            log.pop_front();
        }
        log.push_back(req);
    }

    pub(crate) fn auth_rejected(&self) {
        self.auth_rejections.fetch_add(1, Ordering::SeqCst);
    }
    pub(crate) fn error_injected(&self) {
        self.errors_injected.fetch_add(1, Ordering::SeqCst);
    }
    pub(crate) fn reset_injected(&self) {
        self.resets_injected.fetch_add(1, Ordering::SeqCst);
    }
    pub(crate) fn stream_started(&self) {
        self.stream_requests.fetch_add(1, Ordering::SeqCst);
    }
    pub(crate) fn enter(&self) {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
    }
    pub(crate) fn leave(&self, cancelled: bool) {
        // Saturating: never wrap the gauge, whatever the interleaving.
        let _ = self
            .in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                Some(v.saturating_sub(1))
            });
        if cancelled {
            self.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Who may call: SigV4 credentials (SageMaker) or a bearer token (Hugging
/// Face). Each emulator reads only its own kind; both can be changed while it
/// runs, e.g. to rotate short-lived credentials.
#[derive(Default)]
pub(crate) struct Auth {
    credentials: RwLock<Vec<(String, Credential)>>,
    token: RwLock<Option<String>>,
}

impl Auth {
    pub(crate) fn set_credentials(&self, creds: Vec<(String, Credential)>) {
        *self.credentials.write().unwrap_or_else(|p| p.into_inner()) = creds;
    }

    pub(crate) fn verifies_signatures(&self) -> bool {
        !self
            .credentials
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// The credential for this access key id, if known.
    pub(crate) fn credential(&self, access_key_id: &str) -> Option<Credential> {
        let creds = self.credentials.read().unwrap_or_else(|p| p.into_inner());
        creds
            .iter()
            .find(|(id, _)| id == access_key_id)
            .map(|(_, c)| c.clone())
    }

    pub(crate) fn set_token(&self, token: Option<String>) {
        *self.token.write().unwrap_or_else(|p| p.into_inner()) = token;
    }

    pub(crate) fn token(&self) -> Option<String> {
        self.token.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// State shared by the serve loop, the emulator and the handle.
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) counters: Counters,
    pub(crate) faults: Faults,
    pub(crate) auth: Auth,
    pub(crate) connections: Connections,
}

/// A running emulator. Dropping it stops the server at once (open connections
/// are cut); [`EmulatorHandle::shutdown`] lets in-flight requests finish first.
pub struct EmulatorHandle {
    addr: SocketAddr,
    tls: bool,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl EmulatorHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT` (`https://` in HTTPS mode), ready to be used as an
    /// endpoint URL. A client that must send SNI or check a host name needs
    /// the certificate's host name instead: [`EmulatorHandle::url_for`].
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme(), self.addr)
    }

    /// The URL with `host` (e.g. `localhost`) in place of the IP address.
    pub fn url_for(&self, host: &str) -> String {
        format!("{}://{host}:{}", self.scheme(), self.addr.port())
    }

    /// Whether it serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// Accepted connections and TLS handshakes.
    pub fn connections(&self) -> &Connections {
        &self.shared.connections
    }

    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// SageMaker emulator: replaces the accepted credentials (access key id,
    /// credential); an empty list turns signature verification off. A Hugging
    /// Face emulator ignores them.
    pub fn set_credentials(&self, credentials: Vec<(String, Credential)>) {
        self.shared.auth.set_credentials(credentials);
    }

    /// Hugging Face emulator: replaces the accepted bearer token (`None` makes
    /// the endpoint public). A SageMaker emulator ignores it.
    pub fn set_token(&self, token: Option<String>) {
        self.shared.auth.set_token(token);
    }

    /// Stops accepting, lets open requests finish (at most a few seconds, then
    /// cuts them), and waits for the server to stop.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl std::fmt::Debug for EmulatorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorHandle")
            .field("addr", &self.addr)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}
