//! Tests of the verifier: AWS's SigV4 test suite, a cross-check against
//! AWS's own signer, and every rejection.

use super::*;
use http::{HeaderMap, HeaderName, HeaderValue};

const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const SUITE_DATE: &str = "20150830T123600Z";
/// 2015-08-30T12:36:00Z, the test suite's clock.
const SUITE_UNIX: u64 = 1_440_938_160;
const STS_TOKEN: &str = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn at(unix: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix)
}

fn suite_expect(now: SystemTime) -> Expect<'static> {
    Expect {
        region: "us-east-1",
        service: "service",
        now,
        max_skew: Duration::from_secs(15 * 60),
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

// === AWS SigV4 test suite ===

/// One case of AWS's SigV4 test suite (aws-c-auth `tests/aws-signing-test-suite/v4`,
/// as vendored in the aws-sigv4 1.6.4 crate; the signatures also appear in
/// awscrt-python's tests and many independent signers). Credentials
/// AKIDEXAMPLE, region us-east-1, service `service`, 20150830T123600Z.
struct Vector {
    name: &'static str,
    method: &'static str,
    /// The suite states paths unencoded (`/ሴ`, `/example space/`) and encodes
    /// them once; fed raw, one more encoding gives its canonical URI.
    path: &'static str,
    query: Option<&'static str>,
    headers: &'static [(&'static str, &'static str)],
    body: &'static [u8],
    token: Option<&'static str>,
    signed: &'static str,
    /// Last line of the suite's `header-string-to-sign.txt`.
    creq_sha256: &'static str,
    /// The suite's `header-signature.txt`.
    signature: &'static str,
}

const HOST: (&str, &str) = ("Host", "example.amazonaws.com");
const DATE: (&str, &str) = ("X-Amz-Date", SUITE_DATE);
const UNRESERVED_CHARS: &str = "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

const VECTORS: &[Vector] = &[
    Vector {
        name: "get-vanilla",
        method: "GET",
        path: "/",
        query: None,
        headers: &[HOST, DATE],
        body: b"",
        token: None,
        signed: "host;x-amz-date",
        creq_sha256: "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
        signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    },
    Vector {
        name: "get-vanilla-query-order-key-case",
        method: "GET",
        path: "/",
        query: Some("Param2=value2&Param1=value1"),
        headers: &[HOST, DATE],
        body: b"",
        token: None,
        signed: "host;x-amz-date",
        creq_sha256: "816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0",
        signature: "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
    },
    Vector {
        name: "post-x-www-form-urlencoded",
        method: "POST",
        path: "/",
        query: None,
        headers: &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            HOST,
            ("Content-Length", "13"),
            DATE,
            (
                "x-amz-content-sha256",
                "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
            ),
        ],
        body: b"Param1=value1",
        token: None,
        signed: "content-length;content-type;host;x-amz-content-sha256;x-amz-date",
        creq_sha256: "b1edd1d03544c25390e32085d55b57acc9a3961bb59415ff86c45c3d89d16cfb",
        signature: "d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b",
    },
    Vector {
        name: "post-x-www-form-urlencoded-parameters",
        method: "POST",
        path: "/",
        query: None,
        headers: &[
            ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),
            HOST,
            ("Content-Length", "13"),
            DATE,
            (
                "x-amz-content-sha256",
                "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
            ),
        ],
        body: b"Param1=value1",
        token: None,
        signed: "content-length;content-type;host;x-amz-content-sha256;x-amz-date",
        creq_sha256: "a89f1a5b53e37702ee6363ce1da3ce8f54386f3c8f352ae652153c2982a0bc4d",
        signature: "328d1b9eaadca9f5818ef05e8392801e091653bafec24fcab71e7344e7f51422",
    },
    Vector {
        name: "get-header-value-trim",
        method: "GET",
        path: "/",
        query: None,
        headers: &[
            HOST,
            ("My-Header1", " value1"),
            ("My-Header2", " \"a   b   c\""),
            DATE,
        ],
        body: b"",
        token: None,
        signed: "host;my-header1;my-header2;x-amz-date",
        creq_sha256: "a726db9b0df21c14f559d0a978e563112acb1b9e05476f0a6a1c7d68f28605c7",
        signature: "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
    },
    Vector {
        name: "get-header-key-duplicate",
        method: "GET",
        path: "/",
        query: None,
        headers: &[
            HOST,
            ("My-Header1", "value2"),
            ("My-Header1", "value2"),
            ("My-Header1", "value1"),
            DATE,
        ],
        body: b"",
        token: None,
        signed: "host;my-header1;x-amz-date",
        creq_sha256: "dc7f04a3abfde8d472b0ab1a418b741b7c67174dad1551b4117b15527fbe966c",
        signature: "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
    },
    Vector {
        name: "get-header-value-order",
        method: "GET",
        path: "/",
        query: None,
        headers: &[
            HOST,
            ("My-Header1", "value4"),
            ("My-Header1", "value1"),
            ("My-Header1", "value3"),
            ("My-Header1", "value2"),
            DATE,
        ],
        body: b"",
        token: None,
        signed: "host;my-header1;x-amz-date",
        creq_sha256: "31ce73cd3f3d9f66977ad3dd957dc47af14df92fcd8509f59b349e9137c58b86",
        signature: "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01",
    },
    Vector {
        name: "post-header-value-case",
        method: "POST",
        path: "/",
        query: None,
        headers: &[HOST, ("My-Header1", "VALUE1"), DATE],
        body: b"",
        token: None,
        signed: "host;my-header1;x-amz-date",
        creq_sha256: "d51ced243e649e3de6ef63afbbdcbca03131a21a7103a1583706a64618606a93",
        signature: "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d",
    },
    Vector {
        name: "get-utf8",
        method: "GET",
        path: "/\u{1234}",
        query: None,
        headers: &[HOST, DATE],
        body: b"",
        token: None,
        signed: "host;x-amz-date",
        creq_sha256: "2a0a97d02205e45ce2e994789806b19270cfbbb0921b278ccf58f5249ac42102",
        signature: "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
    },
    Vector {
        name: "get-space-unnormalized",
        method: "GET",
        path: "/example space/",
        query: None,
        headers: &[HOST, DATE],
        body: b"",
        token: None,
        signed: "host;x-amz-date",
        creq_sha256: "63ee75631ed7234ae61b5f736dfc7754cdccfedbff4b5128a915706ee9390d86",
        signature: "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
    },
    Vector {
        name: "get-slashes-normalized",
        method: "GET",
        path: "//example//",
        query: None,
        headers: &[HOST, DATE],
        body: b"",
        token: None,
        signed: "host;x-amz-date",
        creq_sha256: "cb96b4ac96d501f7c5c15bc6d67b3035061cfced4af6585ad927f7e6c985c015",
        signature: "9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84",
    },
    Vector {
        name: "get-relative-relative-normalized",
        method: "GET",
        path: "/example1/example2/../..",
        query: None,
        headers: &[HOST, DATE],
        body: b"",
        token: None,
        signed: "host;x-amz-date",
        creq_sha256: "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
        signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    },
    Vector {
        name: "get-slash-pointless-dot-normalized",
        method: "GET",
        path: "/./example",
        query: None,
        headers: &[HOST, DATE],
        body: b"",
        token: None,
        signed: "host;x-amz-date",
        creq_sha256: "214d50c111a8edc4819da6a636336472c916b5240f51e9a51b5c3305180cf702",
        signature: "ef75d96142cf21edca26f06005da7988e4f8dc83a165a80865db7089db637ec5",
    },
    Vector {
        name: "get-unreserved",
        method: "GET",
        path: "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        query: None,
        headers: &[HOST, DATE],
        body: b"",
        token: None,
        signed: "host;x-amz-date",
        creq_sha256: "6a968768eefaa713e2a6b16b589a8ea192661f098f37349f4e2c0082757446f9",
        signature: "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
    },
    Vector {
        name: "get-vanilla-query-unreserved",
        method: "GET",
        path: "/",
        query: Some(
            "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        ),
        headers: &[HOST, DATE],
        body: b"",
        token: None,
        signed: "host;x-amz-date",
        creq_sha256: "c30d4703d9f799439be92736156d47ccfb2d879ddf56f5befa6d1d6aab979177",
        signature: "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197",
    },
    Vector {
        name: "get-vanilla-utf8-query",
        method: "GET",
        path: "/",
        query: Some("\u{1234}=bar"),
        headers: &[HOST, DATE],
        body: b"",
        token: None,
        signed: "host;x-amz-date",
        creq_sha256: "eb30c5bed55734080471a834cc727ae56beb50e5f39d1bff6d0d38cb192a7073",
        signature: "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
    },
    Vector {
        name: "post-vanilla",
        method: "POST",
        path: "/",
        query: None,
        headers: &[HOST, DATE],
        body: b"",
        token: None,
        signed: "host;x-amz-date",
        creq_sha256: "553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87",
        signature: "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
    },
    Vector {
        name: "post-vanilla-query",
        method: "POST",
        path: "/",
        query: Some("Param1=value1"),
        headers: &[HOST, DATE],
        body: b"",
        token: None,
        signed: "host;x-amz-date",
        creq_sha256: "9d659678c1756bb3113e2ce898845a0a79dbbc57b740555917687f1b3340fbbd",
        signature: "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
    },
    Vector {
        name: "post-sts-header-before",
        method: "POST",
        path: "/",
        query: None,
        headers: &[HOST, ("X-Amz-Security-Token", STS_TOKEN), DATE],
        body: b"",
        token: Some(STS_TOKEN),
        signed: "host;x-amz-date;x-amz-security-token",
        creq_sha256: "c237e1b440d4c63c32ca95b5b99481081cb7b13c7e40434868e71567c1a882f6",
        signature: "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead",
    },
    Vector {
        // The token travels but is added after signing, so it is not signed.
        name: "post-sts-header-after",
        method: "POST",
        path: "/",
        query: None,
        headers: &[HOST, ("X-Amz-Security-Token", STS_TOKEN), DATE],
        body: b"",
        token: Some(STS_TOKEN),
        signed: "host;x-amz-date",
        creq_sha256: "553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87",
        signature: "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
    },
    Vector {
        name: "get-vanilla-with-session-token",
        method: "GET",
        path: "/",
        query: None,
        headers: &[
            HOST,
            (
                "X-Amz-Security-Token",
                "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267",
            ),
            DATE,
        ],
        body: b"",
        token: Some("6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"),
        signed: "host;x-amz-date;x-amz-security-token",
        creq_sha256: "067b36aa60031588cea4a4cde1f21215227a047690c72247f1d70b32fbbfad2b",
        signature: "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8",
    },
];

