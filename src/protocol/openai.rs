//! OpenAI's API shapes where more than one module needs them: the
//! `finish_reason` values clients know, from the names TGI and LMI use.

/// OpenAI's `finish_reason` for what a container reported: `length` and
/// the tool and filter reasons as they are; TGI's `eos_token` and
/// `stop_sequence`, and anything unknown, as `stop`.
pub fn finish_reason(reported: &str) -> &'static str {
    match reported {
        "length" => "length",
        "tool_calls" => "tool_calls",
        "function_call" => "function_call",
        "content_filter" => "content_filter",
        _ => "stop",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tgi_reasons_become_openai_ones() {
        assert_eq!(finish_reason("eos_token"), "stop");
        assert_eq!(finish_reason("stop_sequence"), "stop");
        assert_eq!(finish_reason("length"), "length");
        assert_eq!(finish_reason("tool_calls"), "tool_calls");
    }
}
