//! The `infergate` binary as a user runs it: `check` and config errors
//! ([`check`]), `serve`, `demo` and `healthcheck` ([`serve`]), hot reload
//! ([`reload`]), what SIGTERM does before the drain ([`drain`]), what
//! reaches its logs and answers ([`secrets`]), and the shadow diff log's
//! start error and report ([`shadow_log`]).

#[cfg(test)]
mod check;
#[cfg(test)]
#[path = "../common/mod.rs"]
mod common;
#[cfg(test)]
mod drain;
#[cfg(test)]
mod reload;
#[cfg(test)]
mod secrets;
#[cfg(test)]
mod serve;
#[cfg(test)]
mod shadow_log;
