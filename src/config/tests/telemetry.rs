//! `[telemetry]`: defaults, the exact errors, and the build without the
//! `otlp` feature refusing `otlp_endpoint`.

use super::*;

fn telemetry(section: &str) -> String {
    minimal(&format!("\n[telemetry]\n{section}\n"))
}

#[test]
fn defaults_export_nothing() {
    let config = parse(&minimal(""));
    assert_eq!(
        config.telemetry,
        TelemetryConfig {
            otlp_endpoint: None,
            service_name: "infergate".to_owned(),
            otlp_timeout: Duration::from_secs(10),
        }
    );
    assert_eq!(config.telemetry.otlp_traces_url(), None);
    assert!(!config.summary().contains("telemetry"));
    // An empty section, and the keys that need no feature.
    assert_eq!(parse(&telemetry("")).telemetry, TelemetryConfig::default());
    let config = parse(&telemetry(
        "service_name = \" gw-eu \"\notlp_timeout = \"1m 30s\"",
    ));
    assert_eq!(config.telemetry.service_name, "gw-eu");
    assert_eq!(config.telemetry.otlp_timeout, Duration::from_secs(90));
    assert_eq!(config.telemetry.otlp_endpoint, None);
}

#[test]
fn errors_name_their_key() {
    assert_eq!(
        errors(&telemetry(
            "service_name = \"\"\notlp_timeout = \"0s\"\notlp_endpiont = \"x\""
        )),
        [
            "telemetry.otlp_endpiont: unknown key",
            "telemetry.service_name: must not be empty",
            "telemetry.otlp_timeout: must be greater than 0",
        ]
    );
    assert_eq!(
        errors(&telemetry("service_name = \"a\\tb\"\notlp_timeout = 10")),
        [
            r#"telemetry.otlp_timeout: expected a duration string such as "30s", found integer"#,
            "telemetry.service_name: must not contain control characters",
        ]
    );
    assert_eq!(
        errors(&telemetry("otlp_timeout = \"soon\"")),
        [format!("telemetry.otlp_timeout: {INVALID_DURATION}")]
    );
    assert_eq!(
        errors(&format!("telemetry = 1\n{}", minimal(""))),
        ["telemetry: expected a table, found integer"]
    );
    assert_eq!(
        errors(&minimal("\n[telemetry]\nservice_name = \"${OTEL_NAME}\"\n")),
        [r#"telemetry.service_name: environment variable "OTEL_NAME" is not set"#]
    );
}

#[test]
fn traces_url_appends_the_signal_path_once() {
    let url = |endpoint: &str| {
        TelemetryConfig {
            otlp_endpoint: Some(endpoint.parse().unwrap()),
            ..TelemetryConfig::default()
        }
        .otlp_traces_url()
        .unwrap()
        .to_string()
    };
    assert_eq!(
        url("http://127.0.0.1:4318"),
        "http://127.0.0.1:4318/v1/traces"
    );
    assert_eq!(
        url("http://127.0.0.1:4318/"),
        "http://127.0.0.1:4318/v1/traces"
    );
    assert_eq!(
        url("https://otel.example/otlp/"),
        "https://otel.example/otlp/v1/traces"
    );
    assert_eq!(
        url("https://otel.example/otlp/v1/traces"),
        "https://otel.example/otlp/v1/traces"
    );
}

/// The example's `otlp_endpoint` line, uncommented (it is indented so that
/// the generic "uncomment every option" test leaves it alone).
fn example_with_otlp_endpoint() -> String {
    const LINE: &str = "#   otlp_endpoint = \"http://127.0.0.1:4318\"";
    assert_eq!(EXAMPLE.matches(LINE).count(), 1);
    EXAMPLE.replace(LINE, "otlp_endpoint = \"http://127.0.0.1:4318\"")
}

#[cfg(not(feature = "otlp"))]
#[test]
fn a_build_without_the_feature_refuses_otlp_endpoint() {
    let expected =
        ["telemetry.otlp_endpoint: this build has no OTLP export; build with --features otlp"];
    assert_eq!(
        errors(&telemetry("otlp_endpoint = \"http://127.0.0.1:4318\"")),
        expected
    );
    // Not a URL check: the value does not matter (and is not echoed).
    assert_eq!(
        errors(&telemetry("otlp_endpoint = \"not a url\"")),
        expected
    );
    assert_eq!(
        Config::from_toml(&example_with_otlp_endpoint(), &env)
            .unwrap_err()
            .0,
        expected
    );
}

#[cfg(feature = "otlp")]
#[test]
fn otlp_endpoint_is_an_http_url() {
    let config = parse(&telemetry(
        "otlp_endpoint = \"http://127.0.0.1:4318\"\nservice_name = \"gw\"\notlp_timeout = \"2s\"",
    ));
    let t = &config.telemetry;
    assert_eq!(
        t.otlp_endpoint.as_ref().map(reqwest::Url::as_str),
        Some("http://127.0.0.1:4318/")
    );
    assert_eq!(
        t.otlp_traces_url().map(String::from).as_deref(),
        Some("http://127.0.0.1:4318/v1/traces")
    );
    assert!(
        config.summary().contains(
            "telemetry: OTLP spans to http://127.0.0.1:4318/v1/traces as service \"gw\", timeout 2s\n"
        ),
        "{}",
        config.summary()
    );
    assert_eq!(
        errors(&telemetry("otlp_endpoint = \"grpc://u:p@h:4317/?x#y\"")),
        [
            "telemetry.otlp_endpoint: must be an http or https URL",
            "telemetry.otlp_endpoint: must not contain a username or password",
            "telemetry.otlp_endpoint: must not have a query string",
            "telemetry.otlp_endpoint: must not have a fragment",
        ]
    );
    assert_eq!(
        errors(&telemetry("otlp_endpoint = \"localhost:4318\"")),
        ["telemetry.otlp_endpoint: must be an http or https URL"]
    );
    assert_eq!(
        errors(&telemetry("otlp_endpoint = \"localhost\"")),
        ["telemetry.otlp_endpoint: invalid URL: relative URL without a base"]
    );
    let example = parse(&example_with_otlp_endpoint());
    assert_eq!(
        example
            .telemetry
            .otlp_traces_url()
            .map(String::from)
            .as_deref(),
        Some("http://127.0.0.1:4318/v1/traces")
    );
}
