//! How a request ended, as the `outcome` label counts it, and a client's
//! counters by outcome on one route.

use prometheus::IntCounter;

/// How a request ended, for the `outcome` label.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    Success,
    ClientError,
    UpstreamError,
    GatewayError,
}

impl Outcome {
    pub(super) const ALL: [Outcome; 4] = [
        Outcome::Success,
        Outcome::ClientError,
        Outcome::UpstreamError,
        Outcome::GatewayError,
    ];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::ClientError => "client_error",
            Outcome::UpstreamError => "upstream_error",
            Outcome::GatewayError => "gateway_error",
        }
    }
}

/// One client's `infergate_client_requests_total` on one route, by
/// outcome ([`Metrics::client_series`]).
#[derive(Debug, Clone)]
pub struct ClientSeries(pub(super) [IntCounter; Outcome::ALL.len()]);

impl ClientSeries {
    pub fn count(&self, outcome: Outcome) {
        // `Outcome::ALL` is in the enum's order.
        self.0[outcome as usize].inc();
    }
}
