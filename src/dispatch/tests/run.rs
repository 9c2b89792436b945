//! Whole requests through [`run`] with scripted backends on a paused clock:
//! which backends are called, exactly when, with what timeouts, and what
//! the client gets.

use super::*;
use crate::dispatch::RetryPolicy;
use crate::route::sticky::SessionTable;

fn throttled(retry_after: Option<Duration>) -> Failure {
    let mut f = failure(FailureKind::Throttled);
    f.retry_after = retry_after;
    f
}

#[tokio::test(start_paused = true)]
async fn an_answer_is_one_attempt_and_no_wait() {
    let (r, m) = (route(2), Metrics::new().unwrap());
    let script = Script::new(vec![vec![ok(ms(300))], vec![]]);
    let d = go(&r, &script, &m, 1).await;
    assert!(d.result.is_ok());
    assert_eq!(backend_name(&d), Some("b0"));
    assert_eq!(
        (d.attempts, d.waited, d.upstream_time),
        (1, Duration::ZERO, ms(300))
    );
    assert_eq!(script.calls(), vec![(0, Duration::ZERO)]);
    let success = [("backend", "b0"), ("result", "success")];
    assert_eq!(count(&m, "infergate_upstream_attempts_total", &success), 1);
    assert_eq!(count(&m, "infergate_retries_total", &[]), 0);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_within_the_deadline_is_waited_exactly() {
    let (r, m) = (route(1), Metrics::new().unwrap());
    let script = Script::new(vec![vec![
        fail(Duration::ZERO, throttled(Some(secs(2)))),
        ok(Duration::ZERO),
    ]]);
    let start = Instant::now();
    let d = go(&r, &script, &m, 1).await;
    assert!(d.result.is_ok());
    assert_eq!(start.elapsed(), secs(2));
    assert_eq!((d.attempts, d.waited), (2, secs(2)));
    assert_eq!(script.calls(), vec![(0, Duration::ZERO), (0, secs(2))]);
    let retry = [("route", "r"), ("reason", "rate_limited")];
    assert_eq!(count(&m, "infergate_retries_total", &retry), 1);
    assert_eq!(count(&m, "infergate_failovers_total", &[]), 0);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_beyond_the_deadline_is_answered_at_once_without_a_retry() {
    let (r, m) = (route(1), Metrics::new().unwrap());
    let script = Script::new(vec![vec![fail(ms(100), throttled(Some(secs(30))))]]);
    let start = Instant::now();
    let d = go(&r, &script, &m, 1).await;
    let f = upstream(&d);
    assert_eq!(
        (f.kind, f.retry_after),
        (FailureKind::Throttled, Some(secs(30)))
    );
    assert_eq!(start.elapsed(), ms(100), "no wait after the failure");
    assert_eq!((d.attempts, d.waited), (1, Duration::ZERO));
    assert_eq!(script.calls().len(), 1);
    assert_eq!(count(&m, "infergate_retries_total", &[]), 0);
    assert_eq!(count(&m, "infergate_retry_budget_exhausted_total", &[]), 0);
}

#[tokio::test(start_paused = true)]
async fn the_backoff_is_the_seeded_capped_full_jitter() {
    let (r, m) = (route(1), Metrics::new().unwrap());
    let script = Script::new(vec![vec![
        fail(Duration::ZERO, failure(FailureKind::Unavailable)),
        fail(Duration::ZERO, failure(FailureKind::Unavailable)),
        ok(Duration::ZERO),
    ]]);
    // With one candidate the balancer draws nothing: the seed's first two
    // draws are the two retries' jitter.
    let mut rng = fastrand::Rng::with_seed(7);
    let policy = RetryPolicy::from(r.backoff);
    let first = policy.backoff(1, rng.f64());
    let second = policy.backoff(2, rng.f64());
    assert!(!first.is_zero() && !second.is_zero());
    let d = go(&r, &script, &m, 7).await;
    assert!(d.result.is_ok());
    assert_eq!((d.attempts, d.waited), (3, first + second));
    // tokio's timer fires on the millisecond after the wait.
    let tick = |d: Duration| ms(d.as_nanos().div_ceil(1_000_000) as u64);
    assert_eq!(
        script.calls(),
        vec![
            (0, Duration::ZERO),
            (0, tick(first)),
            (0, tick(first) + tick(second))
        ]
    );
    let retry = [("reason", "backend_unavailable")];
    assert_eq!(count(&m, "infergate_retries_total", &retry), 2);
}

#[tokio::test(start_paused = true)]
async fn an_empty_retry_budget_stops_and_is_counted() {
    let (mut r, m) = (route(2), Metrics::new().unwrap());
    r.budget = budget(0.0, 0);
    let script = Script::new(vec![
        vec![fail(Duration::ZERO, failure(FailureKind::Unavailable))],
        vec![],
    ]);
    let d = go(&r, &script, &m, 1).await;
    assert_eq!(upstream(&d).kind, FailureKind::Unavailable);
    assert_eq!((backend_name(&d), d.attempts), (Some("b0"), 1));
    assert_eq!(script.calls(), vec![(0, Duration::ZERO)]);
    let route = [("route", "r")];
    assert_eq!(
        count(&m, "infergate_retry_budget_exhausted_total", &route),
        1
    );
    assert_eq!(count(&m, "infergate_retries_total", &[]), 0);
    assert_eq!(count(&m, "infergate_failovers_total", &[]), 0);
}

#[tokio::test(start_paused = true)]
async fn a_retryable_failure_fails_over_at_once_and_is_counted() {
    let (r, m) = (route(2), Metrics::new().unwrap());
    let script = Script::new(vec![vec![fail(ms(50), throttled(None))], vec![ok(ms(20))]]);
    let d = go(&r, &script, &m, 1).await;
    assert!(d.result.is_ok());
    assert_eq!(backend_name(&d), Some("b1"));
    assert_eq!(
        (d.attempts, d.waited, d.upstream_time),
        (2, Duration::ZERO, ms(70))
    );
    assert_eq!(script.calls(), vec![(0, Duration::ZERO), (1, ms(50))]);
    let failover = [("route", "r"), ("from", "b0"), ("to", "b1")];
    assert_eq!(count(&m, "infergate_failovers_total", &failover), 1);
    assert_eq!(
        count(&m, "infergate_retries_total", &[("reason", "rate_limited")]),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_only_another_backend_can_mend_goes_to_untried_ones_only() {
    let (r, m) = (route(2), Metrics::new().unwrap());
    // b0 rejects the gateway's token: not retryable there, but b1 may serve.
    // b1 then fails retryably; a third attempt is allowed, yet both are
    // tried, so none is made.
    let script = Script::new(vec![
        vec![fail(Duration::ZERO, failure(FailureKind::AuthRejected))],
        vec![fail(Duration::ZERO, failure(FailureKind::Unavailable))],
    ]);
    let d = go(&r, &script, &m, 1).await;
    assert_eq!(upstream(&d).kind, FailureKind::Unavailable);
    assert_eq!((backend_name(&d), d.attempts), (Some("b1"), 2));
    assert_eq!(
        script.calls(),
        vec![(0, Duration::ZERO), (1, Duration::ZERO)]
    );
}

#[tokio::test(start_paused = true)]
async fn retryable_failures_may_go_back_to_a_tried_backend() {
    // The contrast to the case above: b0 fails retryably, so the third
    // attempt may return to it, after its backoff.
    let (r, m) = (route(2), Metrics::new().unwrap());
    let script = Script::new(vec![
        vec![
            fail(Duration::ZERO, failure(FailureKind::Unavailable)),
            ok(Duration::ZERO),
        ],
        vec![fail(Duration::ZERO, failure(FailureKind::Unavailable))],
    ]);
    let d = go(&r, &script, &m, 3).await;
    assert!(d.result.is_ok());
    assert_eq!((backend_name(&d), d.attempts), (Some("b0"), 3));
    let backends: Vec<usize> = script.calls().iter().map(|c| c.0).collect();
    assert_eq!(backends, vec![0, 1, 0]);
    // b1 → b0 is a fail-over: no backoff.
    assert_eq!(d.waited, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_model_error_stops_at_once() {
    let (r, m) = (route(2), Metrics::new().unwrap());
    let script = Script::new(vec![
        vec![fail(
            ms(10),
            failure(FailureKind::ModelError).retryable(false),
        )],
        vec![],
    ]);
    let d = go(&r, &script, &m, 1).await;
    assert_eq!(upstream(&d).kind, FailureKind::ModelError);
    assert_eq!((backend_name(&d), d.attempts), (Some("b0"), 1));
    assert_eq!(script.calls(), vec![(0, Duration::ZERO)]);
    assert_eq!(count(&m, "infergate_retries_total", &[]), 0);
}

#[tokio::test(start_paused = true)]
async fn a_hedge_goes_out_at_hedge_after_and_the_loser_is_cancelled() {
    let (mut r, m) = (route(2), Metrics::new().unwrap());
    r.hedge_after = Some(secs(2));
    let script = Script::new(vec![vec![ok(secs(5))], vec![ok(secs(1))]]);
    let start = Instant::now();
    let d = go(&r, &script, &m, 1).await;
    assert!(d.result.is_ok());
    assert_eq!(backend_name(&d), Some("b1"), "the first answer wins");
    assert_eq!(start.elapsed(), secs(3));
    assert_eq!((d.attempts, d.upstream_time), (2, secs(3)));
    assert_eq!(script.calls(), vec![(0, Duration::ZERO), (1, secs(2))]);
    assert_eq!(count(&m, "infergate_hedges_total", &[("route", "r")]), 1);
    let cancelled = [("backend", "b0"), ("result", "cancelled")];
    assert_eq!(
        count(&m, "infergate_upstream_attempts_total", &cancelled),
        1
    );
    let won = [("backend", "b1"), ("result", "success")];
    assert_eq!(count(&m, "infergate_upstream_attempts_total", &won), 1);
}

#[tokio::test(start_paused = true)]
async fn an_answer_before_hedge_after_is_not_hedged() {
    let (mut r, m) = (route(2), Metrics::new().unwrap());
    r.hedge_after = Some(secs(2));
    let script = Script::new(vec![vec![ok(ms(1999))], vec![]]);
    let d = go(&r, &script, &m, 1).await;
    assert_eq!((backend_name(&d), d.attempts), (Some("b0"), 1));
    assert_eq!(count(&m, "infergate_hedges_total", &[]), 0);
}

#[tokio::test(start_paused = true)]
async fn a_hedge_the_budget_refuses_is_not_sent() {
    let (mut r, m) = (route(2), Metrics::new().unwrap());
    r.hedge_after = Some(secs(2));
    r.budget = budget(0.0, 0);
    let script = Script::new(vec![vec![ok(secs(5))], vec![]]);
    let start = Instant::now();
    let d = go(&r, &script, &m, 1).await;
    assert_eq!((backend_name(&d), d.attempts), (Some("b0"), 1));
    assert_eq!(start.elapsed(), secs(5));
    assert_eq!(count(&m, "infergate_hedges_total", &[]), 0);
    assert_eq!(count(&m, "infergate_retry_budget_exhausted_total", &[]), 1);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_cutting_an_attempt_is_a_504_and_the_attempt_a_timeout() {
    let (r, m) = (route(1), Metrics::new().unwrap());
    let script = Script::new(vec![vec![ok(secs(60))]]);
    let start = Instant::now();
    let d = go(&r, &script, &m, 1).await;
    assert!(matches!(d.result, Err(ApiError::Deadline(t)) if t == DEADLINE));
    assert_eq!(start.elapsed(), DEADLINE);
    assert_eq!(
        (backend_name(&d), d.attempts, d.upstream_time),
        (Some("b0"), 1, DEADLINE)
    );
    // The attempt's own timer, at most the deadline, cut it: a timeout of
    // the backend's, for its health as for the metrics.
    let timed_out = [("backend", "b0"), ("result", "upstream_timeout")];
    assert_eq!(
        count(&m, "infergate_upstream_attempts_total", &timed_out),
        1
    );
    assert_eq!(
        r.pool[0]
            .state
            .snapshot(Instant::now())
            .consecutive_failures,
        1
    );
}

#[tokio::test(start_paused = true)]
async fn an_attempt_timeout_that_used_the_whole_deadline_is_a_504() {
    let (mut r, m) = (route(1), Metrics::new().unwrap());
    r.attempts = 1;
    let script = Script::new(vec![vec![fail(DEADLINE, failure(FailureKind::Timeout))]]);
    let d = go(&r, &script, &m, 1).await;
    assert!(matches!(d.result, Err(ApiError::Deadline(t)) if t == DEADLINE));
    assert_eq!((backend_name(&d), d.attempts), (Some("b0"), 1));
}

#[tokio::test(start_paused = true)]
async fn an_attempt_timeout_with_time_left_is_the_backends_answer() {
    let (mut r, m) = (route(1), Metrics::new().unwrap());
    r.attempts = 1;
    let script = Script::new(vec![vec![fail(secs(3), failure(FailureKind::Timeout))]]);
    let d = go(&r, &script, &m, 1).await;
    assert_eq!(upstream(&d).kind, FailureKind::Timeout);
}

#[tokio::test(start_paused = true)]
async fn a_saturated_route_sheds_before_any_attempt() {
    let (mut r, m) = (route(0), Metrics::new().unwrap());
    r.pool = route(1).pool;
    let state = Arc::new(BackendState::new("b0", Some(1), OutlierConfig::default()));
    r.pool[0].state = Arc::clone(&state);
    let _held = state.begin(Instant::now()).unwrap();
    let script = Script::new(vec![vec![]]);
    let d = go(&r, &script, &m, 1).await;
    assert!(matches!(d.result, Err(ApiError::Overloaded)));
    assert_eq!((backend_name(&d), d.attempts), (None, 0));
    assert_eq!(count(&m, "infergate_shed_total", &[("route", "r")]), 1);
    assert!(script.calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_route_with_no_eligible_backend_has_no_backend() {
    let (r, m) = (route(0), Metrics::new().unwrap());
    let script = Script::new(vec![]);
    let d = go(&r, &script, &m, 1).await;
    assert!(matches!(d.result, Err(ApiError::NoBackend)));
    assert_eq!((backend_name(&d), d.attempts), (None, 0));
    assert_eq!(count(&m, "infergate_shed_total", &[]), 0);
}

#[tokio::test(start_paused = true)]
async fn a_cold_backend_retried_may_take_the_rest_of_the_deadline_to_wake() {
    let (mut r, m) = (route(1), Metrics::new().unwrap());
    r.per_try_timeout = Some(secs(3));
    let mut cold = failure(FailureKind::Unavailable);
    cold.cold = true;
    cold.retry_after = Some(secs(1));
    let script = Script::new(vec![vec![fail(ms(500), cold), ok(Duration::ZERO)]]);
    let d = go(&r, &script, &m, 1).await;
    assert!(d.result.is_ok());
    let left = DEADLINE - ms(1500);
    let sent = script.sent();
    assert_eq!((sent[0].timeout, sent[0].scale_up), (secs(3), None));
    assert_eq!(
        (sent[1].at, sent[1].timeout, sent[1].scale_up),
        (ms(1500), left, Some(left))
    );
}

#[tokio::test(start_paused = true)]
async fn when_the_hedge_fails_the_first_attempt_still_answers() {
    let (mut r, m) = (route(2), Metrics::new().unwrap());
    r.hedge_after = Some(secs(2));
    let script = Script::new(vec![
        vec![ok(secs(5))],
        vec![fail(secs(1), failure(FailureKind::Unavailable))],
    ]);
    let start = Instant::now();
    let d = go(&r, &script, &m, 1).await;
    assert!(d.result.is_ok());
    assert_eq!((backend_name(&d), d.attempts), (Some("b0"), 2));
    assert_eq!(start.elapsed(), secs(5));
    assert_eq!(
        count(
            &m,
            "infergate_upstream_attempts_total",
            &[("result", "cancelled")]
        ),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn after_a_failure_a_saturated_backend_ends_with_that_failure_not_a_shed() {
    let (mut r, m) = (route(2), Metrics::new().unwrap());
    let state = Arc::new(BackendState::new("b1", Some(1), OutlierConfig::default()));
    r.pool[1].state = Arc::clone(&state);
    let _held = state.begin(Instant::now()).unwrap();
    // Only b1 could mend b0's failure, and b1 is full.
    let script = Script::new(vec![
        vec![fail(Duration::ZERO, failure(FailureKind::AuthRejected))],
        vec![],
    ]);
    let d = go(&r, &script, &m, 1).await;
    assert_eq!(upstream(&d).kind, FailureKind::AuthRejected);
    assert_eq!((backend_name(&d), d.attempts), (Some("b0"), 1));
    assert_eq!(count(&m, "infergate_shed_total", &[]), 0);
    assert_eq!(count(&m, "infergate_retries_total", &[]), 0);
}

fn in_session(id: &'static str) -> UpstreamRequest {
    let mut req = request();
    req.sagemaker_headers.push((
        http::HeaderName::from_static("x-amzn-sagemaker-session-id"),
        HeaderValue::from_static(id),
    ));
    req
}

#[tokio::test(start_paused = true)]
async fn a_session_stays_on_its_backend_through_retries_and_hedges() {
    let (mut r, m) = (route(2), Metrics::new().unwrap());
    r.hedge_after = Some(secs(1));
    let table = SessionTable::default();
    table.opened("s-1", 1, std::time::SystemTime::now());
    r.sessions = Some(table);
    // b0 comes first in priority, but the session lives on b1: its retry
    // goes back there (backing off) and no hedge goes to b0.
    let script = Script::new(vec![
        vec![],
        vec![
            fail(secs(2), failure(FailureKind::Unavailable)),
            ok(Duration::ZERO),
        ],
    ]);
    let d = go_with(&r, &script, &m, 5, in_session("s-1")).await;
    assert!(d.result.is_ok());
    assert_eq!((backend_name(&d), d.attempts), (Some("b1"), 2));
    let backends: Vec<usize> = script.calls().iter().map(|c| c.0).collect();
    assert_eq!(backends, vec![1, 1]);
    assert_eq!(count(&m, "infergate_hedges_total", &[]), 0);
    assert!(!d.waited.is_zero(), "a retry on the same backend backs off");
}

#[tokio::test(start_paused = true)]
async fn an_answer_that_opens_a_session_is_remembered_and_one_that_closes_it_forgets() {
    let (mut r, m) = (route(2), Metrics::new().unwrap());
    r.sessions = Some(SessionTable::default());
    let mut opened = HeaderMap::new();
    opened.insert(
        "x-amzn-sagemaker-new-session-id",
        HeaderValue::from_static("s-9; Expires=2099-01-01T00:00:00Z"),
    );
    let mut closed = HeaderMap::new();
    closed.insert(
        "x-amzn-sagemaker-closed-session-id",
        HeaderValue::from_static("s-9"),
    );
    let script = Script::new(vec![
        vec![fail(Duration::ZERO, throttled(None))],
        vec![
            ok_with(Duration::ZERO, opened),
            ok_with(Duration::ZERO, closed),
        ],
    ]);
    let d = go_with(&r, &script, &m, 1, in_session("NEW_SESSION")).await;
    assert_eq!(backend_name(&d), Some("b1"));
    let table = r.sessions.as_ref().unwrap();
    let now = std::time::SystemTime::now();
    assert_eq!(table.lookup("s-9", now), Some(1));
    let d = go_with(&r, &script, &m, 1, in_session("s-9")).await;
    assert_eq!(backend_name(&d), Some("b1"));
    assert_eq!(table.lookup("s-9", now), None);
}