fn suite_headers(v: &Vector, signature: &str) -> HeaderMap {
    let mut map = headers(v.headers);
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={AKID}/20150830/us-east-1/service/aws4_request, SignedHeaders={}, Signature={signature}",
        v.signed
    );
    map.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&auth).unwrap(),
    );
    map
}

#[test]
fn every_suite_vector_verifies_with_the_published_signature() {
    for v in VECTORS {
        let map = suite_headers(v, v.signature);
        let req = request(v.method, v.path, v.query, &map, v.body);
        let got = verify(&req, &suite_expect(at(SUITE_UNIX)), &store(v.token));
        assert_eq!(
            got,
            Ok(Verified {
                access_key_id: AKID.to_owned()
            }),
            "{}",
            v.name
        );

        // The intermediate steps agree with the suite's string to sign too.
        let signed: Vec<&str> = v.signed.split(';').collect();
        let creq = canonical_request(&req, &signed, &hex::encode(Sha256::digest(v.body)));
        let sts = string_to_sign(SUITE_DATE, "20150830/us-east-1/service/aws4_request", &creq);
        assert_eq!(
            sts,
            format!(
                "AWS4-HMAC-SHA256\n{SUITE_DATE}\n20150830/us-east-1/service/aws4_request\n{}",
                v.creq_sha256
            ),
            "{}",
            v.name
        );
    }
}

