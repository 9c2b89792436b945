//! infergate: one stable inference URL in front of Amazon SageMaker real-time
//! endpoints and Hugging Face Inference Endpoints.
//!
//! ```text
//! client ─► server     workers, HTTP/1.1 + h2c, header and idle timers, drain   server.rs, server/
//!        ─► layers     request id, head limits, access log + metrics, body cap   layers/ (app.rs composes)
//!        ─► door       /v1/predict/{route}[/stream]: parse in, render out;      api/
//!                      /healthz, /readyz, /metrics, /v1/routes
//!        ─► core       one internal request: route, body, headers, deadline      core/
//!        ─► dispatch   retry policy, attempts, backoff, budget, failover, hedge  dispatch/
//!        ─► route      balancer pick, backend health, retry budget, sessions     route/
//!        ─► backend    adapt payload → URL → auth (SigV4 | Bearer | none) → send backend/
//!        ◄─ door       the answer or the failure in the door's own shape         api/, error.rs
//!           shadow     after the answer: sampled copies to other backends,     shadow/
//!                      compared and counted, off the request path
//! ```
//!
//! Shared state ([`gateway::Gateway`]), the body type ([`body`]), config,
//! metrics and the upstream services' wire facts ([`protocol`]) sit below
//! every layer that uses them, so no module imports one above it.
//!
//! The emulators (`emulator/`) are faithful local stand-ins for the SageMaker
//! runtime and a TGI-shaped Hugging Face endpoint, used by the tests, the
//! benchmarks and `infergate demo`.

pub mod api;
pub mod app;
pub mod backend;
pub mod body;
pub mod boxed;
pub mod cache;
pub mod clients;
pub mod commands;
pub mod config;
pub mod core;
pub mod demo;
pub mod dispatch;
pub mod emulator;
pub mod error;
pub mod gateway;
pub mod header_numbers;
pub mod layers;
pub mod limits;
pub mod metrics;
pub mod name_hash;
pub mod protocol;
pub mod redis_store;
pub mod reload;
pub mod route;
pub mod secret;
pub mod server;
pub mod shadow;
pub mod telemetry;
pub mod trace;
pub mod upstream;
