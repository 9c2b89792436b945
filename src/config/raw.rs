//! Phase one: the file's shape as serde structs.
//!
//! Every struct denies unknown fields and every field is optional here (the
//! defaults and "required" checks live in `validate.rs`, where the message can
//! say *for which kind* a key is required). Durations are humantime strings.
//!
//! serde stops at the first error of a struct, but users want every error in
//! one run, so [`deserialize_section`] retries: each failure is reported at its
//! key path (from `serde_path_to_error`), the offending key is dropped and the
//! section is read again, until it deserializes.

use std::fmt;
use std::time::Duration;

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_path_to_error::Segment;

use super::diag::{index_path, key_path, Diagnostics};

/// `[server]`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen: Option<String>,
    pub(super) max_body_bytes: Option<i64>,
    #[serde(deserialize_with = "duration")]
    pub(super) request_timeout: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    pub(super) shutdown_grace: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    pub(super) shutdown_delay: Option<Duration>,
    pub(super) watch_config: Option<bool>,
    #[serde(deserialize_with = "duration")]
    pub(super) watch_interval: Option<Duration>,
    pub(super) pid_file: Option<String>,
    #[serde(deserialize_with = "duration")]
    pub(super) header_read_timeout: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    pub(super) idle_timeout: Option<Duration>,
    pub(super) max_connections: Option<i64>,
    pub(super) workers: Option<i64>,
    pub(super) auth: Option<String>,
    pub(super) admin_listen: Option<String>,
    pub(super) tls: Option<RawServerTls>,
}

/// `[server.tls]`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawServerTls {
    pub(super) cert_file: Option<String>,
    pub(super) key_file: Option<String>,
    pub(super) client_ca_file: Option<String>,
}

/// `[upstream]`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawUpstream {
    #[serde(deserialize_with = "duration")]
    pub(super) connect_timeout: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    pub(super) pool_idle_timeout: Option<Duration>,
    pub(super) pool_max_idle_per_host: Option<i64>,
    pub(super) tls_ca_file: Option<String>,
}

/// `[doors]`: the front doors besides the unified API.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawDoors {
    pub(super) sagemaker: Option<RawSageMakerDoor>,
    pub(super) openai: Option<RawDoor>,
    pub(super) tgi: Option<RawDoor>,
}

/// A door with nothing to set but whether it is on (`[doors.openai]`,
/// `[doors.tgi]`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawDoor {
    pub(super) enabled: Option<bool>,
}

/// `[doors.sagemaker]`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawSageMakerDoor {
    pub(super) enabled: Option<bool>,
    pub(super) regions: Option<Vec<String>>,
}

/// `[rate_limits]`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawRateLimits {
    pub(super) store: Option<String>,
    pub(super) redis_url: Option<String>,
    pub(super) redis_urls: Option<Vec<String>>,
    pub(super) redis_mode: Option<String>,
    pub(super) on_store_error: Option<String>,
    #[serde(deserialize_with = "duration")]
    pub(super) timeout: Option<Duration>,
    pub(super) key_prefix: Option<String>,
    pub(super) headroom: Option<f64>,
}

/// `[telemetry]`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawTelemetry {
    pub(super) otlp_endpoint: Option<String>,
    pub(super) service_name: Option<String>,
    #[serde(deserialize_with = "duration")]
    pub(super) otlp_timeout: Option<Duration>,
}

/// `[shadow]`: what every route's shadows share.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawShadowSettings {
    pub(super) diff_log: Option<String>,
    /// A float; an integer is accepted too.
    pub(super) diff_log_percent: Option<f64>,
    pub(super) diff_log_answer_bytes: Option<i64>,
}

