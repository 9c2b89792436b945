//! Observability end to end: the exact counters and label sets `/metrics`
//! shows for known traffic ([`counts`], [`fault_counts`]), the whole
//! exposition read by a Prometheus text parser with every label value
//! checked against a closed set ([`exposition`]), W3C trace context
//! through both backend kinds ([`trace`]), and the JSON access log of the
//! real binary ([`access_log`]).
//!
//! Every test starts its own gateway, so every count is exact. Nothing is
//! timed: waits are bounded polls on a condition.

#[cfg(test)]
mod access_log;
#[cfg(test)]
#[path = "../common/mod.rs"]
mod common;
#[cfg(test)]
mod counts;
#[cfg(test)]
mod exposition;
#[cfg(test)]
mod fault_counts;
#[cfg(test)]
mod metrics;
#[cfg(test)]
mod trace;
#[cfg(test)]
mod traffic;

pub const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

pub const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

pub const PARENT_ID: &str = "00f067aa0ba902b7";

pub const TRACESTATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
