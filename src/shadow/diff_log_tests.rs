//! The diff log's writer (lines reach the file, the rest when the log
//! goes, a reload reopens the path, a full queue drops and counts) and
//! its lines (what they hold, and what they never hold).

use super::*;
use crate::config::DiffLogConfig;
use crate::shadow::compare::compare;

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("infergate-diff-log-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn settings(path: &Path, percent: f64) -> ShadowSettings {
    ShadowSettings {
        diff_log: Some(DiffLogConfig {
            path: path.to_owned(),
            percent,
            answer_bytes: 8,
        }),
    }
}

fn series() -> ShadowLogSeries {
    crate::metrics::Metrics::new().unwrap().shadow_log()
}

async fn open(path: &Path, previous: Option<&DiffLog>) -> Arc<DiffLog> {
    DiffLog::open(&settings(path, 100.0), previous, series())
        .await
        .unwrap()
        .unwrap()
}

/// The file's lines once it has `n`, waiting at most 10 s.
async fn lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn lines_reach_the_file_and_the_last_ones_when_the_log_goes() {
    let path = temp_dir().join("shadow.jsonl");
    let log = open(&path, None).await;
    log.writer.send(b"one\n".to_vec());
    assert_eq!(lines(&path, 1).await, ["one"]);
    log.writer.send(b"two\n".to_vec());
    log.writer.send(b"three\n".to_vec());
    drop(log);
    assert_eq!(lines(&path, 3).await, ["one", "two", "three"]);
}

#[tokio::test]
async fn a_reload_opens_the_same_path_again_and_another_path_anew() {
    let dir = temp_dir();
    let path = dir.join("shadow.jsonl");
    let first = open(&path, None).await;
    first.writer.send(b"before\n".to_vec());
    assert_eq!(lines(&path, 1).await, ["before"]);
    // As logrotate does: the file moved away, then the gateway reloaded.
    let rotated = dir.join("shadow.jsonl.1");
    std::fs::rename(&path, &rotated).unwrap();
    let second = open(&path, Some(&first)).await;
    assert!(Arc::ptr_eq(&first.writer, &second.writer), "one writer");
    second.writer.send(b"after\n".to_vec());
    assert_eq!(lines(&path, 1).await, ["after"]);
    assert_eq!(lines(&rotated, 1).await, ["before"]);
    let elsewhere = open(&dir.join("other.jsonl"), Some(&second)).await;
    assert!(!Arc::ptr_eq(&second.writer, &elsewhere.writer));
    assert_eq!(elsewhere.path(), dir.join("other.jsonl"));
}

#[tokio::test]
async fn a_path_that_cannot_be_opened_is_an_error_naming_it() {
    let dir = temp_dir();
    let missing = dir.join("no-such-dir").join("shadow.jsonl");
    let open = |path: PathBuf| async move {
        DiffLog::open(&settings(&path, 100.0), None, series())
            .await
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        open(missing.clone()).await,
        format!(
            "shadow.diff_log: cannot open {}: No such file or directory (os error 2)",
            missing.display()
        )
    );
    assert_eq!(
        open(dir.clone()).await,
        format!(
            "shadow.diff_log: cannot open {}: not a regular file",
            dir.display()
        )
    );
    let none = DiffLog::open(&ShadowSettings::default(), None, series()).await;
    assert!(none.unwrap().is_none());
}

#[test]
fn a_full_queue_drops_lines_and_counts_them() {
    let path = temp_dir().join("shadow.jsonl");
    let file = std::fs::File::create(&path).unwrap();
    // Nothing takes from this queue of one.
    let (lines, _queued) = mpsc::sync_channel(1);
    let series = series();
    let writer = Writer::new(path, file, lines, series.clone());
    for _ in 0..3 {
        writer.send(b"x\n".to_vec());
    }
    assert_eq!((series.lines.get(), series.dropped.get()), (1, 2));
}

