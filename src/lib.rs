//! infergate: one stable inference URL in front of Amazon SageMaker real-time
//! endpoints and Hugging Face Inference Endpoints.
//!
//! ```text
//! client ─► server    (hyper 1, HTTP/1.1 + h2c, body limit, graceful shutdown)   server.rs
//!        ─► front door /v1/predict/{route}, /healthz, /readyz, /v1/routes        api/
//!        ─► route      route table → weighted pool of backends                    route/
//!        ─► dispatch   deadline, attempts, failover to an untried backend        dispatch.rs
//!        ─► backend    adapt payload → URL → auth (SigV4 | Bearer | none) → send  backend/
//!        ◄─ response   body back to the client; upstream errors → one JSON shape  error.rs
//! ```
//!
//! The emulators (`emulator/`) are faithful local stand-ins for the SageMaker
//! runtime and a TGI-shaped Hugging Face endpoint, used by the tests, the
//! benchmarks and `infergate demo`.

pub mod api;
pub mod app;
pub mod backend;
pub mod body;
pub mod commands;
pub mod config;
pub mod core;
pub mod demo;
pub mod dispatch;
pub mod emulator;
pub mod error;
pub mod gateway;
pub mod layers;
pub mod metrics;
pub mod protocol;
pub mod route;
pub mod secret;
pub mod server;
pub mod telemetry;
pub mod trace;
