//! The binary exports its spans and flushes them on SIGTERM.

use std::net::SocketAddr;
use std::process::Command;

use infergate::emulator::{self};

use crate::common::child::{
    listen_addr, wait_timeout, write_temp, Running, Stream, BIN, CHILD_WAIT,
};
use crate::common::BODY;
use crate::gateway::seen_traceparent;
use crate::receiver::{attr, hex, string, Receiver};
use crate::{PARENT_ID, TRACEPARENT, TRACE_ID};

// === the binary ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_exports_and_flushes_on_sigterm() {
    let receiver = Receiver::start().await;
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    let hf = emulator::huggingface::start(loopback, crate::common::hf_options())
        .await
        .unwrap();
    let config = write_temp(
        "otlp.toml",
        &format!(
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
    );
    let mut cmd = Command::new(BIN);
    cmd.args(["--log-format", "json", "serve", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .env("OTLP_TEST_HF_TOKEN", crate::common::HF_TOKEN)
        // The default five-second batches: the span must leave at exit.
        .env_remove("OTEL_BSP_SCHEDULE_DELAY");
    let mut gw = Running::spawn(cmd, Stream::Stderr);
    let listen = listen_addr(&gw.wait_for_line("infergate listening"));
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
        .args(["-c", &format!("kill -TERM {}", gw.child.id())])
        .status()
        .unwrap();
    assert!(killed.success());
    let code = wait_timeout(&mut gw.child, CHILD_WAIT);
    gw.stop();
    let log = gw.output();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("exporting spans over OTLP/HTTP"), "{log}");
    let got = receiver.wait_for_span(&span_id).await;
    assert_eq!(hex(&got.span.trace_id), TRACE_ID);
    assert_eq!(hex(&got.span.parent_span_id), PARENT_ID);
    assert_eq!(
        attr(&got.resource, "service.name"),
        string("infergate").as_ref()
    );
    let _ = std::fs::remove_dir_all(config.parent().unwrap());
}
