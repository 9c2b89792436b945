//! The shadow diff log (`[shadow] diff_log`): one JSON line ([`DiffLine`])
//! per sampled shadow comparison, whatever its outcome, appended to a file
//! for `infergate shadow-report`.
//!
//! Off every path that waits: the shadow call's task builds its line and
//! hands it over with `try_send` on a bounded queue; a full queue drops the
//! line, counts it (`infergate_shadow_log_dropped_total`) and says so in
//! the log at most once every [`WARN_EVERY`]. One writer thread per file
//! collects lines for at most [`FLUSH_EVERY`] (or [`FLUSH_AT`] bytes) and
//! writes them in one `write(2)`, so file I/O never runs on a worker's
//! runtime. When the last handle goes (the gateway replaced, the process
//! stopping), the thread writes what is queued and ends; `infergate
//! serve` waits for it ([`finish`]) before it exits.
//!
//! A reload that applies keeps the writer while the path is the same and
//! opens the path again (creating it), so that a file logrotate moved away
//! is replaced on the SIGHUP its `postrotate` sends; another path gets a
//! writer of its own. The core hands each shadowed request's facts over
//! ([`Picked::logged`], [`Picked::answered_by`]); `Call::run` writes.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use http::StatusCode;

use super::compare::{Comparison, Verdict};
use super::line::{millis, Answer, DiffLine, Outcome};
use super::Picked;
use crate::backend::{Backend, UpstreamRequest};
use crate::config::ShadowSettings;
use crate::metrics::ShadowLogSeries;

/// Longest a line waits in the writer before it is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// A batch this large is written at once.
pub const FLUSH_AT: usize = 64 * 1024;

/// Lines queued for the writer at most; past it lines are dropped.
pub const QUEUE: usize = 1024;

/// Dropped lines are logged at most this often.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// The gateway's diff log: its file's writer and which lines it takes.
#[derive(Debug)]
pub struct DiffLog {
    /// 0.0..=100.0 of the compared calls.
    percent: f64,
    answer_bytes: usize,
    writer: Arc<Writer>,
}

/// Why the diff log could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("shadow.diff_log: cannot open {}: {source}", path.display())]
pub struct OpenError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl DiffLog {
    /// The log `settings` ask for (`None` without `diff_log`): on
    /// `previous`'s writer when its path is the same, the path opened
    /// again; else on a new writer.
    pub async fn open(
        settings: &ShadowSettings,
        previous: Option<&DiffLog>,
        series: ShadowLogSeries,
    ) -> Result<Option<Arc<Self>>, OpenError> {
        let Some(config) = &settings.diff_log else {
            return Ok(None);
        };
        let fail = |source| OpenError {
            path: config.path.clone(),
            source,
        };
        let file = open_file(&config.path).await.map_err(fail)?;
        let writer = match previous.filter(|p| p.writer.path == config.path) {
            Some(p) => {
                // On a thread for blocking work: the writer may be in a
                // slow write(2) holding the file, and the old one closes.
                let writer = Arc::clone(&p.writer);
                let same = Arc::clone(&writer);
                tokio::task::spawn_blocking(move || same.replace_file(file))
                    .await
                    .map_err(|e| fail(std::io::Error::other(e)))?;
                writer
            }
            None => Arc::new(Writer::start(config.path.clone(), file, series).map_err(fail)?),
        };
        Ok(Some(Arc::new(Self {
            percent: config.percent,
            answer_bytes: config.answer_bytes,
            writer,
        })))
    }

    pub fn path(&self) -> &Path {
        &self.writer.path
    }

    /// Whether this call's line is written: `percent` of them, at random.
    fn sampled(&self) -> bool {
        self.percent >= 100.0 || (self.percent > 0.0 && fastrand::f64() * 100.0 < self.percent)
    }
}

/// `path` opened to append (created, `0640` on Unix), on a thread for
/// blocking work: a slow file system stalls no worker.
async fn open_file(path: &Path) -> std::io::Result<File> {
    let path = path.to_owned();
    let opened = tokio::task::spawn_blocking(move || {
        if std::fs::metadata(&path).is_ok_and(|m| !m.is_file()) {
            return Err(std::io::Error::other("not a regular file"));
        }
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o640);
        options.open(&path)
    });
    opened.await.map_err(std::io::Error::other)?
}

// === the writer ===

/// One file's writer thread and the queue to it.
#[derive(Debug)]
struct Writer {
    path: PathBuf,
    /// Swapped by a reload that opens the path again.
    file: Arc<Mutex<File>>,
    lines: SyncSender<Vec<u8>>,
    series: ShadowLogSeries,
    /// Lines dropped since the last warning, and the window (of
    /// [`WARN_EVERY`] since `epoch`) it was logged in.
    dropped: AtomicU64,
    warned_at: AtomicU64,
    epoch: Instant,
}

