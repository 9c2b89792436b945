//! Phase two for `[shadow]`: the diff log every route's shadows write to
//! (`diff_log`, `diff_log_percent`, `diff_log_answer_bytes`;
//! [`crate::shadow::diff_log`] writes it).
//!
//! The file itself is opened by the gateway when it is built, so `check`
//! creates nothing; what can be told without opening it (an empty path,
//! a directory or a FIFO at the path) is an error here.

use std::path::PathBuf;

use super::bounds::{self, integer};
use super::diag::Diagnostics;
use super::raw::RawShadowSettings;
use super::{
    DiffLogConfig, RouteConfig, ShadowSettings, DEFAULT_DIFF_LOG_ANSWER_BYTES,
    DEFAULT_DIFF_LOG_PERCENT,
};

const PATH: &str = "shadow.diff_log";
const PERCENT: &str = "shadow.diff_log_percent";
const ANSWER_BYTES: &str = "shadow.diff_log_answer_bytes";

pub(super) fn shadow_settings(raw: RawShadowSettings, diag: &mut Diagnostics) -> ShadowSettings {
    let percent = match raw.diff_log_percent {
        None => DEFAULT_DIFF_LOG_PERCENT,
        // Also false for NaN.
        Some(p) if (0.0..=100.0).contains(&p) => p,
        Some(_) => {
            diag.error(PERCENT, "must be between 0 and 100");
            DEFAULT_DIFF_LOG_PERCENT
        }
    };
    let answer_bytes = integer(
        raw.diff_log_answer_bytes,
        ANSWER_BYTES,
        bounds::DIFF_LOG_ANSWER_BYTES,
        DEFAULT_DIFF_LOG_ANSWER_BYTES,
        diag,
    );
    let Some(path) = raw.diff_log else {
        for (key, set) in [
            (PERCENT, raw.diff_log_percent.is_some()),
            (ANSWER_BYTES, raw.diff_log_answer_bytes.is_some()),
        ] {
            if set {
                diag.warn(key, "not used without shadow.diff_log");
            }
        }
        return ShadowSettings::default();
    };
    let path = diff_log_path(path, diag);
    ShadowSettings {
        diff_log: path.map(|path| DiffLogConfig {
            path,
            percent,
            answer_bytes,
        }),
    }
}

/// The path, if it can name the log: not empty, not something other than
/// a regular file (a directory, or a FIFO that would block the open), and
/// in a directory that exists (the log is created there, the directory
/// not).
fn diff_log_path(text: String, diag: &mut Diagnostics) -> Option<PathBuf> {
    if text.trim().is_empty() {
        diag.error(PATH, "must not be empty");
        return None;
    }
    let path = PathBuf::from(text);
    let shown =
        |diag: &mut Diagnostics, p: &std::path::Path| diag.show(PATH, &p.display().to_string());
    match std::fs::metadata(&path) {
        Ok(meta) if !meta.is_file() => {
            let shown = shown(diag, &path);
            diag.error(PATH, format!("{shown} is not a regular file"));
            return None;
        }
        Ok(_) => return Some(path),
        Err(_) => {}
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => std::path::Path::new("."),
    };
    if !std::fs::metadata(dir).is_ok_and(|m| m.is_dir()) {
        let shown = shown(diag, dir);
        diag.error(PATH, format!("its directory {shown} does not exist"));
        return None;
    }
    Some(path)
}

/// A diff log with no shadow to write it is worth a word.
pub(super) fn check_used(shadow: &ShadowSettings, routes: &[RouteConfig], diag: &mut Diagnostics) {
    if shadow.diff_log.is_some() && routes.iter().all(|r| r.shadow.is_empty()) {
        diag.warn(
            PATH,
            "no route has a shadow (routes.<name>.shadow): nothing is written",
        );
    }
}
