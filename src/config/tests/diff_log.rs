//! `[shadow]`: the diff log's keys, their defaults, every refusal at its
//! key path, the warnings, and the `check` summary line.

use super::*;
use crate::config::{DiffLogConfig, ShadowSettings};

/// The minimal config with a shadowed route and `[shadow]` holding `lines`.
fn with_shadow(lines: &str) -> String {
    minimal(&format!(
        "shadow = [{{ backend = \"hf-flan\", percent = 5 }}]\n[shadow]\n{lines}\n"
    ))
}

#[test]
fn the_diff_log_is_read_with_its_defaults() {
    assert_eq!(parse(&minimal("")).shadow, ShadowSettings::default());
    let path = std::env::temp_dir().join("shadow.jsonl");
    let config = parse(&with_shadow(&format!(
        "diff_log = {:?}",
        path.display().to_string()
    )));
    assert_eq!(
        config.shadow.diff_log,
        Some(DiffLogConfig {
            path,
            percent: 100.0,
            answer_bytes: 2048,
        })
    );
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let config = parse(&with_shadow(
        "diff_log = \"/tmp/d.jsonl\"\ndiff_log_percent = 2.5\ndiff_log_answer_bytes = 0",
    ));
    let log = config.shadow.diff_log.unwrap();
    assert_eq!((log.percent, log.answer_bytes), (2.5, 0));
}

#[test]
fn diff_log_mistakes_are_named_by_key_path() {
    assert_eq!(
        errors(&with_shadow(
            "diff_log = \"\"\ndiff_log_percent = 101\ndiff_log_answer_bytes = 65537"
        )),
        [
            "shadow.diff_log_percent: must be between 0 and 100",
            "shadow.diff_log_answer_bytes: must be at most 65536",
            "shadow.diff_log: must not be empty",
        ]
    );
    assert_eq!(
        errors(&with_shadow(
            "diff_log = \"/tmp/d.jsonl\"\ndiff_log_percent = -1\ndiff_log_answer_bytes = -1"
        )),
        [
            "shadow.diff_log_percent: must be between 0 and 100",
            "shadow.diff_log_answer_bytes: must not be negative",
        ]
    );
    let dir = std::env::temp_dir();
    assert_eq!(
        errors(&with_shadow(&format!(
            "diff_log = {:?}",
            dir.display().to_string()
        ))),
        [format!(
            "shadow.diff_log: {:?} is not a regular file",
            dir.display().to_string()
        )]
    );
    let missing = dir.join("infergate-no-such-dir-4f1a");
    assert_eq!(
        errors(&with_shadow(&format!(
            "diff_log = {:?}",
            missing.join("s.jsonl").display().to_string()
        ))),
        [format!(
            "shadow.diff_log: its directory {:?} does not exist",
            missing.display().to_string()
        )]
    );
    assert_eq!(
        errors(&with_shadow("diff_logs = \"/tmp/d.jsonl\"")),
        ["shadow.diff_logs: unknown key"]
    );
    assert_eq!(
        errors(&format!("shadow = 5\n{}", minimal(""))),
        ["shadow: expected a table, found integer"]
    );
}

#[test]
fn keys_without_their_log_or_a_log_without_shadows_are_warned_of() {
    let config = parse(&with_shadow(
        "diff_log_percent = 5\ndiff_log_answer_bytes = 10",
    ));
    assert_eq!(config.shadow, ShadowSettings::default());
    assert_eq!(
        config.warnings,
        [
            "shadow.diff_log_percent: not used without shadow.diff_log",
            "shadow.diff_log_answer_bytes: not used without shadow.diff_log",
        ]
    );
    let config = parse(&minimal("[shadow]\ndiff_log = \"/tmp/d.jsonl\"\n"));
    assert_eq!(
        config.warnings,
        ["shadow.diff_log: no route has a shadow (routes.<name>.shadow): nothing is written"]
    );
}

#[test]
fn check_names_the_diff_log() {
    let config = parse(&with_shadow(
        "diff_log = \"/tmp/d.jsonl\"\ndiff_log_percent = 10",
    ));
    assert!(
        config.summary().contains(
            "shadow: diff log /tmp/d.jsonl, 10% of compared calls, answers cut at 2048 bytes\n"
        ),
        "{}",
        config.summary()
    );
}
