//! The shadow diff log as a user meets it from the command line: `serve`
//! refuses a log it cannot open, and `shadow-report` says what it could
//! not read instead of failing on it.

use crate::common::child::{run, write_temp};

/// A diff-log line of `outcome`, as the gateway writes it.
fn line(id: &str, outcome: &str, similarity: &str) -> String {
    format!(
        r#"{{"time":"2025-01-02T03:04:05.678Z","route":"flan","shadow":"hf-candidate","primary":"sm-flan","request_id":"{id}","operation":"generate","outcome":"{outcome}","primary_status":200,"shadow_status":200,"primary_ms":12.5,"shadow_ms":20.25,"similarity":{similarity},"difference":null,"primary_answer":{{"text":"[{{\"generated_text\":\"a b\"}}]","bytes":26,"truncated":false}},"shadow_answer":{{"text":"[{{\"generated_text\":\"a c\"}}]","bytes":26,"truncated":false}}}}"#
    )
}

#[test]
fn serve_refuses_a_diff_log_it_cannot_open() {
    // A directory of its own, without the one the log would be in.
    let own = write_temp("placeholder", "");
    let missing = own.with_file_name("no-such-dir").join("shadow.jsonl");
    let config = format!(
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
        missing.display()
    );
    let path = write_temp("infergate.toml", &config);
    let (code, _, stderr) = run(&["serve", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(code, 1, "{stderr}");
    let expected = format!(
        "infergate: shadow.diff_log: cannot open {}: No such file or directory",
        missing.display()
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
