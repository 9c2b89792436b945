//! SigV4 signing of one SageMaker request, with AWS's own `aws-sigv4`.
//!
//! The signature covers the exact bytes sent: method, path, the `host` the
//! upstream client will send, the listed headers and the SHA-256 of the body.
//! SageMaker takes no `x-amz-content-sha256` header (the hash still enters
//! the canonical request), and `X-Amz-Security-Token` is signed when the
//! credentials carry a session token. Headers that proxies may rewrite
//! (`user-agent`, `transfer-encoding`, `content-length`, hop-by-hop) are left
//! out of `SignedHeaders`.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4::SigningParams;
use aws_smithy_runtime_api::client::identity::Identity;
use http::{HeaderMap, HeaderName, HeaderValue};

/// The SigV4 signing name of the SageMaker runtime.
pub const SERVICE: &str = "sagemaker";

/// Why a request could not be signed.
#[derive(Debug, thiserror::Error)]
#[error("could not sign the request: {0}")]
pub struct SignError(String);

/// Who signs, for which region, at what time.
#[derive(Debug, Clone, Copy)]
pub struct Signer<'a> {
    pub credentials: &'a Credentials,
    pub region: &'a str,
    pub time: SystemTime,
}

/// Signs a request and adds `authorization`, `x-amz-date` and, with a
/// session token, `x-amz-security-token` to `headers`.
///
/// `host` is the `Host` header the HTTP client will send (with the port when
/// it is not the scheme's default); `path_and_query` is the request target as
/// sent. `headers` holds every other header to be signed and sent.
pub fn sign_request(
    signer: Signer<'_>,
    method: &str,
    host: &str,
    path_and_query: &str,
    headers: &mut HeaderMap,
    body: &[u8],
) -> Result<(), SignError> {
    let Signer {
        credentials,
        region,
        time,
    } = signer;
    let identity: Identity = credentials.clone().into();
    let settings = SigningSettings::default();
    let params = SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| SignError(e.to_string()))?
        .into();

    let mut signed: Vec<(&str, &str)> = Vec::with_capacity(headers.len() + 1);
    signed.push(("host", host));
    for (name, value) in headers.iter() {
        let value = value
            .to_str()
            .map_err(|_| SignError(format!("header {name} is not visible ASCII")))?;
        signed.push((name.as_str(), value));
    }
    // The URI given to the signer must be absolute-form or origin-form; the
    // signer reads only its path and query.
    let uri = format!("https://{host}{path_and_query}");
    let signable = SignableRequest::new(
        method,
        uri.as_str(),
        signed.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| SignError(e.to_string()))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| SignError(e.to_string()))?
        .into_parts();
    let (new_headers, _params) = instructions.into_parts();
    for h in new_headers {
        let name = HeaderName::from_static(h.name());
        let mut value = HeaderValue::from_str(h.value()).map_err(|e| SignError(e.to_string()))?;
        value.set_sensitive(h.sensitive() || name == http::header::AUTHORIZATION);
        headers.insert(name, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn adds_date_and_authorization_over_the_listed_headers() {
        let creds = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let signer = Signer {
            credentials: &creds,
            region: "us-east-1",
            time: at(1_440_938_160), // 2015-08-30T12:36:00Z
        };
        sign_request(
            signer,
            "POST",
            "runtime.sagemaker.us-east-1.amazonaws.com",
            "/endpoints/flan/invocations",
            &mut headers,
            b"{}",
        )
        .unwrap();
        assert_eq!(headers["x-amz-date"], "20150830T123600Z");
        let auth = headers["authorization"].to_str().unwrap();
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/sagemaker/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, Signature="
        ));
        assert!(headers["authorization"].is_sensitive());
        assert!(headers.get("x-amz-security-token").is_none());
        assert!(headers.get("x-amz-content-sha256").is_none());
    }

    #[test]
    fn session_token_is_sent_and_signed() {
        let creds = Credentials::new("AKID", "secret", Some("tok".into()), None, "test");
        let mut headers = HeaderMap::new();
        let signer = Signer {
            credentials: &creds,
            region: "eu-west-1",
            time: at(1_440_938_160),
        };
        sign_request(
            signer,
            "POST",
            "h",
            "/endpoints/e/invocations",
            &mut headers,
            b"",
        )
        .unwrap();
        assert_eq!(headers["x-amz-security-token"], "tok");
        assert!(headers["x-amz-security-token"].is_sensitive());
        let auth = headers["authorization"].to_str().unwrap();
        assert!(auth.contains("SignedHeaders=host;x-amz-date;x-amz-security-token,"));
    }

    #[test]
    fn signature_changes_with_the_body() {
        let creds = Credentials::new("AKID", "secret", None, None, "test");
        let sig = |body: &[u8]| {
            let mut h = HeaderMap::new();
            let signer = Signer {
                credentials: &creds,
                region: "us-east-1",
                time: at(0),
            };
            sign_request(signer, "POST", "h", "/p", &mut h, body).unwrap();
            h["authorization"].to_str().unwrap().to_string()
        };
        assert_ne!(sig(b"a"), sig(b"b"));
        assert_eq!(sig(b"a"), sig(b"a"));
    }
}
