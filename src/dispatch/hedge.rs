//! Hedging: when an attempt is slow, a second one to another backend, and
//! the first success wins.
//!
//! A hedge is a retry made before the first attempt failed, so it is paid
//! from the same retry budget and obeys the same rules (sessions, streaming)
//! on a backend not yet tried. The loser is dropped, which cancels it; its
//! attempt is counted `cancelled`.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use futures_util::future::{select, Either};
use tokio::time::Instant;

use super::attempt::{attempt, prepare, Call, Env, Outcome};
use super::pick::Picker;
use crate::backend::UpstreamRequest;
use crate::route::balancer::Pick;

/// Runs `first`; if it has not answered after `after`, sends a second
/// attempt to an untried backend and takes the first success. Returns the
/// outcome and the number of extra attempts made (0 or 1).
pub(crate) async fn hedge<C: Call, F>(
    env: Env<'_, C>,
    picker: &mut Picker<'_>,
    req: &mut UpstreamRequest,
    tried: &mut Vec<usize>,
    first: F,
    after: Duration,
    deadline: Instant,
) -> (Outcome, u32)
where
    F: Future<Output = Outcome>,
{
    let mut first = pin!(first);
    let timer = pin!(tokio::time::sleep(after));
    let first = match select(first.as_mut(), timer).await {
        Either::Left((outcome, _)) => return (outcome, 0),
        Either::Right(((), _)) => first,
    };
    let now = Instant::now();
    let route = env.route;
    let second = if route.budget.withdraw(now) {
        match picker.choose(tried, true, now) {
            Pick::Chosen { index, slot } => Some((index, slot)),
            Pick::Shed | Pick::Empty => None,
        }
    } else {
        env.metrics.retry_budget_exhausted(&route.name);
        None
    };
    let Some((index, slot)) = second else {
        return (first.await, 0);
    };
    env.metrics.hedge(&route.name);
    tried.push(index);
    let left = deadline.saturating_duration_since(now);
    prepare(req, route, index, left, None);
    let second = pin!(attempt(env, index, slot, req.clone()));
    match select(first, second).await {
        Either::Left(((i, Ok(r)), _)) | Either::Right(((i, Ok(r)), _)) => ((i, Ok(r)), 1),
        // One failed: the other may still answer.
        Either::Left(((_, Err(_)), other)) => (other.await, 1),
        Either::Right(((_, Err(_)), other)) => (other.await, 1),
    }
}