#[test]
fn every_suite_vector_rejects_a_signature_off_by_one_digit() {
    for v in VECTORS {
        let mut wrong = v.signature.to_owned();
        let last = if wrong.ends_with('0') { "1" } else { "0" };
        wrong.replace_range(63.., last);
        let map = suite_headers(v, &wrong);
        let req = request(v.method, v.path, v.query, &map, v.body);
        let got = verify(&req, &suite_expect(at(SUITE_UNIX)), &store(v.token)).unwrap_err();
        assert_eq!(got.error_type, INVALID, "{}", v.name);
        assert!(got.message.starts_with(SIGNATURE_MISMATCH), "{}", v.name);
    }
}

#[test]
fn suite_canonical_requests_match_the_published_text() {
    let cases: [(&str, &str); 5] = [
        (
            "get-vanilla",
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
        (
            "get-header-value-trim",
            "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\nx-amz-date:20150830T123600Z\n\nhost;my-header1;my-header2;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
        (
            "get-header-key-duplicate",
            "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value2,value2,value1\nx-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
        (
            "get-utf8",
            "GET\n/%E1%88%B4\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
        (
            "post-x-www-form-urlencoded",
            "POST\n/\n\ncontent-length:13\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\nx-amz-content-sha256:9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e\nx-amz-date:20150830T123600Z\n\ncontent-length;content-type;host;x-amz-content-sha256;x-amz-date\n9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
        ),
    ];
    for (name, expected) in cases {
        let v = VECTORS.iter().find(|v| v.name == name).unwrap();
        let map = headers(v.headers);
        let req = request(v.method, v.path, v.query, &map, v.body);
        let signed: Vec<&str> = v.signed.split(';').collect();
        let creq = canonical_request(&req, &signed, &hex::encode(Sha256::digest(v.body)));
        assert_eq!(creq, expected, "{name}");
    }
}

#[test]
fn paths_on_the_wire_are_encoded_a_second_time() {
    // The suite's double-encode-path and double-url-encode canonical URIs.
    assert_eq!(
        canonical_uri("/test/@connections/JBDvjfGEIAMCERw%3D"),
        "/test/%40connections/JBDvjfGEIAMCERw%253D"
    );
    assert_eq!(
        canonical_uri("/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-west-2%3A892717189312%3Afunction%3Amy-rusty-fun/invocations"),
        "/2015-03-31/functions/arn%253Aaws%253Alambda%253Aus-west-2%253A892717189312%253Afunction%253Amy-rusty-fun/invocations"
    );
    // So the wire forms of get-utf8 and get-space are signed as %25…
    assert_eq!(canonical_uri("/%E1%88%B4"), "/%25E1%2588%25B4");
    assert_eq!(canonical_uri("/example%20space/"), "/example%2520space/");
    assert_eq!(
        canonical_uri(UNRESERVED_CHARS),
        format!("/{UNRESERVED_CHARS}")
    );
}

#[test]
fn paths_are_normalised_keeping_a_trailing_slash() {
    for (raw, canonical) in [
        ("", "/"),
        ("/", "/"),
        ("//", "/"),
        ("/a/b/", "/a/b/"),
        ("/a/./b/.", "/a/b/"),
        ("/a/b/..", "/a/"),
        ("/../a", "/a"),
        ("a", "/a"),
        (
            "/endpoints/flan-t5-small/invocations",
            "/endpoints/flan-t5-small/invocations",
        ),
    ] {
        assert_eq!(canonical_uri(raw), canonical, "{raw:?}");
    }
}

#[test]
fn queries_are_decoded_reencoded_and_sorted() {
    assert_eq!(canonical_query(""), "");
    assert_eq!(canonical_query("b=2&a=1&a=0"), "a=0&a=1&b=2");
    assert_eq!(canonical_query("flag&x="), "flag=&x=");
    assert_eq!(canonical_query("k=a+b%2Bc&s=%2f"), "k=a%20b%2Bc&s=%2F");
    assert_eq!(canonical_query("%7E=~&%41=1"), "A=1&~=~");
}

// === cross-check against AWS's own signer (tests only) ===

mod oracle {
    use super::*;
    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4;
    use aws_smithy_runtime_api::client::identity::Identity;

    pub const SM_HOST: &str = "runtime.sagemaker.us-east-1.amazonaws.com";
    /// 2023-11-14T22:13:20Z.
    pub const T0: u64 = 1_700_000_000;
    pub const TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLE+session/token==";
    pub const BODY: &[u8] =
        br#"{"inputs": "Translate to German: hello", "parameters": {"max_new_tokens": 20}}"#;

    pub struct Signing<'a> {
        pub path_and_query: &'a str,
        pub secret: &'a str,
        pub token: Option<&'a str>,
        pub region: &'a str,
        pub service: &'a str,
    }

    impl Default for Signing<'_> {
        fn default() -> Self {
            Self {
                path_and_query: "/endpoints/flan-t5-small/invocations",
                secret: SECRET,
                token: None,
                region: "us-east-1",
                service: "sagemaker",
            }
        }
    }

    /// A request as the emulator would receive it after aws-sigv4 signed it.
    pub fn signed_request(s: &Signing<'_>) -> http::Request<Vec<u8>> {
        let identity: Identity =
            Credentials::new(AKID, s.secret, s.token.map(str::to_owned), None, "test").into();
        let params: aws_sigv4::http_request::SigningParams<'_> = v4::SigningParams::builder()
            .identity(&identity)
            .region(s.region)
            .name(s.service)
            .time(at(T0))
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let uri = format!("https://{SM_HOST}{}", s.path_and_query);
        let sent = [
            ("content-type", "application/json"),
            ("accept", "application/json"),
            ("x-amzn-sagemaker-custom-attributes", "trace=1"),
        ];
        let signable = SignableRequest::new(
            "POST",
            uri.clone(),
            sent.iter().copied(),
            SignableBody::Bytes(BODY),
        )
        .unwrap();
        let (instructions, _signature) = sign(signable, &params).unwrap().into_parts();
        let mut builder = http::Request::builder().method("POST").uri(&uri);
        for (name, value) in sent {
            builder = builder.header(name, value);
        }
        let mut req = builder.body(BODY.to_vec()).unwrap();
        instructions.apply_to_request_http1x(&mut req);
        req.headers_mut()
            .insert(http::header::HOST, HeaderValue::from_static(SM_HOST));
        req
    }

    pub fn check(
        req: &http::Request<Vec<u8>>,
        now: u64,
        token: Option<&str>,
    ) -> Result<Verified, Rejection> {
        check_with(req, now, "us-east-1", "sagemaker", SECRET, token)
    }

    pub fn check_with(
        req: &http::Request<Vec<u8>>,
        now: u64,
        region: &str,
        service: &str,
        secret: &str,
        token: Option<&str>,
    ) -> Result<Verified, Rejection> {
        let expect = Expect {
            region,
            service,
            now: at(now),
            max_skew: Duration::from_secs(15 * 60),
        };
        let lookup = |id: &str| {
            (id == AKID).then(|| Credential {
                secret_access_key: secret.to_owned(),
                session_token: token.map(str::to_owned),
            })
        };
        let vr = VerifyRequest {
            method: req.method().as_str(),
            path: req.uri().path(),
            query: req.uri().query(),
            headers: req.headers(),
            body: req.body(),
        };
        verify(&vr, &expect, &lookup)
    }
}

use oracle::{check, check_with, signed_request, Signing, T0, TOKEN};

fn assert_mismatch(got: Result<Verified, Rejection>) {
    let err = got.unwrap_err();
    assert_eq!((err.status, err.error_type), (403, INVALID), "{err}");
    assert!(err.message.starts_with(SIGNATURE_MISMATCH), "{err}");
}

#[test]
fn aws_sigv4_signed_invocation_is_accepted() {
    let req = signed_request(&Signing::default());
    let signed = req.headers()["authorization"].to_str().unwrap();
    assert!(signed.contains(
        "SignedHeaders=accept;content-type;host;x-amz-date;x-amzn-sagemaker-custom-attributes,"
    ));
    assert_eq!(
        check(&req, T0, None),
        Ok(Verified {
            access_key_id: AKID.to_owned()
        })
    );
    // Anywhere inside the 15-minute window either way.
    assert!(check(&req, T0 + 14 * 60, None).is_ok());
    assert!(check(&req, T0 - 14 * 60, None).is_ok());
}

#[test]
fn aws_sigv4_signed_invocation_with_session_token_is_accepted() {
    let req = signed_request(&Signing {
        token: Some(TOKEN),
        ..Signing::default()
    });
    assert!(req.headers()["authorization"]
        .to_str()
        .unwrap()
        .contains(";x-amz-date;x-amz-security-token;"));
    assert!(check(&req, T0, Some(TOKEN)).is_ok());
}

#[test]
fn aws_sigv4_agrees_on_encoded_paths_and_queries() {
    for path_and_query in [
        "/endpoints/a%3Ab/invocations",
        "/endpoints/my%20model/invocations-response-stream",
        "/endpoints/x/./y/../invocations/",
        "/endpoints/e/invocations?b=2&a=x+y&a=%2F&flag&%E1%88%B4=%7e",
    ] {
        let req = signed_request(&Signing {
            path_and_query,
            ..Signing::default()
        });
        assert!(check(&req, T0, None).is_ok(), "{path_and_query}");
    }
}

#[test]
fn aws_sigv4_signed_invocation_rejects_a_changed_body_byte() {
    let mut req = signed_request(&Signing::default());
    req.body_mut()[2] ^= 0x20;
    assert_mismatch(check(&req, T0, None));
}

#[test]
fn aws_sigv4_signed_invocation_rejects_another_secret() {
    let req = signed_request(&Signing::default());
    let got = check_with(&req, T0, "us-east-1", "sagemaker", "not-the-secret", None);
    assert_mismatch(got);
}

#[test]
fn aws_sigv4_signed_invocation_rejects_another_region_or_service() {
    let req = signed_request(&Signing {
        region: "eu-west-1",
        ..Signing::default()
    });
    let err = check(&req, T0, None).unwrap_err();
    assert_eq!(
        err,
        Rejection {
            status: 403,
            error_type: INVALID,
            message: "Credential should be scoped to a valid region. ".to_owned()
        }
    );

    let req = signed_request(&Signing {
        service: "execute-api",
        ..Signing::default()
    });
    let err = check(&req, T0, None).unwrap_err();
    assert_eq!(
        (err.status, err.error_type, err.message.as_str()),
        (
            403,
            INVALID,
            "Credential should be scoped to correct service: 'sagemaker'. "
        )
    );

    // The emulator configured for another region refuses a us-east-1 signature.
    let req = signed_request(&Signing::default());
    let err = check_with(&req, T0, "us-west-2", "sagemaker", SECRET, None).unwrap_err();
    assert_eq!(
        err.message,
        "Credential should be scoped to a valid region. "
    );
}

#[test]
fn aws_sigv4_signed_invocation_rejects_a_wrong_or_missing_session_token() {
    let req = signed_request(&Signing {
        token: Some(TOKEN),
        ..Signing::default()
    });
    // The key store holds another token for this key.
    let err = check(&req, T0, Some("another-token")).unwrap_err();
    assert_eq!(
        (err.status, err.error_type, err.message.as_str()),
        (403, "UnrecognizedClientException", INVALID_TOKEN)
    );
    // A token sent for a long-term key.
    let err = check(&req, T0, None).unwrap_err();
    assert_eq!(err.error_type, "UnrecognizedClientException");
    // The token header altered in flight breaks the signature first.
    let mut altered = req.clone();
    altered.headers_mut().insert(
        "x-amz-security-token",
        HeaderValue::from_static("IQoJb3JpZ2luX2VjEXAMPLE+session/token=!"),
    );
    assert_mismatch(check(&altered, T0, Some(TOKEN)));
    // A temporary key used without its token.
    let req = signed_request(&Signing::default());
    let err = check(&req, T0, Some(TOKEN)).unwrap_err();
    assert_eq!(err.error_type, "UnrecognizedClientException");
}

#[test]
fn aws_sigv4_signed_invocation_rejects_16_minutes_of_skew_either_way() {
    let req = signed_request(&Signing::default());
    let err = check(&req, T0 + 16 * 60, None).unwrap_err();
    assert_eq!(
        (err.status, err.error_type, err.message.as_str()),
        (
            403,
            INVALID,
            "Signature expired: 20231114T221320Z is now earlier than 20231114T221420Z (20231114T222920Z - 15 min.)"
        )
    );
    let err = check(&req, T0 - 16 * 60, None).unwrap_err();
    assert_eq!(
        err.message,
        "Signature not yet current: 20231114T221320Z is still later than 20231114T221220Z (20231114T215720Z + 15 min.)"
    );
}

#[test]
fn aws_sigv4_signed_invocation_rejects_a_removed_signed_header() {
    for name in [
        "content-type",
        "x-amzn-sagemaker-custom-attributes",
        "accept",
    ] {
        let mut req = signed_request(&Signing::default());
        req.headers_mut().remove(name);
        assert_eq!(check(&req, T0, None), Err(Rejection::mismatch()), "{name}");
    }
    // Removing the date takes away what the signature is anchored to.
    let mut req = signed_request(&Signing::default());
    req.headers_mut().remove("x-amz-date");
    assert_eq!(check(&req, T0, None).unwrap_err().error_type, INCOMPLETE);
}

#[test]
fn aws_sigv4_signed_invocation_tolerates_unsigned_hop_headers() {
    let mut req = signed_request(&Signing::default());
    req.headers_mut()
        .insert("user-agent", HeaderValue::from_static("curl/8"));
    req.headers_mut()
        .insert("x-amzn-trace-id", HeaderValue::from_static("Root=1-abc"));
    assert!(check(&req, T0, None).is_ok());
}

// === every rejection, as AWS words it ===

/// A request for the suite's key and clock, signed by this module's own
/// functions (the suite and aws-sigv4 above vouch for them).
fn self_signed(
    extra: &[(&str, &str)],
    signed: &str,
    credential_scope: &str,
    amz_date: &str,
) -> HeaderMap {
    let mut map = headers(extra);
    let signed_list: Vec<&str> = signed.split(';').collect();
    let req = request("POST", "/endpoints/e/invocations", None, &map, b"{}");
    let creq = canonical_request(&req, &signed_list, &hex::encode(Sha256::digest(b"{}")));
    let parts: Vec<&str> = credential_scope.split('/').collect();
    let sts = string_to_sign(amz_date, &parts[1..].join("/"), &creq);
    let key = signing_key(SECRET, parts[1], parts[2], parts[3]).unwrap();
    let sig = hex::encode(hmac_sha256(&key, sts.as_bytes()).unwrap());
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={credential_scope}, SignedHeaders={signed}, Signature={sig}"
    );
    map.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&auth).unwrap(),
    );
    map
}

