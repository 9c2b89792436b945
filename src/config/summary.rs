//! The human-readable listing printed by `infergate check`.
//!
//! It shows what the gateway will do (routes, their backends and weights, how
//! each backend is reached and authenticated), never a secret: a token prints as
//! `auth: token`, an external id not at all.

use std::fmt::Write;
use std::time::Duration;

use super::{BackendConfig, BackendKind, Config, Container, RouteConfig, SageMakerConfig};

pub(super) fn render(config: &Config) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_summary(&mut out, config);
    out
}

fn write_summary(out: &mut String, config: &Config) -> std::fmt::Result {
    write_settings(out, config)?;
    write_routes(out, config)?;
    write_backends(out, config)?;
    write_clients(out, config)?;
    write_warnings(out, config)
}

/// Who may call: the auth mode and each client's keys (counted, never
/// shown) and routes.
fn write_clients(out: &mut String, config: &Config) -> std::fmt::Result {
    match config.server.auth {
        super::AuthMode::None => writeln!(out, "auth: none (any caller may use every route)"),
        super::AuthMode::Required => {
            writeln!(out, "auth: a client's API key required")?;
            for c in &config.clients {
                let routes = c
                    .routes
                    .as_ref()
                    .map_or_else(|| "every route".to_owned(), |r| r.join(", "));
                let keys = c.keys.len();
                let plural = if keys == 1 { "" } else { "s" };
                let admin = if c.admin { ", admin" } else { "" };
                writeln!(
                    out,
                    "  client {}: {keys} key{plural}, routes: {routes}{admin}",
                    c.name
                )?;
            }
            Ok(())
        }
    }
}

/// The `server:`, `upstream:` and (if on) `rate limits:`, `telemetry:` and
/// `shadow:` lines.
fn write_settings(out: &mut String, config: &Config) -> std::fmt::Result {
    let s = &config.server;
    writeln!(
        out,
        "server: listen {}, max body {} bytes, request timeout {}, shutdown grace {}, header read timeout {}, idle timeout {}, max connections {}, workers {}",
        s.listen,
        s.max_body_bytes,
        human(s.request_timeout),
        human(s.shutdown_grace),
        human(s.header_read_timeout),
        human(s.idle_timeout),
        s.max_connections,
        match s.workers {
            Some(n) => n.to_string(),
            None => format!("{} (one per CPU)", s.worker_count()),
        },
    )?;
    let watch = match s.watch_config {
        true => format!("the file watched every {}", human(s.watch_interval)),
        false => "the file not watched".to_owned(),
    };
    writeln!(
        out,
        "server: on SIGTERM not ready for {}, then drained; reload on SIGHUP, {watch}",
        human(s.shutdown_delay),
    )?;
    if let Some(tls) = &s.tls {
        write!(out, "server: HTTPS with {}", tls.cert_file.display())?;
        match &tls.client_ca_file {
            Some(ca) => writeln!(out, ", client certificates of {} required", ca.display())?,
            None => writeln!(out)?,
        }
    }
    if let Some(admin) = s.admin_listen {
        writeln!(out, "server: /metrics and /v1/routes on {admin} only")?;
    }
    let u = &config.upstream;
    writeln!(
        out,
        "upstream: connect timeout {}, pool idle timeout {}, max idle per host {}",
        human(u.connect_timeout),
        human(u.pool_idle_timeout),
        u.pool_max_idle_per_host,
    )?;
    if let Some(file) = &u.tls_ca_file {
        writeln!(out, "upstream: also trusts the CAs of {}", file.display())?;
    }

    if let super::LimitStore::Redis(redis) = &config.rate_limits.store {
        let on_error = match config.rate_limits.on_store_error {
            super::OnStoreError::Allow => "allow",
            super::OnStoreError::Deny => "deny",
        };
        let through = match redis.mode {
            super::RedisMode::Single => "Redis at",
            super::RedisMode::Cluster => "a Redis Cluster, seeds",
        };
        writeln!(
            out,
            "rate limits: shared through {through} {}, timeout {}, on store error {on_error}, headroom {}",
            redis.shown,
            human(redis.timeout),
            config.rate_limits.headroom,
        )?;
    }
    let t = &config.telemetry;
    if let Some(url) = t.otlp_traces_url() {
        writeln!(
            out,
            "telemetry: OTLP spans to {url} as service {:?}, timeout {}",
            t.service_name,
            human(t.otlp_timeout),
        )?;
    }
    if let Some(log) = &config.shadow.diff_log {
        writeln!(
            out,
            "shadow: diff log {}, {}% of compared calls, answers cut at {} bytes",
            log.path.display(),
            log.percent,
            log.answer_bytes,
        )?;
    }
    Ok(())
}

