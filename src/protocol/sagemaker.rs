//! The SageMaker runtime's request headers and endpoints, as its API
//! reference gives them.

/// The `X-Amzn-SageMaker-*` request headers of `InvokeEndpoint`, with the
/// API's length limits (min, max).
pub const REQUEST_HEADERS: &[(&str, usize, usize)] = &[
    ("x-amzn-sagemaker-custom-attributes", 0, 1024),
    ("x-amzn-sagemaker-target-model", 1, 1024),
    ("x-amzn-sagemaker-target-variant", 0, 63),
    ("x-amzn-sagemaker-target-container-hostname", 0, 63),
    ("x-amzn-sagemaker-inference-id", 1, 64),
    ("x-amzn-sagemaker-enable-explanations", 1, 64),
    ("x-amzn-sagemaker-inference-component", 0, 63),
    ("x-amzn-sagemaker-session-id", 0, 256),
];

/// The session header of a stateful session's requests.
pub const SESSION_ID: &str = "x-amzn-sagemaker-session-id";

/// The session id among a request's SageMaker headers, if it has one
/// (possibly `NEW_SESSION`, asking for one).
pub fn session_id(headers: &[(http::HeaderName, http::HeaderValue)]) -> Option<&str> {
    headers
        .iter()
        .find(|(n, _)| n == SESSION_ID)
        .and_then(|(_, v)| v.to_str().ok())
}

/// Checks a value for one of [`REQUEST_HEADERS`]: its length within the
/// API's limits and printable ASCII (0x20–0x7e). The one rule for a value
/// a client sends and a value the config pins. `Err` says what the value
/// must be, for a message that names the header or the key; `None` when
/// `name` is not a SageMaker request header.
pub fn check_header(name: &str, value: &[u8]) -> Option<Result<(), String>> {
    let &(_, min, max) = REQUEST_HEADERS.iter().find(|(n, _, _)| *n == name)?;
    let printable = value.iter().all(|b| (0x20..=0x7e).contains(b));
    Some(if (min..=max).contains(&value.len()) && printable {
        Ok(())
    } else {
        Err(format!("must be {min} to {max} printable ASCII characters"))
    })
}

/// The public regional endpoint of the SageMaker runtime.
pub fn default_base(region: &str, fips: bool) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    let prefix = if fips { "runtime-fips" } else { "runtime" };
    format!("https://{prefix}.sagemaker.{region}.{suffix}")
}

/// The SageMaker runtime's own errors, as `x-amzn-ErrorType` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    ValidationError,
    ModelError,
    ModelNotReadyException,
    InternalFailure,
    InternalDependencyException,
    ServiceUnavailable,
    ThrottlingException,
}

impl ErrorType {
    /// The type an error answer names (`x-amzn-ErrorType` before the `:`,
    /// or the body's `__type`), if it is one of these.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "ValidationError" => Self::ValidationError,
            "ModelError" => Self::ModelError,
            "ModelNotReadyException" => Self::ModelNotReadyException,
            "InternalFailure" => Self::InternalFailure,
            "InternalDependencyException" => Self::InternalDependencyException,
            "ServiceUnavailable" => Self::ServiceUnavailable,
            "ThrottlingException" => Self::ThrottlingException,
            _ => return None,
        })
    }
}

/// The namespaces of SageMaker runtime errors' `x-amzn-ErrorType`
/// (`Type:namespace`; the SDKs cut at the `:`): the service's own errors,
/// the request layer's (authentication, unknown operations), throttling.
pub const SAGE_NAMESPACE: &str = "http://internal.amazon.com/coral/com.amazon.sage.datamodel/";
pub const CORAL_NAMESPACE: &str = "http://internal.amazon.com/coral/com.amazon.coral.service/";
pub const AVAILABILITY_NAMESPACE: &str =
    "http://internal.amazon.com/coral/com.amazon.coral.availability/";

/// The `x-amzn-ErrorType` value of `error_type` in `namespace`.
pub fn error_type_header(error_type: &str, namespace: &str) -> String {
    format!("{error_type}:{namespace}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_hosts_per_partition() {
        assert_eq!(
            default_base("us-east-1", false),
            "https://runtime.sagemaker.us-east-1.amazonaws.com"
        );
        assert_eq!(
            default_base("cn-north-1", false),
            "https://runtime.sagemaker.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(
            default_base("us-gov-west-1", true),
            "https://runtime-fips.sagemaker.us-gov-west-1.amazonaws.com"
        );
    }

    #[test]
    fn one_rule_for_header_values() {
        let variant = "x-amzn-sagemaker-target-variant";
        assert_eq!(check_header(variant, b"v1"), Some(Ok(())));
        assert_eq!(check_header(variant, b""), Some(Ok(())));
        assert!(matches!(check_header(variant, &[b'v'; 64]), Some(Err(_))));
        assert!(matches!(check_header(variant, b"a\x7fb"), Some(Err(_))));
        assert!(matches!(
            check_header("x-amzn-sagemaker-inference-id", b""),
            Some(Err(_))
        ));
        assert_eq!(check_header("x-amzn-sagemaker-unknown", b"x"), None);
    }
}
