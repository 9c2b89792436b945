//! The human-readable listing printed by `infergate check`.
//!
//! It shows what the gateway will do (routes, their backends and weights, how
//! each backend is reached and authenticated), never a secret: a token prints as
//! `auth: token`, an external id not at all.

use std::fmt::Write;
use std::time::Duration;

use super::{BackendKind, Config, PayloadFormat};

pub(super) fn render(config: &Config) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_summary(&mut out, config);
    out
}

fn write_summary(out: &mut String, config: &Config) -> std::fmt::Result {
    let s = &config.server;
    writeln!(
        out,
        "server: listen {}, max body {} bytes, request timeout {}, shutdown grace {}, header read timeout {}, max connections {}",
        s.listen,
        s.max_body_bytes,
        human(s.request_timeout),
        human(s.shutdown_grace),
        human(s.header_read_timeout),
        s.max_connections,
    )?;
    let u = &config.upstream;
    writeln!(
        out,
        "upstream: connect timeout {}, pool idle timeout {}, max idle per host {}",
        human(u.connect_timeout),
        human(u.pool_idle_timeout),
        u.pool_max_idle_per_host,
    )?;

    writeln!(out, "\nroutes ({}):", config.routes.len())?;
    for route in &config.routes {
        let timeout = match route.timeout {
            Some(t) => human(t),
            None => format!("{} (server.request_timeout)", human(s.request_timeout)),
        };
        writeln!(
            out,
            "  {}  POST /v1/predict/{}  attempts {}, timeout {}",
            route.name, route.name, route.attempts, timeout
        )?;
        let total: u32 = route.backends.iter().map(|b| b.weight).sum();
        for b in &route.backends {
            writeln!(out, "    -> {}  weight {}/{}", b.backend, b.weight, total)?;
        }
    }

    writeln!(out, "\nbackends ({}):", config.backends.len())?;
    for backend in &config.backends {
        match &backend.kind {
            BackendKind::SageMaker(sm) => {
                writeln!(out, "  {}  sagemaker", backend.name)?;
                writeln!(out, "    endpoint: {}", sm.endpoint_name)?;
                writeln!(out, "    region: {}", sm.region)?;
                match &sm.endpoint_url {
                    Some(url) => writeln!(out, "    endpoint url: {url}")?,
                    None => writeln!(
                        out,
                        "    endpoint url: {} (the region's{} endpoint)",
                        crate::backend::sagemaker::default_base(&sm.region, sm.fips),
                        if sm.fips { " FIPS" } else { "" }
                    )?,
                }
                let auth = match (&sm.role_arn, &sm.profile) {
                    (Some(arn), _) => format!("assume role {arn}"),
                    (None, _) => "aws default chain".to_owned(),
                };
                match &sm.profile {
                    Some(profile) => writeln!(out, "    auth: {auth} (profile {profile:?})")?,
                    None => writeln!(out, "    auth: {auth}")?,
                }
                let format = match sm.format {
                    PayloadFormat::Hf => "hf",
                    PayloadFormat::JumpStartText2Text => "jumpstart-text2text",
                };
                writeln!(out, "    format: {format}")?;
                if !sm.headers.is_empty() {
                    let names: Vec<&str> = sm.headers.iter().map(|(n, _)| n.as_str()).collect();
                    writeln!(out, "    headers: {}", names.join(", "))?;
                }
            }
            BackendKind::HuggingFace(hf) => {
                writeln!(out, "  {}  huggingface", backend.name)?;
                writeln!(out, "    url: {}", hf.url)?;
                let auth = if hf.token.is_some() { "token" } else { "none" };
                writeln!(out, "    auth: {auth}")?;
            }
        }
        if let Some(t) = backend.timeout {
            writeln!(out, "    attempt timeout: {}", human(t))?;
        }
    }

    if !config.warnings.is_empty() {
        writeln!(out, "\nwarnings ({}):", config.warnings.len())?;
        for warning in &config.warnings {
            writeln!(out, "  {warning}")?;
        }
    }
    Ok(())
}

fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}
