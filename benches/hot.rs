//! Micro-benchmarks of the functions every request runs through.
//!
//! `cargo bench --bench hot` (add `-- --quick` for a short run, or a filter
//! such as `-- sigv4`). Groups:
//!
//! - `sigv4/sign`: [`sign_request`] over 1 KiB, 64 KiB and 1 MiB bodies (the
//!   body's SHA-256 dominates the large ones);
//! - `balancer/pick/{p2c,weighted,priority}`: one [`pick`] over 2, 10 and 100
//!   healthy backends, the in-flight slot released at once;
//! - `events/…`: an upstream body of AWS event-stream frames (PayloadParts
//!   carrying TGI SSE lines), decoded and reassembled into events by the
//!   public [`Events`] API, in bytes/s; the same bytes as raw SSE (the HF
//!   path); and the frame decoder alone, to split the cost;
//! - `format/jumpstart_{request,response}`: the JumpStart payload adapters;
//! - `config/from_toml`: the whole example config, parsed and validated;
//! - `auth/…`: what a client's key and limits add to a request, in-process:
//!   the key found by its SHA-256, the request admitted by the client's and
//!   the route's local buckets (`rate_limits.store = "memory"`), the
//!   `x-ratelimit-*` fields set on a response, and all of them with the
//!   client's request counted (`auth/request`). The load bench measures
//!   the same beside the unauthenticated path, in a gateway's process.
// A benchmark panics on a failed setup step, as start-up code does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_smithy_eventstream::frame::{write_message_to, DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::{Header, HeaderValue as FrameHeaderValue, Message};
use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use http::{HeaderMap, HeaderValue};

use futures_util::FutureExt;
use infergate::backend::events::{Events, StreamItem};
use infergate::backend::format::{jumpstart_request, jumpstart_response};
use infergate::backend::sigv4::{sign_request, Signer};
use infergate::backend::Backend;
use infergate::clients::{Clients, Identity};
use infergate::config::{Balance, Config, OutlierConfig};
use infergate::error::rate_limit_headers;
use infergate::limits::Limits;
use infergate::metrics::{Metrics, Outcome};
use infergate::route::balancer::{pick, Pick};
use infergate::route::health::BackendState;
use infergate::route::PoolMember;

// === SigV4 ===

