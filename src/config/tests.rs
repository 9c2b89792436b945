//! Loading tests: the example file, defaults, and the exact text of every error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use super::raw::INVALID_DURATION;
use super::*;

const TOKEN: &str = "hf_canary_0123456789";

fn env(name: &str) -> Option<String> {
    match name {
        "HF_TOKEN" => Some(TOKEN.to_owned()),
        "SM_EXTERNAL_ID" => Some("ext-id-canary".to_owned()),
        "EMPTY" => Some(String::new()),
        "KIND" => Some("sagmaker".to_owned()),
        "QUOTED" => Some("ab\"c'd\\e".to_owned()),
        _ => None,
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(text: &str) -> Config {
    Config::from_toml(text, &env).unwrap_or_else(|e| panic!("unexpected errors:\n{e}"))
}

fn errors(text: &str) -> Vec<String> {
    match Config::from_toml(text, &env) {
        Ok(config) => panic!("expected errors, got {config:#?}"),
        Err(e) => e.0,
    }
}

const EXAMPLE: &str = include_str!("../../config/infergate.example.toml");

const SM: &str = r#"
[backends.sm-flan]
kind = "sagemaker"
endpoint_name = "flan-t5-small"
region = "us-east-1"
"#;

const HF: &str = r#"
[backends.hf-flan]
kind = "huggingface"
url = "https://abc123.us-east-1.aws.endpoints.huggingface.cloud"
token = "${HF_TOKEN}"
"#;

const ROUTE: &str = r#"
[routes.flan]
backends = ["sm-flan", "hf-flan"]
"#;

/// Both backends, one route over both, plus `extra`.
fn minimal(extra: &str) -> String {
    format!("{SM}{HF}{ROUTE}{extra}")
}

fn sagemaker(config: &Config, name: &str) -> SageMakerConfig {
    match &config.backend(name).unwrap().kind {
        BackendKind::SageMaker(sm) => sm.clone(),
        other => panic!("not sagemaker: {other:?}"),
    }
}

fn huggingface(config: &Config, name: &str) -> HuggingFaceConfig {
    match &config.backend(name).unwrap().kind {
        BackendKind::HuggingFace(hf) => hf.clone(),
        other => panic!("not huggingface: {other:?}"),
    }
}

// === the example file ===

#[test]
fn example_file_parses() {
    let config = parse(EXAMPLE);
    assert_eq!(config.server, ServerConfig::default());
    assert_eq!(config.upstream, UpstreamConfig::default());
    let names: Vec<&str> = config.backends.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["hf-flan", "sm-flan"]);
    let sm = sagemaker(&config, "sm-flan");
    assert_eq!(sm.endpoint_name, "flan-t5-small");
    assert_eq!(sm.region, "us-east-1");
    assert_eq!(sm.format, PayloadFormat::Hf);
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
            timeout: None,
            attempts: 3,
        }]
    );
    assert_eq!(config.warnings, Vec::<String>::new());
}

