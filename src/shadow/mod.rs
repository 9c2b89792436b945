//! Shadow traffic: a copy of a sampled share of a route's requests goes to
//! other backends, off the request path, and their answers are compared
//! with the primary's ([`compare`]) and only counted.
//!
//! The core ([`crate::core`]) samples each request per shadow
//! ([`RouteShadows::sample`]) before it dispatches, keeping a copy of the
//! [`UpstreamRequest`] when one was picked ([`Picked`]); once the primary
//! answered with success the shadow calls start when the client has the
//! primary's body whole ([`Picked::start`]: at once for a body the core
//! holds whole, else when a passed-through body's last byte went by,
//! [`Picked::consumer`], sharing the copy the response cache takes). A shadow call is one [`Backend::call`] with
//! the route's timeout, no retry, on the worker's upstream client: it does
//! not touch the route's retry budget, its rate limits, the client's
//! metrics or any backend's health, and the client never waits on it.
//! A token stream's calls start once its last event passed
//! ([`Picked::tap`], [`stream`]);
//! SageMaker session requests, primary failures (a stream cut or ended by
//! an error too) and cache hits are not shadowed.

pub mod compare;
pub mod diff_log;
mod difference;
pub mod line;
pub mod stream;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::backend::events::Events;
use crate::backend::{Backend, UpstreamBody, UpstreamRequest};
use crate::cache::record::Consumer;
use crate::metrics::ShadowSeries;
use crate::upstream::Client;

use compare::Verdict;
use diff_log::Shadowed;

/// The largest answer (the primary's or the shadow's) compared: a larger
/// one is not shadowed (the primary's) or counts as a shadow error.
pub const BODY_LIMIT: usize = 16 << 20;

/// Whether `req` may be shadowed at all: a request outside a SageMaker
/// stateful session (or opening one), whose answer is the session's state
/// on the primary's endpoint, which a shadow has not.
pub fn may_shadow(req: &UpstreamRequest) -> bool {
    crate::protocol::sagemaker::session_id(&req.sagemaker_headers).is_none()
}

/// A route's shadows, with the limit they share.
#[derive(Debug)]
pub struct RouteShadows {
    pub targets: Vec<Arc<Shadow>>,
    /// Shadow calls in flight, every shadow of the route together.
    in_flight: Arc<Semaphore>,
    /// Embeddings agree at or above it.
    threshold: f64,
    /// Each shadow call's deadline: the route's timeout.
    timeout: Duration,
}

/// One shadow of a route: its backend, its share and what it found so far.
#[derive(Debug)]
pub struct Shadow {
    pub backend: Arc<Backend>,
    /// 0.0..=100.0.
    pub percent: f64,
    series: ShadowSeries,
    counts: Counts,
}

/// The running outcome counts of one shadow, for `/v1/routes`.
#[derive(Debug, Default)]
struct Counts {
    matched: AtomicU64,
    differ: AtomicU64,
    shadow_error: AtomicU64,
    dropped: AtomicU64,
}

/// What a shadow found, as `/v1/routes` shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agreement {
    pub matched: u64,
    pub differ: u64,
    pub shadow_error: u64,
    pub dropped: u64,
}

impl Agreement {
    /// `match / (match + differ)`; `None` before any answer was compared.
    pub fn rate(&self) -> Option<f64> {
        let compared = self.matched + self.differ;
        (compared > 0).then(|| self.matched as f64 / compared as f64)
    }
}

/// How one shadow call ended.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Match,
    Differ,
    ShadowError,
    Dropped,
}

impl Shadow {
    pub fn new(backend: Arc<Backend>, percent: f64, series: ShadowSeries) -> Self {
        Self {
            backend,
            percent,
            series,
            counts: Counts::default(),
        }
    }

    pub fn agreement(&self) -> Agreement {
        let c = &self.counts;
        Agreement {
            matched: c.matched.load(Ordering::Relaxed),
            differ: c.differ.load(Ordering::Relaxed),
            shadow_error: c.shadow_error.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
        }
    }

    fn record(&self, outcome: Outcome) {
        let (count, series) = match outcome {
            Outcome::Match => (&self.counts.matched, &self.series.matched),
            Outcome::Differ => (&self.counts.differ, &self.series.differ),
            Outcome::ShadowError => (&self.counts.shadow_error, &self.series.shadow_error),
            Outcome::Dropped => (&self.counts.dropped, &self.series.dropped),
        };
        count.fetch_add(1, Ordering::Relaxed);
        series.inc();
    }
}

