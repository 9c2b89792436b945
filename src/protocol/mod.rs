//! Wire facts of the upstream services, shared by whoever needs them: config
//! validation, the front doors and the backends. Plain data and pure
//! functions only, so every layer may import it without a circle.

pub mod sagemaker;
pub mod usage;
