//! SigV4 verification, recomputed from the bytes received: what the SageMaker
//! emulator checks the gateway's signatures with, and what the
//! SageMaker-compatible door checks its callers' with.
//!
//! The gateway signs with the `aws-sigv4` crate (`backend/`). This module checks
//! signatures the way AWS does, and it is written independently on purpose:
//! it never calls the gateway's signing code nor `aws-sigv4` (that crate appears
//! only in this file's tests, as an oracle). A signer bug that reused the same
//! code here would agree with itself and pass; an independent canonicalisation
//! (double-encoded, normalised path; sorted, re-encoded query; trimmed headers
//! joined in `SignedHeaders` order; SHA-256 of the body) cannot hide it.
//!
//! [`verify`] walks AWS's order of checks and answers with AWS's error types and
//! wording (as seen in coral-based services such as DynamoDB and SageMaker):
//! missing token → algorithm → `key=value` syntax → missing parameters → date
//! format → clock skew → `host` signed → credential shape → credential scope →
//! access key → signature → session token; [`check_head`] runs the steps
//! before the signature, which need no body. A rejection never echoes the
//! signature or the secret key; a mismatch shows the canonical request (and
//! so a signed session token) only when [`Expect::explain_mismatch`] asks,
//! as AWS does and a gateway's door must not.
//!
//! Only header authentication is supported (the SDKs never presign
//! `InvokeEndpoint`). For HTTP/2 the caller must put the `:authority` into the
//! map as `host` before calling, since signers sign it under that name.

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};

use self::canonical::{canonical_request, signing_key, string_to_sign};
use sha2::{Digest, Sha256};

/// The one algorithm SigV4 header authentication uses.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The first sentence of every signature-mismatch message; AWS appends the
/// canonical request and string to sign it computed, and so does [`verify`].
pub const SIGNATURE_MISMATCH: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

/// What AWS says for an unknown access key or a wrong session token.
pub const INVALID_TOKEN: &str = "The security token included in the request is invalid.";

const INCOMPLETE: &str = "IncompleteSignatureException";
const INVALID: &str = "InvalidSignatureException";

/// The secret half of an access key, as the caller's key store (the
/// emulator's keys, the gateway's clients) holds it.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub secret_access_key: String,
    /// Present for temporary credentials; the request must then carry exactly
    /// this value in `X-Amz-Security-Token`.
    pub session_token: Option<String>,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("secret_access_key", &"***")
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// A request as it arrived on the wire.
#[derive(Debug, Clone, Copy)]
pub struct VerifyRequest<'a> {
    pub method: &'a str,
    /// The raw path exactly as received (already percent-encoded once), no query.
    pub path: &'a str,
    /// The raw query string as received, without `?`.
    pub query: Option<&'a str>,
    pub headers: &'a http::HeaderMap,
    pub body: &'a [u8],
}

/// What the service expects of the credential scope and the clock.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    pub regions: Regions<'a>,
    pub service: &'a str,
    pub now: SystemTime,
    /// AWS allows 15 minutes either way.
    pub max_skew: Duration,
    /// Whether a signature mismatch shows the canonical request and string
    /// to sign the service computed, as AWS does. They can hold a session
    /// token and other signed headers, so a gateway's door never shows them.
    pub explain_mismatch: bool,
}

/// The signing regions a service accepts in the credential scope.
#[derive(Debug, Clone, Copy)]
pub enum Regions<'a> {
    /// Any region (a gateway that serves every region's callers).
    Any,
    /// One region, as a regional AWS endpoint.
    Only(&'a str),
    /// Any of these.
    Among(&'a [String]),
}

impl Regions<'_> {
    fn accept(self, region: &str) -> bool {
        match self {
            // Still a region's shape (`us-east-1`), as AWS requires of one.
            Regions::Any => {
                region.contains('-')
                    && region.len() <= 63
                    && region.split('-').all(|p| {
                        !p.is_empty()
                            && p.bytes()
                                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                    })
            }
            Regions::Only(r) => r == region,
            Regions::Among(list) => list.iter().any(|r| r == region),
        }
    }
}