/// `[backends.<name>]`: the keys of every kind side by side, so that a key of
/// the wrong kind gets "not valid for kind …" instead of a bare "unknown key".
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawBackend {
    pub(super) kind: Option<String>,
    #[serde(deserialize_with = "duration")]
    pub(super) timeout: Option<Duration>,
    pub(super) max_in_flight: Option<i64>,
    pub(super) eject_after: Option<i64>,
    #[serde(deserialize_with = "duration")]
    pub(super) ejection_time: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    pub(super) max_ejection_time: Option<Duration>,
    pub(super) tls_ca_file: Option<String>,
    pub(super) container: Option<String>,

    // kind = "sagemaker"
    pub(super) endpoint_name: Option<String>,
    pub(super) region: Option<String>,
    pub(super) endpoint_url: Option<String>,
    pub(super) fips: Option<bool>,
    pub(super) profile: Option<String>,
    pub(super) role_arn: Option<String>,
    pub(super) role_session_name: Option<String>,
    pub(super) external_id: Option<String>,
    pub(super) target_variant: Option<String>,
    pub(super) target_model: Option<String>,
    pub(super) target_container_hostname: Option<String>,
    pub(super) inference_component: Option<String>,
    pub(super) custom_attributes: Option<String>,
    pub(super) enable_explanations: Option<String>,
    pub(super) inference_id: Option<String>,
    pub(super) format: Option<String>,

    // kind = "huggingface"
    pub(super) url: Option<String>,
    pub(super) token: Option<String>,
    #[serde(deserialize_with = "duration")]
    pub(super) health_check_interval: Option<Duration>,
    pub(super) health_check_path: Option<String>,
    #[serde(deserialize_with = "duration")]
    pub(super) health_check_timeout: Option<Duration>,
}

impl RawBackend {
    /// The SageMaker-only keys that are set.
    pub(super) fn sagemaker_keys(&self) -> Vec<&'static str> {
        let keys = [
            ("endpoint_name", self.endpoint_name.is_some()),
            ("region", self.region.is_some()),
            ("endpoint_url", self.endpoint_url.is_some()),
            ("fips", self.fips.is_some()),
            ("profile", self.profile.is_some()),
            ("role_arn", self.role_arn.is_some()),
            ("role_session_name", self.role_session_name.is_some()),
            ("external_id", self.external_id.is_some()),
            ("target_variant", self.target_variant.is_some()),
            ("target_model", self.target_model.is_some()),
            (
                "target_container_hostname",
                self.target_container_hostname.is_some(),
            ),
            ("inference_component", self.inference_component.is_some()),
            ("custom_attributes", self.custom_attributes.is_some()),
            ("enable_explanations", self.enable_explanations.is_some()),
            ("inference_id", self.inference_id.is_some()),
            ("format", self.format.is_some()),
        ];
        keys.iter()
            .filter(|(_, set)| *set)
            .map(|(k, _)| *k)
            .collect()
    }

    /// The Hugging Face-only keys that are set.
    pub(super) fn huggingface_keys(&self) -> Vec<&'static str> {
        let keys = [
            ("url", self.url.is_some()),
            ("token", self.token.is_some()),
            (
                "health_check_interval",
                self.health_check_interval.is_some(),
            ),
            ("health_check_path", self.health_check_path.is_some()),
            ("health_check_timeout", self.health_check_timeout.is_some()),
        ];
        keys.iter()
            .filter(|(_, set)| *set)
            .map(|(k, _)| *k)
            .collect()
    }
}

/// `[clients.<name>]`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawClient {
    pub(super) api_key: Option<String>,
    pub(super) api_keys: Option<Vec<String>>,
    pub(super) api_key_sha256: Option<String>,
    pub(super) api_keys_sha256: Option<Vec<String>>,
    pub(super) routes: Option<Vec<String>>,
    pub(super) rate_limit: Option<RawRateLimit>,
    pub(super) max_in_flight: Option<i64>,
    pub(super) admin: Option<bool>,
    pub(super) aws_access_key_id: Option<String>,
    pub(super) aws_secret_access_key: Option<String>,
    pub(super) aws_secret_access_key_file: Option<String>,
    pub(super) aws_session_token: Option<String>,
    pub(super) tokens_per_minute: Option<i64>,
    pub(super) route_limits: Option<std::collections::BTreeMap<String, RawRouteLimits>>,
}

