//! Phase two: from the raw shape to the runtime types, checking ranges, names
//! and cross-references, and collecting every error on the way.
//!
//! Sections are read in file-reading order (top-level keys, `server`,
//! `upstream`, `telemetry`, `backends`, `routes`) so the error list reads top
//! to bottom. Backend-specific checks are in `backend.rs`, `[telemetry]` is in
//! `telemetry.rs`.

use std::collections::BTreeSet;

use super::backend::validate_backend;
use super::bounds::{self, duration, integer, optional_duration};
use super::clients::{auth_mode, check_clients, client_config};
use super::diag::{index_path, key_path, Diagnostics};
use super::interpolate::interpolate_tree;
use super::limits::rate_limit;
use super::raw::{
    deserialize_section, RawClient, RawDoors, RawRateLimits, RawRoute, RawRouteBackend, RawServer,
    RawShadowSettings, RawTelemetry, RawUpstream,
};
use super::resilience::{route_policy, RoutePolicy};
use super::syntax::syntax_error;
use super::telemetry::telemetry_config;
use super::{
    AuthMode, Balance, Config, ConfigErrors, RateLimitsConfig, RouteBackend, RouteConfig,
    ServerConfig, UpstreamConfig, DEFAULT_ATTEMPTS, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_LISTEN, DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_POOL_IDLE_TIMEOUT, DEFAULT_POOL_MAX_IDLE_PER_HOST,
    DEFAULT_REQUEST_TIMEOUT, DEFAULT_SHUTDOWN_GRACE, DEFAULT_WATCH_INTERVAL, DEFAULT_WEIGHT,
};

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

const TOP_LEVEL_KEYS: [&str; 9] = [
    "server",
    "upstream",
    "telemetry",
    "rate_limits",
    "doors",
    "shadow",
    "backends",
    "routes",
    "clients",
];
pub(super) const NAME_RULE: &str = r#"use only letters, digits, ".", "_" and "-""#;