/// A request whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub access_key_id: String,
}

/// Why a request was refused, shaped like AWS's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub error_type: &'static str,
    pub message: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.error_type, self.status, self.message)
    }
}

impl std::error::Error for Rejection {}

impl Rejection {
    fn new(status: u16, error_type: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            error_type,
            message: message.into(),
        }
    }

    fn missing_token() -> Self {
        Self::new(
            403,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        )
    }

    fn incomplete(message: impl Into<String>) -> Self {
        Self::new(400, INCOMPLETE, message)
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(403, INVALID, message)
    }

    fn unrecognized() -> Self {
        Self::new(403, "UnrecognizedClientException", INVALID_TOKEN)
    }

    fn mismatch() -> Self {
        Self::invalid(SIGNATURE_MISMATCH)
    }
}

/// Checks the request's SigV4 `Authorization` header against `expect` and the
/// key store behind `lookup` (access key id → credential).
///
/// Each step below is one of AWS's checks, in AWS's order: the first that
/// fails decides the answer, as it does at AWS.
pub fn verify(
    req: &VerifyRequest<'_>,
    expect: &Expect<'_>,
    lookup: &dyn Fn(&str) -> Option<Credential>,
) -> Result<Verified, Rejection> {
    with_head(req.headers, expect, lookup, |head| {
        let Head {
            signature,
            signed,
            scope,
            amz_date,
            cred,
        } = head;
        let payload_hash = payload_hash(req, &signed)?;
        let creq = canonical_request(req, &signed, &payload_hash);
        let sts = string_to_sign(&amz_date, &scope.without_key(), &creq);
        let key = signing_key(
            &cred.secret_access_key,
            scope.date,
            scope.region,
            scope.service,
        )
        .ok_or_else(internal_failure)?;
        if !signature_matches(signature, &key, &sts)? {
            return Err(if expect.explain_mismatch {
                mismatch_with_details(req, &signed, &payload_hash, &sts)
            } else {
                Rejection::mismatch()
            });
        }
        check_session_token(req.headers, &cred)?;
        Ok(Verified {
            access_key_id: scope.access_key_id.to_owned(),
        })
    })
}

/// The checks of [`verify`] that need no body, in the same order and with
/// the same answers: the header's shape, the date and the clock, the
/// scope, a known access key, the signed headers present. A server that
/// must read the whole body to check a signature runs these first, so a
/// caller without a known key cannot make it take an upload.
pub fn check_head(
    headers: &http::HeaderMap,
    expect: &Expect<'_>,
    lookup: &dyn Fn(&str) -> Option<Credential>,
) -> Result<(), Rejection> {
    with_head(headers, expect, lookup, |_| Ok(()))
}

/// What the checks before the body found.
struct Head<'a> {
    signature: &'a str,
    signed: Vec<&'a str>,
    scope: Scope<'a>,
    amz_date: String,
    cred: Credential,
}

/// Runs the checks before the body, then `then` on what they found.
fn with_head<R>(
    headers: &http::HeaderMap,
    expect: &Expect<'_>,
    lookup: &dyn Fn(&str) -> Option<Credential>,
    then: impl FnOnce(Head<'_>) -> Result<R, Rejection>,
) -> Result<R, Rejection> {
    let auth_text = authorization_text(headers)?;
    let (algorithm, params) = parse_authorization(&auth_text)?;
    let parts = AuthParts::require(algorithm, params, headers)?;

    let request_time = parse_request_date(&parts.date)?;
    let amz_date = format_amz_date(request_time);
    check_skew(request_time, expect)?;

    let signed = signed_header_names(parts.signed_headers)?;
    let scope = Scope::parse(parts.credential)?;
    scope.check(expect, &amz_date)?;

    let Some(cred) = lookup(scope.access_key_id) else {
        return Err(Rejection::unrecognized());
    };
    check_signed_headers(headers, &signed)?;
    then(Head {
        signature: parts.signature,
        signed,
        scope,
        amz_date,
        cred,
    })
}

// === the steps of verify ===

/// The `Authorization` header as text; absent, it is no token for AWS.
fn authorization_text(headers: &http::HeaderMap) -> Result<Cow<'_, str>, Rejection> {
    match headers.get(http::header::AUTHORIZATION) {
        Some(raw) => Ok(String::from_utf8_lossy(raw.as_bytes())),
        None => Err(Rejection::missing_token()),
    }
}