const SCOPE: &str = "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request";

fn run(map: &HeaderMap) -> Result<Verified, Rejection> {
    run_at(map, SUITE_UNIX)
}

fn run_at(map: &HeaderMap, now: u64) -> Result<Verified, Rejection> {
    let req = request("POST", "/endpoints/e/invocations", None, map, b"{}");
    verify(&req, &suite_expect(at(now)), &store(None))
}

fn rejection(status: u16, error_type: &'static str, message: &str) -> Rejection {
    Rejection {
        status,
        error_type,
        message: message.to_owned(),
    }
}

#[test]
fn self_signed_baseline_is_accepted() {
    let map = self_signed(&[HOST, DATE], "host;x-amz-date", SCOPE, SUITE_DATE);
    assert!(run(&map).is_ok());
}

#[test]
fn no_authorization_or_a_non_sigv4_one_is_a_missing_token() {
    let expected = rejection(
        403,
        "MissingAuthenticationTokenException",
        "Missing Authentication Token",
    );
    assert_eq!(run(&headers(&[HOST, DATE])), Err(expected.clone()));
    let map = headers(&[HOST, DATE, ("Authorization", "Bearer hf_abc")]);
    assert_eq!(run(&map), Err(expected));
}

#[test]
fn another_algorithm_is_incomplete() {
    let map = headers(&[
        HOST,
        DATE,
        (
            "Authorization",
            "AWS4-HMAC-SHA512 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host, Signature=abc",
        ),
    ]);
    assert_eq!(
        run(&map),
        Err(rejection(
            400,
            INCOMPLETE,
            "Unsupported AWS 'algorithm': 'AWS4-HMAC-SHA512' (only AWS4-HMAC-SHA256 for now). "
        ))
    );
}

