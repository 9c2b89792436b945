//! The shadow diff log (`[shadow] diff_log`) end to end: a route over the
//! SageMaker emulator shadowed to the Hugging Face emulator, which alters
//! the answers of a known share of inputs. The log holds one line per
//! compared call, by the request ids the clients got, with no key or
//! token in it; the real `infergate shadow-report` reads it back to the
//! share injected. `diff_log_percent` samples the lines, not the calls.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use infergate::emulator::FaultConfig;
use serde_json::{json, Value};

use crate::common::child::{write_temp, BIN};
use crate::common::wait::wait_some;
use crate::common::{Harness, Setup, ACCESS_KEY, CONFIG, HF_TOKEN, SECRET_KEY};

const APP_KEY: &str = "app-key-canary-5d1e";

/// `shadowed` over `sm`, every request copied to `hf`; a diff log at
/// `percent` in `path`; calls need `APP_KEY`.
async fn harness(path: &Path, percent: u32) -> Harness {
    let config = format!(
        r#"{CONFIG}
[routes.shadowed]
backends = ["sm"]
shadow = [{{ backend = "hf", percent = 100 }}]
shadow_max_in_flight = 1000

[shadow]
diff_log = "${{DIFF_LOG}}"
diff_log_percent = {percent}

[clients.app]
api_key = "${{APP_KEY}}"
admin = true
"#
    );
    Harness::with(Setup {
        config,
        extra_vars: vec![
            ("DIFF_LOG".to_owned(), path.display().to_string()),
            ("APP_KEY".to_owned(), APP_KEY.to_owned()),
        ],
        ..Setup::default()
    })
    .await
}

/// A new, empty log file's path.
fn log_path() -> PathBuf {
    write_temp("shadow.jsonl", "")
}

/// Asks `shadowed` with `prompt`; the request id the client got.
async fn ask(h: &Harness, prompt: &str) -> String {
    let body = json!({"inputs": prompt, "parameters": {"max_new_tokens": 8}});
    let res = h
        .client
        .post(h.url("/v1/predict/shadowed"))
        .bearer_auth(APP_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let answer = res.text().await.unwrap();
    assert!(!answer.contains("altered"), "the client gets the primary's");
    id
}

/// The log's lines once it has `n`.
async fn lines(path: &Path, n: usize) -> Vec<Value> {
    wait_some(&format!("{n} lines in {}", path.display()), || async {
        let text = std::fs::read_to_string(path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (lines.len() >= n).then_some(lines)
    })
    .await
}

/// Runs `infergate shadow-report` with `args`, `stdin` piped when given.
fn report(args: &[&str], stdin: Option<&Path>) -> String {
    let mut cmd = Command::new(BIN);
    cmd.arg("shadow-report").args(args);
    if let Some(file) = stdin {
        cmd.stdin(Stdio::from(std::fs::File::open(file).unwrap()));
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The agreement the table prints, in percent.
fn printed_agreement(table: &str) -> f64 {
    let at = table.find("agreement ").unwrap() + "agreement ".len();
    let value = &table[at..table[at..].find('%').unwrap() + at];
    value.parse().unwrap()
}

#[tokio::test]
async fn the_log_holds_every_comparison_and_the_report_reads_the_share_back() {
    let path = log_path();
    let h = harness(&path, 100).await;
    h.hf.faults().set(FaultConfig {
        alter_inputs_containing: Some("MARK".into()),
        ..FaultConfig::default()
    });
    let (mut ids, mut altered) = (BTreeSet::new(), BTreeSet::new());
    for i in 0..100 {
        let marked = i % 10 < 3;
        let prompt = match marked {
            true => format!("MARK prompt number {i}"),
            false => format!("prompt number {i}"),
        };
        let id = ask(&h, &prompt).await;
        if marked {
            altered.insert(id.clone());
        }
        ids.insert(id);
    }
    let lines = lines(&path, 100).await;
    assert_eq!(lines.len(), 100, "one line per compared call");
    let logged: BTreeSet<String> = lines
        .iter()
        .map(|l| l["request_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(logged, ids, "by the request ids the clients got");
    let differ: BTreeSet<String> = lines
        .iter()
        .filter(|l| l["outcome"] == "differ")
        .map(|l| l["request_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(differ, altered, "exactly the altered inputs differ");
    for l in &lines {
        assert_eq!(
            (&l["route"], &l["shadow"], &l["primary"], &l["operation"]),
            (
                &json!("shadowed"),
                &json!("hf"),
                &json!("sm"),
                &json!("predict")
            )
        );
        assert_eq!(
            (&l["primary_status"], &l["shadow_status"]),
            (&json!(200), &json!(200))
        );
        assert!(l["primary_ms"].as_f64().unwrap() > 0.0 && l["shadow_ms"].as_f64().unwrap() > 0.0);
        assert!(l["primary_answer"]["text"]
            .as_str()
            .unwrap()
            .contains("generated_text"));
        assert!(humantime::parse_rfc3339(l["time"].as_str().unwrap()).is_ok());
        match l["outcome"].as_str().unwrap() {
            "match" => assert_eq!(
                (&l["similarity"], &l["difference"]),
                (&json!(1.0), &Value::Null)
            ),
            _ => assert_eq!(
                l["difference"],
                "generated text differs: first difference at char 0"
            ),
        }
    }
    let text = std::fs::read_to_string(&path).unwrap();
    for secret in [APP_KEY, HF_TOKEN, SECRET_KEY, ACCESS_KEY] {
        assert!(!text.contains(secret), "{secret} in the diff log");
    }
    let metrics = h.get_text_as("/metrics", Some(APP_KEY)).await;
    assert!(
        metrics.contains("infergate_shadow_log_lines_total 100\n"),
        "{metrics}"
    );
    assert!(metrics.contains("infergate_shadow_log_dropped_total 0\n"));

    let file = path.to_str().unwrap();
    let table = report(&[file], None);
    let agreement = printed_agreement(&table);
    assert!((agreement - 70.0).abs() <= 1.0, "{agreement} in\n{table}");
    assert!(
        table.contains("calls 100: match 70, differ 30, shadow_error 0"),
        "{table}"
    );
    assert_eq!(
        printed_agreement(&report(&["-"], Some(&path))),
        agreement,
        "stdin"
    );
    let json: Value =
        serde_json::from_str(&report(&["--json", "--worst", "10", file], None)).unwrap();
    let group = &json["groups"][0];
    assert_eq!(
        (&group["route"], &group["shadow"]),
        (&json!("shadowed"), &json!("hf"))
    );
    let worst = group["worst"].as_array().unwrap();
    assert_eq!(worst.len(), 10);
    for w in worst {
        assert!(altered.contains(w["request_id"].as_str().unwrap()), "{w}");
    }
    let other = report(&["--route", "nope", file], None);
    assert!(other.contains("no shadow calls to report"), "{other}");
}

#[tokio::test]
async fn percent_zero_writes_nothing_while_the_counts_go_on() {
    let path = log_path();
    let h = harness(&path, 0).await;
    for i in 0..20 {
        ask(&h, &format!("prompt {i}")).await;
    }
    // A line is queued before its call is counted.
    let counted =
        r#"infergate_shadow_requests_total{outcome="match",route="shadowed",shadow="hf"} 20"#;
    let metrics = wait_some("20 shadow calls counted", || async {
        let metrics = h.get_text_as("/metrics", Some(APP_KEY)).await;
        metrics.contains(counted).then_some(metrics)
    })
    .await;
    assert!(
        metrics.contains("infergate_shadow_log_lines_total 0\n"),
        "{metrics}"
    );
    h.shutdown().await;
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
}
