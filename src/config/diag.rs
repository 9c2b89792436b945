//! The error and warning collector shared by both loading phases, and key-path
//! formatting.
//!
//! An error reported with [`Diagnostics::poison`] marks its key path as
//! already explained: later errors at or under that path are consequences of the
//! first (a value that failed to interpolate then fails to parse as a URL, a key
//! dropped for its type then looks "required") and are not reported again.

use std::collections::BTreeSet;
use std::fmt::Display;

#[derive(Debug, Default)]
pub(super) struct Diagnostics {
    errors: Vec<String>,
    warnings: Vec<String>,
    poisoned: Vec<String>,
    /// Paths of string values that took something from the environment: those
    /// values are never echoed in a message.
    interpolated: BTreeSet<String>,
    /// Those values themselves, taken out of every message wherever a check
    /// quotes them (a path that cannot be read, an unknown mode).
    from_env: Vec<String>,
}

/// What stands in a message for a value from the environment.
const NOT_SHOWN: &str = "(value from the environment, not shown)";

/// Values shorter than this are not taken out of messages: they would cut
/// words apart, and no credential is that short.
const SHORTEST_HIDDEN: usize = 4;

impl Diagnostics {
    /// Records `<path>: <message>` unless `path` is already explained.
    pub(super) fn error(&mut self, path: &str, message: impl Display) {
        if !self.is_poisoned(path) {
            let message = self.scrub(message.to_string());
            self.errors.push(format!("{path}: {message}"));
        }
    }

    /// Records an error and suppresses the ones that would follow from it.
    pub(super) fn poison(&mut self, path: &str, message: impl Display) {
        self.error(path, message);
        self.suppress(path);
    }

    /// Marks `path` as explained by errors already recorded.
    pub(super) fn suppress(&mut self, path: &str) {
        self.poisoned.push(path.to_owned());
    }

    pub(super) fn warn(&mut self, path: &str, message: impl Display) {
        let message = self.scrub(message.to_string());
        self.warnings.push(format!("{path}: {message}"));
    }

    /// The string at `path` took something from the environment, and is
    /// now `value`.
    pub(super) fn mark_interpolated(&mut self, path: &str, value: &str) {
        self.interpolated.insert(path.to_owned());
        if value.len() >= SHORTEST_HIDDEN && !self.from_env.iter().any(|v| v == value) {
            self.from_env.push(value.to_owned());
            // The longest first, so that one holding another goes whole.
            self.from_env.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
    }

    /// `message` with every value from the environment replaced.
    fn scrub(&self, mut message: String) -> String {
        for value in &self.from_env {
            if message.contains(value.as_str()) {
                message = message.replace(value.as_str(), NOT_SHOWN);
            }
        }
        message
    }

    pub(super) fn is_interpolated(&self, path: &str) -> bool {
        self.interpolated.contains(path)
    }

    /// `value` quoted for a message, or a placeholder if it came from the
    /// environment (it might be a secret).
    pub(super) fn show(&self, path: &str, value: &str) -> String {
        if self.is_interpolated(path) {
            NOT_SHOWN.to_owned()
        } else {
            format!("{value:?}")
        }
    }

    pub(super) fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    pub(super) fn into_parts(self) -> (Vec<String>, Vec<String>) {
        (self.errors, self.warnings)
    }

    fn is_poisoned(&self, path: &str) -> bool {
        self.poisoned.iter().any(|p| is_under(path, p))
    }
}

/// Whether `path` is `ancestor` or lies below it (`a.b[1]` is under `a.b`;
/// `a.bc` and `a.b[10]`-vs-`a.b[1]` are not).
fn is_under(path: &str, ancestor: &str) -> bool {
    match path.strip_prefix(ancestor) {
        Some(rest) => ancestor.is_empty() || rest.is_empty() || rest.starts_with(['.', '[']),
        None => false,
    }
}

/// `parent.key`, quoting `key` the way TOML would when it is not a bare key.
pub(super) fn key_path(parent: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent[index]`.
pub(super) fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(key_path("", "server"), "server");
        assert_eq!(key_path("backends", "sm-flan"), "backends.sm-flan");
        assert_eq!(key_path("backends", "sm.flan"), "backends.\"sm.flan\"");
        assert_eq!(
            index_path("routes.flan.backends", 2),
            "routes.flan.backends[2]"
        );
    }

    #[test]
    fn poison_covers_descendants_only() {
        assert!(is_under("a.b", "a.b"));
        assert!(is_under("a.b.c", "a.b"));
        assert!(is_under("a.b[1]", "a.b"));
        assert!(!is_under("a.bc", "a.b"));
        assert!(!is_under("a.b[10]", "a.b[1]"));
        assert!(!is_under("a", "a.b"));

        let mut d = Diagnostics::default();
        d.poison("a.b", "first");
        d.error("a.b.c", "follows");
        d.error("a.bc", "independent");
        assert_eq!(d.into_parts().0, ["a.b: first", "a.bc: independent"]);
    }
}