#[test]
fn missing_parameters_are_listed_without_echoing_the_header() {
    let sig = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
    let auth = format!("AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, Signature={sig}");
    let map = headers(&[HOST, DATE, ("Authorization", &auth)]);
    assert_eq!(
        run(&map),
        Err(rejection(
            400,
            INCOMPLETE,
            "Authorization header requires 'Credential' parameter. Authorization=AWS4-HMAC-SHA256"
        ))
    );

    let map = headers(&[HOST, ("Authorization", "AWS4-HMAC-SHA256")]);
    assert_eq!(
        run(&map),
        Err(rejection(
            400,
            INCOMPLETE,
            "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization=AWS4-HMAC-SHA256"
        ))
    );

    // An empty value counts as missing.
    let map = headers(&[
        HOST,
        DATE,
        (
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host, Signature=",
        ),
    ]);
    assert_eq!(
        run(&map).unwrap_err().message,
        "Authorization header requires 'Signature' parameter. Authorization=AWS4-HMAC-SHA256"
    );
}

#[test]
fn missing_date_is_incomplete() {
    let mut map = self_signed(&[HOST, DATE], "host;x-amz-date", SCOPE, SUITE_DATE);
    map.remove("x-amz-date");
    assert_eq!(
        run(&map),
        Err(rejection(
            400,
            INCOMPLETE,
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization=AWS4-HMAC-SHA256"
        ))
    );
}