/// Every `# key = value` line of the example, uncommented, is valid too, so
/// the documentation of optional keys cannot rot either.
#[test]
fn example_file_commented_options_are_valid() {
    let uncommented: String = EXAMPLE
        .lines()
        .map(|line| match line.strip_prefix("# ") {
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
        .join("\n");
    assert!(uncommented.contains("\nrole_arn = "));
    let config = parse(&uncommented);
    let sm = sagemaker(&config, "sm-flan");
    assert_eq!(sm.headers.len(), 7);
    assert_eq!(sm.role_arn.as_deref(), Some("arn:aws:iam::123456789012:role/infergate"));
    assert_eq!(sm.external_id.as_deref(), Some("ext-id-canary"));
    assert!(sm.endpoint_url.is_some());
    assert_eq!(sm.profile.as_deref(), Some("prod"));
    assert_eq!(config.backend("sm-flan").unwrap().timeout, Some(Duration::from_secs(30)));
    assert_eq!(config.routes[0].timeout, Some(Duration::from_secs(60)));
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
            header_read_timeout: Duration::from_secs(10),
            max_connections: 4096,
        }
    );
    assert_eq!(
        config.upstream,
        UpstreamConfig {
            connect_timeout: Duration::from_secs(5),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 64,
        }
    );
    let sm = sagemaker(&config, "sm-flan");
    assert_eq!(sm.endpoint_url, None);
    assert!(!sm.fips);
    assert_eq!(sm.format, PayloadFormat::Hf);
    assert!(sm.headers.is_empty());
    assert_eq!(sm.profile, None);
    assert_eq!(sm.role_arn, None);
    assert_eq!(config.backend("sm-flan").unwrap().timeout, None);
    let route = &config.routes[0];
    assert_eq!(route.attempts, 3);
    assert_eq!(route.timeout, None);
    assert!(route.backends.iter().all(|b| b.weight == 1));
    assert_eq!(config.backend("nope"), None);
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
    assert_eq!(config.server.listen, "[::]:9000".parse::<SocketAddr>().unwrap());
    assert_eq!(config.server.max_body_bytes, 1024);
    assert_eq!(config.server.request_timeout, Duration::from_secs(120));
    assert_eq!(config.server.shutdown_grace, Duration::ZERO);
    assert_eq!(config.server.header_read_timeout, Duration::from_millis(500));
    assert_eq!(config.server.max_connections, 10);
    assert_eq!(config.upstream.connect_timeout, Duration::from_secs(1));
    assert_eq!(config.upstream.pool_idle_timeout, Duration::from_secs(90));
    assert_eq!(config.upstream.pool_max_idle_per_host, 0);

    let backend = config.backend("sm-jumpstart").unwrap();
    assert_eq!(backend.timeout, Some(Duration::from_secs(15)));
    let sm = sagemaker(&config, "sm-jumpstart");
    assert_eq!(sm.endpoint_url.unwrap().as_str(), "http://127.0.0.1:9001/prefix");
    assert_eq!(sm.format, PayloadFormat::JumpStartText2Text);
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
    let weights: Vec<(&str, u32)> = js.backends.iter().map(|b| (b.backend.as_str(), b.weight)).collect();
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

// === required messages ===

#[test]
fn unknown_backend_in_route() {
    assert_eq!(
        errors(&format!("{SM}{HF}[routes.flan]\nbackends = [\"sm-flan\", \"hf-flann\"]\n")),
        [r#"routes.flan.backends[1]: unknown backend "hf-flann""#]
    );
    assert_eq!(
        errors(&format!("{SM}[routes.flan]\nbackends = [{{ backend = \"hf-flann\" }}]\n")),
        [r#"routes.flan.backends[0].backend: unknown backend "hf-flann""#]
    );
}

#[test]
fn route_without_backends() {
    let expected = ["routes.flan.backends: must list at least one backend"];
    assert_eq!(errors(&format!("{SM}[routes.flan]\nbackends = []\n")), expected);
    assert_eq!(errors(&format!("{SM}[routes.flan]\nattempts = 2\n")), expected);
}

#[test]
fn weight_out_of_range() {
    for weight in ["0", "1001", "-1", "99999999999"] {
        assert_eq!(
            errors(&format!(
                "{SM}[routes.flan]\nbackends = [{{ backend = \"sm-flan\", weight = {weight} }}]\n"
            )),
            ["routes.flan.backends[0].weight: must be between 1 and 1000"],
            "weight {weight}"
        );
    }
}

#[test]
fn backend_listed_twice() {
    assert_eq!(
        errors(&format!(
            "{SM}{HF}[routes.flan]\nbackends = [\"hf-flan\", \"sm-flan\", {{ backend = \"hf-flan\", weight = 2 }}]\n"
        )),
        [r#"routes.flan.backends[2]: backend "hf-flan" is listed twice"#]
    );
}

#[test]
fn at_least_one_route() {
    let expected = ["routes: at least one route is required"];
    assert_eq!(errors(&format!("{SM}{HF}")), expected);
    assert_eq!(errors(&format!("{SM}[routes]\n")), expected);
    assert_eq!(errors(""), expected);
}

#[test]
fn required_keys_per_kind() {
    assert_eq!(
        errors("[backends.sm-flan]\nkind = \"sagemaker\"\n[routes.flan]\nbackends = [\"sm-flan\"]\n"),
        [
            r#"backends.sm-flan.endpoint_name: required for kind "sagemaker""#,
            r#"backends.sm-flan.region: required for kind "sagemaker""#,
        ]
    );
    assert_eq!(
        errors("[backends.hf-flan]\nkind = \"huggingface\"\n[routes.flan]\nbackends = [\"hf-flan\"]\n"),
        [r#"backends.hf-flan.url: required for kind "huggingface""#]
    );
    assert_eq!(
        errors("[backends.x]\nregion = \"us-east-1\"\n[routes.flan]\nbackends = [\"x\"]\n"),
        [r#"backends.x.kind: required, expected "sagemaker" or "huggingface""#]
    );
}

#[test]
fn unknown_kind() {
    assert_eq!(
        errors("[backends.x]\nkind = \"sagmaker\"\nendpoint_name = \"e\"\n[routes.flan]\nbackends = [\"x\"]\n"),
        [r#"backends.x.kind: unknown backend kind "sagmaker", expected "sagemaker" or "huggingface""#]
    );
}

#[test]
fn keys_of_the_other_kind() {
    assert_eq!(
        errors(&minimal(
            "[backends.hf-flan2]\nkind = \"huggingface\"\nurl = \"https://h\"\nendpoint_name = \"x\"\nformat = \"hf\"\n"
        )),
        [
            r#"backends.hf-flan2.endpoint_name: not valid for kind "huggingface" (only for kind "sagemaker")"#,
            r#"backends.hf-flan2.format: not valid for kind "huggingface" (only for kind "sagemaker")"#,
        ]
    );
    assert_eq!(
        errors(&minimal(
            "[backends.sm2]\nkind = \"sagemaker\"\nendpoint_name = \"e\"\nregion = \"us-east-1\"\ntoken = \"${HF_TOKEN}\"\nurl = \"https://h\"\n"
        )),
        [
            r#"backends.sm2.url: not valid for kind "sagemaker" (only for kind "huggingface")"#,
            r#"backends.sm2.token: not valid for kind "sagemaker" (only for kind "huggingface")"#,
        ]
    );
}

// === unknown keys ===

#[test]
fn unknown_keys_at_every_level() {
    assert_eq!(
        errors(&format!(
            "serverr = 1\n{}",
            minimal(
                r#"
[server]
listn = "127.0.0.1:1"
[upstream]
connect_timout = "1s"
[backends.sm2]
kind = "sagemaker"
endpoint_name = "e"
region = "us-east-1"
regoin = "x"
[routes.r2]
backends = [{ backend = "sm2", wieght = 2 }]
atempts = 2
"#
            )
        )),
        [
            "serverr: unknown key",
            "server.listn: unknown key",
            "upstream.connect_timout: unknown key",
            "backends.sm2.regoin: unknown key",
            "routes.r2.atempts: unknown key",
            "routes.r2.backends[0].wieght: unknown key",
        ]
    );
}

// === many errors in one pass ===

#[test]
fn every_error_is_collected_in_one_pass() {
    let text = r#"
[server]
listen = "localhost"
max_body_bytes = 0
request_timeout = "0s"
shutdown_grace = "soon"
bogus = true

[backends.sm-flan]
kind = "sagemaker"
endpoint_name = "-bad-"
region = "US-EAST-1"
fips = true
endpoint_url = "ftp://x"
colour = "blue"

[backends.hf-flan]
kind = "huggingface"
url = "https://h?x=1"
token = "${HF_TOKEN_UNSET}"

[routes.flan]
backends = ["sm-flan", "hf-flann", "sm-flan", { backend = "hf-flan", weight = 0 }]
attempts = 11
timeout = 30
"#;
    assert_eq!(
        errors(text),
        [
            "server.bogus: unknown key",
            &format!("server.shutdown_grace: {INVALID_DURATION}"),
            r#"server.listen: invalid socket address, expected an IP address and a port such as "127.0.0.1:8080" or "[::]:8080""#,
            "server.max_body_bytes: must be greater than 0",
            "server.request_timeout: must be greater than 0",
            r#"backends.hf-flan.token: environment variable "HF_TOKEN_UNSET" is not set"#,
            "backends.hf-flan.url: must not have a query string",
            "backends.sm-flan.colour: unknown key",
            r#"backends.sm-flan.endpoint_name: must contain only letters, digits and "-", and start and end with a letter or digit"#,
            r#"backends.sm-flan.region: must be an AWS region such as "us-east-1" (lowercase letters, digits and "-")"#,
            "backends.sm-flan.endpoint_url: must be an http or https URL",
            "backends.sm-flan.fips: cannot be combined with endpoint_url (point endpoint_url at the FIPS endpoint instead)",
            r#"routes.flan.timeout: expected a duration string such as "30s", found integer"#,
            r#"routes.flan.backends[1]: unknown backend "hf-flann""#,
            r#"routes.flan.backends[2]: backend "sm-flan" is listed twice"#,
            "routes.flan.backends[3].weight: must be between 1 and 1000",
            "routes.flan.attempts: must be between 1 and 10",
        ]
    );
}

// === interpolation ===

#[test]
fn interpolation_forms() {
    let errs = Config::from_toml(
        &format!(
            "{HF}{ROUTE}{}",
            r#"
[backends.sm-flan]
kind = "sagemaker"
endpoint_name = "${SM_ENDPOINT:-flan-t5-small}"
region = "${AWS_REGION:?set AWS_REGION or edit region}"
"#
        ),
        &env,
    )
    .unwrap_err();
    assert_eq!(
        errs.0,
        ["backends.sm-flan.region: AWS_REGION: set AWS_REGION or edit region"]
    );

    let with_region = |name: &str| match name {
        "AWS_REGION" => Some("eu-central-1".to_owned()),
        other => env(other),
    };
    let config = Config::from_toml(
        &format!(
            "{HF}{ROUTE}{}",
            r#"
[backends.sm-flan]
kind = "sagemaker"
endpoint_name = "${SM_ENDPOINT:-flan-t5-small}"
region = "${AWS_REGION:?set AWS_REGION or edit region}"
custom_attributes = "price=$$5;tag=${EMPTY:-none};${EMPTY}x"
"#
        ),
        &with_region,
    )
    .unwrap();
    let sm = sagemaker(&config, "sm-flan");
    assert_eq!(sm.endpoint_name, "flan-t5-small");
    assert_eq!(sm.region, "eu-central-1");
    assert_eq!(sm.headers[0].1, "price=$5;tag=none;x");
}

#[test]
fn unset_variable_errors_name_the_key() {
    assert_eq!(
        Config::from_toml(&minimal(""), &no_env).unwrap_err().0,
        [r#"backends.hf-flan.token: environment variable "HF_TOKEN" is not set"#]
    );
    assert_eq!(
        errors(&format!(
            "{SM}{ROUTE}[backends.hf-flan]\nkind = \"huggingface\"\nurl = \"https://h\"\ntoken = \"${{HF_TOKEN_X:?message}}\"\n"
        )),
        ["backends.hf-flan.token: HF_TOKEN_X: message"]
    );
    // `${VAR:?…}` also refuses an empty value.
    assert_eq!(
        errors(&format!(
            "{SM}{ROUTE}[backends.hf-flan]\nkind = \"huggingface\"\nurl = \"https://h\"\ntoken = \"${{EMPTY:?message}}\"\n"
        )),
        ["backends.hf-flan.token: EMPTY: message"]
    );
}

#[test]
fn a_failed_interpolation_is_reported_once() {
    // Not also "invalid URL" for the text left in place.
    assert_eq!(
        errors(&format!(
            "{SM}{ROUTE}[backends.hf-flan]\nkind = \"huggingface\"\nurl = \"${{HF_URL}}\"\n"
        )),
        [r#"backends.hf-flan.url: environment variable "HF_URL" is not set"#]
    );
    // Not also "unknown backend" for a route entry.
    assert_eq!(
        errors(&format!("{SM}{HF}[routes.flan]\nbackends = [\"${{PRIMARY}}\", \"hf-flan\"]\n")),
        [r#"routes.flan.backends[0]: environment variable "PRIMARY" is not set"#]
    );
}

#[test]
fn interpolated_values_are_never_echoed() {
    assert_eq!(
        errors("[backends.x]\nkind = \"${KIND}\"\n[routes.flan]\nbackends = [\"x\"]\n"),
        [r#"backends.x.kind: unknown backend kind (value from the environment, not shown), expected "sagemaker" or "huggingface""#]
    );
    assert_eq!(
        errors(&format!("{SM}[routes.flan]\nbackends = [\"${{HF_TOKEN}}\"]\n")),
        ["routes.flan.backends[0]: unknown backend (value from the environment, not shown)"]
    );
    let errs = errors(&format!(
        "{SM}{ROUTE}[backends.hf-flan]\nkind = \"huggingface\"\nurl = \"${{HF_TOKEN}}\"\n[server]\nlisten = \"${{HF_TOKEN}}\"\nmax_body_bytes = \"${{HF_TOKEN}}\"\n"
    ));
    assert_eq!(errs.len(), 3, "{errs:?}");
    for e in errs {
        assert!(!e.contains(TOKEN), "{e}");
    }
}

#[test]
fn interpolated_values_cannot_change_the_structure() {
    let config = parse(&format!(
        "{SM}{ROUTE}[backends.hf-flan]\nkind = \"huggingface\"\nurl = \"https://h\"\ntoken = \"${{QUOTED}}\"\n"
    ));
    let hf = huggingface(&config, "hf-flan");
    assert_eq!(hf.token.unwrap().expose(), "ab\"c'd\\e");
}

#[test]
fn interpolation_syntax_errors() {
    assert_eq!(
        errors(&minimal("[server]\nlisten = \"$HOST:8080\"\n")),
        [r#"server.listen: a "$" must start "${NAME}"; write "$$" for a literal "$""#]
    );
}

#[test]
fn empty_token_means_public_endpoint() {
    let config = parse(&format!(
        "{SM}{ROUTE}[backends.hf-flan]\nkind = \"huggingface\"\nurl = \"https://h\"\ntoken = \"${{UNSET_TOKEN:-}}\"\n"
    ));
    assert_eq!(huggingface(&config, "hf-flan").token, None);
    assert!(config.summary().contains("auth: none"));
}

// === durations and numbers ===

#[test]
fn durations() {
    assert_eq!(
        errors(&minimal("[server]\nrequest_timeout = \"60\"\n")),
        [format!("server.request_timeout: {INVALID_DURATION}")]
    );
    assert_eq!(
        errors(&minimal("[server]\nrequest_timeout = 60\n")),
        [r#"server.request_timeout: expected a duration string such as "30s", found integer"#]
    );
    assert_eq!(
        errors(&minimal("[upstream]\nconnect_timeout = \"0ms\"\npool_idle_timeout = \"0s\"\n")),
        [
            "upstream.connect_timeout: must be greater than 0",
            "upstream.pool_idle_timeout: must be greater than 0",
        ]
    );
    let text = format!(
        "{HF}[backends.sm-flan]\nkind = \"sagemaker\"\nendpoint_name = \"e\"\nregion = \"us-east-1\"\ntimeout = \"0s\"\n[routes.flan]\nbackends = [\"sm-flan\", \"hf-flan\"]\ntimeout = \"0s\"\n"
    );
    assert_eq!(
        errors(&text),
        [
            "backends.sm-flan.timeout: must be greater than 0",
            "routes.flan.timeout: must be greater than 0",
        ]
    );
}

#[test]
fn numbers() {
    assert_eq!(
        errors(&minimal(
            "[server]\nmax_body_bytes = -1\nmax_connections = 0\n[upstream]\npool_max_idle_per_host = -1\n"
        )),
        [
            "server.max_body_bytes: must be greater than 0",
            "server.max_connections: must be greater than 0",
            "upstream.pool_max_idle_per_host: must not be negative",
        ]
    );
    assert_eq!(
        errors(&minimal("[server]\nmax_body_bytes = 1.5\n")),
        ["server.max_body_bytes: expected an integer, found float"]
    );
    for attempts in ["0", "11"] {
        assert_eq!(
            errors(&format!("{SM}{HF}[routes.flan]\nbackends = [\"sm-flan\", \"hf-flan\"]\nattempts = {attempts}\n")),
            ["routes.flan.attempts: must be between 1 and 10"]
        );
    }
}

// === structure ===

#[test]
fn sections_of_the_wrong_type() {
    assert_eq!(
        errors(&minimal("upstream = 5\n")),
        // `upstream = 5` after a table header belongs to [routes.flan].
        ["routes.flan.upstream: unknown key"]
    );
    assert_eq!(
        errors(&format!("server = 5\nupstream = []\nroutes = \"flan\"\n{SM}")),
        [
            "server: expected a table, found integer",
            "upstream: expected a table, found array",
            "routes: expected a table, found string",
        ]
    );
    assert_eq!(
        errors(&format!("backends = {{ a = 1 }}\n{ROUTE}")),
        [
            "backends.a: expected a table, found integer",
            r#"routes.flan.backends[0]: unknown backend "sm-flan""#,
            r#"routes.flan.backends[1]: unknown backend "hf-flan""#,
        ]
    );
    assert_eq!(
        errors(&minimal("[routes.r2]\nbackends = \"sm-flan\"\n")),
        ["routes.r2.backends: expected an array, found string"]
    );
    assert_eq!(
        errors(&minimal("[routes.r2]\nbackends = [\"sm-flan\", 3]\n")),
        [r#"routes.r2.backends[1]: expected a backend name or a table such as { backend = "name", weight = 1 }, found integer"#]
    );
    assert_eq!(
        errors(&minimal("[routes.r2]\nbackends = [{ weight = 3 }]\n")),
        ["routes.r2.backends[0].backend: required"]
    );
}

#[test]
fn names() {
    assert_eq!(
        errors(&format!(
            "{SM}{HF}[routes.\"a/b\"]\nbackends = [\"sm-flan\", \"hf-flan\"]\n[backends.\"sm flan\"]\nkind = \"sagemaker\"\nendpoint_name = \"e\"\nregion = \"us-east-1\"\n"
        )),
        [
            r#"backends."sm flan": invalid backend name, use only letters, digits, ".", "_" and "-""#,
            r#"routes."a/b": invalid route name, use only letters, digits, ".", "_" and "-""#,
        ]
    );
    let config = parse(&format!(
        "{SM}[routes.\"v1.flan_t5-small\"]\nbackends = [\"sm-flan\"]\n"
    ));
    assert_eq!(config.routes[0].name, "v1.flan_t5-small");
}

#[test]
fn syntax_errors_report_line_and_column() {
    let errs = errors("[server]\nlisten = \n");
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("TOML syntax error at line 2, column 10: "),
        "{errs:?}"
    );
    let errs = errors("[server]\nlisten = \"a\"\nlisten = \"b\"\n");
    assert!(errs[0].starts_with("TOML syntax error at line 3, column 1: "), "{errs:?}");
}

// === sagemaker ===

fn sm_errors(keys: &str) -> Vec<String> {
    errors(&format!(
        "{HF}{ROUTE}[backends.sm-flan]\nkind = \"sagemaker\"\nendpoint_name = \"flan-t5-small\"\nregion = \"us-east-1\"\n{keys}\n"
    ))
}

#[test]
fn sagemaker_endpoint_name_and_region() {
    parse(&format!(
        "{HF}{ROUTE}[backends.sm-flan]\nkind = \"sagemaker\"\nendpoint_name = \"a--b-9\"\nregion = \"us-gov-west-1\"\n"
    ));
    let long = "a".repeat(64);
    assert_eq!(
        errors(&format!(
            "{HF}{ROUTE}[backends.sm-flan]\nkind = \"sagemaker\"\nendpoint_name = \"{long}\"\nregion = \"useast1\"\n"
        )),
        [
            "backends.sm-flan.endpoint_name: must be at most 63 characters",
            r#"backends.sm-flan.region: must be an AWS region such as "us-east-1" (lowercase letters, digits and "-")"#,
        ]
    );
    assert_eq!(
        errors(&format!(
            "{HF}{ROUTE}[backends.sm-flan]\nkind = \"sagemaker\"\nendpoint_name = \"flan_t5\"\nregion = \"us-east-1-\"\n"
        )),
        [
            r#"backends.sm-flan.endpoint_name: must contain only letters, digits and "-", and start and end with a letter or digit"#,
            r#"backends.sm-flan.region: must be an AWS region such as "us-east-1" (lowercase letters, digits and "-")"#,
        ]
    );
}

#[test]
fn sagemaker_endpoint_url_and_fips() {
    assert_eq!(
        sm_errors("endpoint_url = \"not a url\""),
        ["backends.sm-flan.endpoint_url: invalid URL: relative URL without a base"]
    );
    assert_eq!(
        sm_errors("endpoint_url = \"https://user:pw@h/#frag\""),
        [
            "backends.sm-flan.endpoint_url: must not contain a username or password",
            "backends.sm-flan.endpoint_url: must not have a fragment",
        ]
    );
    assert_eq!(
        sm_errors("endpoint_url = \"https://vpce\"\nfips = true"),
        ["backends.sm-flan.fips: cannot be combined with endpoint_url (point endpoint_url at the FIPS endpoint instead)"]
    );
    assert_eq!(
        errors(&format!(
            "{HF}{ROUTE}[backends.sm-flan]\nkind = \"sagemaker\"\nendpoint_name = \"e\"\nregion = \"cn-north-1\"\nfips = true\n"
        )),
        [r#"backends.sm-flan.fips: FIPS endpoints are only known for the aws partition, not region "cn-north-1"; set endpoint_url instead"#]
    );
    let config = parse(&format!(
        "{HF}{ROUTE}[backends.sm-flan]\nkind = \"sagemaker\"\nendpoint_name = \"e\"\nregion = \"us-east-2\"\nfips = true\n"
    ));
    assert!(sagemaker(&config, "sm-flan").fips);
    assert_eq!(
        sm_errors("fips = \"yes\""),
        ["backends.sm-flan.fips: expected a boolean, found string"]
    );
}

#[test]
fn sagemaker_credentials() {
    assert_eq!(
        sm_errors("role_arn = \"iam::123:role/x\"\nprofile = \"\""),
        [
            "backends.sm-flan.profile: must not be empty",
            r#"backends.sm-flan.role_arn: must be an IAM role ARN such as "arn:aws:iam::123456789012:role/name""#,
        ]
    );
    assert_eq!(
        sm_errors("role_session_name = \"s\"\nexternal_id = \"e\""),
        [
            "backends.sm-flan.role_session_name: only valid together with role_arn",
            "backends.sm-flan.external_id: only valid together with role_arn",
        ]
    );
    assert_eq!(
        sm_errors("role_arn = \"arn:aws:iam::1:role/x\"\nrole_session_name = \"a b\"\nexternal_id = \"x\""),
        [
            r#"backends.sm-flan.role_session_name: must be 2 to 64 characters among letters, digits and "+=,.@_-""#,
            r#"backends.sm-flan.external_id: must be 2 to 1224 characters among letters, digits and "+=,.@:/_-""#,
        ]
    );
}

#[test]
fn sagemaker_headers() {
    let long = "v".repeat(64);
    let attrs = "a".repeat(1025);
    assert_eq!(
        sm_errors(&format!(
            "target_variant = \"{long}\"\ntarget_model = \"\"\ncustom_attributes = \"{attrs}\"\ninference_id = \"caf\u{e9}\"\nenable_explanations = \" x\""
        )),
        [
            "backends.sm-flan.target_variant: must be 1 to 63 characters",
            "backends.sm-flan.target_model: must be 1 to 1024 characters",
            "backends.sm-flan.custom_attributes: must be 1 to 1024 characters",
            "backends.sm-flan.enable_explanations: must be printable ASCII, without leading or trailing spaces",
            "backends.sm-flan.inference_id: must be printable ASCII, without leading or trailing spaces",
        ]
    );
    assert_eq!(
        sm_errors("custom_attributes = \"line\\nbreak\""),
        ["backends.sm-flan.custom_attributes: must be printable ASCII, without leading or trailing spaces"]
    );
}

#[test]
fn sagemaker_format() {
    assert_eq!(
        sm_errors("format = \"jumpstart\""),
        [r#"backends.sm-flan.format: unknown format "jumpstart", expected "hf" or "jumpstart-text2text""#]
    );
}

// === huggingface ===

#[test]
fn huggingface_url_and_token() {
    let hf = |keys: &str| {
        format!("{SM}{ROUTE}[backends.hf-flan]\nkind = \"huggingface\"\n{keys}\n")
    };
    assert_eq!(
        errors(&hf("url = \"ftp://h/x?y#z\"")),
        [
            "backends.hf-flan.url: must be an http or https URL",
            "backends.hf-flan.url: must not have a query string",
            "backends.hf-flan.url: must not have a fragment",
        ]
    );
    assert_eq!(
        errors(&hf("url = \"https://h:99999\"")),
        ["backends.hf-flan.url: invalid URL: invalid port number"]
    );
    assert_eq!(
        errors(&hf("url = \"https://h\"\ntoken = \"hf_abc\\n\"")),
        ["backends.hf-flan.token: must contain only visible ASCII characters (no spaces or line breaks)"]
    );
    let config = parse(&hf("url = \"http://10.0.0.1:8080/base/\""));
    let endpoint = huggingface(&config, "hf-flan");
    assert_eq!(endpoint.url.as_str(), "http://10.0.0.1:8080/base/");
    assert_eq!(endpoint.token, None);
}

// === warnings ===

#[test]
fn warnings() {
    let config = parse(&minimal(
        "[backends.spare]\nkind = \"huggingface\"\nurl = \"https://spare\"\ntoken = \"hf_inline\"\n",
    ));
    assert_eq!(
        config.warnings,
        [
            r#"backends.spare.token: written inline in the file; prefer a reference to the environment such as "${HF_TOKEN}""#,
            "backends.spare: not used by any route",
        ]
    );
    for w in &config.warnings {
        assert!(!w.contains("hf_inline"));
    }
}

// === secrets stay secret ===

#[test]
fn debug_and_summary_never_show_the_token() {
    let config = parse(EXAMPLE);
    let debug = format!("{config:?} {config:#?}");
    assert!(!debug.contains(TOKEN), "{debug}");
    assert!(debug.contains("Secret(***)"));
    let summary = config.summary();
    assert!(!summary.contains(TOKEN), "{summary}");
}

#[test]
fn summary_lists_routes_and_backends() {
    let config = parse(&minimal(
        r#"
[backends.sm-role]
kind = "sagemaker"
endpoint_name = "e2"
region = "eu-west-1"
role_arn = "arn:aws:iam::123456789012:role/x"
external_id = "${SM_EXTERNAL_ID}"
format = "jumpstart-text2text"

[backends.hf-public]
kind = "huggingface"
url = "https://public.example"

[routes.other]
backends = [{ backend = "sm-role", weight = 3 }, "hf-public"]
"#,
    ));
    let summary = config.summary();
    for expected in [
        "flan  POST /v1/predict/flan  attempts 3, timeout 1m (server.request_timeout)",
        "    -> sm-role  weight 3/4",
        "    -> hf-public  weight 1/4",
        "  sm-flan  sagemaker",
        "    endpoint: flan-t5-small",
        "    region: us-east-1",
        "    auth: aws default chain",
        "    auth: assume role arn:aws:iam::123456789012:role/x",
        "    format: jumpstart-text2text",
        "  hf-flan  huggingface",
        "    url: https://abc123.us-east-1.aws.endpoints.huggingface.cloud/",
        "    auth: token",
        "    auth: none",
    ] {
        assert!(summary.contains(expected), "missing {expected:?} in:\n{summary}");
    }
    assert!(!summary.contains("ext-id-canary"), "{summary}");
    assert!(!summary.contains(TOKEN), "{summary}");
}

// === errors and loading ===

#[test]
fn config_errors_display_one_per_line() {
    let e = ConfigErrors(vec!["a: x".to_owned(), "b: y".to_owned()]);
    assert_eq!(e.to_string(), "a: x\nb: y");
    let _: &dyn std::error::Error = &e;
}

#[test]
fn load_names_the_file() {
    let path = std::path::Path::new("/nonexistent/infergate.toml");
    let err = Config::load(path).unwrap_err();
    assert_eq!(err.0.len(), 1);
    assert!(
        err.0[0].starts_with("/nonexistent/infergate.toml: cannot read the configuration file: "),
        "{err}"
    );

    let path = std::env::temp_dir().join(format!("infergate-config-test-{}.toml", std::process::id()));
    std::fs::write(&path, format!("{SM}[routes.flan]\nbackends = [\"sm-flan\"]\n")).unwrap();
    let loaded = Config::load(&path);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(loaded.unwrap().routes[0].backends[0].backend, "sm-flan");
}
