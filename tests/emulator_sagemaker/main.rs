//! The SageMaker runtime emulator over real loopback sockets: routes, formats,
//! every error shape and header ([`invoke`]), the LMI, TEI and TGI
//! containers' shapes ([`containers`]), SigV4 (requests signed here
//! with the `aws-sigv4` crate, independently of the gateway's signer) and
//! sessions ([`auth`]), the event stream and its faults ([`stream`]),
//! resets, latency, cold start, counters and the control routes
//! ([`transport`]).

#[cfg(test)]
mod auth;
#[cfg(test)]
mod client;
#[cfg(test)]
#[path = "../common/mod.rs"]
mod common;
#[cfg(test)]
mod containers;
#[cfg(test)]
mod invoke;
#[cfg(test)]
mod stream;
#[cfg(test)]
mod transport;