#[test]
fn an_http_date_header_stands_in_for_x_amz_date() {
    let map = self_signed(
        &[HOST, ("Date", "Sun, 30 Aug 2015 12:36:00 GMT")],
        "date;host",
        SCOPE,
        SUITE_DATE,
    );
    assert!(run(&map).is_ok());
}

#[test]
fn a_pair_without_equal_sign_is_incomplete_and_hashed() {
    let sig = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
    let header =
        format!("AWS4-HMAC-SHA256 Credential={SCOPE}, SignedHeaders=host;x-amz-date, {sig}");
    let mut map = headers(&[HOST, DATE]);
    map.insert("authorization", HeaderValue::from_str(&header).unwrap());
    let err = run(&map).unwrap_err();
    assert_eq!((err.status, err.error_type), (400, INCOMPLETE));
    assert_eq!(
        err.message,
        format!(
            "Invalid key=value pair (missing equal-sign) in Authorization header (hashed with SHA-256 and encoded with Base64): '{}'.",
            base64(&Sha256::digest(header.as_bytes()))
        )
    );
    assert!(!err.message.contains(sig));
}

#[test]
fn an_unparseable_date_is_incomplete() {
    for bad in [
        "2015-08-30T12:36:00Z",
        "20150830T123600",
        "20150230T123600Z",
        "20150830T246000Z",
    ] {
        let map = self_signed(
            &[HOST, ("X-Amz-Date", bad)],
            "host;x-amz-date",
            SCOPE,
            SUITE_DATE,
        );
        assert_eq!(
            run(&map),
            Err(rejection(
                400,
                INCOMPLETE,
                &format!("Date must be in ISO-8601 'basic format'. Got '{bad}'. See http://en.wikipedia.org/wiki/ISO_8601")
            ))
        );
    }
}

