//! The shadow diff log as a user meets it from the command line: `serve`
//! refuses a log it cannot open, and `shadow-report` says what it could
//! not read instead of failing on it.

use std::process::Command;
use std::time::Duration;

use crate::common::child::{listen_addr, run, wait_timeout, write_temp, Running, Stream, BIN};
use crate::common::wait_some;

/// A diff-log line of `outcome`, as the gateway writes it.
fn line(id: &str, outcome: &str, similarity: &str) -> String {
    format!(
        r#"{{"time":"2025-01-02T03:04:05.678Z","route":"flan","shadow":"hf-candidate","primary":"sm-flan","request_id":"{id}","operation":"generate","outcome":"{outcome}","primary_status":200,"shadow_status":200,"primary_ms":12.5,"shadow_ms":20.25,"similarity":{similarity},"difference":null,"primary_answer":{{"text":"[{{\"generated_text\":\"a b\"}}]","bytes":26,"truncated":false}},"shadow_answer":{{"text":"[{{\"generated_text\":\"a c\"}}]","bytes":26,"truncated":false}}}}"#
    )
}

/// A config with a diff log at `path`.
fn logged_to(path: &std::path::Path) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[backends.hf]
kind = "huggingface"
url = "http://127.0.0.1:9"
[routes.hf]
backends = ["hf"]
shadow = [{{ backend = "hf", percent = 1 }}]
[shadow]
diff_log = "{}"
"#,
        path.display()
    )
}

#[test]
fn check_and_serve_refuse_a_diff_log_in_a_directory_that_does_not_exist() {
    // A directory of its own, without the one the log would be in.
    let own = write_temp("placeholder", "");
    let missing = own.with_file_name("no-such-dir").join("shadow.jsonl");
    let path = write_temp("infergate.toml", &logged_to(&missing));
    let expected = format!(
        "shadow.diff_log: its directory {:?} does not exist",
        missing.parent().unwrap().display().to_string()
    );
    for command in ["check", "serve"] {
        let (code, _, stderr) = run(&[command, "--config", path.to_str().unwrap()], &[]);
        assert_eq!(code, 1, "{command}: {stderr}");
        assert!(stderr.contains(&expected), "{command}: {stderr}");
    }
}

#[test]
fn serve_refuses_a_diff_log_it_cannot_open() {
    // A link to a file in a directory that does not exist: the config
    // check finds the link's own directory, the open follows the link.
    let own = write_temp("placeholder", "");
    let link = own.with_file_name("shadow.jsonl");
    std::os::unix::fs::symlink(own.with_file_name("gone").join("s.jsonl"), &link).unwrap();
    let path = write_temp("infergate.toml", &logged_to(&link));
    let (code, _, stderr) = run(&["serve", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(code, 1, "{stderr}");
    let expected = format!(
        "infergate: shadow.diff_log: cannot open {}: No such file or directory",
        link.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn the_report_says_what_it_skipped_and_fails_only_on_a_missing_file() {
    let text = format!(
        "{}\nnot json at all\n{{\"route\": \"flan\"}}\n{}\n",
        line("r-1", "match", "1.0"),
        line("r-2", "differ", "0.5")
    );
    let file = write_temp("shadow.jsonl", &text);
    let (code, stdout, stderr) = run(&["shadow-report", file.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{stderr}");
    for expected in [
        "shadow report: 2 lines\n",
        "1 line skipped: not JSON\n",
        "1 line skipped: not a diff-log line\n",
        "route flan, shadow hf-candidate (primary sm-flan)\n",
        "  agreement 50.0% (95% CI 9.5% to 90.5%, 2 compared)\n",
        "    1. r-2  similarity 0.500  differs\n",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in\n{stdout}");
    }
    let missing = file.with_file_name("missing.jsonl");
    let (code, _, stderr) = run(&["shadow-report", missing.to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with(&format!(
            "infergate shadow-report: {}: No such file or directory",
            missing.display()
        )),
        "{stderr}"
    );
    let (code, _, stderr) = run(&["shadow-report"], &[]);
    assert_eq!(code, 2, "a file is required: {stderr}");
}

/// A clean stop leaves every line queued in the file. (The drain takes
/// longer than the writer's 100 ms batches, so this holds by the timer
/// too; the writer's last batch on its own is `diff_log`'s unit test.)
#[tokio::test]
async fn a_clean_stop_writes_the_last_lines() {
    use infergate::emulator;
    let loopback: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let hf = emulator::huggingface::start(loopback, emulator::HuggingFaceOptions::default())
        .await
        .unwrap();
    let log = write_temp("shadow.jsonl", "");
    let config = write_temp(
        "infergate.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 2\nshutdown_grace = \"5s\"\n\
             [backends.hf]\nkind = \"huggingface\"\nurl = \"{0}\"\n\
             [backends.candidate]\nkind = \"huggingface\"\nurl = \"{0}\"\n\
             [routes.hf]\nbackends = [\"hf\"]\n\
             shadow = [{{ backend = \"candidate\", percent = 100 }}]\n\
             [shadow]\ndiff_log = \"{1}\"\n",
            hf.url(),
            log.display()
        ),
    );
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--config", config.to_str().unwrap()]);
    let mut gw = Running::spawn(cmd, Stream::Stderr);
    let base = format!(
        "http://{}",
        listen_addr(&gw.wait_for_line("infergate listening"))
    );
    let client = reqwest::Client::new();
    for i in 0..12 {
        let res = client
            .post(format!("{base}/v1/predict/hf"))
            .header("content-type", "application/json")
            .body(format!(r#"{{"inputs": "a{i} b{i}"}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    // Every line queued.
    wait_some("12 lines queued", || async {
        let metrics = client.get(format!("{base}/metrics")).send().await.ok()?;
        let text = metrics.text().await.ok()?;
        text.contains("infergate_shadow_log_lines_total 12\n")
            .then_some(())
    })
    .await;
    let pid = gw.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    assert_eq!(
        wait_timeout(&mut gw.child, Duration::from_secs(15)),
        Some(0)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 12, "{text}");
    assert!(
        text.lines().all(|l| l.contains(r#""outcome":"match""#)),
        "{text}"
    );
}
