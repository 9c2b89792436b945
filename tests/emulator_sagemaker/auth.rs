//! SigV4 verified from the received bytes, session tokens, credential
//! rotation, h2c, and stateful sessions.

use std::time::{Duration, SystemTime};

use crate::client::{
    aws_error, header, invoke, signed_headers, start, start_default, stream, with_key, Key, KEY,
};
use infergate::emulator::Credential;
use serde_json::{json, Value};

// === SigV4 ===

#[tokio::test]
async fn signatures_are_verified_from_the_received_bytes() {
    let emu = start(with_key(None)).await;
    let body = r#"{"inputs":"a b"}"#;
    let resp = invoke(body)
        .header("x-amzn-sagemaker-custom-attributes", "c=1")
        .signed(&KEY)
        .send(&emu)
        .await;
    assert_eq!(resp.status(), 200);

    let v = aws_error(
        invoke(body).send(&emu).await,
        403,
        "MissingAuthenticationTokenException",
    )
    .await;
    assert_eq!(v["message"], "Missing Authentication Token");

    let wrong = Key {
        secret: "not-the-secret",
        ..KEY
    };
    let resp = invoke(body).signed(&wrong).send(&emu).await;
    assert_eq!(
        header(&resp, "x-amzn-errortype").as_deref(),
        Some(
            "InvalidSignatureException:http://internal.amazon.com/coral/com.amazon.coral.service/"
        )
    );
    let v = aws_error(resp, 403, "InvalidSignatureException").await;
    assert!(v["message"]
        .as_str()
        .unwrap()
        .starts_with("The request signature we calculated does not match"));

    let stale = SystemTime::now() - Duration::from_secs(20 * 60);
    let resp = invoke(body).signed(&KEY).at(stale).send(&emu).await;
    assert_eq!(resp.status(), 403);

    // A signed header changed after signing: the signature no longer matches.
    let url = format!("{}/endpoints/flan/invocations", emu.url());
    let signed = signed_headers(
        &url,
        &[("content-type", "application/json")],
        body.as_bytes(),
        &KEY,
        SystemTime::now(),
    );
    let mut req = reqwest::Client::new()
        .post(&url)
        .body(body)
        .header("content-type", "text/plain");
    for (k, v) in signed {
        req = req.header(k, v);
    }
    assert_eq!(req.send().await.unwrap().status(), 403);

    assert_eq!(emu.counters().auth_rejections(), 4);
    assert_eq!(emu.counters().requests(), 5);
}

#[tokio::test]
async fn session_tokens_and_credential_rotation() {
    let emu = start(with_key(Some("the-session-token"))).await;
    let body = r#"{"inputs":"a"}"#;
    let temp = Key {
        token: Some("the-session-token"),
        ..KEY
    };
    assert_eq!(invoke(body).signed(&temp).send(&emu).await.status(), 200);
    assert_eq!(invoke(body).signed(&KEY).send(&emu).await.status(), 403);

    emu.set_credentials(vec![(
        "ASIANEWKEY".to_owned(),
        Credential {
            secret_access_key: "new-secret".to_owned(),
            session_token: None,
        },
    )]);
    assert_eq!(invoke(body).signed(&temp).send(&emu).await.status(), 403);
    let new = Key {
        id: "ASIANEWKEY",
        secret: "new-secret",
        token: None,
    };
    assert_eq!(invoke(body).signed(&new).send(&emu).await.status(), 200);
    emu.set_credentials(Vec::new());
    assert_eq!(invoke(body).send(&emu).await.status(), 200);
    assert_eq!(emu.counters().auth_rejections(), 2);
}

#[tokio::test]
async fn h2c_requests_are_served_and_verified() {
    let emu = start(with_key(None)).await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = invoke(r#"{"inputs":"a b"}"#)
        .signed(&KEY)
        .client(client)
        .send(&emu)
        .await;
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!([{"generated_text": "b a"}])
    );
}

// === sessions ===

#[tokio::test]
async fn stateful_sessions_open_continue_and_close() {
    let emu = start_default().await;
    let resp = invoke(r#"{"inputs":"a"}"#)
        .header("x-amzn-sagemaker-session-id", "NEW_SESSION")
        .send(&emu)
        .await;
    assert_eq!(resp.status(), 200);
    let new = header(&resp, "x-amzn-sagemaker-new-session-id").unwrap();
    let (id, expires) = new.split_once("; Expires=").unwrap();
    assert!(!id.is_empty());
    assert_eq!(expires.len(), "2024-01-01T00:00:00Z".len());
    let expires = humantime::parse_rfc3339(expires).unwrap();
    let ahead = expires.duration_since(SystemTime::now()).unwrap();
    assert!(ahead > Duration::from_secs(19 * 60) && ahead <= Duration::from_secs(20 * 60));

    let resp = invoke(r#"{"inputs":"a"}"#)
        .header("x-amzn-sagemaker-session-id", id)
        .send(&emu)
        .await;
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "x-amzn-sagemaker-new-session-id").is_none());

    // Streams may use a session but not open one.
    let resp = stream(r#"{"inputs":"a","stream":true}"#)
        .header("x-amzn-sagemaker-session-id", id)
        .send(&emu)
        .await;
    assert_eq!(resp.status(), 200);
    let resp = stream("{}")
        .header("x-amzn-sagemaker-session-id", "NEW_SESSION")
        .send(&emu)
        .await;
    aws_error(resp, 400, "ValidationError").await;

    let resp = invoke(r#"{"inputs":"a","close_session":true}"#)
        .header("x-amzn-sagemaker-session-id", id)
        .send(&emu)
        .await;
    assert_eq!(
        header(&resp, "x-amzn-sagemaker-closed-session-id").as_deref(),
        Some(id)
    );

    for unknown in [id, "never-opened"] {
        let resp = invoke(r#"{"inputs":"a"}"#)
            .header("x-amzn-sagemaker-session-id", unknown)
            .send(&emu)
            .await;
        let v = aws_error(resp, 400, "ValidationError").await;
        assert!(v["message"].as_str().unwrap().contains(unknown));
    }
}
