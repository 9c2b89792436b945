//! The access log's writer: one pre-formatted line per request into a
//! buffer of the worker thread's own, written to stderr in batches.
//!
//! [`crate::layers::access`] hands a [`Record`] to [`write`] when a
//! response ends. The line is formatted here ([`format`]: the same bytes
//! tracing-subscriber writes for the event, text or JSON) instead of going
//! through the global subscriber, whose formatting and one `write(2)` per
//! line under the stderr lock the workers share cost about 10 µs a request.
//!
//! Batches: a worker (`crate::server`) holds a [`Batching`] while it
//! serves. On its thread, lines collect in a thread-local buffer that is
//! written in one `write(2)` every [`FLUSH_EVERY`] (a task on the worker's
//! runtime), at once when it passes [`FLUSH_AT`] bytes (so nothing is ever
//! dropped), and when the `Batching` ends (the worker stops) or the thread
//! exits. A thread without one (a multi-threaded runtime, as the demo's,
//! where a task may move between threads) writes each line at once.
//!
//! What is logged is decided once, by [`init`] (from
//! `crate::commands::Logging::init`): the format, and whether the filter
//! lets `infergate::access` INFO events through. Without `init` (the
//! library embedded, as in the tests), each line is the tracing event it
//! always was, for whatever subscriber there is.

use std::cell::RefCell;
use std::io::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::task::JoinHandle;

mod format;

/// The target of access lines, for filters (`RUST_LOG=infergate::access=off`).
pub const TARGET: &str = "infergate::access";

/// Longest a batched line waits before it is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// A batch this large is written at once, by the request that filled it.
pub const FLUSH_AT: usize = 64 * 1024;

/// The log format, as `--log-format` chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// `Some(format)` when access lines are on, `None` when the filter turns
/// them off; unset until [`init`].
static LINES: OnceLock<Option<Format>> = OnceLock::new();

/// Decides, once, how access lines are written: in `format`, if the global
/// subscriber (installed just before) enables `infergate::access` at INFO.
/// A later call changes nothing.
pub fn init(format: Format) {
    let on = tracing::enabled!(target: TARGET, tracing::Level::INFO);
    let _ = LINES.set(on.then_some(format));
}

/// One request's access-log fields, in the line's order.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub request_id: &'a str,
    pub trace_id: Option<&'a [u8; 16]>,
    pub route: &'a str,
    pub backend: Option<&'a str>,
    /// The calling client's config name, when keys are required.
    pub client: Option<&'a str>,
    pub status: u16,
    pub attempts: u32,
    pub stream: bool,
    pub head_us: u64,
    pub total_us: u64,
    pub upstream_us: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The body ended normally.
    pub complete: bool,
}

impl Record<'_> {
    /// The line as a tracing event: without [`init`], and in the tests
    /// that hold the formatter to the subscriber's output.
    fn emit_event(&self) {
        let trace_id = self.trace_id.map(hex::encode);
        tracing::info!(
            target: TARGET,
            request_id = %self.request_id,
            trace_id = trace_id.as_deref().unwrap_or_default(),
            route = self.route,
            backend = self.backend,
            client = self.client,
            status = self.status,
            attempts = self.attempts,
            stream = self.stream,
            head_us = self.head_us,
            total_us = self.total_us,
            upstream_us = self.upstream_us,
            bytes_in = self.bytes_in,
            bytes_out = self.bytes_out,
            complete = self.complete,
            "request"
        );
    }
}

/// Logs `record`: into this thread's batch, at once, as a tracing event or
/// not at all, as [`init`] decided.
pub fn write(record: &Record<'_>) {
    match LINES.get() {
        None => record.emit_event(),
        Some(None) => {}
        Some(Some(format)) => {
            let now = SystemTime::now();
            let buffered = BUFFER.try_with(|buffer| {
                let mut buffer = buffer.borrow_mut();
                format::line(&mut buffer.bytes, *format, now, record);
                if buffer.batching == 0 || buffer.bytes.len() >= FLUSH_AT {
                    buffer.flush();
                }
            });
            // The thread is exiting and its buffer is gone: write alone.
            if buffered.is_err() {
                let mut line = Vec::with_capacity(512);
                format::line(&mut line, *format, now, record);
                write_stderr(&line);
            }
        }
    }
}

/// Writes this thread's batch now.
pub fn flush() {
    let _ = BUFFER.try_with(|buffer| buffer.borrow_mut().flush());
}

thread_local! {
    static BUFFER: RefCell<Buffer> = const {
        RefCell::new(Buffer {
            bytes: Vec::new(),
            batching: 0,
        })
    };
}

/// A thread's lines not yet written.
struct Buffer {
    bytes: Vec<u8>,
    /// The [`Batching`]s alive on this thread (several gateways may share
    /// one in tests); at 0 each line is written at once.
    batching: usize,
}

impl Buffer {
    fn flush(&mut self) {
        if !self.bytes.is_empty() {
            write_stderr(&self.bytes);
            self.bytes.clear();
        }
    }
}

impl Drop for Buffer {
    /// The thread exits: whatever is left goes out.
    fn drop(&mut self) {
        self.flush();
    }
}

/// One write of whole lines, under the stderr lock so that no other log
/// line lands inside them. A failed write (stderr closed) loses the batch,
/// as it loses every other log line.
fn write_stderr(bytes: &[u8]) {
    let _ = std::io::stderr().lock().write_all(bytes);
}

/// While held, this thread's access lines are batched, and a task on its
/// runtime writes them every [`FLUSH_EVERY`]; dropping it writes the rest.
/// Inert unless access lines are on ([`init`]) and the caller runs on a
/// current-thread runtime (whose tasks never leave its thread).
#[derive(Debug)]
#[must_use = "lines are batched only while the guard lives"]
pub struct Batching {
    flusher: Option<JoinHandle<()>>,
}

impl Batching {
    pub fn start() -> Self {
        let inert = Self { flusher: None };
        if !matches!(LINES.get(), Some(Some(_))) {
            return inert;
        }
        let Ok(runtime) = Handle::try_current() else {
            return inert;
        };
        if runtime.runtime_flavor() != RuntimeFlavor::CurrentThread {
            return inert;
        }
        if BUFFER
            .try_with(|buffer| buffer.borrow_mut().batching += 1)
            .is_err()
        {
            return inert;
        }
        let flusher = runtime.spawn(async {
            let mut every = tokio::time::interval(FLUSH_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                flush();
            }
        });
        Self {
            flusher: Some(flusher),
        }
    }
}

impl Drop for Batching {
    fn drop(&mut self) {
        if let Some(flusher) = self.flusher.take() {
            flusher.abort();
            let _ = BUFFER.try_with(|buffer| {
                let mut buffer = buffer.borrow_mut();
                buffer.batching = buffer.batching.saturating_sub(1);
                buffer.flush();
            });
        }
    }
}
