//! Loading tests: the example file, defaults, and the exact text of every
//! error. Shared fixtures are here; the cases are grouped by concern below.

mod backends;
mod bounds;
mod cache;
mod clients;
mod diff_log;
mod doors;
mod errors;
mod interpolation;
mod output;
mod resilience;
mod shadow;
mod telemetry;
mod tls;

use std::net::SocketAddr;
use std::time::Duration;

use super::raw::INVALID_DURATION;
use super::*;

pub(super) const TOKEN: &str = "hf_canary_0123456789";

pub(super) fn env(name: &str) -> Option<String> {
    match name {
        "HF_TOKEN" => Some(TOKEN.to_owned()),
        "SM_EXTERNAL_ID" => Some("ext-id-canary".to_owned()),
        "EMPTY" => Some(String::new()),
        "KIND" => Some("sagmaker".to_owned()),
        "QUOTED" => Some("ab\"c'd\\e".to_owned()),
        "WEB_APP_KEY" => Some("web-app-canary-key".to_owned()),
        "WEB_APP_KEY_NEXT" => Some("web-app-canary-key-2".to_owned()),
        "WEB_APP_AWS_SECRET" => Some("web-app-aws-canary-secret".to_owned()),
        "WEB_APP_AWS_TOKEN" => Some("web-app-aws-canary-token".to_owned()),
        _ => None,
    }
}

pub(super) fn no_env(_: &str) -> Option<String> {
    None
}

pub(super) fn parse(text: &str) -> Config {
    Config::from_toml(text, &env).unwrap_or_else(|e| panic!("unexpected errors:\n{e}"))
}

pub(super) fn errors(text: &str) -> Vec<String> {
    match Config::from_toml(text, &env) {
        Ok(config) => panic!("expected errors, got {config:#?}"),
        Err(e) => e.0,
    }
}

pub(super) const EXAMPLE: &str = include_str!("../../../config/infergate.example.toml");

pub(super) const SM: &str = r#"
[backends.sm-flan]
kind = "sagemaker"
endpoint_name = "flan-t5-small"
region = "us-east-1"
"#;

pub(super) const HF: &str = r#"
[backends.hf-flan]
kind = "huggingface"
url = "https://abc123.us-east-1.aws.endpoints.huggingface.cloud"
token = "${HF_TOKEN}"
"#;

pub(super) const ROUTE: &str = r#"
[routes.flan]
backends = ["sm-flan", "hf-flan"]
"#;

/// Both backends, one route over both, plus `extra`.
pub(super) fn minimal(extra: &str) -> String {
    format!("{SM}{HF}{ROUTE}{extra}")
}

pub(super) fn sagemaker(config: &Config, name: &str) -> SageMakerConfig {
    match &config.backend(name).unwrap().kind {
        BackendKind::SageMaker(sm) => sm.clone(),
        other => panic!("not sagemaker: {other:?}"),
    }
}

pub(super) fn huggingface(config: &Config, name: &str) -> HuggingFaceConfig {
    match &config.backend(name).unwrap().kind {
        BackendKind::HuggingFace(hf) => hf.clone(),
        other => panic!("not huggingface: {other:?}"),
    }
}

// === the example file ===

