//! The model servers that sit behind SageMaker and Hugging Face endpoints,
//! and which operations each can answer.
//!
//! A request reaches the core as an [`Operation`]: a door's own call (the
//! unified API's pass-through, TGI's generate, OpenAI's chat completions,
//! completions and embeddings). What a backend can do with it depends on
//! the [`Container`] it runs, which differ in ways clients trip on: TGI
//! takes every text operation and streams SSE; LMI (DJL serving) takes
//! `inputs` and `messages` and streams JSON lines; TEI only embeds; the
//! HF inference toolkit and JumpStart's text2text containers answer whole.

/// The model server of a backend (`container` in a backend's config).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Container {
    /// Hugging Face text-generation-inference: `/generate`, `/generate_stream`,
    /// `/v1/chat/completions`, `/v1/completions`; on SageMaker every payload
    /// on `/invocations` (TGI ≥ 2.4). Streams in SSE.
    #[default]
    Tgi,
    /// LMI / DJL serving on SageMaker: `{"inputs"}` and `{"messages"}` on
    /// `/invocations`; streams as JSON lines.
    Lmi,
    /// Hugging Face text-embeddings-inference: `/embed`, `/v1/embeddings`;
    /// on SageMaker `{"inputs"}` on `/invocations`.
    Tei,
    /// The Hugging Face inference toolkit (a pipeline per task): `{"inputs",
    /// "parameters"}` → `[{"generated_text"}]`, whole.
    HfToolkit,
    /// JumpStart's legacy text2text containers: `{"text_inputs"}` →
    /// `{"generated_texts"}`, whole.
    JumpStartText2Text,
}

/// What a door asks of a route's backends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Operation {
    /// The body as the client sent it, to the backend's own route (the
    /// unified API and the SageMaker door).
    #[default]
    Predict,
    /// TGI's generate: `{"inputs", "parameters"}` → `{"generated_text",
    /// "details"}`; a stream of TGI token events.
    Generate,
    /// OpenAI's chat completions: `{"messages", …}` → `chat.completion`.
    Chat,
    /// OpenAI's (legacy) completions: `{"prompt", …}` → `text_completion`.
    Completion,
    /// Embeddings: `{"inputs": text | [text]}` → one vector per input.
    Embed,
}

impl Operation {
    pub const ALL: [Operation; 5] = [
        Operation::Predict,
        Operation::Generate,
        Operation::Chat,
        Operation::Completion,
        Operation::Embed,
    ];

    /// The name in `check`, `/v1/routes` and error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Predict => "predict",
            Operation::Generate => "generate",
            Operation::Chat => "chat",
            Operation::Completion => "completion",
            Operation::Embed => "embed",
        }
    }

    /// What a person calls it, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Operation::Predict => "predictions",
            Operation::Generate => "text generation",
            Operation::Chat => "chat completions",
            Operation::Completion => "completions",
            Operation::Embed => "embeddings",
        }
    }
}

impl Container {
    pub const ALL: [Container; 5] = [
        Container::Tgi,
        Container::Lmi,
        Container::Tei,
        Container::HfToolkit,
        Container::JumpStartText2Text,
    ];

    /// The name in config.
    pub fn as_str(self) -> &'static str {
        match self {
            Container::Tgi => "tgi",
            Container::Lmi => "lmi",
            Container::Tei => "tei",
            Container::HfToolkit => "hf-toolkit",
            Container::JumpStartText2Text => "jumpstart-text2text",
        }
    }

    /// The container a config name means.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// Whether a Hugging Face Inference Endpoint can run it (LMI and
    /// JumpStart's containers are SageMaker's).
    pub fn on_huggingface(self) -> bool {
        matches!(self, Container::Tgi | Container::Tei | Container::HfToolkit)
    }

    /// Whether the container answers `op`, as a stream when `stream`.
    pub fn serves(self, op: Operation, stream: bool) -> bool {
        use Container::{HfToolkit, JumpStartText2Text as JumpStart, Lmi, Tei, Tgi};
        match op {
            Operation::Predict if stream => matches!(self, Tgi | Lmi),
            Operation::Predict => true,
            Operation::Generate | Operation::Completion if stream => matches!(self, Tgi | Lmi),
            Operation::Generate | Operation::Completion => {
                matches!(self, Tgi | Lmi | HfToolkit | JumpStart)
            }
            Operation::Chat => matches!(self, Tgi | Lmi),
            Operation::Embed => self == Tei && !stream,
        }
    }

    /// Whether it can stream anything.
    pub fn streams(self) -> bool {
        Operation::ALL.into_iter().any(|op| self.serves(op, true))
    }

    /// The operations it answers, for `check` and `/v1/routes`.
    pub fn operations(self) -> Vec<Operation> {
        Operation::ALL
            .into_iter()
            .filter(|op| self.serves(*op, false))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Container::ALL {
            assert_eq!(Container::from_name(c.as_str()), Some(c));
        }
        assert_eq!(Container::from_name("hf"), None);
    }

    #[test]
    fn what_each_container_answers() {
        use Operation::*;
        assert!(Container::Tgi.serves(Chat, true) && Container::Lmi.serves(Chat, true));
        assert!(!Container::Tei.serves(Chat, false) && Container::Tei.serves(Embed, false));
        assert!(!Container::Tei.serves(Embed, true) && !Container::Tgi.serves(Embed, false));
        assert!(Container::HfToolkit.serves(Generate, false));
        assert!(!Container::HfToolkit.serves(Generate, true));
        assert!(!Container::JumpStartText2Text.streams() && !Container::Tei.streams());
        assert!(
            Container::Lmi.serves(Predict, true) && !Container::HfToolkit.serves(Predict, true)
        );
        assert_eq!(Container::Tei.operations(), [Predict, Embed]);
    }
}
