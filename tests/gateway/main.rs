//! The gateway end to end over loopback sockets, against both emulators.
//!
//! [`suite`] is the shared suite every backend kind must pass; the other
//! modules cover what is specific to one kind ([`kinds`]), routing over
//! several backends ([`routing`]), the JSON error contract for what goes
//! wrong upstream or in the request ([`errors`]), and the admin endpoints
//! and client connections ([`connections`]).

#[cfg(test)]
mod auth;
#[cfg(test)]
mod cache;
#[cfg(test)]
mod cache_doors;
#[cfg(test)]
#[path = "../common/mod.rs"]
mod common;
#[cfg(test)]
mod connections;
#[cfg(test)]
mod containers;
#[cfg(test)]
mod errors;
#[cfg(test)]
mod kinds;
#[cfg(test)]
mod limits;
#[cfg(test)]
mod openai_door;
#[cfg(test)]
mod routing;
#[cfg(test)]
mod sagemaker_door;
#[cfg(test)]
mod shadow;
#[cfg(test)]
mod shadow_log;
#[cfg(test)]
mod shadow_stream;
#[cfg(test)]
mod suite;
#[cfg(test)]
mod tgi_door;

use serde_json::{json, Value};

/// What both backends answer for [`BODY`]: the emulators share one model.
fn expected_answer() -> Value {
    let tokens = infergate::emulator::model::generate("one stable inference URL", Some(8));
    json!([{ "generated_text": infergate::emulator::model::generated_text(&tokens) }])
}