#[test]
fn example_file_parses() {
    let config = parse(EXAMPLE);
    // The defaults, but for the client the example configures.
    assert_eq!(
        config.server,
        ServerConfig {
            auth: AuthMode::Required,
            ..ServerConfig::default()
        }
    );
    assert_eq!(config.clients.len(), 1);
    assert_eq!(config.clients[0].name, "web-app");
    assert_eq!(config.upstream, UpstreamConfig::default());
    assert_eq!(config.telemetry, TelemetryConfig::default());
    let names: Vec<&str> = config.backends.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["hf-flan", "sm-flan"]);
    let sm = sagemaker(&config, "sm-flan");
    assert_eq!(sm.endpoint_name, "flan-t5-small");
    assert_eq!(sm.region, "us-east-1");
    assert_eq!(config.backend("sm-flan").unwrap().container, Container::Tgi);
    let hf = huggingface(&config, "hf-flan");
    assert_eq!(hf.token.as_ref().map(Secret::expose), Some(TOKEN));
    assert_eq!(
        hf.url.as_str(),
        "https://abc123.us-east-1.aws.endpoints.huggingface.cloud/"
    );
    assert_eq!(
        config.routes,
        [RouteConfig {
            name: "flan".to_owned(),
            backends: vec![
                RouteBackend {
                    backend: "sm-flan".to_owned(),
                    weight: 3
                },
                RouteBackend {
                    backend: "hf-flan".to_owned(),
                    weight: 1
                },
            ],
            doors: None,
            timeout: None,
            attempts: 3,
            balance: Balance::P2c,
            per_try_timeout: None,
            backoff: BackoffConfig::default(),
            retry_budget: RetryBudgetConfig::default(),
            hedge_after: None,
            stream: StreamConfig::default(),
            sticky_sessions: true,
            rate_limit: None,
            tokens_per_minute: None,
            cache: None,
            shadow: Vec::new(),
            shadow_max_in_flight: DEFAULT_SHADOW_MAX_IN_FLIGHT,
            shadow_cosine_threshold: DEFAULT_SHADOW_COSINE_THRESHOLD,
        }]
    );
    for backend in &config.backends {
        assert_eq!(backend.max_in_flight, None);
        assert_eq!(backend.outlier, OutlierConfig::default());
    }
    assert_eq!(hf.health_check, None);
    assert_eq!(config.warnings, Vec::<String>::new());
}

