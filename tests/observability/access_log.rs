//! The JSON access log of the real binary: one line per request, with what
//! was sent and what came back.

use std::process::Command;

use crate::common::child::{write_temp, Running, Stream, BIN};
use crate::common::model::words;
use crate::common::{binary_config, BODY, HF_TOKEN, SECRET_KEY};
use crate::traffic::{error_events, stream_body};
use crate::{TRACEPARENT, TRACE_ID};
use infergate::emulator::{self, InjectedError};
use serde_json::{json, Value as Json};

/// One request of the log test: what was sent and what came back.
struct Sent {
    id: &'static str,
    route: &'static str,
    backend: Option<&'static str>,
    status: u16,
    attempts: u64,
    stream: bool,
    bytes_in: usize,
    bytes_out: usize,
    trace: Option<&'static str>,
}

#[tokio::test]
async fn json_logs_have_one_access_line_per_request() {
    let loopback: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let sm = emulator::sagemaker::start(
        loopback,
        crate::common::sm_options(emulator::ModelFormat::Tgi),
    )
    .await
    .unwrap();
    let hf = emulator::huggingface::start(loopback, crate::common::hf_options())
        .await
        .unwrap();
    let config = write_temp(
        "logs.toml",
        &binary_config(&sm.url(), &hf.url(), "LOG_TEST_HF_TOKEN"),
    );
    let mut cmd = Command::new(BIN);
    cmd.args([
        "--log-format",
        "json",
        "serve",
        "--config",
        config.to_str().unwrap(),
    ])
    .env_remove("RUST_LOG")
    .env("AWS_ACCESS_KEY_ID", crate::common::ACCESS_KEY)
    .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    .env_remove("AWS_SESSION_TOKEN")
    .env_remove("AWS_PROFILE")
    .env("AWS_EC2_METADATA_DISABLED", "true")
    .env("LOG_TEST_HF_TOKEN", HF_TOKEN);
    let mut gw = Running::spawn(cmd, Stream::Stderr);
    gw.wait_for("the listening line", |lines| {
        lines.iter().any(|l| l.contains("infergate listening"))
    })
    .await;
    let listening: Json = gw
        .lines()
        .iter()
        .find(|l| l.contains("infergate listening"))
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap();
    let base = format!("http://{}", listening["listen"].as_str().unwrap());
    let client = reqwest::Client::new();

    let mut sent: Vec<Sent> = Vec::new();
    let post = |id: &'static str, path: String, body: String| {
        client
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .header("x-request-id", id)
            .body(body)
    };
    // Successes on both kinds, one carrying a trace.
    let res = post("log-sm-ok", "/v1/predict/sm".into(), BODY.into())
        .header("traceparent", TRACEPARENT)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let out = res.bytes().await.unwrap().len();
    sent.push(Sent {
        id: "log-sm-ok",
        route: "sm",
        backend: Some("sm"),
        status: 200,
        attempts: 1,
        stream: false,
        bytes_in: BODY.len(),
        bytes_out: out,
        trace: Some(TRACE_ID),
    });
    let big = json!({"inputs": words(40), "parameters": {"max_new_tokens": 30}}).to_string();
    let res = post("log-hf-ok", "/v1/predict/hf".into(), big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let out = res.bytes().await.unwrap().len();
    sent.push(Sent {
        id: "log-hf-ok",
        route: "hf",
        backend: Some("hf"),
        status: 200,
        attempts: 1,
        stream: false,
        bytes_in: big.len(),
        bytes_out: out,
        trace: None,
    });
    // A client's request id with JSON's special characters: kept (it is
    // visible ASCII) and escaped, so its line stays one JSON object.
    let odd_id = r#"log-"quoted"\back{slash}"#;
    let res = post(odd_id, "/v1/predict/hf".into(), BODY.into())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"], odd_id);
    let out = res.bytes().await.unwrap().len();
    sent.push(Sent {
        id: odd_id,
        route: "hf",
        backend: Some("hf"),
        status: 200,
        attempts: 1,
        stream: false,
        bytes_in: BODY.len(),
        bytes_out: out,
        trace: None,
    });
    // A retry.
    sm.faults().fail_next(1, InjectedError::ThrottlingException);
    let res = post("log-sm-retry", "/v1/predict/sm".into(), BODY.into())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let out = res.bytes().await.unwrap().len();
    sent.push(Sent {
        id: "log-sm-retry",
        route: "sm",
        backend: Some("sm"),
        status: 200,
        attempts: 2,
        stream: false,
        bytes_in: BODY.len(),
        bytes_out: out,
        trace: None,
    });
    // The model's 4xx.
    hf.faults().fail_next(1, InjectedError::Status(422));
    let res = post("log-hf-422", "/v1/predict/hf".into(), BODY.into())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let out = res.bytes().await.unwrap().len();
    sent.push(Sent {
        id: "log-hf-422",
        route: "hf",
        backend: Some("hf"),
        status: 422,
        attempts: 1,
        stream: false,
        bytes_in: BODY.len(),
        bytes_out: out,
        trace: None,
    });
    // An unknown route.
    let res = post("log-unknown", "/v1/predict/nope".into(), BODY.into())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let out = res.bytes().await.unwrap().len();
    sent.push(Sent {
        id: "log-unknown",
        route: "unknown",
        backend: None,
        status: 404,
        attempts: 0,
        stream: false,
        bytes_in: 0,
        bytes_out: out,
        trace: None,
    });
    // Streams: a whole one, and one ended by an error event.
    let body = stream_body(12);
    let res = post(
        "log-hf-stream",
        "/v1/predict/hf/stream".into(),
        body.clone(),
    )
    .header("traceparent", TRACEPARENT)
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let out = res.bytes().await.unwrap().len();
    sent.push(Sent {
        id: "log-hf-stream",
        route: "hf",
        backend: Some("hf"),
        status: 200,
        attempts: 1,
        stream: true,
        bytes_in: body.len(),
        bytes_out: out,
        trace: Some(TRACE_ID),
    });
    sm.faults().update(|f| f.stream_error_after = Some(3));
    let res = post(
        "log-sm-stream-err",
        "/v1/predict/sm/stream".into(),
        body.clone(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert_eq!(error_events(&text), 1);
    sent.push(Sent {
        id: "log-sm-stream-err",
        route: "sm",
        backend: Some("sm"),
        status: 200,
        attempts: 1,
        stream: true,
        bytes_in: body.len(),
        bytes_out: text.len(),
        trace: None,
    });

    let n = sent.len();
    gw.wait_for("every access line", |lines| {
        lines
            .iter()
            .filter(|l| l.contains("\"infergate::access\""))
            .count()
            >= n
    })
    .await;
    gw.stop();
    let lines = gw.lines();
    let records: Vec<Json> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Json>(l)
                .unwrap_or_else(|e| panic!("a stderr line is not JSON ({e}): {l}"))
        })
        .collect();
    for r in &records {
        assert!(r["timestamp"].is_string(), "{r}");
        assert!(r["level"].is_string(), "{r}");
        assert!(r["target"].is_string(), "{r}");
    }
    let access: Vec<&Json> = records
        .iter()
        .filter(|r| r["target"] == "infergate::access")
        .collect();
    assert_eq!(
        access.len(),
        n,
        "one access line per request:\n{}",
        lines.join("\n")
    );
    for s in &sent {
        let mine: Vec<&&Json> = access.iter().filter(|r| r["request_id"] == s.id).collect();
        assert_eq!(mine.len(), 1, "access lines of {}", s.id);
        let a = mine[0];
        let ctx = format!("{}: {a}", s.id);
        assert_eq!(a["level"], "INFO", "{ctx}");
        assert_eq!(a["route"], s.route, "{ctx}");
        match s.backend {
            Some(b) => assert_eq!(a["backend"], b, "{ctx}"),
            None => assert!(a["backend"].is_null(), "{ctx}"),
        }
        assert_eq!(a["status"], s.status, "{ctx}");
        assert_eq!(a["attempts"], s.attempts, "{ctx}");
        assert_eq!(a["stream"], s.stream, "{ctx}");
        assert_eq!(a["bytes_in"], s.bytes_in, "{ctx}");
        assert_eq!(a["bytes_out"], s.bytes_out, "{ctx}");
        assert_eq!(a["complete"], true, "{ctx}");
        // A trace only when the client sent one: no spans are exported.
        let trace = a["trace_id"].as_str().unwrap();
        match s.trace {
            Some(t) => assert_eq!(trace, t, "{ctx}"),
            None => assert_eq!(trace, "", "{ctx}"),
        }
        let total = a["total_us"].as_u64().unwrap();
        let upstream = a["upstream_us"].as_u64().unwrap();
        let head = a["head_us"].as_u64().unwrap();
        assert!(upstream <= total && head <= total, "{ctx}");
        if s.backend.is_some() {
            assert!(upstream > 0, "{ctx}");
        } else {
            assert_eq!(upstream, 0, "{ctx}");
        }
    }
    // Failures log their cause once, besides the access line.
    for id in ["log-hf-422", "log-unknown", "log-sm-stream-err"] {
        let others: Vec<&Json> = records
            .iter()
            .filter(|r| r["target"] != "infergate::access" && r["request_id"] == id)
            .collect();
        assert!(others.len() <= 1, "{id} logged more than once: {others:?}");
    }
    let stream_failed: Vec<&Json> = records
        .iter()
        .filter(|r| r["message"] == "stream failed after it began")
        .collect();
    assert_eq!(stream_failed.len(), 1);
    assert_eq!(stream_failed[0]["request_id"], "log-sm-stream-err");
    assert_eq!(stream_failed[0]["kind"], "model_stream_error");
    let failed: Vec<&Json> = records
        .iter()
        .filter(|r| r["message"] == "request failed")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["request_id"], "log-hf-422");
    // Nothing secret on the way.
    let all = lines.join("\n");
    for secret in [HF_TOKEN, SECRET_KEY, "Signature="] {
        assert!(!all.contains(secret), "{secret} in the logs");
    }
    drop(sm);
    drop(hf);
    let _ = std::fs::remove_dir_all(config.parent().unwrap());
}
