//! Kind-specific checks of SageMaker and Hugging Face backends.

use super::*;

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
            "backends.sm-flan.target_variant: must be 0 to 63 printable ASCII characters",
            "backends.sm-flan.target_model: must be 1 to 1024 printable ASCII characters",
            "backends.sm-flan.custom_attributes: must be 0 to 1024 printable ASCII characters",
            "backends.sm-flan.enable_explanations: must not be empty or start or end with a space",
            "backends.sm-flan.inference_id: must be 1 to 64 printable ASCII characters",
        ]
    );
    assert_eq!(
        sm_errors("custom_attributes = \"line\\nbreak\""),
        ["backends.sm-flan.custom_attributes: must be 0 to 1024 printable ASCII characters"]
    );
}

#[test]
fn sagemaker_format_and_container() {
    const ALL: &str = r#""tgi", "lmi", "tei", "hf-toolkit", "jumpstart-text2text""#;
    assert_eq!(
        sm_errors("format = \"jumpstart\""),
        [format!(
            r#"backends.sm-flan.format: unknown format "jumpstart", expected one of "hf", {ALL}"#
        )]
    );
    assert_eq!(
        sm_errors("container = \"vllm\""),
        [format!(
            r#"backends.sm-flan.container: unknown container "vllm", expected one of {ALL}"#
        )]
    );
    assert_eq!(
        sm_errors("container = \"lmi\"\nformat = \"hf\""),
        [
            r#"backends.sm-flan.format: says "tgi" but container says "lmi": format is the older name of container, set only one"#
        ]
    );
    for (keys, container) in [
        ("format = \"hf\"", Container::Tgi),
        ("format = \"lmi\"", Container::Lmi),
        ("container = \"tei\"", Container::Tei),
        (
            "container = \"jumpstart-text2text\"\nformat = \"jumpstart-text2text\"",
            Container::JumpStartText2Text,
        ),
        ("", Container::Tgi),
    ] {
        let config = parse(&format!("{HF}{ROUTE}{SM}{keys}\n"));
        assert_eq!(
            config.backend("sm-flan").unwrap().container,
            container,
            "{keys}"
        );
    }
}

// === huggingface ===

#[test]
fn huggingface_url_and_token() {
    let hf =
        |keys: &str| format!("{SM}{ROUTE}[backends.hf-flan]\nkind = \"huggingface\"\n{keys}\n");
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
    assert_eq!(
        errors(&hf("url = \"https://h\"\ncontainer = \"lmi\"")),
        [
            r#"backends.hf-flan.container: "lmi" runs on SageMaker only; a Hugging Face endpoint runs "tgi", "tei" or "hf-toolkit""#
        ]
    );
    assert_eq!(
        errors(&hf("url = \"https://h\"\nformat = \"hf\"")),
        [
            r#"backends.hf-flan.format: not valid for kind "huggingface" (only for kind "sagemaker")"#
        ]
    );
    let config = parse(&hf("url = \"https://h\"\ncontainer = \"tei\""));
    assert_eq!(config.backend("hf-flan").unwrap().container, Container::Tei);
    let config = parse(&hf("url = \"http://10.0.0.1:8080/base/\""));
    let endpoint = huggingface(&config, "hf-flan");
    assert_eq!(endpoint.url.as_str(), "http://10.0.0.1:8080/base/");
    assert_eq!(endpoint.token, None);
}