/// `[clients.<name>.route_limits.<route>]`: the client's limits on one route.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawRouteLimits {
    pub(super) rate_limit: Option<RawRateLimit>,
    pub(super) tokens_per_minute: Option<i64>,
}

/// `rate_limit = { requests_per_second = 10, burst = 20 }`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawRateLimit {
    /// A float; an integer is accepted too.
    pub(super) requests_per_second: Option<f64>,
    pub(super) burst: Option<i64>,
}

/// `[routes.<name>]`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) backends: Option<Vec<RawRouteBackend>>,
    pub(super) doors: Option<Vec<String>>,
    #[serde(deserialize_with = "duration")]
    pub(super) timeout: Option<Duration>,
    pub(super) attempts: Option<i64>,
    pub(super) balance: Option<String>,
    #[serde(deserialize_with = "duration")]
    pub(super) per_try_timeout: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    pub(super) backoff_base: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    pub(super) backoff_max: Option<Duration>,
    /// A float; an integer (`0`, `1`) is accepted too.
    pub(super) retry_budget_ratio: Option<f64>,
    pub(super) retry_budget_min_per_second: Option<i64>,
    #[serde(deserialize_with = "duration")]
    pub(super) retry_budget_window: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    pub(super) hedge_after: Option<Duration>,
    pub(super) sticky_sessions: Option<bool>,
    #[serde(deserialize_with = "duration")]
    pub(super) stream_first_byte_timeout: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    pub(super) stream_idle_timeout: Option<Duration>,
    #[serde(deserialize_with = "duration")]
    pub(super) stream_keepalive: Option<Duration>,
    pub(super) rate_limit: Option<RawRateLimit>,
    pub(super) tokens_per_minute: Option<i64>,
    pub(super) cache: Option<RawCache>,
    pub(super) shadow: Option<Vec<RawShadow>>,
    pub(super) shadow_max_in_flight: Option<i64>,
    /// A float; an integer (`0`, `1`) is accepted too.
    pub(super) shadow_cosine_threshold: Option<f64>,
}

/// One entry of `routes.<name>.shadow`: `{ backend = "hf-candidate", percent = 5 }`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawShadow {
    pub(super) backend: Option<String>,
    /// A float; an integer is accepted too.
    pub(super) percent: Option<f64>,
}

/// `cache = { ttl = "10m", store = "memory", max_bytes = 268435456 }`
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawCache {
    #[serde(deserialize_with = "duration")]
    pub(super) ttl: Option<Duration>,
    pub(super) store: Option<String>,
    pub(super) max_bytes: Option<i64>,
    pub(super) shared: Option<bool>,
    pub(super) sampling: Option<bool>,
}

/// One entry of `routes.<name>.backends`: `"name"` or `{ backend = "name", weight = 3 }`.
#[derive(Debug)]
pub(super) enum RawRouteBackend {
    Name(String),
    Table(RawWeighted),
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawWeighted {
    pub(super) backend: Option<String>,
    pub(super) weight: Option<i64>,
}

impl<'de> Deserialize<'de> for RawRouteBackend {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryVisitor;

        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = RawRouteBackend;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a backend name or a table such as { backend = "name", weight = 1 }"#)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawRouteBackend::Name(v.to_owned()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(RawRouteBackend::Name(v))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawWeighted::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawRouteBackend::Table)
            }
        }

        deserializer.deserialize_any(EntryVisitor)
    }
}

/// The message for a duration that does not parse. humantime's own message is
/// not used: it quotes parts of the value, which may come from the environment.
pub(super) const INVALID_DURATION: &str =
    r#"invalid duration, expected a number and a unit such as "30s", "500ms" or "1m 30s""#;

/// `deserialize_with` for `Option<Duration>` fields written as humantime strings.
fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(r#"a duration string such as "30s""#)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            humantime::parse_duration(v.trim()).map_err(|_| E::custom(INVALID_DURATION))
        }
    }

    deserializer.deserialize_str(DurationVisitor).map(Some)
}

// === impl deserialize_section ===

