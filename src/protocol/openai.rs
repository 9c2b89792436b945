//! OpenAI's API shapes where more than one module needs them: the
//! `finish_reason` values clients know, from the names TGI and LMI use,
//! and an embedding as `encoding_format: "base64"` sends it.

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

/// Standard base64 (with padding) of the vector's little-endian `f32`
/// bytes, as OpenAI's `encoding_format: "base64"` sends an embedding (and
/// the `openai` client asks for by default).
pub fn base64_f32(vector: &[f32]) -> String {
    use base64::Engine;
    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
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

    #[test]
    fn an_embedding_is_its_little_endian_f32s_in_standard_base64() {
        // 1.0f32 = 00 00 80 3f; 2.0f32 = 00 00 00 40.
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32(&[1.0, 2.0]), "AACAPwAAAEA=");
        assert_eq!(base64_f32(&[1.0, 2.0, -0.0]), "AACAPwAAAEAAAACA");
        assert_eq!(base64_f32(&[]), "");
    }
}
