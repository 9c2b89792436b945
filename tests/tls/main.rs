//! Upstream TLS and proxies, end to end over loopback: the emulators in
//! HTTPS mode with certificates made at test time (`common::tls`), the
//! gateway trusting them through `upstream.tls_ca_file` or a backend's own
//! `tls_ca_file` ([`https`]), ALPN and SNI as the emulator saw them
//! ([`alpn`]), certificates refused ([`refused`]), and a gateway process
//! whose environment names a proxy (`common::proxy`: [`proxy`]).
//!
//! [`listener`]: HTTPS on the gateway's own listener (`[server.tls]`),
//! mutual TLS and certificate rotation.
//!
//! [`emulator`] checks the test side alone — the HTTPS emulators and the
//! proxy against reqwest — so a failure there is never the gateway's.

#[cfg(test)]
mod alpn;
#[cfg(test)]
#[path = "../common/mod.rs"]
mod common;
#[cfg(test)]
mod emulator;
#[cfg(test)]
mod https;
#[cfg(test)]
mod listener;
#[cfg(test)]
mod proxy;
#[cfg(test)]
mod refused;
#[cfg(test)]
mod support;
