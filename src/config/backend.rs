//! Phase two for `[backends.<name>]`: the kind, the keys each kind accepts, and
//! the checks that keep a bad value from reaching the wire (endpoint names and
//! regions end up in URLs and signatures, header values in requests).

use http::{HeaderName, HeaderValue};
use reqwest::Url;

use super::bounds::{self, optional_duration};
use super::diag::{key_path, Diagnostics};
use super::raw::RawBackend;
use super::resilience::{backend_limits, health_check};
use super::{BackendConfig, BackendKind, HuggingFaceConfig, SageMakerConfig};
use crate::protocol::container::Container;
use crate::secret::Secret;

const SAGEMAKER: &str = "sagemaker";
const HUGGINGFACE: &str = "huggingface";

/// The optional fixed `X-Amzn-SageMaker-*` request headers: config key and
/// header name; the length limits come from the backend's table.
const SAGEMAKER_HEADERS: [(&str, &str); 7] = [
    ("target_variant", "x-amzn-sagemaker-target-variant"),
    ("target_model", "x-amzn-sagemaker-target-model"),
    (
        "target_container_hostname",
        "x-amzn-sagemaker-target-container-hostname",
    ),
    (
        "inference_component",
        "x-amzn-sagemaker-inference-component",
    ),
    ("custom_attributes", "x-amzn-sagemaker-custom-attributes"),
    (
        "enable_explanations",
        "x-amzn-sagemaker-enable-explanations",
    ),
    ("inference_id", "x-amzn-sagemaker-inference-id"),
];

