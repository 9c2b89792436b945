#![cfg(feature = "otlp")]
#![allow(clippy::unwrap_used, clippy::expect_used)]
//! OTLP span export end to end: a loopback OTLP/HTTP receiver (hyper,
//! decoding the protobuf with `opentelemetry-proto`), a gateway in front of
//! the two emulators exporting to it, and the real binary flushing its spans
//! on SIGTERM.
//!
//! Every span is matched to what the backend saw: its span id is the parent
//! id of the backend's `traceparent`, its trace id the client's (or the new
//! one the backend got), its parent the client's span. Waits are bounded
//! polls on a condition.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use infergate::config::Config;
use infergate::emulator::{self, EmulatorHandle, InjectedError, ModelFormat};
use infergate::gateway::{BuildOptions, Gateway};
use infergate::server;
use infergate::telemetry::otlp::{BatchOptions, OtlpSink};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

const BODY: &str = r#"{"inputs": "one stable inference URL", "parameters": {"max_new_tokens": 8}}"#;
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

// === the receiver ===

/// One span as exported, with what its batch said about it.
#[derive(Debug, Clone)]
struct Got {
    span: Span,
    resource: Vec<KeyValue>,
    scope: String,
}

/// What the receiver was sent.
#[derive(Debug, Default)]
struct Log {
    spans: Vec<Got>,
    /// `(method, path, content-type)` of every request.
    requests: Vec<(String, String, String)>,
}

#[derive(Clone, Default)]
struct Receiver {
    log: Arc<Mutex<Log>>,
    url: String,
}

