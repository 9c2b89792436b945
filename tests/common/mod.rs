//! What the integration tests share, one definition each: the gateway in
//! front of the emulators ([`harness`]), bounded waits ([`wait`]), the
//! binary as a child process ([`child`]), the AWS credential chain
//! ([`chain`]), config patches ([`config`]), the
//! shared model's answers ([`model`]), raw loopback sockets ([`net`]),
//! AWS's own SDK client ([`sdk`]), test certificates ([`tls`]), a
//! forward proxy ([`proxy`]), a real redis-server ([`redis`]) and a real
//! HAProxy in front of gateway replicas ([`haproxy`]).
//!
//! A test file includes it as `#[cfg(test)] mod common;`: everything here
//! is then test code, which `clippy.toml` lets unwrap and expect.
// Each test binary uses only a part of it, and of the names it re-exports.
#![allow(dead_code, unused_imports)]

pub mod chain;
pub mod child;
pub mod config;
pub mod haproxy;
pub mod harness;
pub mod model;
pub mod net;
pub mod proxy;
pub mod redis;
pub mod sdk;
pub mod tls;
pub mod wait;

pub use config::{binary_config, patch, patch_first, with_backend_keys, with_route_keys};
pub use harness::*;
pub use wait::{wait_for, wait_some, wait_until, WAIT};
