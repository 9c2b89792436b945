//! `[doors]`: the front doors besides the unified API, each on by default;
//! [`Door`], the paths each door serves a route on.

use super::backend::check_region;
use super::diag::{key_path, Diagnostics};
use super::raw::RawDoors;

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

/// `[doors]`: the front doors besides the unified API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DoorsConfig {
    pub sagemaker: SageMakerDoorConfig,
}

/// `[doors.sagemaker]`: `/endpoints/{route}/invocations…`, for the AWS SDKs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SageMakerDoorConfig {
    /// On unless `enabled = false`.
    pub enabled: bool,
    /// The signing regions accepted in a caller's SigV4 scope; empty: any.
    pub regions: Vec<String>,
}

impl DoorsConfig {
    /// The doors that serve route `route`, each with its two paths: one
    /// answer, and a stream.
    pub fn of_route(&self, route: &str) -> Vec<(Door, [String; 2])> {
        let mut doors = vec![Door::Predict];
        if self.sagemaker.enabled {
            doors.push(Door::SageMaker);
        }
        doors
            .into_iter()
            .map(|d| (d, [d.path(route, false), d.path(route, true)]))
            .collect()
    }
}

/// The front door a request came through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Door {
    /// `/v1/predict/{route}[/stream]`.
    #[default]
    Predict,
    /// `/endpoints/{route}/invocations[-response-stream]`.
    SageMaker,
}

impl Door {
    pub fn as_str(self) -> &'static str {
        match self {
            Door::Predict => "predict",
            Door::SageMaker => "sagemaker",
        }
    }

    /// The path of `route` on this door (without a base path).
    pub fn path(self, route: &str, stream: bool) -> String {
        match (self, stream) {
            (Door::Predict, false) => format!("/v1/predict/{route}"),
            (Door::Predict, true) => format!("/v1/predict/{route}/stream"),
            (Door::SageMaker, false) => format!("/endpoints/{route}/invocations"),
            (Door::SageMaker, true) => format!("/endpoints/{route}/invocations-response-stream"),
        }
    }
}

impl Default for SageMakerDoorConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            regions: Vec::new(),
        }
    }
}
