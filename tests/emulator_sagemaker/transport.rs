//! Transport faults, latency and cold start, the counters, the control
//! routes, and stopping the server.

use std::time::{Duration, Instant};

use crate::client::{invoke, start, start_default, stream};
use crate::common::net::is_reset;
use crate::common::{wait_for, wait_until};
use infergate::emulator::sagemaker::SageMakerOptions;
use infergate::emulator::FaultConfig;
use serde_json::Value;

// === transport faults, timing, counters ===

#[tokio::test]
async fn reset_faults_cut_the_connection() {
    let emu = start_default().await;
    emu.faults().update(|f| f.reset_next = 1);
    let err = invoke(r#"{"inputs":"a"}"#)
        .try_send(&emu)
        .await
        .unwrap_err();
    assert!(is_reset(&err), "{err:?}");
    assert_eq!(emu.counters().resets_injected(), 1);
    assert_eq!(emu.counters().cancelled(), 0);
    assert_eq!(invoke(r#"{"inputs":"a"}"#).send(&emu).await.status(), 200);

    emu.faults().update(|f| f.reset_rate = 1.0);
    let err = stream(r#"{"inputs":"a","stream":true}"#)
        .try_send(&emu)
        .await
        .unwrap_err();
    assert!(is_reset(&err), "{err:?}");
    assert_eq!(emu.counters().resets_injected(), 2);
}

#[tokio::test]
async fn latency_and_cold_start_delay_the_answer() {
    let emu = start(SageMakerOptions {
        faults: FaultConfig {
            latency: Duration::from_millis(60),
            ..FaultConfig::default()
        },
        ..SageMakerOptions::default()
    })
    .await;
    let t = Instant::now();
    assert_eq!(invoke(r#"{"inputs":"a"}"#).send(&emu).await.status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(60));

    // Serverless-style cold start: the first request waits for the replica.
    emu.faults().set(FaultConfig {
        cold_start: Some(Duration::from_millis(80)),
        ..FaultConfig::default()
    });
    let t = Instant::now();
    assert_eq!(invoke(r#"{"inputs":"a"}"#).send(&emu).await.status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(80));
    assert_eq!(
        emu.faults().scale_state(),
        infergate::emulator::ScaleState::Ready
    );
}

#[tokio::test]
async fn in_flight_and_cancelled_streams_are_counted() {
    let emu = start(SageMakerOptions {
        faults: FaultConfig {
            token_latency: Duration::from_millis(50),
            ..FaultConfig::default()
        },
        ..SageMakerOptions::default()
    })
    .await;
    let mut resp = stream(r#"{"inputs":"a b c d e f g h i j k l m n o p q r s t","stream":true}"#)
        .send(&emu)
        .await;
    assert!(resp.chunk().await.unwrap().is_some());
    assert_eq!(emu.counters().in_flight(), 1);
    drop(resp);
    wait_for("cancelled", || emu.counters().cancelled() == 1).await;
    assert_eq!(emu.counters().in_flight(), 0);
    assert_eq!(emu.counters().max_in_flight(), 1);
}

#[tokio::test]
async fn control_routes_work_out_of_process() {
    let emu = start_default().await;
    let client = reqwest::Client::new();
    let base = emu.url();
    let put = client
        .put(format!("{base}/_emulator/faults"))
        .body(r#"{"fail_next":1,"error":"InternalFailure","latency":"1ms"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    assert_eq!(put.json::<Value>().await.unwrap()["latency"], "1ms");
    assert_eq!(invoke(r#"{"inputs":"a"}"#).send(&emu).await.status(), 500);
    let bad = client
        .put(format!("{base}/_emulator/faults"))
        .body(r#"{"error_rate":2}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let c: Value = client
        .get(format!("{base}/_emulator/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(c["requests"], 1);
    assert_eq!(c["errors_injected"], 1);
    let reqs: Value = client
        .get(format!("{base}/_emulator/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reqs[0]["path"], "/endpoints/flan/invocations");
    assert_eq!(reqs[0]["body"], r#"{"inputs":"a"}"#);
    let reset = client
        .post(format!("{base}/_emulator/counters/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 204);
    assert_eq!(emu.counters().requests(), 0);
    assert!(emu.counters().last().is_none());
}

#[tokio::test]
async fn shutdown_and_drop_stop_the_server() {
    let emu = start_default().await;
    let addr = emu.addr();
    emu.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());

    let emu = start_default().await;
    let addr = emu.addr();
    drop(emu);
    wait_until("the server to stop accepting after drop", || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
}