/// The algorithm and the `key=value` parameters after it.
fn parse_authorization(auth_text: &str) -> Result<(&str, AuthParams<'_>), Rejection> {
    let auth = auth_text.trim();
    // A header that is not SigV4 at all (`Bearer …`) is, for AWS, no token.
    if !auth.starts_with("AWS4-") {
        return Err(Rejection::missing_token());
    }
    let (algorithm, rest) = auth
        .split_once(|c: char| c.is_ascii_whitespace())
        .unwrap_or((auth, ""));
    if algorithm != ALGORITHM {
        return Err(Rejection::incomplete(format!(
            "Unsupported AWS 'algorithm': '{algorithm}' (only {ALGORITHM} for now). "
        )));
    }
    Ok((algorithm, AuthParams::parse(rest, auth)?))
}

/// What a signature needs, every piece present.
struct AuthParts<'a> {
    credential: &'a str,
    signature: &'a str,
    signed_headers: &'a str,
    /// `X-Amz-Date`, or else `Date`, as sent.
    date: String,
}

impl<'a> AuthParts<'a> {
    /// All four pieces, or one rejection that names every missing one.
    fn require(
        algorithm: &str,
        params: AuthParams<'a>,
        headers: &http::HeaderMap,
    ) -> Result<Self, Rejection> {
        let date_header = header_str(headers, "x-amz-date").or_else(|| header_str(headers, "date"));
        let mut missing = Vec::new();
        if params.credential.is_none() {
            missing.push("Authorization header requires 'Credential' parameter.");
        }
        if params.signature.is_none() {
            missing.push("Authorization header requires 'Signature' parameter.");
        }
        if params.signed_headers.is_none() {
            missing.push("Authorization header requires 'SignedHeaders' parameter.");
        }
        if date_header.is_none() {
            missing.push(
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
            );
        }
        let (Some(credential), Some(signature), Some(signed_headers), Some(date)) = (
            params.credential,
            params.signature,
            params.signed_headers,
            date_header,
        ) else {
            // AWS once echoed the whole header here; the algorithm is enough.
            return Err(Rejection::incomplete(format!(
                "{} Authorization={algorithm}",
                missing.join(" ")
            )));
        };
        Ok(Self {
            credential,
            signature,
            signed_headers,
            date,
        })
    }
}

/// The request's time, from either the ISO-8601 basic or the HTTP date form.
fn parse_request_date(date_raw: &str) -> Result<i64, Rejection> {
    parse_amz_date(date_raw)
        .or_else(|| parse_http_date(date_raw))
        .ok_or_else(|| {
            Rejection::incomplete(format!(
                "Date must be in ISO-8601 'basic format'. Got '{date_raw}'. See http://en.wikipedia.org/wiki/ISO_8601"
            ))
        })
}

