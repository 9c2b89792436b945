//! What comes out besides the config: warnings, summary, Debug, errors, load.

use super::*;

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

[clients.web]
api_keys = ["${HF_TOKEN}", "k2"]
routes = ["fl*"]
"#,
    ));
    let summary = config.summary();
    for expected in [
        "flan  POST /v1/predict/flan  attempts 3, timeout 1m (server.request_timeout)",
        "    doors: predict /v1/predict/flan /v1/predict/flan/stream; sagemaker /endpoints/flan/invocations /endpoints/flan/invocations-response-stream",
        "    -> sm-role  weight 3/4",
        "    -> hf-public  weight 1/4",
        "  sm-flan  sagemaker",
        "    endpoint: flan-t5-small",
        "    region: us-east-1",
        "    auth: aws default chain",
        "    auth: assume role arn:aws:iam::123456789012:role/x",
        "    container: jumpstart-text2text (predict, generate, completion; answers whole)",
        "    container: tgi (predict, generate, chat, completion; streams)",
        "  hf-flan  huggingface",
        "    url: https://abc123.us-east-1.aws.endpoints.huggingface.cloud/",
        "    auth: token",
        "    auth: none",
        "auth: a client's API key required",
        "  client web: 2 keys, routes: fl*",
    ] {
        assert!(
            summary.contains(expected),
            "missing {expected:?} in:\n{summary}"
        );
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

    let path =
        std::env::temp_dir().join(format!("infergate-config-test-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        format!("{SM}[routes.flan]\nbackends = [\"sm-flan\"]\n"),
    )
    .unwrap();
    let loaded = Config::load(&path);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(loaded.unwrap().routes[0].backends[0].backend, "sm-flan");
}
