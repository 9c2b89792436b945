//! Phase two for `[telemetry]`: span export.
//!
//! `otlp_endpoint` is only accepted by a binary built with the `otlp` cargo
//! feature; any other build says so instead of silently exporting nothing.

use super::backend::http_url;
use super::bounds::{self, duration};
use super::diag::Diagnostics;
use super::raw::RawTelemetry;
use super::{TelemetryConfig, DEFAULT_OTLP_TIMEOUT, DEFAULT_SERVICE_NAME};

/// The error for `otlp_endpoint` in a build without OTLP export.
pub(super) const NO_OTLP_IN_THIS_BUILD: &str =
    "this build has no OTLP export; build with --features otlp";

pub(super) fn telemetry_config(raw: RawTelemetry, diag: &mut Diagnostics) -> TelemetryConfig {
    let otlp_endpoint = match raw.otlp_endpoint {
        None => None,
        Some(_) if !cfg!(feature = "otlp") => {
            diag.error("telemetry.otlp_endpoint", NO_OTLP_IN_THIS_BUILD);
            None
        }
        Some(text) => http_url(text.trim(), "telemetry.otlp_endpoint", diag),
    };
    let service_name = match raw.service_name {
        None => DEFAULT_SERVICE_NAME.to_owned(),
        Some(name) => {
            let name = name.trim();
            if name.is_empty() {
                diag.error("telemetry.service_name", "must not be empty");
            } else if name.chars().any(char::is_control) {
                diag.error(
                    "telemetry.service_name",
                    "must not contain control characters",
                );
            }
            name.to_owned()
        }
    };
    TelemetryConfig {
        otlp_endpoint,
        service_name,
        otlp_timeout: duration(
            raw.otlp_timeout,
            "telemetry.otlp_timeout",
            bounds::OTLP_TIMEOUT,
            DEFAULT_OTLP_TIMEOUT,
            diag,
        ),
    }
}
