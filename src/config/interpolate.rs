//! Environment interpolation of string values.
//!
//! It runs on the parsed TOML tree, never on the text, so a value (say a token
//! containing `"` or a newline) can never change the file's structure.
//!
//! | form | result |
//! | --- | --- |
//! | `${VAR}` | the value of VAR (may be empty); an error if unset |
//! | `${VAR:-default}` | `default` when VAR is unset or empty; the default is literal up to the first `}` |
//! | `${VAR:?message}` | an error `VAR: message` when VAR is unset or empty |
//! | `$$` | a literal `$` |
//!
//! Any other `$` is an error rather than a literal, so a shell-style `$VAR`
//! cannot silently reach a backend as a four-letter token.

use super::diag::{index_path, key_path, Diagnostics};

/// The result of interpolating one string.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Interpolated {
    pub(super) value: String,
    /// Whether any `${…}` was expanded (the value may now hold a secret).
    pub(super) from_env: bool,
}

/// Interpolates one string; every problem in it is returned, not just the first.
/// Messages never contain a variable's value.
pub(super) fn interpolate(
    input: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Interpolated, Vec<String>> {
    let mut value = String::with_capacity(input.len());
    let mut errors = Vec::new();
    let mut from_env = false;
    let mut rest = input;

    while let Some(dollar) = rest.find('$') {
        value.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            value.push('$');
            rest = tail;
            continue;
        }
        let Some(open) = after.strip_prefix('{') else {
            errors.push(r#"a "$" must start "${NAME}"; write "$$" for a literal "$""#.to_owned());
            rest = after;
            continue;
        };
        let Some(close) = open.find('}') else {
            errors.push(r#"unterminated "${"; write "$$" for a literal "$""#.to_owned());
            rest = "";
            break;
        };
        let body = &open[..close];
        rest = &open[close + 1..];
        from_env = true;

        let (name, operator) = match body.split_once(':') {
            Some((name, op)) => (name, Some(op)),
            None => (body, None),
        };
        if !is_variable_name(name) {
            errors.push(format!(
                r#"invalid environment variable name {name:?}; the forms are "${{NAME}}", "${{NAME:-default}}" and "${{NAME:?message}}""#
            ));
            continue;
        }
        let set = env(name);
        match operator {
            None => match set {
                Some(v) => value.push_str(&v),
                None => errors.push(format!("environment variable {name:?} is not set")),
            },
            Some(op) => {
                let non_empty = set.filter(|v| !v.is_empty());
                if let Some(default) = op.strip_prefix('-') {
                    value.push_str(non_empty.as_deref().unwrap_or(default));
                } else if let Some(message) = op.strip_prefix('?') {
                    match non_empty {
                        Some(v) => value.push_str(&v),
                        None if message.is_empty() => {
                            errors.push(format!("{name}: not set or empty"))
                        }
                        None => errors.push(format!("{name}: {message}")),
                    }
                } else {
                    errors.push(format!(
                        r#"unsupported interpolation of {name:?}; the forms are "${{NAME}}", "${{NAME:-default}}" and "${{NAME:?message}}""#
                    ));
                }
            }
        }
    }
    value.push_str(rest);

    if errors.is_empty() {
        Ok(Interpolated { value, from_env })
    } else {
        Err(errors)
    }
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Interpolates every string under `value` (whose key path is `path`) in place.
/// A string that fails keeps its text and its path is poisoned, so nothing is
/// reported twice.
pub(super) fn interpolate_tree(
    value: &mut toml::Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    diag: &mut Diagnostics,
) {
    match value {
        toml::Value::String(s) => match interpolate(s, env) {
            Ok(done) => {
                if done.from_env {
                    diag.mark_interpolated(path, &done.value);
                }
                *s = done.value;
            }
            Err(errors) => {
                for error in &errors {
                    diag.error(path, error);
                }
                diag.suppress(path);
            }
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_tree(item, &index_path(path, i), env, diag);
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                interpolate_tree(item, &key_path(path, key), env, diag);
            }
        }
        toml::Value::Integer(_)
        | toml::Value::Float(_)
        | toml::Value::Boolean(_)
        | toml::Value::Datetime(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HF_TOKEN" => Some("hf_secret".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn ok(input: &str) -> String {
        interpolate(input, &env).unwrap().value
    }

    fn err(input: &str) -> Vec<String> {
        interpolate(input, &env).unwrap_err()
    }

    #[test]
    fn plain_strings_pass_through() {
        let done = interpolate("no dollars {here}", &env).unwrap();
        assert_eq!(done.value, "no dollars {here}");
        assert!(!done.from_env);
    }

    #[test]
    fn braced_variable() {
        let done = interpolate("Bearer ${HF_TOKEN}!", &env).unwrap();
        assert_eq!(done.value, "Bearer hf_secret!");
        assert!(done.from_env);
        assert_eq!(ok("${EMPTY}"), "");
        assert_eq!(ok("${HF_TOKEN}${HF_TOKEN}"), "hf_secrethf_secret");
    }

    #[test]
    fn default_when_unset_or_empty() {
        assert_eq!(ok("${UNSET:-fallback}"), "fallback");
        assert_eq!(ok("${EMPTY:-fallback}"), "fallback");
        assert_eq!(ok("${HF_TOKEN:-fallback}"), "hf_secret");
        assert_eq!(ok("${UNSET:-}"), "");
        assert_eq!(ok("${UNSET:-http://x:8080/a}"), "http://x:8080/a");
    }

    #[test]
    fn required_with_message() {
        assert_eq!(ok("${HF_TOKEN:?set it}"), "hf_secret");
        assert_eq!(err("${UNSET:?set it}"), ["UNSET: set it"]);
        assert_eq!(err("${EMPTY:?set it}"), ["EMPTY: set it"]);
        assert_eq!(err("${EMPTY:?}"), ["EMPTY: not set or empty"]);
    }

    #[test]
    fn double_dollar_is_literal() {
        let done = interpolate("pa$$word $${HF_TOKEN}", &env).unwrap();
        assert_eq!(done.value, "pa$word ${HF_TOKEN}");
        assert!(!done.from_env);
    }

    #[test]
    fn every_error_in_a_string_is_reported() {
        assert_eq!(
            err("${A}-${B}"),
            [
                r#"environment variable "A" is not set"#,
                r#"environment variable "B" is not set"#
            ]
        );
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(
            err("cost $5"),
            [r#"a "$" must start "${NAME}"; write "$$" for a literal "$""#]
        );
        assert_eq!(
            err("${HF_TOKEN"),
            [r#"unterminated "${"; write "$$" for a literal "$""#]
        );
        assert_eq!(
            err("${1X}"),
            [
                r#"invalid environment variable name "1X"; the forms are "${NAME}", "${NAME:-default}" and "${NAME:?message}""#
            ]
        );
        assert_eq!(
            err("${X:=y}"),
            [
                r#"unsupported interpolation of "X"; the forms are "${NAME}", "${NAME:-default}" and "${NAME:?message}""#
            ]
        );
    }

    #[test]
    fn errors_never_contain_values() {
        for input in [
            "${HF_TOKEN} $x",
            "${HF_TOKEN}${UNSET}",
            "${HF_TOKEN:?m}${UNSET:?m}",
        ] {
            for e in err(input) {
                assert!(!e.contains("hf_secret"), "{e}");
            }
        }
    }
}
