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
}

impl Diagnostics {
    /// Records `<path>: <message>` unless `path` is already explained.
    pub(super) fn error(&mut self, path: &str, message: impl Display) {
        if !self.is_poisoned(path) {
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
        self.warnings.push(format!("{path}: {message}"));
    }

    pub(super) fn mark_interpolated(&mut self, path: &str) {
        self.interpolated.insert(path.to_owned());
    }

    pub(super) fn is_interpolated(&self, path: &str) -> bool {
        self.interpolated.contains(path)
    }

    /// `value` quoted for a message, or a placeholder if it came from the
    /// environment (it might be a secret).
    pub(super) fn show(&self, path: &str, value: &str) -> String {
        if self.is_interpolated(path) {
            "(value from the environment, not shown)".to_owned()
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
