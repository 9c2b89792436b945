//! `[doors]`: the front doors besides the unified API, each on by default.

use super::backend::check_region;
use super::diag::{key_path, Diagnostics};
use super::raw::RawDoors;
use super::{DoorsConfig, SageMakerDoorConfig};

/// At most this many `doors.sagemaker.regions`.
const MAX_REGIONS: usize = 64;

pub(super) fn doors(raw: RawDoors, diag: &mut Diagnostics) -> DoorsConfig {
    let sm = raw.sagemaker.unwrap_or_default();
    let mut regions = Vec::new();
    if let Some(list) = sm.regions {
        let at = key_path("doors.sagemaker", "regions");
        if list.is_empty() {
            diag.error(
                &at,
                "must name at least one region, or be left out to accept any",
            );
        }
        if list.len() > MAX_REGIONS {
            diag.error(&at, format!("must name at most {MAX_REGIONS} regions"));
        }
        for (i, region) in list.into_iter().enumerate() {
            let region = region.trim().to_owned();
            if check_region(&region, &format!("{at}[{i}]"), diag) && !regions.contains(&region) {
                regions.push(region);
            }
        }
    }
    DoorsConfig {
        sagemaker: SageMakerDoorConfig {
            enabled: sm.enabled.unwrap_or(true),
            regions,
        },
    }
}