/// Each route: its path, attempts and timeout, its policy, its weighted backends.
fn write_routes(out: &mut String, config: &Config) -> std::fmt::Result {
    writeln!(out, "\nroutes ({}):", config.routes.len())?;
    for route in &config.routes {
        let timeout = match route.timeout {
            Some(t) => human(t),
            None => format!(
                "{} (server.request_timeout)",
                human(config.server.request_timeout)
            ),
        };
        writeln!(
            out,
            "  {}  POST /v1/predict/{}  attempts {}, timeout {}",
            route.name, route.name, route.attempts, timeout
        )?;
        let containers: Vec<Container> = route
            .backends
            .iter()
            .filter_map(|b| config.backend(&b.backend))
            .map(|b| b.container)
            .collect();
        let serves = |op, stream| containers.iter().any(|c| c.serves(op, stream));
        let doors: Vec<String> = config
            .doors
            .of_route(&route.name, route.doors.as_deref(), serves)
            .into_iter()
            .map(|(door, paths)| format!("{door} {}", paths.join(" ")))
            .collect();
        writeln!(out, "    doors: {}", doors.join("; "))?;
        writeln!(out, "    {}", route_policy(route))?;
        let total: u32 = route.backends.iter().map(|b| b.weight).sum();
        for b in &route.backends {
            writeln!(out, "    -> {}  weight {}/{}", b.backend, b.weight, total)?;
        }
    }
    Ok(())
}

/// Each backend: how it is reached and authenticated, then its limits.
fn write_backends(out: &mut String, config: &Config) -> std::fmt::Result {
    writeln!(out, "\nbackends ({}):", config.backends.len())?;
    for backend in &config.backends {
        match &backend.kind {
            BackendKind::SageMaker(sm) => write_sagemaker(out, &backend.name, sm)?,
            BackendKind::HuggingFace(hf) => {
                writeln!(out, "  {}  huggingface", backend.name)?;
                writeln!(out, "    url: {}", hf.url)?;
                let auth = if hf.token.is_some() { "token" } else { "none" };
                writeln!(out, "    auth: {auth}")?;
            }
        }
        writeln!(out, "    {}", container_line(backend.container))?;
        if let Some(t) = backend.timeout {
            writeln!(out, "    attempt timeout: {}", human(t))?;
        }
        writeln!(out, "    {}", backend_health(backend))?;
    }
    Ok(())
}

/// `container: tgi (predict, generate, …; streams)`.
fn container_line(container: Container) -> String {
    let ops: Vec<&str> = container.operations().iter().map(|o| o.as_str()).collect();
    let streams = if container.streams() {
        "streams"
    } else {
        "answers whole"
    };
    format!(
        "container: {} ({}; {streams})",
        container.as_str(),
        ops.join(", ")
    )
}

/// A SageMaker backend's endpoint, URL, auth and extra
/// header names (never their values).
fn write_sagemaker(out: &mut String, name: &str, sm: &SageMakerConfig) -> std::fmt::Result {
    writeln!(out, "  {name}  sagemaker")?;
    writeln!(out, "    endpoint: {}", sm.endpoint_name)?;
    writeln!(out, "    region: {}", sm.region)?;
    match &sm.endpoint_url {
        Some(url) => writeln!(out, "    endpoint url: {url}")?,
        None => writeln!(
            out,
            "    endpoint url: {} (the region's{} endpoint)",
            crate::protocol::sagemaker::default_base(&sm.region, sm.fips),
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
    if !sm.headers.is_empty() {
        let names: Vec<&str> = sm.headers.iter().map(|(n, _)| n.as_str()).collect();
        writeln!(out, "    headers: {}", names.join(", "))?;
    }
    Ok(())
}

/// The config's warnings, if any.
fn write_warnings(out: &mut String, config: &Config) -> std::fmt::Result {
    if !config.warnings.is_empty() {
        writeln!(out, "\nwarnings ({}):", config.warnings.len())?;
        for warning in &config.warnings {
            writeln!(out, "  {warning}")?;
        }
    }
    Ok(())
}

/// `balance p2c, per-try timeout none, backoff 25ms..1s, retry budget 20% + 10/s over 10s, hedge off, sticky sessions on`
fn route_policy(route: &RouteConfig) -> String {
    let per_try = route
        .per_try_timeout
        .map_or_else(|| "none".to_owned(), human);
    let b = &route.retry_budget;
    // Rounded to 0.01 %, so 0.2 prints as 20 and not 20.000000000000004.
    let percent = (b.ratio * 10_000.0).round() / 100.0;
    let hedge = route
        .hedge_after
        .map_or_else(|| "off".to_owned(), |d| format!("after {}", human(d)));
    format!(
        "balance {}, per-try timeout {per_try}, backoff {}..{}, retry budget {percent}% + {}/s over {}, hedge {hedge}, sticky sessions {}",
        route.balance,
        human(route.backoff.base),
        human(route.backoff.max),
        b.min_per_second,
        human(b.window),
        if route.sticky_sessions { "on" } else { "off" },
    )
}

/// `max in flight unlimited, eject after 5 failures for 30s..5m, health check GET /health every 10s (timeout 2s)`;
/// the health check part only for Hugging Face backends.
fn backend_health(backend: &BackendConfig) -> String {
    let in_flight = backend
        .max_in_flight
        .map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
    let o = &backend.outlier;
    let ejection = if o.eject_after == 0 {
        "ejection off".to_owned()
    } else {
        format!(
            "eject after {} failures for {}..{}",
            o.eject_after,
            human(o.base_ejection),
            human(o.max_ejection)
        )
    };
    let health = match &backend.kind {
        BackendKind::SageMaker(_) => String::new(),
        BackendKind::HuggingFace(hf) => match &hf.health_check {
            None => ", health check off".to_owned(),
            Some(h) => format!(
                ", health check GET {} every {} (timeout {})",
                h.path,
                human(h.interval),
                human(h.timeout)
            ),
        },
    };
    format!("max in flight {in_flight}, {ejection}{health}")
}

fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}