/// What the shadow calls of one request need, held until the primary's
/// body is whole.
#[derive(Debug)]
pub struct Picked {
    shadows: Arc<RouteShadows>,
    /// Each with its place among the route's shadow calls in flight, taken
    /// when it was picked: so the limit bounds the copies of answers held
    /// for them too.
    targets: Vec<(Arc<Shadow>, OwnedSemaphorePermit)>,
    request: UpstreamRequest,
    client: Client,
    /// What the diff log's lines need, when there is one.
    log: Option<diff_log::Pending>,
}

impl RouteShadows {
    pub fn new(
        targets: Vec<Arc<Shadow>>,
        max_in_flight: u32,
        threshold: f64,
        timeout: Duration,
    ) -> Self {
        let permits = usize::try_from(max_in_flight).unwrap_or(usize::MAX);
        Self {
            targets,
            in_flight: Arc::new(Semaphore::new(permits)),
            threshold,
            timeout,
        }
    }

    /// The shadows this request goes to, each picked with its percent.
    pub fn sample(self: &Arc<Self>) -> Vec<Arc<Shadow>> {
        self.targets
            .iter()
            .filter(|s| s.percent > 0.0 && fastrand::f64() * 100.0 < s.percent)
            .cloned()
            .collect()
    }

    /// Keeps `request` (a copy, before it was sent) for `targets`, each
    /// that has a place among the route's shadow calls in flight (the
    /// others counted dropped); `None` when none has.
    pub fn pick(
        self: &Arc<Self>,
        targets: Vec<Arc<Shadow>>,
        request: &UpstreamRequest,
        client: &Client,
    ) -> Option<Picked> {
        let targets: Vec<_> = targets
            .into_iter()
            .filter_map(
                |shadow| match Arc::clone(&self.in_flight).try_acquire_owned() {
                    Ok(permit) => Some((shadow, permit)),
                    Err(_) => {
                        shadow.record(Outcome::Dropped);
                        None
                    }
                },
            )
            .collect();
        if targets.is_empty() {
            return None;
        }
        let mut request = request.clone();
        request.timeout = self.timeout;
        request.total = self.timeout;
        request.scale_up_timeout = None;
        Some(Picked {
            shadows: Arc::clone(self),
            targets,
            request,
            client: client.clone(),
            log: None,
        })
    }
}

impl Picked {
    /// What the shadows want of a passed-through body: the whole of it, up
    /// to [`BODY_LIMIT`], to start their calls with.
    pub fn consumer(self, status: StatusCode) -> Consumer {
        Consumer {
            limit: BODY_LIMIT,
            done: Box::new(move |bytes| self.start(status, bytes)),
        }
    }

    /// `events`, the primary's token stream, tapped for the shadows: their
    /// calls start once it ended well ([`stream`]).
    pub fn tap(self, status: StatusCode, first: &Bytes, events: Events) -> Events {
        stream::tap(self, status, first, events)
    }

    /// Spawns one call per picked shadow with `primary`, the primary's
    /// whole answer.
    pub fn start(self, status: StatusCode, primary: Bytes) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let primary = Arc::new((status, primary));
        let (threshold, timeout) = (self.shadows.threshold, self.shadows.timeout);
        let log = self
            .log
            .map(|p| Arc::new(p.primary_done(threshold, timeout)));
        for (shadow, permit) in self.targets {
            let call = Call {
                shadows: Arc::clone(&self.shadows),
                request: stream::request_for(&shadow.backend, &self.request),
                shadow,
                client: self.client.clone(),
                primary: Arc::clone(&primary),
                log: log.clone(),
                _permit: permit,
            };
            runtime.spawn(call.run());
        }
    }
}

/// One shadow call in flight, holding its permit.
struct Call {
    shadows: Arc<RouteShadows>,
    shadow: Arc<Shadow>,
    request: UpstreamRequest,
    client: Client,
    primary: Arc<(StatusCode, Bytes)>,
    log: Option<Arc<diff_log::CallLog>>,
    _permit: OwnedSemaphorePermit,
}