/// The writer threads started, for [`finish`].
static THREADS: Mutex<Vec<JoinHandle<()>>> = Mutex::new(Vec::new());

impl Writer {
    /// The writer of `file`, on a thread of its own.
    fn start(path: PathBuf, file: File, series: ShadowLogSeries) -> std::io::Result<Self> {
        let (lines, queued) = mpsc::sync_channel(QUEUE);
        let writer = Self::new(path, file, lines, series);
        let target = Arc::clone(&writer.file);
        let shown = writer.path.display().to_string();
        let lost = writer.series.dropped.clone();
        let thread = std::thread::Builder::new()
            .name("infergate-diff-log".into())
            .spawn(move || write_batches(&queued, &target, &shown, &lost))?;
        let mut threads = THREADS.lock().unwrap_or_else(|p| p.into_inner());
        threads.retain(|t| !t.is_finished());
        threads.push(thread);
        Ok(writer)
    }

    fn new(path: PathBuf, file: File, lines: SyncSender<Vec<u8>>, series: ShadowLogSeries) -> Self {
        Self {
            path,
            file: Arc::new(Mutex::new(file)),
            lines,
            series,
            dropped: AtomicU64::new(0),
            warned_at: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn replace_file(&self, file: File) {
        *self.file.lock().unwrap_or_else(|p| p.into_inner()) = file;
    }

    /// Queues `line`, or drops and counts it when the queue is full.
    fn send(&self, line: Vec<u8>) {
        match self.lines.try_send(line) {
            Ok(()) => self.series.lines.inc(),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped(),
        }
    }

    /// Counts a dropped line, and logs the count unless this window of
    /// [`WARN_EVERY`] was logged already.
    fn dropped(&self) {
        self.series.dropped.inc();
        self.dropped.fetch_add(1, Ordering::Relaxed);
        let window = self.epoch.elapsed().as_secs() / WARN_EVERY.as_secs().max(1) + 1;
        if self.warned_at.swap(window, Ordering::Relaxed) != window {
            let since = self.dropped.swap(0, Ordering::Relaxed);
            tracing::warn!(
                dropped = since,
                file = %self.path.display(),
                "shadow diff log: lines dropped, its writer is behind (infergate_shadow_log_dropped_total)"
            );
        }
    }
}

/// The writer thread: batches of lines, each written whole, until every
/// sender is gone and the queue is empty; the lines of a batch that could
/// not be written are counted in `lost` (`infergate_shadow_log_dropped_total`).
fn write_batches(
    queued: &Receiver<Vec<u8>>,
    file: &Mutex<File>,
    shown: &str,
    lost: &prometheus::IntCounter,
) {
    let mut batch = Vec::with_capacity(FLUSH_AT);
    let mut failed_at: Option<Instant> = None;
    while let Ok(first) = queued.recv() {
        batch.extend_from_slice(&first);
        let due = Instant::now() + FLUSH_EVERY;
        let mut open = true;
        while open && batch.len() < FLUSH_AT {
            match queued.recv_timeout(due.saturating_duration_since(Instant::now())) {
                Ok(line) => batch.extend_from_slice(&line),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
        }
        let written = file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write_all(&batch);
        if let Err(e) = written {
            let lines = batch.iter().filter(|b| **b == b'\n').count();
            lost.inc_by(u64::try_from(lines).unwrap_or(u64::MAX));
            if failed_at.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                tracing::error!(file = shown, error = %e, "shadow diff log: a write failed; its lines are lost");
                failed_at = Some(Instant::now());
            }
        }
        batch.clear();
    }
}

/// Waits, at most `within`, for every writer whose handles are all gone
/// to write what it holds; `infergate serve` calls it last.
pub fn finish(within: Duration) {
    let threads = std::mem::take(&mut *THREADS.lock().unwrap_or_else(|p| p.into_inner()));
    let deadline = Instant::now() + within;
    for thread in threads {
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
    }
}

// === what a line needs ===

/// What a shadowed request's lines need, gathered by the core as the
/// request goes.
#[derive(Debug)]
pub(super) struct Pending {
    log: Arc<DiffLog>,
    route: String,
    primary: Option<String>,
    /// Just before the dispatch.
    sent: tokio::time::Instant,
}

impl Picked {
    /// These shadow calls' lines go to `log`, if there is one; the
    /// primary's time starts now.
    pub fn logged(mut self, log: Option<&Arc<DiffLog>>, route: &str) -> Self {
        self.log = log.map(|log| Pending {
            log: Arc::clone(log),
            route: route.to_owned(),
            primary: None,
            sent: tokio::time::Instant::now(),
        });
        self
    }

    /// The primary's answer came from `backend`.
    pub fn answered_by(mut self, backend: Option<&Arc<Backend>>) -> Self {
        if let Some(pending) = &mut self.log {
            pending.primary = backend.map(|b| b.name.clone());
        }
        self
    }
}

impl Pending {
    /// The primary's body is whole: what every shadow call's line shares.
    pub(super) fn primary_done(self, threshold: f64, timeout: Duration) -> CallLog {
        CallLog {
            primary_ms: millis(self.sent.elapsed()),
            log: self.log,
            route: self.route,
            primary: self.primary,
            threshold,
            timeout,
        }
    }
}

/// The part of a line the shadow calls of one request share.
#[derive(Debug)]
pub(super) struct CallLog {
    log: Arc<DiffLog>,
    route: String,
    primary: Option<String>,
    primary_ms: f64,
    /// The route's cosine threshold and shadow timeout, for the words.
    threshold: f64,
    timeout: Duration,
}

/// What the shadow gave.
#[derive(Debug)]
pub(super) enum Shadowed<'a> {
    Answered {
        status: StatusCode,
        body: &'a [u8],
        comparison: &'a Comparison,
    },
    /// It failed (with this status, when it answered one), or its answer
    /// could not be read whole.
    Failed {
        status: Option<u16>,
    },
    TimedOut,
}

/// One shadow call as its line tells it.
#[derive(Debug)]
pub(super) struct Seen<'a> {
    pub(super) shadow: &'a str,
    pub(super) request: &'a UpstreamRequest,
    pub(super) primary: (StatusCode, &'a [u8]),
    pub(super) took: Duration,
    pub(super) shadowed: Shadowed<'a>,
}

impl CallLog {
    /// Queues `seen`'s line when the call is sampled for the log.
    pub(super) fn write(&self, seen: &Seen<'_>) {
        if !self.log.sampled() {
            return;
        }
        let Ok(mut bytes) = serde_json::to_vec(&self.line(seen)) else {
            return;
        };
        bytes.push(b'\n');
        self.log.writer.send(bytes);
    }