pub(super) fn load(text: &str, env: Env<'_>) -> Result<Config, ConfigErrors> {
    let mut root: toml::Table = text
        .parse()
        .map_err(|e| ConfigErrors(vec![syntax_error(text, &e)]))?;
    let mut diag = Diagnostics::default();

    for key in root.keys() {
        if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
            diag.error(&key_path("", key), "unknown key");
        }
    }

    let server = section(&mut root, "server", env, &mut diag)
        .and_then(|t| deserialize_section::<RawServer>(t, "server", &mut diag))
        .map(|raw| {
            let auth = raw.auth.clone();
            (server_config(raw, env, &mut diag), auth)
        });
    let upstream = section(&mut root, "upstream", env, &mut diag)
        .and_then(|t| deserialize_section::<RawUpstream>(t, "upstream", &mut diag))
        .map(|raw| upstream_config(raw, &mut diag));
    let telemetry = section(&mut root, "telemetry", env, &mut diag)
        .and_then(|t| deserialize_section::<RawTelemetry>(t, "telemetry", &mut diag))
        .map(|raw| telemetry_config(raw, &mut diag));
    let rate_limits = section(&mut root, "rate_limits", env, &mut diag)
        .and_then(|t| deserialize_section::<RawRateLimits>(t, "rate_limits", &mut diag))
        .map(|raw| super::limits::rate_limits(raw, &mut diag));
    let doors = section(&mut root, "doors", env, &mut diag)
        .and_then(|t| deserialize_section::<RawDoors>(t, "doors", &mut diag))
        .map(|raw| super::doors::doors(raw, &mut diag));
    let shadow = section(&mut root, "shadow", env, &mut diag)
        .and_then(|t| deserialize_section::<RawShadowSettings>(t, "shadow", &mut diag))
        .map(|raw| super::diff_log::shadow_settings(raw, &mut diag));

    // Every declared name counts for references, valid or not, so a broken
    // backend yields its own errors and not an extra "unknown backend" too.
    let mut declared = BTreeSet::new();
    let mut backends = Vec::new();
    for (name, table) in named_sections(&mut root, "backends", &mut diag) {
        let path = key_path("backends", &name);
        declared.insert(name.clone());
        check_name(&name, &path, "backend", &mut diag);
        let Some(mut table) = table else { continue };
        interpolate_table(&mut table, &path, env, &mut diag);
        if let Some(raw) = deserialize_section(table, &path, &mut diag) {
            backends.extend(validate_backend(name, raw, &path, &mut diag));
        }
    }

    let mut routes = Vec::new();
    let route_sections = named_sections(&mut root, "routes", &mut diag);
    if route_sections.is_empty() {
        // Suppressed if `routes` was already reported as not a table.
        diag.error("routes", "at least one route is required");
    }
    for (name, table) in route_sections {
        let path = key_path("routes", &name);
        check_name(&name, &path, "route", &mut diag);
        let Some(mut table) = table else { continue };
        interpolate_table(&mut table, &path, env, &mut diag);
        if let Some(raw) = deserialize_section::<RawRoute>(table, &path, &mut diag) {
            let limits = rate_limits.as_ref();
            routes.push(route_config(name, raw, &path, &declared, limits, &mut diag));
        }
    }

    let mut clients = Vec::new();
    for (name, table) in named_sections(&mut root, "clients", &mut diag) {
        let path = key_path("clients", &name);
        check_name(&name, &path, "client", &mut diag);
        let Some(mut table) = table else { continue };
        interpolate_table(&mut table, &path, env, &mut diag);
        if let Some(raw) = deserialize_section::<RawClient>(table, &path, &mut diag) {
            clients.push(client_config(name, raw, &path, &mut diag));
        }
    }
    let route_names: Vec<&str> = routes
        .iter()
        .map(|r: &RouteConfig| r.name.as_str())
        .collect();
    check_clients(&clients, &route_names, &mut diag);

    // Every value substituted above (a default for a bad value, a skipped
    // section) comes with a recorded error, so this is the one exit for them.
    let (
        Some((mut server, auth)),
        Some(upstream),
        Some(telemetry),
        Some(rate_limits),
        Some(doors),
        Some(shadow),
    ) = (server, upstream, telemetry, rate_limits, doors, shadow)
    else {
        return Err(ConfigErrors(diag.into_parts().0));
    };
    super::doors::check_route_doors(&routes, &backends, &doors, &mut diag);
    super::diff_log::check_used(&shadow, &routes, &mut diag);
    server.auth = auth_mode(auth.as_deref(), &clients, &mut diag);
    if server.auth == AuthMode::None && !server.listen.ip().is_loopback() {
        diag.warn(
            "server.auth",
            format!(
                "anyone who reaches {} may call every route with the gateway's credentials; configure [clients.NAME] keys",
                server.listen
            ),
        );
    }
    if server.auth == AuthMode::Required
        && server.tls.is_none()
        && !server.listen.ip().is_loopback()
    {
        diag.warn(
            "server.tls",
            format!(
                "clients' keys cross the network in clear to {}; set [server.tls] unless a TLS proxy in front of the gateway ends their connections",
                server.listen
            ),
        );
    }
    if diag.has_errors() {
        return Err(ConfigErrors(diag.into_parts().0));
    }

    // A backend a route only shadows to is used too.
    let used: BTreeSet<&str> = routes
        .iter()
        .flat_map(|r: &RouteConfig| {
            let serving = r.backends.iter().map(|b| b.backend.as_str());
            serving.chain(r.shadow.iter().map(|s| s.backend.as_str()))
        })
        .collect();
    for backend in &backends {
        if !used.contains(backend.name.as_str()) {
            diag.warn(
                &key_path("backends", &backend.name),
                "not used by any route",
            );
        }
    }
    let (_, warnings) = diag.into_parts();
    Ok(Config {
        server,
        upstream,
        telemetry,
        backends,
        routes,
        clients,
        rate_limits,
        doors,
        shadow,
        warnings,
    })
}

/// Takes the table at top-level `key` (empty if absent) and interpolates it.
fn section(
    root: &mut toml::Table,
    key: &str,
    env: Env<'_>,
    diag: &mut Diagnostics,
) -> Option<toml::Table> {
    match root.remove(key) {
        None => Some(toml::Table::new()),
        Some(toml::Value::Table(mut table)) => {
            interpolate_table(&mut table, key, env, diag);
            Some(table)
        }
        Some(other) => {
            diag.poison(key, format!("expected a table, found {}", other.type_str()));
            None
        }
    }
}

/// The entries of a table of tables (`backends`, `routes`), sorted by name;
/// `None` for an entry that is not a table (already reported).
fn named_sections(
    root: &mut toml::Table,
    key: &str,
    diag: &mut Diagnostics,
) -> Vec<(String, Option<toml::Table>)> {
    match root.remove(key) {
        None => Vec::new(),
        Some(toml::Value::Table(entries)) => entries
            .into_iter()
            .map(|(name, value)| match value {
                toml::Value::Table(table) => (name, Some(table)),
                other => {
                    let path = key_path(key, &name);
                    diag.poison(
                        &path,
                        format!("expected a table, found {}", other.type_str()),
                    );
                    (name, None)
                }
            })
            .collect(),
        Some(other) => {
            diag.poison(key, format!("expected a table, found {}", other.type_str()));
            Vec::new()
        }
    }
}

