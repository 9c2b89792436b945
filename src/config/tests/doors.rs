//! `[doors.*]` and a route's `doors`: which doors serve a route, and the
//! refusal of a route whose backends cannot serve a door it asks for.

use super::*;

const TEI: &str = r#"
[backends.tei]
kind = "huggingface"
url = "https://tei.example"
container = "tei"
"#;

#[test]
fn the_openai_and_tgi_doors_are_open_by_default() {
    let config = parse(&minimal(""));
    assert!(config.doors.openai && config.doors.tgi);
    let config = parse(&minimal(
        "[doors.openai]\nenabled = false\n[doors.tgi]\nenabled = false\n",
    ));
    assert!(!config.doors.openai && !config.doors.tgi);
    assert_eq!(config.routes[0].doors, None);
}

#[test]
fn a_route_names_its_doors() {
    let config = parse(&minimal(
        "[routes.chat]\nbackends = [\"hf-flan\"]\ndoors = [\"openai\", \"tgi\"]\n",
    ));
    let chat = config.routes.iter().find(|r| r.name == "chat").unwrap();
    assert_eq!(chat.doors, Some(vec![DoorKind::OpenAi, DoorKind::Tgi]));
    assert_eq!(
        errors(&minimal(
            "[routes.chat]\nbackends = [\"hf-flan\"]\ndoors = [\"openai\", \"grpc\", \"openai\"]\n"
        )),
        [
            r#"routes.chat.doors[1]: unknown door "grpc", expected "predict", "sagemaker", "openai" or "tgi""#,
            "routes.chat.doors[2]: listed twice",
        ]
    );
    assert_eq!(
        errors(&minimal(
            "[routes.chat]\nbackends = [\"hf-flan\"]\ndoors = []\n"
        )),
        ["routes.chat.doors: must name at least one door, or be left out for every door"]
    );
}

#[test]
fn a_door_the_backends_cannot_serve_is_refused() {
    // TGI answers chat and completions, TEI embeddings: no operation of the
    // OpenAI door is served by both.
    assert_eq!(
        errors(&minimal(&format!(
            "{TEI}[routes.mixed]\nbackends = [\"hf-flan\", \"tei\"]\ndoors = [\"predict\", \"openai\"]\n"
        ))),
        [r#"routes.mixed.doors[1]: the route's backends cannot serve door "openai": no operation of it (chat, completion, embed) is served by every one of hf-flan (tgi), tei (tei)"#]
    );
    parse(&minimal(&format!(
        "{TEI}[routes.embed]\nbackends = [\"tei\"]\ndoors = [\"openai\", \"tgi\"]\n"
    )));
    assert_eq!(
        errors(&minimal(
            "[doors.tgi]\nenabled = false\n[routes.chat]\nbackends = [\"hf-flan\"]\ndoors = [\"tgi\"]\n"
        )),
        [r#"routes.chat.doors[0]: door "tgi" is closed ([doors.tgi] enabled = false)"#]
    );
}

#[test]
fn check_names_the_doors_a_route_is_served_on() {
    let config = parse(&minimal(&format!(
        "{TEI}[routes.embed]\nbackends = [\"tei\"]\ndoors = [\"openai\", \"tgi\"]\n"
    )));
    let summary = config.summary();
    assert!(
        summary.contains("    doors: openai /v1/embeddings; tgi /hf/embed /hf/embed/embed"),
        "{summary}"
    );
}
