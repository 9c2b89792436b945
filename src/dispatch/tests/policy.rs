//! [`RetryPolicy`] alone: the backoff's bounds, and each rule of
//! [`RetryPolicy::decide`] against a scripted balancer.

use super::*;
use crate::dispatch::{AttemptState, Decision, Next, Reply, RetryPolicy, Stop};

#[test]
fn backoff_is_capped_full_jitter() {
    let p = RetryPolicy {
        base: ms(100),
        cap: ms(350),
    };
    assert_eq!(p.backoff(1, 1.0), ms(100));
    assert_eq!(p.backoff(2, 1.0), ms(200));
    assert_eq!(p.backoff(3, 1.0), ms(350));
    assert_eq!(p.backoff(40, 1.0), ms(350));
    assert_eq!(p.backoff(3, 0.5), ms(175));
    assert_eq!(p.backoff(3, 0.0), Duration::ZERO);
}

#[test]
fn property_backoff_stays_within_its_bounds() {
    let mut rng = fastrand::Rng::with_seed(99);
    for _ in 0..10_000 {
        let base = ms(rng.u64(1..500));
        let cap = base + ms(rng.u64(0..5000));
        let p = RetryPolicy { base, cap };
        let retry = rng.u32(0..64);
        let d = p.backoff(retry, rng.f64());
        assert!(d <= cap);
        let exp = base.saturating_mul(1u32 << retry.saturating_sub(1).min(16));
        assert!(d <= exp);
    }
}

/// A balancer that offers one backend (or none) and a fixed jitter, and
/// records what it was asked.
struct Offer {
    index: Option<usize>,
    random: f64,
    picks: Vec<bool>,
    draws: u32,
}

fn offer(index: Option<usize>) -> Offer {
    Offer {
        index,
        random: 0.5,
        picks: Vec::new(),
        draws: 0,
    }
}

impl Next for Offer {
    fn pick(&mut self, _tried: &[usize], untried_only: bool, _now: Instant) -> Option<usize> {
        self.picks.push(untried_only);
        self.index
    }

    fn random(&mut self) -> f64 {
        self.draws += 1;
        self.random
    }
}

const POLICY: RetryPolicy = RetryPolicy {
    base: Duration::from_millis(100),
    cap: Duration::from_secs(1),
};

/// One failed attempt on backend 0 of two, 3 attempts allowed, 10 s left.
fn state<'a>(
    now: Instant,
    not_before: &'a [Option<Instant>],
    budget: &'a RetryBudget,
) -> AttemptState<'a> {
    AttemptState {
        failed_on: 0,
        attempts: 1,
        max_attempts: 3,
        tried: &[0],
        not_before,
        untried_only: false,
        deadline: now + DEADLINE,
        budget,
    }
}

fn stop(why: Stop, reply: Reply) -> Decision {
    Decision::Stop { why, reply }
}

#[tokio::test(start_paused = true)]
async fn a_retry_on_the_same_backend_backs_off_by_the_attempt_count() {
    let (now, b) = (Instant::now(), budget(1.0, 100));
    let mut next = offer(Some(0));
    let mut s = state(now, &[None, None], &b);
    let d = POLICY.decide(&failure(FailureKind::Unavailable), &s, &mut next, now);
    assert_eq!(
        d,
        Decision::Retry {
            index: 0,
            wait: ms(50)
        },
        "100 ms × 0.5"
    );
    s.attempts = 2;
    let d = POLICY.decide(&failure(FailureKind::Unavailable), &s, &mut next, now);
    assert_eq!(
        d,
        Decision::Retry {
            index: 0,
            wait: ms(100)
        },
        "200 ms × 0.5"
    );
    assert_eq!((next.picks, next.draws), (vec![false, false], 2));
}

