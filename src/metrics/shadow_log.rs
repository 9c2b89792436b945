//! The shadow diff log's own series ([`crate::shadow::diff_log`]): what
//! was queued for the file and what was dropped because the writer was
//! behind. Process-wide, without labels: one log serves every route.

use prometheus::{IntCounter, Registry};

/// `infergate_shadow_log_lines_total` and
/// `infergate_shadow_log_dropped_total`.
#[derive(Clone)]
pub struct ShadowLogSeries {
    pub lines: IntCounter,
    pub dropped: IntCounter,
}

impl std::fmt::Debug for ShadowLogSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShadowLogSeries")
    }
}

impl ShadowLogSeries {
    pub(super) fn register(registry: &Registry) -> prometheus::Result<Self> {
        let lines = IntCounter::new(
            "infergate_shadow_log_lines_total",
            "Lines handed to the shadow diff log's writer (shadow.diff_log), one per sampled shadow comparison.",
        )?;
        let dropped = IntCounter::new(
            "infergate_shadow_log_dropped_total",
            "Lines of the shadow diff log dropped because its writer's queue was full (the file is slower than the shadows).",
        )?;
        registry.register(Box::new(lines.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        Ok(Self { lines, dropped })
    }
}
