//! `POST /v1/predict/{route}/stream` end to end over loopback sockets: both
//! backends through their emulators, the stream faults of each (parts cut
//! anywhere, a corrupted frame CRC, mid-stream errors, a cold endpoint:
//! [`backends`]), a client that leaves, a client that reads slowly,
//! keep-alives and the idle timeout, the metrics, and AWS's own SDK
//! reading the same stream ([`client`]).
//!
//! Expected events come from the emulators' shared model
//! ([`infergate::emulator::model::generate_stream_events`]), so every test
//! checks the exact JSON of every event, not only how many there were.

#[cfg(test)]
mod backends;
#[cfg(test)]
mod client;
#[cfg(test)]
#[path = "../common/mod.rs"]
mod common;
#[cfg(test)]
mod sse;