/// The `SignedHeaders` list, which must include `host`.
fn signed_header_names(signed_headers: &str) -> Result<Vec<&str>, Rejection> {
    let signed: Vec<&str> = signed_headers.split(';').collect();
    if !signed.iter().any(|h| h.eq_ignore_ascii_case("host")) {
        return Err(Rejection::invalid(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    Ok(signed)
}

/// `Credential=keyid/date/region/service/aws4_request`, split.
struct Scope<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    terminator: &'a str,
}

impl<'a> Scope<'a> {
    fn parse(credential: &'a str) -> Result<Self, Rejection> {
        let parts: Vec<&str> = credential.split('/').collect();
        let [access_key_id, date, region, service, terminator] = parts[..] else {
            return Err(Rejection::incomplete(format!(
                "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '{credential}'"
            )));
        };
        Ok(Self {
            access_key_id,
            date,
            region,
            service,
            terminator,
        })
    }

    /// Every way the scope differs from what the service expects, in one
    /// message, as AWS lists them.
    fn check(&self, expect: &Expect<'_>, amz_date: &str) -> Result<(), Rejection> {
        let mut errors = String::new();
        if !expect.regions.accept(self.region) {
            errors.push_str("Credential should be scoped to a valid region. ");
        }
        if self.service != expect.service {
            errors.push_str(&format!(
                "Credential should be scoped to correct service: '{}'. ",
                expect.service
            ));
        }
        if self.terminator != "aws4_request" {
            errors.push_str(&format!(
                "Credential should be scoped with a valid terminator: 'aws4_request', not '{}'. ",
                self.terminator
            ));
        }
        if self.date != &amz_date[..8] {
            errors.push_str(&format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{amz_date}'.",
                self.date,
                &amz_date[..8]
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Rejection::invalid(errors))
        }
    }

    /// The scope as the string to sign carries it: without the access key.
    fn without_key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.date, self.region, self.service, self.terminator
        )
    }
}

/// A signer always lists lowercase names, sorted, once each, and can only
/// have signed headers it sent; anything else cannot match what AWS computes.
fn check_signed_headers(headers: &http::HeaderMap, signed: &[&str]) -> Result<(), Rejection> {
    let well_formed = signed
        .iter()
        .all(|h| !h.is_empty() && !h.bytes().any(|b| b.is_ascii_uppercase()))
        && signed.windows(2).all(|w| w[0] < w[1]);
    if !well_formed || signed.iter().any(|h| !headers.contains_key(*h)) {
        return Err(Rejection::mismatch());
    }
    Ok(())
}

/// The payload hash the signature covers: the declared one if it is signed
/// (and then it must be the body's), else the body's own.
fn payload_hash(req: &VerifyRequest<'_>, signed: &[&str]) -> Result<String, Rejection> {
    let body_hash = hex::encode(Sha256::digest(req.body));
    match header_str(req.headers, "x-amz-content-sha256") {
        Some(declared) if signed.contains(&"x-amz-content-sha256") => {
            // The declared hash is what gets signed, so it must be the body's.
            if declared != body_hash {
                return Err(Rejection::mismatch());
            }
            Ok(declared)
        }
        _ => Ok(body_hash),
    }
}

/// Whether the hex `signature` is the HMAC of `string_to_sign` under `key`;
/// an error only if HMAC refuses the key.
fn signature_matches(
    signature: &str,
    key: &[u8; 32],
    string_to_sign: &str,
) -> Result<bool, Rejection> {
    let provided = match hex::decode(signature) {
        Ok(bytes) if bytes.len() == 32 => bytes,
        _ => return Ok(false),
    };
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).map_err(|_| internal_failure())?;
    mac.update(string_to_sign.as_bytes());
    // `verify_slice` compares in constant time.
    Ok(mac.verify_slice(&provided).is_ok())
}

/// Temporary credentials need their exact token; permanent ones, none.
fn check_session_token(headers: &http::HeaderMap, cred: &Credential) -> Result<(), Rejection> {
    let sent_token = header_str(headers, "x-amz-security-token");
    let token_ok = match (&cred.session_token, &sent_token) {
        (Some(expected), Some(sent)) => constant_time_eq(expected.as_bytes(), sent.as_bytes()),
        (None, None) => true,
        _ => false,
    };
    if token_ok {
        Ok(())
    } else {
        Err(Rejection::unrecognized())
    }
}

// === impl AuthParams ===

/// The `key=value` parameters after the algorithm; the last of a repeated key
/// wins, and an empty value counts as missing.
#[derive(Debug, Default)]
struct AuthParams<'a> {
    credential: Option<&'a str>,
    signed_headers: Option<&'a str>,
    signature: Option<&'a str>,
}