impl Receiver {
    /// An OTLP/HTTP receiver on an ephemeral loopback port.
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let log: Arc<Mutex<Log>> = Arc::default();
        let accepted = Arc::clone(&log);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = Arc::clone(&accepted);
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let log = Arc::clone(&log);
                        async move { Ok::<_, Infallible>(receive(&log, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { log, url }
    }

    fn spans(&self) -> Vec<Got> {
        self.log.lock().unwrap().spans.clone()
    }

    fn requests(&self) -> Vec<(String, String, String)> {
        self.log.lock().unwrap().requests.clone()
    }

    /// Waits for the span with this id.
    async fn wait_for(&self, span_id: &str) -> Got {
        for _ in 0..1000 {
            if let Some(got) = self
                .spans()
                .into_iter()
                .find(|g| hex(&g.span.span_id) == span_id)
            {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "no span {span_id} within 20s; got {:#?}",
            self.spans()
                .iter()
                .map(|g| (g.span.name.clone(), hex(&g.span.span_id)))
                .collect::<Vec<_>>()
        );
    }
}

async fn receive(log: &Mutex<Log>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    log.lock()
        .unwrap()
        .requests
        .push((method.clone(), path.clone(), content_type.clone()));
    if method != "POST" || path != "/v1/traces" || content_type != "application/x-protobuf" {
        return Response::builder()
            .status(404)
            .body(Full::new(Bytes::new()))
            .unwrap();
    }
    let export = ExportTraceServiceRequest::decode(body).unwrap();
    let mut log = log.lock().unwrap();
    for rs in export.resource_spans {
        let resource = rs.resource.map(|r| r.attributes).unwrap_or_default();
        for ss in rs.scope_spans {
            let scope = ss.scope.map(|s| s.name).unwrap_or_default();
            for span in ss.spans {
                log.spans.push(Got {
                    span,
                    resource: resource.clone(),
                    scope: scope.clone(),
                });
            }
        }
    }
    Response::builder()
        .header("content-type", "application/x-protobuf")
        .body(Full::new(Bytes::from(
            ExportTraceServiceResponse::default().encode_to_vec(),
        )))
        .unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn string(s: &str) -> Option<Value> {
    Some(Value::StringValue(s.to_owned()))
}

// === the gateway ===

/// `(trace id, parent id, flags)` of the `traceparent` a backend saw last.
fn seen_traceparent(emulator: &EmulatorHandle) -> (String, String, String) {
    let seen = emulator.counters().last().unwrap();
    let v = seen.headers["traceparent"].to_str().unwrap().to_owned();
    let parts: Vec<&str> = v.split('-').collect();
    assert_eq!(parts.len(), 4, "{v}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

struct Gw {
    base: String,
    gateway: Arc<Gateway>,
    sink: Arc<OtlpSink>,
    sm: EmulatorHandle,
    hf: EmulatorHandle,
    client: reqwest::Client,
    receiver: Receiver,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Gw {
    /// The tests' usual gateway (routes `sm`, `hf`, `both`), exporting to a
    /// fresh receiver in batches sent every `delay`.
    async fn start(delay: Duration) -> Self {
        let receiver = Receiver::start().await;
        let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
        let sm = emulator::sagemaker::start(loopback, common::sm_options(ModelFormat::Tgi))
            .await
            .unwrap();
        let hf = emulator::huggingface::start(loopback, common::hf_options())
            .await
            .unwrap();
        let vars: HashMap<&str, String> = HashMap::from([
            ("SM_URL", sm.url()),
            ("JS_URL", sm.url()),
            ("HF_URL", hf.url()),
            ("HF_TOKEN", common::HF_TOKEN.to_owned()),
            ("OTLP_URL", receiver.url.clone()),
        ]);
        let text = format!(
            "{}\n[telemetry]\notlp_endpoint = \"${{OTLP_URL}}\"\nservice_name = \"infergate-test\"\notlp_timeout = \"2s\"\n",
            common::CONFIG
        );
        let config = Config::from_toml(&text, &|k| vars.get(k).cloned())
            .unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
        let sink = Arc::new(
            OtlpSink::with_batch(
                &config.telemetry,
                BatchOptions {
                    scheduled_delay: Some(delay),
                    ..BatchOptions::default()
                },
            )
            .unwrap(),
        );
        assert_eq!(sink.endpoint(), format!("{}/v1/traces", receiver.url));
        let credentials = config
            .backends
            .iter()
            .map(|b| {
                (
                    b.name.clone(),
                    common::static_credentials(common::SECRET_KEY),
                )
            })
            .collect();
        let listener = server::bind(config.server.listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let gateway = Gateway::build(
            config,
            BuildOptions {
                credentials,
                spans: Some(Arc::clone(&sink) as Arc<dyn infergate::telemetry::SpanSink>),
            },
        )
        .await
        .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(server::serve(listener, Arc::clone(&gateway), async {
            let _ = stopped.await;
        }));
        Gw {
            base: format!("http://{addr}"),
            gateway,
            sink,
            sm,
            hf,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            receiver,
            stop,
            server,
        }
    }

    /// POSTs `BODY` to `path`, with `traceparent` when given; reads the
    /// whole answer. Returns the status.
    async fn post(&self, path: &str, traceparent: Option<&str>) -> u16 {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(BODY);
        if let Some(tp) = traceparent {
            req = req.header("traceparent", tp);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let _ = res.bytes().await.unwrap();
        status
    }

    /// Stops the server, then the exporter (sending what is queued).
    async fn shutdown(self) -> Receiver {
        let _ = self.stop.send(());
        let _ = self.server.await;
        drop(self.gateway);
        let sink = self.sink;
        tokio::task::spawn_blocking(move || sink.shutdown(Duration::from_secs(5)))
            .await
            .unwrap()
            .unwrap();
        self.receiver
    }
}

// === spans ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_span_continues_the_clients_trace_with_the_id_the_backend_saw() {
    let gw = Gw::start(Duration::from_millis(50)).await;
    assert_eq!(gw.post("/v1/predict/sm", Some(TRACEPARENT)).await, 200);
    let (trace, span_id, flags) = seen_traceparent(&gw.sm);
    assert_eq!(trace, TRACE_ID);
    assert_eq!(flags, "01");
    assert_ne!(span_id, PARENT_ID);

    let got = gw.receiver.wait_for(&span_id).await;
    let span = &got.span;
    assert_eq!(hex(&span.trace_id), TRACE_ID);
    assert_eq!(hex(&span.span_id), span_id);
    assert_eq!(hex(&span.parent_span_id), PARENT_ID);
    assert_eq!(span.kind, SpanKind::Server as i32);
    assert_eq!(span.name, "POST /v1/predict/sm");
    assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    assert!(span.start_time_unix_nano > 0);
    // Sampled, and the parent is remote (the OTLP span flags' bits 8 and 9).
    assert_eq!(span.flags & 0xff, 0x01);
    assert_eq!(span.flags & 0x300, 0x300);
    let a = &span.attributes;
    assert_eq!(attr(a, "http.route"), string("/v1/predict/sm").as_ref());
    assert_eq!(attr(a, "http.request.method"), string("POST").as_ref());
    assert_eq!(attr(a, "infergate.route"), string("sm").as_ref());
    assert_eq!(attr(a, "infergate.backend"), string("sm").as_ref());
    assert_eq!(
        attr(a, "http.response.status_code"),
        Some(&Value::IntValue(200))
    );
    assert_eq!(attr(a, "infergate.attempts"), Some(&Value::IntValue(1)));
    assert_eq!(attr(a, "infergate.stream"), Some(&Value::BoolValue(false)));
    assert_eq!(attr(a, "infergate.complete"), Some(&Value::BoolValue(true)));
    assert_eq!(attr(a, "error.type"), None);
    let status = span.status.clone().unwrap_or_default();
    assert_eq!(status.code, StatusCode::Unset as i32);
    assert_eq!(
        attr(&got.resource, "service.name"),
        string("infergate-test").as_ref()
    );
    assert_eq!(
        attr(&got.resource, "service.version"),
        string(env!("CARGO_PKG_VERSION")).as_ref()
    );
    assert_eq!(got.scope, "infergate");

    let receiver = gw.shutdown().await;
    for (method, path, content_type) in receiver.requests() {
        assert_eq!(
            (method.as_str(), path.as_str(), content_type.as_str()),
            ("POST", "/v1/traces", "application/x-protobuf")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_trace_context_is_a_root_span() {
    let gw = Gw::start(Duration::from_millis(50)).await;
    assert_eq!(gw.post("/v1/predict/hf", None).await, 200);
    let (trace, span_id, _) = seen_traceparent(&gw.hf);
    let got = gw.receiver.wait_for(&span_id).await;
    assert_eq!(hex(&got.span.trace_id), trace);
    assert!(got.span.parent_span_id.is_empty(), "a root span");
    assert_eq!(got.span.flags & 0x300, 0x100, "no remote parent");
    assert_eq!(got.span.name, "POST /v1/predict/hf");
    let a = &got.span.attributes;
    assert_eq!(attr(a, "infergate.backend"), string("hf").as_ref());
    assert_eq!(attr(a, "infergate.attempts"), Some(&Value::IntValue(1)));

    // A stream is a span too, ended when the stream ends.
    assert_eq!(
        gw.post("/v1/predict/hf/stream", Some(TRACEPARENT)).await,
        200
    );
    let (trace, span_id, _) = seen_traceparent(&gw.hf);
    assert_eq!(trace, TRACE_ID);
    let got = gw.receiver.wait_for(&span_id).await;
    assert_eq!(got.span.name, "POST /v1/predict/hf/stream");
    assert_eq!(hex(&got.span.parent_span_id), PARENT_ID);
    let a = &got.span.attributes;
    assert_eq!(
        attr(a, "http.route"),
        string("/v1/predict/hf/stream").as_ref()
    );
    assert_eq!(attr(a, "infergate.stream"), Some(&Value::BoolValue(true)));
    assert_eq!(attr(a, "infergate.route"), string("hf").as_ref());
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_count_and_5xx_is_an_error() {
    let gw = Gw::start(Duration::from_millis(50)).await;
    // One failure, then success: two attempts, one span.
    gw.sm
        .faults()
        .fail_next(1, InjectedError::ServiceUnavailable);
    assert_eq!(gw.post("/v1/predict/sm", Some(TRACEPARENT)).await, 200);
    let (_, span_id, _) = seen_traceparent(&gw.sm);
    let got = gw.receiver.wait_for(&span_id).await;
    let a = &got.span.attributes;
    assert_eq!(attr(a, "infergate.attempts"), Some(&Value::IntValue(2)));
    assert_eq!(
        attr(a, "http.response.status_code"),
        Some(&Value::IntValue(200))
    );
    assert_eq!(
        got.span.status.clone().unwrap_or_default().code,
        StatusCode::Unset as i32
    );

    // Every attempt fails: the answer is a 5xx and the span an error.
    gw.hf.faults().fail_next(3, InjectedError::Status(503));
    let status = gw.post("/v1/predict/hf", Some(TRACEPARENT)).await;
    assert!(status >= 500, "{status}");
    let (_, span_id, _) = seen_traceparent(&gw.hf);
    let got = gw.receiver.wait_for(&span_id).await;
    let a = &got.span.attributes;
    assert_eq!(
        attr(a, "http.response.status_code"),
        Some(&Value::IntValue(i64::from(status)))
    );
    assert_eq!(attr(a, "error.type"), string(&status.to_string()).as_ref());
    assert_eq!(attr(a, "infergate.attempts"), Some(&Value::IntValue(3)));
    assert_eq!(
        got.span.status.clone().unwrap_or_default().code,
        StatusCode::Error as i32
    );

    // A 4xx is not an error of the server's span.
    let before = gw.receiver.spans().len();
    assert_eq!(gw.post("/v1/predict/nope", Some(TRACEPARENT)).await, 404);
    for _ in 0..500 {
        if gw.receiver.spans().len() > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let spans = gw.receiver.spans();
    let got = spans.last().unwrap();
    assert_eq!(hex(&got.span.trace_id), TRACE_ID);
    let a = &got.span.attributes;
    assert_eq!(
        attr(a, "http.response.status_code"),
        Some(&Value::IntValue(404))
    );
    assert_eq!(attr(a, "infergate.backend"), None);
    assert_eq!(attr(a, "infergate.attempts"), Some(&Value::IntValue(0)));
    assert_eq!(
        got.span.status.clone().unwrap_or_default().code,
        StatusCode::Unset as i32
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_the_client_did_not_sample_is_not_exported() {
    let gw = Gw::start(Duration::from_millis(50)).await;
    let unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
    assert_eq!(gw.post("/v1/predict/sm", Some(unsampled)).await, 200);
    let (trace, _, flags) = seen_traceparent(&gw.sm);
    assert_eq!(
        (trace.as_str(), flags.as_str()),
        ("0af7651916cd43dd8448eb211c80319c", "00")
    );
    // Spans leave in order: once the next one is there, the first would be.
    assert_eq!(gw.post("/v1/predict/sm", Some(TRACEPARENT)).await, 200);
    let (_, span_id, _) = seen_traceparent(&gw.sm);
    gw.receiver.wait_for(&span_id).await;
    let receiver = gw.shutdown().await;
    let traces: Vec<String> = receiver
        .spans()
        .iter()
        .map(|g| hex(&g.span.trace_id))
        .collect();
    assert_eq!(traces, [TRACE_ID]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_what_is_queued() {
    // Batches would wait a minute: only the shutdown sends them.
    let gw = Gw::start(Duration::from_secs(60)).await;
    for _ in 0..5 {
        assert_eq!(gw.post("/v1/predict/both", None).await, 200);
    }
    // The span ids the backends saw, whichever served each request.
    let ids: Vec<String> = [&gw.sm, &gw.hf]
        .iter()
        .flat_map(|e| e.counters().recent())
        .map(|r| {
            let tp = r.headers["traceparent"].to_str().unwrap().to_owned();
            tp.split('-').nth(2).unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 5);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        gw.receiver.spans().is_empty(),
        "nothing sent before shutdown"
    );
    let receiver = gw.shutdown().await;
    let spans = receiver.spans();
    assert_eq!(spans.len(), 5);
    for got in &spans {
        assert!(ids.contains(&hex(&got.span.span_id)));
        assert_eq!(got.span.name, "POST /v1/predict/both");
    }
}

// === the binary ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_exports_and_flushes_on_sigterm() {
    let receiver = Receiver::start().await;
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    let hf = emulator::huggingface::start(loopback, common::hf_options())
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!(
        "infergate-otlp-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("otlp.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace = "1s"
[telemetry]
otlp_endpoint = "{}"
[backends.hf]
kind = "huggingface"
url = "{}"
token = "${{OTLP_TEST_HF_TOKEN}}"
[routes.hf]
backends = ["hf"]
"#,
            receiver.url,
            hf.url()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_infergate"))
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .env("OTLP_TEST_HF_TOKEN", common::HF_TOKEN)
        // The default five-second batches: the span must leave at exit.
        .env_remove("OTEL_BSP_SCHEDULE_DELAY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    let mut listen = None;
    for _ in 0..1500 {
        listen = lines.lock().unwrap().iter().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            (v["message"] == "infergate listening")
                .then(|| v["listen"].as_str().map(String::from))?
        });
        if listen.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let listen = listen.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("no listening line:\n{}", lines.lock().unwrap().join("\n"))
    });
    let res = reqwest::Client::new()
        .post(format!("http://{listen}/v1/predict/hf"))
        .header("content-type", "application/json")
        .header("traceparent", TRACEPARENT)
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let _ = res.bytes().await;
    let (_, span_id, _) = seen_traceparent(&hf);
    // SIGTERM: a graceful stop, which must send the queued span.
    // The shell's own `kill`, so no procps is needed.
    let killed = Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", child.id())])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    let log = lines.lock().unwrap().join("\n");
    assert!(status.success(), "{status:?}\n{log}");
    assert!(log.contains("exporting spans over OTLP/HTTP"), "{log}");
    let got = receiver.wait_for(&span_id).await;
    assert_eq!(hex(&got.span.trace_id), TRACE_ID);
    assert_eq!(hex(&got.span.parent_span_id), PARENT_ID);
    assert_eq!(
        attr(&got.resource, "service.name"),
        string("infergate").as_ref()
    );
    let _ = std::fs::remove_dir_all(dir);
}