fn log_of(percent: f64) -> DiffLog {
    let path = temp_dir().join("shadow.jsonl");
    let (lines, _) = mpsc::sync_channel(1);
    let file = std::fs::File::create(&path).unwrap();
    DiffLog {
        percent,
        answer_bytes: 16,
        writer: Arc::new(Writer::new(path, file, lines, series())),
    }
}

#[test]
fn the_percent_samples_lines() {
    let count = |log: &DiffLog| (0..1000).filter(|_| log.sampled()).count();
    assert_eq!(count(&log_of(0.0)), 0);
    assert_eq!(count(&log_of(100.0)), 1000);
    // Six standard deviations either side.
    let half = count(&log_of(50.0));
    assert!((400..=600).contains(&half), "{half}");
}

fn call_log() -> CallLog {
    CallLog {
        log: Arc::new(log_of(100.0)),
        route: "flan".into(),
        primary: Some("sm".into()),
        primary_ms: 1.5,
        threshold: 0.99,
        timeout: Duration::from_secs(5),
    }
}

#[test]
fn a_line_holds_the_comparison_and_never_the_request() {
    let mut request = super::super::tests::request(false, &[]);
    request.body = bytes::Bytes::from_static(b"{\"inputs\": \"REQUEST-BODY-CANARY\"}");
    let primary = br#"[{"generated_text": "one two three"}]"#;
    let shadow = br#"[{"generated_text": "altered two three"}]"#;
    let c = compare((StatusCode::OK, primary), (StatusCode::OK, shadow), 0.99);
    let seen = Seen {
        shadow: "hf",
        request: &request,
        primary: (StatusCode::OK, primary),
        took: Duration::from_micros(2500),
        shadowed: Shadowed::Answered {
            status: StatusCode::OK,
            body: shadow,
            comparison: &c,
        },
    };
    let line = call_log().line(&seen);
    assert_eq!(
        (
            line.route.as_str(),
            line.shadow.as_str(),
            line.primary.as_deref()
        ),
        ("flan", "hf", Some("sm"))
    );
    assert_eq!(
        (line.request_id.as_str(), line.operation.as_str()),
        ("r", "predict")
    );
    assert_eq!(line.outcome, Outcome::Differ);
    assert_eq!((line.primary_status, line.shadow_status), (200, Some(200)));
    assert_eq!((line.primary_ms, line.shadow_ms), (1.5, 2.5));
    assert_eq!(line.similarity, Some(0.5));
    assert_eq!(
        line.difference.as_deref(),
        Some("generated text differs: first difference at char 0")
    );
    assert_eq!(line.primary_answer, Answer::cut(primary, 16));
    assert_eq!(line.shadow_answer, Some(Answer::cut(shadow, 16)));
    assert!(
        humantime::parse_rfc3339(&line.time).is_ok(),
        "{}",
        line.time
    );
    let json = serde_json::to_string(&line).unwrap();
    assert!(!json.contains("CANARY"), "{json}");
}

#[test]
fn a_shadow_without_an_answer_says_why() {
    let request = super::super::tests::request(false, &[]);
    let seen = |shadowed| Seen {
        shadow: "hf",
        request: &request,
        primary: (StatusCode::OK, b"{}"),
        took: Duration::from_secs(5),
        shadowed,
    };
    let log = call_log();
    let timed_out = log.line(&seen(Shadowed::TimedOut));
    assert_eq!(timed_out.outcome, Outcome::ShadowError);
    assert_eq!(timed_out.difference.as_deref(), Some("no answer within 5s"));
    assert_eq!(
        (timed_out.shadow_status, timed_out.shadow_answer),
        (None, None)
    );
    let failed = log.line(&seen(Shadowed::Failed { status: None }));
    assert_eq!(
        failed.difference.as_deref(),
        Some("no answer: the call failed or its answer could not be read")
    );
    let unavailable = log.line(&seen(Shadowed::Failed { status: Some(503) }));
    assert_eq!(
        (unavailable.outcome, unavailable.shadow_status),
        (Outcome::ShadowError, Some(503))
    );
    assert_eq!(
        unavailable.difference.as_deref(),
        Some("no answer: the shadow failed with status 503")
    );
}
