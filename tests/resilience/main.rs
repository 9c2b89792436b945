//! Resilience end to end: retries, the retry budget, failover, outlier
//! ejection, `Retry-After`, deadlines, cancellation, sticky sessions, cold
//! starts, hedging, load shedding and priority balancing, driven through the
//! emulators' fault injection over loopback sockets.
//!
//! Every assertion is on counts (client statuses, emulator counters, gateway
//! metrics, `/v1/routes` states) or on time the gateway reports it waited,
//! never on how long something took; waits are bounded polls on a
//! condition.

#[cfg(test)]
mod balancing;
#[cfg(test)]
#[path = "../common/mod.rs"]
mod common;
#[cfg(test)]
mod failover;
#[cfg(test)]
mod retries;
#[cfg(test)]
mod support;