fn interpolate_table(table: &mut toml::Table, path: &str, env: Env<'_>, diag: &mut Diagnostics) {
    for (key, value) in table.iter_mut() {
        interpolate_tree(value, &key_path(path, key), env, diag);
    }
}

/// Backend and route names: `[A-Za-z0-9._-]+` (route names appear in URLs).
fn check_name(name: &str, path: &str, what: &str, diag: &mut Diagnostics) {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        diag.error(path, format!("invalid {what} name, {NAME_RULE}"));
    }
}

// === sections ===

/// A listening address such as `127.0.0.1:8080`, or an error at `key`.
pub(super) fn socket_address(
    text: &str,
    key: &str,
    diag: &mut Diagnostics,
) -> Option<std::net::SocketAddr> {
    let parsed = text.trim().parse().ok();
    if parsed.is_none() {
        diag.error(
            key,
            r#"invalid socket address, expected an IP address and a port such as "127.0.0.1:8080" or "[::]:8080""#,
        );
    }
    parsed
}

fn server_config(raw: RawServer, env: Env<'_>, diag: &mut Diagnostics) -> ServerConfig {
    let listen = match raw.listen {
        None => DEFAULT_LISTEN,
        Some(text) => socket_address(&text, "server.listen", diag).unwrap_or(DEFAULT_LISTEN),
    };
    let p = |key: &str| key_path("server", key);
    ServerConfig {
        listen,
        max_body_bytes: integer(
            raw.max_body_bytes,
            &p("max_body_bytes"),
            bounds::MAX_BODY_BYTES,
            DEFAULT_MAX_BODY_BYTES,
            diag,
        ),
        request_timeout: duration(
            raw.request_timeout,
            &p("request_timeout"),
            bounds::REQUEST_TIMEOUT,
            DEFAULT_REQUEST_TIMEOUT,
            diag,
        ),
        shutdown_grace: duration(
            raw.shutdown_grace,
            &p("shutdown_grace"),
            bounds::SHUTDOWN_GRACE,
            DEFAULT_SHUTDOWN_GRACE,
            diag,
        ),
        shutdown_delay: duration(
            raw.shutdown_delay,
            &p("shutdown_delay"),
            bounds::SHUTDOWN_DELAY,
            super::default_shutdown_delay(env),
            diag,
        ),
        watch_config: raw.watch_config.unwrap_or(true),
        watch_interval: duration(
            raw.watch_interval,
            &p("watch_interval"),
            bounds::WATCH_INTERVAL,
            DEFAULT_WATCH_INTERVAL,
            diag,
        ),
        pid_file: raw.pid_file.and_then(|f| match f.is_empty() {
            true => {
                diag.error(&p("pid_file"), "must not be empty");
                None
            }
            false => Some(std::path::PathBuf::from(f)),
        }),
        header_read_timeout: duration(
            raw.header_read_timeout,
            &p("header_read_timeout"),
            bounds::HEADER_READ_TIMEOUT,
            DEFAULT_HEADER_READ_TIMEOUT,
            diag,
        ),
        idle_timeout: duration(
            raw.idle_timeout,
            &p("idle_timeout"),
            bounds::IDLE_TIMEOUT,
            DEFAULT_IDLE_TIMEOUT,
            diag,
        ),
        max_connections: integer(
            raw.max_connections,
            &p("max_connections"),
            bounds::MAX_CONNECTIONS,
            DEFAULT_MAX_CONNECTIONS,
            diag,
        ),
        workers: raw
            .workers
            .map(|n| integer(Some(n), &p("workers"), bounds::WORKERS, 1, diag)),
        // Set once the clients are read.
        auth: AuthMode::None,
        admin_listen: super::tls::admin_listen(raw.admin_listen, listen, diag),
        tls: raw.tls.and_then(|t| super::tls::listener_tls(t, diag)),
    }
}

fn upstream_config(raw: RawUpstream, diag: &mut Diagnostics) -> UpstreamConfig {
    let p = |key: &str| key_path("upstream", key);
    UpstreamConfig {
        connect_timeout: duration(
            raw.connect_timeout,
            &p("connect_timeout"),
            bounds::CONNECT_TIMEOUT,
            DEFAULT_CONNECT_TIMEOUT,
            diag,
        ),
        pool_idle_timeout: duration(
            raw.pool_idle_timeout,
            &p("pool_idle_timeout"),
            bounds::POOL_IDLE_TIMEOUT,
            DEFAULT_POOL_IDLE_TIMEOUT,
            diag,
        ),
        pool_max_idle_per_host: integer(
            raw.pool_max_idle_per_host,
            &p("pool_max_idle_per_host"),
            bounds::POOL_MAX_IDLE_PER_HOST,
            DEFAULT_POOL_MAX_IDLE_PER_HOST,
            diag,
        ),
        tls_ca_file: super::tls::ca_file(raw.tls_ca_file, &p("tls_ca_file"), diag),
    }
}

