//! A loopback OTLP/HTTP receiver that keeps every span it is sent.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use crate::common::wait::{poll, WAIT};

// === the receiver ===

/// One span as exported, with what its batch said about it.
#[derive(Debug, Clone)]
pub struct Got {
    pub span: Span,
    pub resource: Vec<KeyValue>,
    pub scope: String,
}

/// What the receiver was sent.
#[derive(Debug, Default)]
pub struct Log {
    pub spans: Vec<Got>,
    /// `(method, path, content-type)` of every request.
    pub requests: Vec<(String, String, String)>,
}

#[derive(Clone, Default)]
pub struct Receiver {
    pub log: Arc<Mutex<Log>>,
    pub url: String,
}

impl Receiver {
    /// An OTLP/HTTP receiver on an ephemeral loopback port.
    pub async fn start() -> Self {
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

    pub fn spans(&self) -> Vec<Got> {
        self.log.lock().unwrap().spans.clone()
    }

    pub fn requests(&self) -> Vec<(String, String, String)> {
        self.log.lock().unwrap().requests.clone()
    }

    /// Waits for the span with this id.
    pub async fn wait_for_span(&self, span_id: &str) -> Got {
        let found = poll(WAIT, || {
            self.spans()
                .into_iter()
                .find(|g| hex(&g.span.span_id) == span_id)
        })
        .await;
        found.unwrap_or_else(|| {
            panic!(
                "no span {span_id} within {WAIT:?}; got {:#?}",
                self.spans()
                    .iter()
                    .map(|g| (g.span.name.clone(), hex(&g.span.span_id)))
                    .collect::<Vec<_>>()
            )
        })
    }
}

pub async fn receive(log: &Mutex<Log>, req: Request<Incoming>) -> Response<Full<Bytes>> {
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

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

pub fn string(s: &str) -> Option<Value> {
    Some(Value::StringValue(s.to_owned()))
}