impl<'a> AuthParams<'a> {
    fn parse(rest: &'a str, whole_header: &str) -> Result<Self, Rejection> {
        let mut params = Self::default();
        let pieces = rest
            .split(|c: char| c == ',' || c.is_ascii_whitespace())
            .filter(|p| !p.is_empty());
        for piece in pieces {
            let Some((key, value)) = piece.split_once('=') else {
                // Hashed, as AWS does today, so the signature is never echoed.
                return Err(Rejection::incomplete(format!(
                    "Invalid key=value pair (missing equal-sign) in Authorization header (hashed with SHA-256 and encoded with Base64): '{}'.",
                    base64(&Sha256::digest(whole_header.as_bytes()))
                )));
            };
            let value = (!value.is_empty()).then_some(value);
            match key {
                "Credential" => params.credential = value,
                "SignedHeaders" => params.signed_headers = value,
                "Signature" => params.signature = value,
                _ => {}
            }
        }
        Ok(params)
    }
}

/// AWS shows what it computed after a mismatch, the session token's value
/// included: so does the emulator, so that a client that passes this message
/// on (the gateway must not) would be caught by a test.
fn mismatch_with_details(
    req: &VerifyRequest<'_>,
    signed: &[&str],
    payload_hash: &str,
    string_to_sign: &str,
) -> Rejection {
    let shown = canonical_request(req, signed, payload_hash);
    Rejection::invalid(format!(
        "{SIGNATURE_MISMATCH}\n\nThe Canonical String for this request should have been\n'{shown}'\n\nThe String-to-Sign should have been\n'{string_to_sign}'\n"
    ))
}

fn internal_failure() -> Rejection {
    Rejection::new(500, "InternalFailure", "HMAC-SHA256 refused a key")
}

// === dates and the clock ===

fn check_skew(request_time: i64, expect: &Expect<'_>) -> Result<(), Rejection> {
    let now = unix_seconds(expect.now);
    let skew = i64::try_from(expect.max_skew.as_secs()).unwrap_or(i64::MAX);
    let label = if skew % 60 == 0 {
        format!("{} min.", skew / 60)
    } else {
        format!("{skew} sec.")
    };
    let earliest = now.saturating_sub(skew);
    let latest = now.saturating_add(skew);
    if request_time < earliest {
        return Err(Rejection::invalid(format!(
            "Signature expired: {} is now earlier than {} ({} - {label})",
            format_amz_date(request_time),
            format_amz_date(earliest),
            format_amz_date(now)
        )));
    }
    if request_time > latest {
        return Err(Rejection::invalid(format!(
            "Signature not yet current: {} is still later than {} ({} + {label})",
            format_amz_date(request_time),
            format_amz_date(latest),
            format_amz_date(now)
        )));
    }
    Ok(())
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// `YYYYMMDDTHHMMSSZ` → seconds since the epoch.
fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[4..6])?;
    let day = digits(&b[6..8])?;
    let hour = digits(&b[9..11])?;
    let minute = digits(&b[11..13])?;
    let second = digits(&b[13..15])?;
    to_unix(year, month, day, hour, minute, second)
}

/// The IMF-fixdate an HTTP `Date` header carries: `Sun, 30 Aug 2015 12:36:00 GMT`.
fn parse_http_date(s: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let b = s.as_bytes();
    if b.len() != 29 || &b[3..5] != b", " || &b[25..] != b" GMT" {
        return None;
    }
    if b[7] != b' ' || b[11] != b' ' || b[16] != b' ' || b[19] != b':' || b[22] != b':' {
        return None;
    }
    let month = MONTHS.iter().position(|m| m.as_bytes() == &b[8..11])?;
    to_unix(
        digits(&b[12..16])?,
        u32::try_from(month).ok()? + 1,
        digits(&b[5..7])?,
        digits(&b[17..19])?,
        digits(&b[20..22])?,
        digits(&b[23..25])?,
    )
}

fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

fn to_unix(year: u32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> Option<i64> {
    let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day == 0 || day > month_days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(i64::from(year), i64::from(month), i64::from(day));
    Some(days * 86_400 + i64::from(hour * 3600 + minute * 60 + second))
}

/// Days since 1970-01-01 in the proleptic Gregorian calendar (H. Hinnant).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn format_amz_date(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

// === small helpers ===

/// The first value of a header, if it is text.
fn header_str(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

mod canonical;
#[cfg(test)]
mod tests;
