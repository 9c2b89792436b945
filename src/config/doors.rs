//! `[doors]`: the front doors besides the unified API, each on by default;
//! [`Door`], the paths each door serves a route on.

use super::backend::check_region;
use super::diag::{key_path, Diagnostics};
use super::raw::RawDoors;
use crate::protocol::container::Operation;
use crate::protocol::tgi::TgiRoute;

/// At most this many `doors.sagemaker.regions`.
const MAX_REGIONS: usize = 64;

pub(super) fn doors(raw: RawDoors, diag: &mut Diagnostics) -> DoorsConfig {
    let openai = raw.openai.unwrap_or_default();
    let tgi = raw.tgi.unwrap_or_default();
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
        openai: openai.enabled.unwrap_or(true),
        tgi: tgi.enabled.unwrap_or(true),
    }
}

/// `[doors]`: the front doors besides the unified API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoorsConfig {
    pub sagemaker: SageMakerDoorConfig,
    /// `[doors.openai] enabled`: `/v1/chat/completions`, `/v1/completions`,
    /// `/v1/embeddings`, `/v1/models`.
    pub openai: bool,
    /// `[doors.tgi] enabled`: `/hf/{route}/…`, a TGI or TEI endpoint.
    pub tgi: bool,
}

impl Default for DoorsConfig {
    fn default() -> Self {
        Self {
            sagemaker: SageMakerDoorConfig::default(),
            openai: true,
            tgi: true,
        }
    }
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
    /// The doors that serve route `route` (those it asks for, when it
    /// names them), each with its paths, when the route serves what
    /// `serves` says (an operation, as a stream or not).
    pub fn of_route(
        &self,
        route: &str,
        asked: Option<&[DoorKind]>,
        serves: impl Fn(Operation, bool) -> bool,
    ) -> Vec<(&'static str, Vec<String>)> {
        let both = |d: Door| {
            let mut paths = vec![d.path(route, false)];
            if serves(Operation::Predict, true) {
                paths.push(d.path(route, true));
            }
            paths
        };
        DoorKind::ALL
            .into_iter()
            .filter(|d| d.enabled(self) && asked.is_none_or(|a| a.contains(d)))
            .map(|d| {
                let paths = match d {
                    DoorKind::Predict => both(Door::Predict),
                    DoorKind::SageMaker => both(Door::SageMaker),
                    DoorKind::OpenAi => [Operation::Chat, Operation::Completion, Operation::Embed]
                        .into_iter()
                        .filter(|op| serves(*op, false))
                        .map(|op| Door::OpenAi(op).path(route, false))
                        .collect(),
                    DoorKind::Tgi => tgi_paths(route, &serves),
                };
                (d.as_str(), paths)
            })
            .filter(|(_, paths)| !paths.is_empty())
            .collect()
    }
}

/// A front door, as a route's `doors` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoorKind {
    Predict,
    SageMaker,
    OpenAi,
    Tgi,
}

impl DoorKind {
    pub const ALL: [DoorKind; 4] = [
        DoorKind::Predict,
        DoorKind::SageMaker,
        DoorKind::OpenAi,
        DoorKind::Tgi,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DoorKind::Predict => "predict",
            DoorKind::SageMaker => "sagemaker",
            DoorKind::OpenAi => "openai",
            DoorKind::Tgi => "tgi",
        }
    }

    /// The operations the door asks of a route.
    pub fn operations(self) -> &'static [Operation] {
        match self {
            DoorKind::Predict | DoorKind::SageMaker => &[Operation::Predict],
            DoorKind::OpenAi => &[Operation::Chat, Operation::Completion, Operation::Embed],
            DoorKind::Tgi => &[
                Operation::Generate,
                Operation::Chat,
                Operation::Completion,
                Operation::Embed,
            ],
        }
    }

    fn enabled(self, doors: &DoorsConfig) -> bool {
        match self {
            DoorKind::Predict => true,
            DoorKind::SageMaker => doors.sagemaker.enabled,
            DoorKind::OpenAi => doors.openai,
            DoorKind::Tgi => doors.tgi,
        }
    }
}

/// A route's `doors = [...]`: the names, each known and listed once.
pub(super) fn route_doors(
    raw: Option<Vec<String>>,
    path: &str,
    diag: &mut Diagnostics,
) -> Option<Vec<DoorKind>> {
    let list = raw?;
    let at = key_path(path, "doors");
    if list.is_empty() {
        diag.error(
            &at,
            "must name at least one door, or be left out for every door",
        );
    }
    let mut doors = Vec::new();
    for (i, name) in list.iter().enumerate() {
        let item = format!("{at}[{i}]");
        match DoorKind::ALL.into_iter().find(|d| d.as_str() == name) {
            Some(d) if doors.contains(&d) => diag.error(&item, "listed twice"),
            Some(d) => doors.push(d),
            None => {
                let shown = diag.show(&item, name);
                diag.error(
                    &item,
                    format!(
                        r#"unknown door {shown}, expected "predict", "sagemaker", "openai" or "tgi""#
                    ),
                );
            }
        }
    }
    Some(doors)
}