    fn line(&self, seen: &Seen<'_>) -> DiffLine {
        let (primary_status, primary_body) = seen.primary;
        let side = self.shadow_side(seen);
        DiffLine {
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            route: self.route.clone(),
            shadow: seen.shadow.to_owned(),
            primary: self.primary.clone(),
            request_id: String::from_utf8_lossy(seen.request.request_id.as_bytes()).into_owned(),
            operation: seen.request.op.as_str().to_owned(),
            outcome: side.outcome,
            primary_status: primary_status.as_u16(),
            shadow_status: side.status,
            primary_ms: self.primary_ms,
            shadow_ms: millis(seen.took),
            similarity: side.similarity,
            difference: side.difference,
            primary_answer: Answer::cut(primary_body, self.log.answer_bytes),
            shadow_answer: side.answer,
        }
    }

    /// What the line says of the shadow's answer, or of its having none.
    fn shadow_side(&self, seen: &Seen<'_>) -> ShadowSide {
        let none = |why: String, status: Option<u16>| ShadowSide {
            outcome: Outcome::ShadowError,
            status,
            similarity: None,
            difference: Some(why),
            answer: None,
        };
        match &seen.shadowed {
            Shadowed::Answered {
                status,
                body,
                comparison,
            } => ShadowSide {
                outcome: match comparison.verdict {
                    Verdict::Match => Outcome::Match,
                    Verdict::Differ => Outcome::Differ,
                },
                status: Some(status.as_u16()),
                similarity: comparison.similarity,
                difference: comparison
                    .difference
                    .map(|d| super::difference::describe(&d, seen.primary.1, body, self.threshold)),
                answer: Some(Answer::cut(body, self.log.answer_bytes)),
            },
            Shadowed::Failed {
                status: Some(status),
            } => none(
                format!("no answer: the shadow failed with status {status}"),
                Some(*status),
            ),
            Shadowed::Failed { status: None } => none(
                "no answer: the call failed or its answer could not be read".to_owned(),
                None,
            ),
            Shadowed::TimedOut => none(
                format!(
                    "no answer within {}",
                    humantime::format_duration(self.timeout)
                ),
                None,
            ),
        }
    }
}

/// The shadow's half of a line.
struct ShadowSide {
    outcome: Outcome,
    status: Option<u16>,
    similarity: Option<f64>,
    difference: Option<String>,
    answer: Option<Answer>,
}

#[cfg(test)]
#[path = "diff_log_tests.rs"]
mod tests;
