//! `${…}` interpolation through the whole loader.

use super::*;

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
        errors(&format!(
            "{SM}{HF}[routes.flan]\nbackends = [\"${{PRIMARY}}\", \"hf-flan\"]\n"
        )),
        [r#"routes.flan.backends[0]: environment variable "PRIMARY" is not set"#]
    );
}

#[test]
fn interpolated_values_are_never_echoed() {
    assert_eq!(
        errors("[backends.x]\nkind = \"${KIND}\"\n[routes.flan]\nbackends = [\"x\"]\n"),
        [
            r#"backends.x.kind: unknown backend kind (value from the environment, not shown), expected "sagemaker" or "huggingface""#
        ]
    );
    assert_eq!(
        errors(&format!(
            "{SM}[routes.flan]\nbackends = [\"${{HF_TOKEN}}\"]\n"
        )),
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

/// Checks that quote a value they could not use (a file that cannot be
/// read, an unknown mode or store, a client's route pattern) never quote
/// one from the environment, in errors or warnings.
#[test]
fn values_from_the_environment_stay_out_of_every_check_that_quotes_one() {
    let in_hf = |line: &str| {
        minimal("").replace(
            "[backends.hf-flan]\n",
            &format!("[backends.hf-flan]\n{line}\n"),
        )
    };
    let mut texts = vec![
        in_hf("tls_ca_file = \"${HF_TOKEN}\""),
        in_hf("tls_ca_file = \"/tmp/${HF_TOKEN}/ca.pem\""),
    ];
    let cases = [
        "[upstream]\ntls_ca_file = \"${HF_TOKEN}\"\n",
        "[server]\nauth = \"${HF_TOKEN}\"\n",
        "[server.tls]\ncert_file = \"${HF_TOKEN}\"\nkey_file = \"${HF_TOKEN}\"\n",
        "[rate_limits]\nstore = \"${HF_TOKEN}\"\n",
        "[clients.x]\napi_key = \"k-1234\"\naws_access_key_id = \"AKIAX\"\naws_secret_access_key_file = \"${HF_TOKEN}\"\n",
    ];
    texts.extend(cases.iter().map(|case| minimal(case)));
    for text in &texts {
        let case = text.as_str();
        let found = match Config::from_toml(text, &env) {
            Ok(config) => config.warnings,
            Err(e) => e.0,
        };
        assert!(!found.is_empty(), "{case}: nothing reported");
        for line in found {
            assert!(!line.contains(TOKEN), "{case}: {line}");
        }
    }
    // A warning too: a client's route pattern that matches nothing.
    let text = minimal("[clients.x]\napi_key = \"k-1234\"\nroutes = [\"${HF_TOKEN}\"]\n");
    let config = Config::from_toml(&text, &env).unwrap();
    assert!(!config.warnings.is_empty());
    for w in &config.warnings {
        assert!(!w.contains(TOKEN), "{w}");
    }
}