/// The route `name` at `path`, its backends among `declared` and a cache
/// in Redis on the store of `rate_limits` (`None`: that section was
/// refused).
fn route_config(
    name: String,
    mut raw: RawRoute,
    path: &str,
    declared: &BTreeSet<String>,
    rate_limits: Option<&RateLimitsConfig>,
    diag: &mut Diagnostics,
) -> RouteConfig {
    let entries = raw.backends.take().unwrap_or_default();
    let (backends, weight_paths) = route_backends(entries, path, declared, diag);
    let doors = super::doors::route_doors(raw.doors.take(), path, diag);

    let timeout = optional_duration(
        raw.timeout,
        &key_path(path, "timeout"),
        bounds::REQUEST_TIMEOUT,
        diag,
    );
    let attempts = integer(
        raw.attempts,
        &key_path(path, "attempts"),
        bounds::ATTEMPTS,
        DEFAULT_ATTEMPTS,
        diag,
    );

    let RoutePolicy {
        balance,
        per_try_timeout,
        backoff,
        retry_budget,
        hedge_after,
        sticky_sessions,
        stream,
    } = route_policy(&raw, path, diag);
    if balance == Balance::Priority {
        for weight_path in weight_paths {
            diag.warn(
                &weight_path,
                r#"not used with balance = "priority" (backends are used in the order listed)"#,
            );
        }
    }

    let rate_limit = raw
        .rate_limit
        .take()
        .and_then(|r| rate_limit(r, &key_path(path, "rate_limit"), diag));
    let tokens_per_minute = super::limits::tokens_per_minute(raw.tokens_per_minute, path, diag);
    let cache = raw
        .cache
        .take()
        .and_then(|c| super::cache::cache(c, &key_path(path, "cache"), rate_limits, diag));
    let super::shadow::Shadow {
        shadow,
        shadow_max_in_flight,
        shadow_cosine_threshold,
    } = super::shadow::shadow(&mut raw, path, declared, diag);
    RouteConfig {
        name,
        backends,
        doors,
        timeout,
        attempts,
        balance,
        per_try_timeout,
        backoff,
        retry_budget,
        hedge_after,
        sticky_sessions,
        stream,
        rate_limit,
        tokens_per_minute,
        cache,
        shadow,
        shadow_max_in_flight,
        shadow_cosine_threshold,
    }
}

/// The route's `backends` list: each entry's name checked against `declared`
/// and against the entries before it. Also returns the paths of the weights
/// written out, for a warning if the balance ignores them.
fn route_backends(
    entries: Vec<RawRouteBackend>,
    path: &str,
    declared: &BTreeSet<String>,
    diag: &mut Diagnostics,
) -> (Vec<RouteBackend>, Vec<String>) {
    let list_path = key_path(path, "backends");
    if entries.is_empty() {
        diag.error(&list_path, "must list at least one backend");
    }

    let mut backends: Vec<RouteBackend> = Vec::with_capacity(entries.len());
    let mut seen = BTreeSet::new();
    let mut weight_paths = Vec::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let entry_path = index_path(&list_path, i);
        let (backend, name_path, weight) = match entry {
            RawRouteBackend::Name(backend) => (Some(backend), entry_path.clone(), None),
            RawRouteBackend::Table(t) => (t.backend, key_path(&entry_path, "backend"), t.weight),
        };
        if weight.is_some() {
            weight_paths.push(key_path(&entry_path, "weight"));
        }
        let weight = integer(
            weight,
            &key_path(&entry_path, "weight"),
            bounds::WEIGHT,
            DEFAULT_WEIGHT,
            diag,
        );
        let Some(backend) = backend else {
            diag.error(&name_path, "required");
            continue;
        };
        if !declared.contains(&backend) {
            diag.error(
                &name_path,
                format!("unknown backend {}", diag.show(&name_path, &backend)),
            );
        }
        if !seen.insert(backend.clone()) {
            diag.error(
                &entry_path,
                format!(
                    "backend {} is listed twice",
                    diag.show(&name_path, &backend)
                ),
            );
        }
        backends.push(RouteBackend { backend, weight });
    }
    (backends, weight_paths)
}
