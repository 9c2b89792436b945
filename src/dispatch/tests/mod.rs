//! Unit tests of the dispatcher on a paused clock: the policy's decisions
//! alone (`policy.rs`), and whole requests whose backend calls follow a
//! script (`run.rs`), so every wait and outcome is asserted exactly, with no
//! sockets.

mod policy;
mod run;

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use tokio::time::Instant;

use super::attempt::{Call, Env};
use super::{run, Dispatched};
use crate::backend::{
    Backend, Failure, FailureKind, UpstreamBody, UpstreamRequest, UpstreamResponse,
};
use crate::config::{BackoffConfig, Balance, OutlierConfig, RetryBudgetConfig, StreamConfig};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::route::budget::RetryBudget;
use crate::route::health::BackendState;
use crate::route::{PoolMember, Route};

const DEADLINE: Duration = Duration::from_secs(10);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn failure(kind: FailureKind) -> Failure {
    Failure::new(kind, kind.as_str())
}

fn budget(ratio: f64, min_per_second: u32) -> RetryBudget {
    RetryBudget::new(
        &RetryBudgetConfig {
            ratio,
            min_per_second,
            window: secs(10),
        },
        Instant::now(),
    )
}

/// A route over `n` HF backends `b0`, `b1`, … in priority order (so the
/// balancer's choice is known), 3 attempts, a 10 s deadline, a 100 ms ‥ 1 s
/// backoff, a budget that always pays, no ejection, no hedging.
fn route(n: usize) -> Route {
    let pool = (0..n)
        .map(|i| PoolMember {
            series: None,
            backend: Arc::new(Backend::huggingface(
                &format!("b{i}"),
                reqwest::Url::parse("http://127.0.0.1:1/").unwrap(),
            )),
            state: Arc::new(BackendState::new(
                &format!("b{i}"),
                None,
                OutlierConfig {
                    eject_after: 0,
                    base_ejection: secs(30),
                    max_ejection: secs(300),
                },
            )),
            weight: 1,
        })
        .collect();
    Route {
        name: "r".to_string(),
        pool,
        balance: Balance::Priority,
        timeout: DEADLINE,
        per_try_timeout: None,
        attempts: 3,
        backoff: BackoffConfig {
            base: ms(100),
            max: secs(1),
        },
        budget: budget(1.0, 100),
        hedge_after: None,
        sessions: None,
        stream: StreamConfig::default(),
        doors: None,
        cache: None,
        shadow: None,
    }
}

/// What a scripted backend does on one call: answer after `after`, a 200
/// with these headers or a failure.
struct Step {
    after: Duration,
    result: Result<HeaderMap, Failure>,
}

fn ok(after: Duration) -> Step {
    Step {
        after,
        result: Ok(HeaderMap::new()),
    }
}

fn ok_with(after: Duration, headers: HeaderMap) -> Step {
    Step {
        after,
        result: Ok(headers),
    }
}

fn fail(after: Duration, failure: Failure) -> Step {
    Step {
        after,
        result: Err(failure),
    }
}

/// One call a scripted backend received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sent {
    backend: usize,
    /// Since the script was made.
    at: Duration,
    timeout: Duration,
    scale_up: Option<Duration>,
}

/// Backends that follow a script, one queue of steps per backend, and
/// record what they were sent. A call beyond the script fails the test.
struct Script {
    start: Instant,
    steps: Mutex<Vec<VecDeque<Step>>>,
    sent: Mutex<Vec<Sent>>,
}

impl Script {
    fn new(steps: Vec<Vec<Step>>) -> Self {
        Self {
            start: Instant::now(),
            steps: Mutex::new(steps.into_iter().map(VecDeque::from).collect()),
            sent: Mutex::new(Vec::new()),
        }
    }

    fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().clone()
    }

    /// The backends called, in order, and when.
    fn calls(&self) -> Vec<(usize, Duration)> {
        self.sent().iter().map(|s| (s.backend, s.at)).collect()
    }
}

impl Call for Script {
    fn call(
        &self,
        index: usize,
        req: &UpstreamRequest,
    ) -> impl Future<Output = Result<UpstreamResponse, Failure>> + Send {
        let step = self.steps.lock().unwrap()[index]
            .pop_front()
            .unwrap_or_else(|| panic!("backend {index} called more often than scripted"));
        self.sent.lock().unwrap().push(Sent {
            backend: index,
            at: Instant::now() - self.start,
            timeout: req.timeout,
            scale_up: req.scale_up_timeout,
        });
        async move {
            tokio::time::sleep(step.after).await;
            step.result.map(|headers| UpstreamResponse {
                status: StatusCode::OK,
                headers,
                body: UpstreamBody::Full(Bytes::new()),
            })
        }
    }
}

fn request() -> UpstreamRequest {
    UpstreamRequest {
        op: crate::config::Operation::Predict,
        body: Bytes::from_static(b"{}"),
        content_type: None,
        accept: None,
        sagemaker_headers: Vec::new(),
        request_id: HeaderValue::from_static("test"),
        timeout: DEADLINE,
        total: DEADLINE,
        scale_up_timeout: None,
        stream: false,
        trace: None,
    }
}

/// Runs one request on `route` with the route's deadline from now.
async fn go(route: &Route, script: &Script, metrics: &Metrics, seed: u64) -> Dispatched {
    go_with(route, script, metrics, seed, request()).await
}

async fn go_with(
    route: &Route,
    script: &Script,
    metrics: &Metrics,
    seed: u64,
    req: UpstreamRequest,
) -> Dispatched {
    let env = Env {
        metrics,
        route,
        call: script,
    };
    let deadline = Instant::now() + route.timeout;
    run(env, req, deadline, fastrand::Rng::with_seed(seed)).await
}

/// The sum of a counter's series that carry all of `labels`.
fn count(metrics: &Metrics, name: &str, labels: &[(&str, &str)]) -> u64 {
    let text = String::from_utf8(metrics.encode()).unwrap();
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{'))
        })
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// The kind of the upstream failure the client gets.
fn upstream(d: &Dispatched) -> &Failure {
    match &d.result {
        Err(ApiError::Upstream(f)) => f,
        other => panic!("expected an upstream failure, got {other:?}"),
    }
}

fn backend_name(d: &Dispatched) -> Option<&str> {
    d.backend.as_deref().map(|b| b.name.as_str())
}
