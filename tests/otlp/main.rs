//! OTLP span export end to end: a loopback OTLP/HTTP receiver (hyper,
//! decoding the protobuf with `opentelemetry-proto`: [`receiver`]), a
//! gateway in front of the two emulators exporting to it ([`gateway`],
//! [`spans`]), and the real binary flushing its spans on SIGTERM
//! ([`binary`]).
//!
//! Every span is matched to what the backend saw: its span id is the parent
//! id of the backend's `traceparent`, its trace id the client's (or the new
//! one the backend got), its parent the client's span. Waits are bounded
//! polls on a condition.
#![cfg(feature = "otlp")]

#[cfg(test)]
mod binary;
#[cfg(test)]
#[path = "../common/mod.rs"]
mod common;
#[cfg(test)]
mod gateway;
#[cfg(test)]
mod receiver;
#[cfg(test)]
mod spans;

pub const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

pub const PARENT_ID: &str = "00f067aa0ba902b7";

pub const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
