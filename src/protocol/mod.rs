//! Wire facts of the upstream services, shared by whoever needs them: config
//! validation, the front doors, the backends and the emulators. Plain data
//! and pure functions only, so every layer may import it without a circle:
//! the model servers behind endpoints and what each answers ([`container`]),
//! SageMaker's headers ([`sagemaker`]), its response stream's frames
//! ([`eventstream`]), SigV4 as a service verifies it ([`sigv4_verify`]),
//! the `finish_reason`s OpenAI clients know ([`openai`]), TGI's routes
//! ([`tgi`]) and the tokens an answer reports ([`usage`]).

pub mod container;
pub mod eventstream;
pub mod openai;
pub mod sagemaker;
pub mod sigv4_verify;
pub mod tgi;
pub mod usage;
