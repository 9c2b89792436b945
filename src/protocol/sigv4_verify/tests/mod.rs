//! Tests of the verifier: AWS's SigV4 test suite ([`suite`]), a cross-check
//! against AWS's own signer ([`aws`]), and every rejection ([`rejections`]);
//! the helpers they share are here.

use super::canonical::{canonical_query, canonical_uri, collapse_spaces, hmac_sha256};
use super::*;
use http::{HeaderMap, HeaderName, HeaderValue};

mod aws;
mod rejections;
mod suite;

const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const SUITE_DATE: &str = "20150830T123600Z";
/// 2015-08-30T12:36:00Z, the test suite's clock.
const SUITE_UNIX: u64 = 1_440_938_160;
const STS_TOKEN: &str = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";
/// The suite's host and date headers.
const HOST: (&str, &str) = ("Host", "example.amazonaws.com");
const DATE: (&str, &str) = ("X-Amz-Date", SUITE_DATE);
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn at(unix: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix)
}

fn suite_expect(now: SystemTime) -> Expect<'static> {
    Expect {
        regions: Regions::Only("us-east-1"),
        service: "service",
        now,
        max_skew: Duration::from_secs(15 * 60),
        explain_mismatch: true,
    }
}

fn store(token: Option<&str>) -> impl Fn(&str) -> Option<Credential> + '_ {
    move |id: &str| {
        (id == AKID).then(|| Credential {
            secret_access_key: SECRET.to_owned(),
            session_token: token.map(str::to_owned),
        })
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn request<'a>(
    method: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    headers: &'a HeaderMap,
    body: &'a [u8],
) -> VerifyRequest<'a> {
    VerifyRequest {
        method,
        path,
        query,
        headers,
        body,
    }
}

fn assert_mismatch(got: Result<Verified, Rejection>) {
    let err = got.unwrap_err();
    assert_eq!((err.status, err.error_type), (403, INVALID), "{err}");
    assert!(err.message.starts_with(SIGNATURE_MISMATCH), "{err}");
}