/// Deserializes one section (`server`, `backends.x`, …) whose key path is
/// `path`, reporting every shape error in it. `None` only if the section as a
/// whole could not be read (its errors are then recorded).
pub(super) fn deserialize_section<T: DeserializeOwned>(
    mut table: toml::Table,
    path: &str,
    diag: &mut Diagnostics,
) -> Option<T> {
    // Each round removes one key or array element, so this always ends; the
    // bound is a belt for the braces.
    let rounds = count_values(&table) + 1;
    for _ in 0..rounds {
        let err = match serde_path_to_error::deserialize::<_, T>(toml::Value::Table(table.clone()))
        {
            Ok(section) => return Some(section),
            Err(err) => err,
        };
        let segments: Vec<Step> = err.path().iter().map_while(Step::from_segment).collect();
        let depth = existing_depth(&table, &segments);
        let at = &segments[..depth];
        let found = lookup(&table, at).map(toml::Value::type_str);
        let message = describe(err.inner().message(), found);
        diag.poison(&join(path, at), message);
        if !drop_value(&mut table, at) {
            return None;
        }
    }
    None
}

#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

impl Step {
    fn from_segment(segment: &Segment) -> Option<Step> {
        match segment {
            Segment::Map { key } => Some(Step::Key(key.clone())),
            Segment::Seq { index } => Some(Step::Index(*index)),
            Segment::Enum { .. } | Segment::Unknown => None,
        }
    }
}

fn join(base: &str, steps: &[Step]) -> String {
    steps.iter().fold(base.to_owned(), |path, step| match step {
        Step::Key(key) => key_path(&path, key),
        Step::Index(i) => index_path(&path, *i),
    })
}

fn child<'a>(value: &'a toml::Value, step: &Step) -> Option<&'a toml::Value> {
    match (value, step) {
        (toml::Value::Table(t), Step::Key(k)) => t.get(k),
        (toml::Value::Array(a), Step::Index(i)) => a.get(*i),
        _ => None,
    }
}

fn lookup<'a>(table: &'a toml::Table, steps: &[Step]) -> Option<&'a toml::Value> {
    let (first, rest) = steps.split_first()?;
    let Step::Key(key) = first else { return None };
    rest.iter()
        .try_fold(table.get(key)?, |v, step| child(v, step))
}

/// How many leading steps name values that exist (a datetime, for instance,
/// is seen by serde as a table with a private key).
fn existing_depth(table: &toml::Table, steps: &[Step]) -> usize {
    (1..=steps.len())
        .rev()
        .find(|&n| lookup(table, &steps[..n]).is_some())
        .unwrap_or(0)
}

/// Removes the value at `steps` (an array element becomes `""`, keeping the
/// indices of its neighbours). False if there was nothing to remove.
fn drop_value(table: &mut toml::Table, steps: &[Step]) -> bool {
    let Some((last, parents)) = steps.split_last() else {
        return false;
    };
    let parent = match parents.split_first() {
        None => {
            return match last {
                Step::Key(k) => table.remove(k).is_some(),
                Step::Index(_) => false,
            }
        }
        Some((Step::Key(first), rest)) => {
            let mut node = table.get_mut(first);
            for step in rest {
                node = node.and_then(|v| match (v, step) {
                    (toml::Value::Table(t), Step::Key(k)) => t.get_mut(k),
                    (toml::Value::Array(a), Step::Index(i)) => a.get_mut(*i),
                    _ => None,
                });
            }
            node
        }
        Some((Step::Index(_), _)) => None,
    };
    match (parent, last) {
        (Some(toml::Value::Table(t)), Step::Key(k)) => t.remove(k).is_some(),
        (Some(toml::Value::Array(a)), Step::Index(i)) => match a.get_mut(*i) {
            Some(v) => {
                *v = toml::Value::String(String::new());
                true
            }
            None => false,
        },
        _ => false,
    }
}

fn count_values(table: &toml::Table) -> usize {
    fn count(v: &toml::Value) -> usize {
        1 + match v {
            toml::Value::Table(t) => t.values().map(count).sum(),
            toml::Value::Array(a) => a.iter().map(count).sum(),
            _ => 0,
        }
    }
    table.values().map(count).sum()
}

