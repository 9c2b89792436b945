//! `routes.<name>.shadow` and its keys: what is read, and every refusal at
//! its key path.

use super::*;
use crate::config::ShadowConfig;

/// The minimal config with `lines` in `[routes.flan]` (over `sm-flan` and
/// `hf-flan`) and a third backend, `hf-candidate`, that serves no route.
fn shadowed(lines: &str) -> String {
    format!(
        "{SM}{HF}\n[backends.hf-candidate]\nkind = \"huggingface\"\n\
         url = \"https://candidate.example\"\n{ROUTE}{lines}\n"
    )
}

#[test]
fn shadows_are_read_with_their_defaults() {
    let config = parse(&shadowed(
        r#"shadow = [{ backend = "hf-candidate", percent = 5 }, { backend = "sm-flan", percent = 0.5 }]"#,
    ));
    let route = &config.routes[0];
    assert_eq!(
        route.shadow,
        [
            ShadowConfig {
                backend: "hf-candidate".to_owned(),
                percent: 5.0
            },
            ShadowConfig {
                backend: "sm-flan".to_owned(),
                percent: 0.5
            },
        ]
    );
    assert_eq!(route.shadow_max_in_flight, 16);
    assert_eq!(route.shadow_cosine_threshold, 0.99);
    // A backend only shadowed to is in use.
    assert_eq!(config.warnings, Vec::<String>::new());
    let config = parse(&shadowed(""));
    assert_eq!(
        config.warnings,
        ["backends.hf-candidate: not used by any route"]
    );
    let config = parse(&shadowed(
        "shadow_max_in_flight = 1\nshadow_cosine_threshold = 1",
    ));
    assert_eq!(config.routes[0].shadow, []);
    assert_eq!(config.routes[0].shadow_max_in_flight, 1);
    assert_eq!(config.routes[0].shadow_cosine_threshold, 1.0);
}

#[test]
fn shadow_mistakes_are_named_by_key_path() {
    assert_eq!(
        errors(&shadowed(
            r#"shadow = [{ backend = "x", percent = 5 }, { percent = 5 }, { backend = "sm-flan" }, { backend = "hf-flan", percent = 101 }, { backend = "hf-candidate", percent = 1 }, { backend = "hf-candidate", percent = 2 }]
shadow_max_in_flight = 0
shadow_cosine_threshold = 1.5"#
        )),
        [
            r#"routes.flan.shadow[0].backend: unknown backend "x""#,
            "routes.flan.shadow[1].backend: required",
            "routes.flan.shadow[2].percent: required, e.g. percent = 5",
            "routes.flan.shadow[3].percent: must be between 0 and 100",
            r#"routes.flan.shadow[5]: backend "hf-candidate" is listed twice"#,
            "routes.flan.shadow_max_in_flight: must be greater than 0",
            "routes.flan.shadow_cosine_threshold: must be between 0.0 and 1.0",
        ]
    );
    assert_eq!(
        errors(&shadowed(
            r#"shadow = [{ backend = "hf-candidate", percent = 5, weight = 1 }]"#
        ))
        .len(),
        1,
        "unknown keys are refused"
    );
}