#[test]
fn skew_beyond_the_limit_is_refused_in_aws_words() {
    let map = self_signed(&[HOST, DATE], "host;x-amz-date", SCOPE, SUITE_DATE);
    // 20150830T130100Z: 25 minutes later.
    assert_eq!(
        run_at(&map, SUITE_UNIX + 25 * 60),
        Err(rejection(
            403,
            INVALID,
            "Signature expired: 20150830T123600Z is now earlier than 20150830T124600Z (20150830T130100Z - 15 min.)"
        ))
    );
    // 20150830T121000Z: 26 minutes earlier.
    assert_eq!(
        run_at(&map, SUITE_UNIX - 26 * 60),
        Err(rejection(
            403,
            INVALID,
            "Signature not yet current: 20150830T123600Z is still later than 20150830T122500Z (20150830T121000Z + 15 min.)"
        ))
    );
    // Exactly 15 minutes either way is still allowed.
    assert!(run_at(&map, SUITE_UNIX + 15 * 60).is_ok());
    assert!(run_at(&map, SUITE_UNIX - 15 * 60).is_ok());
    assert!(run_at(&map, SUITE_UNIX + 15 * 60 + 1).is_err());
}

#[test]
fn host_must_be_signed() {
    let map = self_signed(&[HOST, DATE], "x-amz-date", SCOPE, SUITE_DATE);
    assert_eq!(
        run(&map),
        Err(rejection(
            403,
            INVALID,
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
        ))
    );
}

#[test]
fn a_credential_needs_five_elements() {
    let mut map = headers(&[HOST, DATE]);
    map.insert(
        "authorization",
        HeaderValue::from_static(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
        ),
    );
    assert_eq!(
        run(&map),
        Err(rejection(
            400,
            INCOMPLETE,
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got 'AKIDEXAMPLE/20150830/us-east-1/aws4_request'"
        ))
    );
}

#[test]
fn the_scope_must_name_region_service_terminator_and_date() {
    let cases = [
        (
            "AKIDEXAMPLE/20150830/us-west-2/service/aws4_request",
            "Credential should be scoped to a valid region. ",
        ),
        (
            "AKIDEXAMPLE/20150830/us-east-1/sagemaker/aws4_request",
            "Credential should be scoped to correct service: 'service'. ",
        ),
        (
            "AKIDEXAMPLE/20150830/us-east-1/service/aws5_request",
            "Credential should be scoped with a valid terminator: 'aws4_request', not 'aws5_request'. ",
        ),
        (
            "AKIDEXAMPLE/20150831/us-east-1/service/aws4_request",
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '20150831' != '20150830', from '20150830T123600Z'.",
        ),
        (
            "AKIDEXAMPLE/20150831/eu-west-1/s3/aws4_request",
            "Credential should be scoped to a valid region. Credential should be scoped to correct service: 'service'. Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '20150831' != '20150830', from '20150830T123600Z'.",
        ),
    ];
    for (scope, message) in cases {
        let map = self_signed(&[HOST, DATE], "host;x-amz-date", scope, SUITE_DATE);
        assert_eq!(run(&map), Err(rejection(403, INVALID, message)), "{scope}");
    }
}

#[test]
fn sagemaker_scope_message_names_sagemaker() {
    let map = self_signed(&[HOST, DATE], "host;x-amz-date", SCOPE, SUITE_DATE);
    let req = request("POST", "/endpoints/e/invocations", None, &map, b"{}");
    let expect = Expect {
        service: "sagemaker",
        ..suite_expect(at(SUITE_UNIX))
    };
    assert_eq!(
        verify(&req, &expect, &store(None)).unwrap_err().message,
        "Credential should be scoped to correct service: 'sagemaker'. "
    );
}

#[test]
fn an_unknown_access_key_is_unrecognized() {
    let map = self_signed(
        &[HOST, DATE],
        "host;x-amz-date",
        "AKIDUNKNOWN/20150830/us-east-1/service/aws4_request",
        SUITE_DATE,
    );
    assert_eq!(
        run(&map),
        Err(rejection(403, "UnrecognizedClientException", INVALID_TOKEN))
    );
}

#[test]
fn session_token_must_match_the_credential() {
    let token = ("X-Amz-Security-Token", "tok-1");
    let signed_token = self_signed(
        &[HOST, DATE, token],
        "host;x-amz-date;x-amz-security-token",
        SCOPE,
        SUITE_DATE,
    );
    let no_token = self_signed(&[HOST, DATE], "host;x-amz-date", SCOPE, SUITE_DATE);
    let unrecognized = Err(rejection(403, "UnrecognizedClientException", INVALID_TOKEN));
    let verify_with = |map: &HeaderMap, held: Option<&str>| {
        let req = request("POST", "/endpoints/e/invocations", None, map, b"{}");
        verify(&req, &suite_expect(at(SUITE_UNIX)), &store(held))
    };
    assert!(verify_with(&signed_token, Some("tok-1")).is_ok());
    assert_eq!(verify_with(&signed_token, Some("tok-2")), unrecognized);
    assert_eq!(verify_with(&signed_token, None), unrecognized);
    assert_eq!(verify_with(&no_token, Some("tok-1")), unrecognized);
}