impl Call {
    async fn run(self) {
        // The call is spawned as the primary's last byte passes, before the
        // connection has written it: yielding once lets the worker's
        // runtime poll its I/O (and so send the client's answer) before
        // the shadow's request is built and sent.
        tokio::task::yield_now().await;
        let started = Instant::now();
        let answer = tokio::time::timeout(self.shadows.timeout, self.answer()).await;
        let took = started.elapsed();
        self.shadow.series.duration.observe(took.as_secs_f64());
        let (status, body) = match answer {
            Ok(Ok(answered)) => answered,
            failed => {
                let why = match failed {
                    Ok(Err(status)) => Shadowed::Failed { status },
                    _ => Shadowed::TimedOut,
                };
                self.log(took, why);
                self.shadow.record(Outcome::ShadowError);
                return;
            }
        };
        let (primary_status, primary_body) = &*self.primary;
        let c = compare::compare(
            (*primary_status, primary_body),
            (status, &body),
            self.shadows.threshold,
        );
        if let Some(s) = c.similarity {
            self.shadow.series.similarity.observe(s);
        }
        self.log(
            took,
            Shadowed::Answered {
                status,
                body: &body,
                comparison: &c,
            },
        );
        self.shadow.record(match c.verdict {
            Verdict::Match => Outcome::Match,
            Verdict::Differ => Outcome::Differ,
        });
    }

    /// Writes the call's diff-log line, if the request has a log; before
    /// the call is counted, so that a count seen means its line is queued.
    fn log(&self, took: Duration, shadowed: Shadowed<'_>) {
        if let Some(log) = &self.log {
            log.write(&diff_log::Seen {
                shadow: &self.shadow.backend.name,
                request: &self.request,
                primary: (self.primary.0, &self.primary.1),
                took,
                shadowed,
            });
        }
    }

    /// The shadow's answer, read whole. A model that refused the input (a
    /// 4xx of its own, which the client would have got) answered: its
    /// status and message are compared with the primary's answer. Any other
    /// failure is none, with the status the shadow answered, if it did.
    async fn answer(&self) -> Result<(StatusCode, Bytes), Option<u16>> {
        let up = match self.shadow.backend.call(&self.client, &self.request).await {
            Ok(up) => up,
            Err(f) => {
                let refused = f.client_status.and_then(|s| StatusCode::from_u16(s).ok());
                return match refused {
                    Some(status) => Ok((status, Bytes::from(f.message))),
                    None => Err(f.status),
                };
            }
        };
        let whole = match up.body {
            UpstreamBody::Full(bytes) => Some(bytes),
            UpstreamBody::Stream(body) => {
                let name = &self.shadow.backend.name;
                crate::backend::exchange::read_limited(body, BODY_LIMIT, name)
                    .await
                    .ok()
            }
            UpstreamBody::Events { first, events } => stream::read(first, events).await,
        };
        whole.map(|body| (up.status, body)).ok_or(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn request(
        stream: bool,
        headers: &[(&'static str, &'static str)],
    ) -> UpstreamRequest {
        UpstreamRequest {
            op: crate::config::Operation::Predict,
            body: Bytes::new(),
            content_type: None,
            accept: None,
            sagemaker_headers: headers
                .iter()
                .map(|(n, v)| {
                    (
                        http::HeaderName::from_static(n),
                        http::HeaderValue::from_static(v),
                    )
                })
                .collect(),
            request_id: http::HeaderValue::from_static("r"),
            timeout: Duration::from_secs(1),
            total: Duration::from_secs(1),
            scale_up_timeout: None,
            stream,
            trace: None,
        }
    }

    #[test]
    fn sessions_are_not_shadowed() {
        assert!(may_shadow(&request(false, &[])));
        assert!(may_shadow(&request(true, &[])));
        assert!(may_shadow(&request(
            false,
            &[("x-amzn-sagemaker-target-variant", "v1")]
        )));
        for stream in [false, true] {
            assert!(!may_shadow(&request(
                stream,
                &[("x-amzn-sagemaker-session-id", "NEW_SESSION")]
            )));
        }
    }

    #[test]
    fn the_agreement_rate_counts_compared_answers_only() {
        let a = Agreement {
            matched: 7,
            differ: 3,
            shadow_error: 5,
            dropped: 1,
        };
        assert_eq!(a.rate(), Some(0.7));
        let none = Agreement {
            matched: 0,
            differ: 0,
            shadow_error: 2,
            dropped: 0,
        };
        assert_eq!(none.rate(), None);
    }
}