pub(super) fn validate_backend(
    name: String,
    raw: RawBackend,
    path: &str,
    diag: &mut Diagnostics,
) -> Option<BackendConfig> {
    let timeout = optional_duration(
        raw.timeout,
        &key_path(path, "timeout"),
        bounds::REQUEST_TIMEOUT,
        diag,
    );
    let (max_in_flight, outlier) = backend_limits(&raw, path, diag);
    let tls_ca_file = super::tls::ca_file(
        raw.tls_ca_file.clone(),
        &key_path(path, "tls_ca_file"),
        diag,
    );
    let container = container(&raw, path, diag);
    let kind_path = key_path(path, "kind");
    let kind = match raw.kind.as_deref() {
        None => {
            diag.error(
                &kind_path,
                r#"required, expected "sagemaker" or "huggingface""#,
            );
            None
        }
        Some(SAGEMAKER) => {
            wrong_kind_keys(&raw.huggingface_keys(), SAGEMAKER, HUGGINGFACE, path, diag);
            sagemaker(raw, path, diag).map(BackendKind::SageMaker)
        }
        Some(HUGGINGFACE) => {
            wrong_kind_keys(&raw.sagemaker_keys(), HUGGINGFACE, SAGEMAKER, path, diag);
            huggingface(raw, path, diag).map(BackendKind::HuggingFace)
        }
        Some(other) => {
            let shown = diag.show(&kind_path, other);
            diag.error(
                &kind_path,
                format!(r#"unknown backend kind {shown}, expected "sagemaker" or "huggingface""#),
            );
            None
        }
    };
    Some(BackendConfig {
        name,
        timeout,
        max_in_flight,
        outlier,
        tls_ca_file,
        container,
        kind: kind?,
    })
}

/// `container` (either kind), or its older spelling `format` (SageMaker
/// only, where `"hf"` means TGI); TGI when neither is set.
fn container(raw: &RawBackend, path: &str, diag: &mut Diagnostics) -> Container {
    let names = || {
        Container::ALL
            .map(|c| format!("{:?}", c.as_str()))
            .join(", ")
    };
    let mut parse = |key: &str, value: &str| {
        let found = match value {
            "hf" if key == "format" => Some(Container::Tgi),
            other => Container::from_name(other),
        };
        if found.is_none() {
            let at = key_path(path, key);
            let shown = diag.show(&at, value);
            let hf = if key == "format" { "\"hf\", " } else { "" };
            diag.error(
                &at,
                format!("unknown {key} {shown}, expected one of {hf}{}", names()),
            );
        }
        found
    };
    let by_container = raw.container.as_deref().and_then(|v| parse("container", v));
    let by_format = raw.format.as_deref().and_then(|v| parse("format", v));
    let chosen = match (by_container, by_format) {
        (Some(c), Some(f)) if c != f => {
            diag.error(
                &key_path(path, "format"),
                format!(
                    "says {:?} but container says {:?}: format is the older name of container, set only one",
                    f.as_str(),
                    c.as_str()
                ),
            );
            c
        }
        (c, f) => c.or(f).unwrap_or_default(),
    };
    if raw.kind.as_deref() == Some(HUGGINGFACE) && !chosen.on_huggingface() {
        diag.error(
            &key_path(path, "container"),
            format!(
                "{:?} runs on SageMaker only; a Hugging Face endpoint runs \"tgi\", \"tei\" or \"hf-toolkit\"",
                chosen.as_str()
            ),
        );
    }
    chosen
}

fn wrong_kind_keys(keys: &[&str], kind: &str, owner: &str, path: &str, diag: &mut Diagnostics) {
    for key in keys {
        diag.error(
            &key_path(path, key),
            format!("not valid for kind {kind:?} (only for kind {owner:?})"),
        );
    }
}

fn required(
    value: Option<String>,
    path: &str,
    kind: &str,
    diag: &mut Diagnostics,
) -> Option<String> {
    if value.is_none() {
        diag.error(path, format!("required for kind {kind:?}"));
    }
    value
}

// === impl sagemaker ===

fn sagemaker(raw: RawBackend, path: &str, diag: &mut Diagnostics) -> Option<SageMakerConfig> {
    let p = |key: &str| key_path(path, key);

    let endpoint_name = required(
        raw.endpoint_name.clone(),
        &p("endpoint_name"),
        SAGEMAKER,
        diag,
    )
    .filter(|name| check_endpoint_name(name, &p("endpoint_name"), diag));
    let region = required(raw.region.clone(), &p("region"), SAGEMAKER, diag)
        .filter(|region| check_region(region, &p("region"), diag));
    let endpoint_url = raw
        .endpoint_url
        .as_deref()
        .and_then(|url| http_url(url, &p("endpoint_url"), diag));

    let fips = raw.fips.unwrap_or(false);
    if fips {
        if raw.endpoint_url.is_some() {
            diag.error(
                &p("fips"),
                "cannot be combined with endpoint_url (point endpoint_url at the FIPS endpoint instead)",
            );
        } else if let Some(region) = region.as_deref().filter(|r| !in_aws_partition(r)) {
            let shown = diag.show(&p("region"), region);
            diag.error(
                &p("fips"),
                format!("FIPS endpoints are only known for the aws partition, not region {shown}; set endpoint_url instead"),
            );
        }
    }

    if raw.profile.as_deref().is_some_and(|s| s.trim().is_empty()) {
        diag.error(&p("profile"), "must not be empty");
    }
    if let Some(arn) = &raw.role_arn {
        if !arn.starts_with("arn:") || arn.contains(char::is_whitespace) {
            diag.error(
                &p("role_arn"),
                r#"must be an IAM role ARN such as "arn:aws:iam::123456789012:role/name""#,
            );
        }
    }
    for (key, value, max, extra) in [
        ("role_session_name", &raw.role_session_name, 64, ""),
        ("external_id", &raw.external_id, 1224, ":/"),
    ] {
        let Some(value) = value else { continue };
        if raw.role_arn.is_none() {
            diag.error(&p(key), "only valid together with role_arn");
        } else if !(2..=max).contains(&value.len())
            || !value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c) || extra.contains(c))
        {
            diag.error(
                &p(key),
                format!(
                    r#"must be 2 to {max} characters among letters, digits and "+=,.@{extra}_-""#
                ),
            );
        }
    }

    let headers = sagemaker_headers(&raw, path, diag);

    Some(SageMakerConfig {
        endpoint_name: endpoint_name?,
        region: region?,
        endpoint_url,
        fips,
        profile: raw.profile,
        role_arn: raw.role_arn,
        role_session_name: raw.role_session_name,
        external_id: raw.external_id.map(Secret::new),
        headers,
    })
}

/// `^[a-zA-Z0-9](-*[a-zA-Z0-9])*$`, at most 63 characters.
fn check_endpoint_name(name: &str, path: &str, diag: &mut Diagnostics) -> bool {
    let pattern = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !pattern {
        diag.error(
            path,
            r#"must contain only letters, digits and "-", and start and end with a letter or digit"#,
        );
    } else if name.len() > 63 {
        diag.error(path, "must be at most 63 characters");
    }
    pattern && name.len() <= 63
}

