use super::*;
use serde_json::json;

fn body(v: Value) -> Bytes {
    to_bytes(&v)
}

fn sent(plan: &Plan) -> Value {
    serde_json::from_slice(&plan.body).unwrap()
}

#[test]
fn predict_passes_through_but_for_jumpstart_and_sagemaker_streams() {
    let b = body(json!({"inputs": "a b"}));
    let p = plan(
        Container::Tgi,
        Host::HuggingFace,
        Operation::Predict,
        false,
        &b,
        "x",
    )
    .unwrap();
    assert_eq!((p.route, p.json, &p.body), (HfRoute::Root, false, &b));
    let p = plan(
        Container::Tgi,
        Host::HuggingFace,
        Operation::Predict,
        true,
        &b,
        "x",
    )
    .unwrap();
    assert_eq!((p.route, &p.body), (HfRoute::GenerateStream, &b));
    let p = plan(
        Container::Lmi,
        Host::SageMaker,
        Operation::Predict,
        true,
        &b,
        "x",
    )
    .unwrap();
    assert_eq!(sent(&p), json!({"inputs": "a b", "stream": true}));
    let p = plan(
        Container::JumpStartText2Text,
        Host::SageMaker,
        Operation::Predict,
        false,
        &b,
        "x",
    )
    .unwrap();
    assert_eq!(sent(&p), json!({"text_inputs": "a b"}));
    assert_eq!(p.reshape, Reshape::JumpStartList);
}

#[test]
fn generate_goes_to_each_containers_route() {
    let b = body(json!({"inputs": "a b", "parameters": {"max_new_tokens": 3}, "stream": true}));
    let p = plan(
        Container::Tgi,
        Host::HuggingFace,
        Operation::Generate,
        true,
        &b,
        "x",
    )
    .unwrap();
    assert_eq!(p.route, HfRoute::GenerateStream);
    assert_eq!(
        sent(&p),
        json!({"inputs": "a b", "parameters": {"max_new_tokens": 3}})
    );
    let p = plan(
        Container::Tgi,
        Host::HuggingFace,
        Operation::Generate,
        false,
        &b,
        "x",
    )
    .unwrap();
    assert_eq!((p.route, p.reshape), (HfRoute::Generate, Reshape::Pass));
    let p = plan(
        Container::Tgi,
        Host::SageMaker,
        Operation::Generate,
        false,
        &b,
        "x",
    )
    .unwrap();
    assert_eq!(p.reshape, Reshape::FirstOfList);
    assert!(sent(&p).get("stream").is_none());
    let p = plan(
        Container::Lmi,
        Host::SageMaker,
        Operation::Generate,
        true,
        &b,
        "x",
    )
    .unwrap();
    assert_eq!(sent(&p)["stream"], true);
    assert_eq!(p.events, Some(EventMap::Generate { index: 0 }));
    let p = plan(
        Container::HfToolkit,
        Host::SageMaker,
        Operation::Generate,
        false,
        &b,
        "x",
    )
    .unwrap();
    assert_eq!(sent(&p)["parameters"]["return_full_text"], false);
}

#[test]
fn chat_streams_ask_for_their_usage() {
    let b = body(json!({"messages": [{"role": "user", "content": "a"}],
        "stream_options": {"include_usage": false}}));
    let p = plan(
        Container::Tgi,
        Host::HuggingFace,
        Operation::Chat,
        true,
        &b,
        "x",
    )
    .unwrap();
    assert_eq!(p.route, HfRoute::Chat);
    assert_eq!(sent(&p)["stream_options"], json!({"include_usage": true}));
    let p = plan(
        Container::Lmi,
        Host::SageMaker,
        Operation::Chat,
        false,
        &b,
        "x",
    )
    .unwrap();
    assert!(sent(&p).get("stream_options").is_none() && sent(&p).get("stream").is_none());
    assert_eq!(p.events, Some(EventMap::Chat));
}