#[tokio::test(start_paused = true)]
async fn the_backends_retry_after_wins_over_the_backoff() {
    let (now, b) = (Instant::now(), budget(1.0, 100));
    let mut next = offer(Some(0));
    let not_before = [Some(now + ms(700)), None];
    let d = POLICY.decide(
        &failure(FailureKind::Throttled),
        &state(now, &not_before, &b),
        &mut next,
        now,
    );
    assert_eq!(
        d,
        Decision::Retry {
            index: 0,
            wait: ms(700)
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_fail_over_does_not_back_off_but_waits_for_the_others_retry_after() {
    let (now, b) = (Instant::now(), budget(1.0, 100));
    let mut next = offer(Some(1));
    let d = POLICY.decide(
        &failure(FailureKind::Throttled),
        &state(now, &[None, None], &b),
        &mut next,
        now,
    );
    assert_eq!(
        d,
        Decision::FailOver {
            from: 0,
            to: 1,
            wait: Duration::ZERO
        }
    );
    assert_eq!(next.draws, 0, "no jitter drawn for another backend");
    let not_before = [None, Some(now + secs(2))];
    let d = POLICY.decide(
        &failure(FailureKind::Throttled),
        &state(now, &not_before, &b),
        &mut next,
        now,
    );
    assert_eq!(
        d,
        Decision::FailOver {
            from: 0,
            to: 1,
            wait: secs(2)
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_wait_as_long_as_the_time_left_stops_and_pays_nothing() {
    let now = Instant::now();
    // Exactly one retry in the budget: one request at a ratio of 1.
    let b = budget(1.0, 0);
    b.deposit(now);
    let mut next = offer(Some(0));
    let not_before = [Some(now + DEADLINE), None];
    let d = POLICY.decide(
        &failure(FailureKind::Throttled),
        &state(now, &not_before, &b),
        &mut next,
        now,
    );
    assert_eq!(d, stop(Stop::PastDeadline, Reply::Failure));
    assert!(b.withdraw(now), "the budget's one retry is still there");
    // A millisecond less fits (and would pay, had the budget a retry left).
    let not_before = [Some(now + DEADLINE - ms(1)), None];
    let d = POLICY.decide(
        &failure(FailureKind::Throttled),
        &state(now, &not_before, &b),
        &mut next,
        now,
    );
    assert_eq!(d, stop(Stop::Budget, Reply::Failure));
}

#[tokio::test(start_paused = true)]
async fn a_model_error_is_final_and_the_balancer_is_not_asked() {
    let (now, b) = (Instant::now(), budget(1.0, 100));
    let mut next = offer(Some(1));
    let d = POLICY.decide(
        &failure(FailureKind::ModelError),
        &state(now, &[None, None], &b),
        &mut next,
        now,
    );
    assert_eq!(d, stop(Stop::Final, Reply::Failure));
    assert!(next.picks.is_empty());
}

#[tokio::test(start_paused = true)]
async fn spent_attempts_stop_before_the_balancer_is_asked() {
    let (now, b) = (Instant::now(), budget(1.0, 100));
    let mut next = offer(Some(1));
    let mut s = state(now, &[None, None], &b);
    s.attempts = 3;
    let d = POLICY.decide(&failure(FailureKind::Unavailable), &s, &mut next, now);
    assert_eq!(d, stop(Stop::Exhausted, Reply::Failure));
    assert!(next.picks.is_empty());
}

#[tokio::test(start_paused = true)]
async fn no_backend_to_offer_stops_with_the_failure() {
    let (now, b) = (Instant::now(), budget(1.0, 100));
    let mut next = offer(None);
    let d = POLICY.decide(
        &failure(FailureKind::Unavailable),
        &state(now, &[None, None], &b),
        &mut next,
        now,
    );
    assert_eq!(d, stop(Stop::NoBackend, Reply::Failure));
}

#[tokio::test(start_paused = true)]
async fn an_empty_budget_stops() {
    let (now, b) = (Instant::now(), budget(0.0, 0));
    let mut next = offer(Some(1));
    let d = POLICY.decide(
        &failure(FailureKind::Unavailable),
        &state(now, &[None, None], &b),
        &mut next,
        now,
    );
    assert_eq!(d, stop(Stop::Budget, Reply::Failure));
}

#[tokio::test(start_paused = true)]
async fn a_failure_only_another_backend_can_mend_asks_for_an_untried_one() {
    let (now, b) = (Instant::now(), budget(1.0, 100));
    let mut next = offer(Some(1));
    let mut s = state(now, &[None, None], &b);
    s.untried_only = true;
    let d = POLICY.decide(&failure(FailureKind::AuthRejected), &s, &mut next, now);
    assert_eq!(
        d,
        Decision::FailOver {
            from: 0,
            to: 1,
            wait: Duration::ZERO
        }
    );
    assert_eq!(next.picks, vec![true]);
}

#[tokio::test(start_paused = true)]
async fn a_timeout_at_the_deadline_replies_deadline() {
    let (start, b) = (Instant::now(), budget(1.0, 100));
    let s = state(start, &[None, None], &b);
    let at_deadline = start + DEADLINE;
    let mut next = offer(Some(0));
    // Nothing fits in no time: the wait stops the attempts.
    let d = POLICY.decide(&failure(FailureKind::Timeout), &s, &mut next, at_deadline);
    assert_eq!(d, stop(Stop::PastDeadline, Reply::Deadline));
    // Before the deadline, the attempt's own timeout is the answer.
    let mut s = s;
    s.attempts = 3;
    let before = at_deadline - ms(1);
    let d = POLICY.decide(&failure(FailureKind::Timeout), &s, &mut next, before);
    assert_eq!(d, stop(Stop::Exhausted, Reply::Failure));
    // Another kind of failure at the deadline is still itself.
    let d = POLICY.decide(
        &failure(FailureKind::Unavailable),
        &s,
        &mut next,
        at_deadline,
    );
    assert_eq!(d, stop(Stop::Exhausted, Reply::Failure));
}

#[tokio::test(start_paused = true)]
async fn a_fail_over_with_no_wait_is_made_even_at_the_deadline() {
    // The policy does not stop it; the loop then finds no time left and
    // answers 504 (as it always has).
    let (start, b) = (Instant::now(), budget(1.0, 100));
    let s = state(start, &[None, None], &b);
    let mut next = offer(Some(1));
    let d = POLICY.decide(&failure(FailureKind::Io), &s, &mut next, start + DEADLINE);
    assert_eq!(
        d,
        Decision::FailOver {
            from: 0,
            to: 1,
            wait: Duration::ZERO
        }
    );
}