/// The example with every `# key = value` line uncommented.
pub(super) fn uncommented_example() -> String {
    // The example's CA files are read at check time: point them at one.
    let ca = tls::pem_file("example", tls::PEM_BLOCK);
    let ca = ca.display().to_string();
    // And the listener's certificate and key, its client CA the same file.
    let (cert, key) = tls::listener_files("example");
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    EXAMPLE
        .replace("/etc/infergate/ca.pem", &ca)
        .replace("/etc/infergate/hf-ca.pem", &ca)
        .replace("/etc/infergate/tls.crt", &cert)
        .replace("/etc/infergate/tls.key", &key)
        .replace("/etc/infergate/clients-ca.crt", &cert)
        // The diff log's directory is looked for at check time too.
        .replace(
            "/var/log/infergate/",
            &format!("{}/", std::env::temp_dir().display()),
        )
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            // Optional tables too, so their keys land in them.
            Some(rest) if rest.starts_with('[') && rest.ends_with(']') => rest,
            Some(rest)
                if rest.split_once(" = ").is_some_and(|(key, _)| {
                    !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                }) =>
            {
                rest
            }
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `# key = value` line of the example, uncommented, is valid too, so
/// the documentation of optional keys cannot rot either.
#[test]
fn example_file_commented_options_are_valid() {
    let uncommented = uncommented_example();
    assert!(uncommented.contains("\nrole_arn = "));
    let config = parse(&uncommented);
    let sm = sagemaker(&config, "sm-flan");
    assert_eq!(sm.headers.len(), 7);
    assert_eq!(
        sm.role_arn.as_deref(),
        Some("arn:aws:iam::123456789012:role/infergate")
    );
    assert_eq!(
        sm.external_id.as_ref().map(Secret::expose),
        Some("ext-id-canary")
    );
    assert!(sm.endpoint_url.is_some());
    assert_eq!(sm.profile.as_deref(), Some("prod"));
    assert_eq!(
        config.backend("sm-flan").unwrap().timeout,
        Some(Duration::from_secs(30))
    );
    assert_eq!(config.routes[0].timeout, Some(Duration::from_secs(60)));
    assert!(config.upstream.tls_ca_file.is_some());
    assert!(config.backend("hf-flan").unwrap().tls_ca_file.is_some());
    let listener = config.server.tls.as_ref().unwrap();
    assert!(listener.client_ca_file.is_some());
    assert!(config.server.admin_listen.is_some());
    let web = config.clients.iter().find(|c| c.name == "web-app").unwrap();
    assert!(web.admin);
    assert_eq!(
        web.aws.as_ref().unwrap().access_key_id,
        "AKIAINFERGATEWEB01"
    );

    // The resilience keys: examples where there is no default, else defaults.
    let route = &config.routes[0];
    assert_eq!(route.per_try_timeout, Some(Duration::from_secs(20)));
    assert_eq!(route.hedge_after, Some(Duration::from_millis(500)));
    assert_eq!(route.backoff, BackoffConfig::default());
    assert_eq!(route.retry_budget, RetryBudgetConfig::default());
    assert!(route.sticky_sessions);
    let sm = config.backend("sm-flan").unwrap();
    assert_eq!(sm.max_in_flight, Some(64));
    assert_eq!(sm.outlier, OutlierConfig::default());
    assert_eq!(
        huggingface(&config, "hf-flan").health_check,
        Some(HealthCheckConfig {
            interval: Duration::from_secs(10),
            path: "/health".to_owned(),
            timeout: Duration::from_secs(2),
        })
    );
}

// === defaults ===

#[test]
fn defaults() {
    let config = parse(&minimal(""));
    assert_eq!(
        config.server,
        ServerConfig {
            listen: "127.0.0.1:8080".parse::<SocketAddr>().unwrap(),
            max_body_bytes: 6_291_456,
            request_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
            shutdown_delay: Duration::ZERO,
            watch_config: true,
            watch_interval: Duration::from_secs(1),
            pid_file: None,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
            workers: None,
            auth: crate::config::AuthMode::None,
            admin_listen: None,
            tls: None,
        }
    );
    assert_eq!(
        config.upstream,
        UpstreamConfig {
            connect_timeout: Duration::from_secs(5),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 4096,
            tls_ca_file: None,
        }
    );
    let sm = sagemaker(&config, "sm-flan");
    assert_eq!(sm.endpoint_url, None);
    assert!(!sm.fips);
    assert_eq!(config.backend("sm-flan").unwrap().container, Container::Tgi);
    assert!(sm.headers.is_empty());
    assert_eq!(sm.profile, None);
    assert_eq!(sm.role_arn, None);
    assert_eq!(config.backend("sm-flan").unwrap().timeout, None);
    let route = &config.routes[0];
    assert_eq!(route.attempts, 3);
    assert_eq!(route.timeout, None);
    assert!(route.backends.iter().all(|b| b.weight == 1));
    assert_eq!(config.backend("nope"), None);

    // Resilience: p2c, backoff 25ms..1s, budget 20% + 10/s over 10s, no
    // per-try timeout, no hedging, sticky sessions on.
    assert_eq!(route.balance, Balance::P2c);
    assert_eq!(route.per_try_timeout, None);
    assert_eq!(
        route.backoff,
        BackoffConfig {
            base: Duration::from_millis(25),
            max: Duration::from_secs(1),
        }
    );
    assert_eq!(
        route.retry_budget,
        RetryBudgetConfig {
            ratio: 0.2,
            min_per_second: 10,
            window: Duration::from_secs(10),
        }
    );
    assert_eq!(route.hedge_after, None);
    assert!(route.sticky_sessions);
    // Unlimited in flight, eject after 5 failures for 30s..5m, no active checks.
    for backend in &config.backends {
        assert_eq!(backend.max_in_flight, None);
        assert_eq!(
            backend.outlier,
            OutlierConfig {
                eject_after: 5,
                base_ejection: Duration::from_secs(30),
                max_ejection: Duration::from_secs(300),
            }
        );
    }
    assert_eq!(huggingface(&config, "hf-flan").health_check, None);
}

#[test]
fn every_key_set() {
    let config = parse(&minimal(
        r#"
[server]
listen = "[::]:9000"
max_body_bytes = 1024
request_timeout = "2m"
shutdown_grace = "0s"
header_read_timeout = "500ms"
max_connections = 10
workers = 3

[upstream]
connect_timeout = "1s"
pool_idle_timeout = "1m 30s"
pool_max_idle_per_host = 0

[backends.sm-jumpstart]
kind = "sagemaker"
endpoint_name = "js-flan"
region = "eu-west-1"
endpoint_url = "http://127.0.0.1:9001/prefix"
profile = "prod"
role_arn = "arn:aws:iam::123456789012:role/x"
role_session_name = "infergate"
external_id = "ext-id"
target_variant = "AllTraffic"
custom_attributes = "a=b"
format = "jumpstart-text2text"
timeout = "15s"

[routes.js]
backends = [{ backend = "sm-jumpstart", weight = 1000 }, { backend = "hf-flan" }]
timeout = "5s"
attempts = 10
"#,
    ));
    assert_eq!(
        config.server.listen,
        "[::]:9000".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(config.server.max_body_bytes, 1024);
    assert_eq!(config.server.request_timeout, Duration::from_secs(120));
    assert_eq!(config.server.shutdown_grace, Duration::ZERO);
    assert_eq!(
        config.server.header_read_timeout,
        Duration::from_millis(500)
    );
    assert_eq!(config.server.max_connections, 10);
    assert_eq!(config.server.workers, Some(3));
    assert_eq!(config.server.worker_count(), 3);
    assert_eq!(config.upstream.connect_timeout, Duration::from_secs(1));
    assert_eq!(config.upstream.pool_idle_timeout, Duration::from_secs(90));
    assert_eq!(config.upstream.pool_max_idle_per_host, 0);

    let backend = config.backend("sm-jumpstart").unwrap();
    assert_eq!(backend.timeout, Some(Duration::from_secs(15)));
    let sm = sagemaker(&config, "sm-jumpstart");
    assert_eq!(
        sm.endpoint_url.unwrap().as_str(),
        "http://127.0.0.1:9001/prefix"
    );
    assert_eq!(backend.container, Container::JumpStartText2Text);
    assert_eq!(sm.role_session_name.as_deref(), Some("infergate"));
    assert_eq!(
        sm.headers,
        [
            (
                http::HeaderName::from_static("x-amzn-sagemaker-target-variant"),
                http::HeaderValue::from_static("AllTraffic")
            ),
            (
                http::HeaderName::from_static("x-amzn-sagemaker-custom-attributes"),
                http::HeaderValue::from_static("a=b")
            ),
        ]
    );

    let names: Vec<&str> = config.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["flan", "js"]);
    let js = &config.routes[1];
    assert_eq!(js.timeout, Some(Duration::from_secs(5)));
    assert_eq!(js.attempts, 10);
    let weights: Vec<(&str, u32)> = js
        .backends
        .iter()
        .map(|b| (b.backend.as_str(), b.weight))
        .collect();
    assert_eq!(weights, [("sm-jumpstart", 1000), ("hf-flan", 1)]);
}

#[test]
fn strings_and_tables_mix_in_a_route() {
    let config = parse(&format!(
        "{SM}{HF}[routes.flan]\nbackends = [\"sm-flan\", {{ backend = \"hf-flan\", weight = 7 }}]\n"
    ));
    let weights: Vec<u32> = config.routes[0].backends.iter().map(|b| b.weight).collect();
    assert_eq!(weights, [1, 7]);
}

// === drain and reload ===

#[test]
fn shutdown_delay_defaults_to_five_seconds_in_kubernetes_only() {
    let text = minimal("");
    let outside = Config::from_toml(&text, &env).unwrap();
    assert_eq!(outside.server.shutdown_delay, Duration::ZERO);
    let in_kubernetes = |name: &str| match name {
        "KUBERNETES_SERVICE_HOST" => Some("10.96.0.1".to_owned()),
        other => env(other),
    };
    let inside = Config::from_toml(&text, &in_kubernetes).unwrap();
    assert_eq!(inside.server.shutdown_delay, Duration::from_secs(5));
    // A value set in the file wins there too.
    let set = minimal("[server]\nshutdown_delay = \"0s\"\n");
    let inside = Config::from_toml(&set, &in_kubernetes).unwrap();
    assert_eq!(inside.server.shutdown_delay, Duration::ZERO);
}

#[test]
fn the_reload_keys_are_read() {
    let config = parse(&minimal(
        "[server]\nshutdown_delay = \"3s\"\nwatch_config = false\nwatch_interval = \"250ms\"\npid_file = \"/run/infergate.pid\"\n",
    ));
    let s = &config.server;
    assert_eq!(s.shutdown_delay, Duration::from_secs(3));
    assert!(!s.watch_config);
    assert_eq!(s.watch_interval, Duration::from_millis(250));
    assert_eq!(
        s.pid_file.as_deref(),
        Some(std::path::Path::new("/run/infergate.pid"))
    );
    let errors = errors(&minimal("[server]\nwatch_config = \"yes\"\n"));
    assert!(
        errors.iter().any(|e| e.starts_with("server.watch_config")),
        "{errors:?}"
    );
}
