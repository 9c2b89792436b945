//! Inputs for the emulators' shared model and what it answers to them.

use infergate::emulator::model;

/// `n` distinct words; the model answers them reversed.
pub fn words(n: usize) -> String {
    (0..n)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The SSE body TGI's `generate_stream` sends for this input.
pub fn expected_sse(inputs: &str, max_new_tokens: Option<u32>) -> String {
    let gen = model::Generation::run(inputs, max_new_tokens);
    model::generate_stream_events(&gen, false)
        .iter()
        .map(|e| format!("data:{e}\n\n"))
        .collect()
}

/// The `data: ` payloads of an SSE body (written with the space), in order.
pub fn data_events(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|block| block.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(str::to_string)
        .collect()
}