/// Lowercase letters and digits in dash-separated parts, at least two parts
/// (`us-east-1`, `cn-north-1`, `us-gov-west-1`).
pub(super) fn check_region(region: &str, path: &str, diag: &mut Diagnostics) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    let ok = parts.len() >= 2
        && region.len() <= 63
        && parts.iter().all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
    if !ok {
        diag.error(
            path,
            r#"must be an AWS region such as "us-east-1" (lowercase letters, digits and "-")"#,
        );
    }
    ok
}

/// Regions outside the `aws` partition have no `runtime-fips.sagemaker.{region}.amazonaws.com`.
fn in_aws_partition(region: &str) -> bool {
    !["cn-", "us-gov-", "us-iso", "eu-isoe-", "eusc-"]
        .iter()
        .any(|prefix| region.starts_with(prefix))
}

fn sagemaker_headers(
    raw: &RawBackend,
    path: &str,
    diag: &mut Diagnostics,
) -> Vec<(HeaderName, HeaderValue)> {
    let values = [
        &raw.target_variant,
        &raw.target_model,
        &raw.target_container_hostname,
        &raw.inference_component,
        &raw.custom_attributes,
        &raw.enable_explanations,
        &raw.inference_id,
    ];
    let mut headers = Vec::new();
    for ((key, header), value) in SAGEMAKER_HEADERS.into_iter().zip(values) {
        let Some(value) = value else { continue };
        let path = key_path(path, key);
        let rule = crate::protocol::sagemaker::check_header(header, value.as_bytes());
        if let Some(Err(must)) = rule {
            diag.error(&path, must);
        } else if value.is_empty() || value.trim() != value {
            diag.error(&path, "must not be empty or start or end with a space");
        } else {
            match HeaderValue::from_str(value) {
                Ok(v) => headers.push((HeaderName::from_static(header), v)),
                Err(_) => diag.error(&path, "not a valid HTTP header value"),
            }
        }
    }
    headers
}

// === impl huggingface ===

fn huggingface(raw: RawBackend, path: &str, diag: &mut Diagnostics) -> Option<HuggingFaceConfig> {
    let url_path = key_path(path, "url");
    let url = required(raw.url.clone(), &url_path, HUGGINGFACE, diag)
        .and_then(|url| http_url(&url, &url_path, diag));

    let token_path = key_path(path, "token");
    // An empty token means a public endpoint, so `token = "${HF_TOKEN:-}"`
    // can make auth optional; a missing `${HF_TOKEN}` is still an error.
    let token = raw.token.clone().filter(|t| !t.is_empty());
    if let Some(token) = &token {
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            diag.error(
                &token_path,
                "must contain only visible ASCII characters (no spaces or line breaks)",
            );
        }
        if !diag.is_interpolated(&token_path) {
            diag.warn(
                &token_path,
                r#"written inline in the file; prefer a reference to the environment such as "${HF_TOKEN}""#,
            );
        }
    }
    let health_check = health_check(&raw, path, diag);
    Some(HuggingFaceConfig {
        url: url?,
        token: token.map(Secret::new),
        health_check,
    })
}

// === helpers ===

/// An absolute http(s) URL without credentials, query or fragment (the
/// gateway appends paths to it, and it is printed by `infergate check`).
pub(super) fn http_url(text: &str, path: &str, diag: &mut Diagnostics) -> Option<Url> {
    let url = match Url::parse(text) {
        Ok(url) => url,
        Err(e) => {
            diag.error(path, format!("invalid URL: {e}"));
            return None;
        }
    };
    let mut ok = true;
    let mut fail = |message: &str| {
        diag.error(path, message);
        ok = false;
    };
    if !matches!(url.scheme(), "http" | "https") {
        fail("must be an http or https URL");
    }
    if !url.username().is_empty() || url.password().is_some() {
        fail("must not contain a username or password");
    }
    if url.query().is_some() {
        fail("must not have a query string");
    }
    if url.fragment().is_some() {
        fail("must not have a fragment");
    }
    ok.then_some(url)
}