#[test]
fn a_mismatch_explains_itself_as_aws_does() {
    let token = ("X-Amz-Security-Token", "secret-session-token");
    let mut map = self_signed(
        &[HOST, DATE, token],
        "host;x-amz-date;x-amz-security-token",
        SCOPE,
        SUITE_DATE,
    );
    let sent_auth = map["authorization"].to_str().unwrap().to_owned();
    let sent_sig = sent_auth.rsplit('=').next().unwrap().to_owned();
    map.insert("host", HeaderValue::from_static("evil.example.com"));
    let req = request("POST", "/endpoints/e/invocations", None, &map, b"{}");
    let err = verify(
        &req,
        &suite_expect(at(SUITE_UNIX)),
        &store(Some("secret-session-token")),
    )
    .unwrap_err();
    assert_eq!((err.status, err.error_type), (403, INVALID));
    let expected = format!(
        "{SIGNATURE_MISMATCH}\n\nThe Canonical String for this request should have been\n'POST\n/endpoints/e/invocations\n\nhost:evil.example.com\nx-amz-date:20150830T123600Z\nx-amz-security-token:secret-session-token\n\nhost;x-amz-date;x-amz-security-token\n{}'\n\nThe String-to-Sign should have been\n'AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n",
        hex::encode(Sha256::digest(b"{}"))
    );
    assert!(err.message.starts_with(&expected), "{}", err.message);
    // The token is shown, as AWS shows it; the secret and the signature never.
    for secret in [SECRET, sent_sig.as_str()] {
        assert!(!err.message.contains(secret));
    }
}

#[test]
fn a_malformed_signature_is_a_mismatch() {
    let mut map = self_signed(&[HOST, DATE], "host;x-amz-date", SCOPE, SUITE_DATE);
    let auth = map["authorization"].to_str().unwrap().to_owned();
    let short = &auth[..auth.len() - 2];
    map.insert("authorization", HeaderValue::from_str(short).unwrap());
    assert_mismatch(run(&map));
    map.insert(
        "authorization",
        HeaderValue::from_str(&format!("{short}zz")).unwrap(),
    );
    assert_mismatch(run(&map));
}

#[test]
fn signed_headers_must_be_present_sorted_and_lowercase() {
    let mismatch = Err(Rejection::mismatch());
    // Listed but absent from the request.
    let mut map = self_signed(
        &[HOST, DATE, ("X-Custom", "1")],
        "host;x-amz-date;x-custom",
        SCOPE,
        SUITE_DATE,
    );
    map.remove("x-custom");
    assert_eq!(run(&map), mismatch);
    // Not sorted, or not lowercase, or repeated: AWS's own canonical form differs.
    for signed in [
        "x-amz-date;host",
        "Host;x-amz-date",
        "host;host;x-amz-date",
        "host;;x-amz-date",
    ] {
        let map = self_signed(&[HOST, DATE], signed, SCOPE, SUITE_DATE);
        assert_eq!(run(&map), mismatch, "{signed}");
    }
}

#[test]
fn a_signed_content_hash_must_be_the_bodys() {
    let right = hex::encode(Sha256::digest(b"{}"));
    let map = self_signed(
        &[HOST, DATE, ("x-amz-content-sha256", &right)],
        "host;x-amz-content-sha256;x-amz-date",
        SCOPE,
        SUITE_DATE,
    );
    assert!(run(&map).is_ok());
    let map = self_signed(
        &[HOST, DATE, ("x-amz-content-sha256", EMPTY_SHA256)],
        "host;x-amz-content-sha256;x-amz-date",
        SCOPE,
        SUITE_DATE,
    );
    assert_eq!(run(&map), Err(Rejection::mismatch()));
}

// === helpers ===

#[test]
fn dates_round_trip_and_reject_impossible_values() {
    assert_eq!(parse_amz_date(SUITE_DATE), Some(1_440_938_160));
    assert_eq!(format_amz_date(1_440_938_160), SUITE_DATE);
    assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
    assert_eq!(parse_amz_date("20000229T235959Z"), Some(951_868_799));
    assert_eq!(format_amz_date(951_868_799), "20000229T235959Z");
    assert_eq!(format_amz_date(-1), "19691231T235959Z");
    assert_eq!(parse_amz_date("21000229T000000Z"), None);
    assert_eq!(parse_amz_date("20151301T000000Z"), None);
    assert_eq!(parse_amz_date("2015083OT123600Z"), None);
    assert_eq!(
        parse_http_date("Sun, 30 Aug 2015 12:36:00 GMT"),
        Some(1_440_938_160)
    );
    assert_eq!(parse_http_date("Sun, 30 Foo 2015 12:36:00 GMT"), None);
    assert_eq!(parse_http_date("Sun, 30 Aug 2015 12:36:00 UTC"), None);
    assert_eq!(parse_http_date("Sun, 30 Aug 2015 12:36:00 GMTé"), None);
    for unix in [0, 68_169_600, 951_782_400, 1_700_000_000, 4_102_444_800] {
        assert_eq!(parse_amz_date(&format_amz_date(unix)), Some(unix));
    }
}

#[test]
fn base64_matches_rfc_4648() {
    for (raw, encoded) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(raw.as_bytes()), encoded);
    }
}

#[test]
fn headers_are_trimmed_and_collapsed() {
    assert_eq!(collapse_spaces("  a   b  c "), "a b c");
    assert_eq!(collapse_spaces(""), "");
    assert_eq!(collapse_spaces("a\tb"), "a\tb");
}

#[test]
fn credential_debug_hides_secrets() {
    let cred = Credential {
        secret_access_key: SECRET.to_owned(),
        session_token: Some("tok".to_owned()),
    };
    let shown = format!("{cred:?}");
    assert!(
        !shown.contains(SECRET) && !shown.contains("tok\""),
        "{shown}"
    );
}
