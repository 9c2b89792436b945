//! A cross-check against AWS's own signer (aws-sigv4, in tests only): what
//! it signs is accepted, and every change to the request is refused.

use super::*;

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
            regions: Regions::Only(region),
            service,
            now: at(now),
            max_skew: Duration::from_secs(15 * 60),
            explain_mismatch: true,
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