/// Refuses a route that asks for a door its backends cannot serve: one
/// that is closed, or one none of whose operations every backend of the
/// route answers (whichever backend a request goes to must serve it).
pub(super) fn check_route_doors(
    routes: &[super::RouteConfig],
    backends: &[super::BackendConfig],
    doors: &DoorsConfig,
    diag: &mut Diagnostics,
) {
    for route in routes {
        let Some(asked) = &route.doors else { continue };
        let containers: Vec<(&str, super::Container)> = route
            .backends
            .iter()
            .filter_map(|b| backends.iter().find(|c| c.name == b.backend))
            .map(|b| (b.name.as_str(), b.container))
            .collect();
        for (i, door) in asked.iter().enumerate() {
            let at = format!(
                "{}[{i}]",
                key_path(&key_path("routes", &route.name), "doors")
            );
            if !door.enabled(doors) {
                let name = door.as_str();
                diag.error(
                    &at,
                    format!("door {name:?} is closed ([doors.{name}] enabled = false)"),
                );
                continue;
            }
            let common = door
                .operations()
                .iter()
                .any(|op| containers.iter().all(|(_, c)| c.serves(*op, false)));
            if !common {
                let list: Vec<String> = containers
                    .iter()
                    .map(|(name, c)| format!("{name} ({})", c.as_str()))
                    .collect();
                diag.error(
                    &at,
                    format!(
                        "the route's backends cannot serve door {:?}: no operation of it ({}) is served by every one of {}",
                        door.as_str(),
                        door.operations().iter().map(|o| o.as_str()).collect::<Vec<_>>().join(", "),
                        list.join(", ")
                    ),
                );
            }
        }
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
    /// `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, by
    /// the operation.
    OpenAi(Operation),
    /// `/hf/{route}/…`.
    Tgi(TgiRoute),
}

/// The TGI door's paths that `route` serves.
fn tgi_paths(route: &str, serves: &impl Fn(Operation, bool) -> bool) -> Vec<String> {
    let generate = serves(Operation::Generate, false);
    let embed = serves(Operation::Embed, false);
    let calls = [
        (TgiRoute::Root, generate || embed),
        (TgiRoute::Generate, generate),
        (TgiRoute::GenerateStream, serves(Operation::Generate, true)),
        (TgiRoute::Chat, serves(Operation::Chat, false)),
        (TgiRoute::Completions, serves(Operation::Completion, false)),
        (TgiRoute::Embed, embed),
    ]
    .into_iter()
    .filter_map(|(call, served)| served.then_some(call));
    calls.map(|c| Door::Tgi(c).path(route, false)).collect()
}

impl Door {
    /// The door's kind, as a route's `doors` names it.
    pub fn kind(self) -> DoorKind {
        match self {
            Door::Predict => DoorKind::Predict,
            Door::SageMaker => DoorKind::SageMaker,
            Door::OpenAi(_) => DoorKind::OpenAi,
            Door::Tgi(_) => DoorKind::Tgi,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Door::Predict => "predict",
            Door::SageMaker => "sagemaker",
            Door::OpenAi(_) => "openai",
            Door::Tgi(_) => "tgi",
        }
    }

    /// The path of `route` on this door (without a base path).
    pub fn path(self, route: &str, stream: bool) -> String {
        match (self, stream) {
            (Door::Predict, false) => format!("/v1/predict/{route}"),
            (Door::Predict, true) => format!("/v1/predict/{route}/stream"),
            (Door::SageMaker, false) => format!("/endpoints/{route}/invocations"),
            (Door::SageMaker, true) => format!("/endpoints/{route}/invocations-response-stream"),
            (Door::OpenAi(op), _) => openai_path(op).to_string(),
            (Door::Tgi(TgiRoute::Root), _) => format!("/hf/{route}"),
            (Door::Tgi(call), _) => format!("/hf/{route}{}", call.path()),
        }
    }
}

/// The OpenAI door's path of an operation.
pub fn openai_path(op: Operation) -> &'static str {
    match op {
        Operation::Chat => "/v1/chat/completions",
        Operation::Completion => "/v1/completions",
        Operation::Embed => "/v1/embeddings",
        Operation::Predict | Operation::Generate => "/v1/models",
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