fn sigv4(c: &mut Criterion) {
    let creds = Credentials::new(
        "AKIDINFERGATEBENCH",
        "bench-secret-key",
        None,
        None,
        "bench",
    );
    let host = "runtime.sagemaker.us-east-1.amazonaws.com";
    let path = "/endpoints/flan-t5-small/invocations";
    let mut base = HeaderMap::new();
    base.insert("content-type", HeaderValue::from_static("application/json"));
    base.insert("accept", HeaderValue::from_static("application/json"));
    let mut group = c.benchmark_group("sigv4/sign");
    for (label, size) in [("1KiB", 1024), ("64KiB", 64 * 1024), ("1MiB", 1024 * 1024)] {
        let body = vec![b'x'; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(label), &body, |b, body| {
            b.iter_batched_ref(
                || base.clone(),
                |headers| {
                    let signer = Signer {
                        credentials: &creds,
                        region: "us-east-1",
                        time: SystemTime::now(),
                    };
                    sign_request(signer, "POST", host, path, headers, black_box(body)).unwrap();
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

// === balancer ===

fn pool(n: usize) -> Vec<PoolMember> {
    let outlier = OutlierConfig {
        eject_after: 5,
        base_ejection: Duration::from_secs(30),
        max_ejection: Duration::from_secs(300),
    };
    let members: Vec<PoolMember> = (0..n)
        .map(|i| PoolMember {
            series: None,
            backend: Arc::new(Backend::huggingface(
                &format!("b{i}"),
                reqwest::Url::parse("http://127.0.0.1:1/").unwrap(),
            )),
            state: Arc::new(BackendState::new(&format!("b{i}"), None, outlier)),
            weight: 1 + (i % 3) as u32,
        })
        .collect();
    for m in &members {
        let others = members
            .iter()
            .filter(|o| !Arc::ptr_eq(&o.state, &m.state))
            .map(|o| Arc::downgrade(&o.state))
            .collect();
        m.state.set_siblings(vec![others]);
    }
    members
}

fn balancer(c: &mut Criterion) {
    let all = |_: usize| true;
    for (name, balance) in [
        ("p2c", Balance::P2c),
        ("weighted", Balance::Weighted),
        ("priority", Balance::Priority),
    ] {
        let mut group = c.benchmark_group(format!("balancer/pick/{name}"));
        for n in [2usize, 10, 100] {
            let members = pool(n);
            let mut rng = fastrand::Rng::with_seed(42);
            group.bench_function(BenchmarkId::from_parameter(n), |b| {
                b.iter(|| {
                    let now = tokio::time::Instant::now();
                    match pick(balance, black_box(&members), &[], &all, now, &mut rng) {
                        // Dropping the slot gives it back, as an attempt does.
                        Pick::Chosen { index, slot } => {
                            black_box(index);
                            drop(slot);
                        }
                        other => panic!("{other:?}"),
                    }
                });
            });
        }
        group.finish();
    }
}

// === event-stream decoding ===

/// `n` TGI `generate_stream` events, as SSE text.
fn tgi_events(n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| {
            let last = i + 1 == n;
            let generated = if last {
                "\"word word word\"".to_string()
            } else {
                "null".to_string()
            };
            Bytes::from(format!(
                "data:{{\"index\":{i},\"token\":{{\"id\":{},\"text\":\" word{i}\",\"logprob\":-0.{:04},\"special\":false}},\"generated_text\":{generated},\"details\":null}}\n\n",
                1000 + i,
                i % 10_000
            ))
        })
        .collect()
}

fn payload_part(payload: Bytes) -> Message {
    Message::new_from_parts(
        vec![
            Header::new(
                ":event-type",
                FrameHeaderValue::String("PayloadPart".into()),
            ),
            Header::new(
                ":content-type",
                FrameHeaderValue::String("application/octet-stream".into()),
            ),
            Header::new(":message-type", FrameHeaderValue::String("event".into())),
        ],
        payload,
    )
}

/// The whole SageMaker response body: one PayloadPart frame per event.
fn frames(events: &[Bytes]) -> Bytes {
    let mut buf = BytesMut::new();
    for e in events {
        write_message_to(&payload_part(e.clone()), &mut buf).unwrap();
    }
    buf.freeze()
}

/// `body` as a response body that arrives in `chunk`-byte pieces, as it
/// would from a socket.
fn response(
    body: &Bytes,
    chunk: usize,
) -> impl http_body::Body<Data = Bytes, Error = std::io::Error> {
    let pieces: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> = body
        .chunks(chunk)
        .map(|c| Ok(http_body::Frame::data(body.slice_ref(c))))
        .collect();
    http_body_util::StreamBody::new(futures_util::stream::iter(pieces))
}

async fn drain(mut events: Events, expected: usize) {
    let mut n = 0;
    while let Some(item) = events.next().await {
        match item {
            StreamItem::Data(d) => {
                black_box(d);
                n += 1;
            }
            StreamItem::Error(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(n, expected);
}

fn events(c: &mut Criterion) {
    const EVENTS: usize = 256;
    // Socket-sized reads: a typical loopback read, and one smaller than a
    // frame so frames and lines are cut.
    const CHUNK: usize = 16 * 1024;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let sse = tgi_events(EVENTS);
    let aws_body = frames(&sse);
    let sse_body: Bytes = sse.concat().into();

    let mut group = c.benchmark_group("events");
    group.throughput(Throughput::Bytes(aws_body.len() as u64));
    for chunk in [CHUNK, 100] {
        group.bench_function(BenchmarkId::new("aws_decode_reassemble", chunk), |b| {
            b.iter_batched(
                || response(&aws_body, chunk),
                |res| rt.block_on(drain(Events::aws(res), EVENTS)),
                BatchSize::SmallInput,
            );
        });
    }
    group.bench_function("aws_frames_only", |b| {
        b.iter(|| {
            let mut decoder = MessageFrameDecoder::new();
            let mut buf = BytesMut::from(&aws_body[..]);
            let mut n = 0;
            while let DecodedFrame::Complete(m) = decoder.decode_frame(&mut buf).unwrap() {
                black_box(m);
                n += 1;
            }
            assert_eq!(n, EVENTS);
        });
    });
    group.throughput(Throughput::Bytes(sse_body.len() as u64));
    group.bench_function(BenchmarkId::new("sse_reassemble", CHUNK), |b| {
        b.iter_batched(
            || response(&sse_body, CHUNK),
            |res| rt.block_on(drain(Events::sse(res), EVENTS)),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

// === payload adaptation ===

fn format(c: &mut Criterion) {
    let request = serde_json::json!({
        "inputs": "Translate to German: the quick brown fox jumps over the lazy dog",
        "parameters": {"max_new_tokens": 64, "temperature": 0.7, "top_k": 50, "top_p": 0.9, "do_sample": true}
    })
    .to_string();
    let response = serde_json::json!({
        "generated_texts": ["Der schnelle braune Fuchs springt über den faulen Hund"]
    })
    .to_string();
    let mut group = c.benchmark_group("format");
    group.throughput(Throughput::Bytes(request.len() as u64));
    group.bench_function("jumpstart_request", |b| {
        b.iter(|| jumpstart_request(black_box(request.as_bytes()), "sm").unwrap());
    });
    group.throughput(Throughput::Bytes(response.len() as u64));
    group.bench_function("jumpstart_response", |b| {
        b.iter(|| jumpstart_response(black_box(response.as_bytes())).unwrap());
    });
    group.finish();
}

// === config ===

fn config(c: &mut Criterion) {
    let text = include_str!("../config/infergate.example.toml");
    let env = |name: &str| match name {
        "HF_TOKEN" => Some("hf_bench_token".to_string()),
        "SM_EXTERNAL_ID" => Some("bench-external-id".to_string()),
        "WEB_APP_KEY" => Some("bench-client-key".to_string()),
        _ => None,
    };
    // Fail loudly if the example stops loading, instead of timing an error.
    Config::from_toml(text, &env).unwrap_or_else(|e| panic!("{e}"));
    c.bench_function("config/from_toml/example", |b| {
        b.iter(|| Config::from_toml(black_box(text), &env).unwrap_or_else(|e| panic!("{e}")));
    });
}

// === auth and local limits ===

/// A gateway config with one client (the key the bench sends), a rate limit of
/// its own and one on the route, both far from reached.
const AUTH_CONFIG: &str = r#"
[backends.hf]
kind = "huggingface"
url = "http://127.0.0.1:1"

[routes.hf]
backends = ["hf"]
rate_limit = { requests_per_second = 1000000, burst = 1000000 }

[clients.bench]
api_key = "ig-bench-client-key-0123456789abcdef"
rate_limit = { requests_per_second = 1000000, burst = 1000000 }
"#;

fn auth(c: &mut Criterion) {
    let config = Config::from_toml(AUTH_CONFIG, &|_| None).unwrap_or_else(|e| panic!("{e}"));
    let clients = Clients::new(config.server.auth, &config.clients);
    let metrics = Metrics::new().unwrap();
    let limits = Arc::new(Limits::new(&config, 1, metrics.limit_store(), None).unwrap());
    let mut headers = HeaderMap::new();
    let bearer = "Bearer ig-bench-client-key-0123456789abcdef";
    headers.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_static(bearer),
    );
    let identify = |headers: &HeaderMap| match clients.identify(headers) {
        Identity::Client(client) => client,
        _ => panic!("the bench client's key is not known"),
    };
    let admit = |client: &str| {
        let admitted = limits.admit(Some(client), "hf", 0).now_or_never();
        admitted
            .expect("a local decision waits for nothing")
            .ok()
            .unwrap()
    };
    let mut group = c.benchmark_group("auth");
    group.bench_function("identify", |b| b.iter(|| identify(black_box(&headers))));
    let client = identify(&headers);
    group.bench_function("admit_local", |b| b.iter(|| admit(black_box(&client.name))));
    let state = admit(&client.name).rate.unwrap();
    group.bench_function("rate_limit_headers", |b| {
        b.iter_batched_ref(
            || HeaderMap::with_capacity(12),
            |h| rate_limit_headers(h, black_box(state)),
            BatchSize::SmallInput,
        )
    });
    // Counted as a request is: by the handles set for the client's routes.
    let series = metrics.client_series(&client.name, "hf");
    group.bench_function("request", |b| {
        b.iter_batched_ref(
            || HeaderMap::with_capacity(12),
            |response| {
                let client = identify(black_box(&headers));
                let admitted = admit(&client.name);
                if let Some(state) = admitted.rate {
                    rate_limit_headers(response, state);
                }
                series.count(Outcome::Success);
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(hot, sigv4, balancer, events, format, config, auth);
criterion_main!(hot);