/// Rewrites a serde message in the file's vocabulary, without echoing the value
/// (serde's "invalid type: string \"…\"" would print it).
fn describe(message: &str, found: Option<&str>) -> String {
    if message.starts_with("unknown field") {
        return "unknown key".to_owned();
    }
    let expected = message.rsplit_once(", expected ").map(|(_, e)| friendly(e));
    match (message.split_once(':'), expected) {
        (Some(("invalid type", _)), Some(expected)) => match found {
            Some(found) => format!("expected {expected}, found {found}"),
            None => format!("expected {expected}"),
        },
        (Some(("invalid value" | "invalid length", _)), Some(expected)) => {
            format!("expected {expected}")
        }
        _ => message.to_owned(),
    }
}

fn friendly(expected: &str) -> String {
    match expected {
        "i64" | "u64" | "i32" | "u32" | "usize" => "an integer".to_owned(),
        "f64" | "f32" => "a number".to_owned(),
        "a sequence" => "an array".to_owned(),
        "a map" => "a table".to_owned(),
        e if e.starts_with("struct ") => "a table".to_owned(),
        e => e.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section<T: DeserializeOwned>(text: &str) -> (Option<T>, Vec<String>) {
        let table: toml::Table = text.parse().unwrap();
        let mut diag = Diagnostics::default();
        let out = deserialize_section::<T>(table, "s", &mut diag);
        (out, diag.into_parts().0)
    }

    #[test]
    fn every_shape_error_of_a_section_is_reported() {
        let (out, errors) = section::<RawServer>(
            r#"
            listn = "x"
            listen = 8080
            request_timeout = "soon"
            shutdown_grace = 30
            extra = { a = 1 }
            max_body_bytes = "big"
            "#,
        );
        assert!(out.is_some());
        assert_eq!(
            errors,
            [
                "s.extra: unknown key",
                "s.listen: expected a string, found integer",
                "s.listn: unknown key",
                "s.max_body_bytes: expected an integer, found string",
                &format!("s.request_timeout: {INVALID_DURATION}"),
                r#"s.shutdown_grace: expected a duration string such as "30s", found integer"#,
            ]
        );
    }

    #[test]
    fn durations_are_humantime() {
        let (out, errors) = section::<RawServer>(
            r#"request_timeout = "1m 30s"
               shutdown_grace = "500ms""#,
        );
        assert!(errors.is_empty(), "{errors:?}");
        let out = out.unwrap();
        assert_eq!(out.request_timeout, Some(Duration::from_secs(90)));
        assert_eq!(out.shutdown_grace, Some(Duration::from_millis(500)));
        assert_eq!(out.header_read_timeout, None);
    }

    #[test]
    fn route_entries_errors_keep_their_index() {
        let (out, errors) = section::<RawRoute>(
            r#"backends = ["a", 7, { backend = "b", wieght = 2 }, { backend = "c", weight = "x" }, "d"]"#,
        );
        assert_eq!(
            errors,
            [
                r#"s.backends[1]: expected a backend name or a table such as { backend = "name", weight = 1 }, found integer"#,
                "s.backends[2].wieght: unknown key",
                "s.backends[3].weight: expected an integer, found string",
            ]
        );
        let backends = out.unwrap().backends.unwrap();
        assert_eq!(backends.len(), 5);
        assert!(matches!(&backends[4], RawRouteBackend::Name(n) if n == "d"));
    }

    #[test]
    fn a_secret_in_the_wrong_type_is_not_echoed() {
        let (_, errors) = section::<RawServer>(r#"max_body_bytes = "hf_secret""#);
        assert_eq!(
            errors,
            ["s.max_body_bytes: expected an integer, found string"]
        );
    }

    #[test]
    fn datetime_values_are_reported_at_their_key() {
        let (_, errors) =
            section::<RawServer>("max_body_bytes = 1979-05-27T07:32:00Z\nlisten = 1979-05-27");
        assert_eq!(
            errors,
            ["s.max_body_bytes: expected an integer, found datetime"]
        );
    }
}
