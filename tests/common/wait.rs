//! Bounded waits on a condition: a test never sleeps to let something
//! happen; it polls for it and fails loudly, naming what it waited for,
//! once the bound has passed. No bound is a timing assertion: each is far
//! above what a loaded machine needs.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Longest any in-process condition is waited for.
pub const WAIT: Duration = Duration::from_secs(10);

/// How often a condition is checked again.
const POLL: Duration = Duration::from_millis(5);

/// Polls `probe` until it gives a value, at most `limit`; `None` past it.
pub async fn poll<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until `cond` holds, at most [`WAIT`].
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    if poll(WAIT, || cond().then_some(())).await.is_none() {
        panic!("timed out waiting for {what}");
    }
}

/// Waits until the async `cond` holds, at most [`WAIT`].
pub async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_some(what, || {
        let ready = cond();
        async move { ready.await.then_some(()) }
    })
    .await;
}

/// Waits until the async `probe` gives a value, at most [`WAIT`].
pub async fn wait_some<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}