#[test]
fn completions_become_generate_where_the_container_has_none() {
    let b = body(json!({"prompt": "a b", "max_tokens": 2}));
    let p = plan(
        Container::Tgi,
        Host::HuggingFace,
        Operation::Completion,
        false,
        &b,
        "x",
    )
    .unwrap();
    // TGI 2.0 requires a `model`; it names nothing there.
    assert_eq!(p.route, HfRoute::Completions);
    assert_eq!(
        sent(&p),
        json!({"prompt": "a b", "max_tokens": 2, "model": "tgi"})
    );
    let p = plan(
        Container::Lmi,
        Host::SageMaker,
        Operation::Completion,
        false,
        &b,
        "x",
    )
    .unwrap();
    assert_eq!(sent(&p)["inputs"], "a b");
    assert_eq!(p.reshape, Reshape::Completion(Inner::FirstOfList));
    let p = plan(
        Container::JumpStartText2Text,
        Host::SageMaker,
        Operation::Completion,
        false,
        &b,
        "x",
    )
    .unwrap();
    assert_eq!(sent(&p), json!({"text_inputs": "a b", "max_length": 2}));
    let answer = br#"{"generated_texts": ["b a"]}"#;
    let done: Value = serde_json::from_slice(&p.reshape.apply(answer).unwrap()).unwrap();
    assert_eq!(done["choices"][0]["text"], "b a");
}

#[test]
fn embeddings_go_to_tei_only() {
    let b = body(json!({"inputs": ["a", "b"]}));
    let p = plan(
        Container::Tei,
        Host::HuggingFace,
        Operation::Embed,
        false,
        &b,
        "x",
    )
    .unwrap();
    assert_eq!(p.route, HfRoute::Embed);
    let p = plan(
        Container::Tei,
        Host::SageMaker,
        Operation::Embed,
        false,
        &b,
        "x",
    )
    .unwrap();
    assert_eq!(p.route, HfRoute::Root);
    let err = plan(
        Container::Tgi,
        Host::SageMaker,
        Operation::Embed,
        false,
        &b,
        "x",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "backend \"x\" (container tgi) does not serve embeddings"
    );
}

#[test]
fn reshapes_take_the_first_answer() {
    let one = Reshape::FirstOfList
        .apply(br#"[{"generated_text": "a"}]"#)
        .unwrap();
    assert_eq!(&one[..], br#"{"generated_text":"a"}"#);
    assert!(Reshape::FirstOfList
        .apply(br#"{"generated_text": "a"}"#)
        .is_some());
    assert!(Reshape::FirstOfList.apply(b"[]").is_none());
    assert!(Reshape::FirstOfList.apply(b"[1]").is_none());
    let text = plan(
        Container::Lmi,
        Host::SageMaker,
        Operation::Generate,
        false,
        &body(json!({"inputs": "a"})),
        "x",
    );
    assert!(text.is_ok());
    assert!(matches!(
        plan(
            Container::Tgi,
            Host::SageMaker,
            Operation::Chat,
            false,
            &Bytes::from_static(b"[1]"),
            "x"
        ),
        Err(AdaptError::Shape(_))
    ));
}

#[test]
fn a_predict_stream_keeps_what_the_client_sent_and_lmi_errors_end_it() {
    let b = body(json!({"messages": [], "stream_options": {"include_usage": true}}));
    let p = plan(
        Container::Tgi,
        Host::SageMaker,
        Operation::Predict,
        true,
        &b,
        "x",
    )
    .unwrap();
    assert_eq!(
        sent(&p),
        json!({"messages": [], "stream": true, "stream_options": {"include_usage": true}})
    );
    assert_eq!(p.events, None);
    let p = plan(
        Container::Lmi,
        Host::SageMaker,
        Operation::Predict,
        true,
        &b,
        "x",
    )
    .unwrap();
    assert_eq!(p.events, Some(EventMap::Errors));
}

#[test]
fn pipelines_get_no_parameter_only_tgi_knows() {
    let b = body(
        json!({"inputs": "a", "parameters": {"details": false, "watermark": false,
        "max_new_tokens": 3, "top_n_tokens": null, "seed": null}}),
    );
    let p = plan(
        Container::HfToolkit,
        Host::HuggingFace,
        Operation::Generate,
        false,
        &b,
        "x",
    )
    .unwrap();
    assert_eq!(
        sent(&p)["parameters"],
        json!({"max_new_tokens": 3, "return_full_text": false})
    );
    let p = plan(
        Container::JumpStartText2Text,
        Host::SageMaker,
        Operation::Generate,
        false,
        &b,
        "x",
    )
    .unwrap();
    assert_eq!(sent(&p), json!({"text_inputs": "a", "max_length": 3}));
}
