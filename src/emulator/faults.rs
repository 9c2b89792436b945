//! Fault injection shared by both emulators.
//!
//! A [`FaultConfig`] says how an emulator should misbehave (latency, errors by
//! rate or for the next N requests, connection resets, a scale-to-zero cold
//! start, and stream faults); [`Faults`] holds the live config plus the state
//! that evolves as requests consume it (the `fail_next`/`reset_next` budgets and
//! the scale-to-zero replica state). Tests change it between requests with
//! [`Faults::set`]; out-of-process users `PUT /_emulator/faults` with the same
//! JSON. Each emulator decides *where* in its request pipeline faults apply
//! (always after authentication, before the model runs) and how an
//! [`InjectedError`] looks on its wire.

use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// How an emulator misbehaves. Every field defaults to "no fault".
///
/// JSON form (for `PUT /_emulator/faults`): durations are humantime strings
/// (`"50ms"`, `"1s"`) or integers in milliseconds; missing fields take their
/// defaults, unknown fields are rejected.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Added before every inference request is answered.
    #[serde(with = "duration_serde")]
    pub latency: Duration,
    /// Probability (0..=1) that a request fails with [`FaultConfig::error`].
    pub error_rate: f64,
    /// The next N requests fail with [`FaultConfig::error`] (deterministic; each
    /// failure consumes one).
    pub fail_next: u32,
    /// Which error an injected failure answers with.
    pub error: InjectedError,
    /// Probability (0..=1) that the connection is reset instead of answered.
    pub reset_rate: f64,
    /// The next N requests get a connection reset (deterministic).
    pub reset_next: u32,
    /// Scale-to-zero: when set, the endpoint starts (or goes back) to sleep and a
    /// replica takes this long to become ready after the first request.
    #[serde(with = "opt_duration_serde")]
    pub cold_start: Option<Duration>,
    /// SageMaker streams: re-slice the byte stream into PayloadParts of random
    /// sizes in `1..=n`, cutting SSE events and JSON lines at arbitrary
    /// offsets.
    pub stream_split: Option<usize>,
    /// SageMaker streams: the frame with this index (0-based) gets a corrupted
    /// message CRC.
    pub corrupt_crc_at: Option<usize>,
    /// Streams: after this many token events, send a mid-stream error instead of
    /// the rest (TGI: its error event, or on SageMaker the exception frame
    /// [`FaultConfig::stream_error`]; LMI: its `finish_reason: "error"` line).
    /// No effect when the generation has at most this many tokens.
    pub stream_error_after: Option<usize>,
    /// SageMaker TGI streams: which exception frame `stream_error_after` sends.
    pub stream_error: StreamError,
    /// Injected errors carry `Retry-After` with this many whole seconds.
    #[serde(with = "opt_duration_serde")]
    pub retry_after: Option<Duration>,
    /// Time per generated token (streams pace their events by it; non-streaming
    /// answers take `tokens × token_latency`; embeddings take none).
    #[serde(with = "duration_serde")]
    pub token_latency: Duration,
    /// Text generation (Hugging Face, streamed or not): a prompt
    /// containing this text gets an altered answer, its first generated
    /// token replaced by `altered` (a model that answers some inputs
    /// otherwise, for shadow tests).
    pub alter_inputs_containing: Option<String>,
    /// Every answer (a stream's too) of the Hugging Face emulator carries
    /// `Cache-Control` with this value: an endpoint that says whether its
    /// answers may be stored. The SageMaker emulator ignores it, as the
    /// SageMaker runtime passes no container's `Cache-Control` on.
    pub cache_control: Option<String>,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            latency: Duration::ZERO,
            error_rate: 0.0,
            fail_next: 0,
            error: InjectedError::ServiceUnavailable,
            reset_rate: 0.0,
            reset_next: 0,
            cold_start: None,
            stream_split: None,
            corrupt_crc_at: None,
            stream_error_after: None,
            stream_error: StreamError::ModelStreamError,
            token_latency: Duration::ZERO,
            retry_after: None,
            alter_inputs_containing: None,
            cache_control: None,
        }
    }
}

impl FaultConfig {
    /// Checks the values a JSON or CLI user can get wrong.
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("error_rate", self.error_rate),
            ("reset_rate", self.reset_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be between 0 and 1, got {rate}"));
            }
        }
        if self.stream_split == Some(0) {
            return Err("stream_split must be at least 1".to_owned());
        }
        Ok(())
    }
}

/// The error an injected failure answers with. Each emulator renders every
/// variant in its own wire shape:
///
/// | variant | SageMaker | Hugging Face (TGI) | Hugging Face (TEI) |
/// | --- | --- | --- | --- |
/// | `ValidationError` | 400 ValidationError | 422 `validation` | 422 `Validation` |
/// | `ModelError { original_status }` | 424 ModelError (OriginalStatusCode) | 424 `generation` | 424 `Backend` |
/// | `ModelNotReadyException` | 429 ModelNotReadyException | 503 | 503 `Unhealthy` |
/// | `InternalFailure` | 500 InternalFailure | 500 `incomplete_generation` | 500 `Backend` |
/// | `ServiceUnavailable` | 503 ServiceUnavailable | 503 | 503 `Unhealthy` |
/// | `InternalDependencyException` | 530 InternalDependencyException | 502 | 502 `Backend` |
/// | `ThrottlingException` | 400 ThrottlingException | 429 `overloaded` | 429 `Overloaded` |
/// | `Status(s)` | the closest type (400 Validation, 424 Model, 429 ModelNotReady, 500 InternalFailure, 503 ServiceUnavailable, 530 InternalDependency; other 4xx ValidationError, other 5xx InternalFailure, with status `s`) | `s` with TGI's body for it | `s` with TEI's body for it |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InjectedError {
    ValidationError,
    ModelError {
        original_status: u16,
    },
    ModelNotReadyException,
    InternalFailure,
    ServiceUnavailable,
    InternalDependencyException,
    ThrottlingException,
    /// An HTTP status (statuses below 400 or above 599 are answered as 500).
    Status(u16),
}

impl FromStr for InjectedError {
    type Err = String;

    /// Parses the CLI form: a SageMaker error type (`ValidationError`,
    /// `ModelError`, `ModelError:500`, `ModelNotReadyException`,
    /// `InternalFailure`, `ServiceUnavailable`, `InternalDependencyException`,
    /// `ThrottlingException`; case-insensitive, the `Exception` suffix optional)
    /// or an HTTP status such as `503`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Ok(status) = s.parse::<u16>() {
            return Ok(InjectedError::Status(status));
        }
        let (name, arg) = match s.split_once(':') {
            Some((name, arg)) => (name, Some(arg)),
            None => (s, None),
        };
        let lower = name.to_ascii_lowercase();
        let lower = lower.strip_suffix("exception").unwrap_or(&lower);
        let parsed = match lower {
            "validationerror" | "validation" => InjectedError::ValidationError,
            "modelerror" => {
                let original_status = match arg {
                    Some(a) => a
                        .parse::<u16>()
                        .map_err(|_| format!("bad original status in {s:?}"))?,
                    None => 400,
                };
                return Ok(InjectedError::ModelError { original_status });
            }
            "modelnotready" => InjectedError::ModelNotReadyException,
            "internalfailure" => InjectedError::InternalFailure,
            "serviceunavailable" => InjectedError::ServiceUnavailable,
            "internaldependency" => InjectedError::InternalDependencyException,
            "throttling" => InjectedError::ThrottlingException,
            _ => return Err(format!("unknown error kind {s:?}")),
        };
        if arg.is_some() {
            return Err(format!("{name} takes no argument"));
        }
        Ok(parsed)
    }
}

impl fmt::Display for InjectedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InjectedError::ModelError { original_status } => {
                write!(f, "ModelError:{original_status}")
            }
            InjectedError::Status(s) => write!(f, "{s}"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// Which exception frame a SageMaker stream ends with when
/// [`FaultConfig::stream_error_after`] fires.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamError {
    /// `ModelStreamError` with `ErrorCode` `StreamBroken`.
    #[default]
    ModelStreamError,
    /// `InternalStreamFailure`.
    InternalStreamFailure,
}

/// The scale-to-zero state of an endpoint, as seen from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleState {
    /// A replica is serving (also the state when `cold_start` is unset).
    Ready,
    /// No replica; the next request starts one.
    ScaledToZero,
    /// A replica is starting and becomes ready at this instant.
    Initializing { ready_at: Instant },
}

/// What the fault layer decided for one request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Draw {
    pub latency: Duration,
    pub outcome: Outcome,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Outcome {
    Proceed,
    Reset,
    Fail(InjectedError),
}

/// The live, runtime-mutable fault configuration of one emulator.
#[derive(Debug)]
pub struct Faults {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    config: FaultConfig,
    scale: ScaleState,
}

impl Faults {
    pub fn new(config: FaultConfig) -> Self {
        let scale = initial_scale(&config);
        Faults {
            state: Mutex::new(State { config, scale }),
        }
    }

    // A poisoned lock only means another thread panicked mid-update of plain
    // data; the data is still usable, and an emulator must not panic.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the whole config. Changing `cold_start` resets the replica
    /// state: `None` → ready, `Some` → scaled to zero.
    pub fn set(&self, config: FaultConfig) {
        let mut st = self.lock();
        if st.config.cold_start != config.cold_start {
            st.scale = initial_scale(&config);
        }
        st.config = config;
    }

    /// The current config, including what is left of `fail_next`/`reset_next`.
    pub fn get(&self) -> FaultConfig {
        self.lock().config.clone()
    }

    /// Edits the config in place (same `cold_start` rule as [`Faults::set`]).
    pub fn update(&self, f: impl FnOnce(&mut FaultConfig)) {
        let mut config = self.get();
        f(&mut config);
        self.set(config);
    }

    /// Makes the next `n` inference requests fail with `error`.
    pub fn fail_next(&self, n: u32, error: InjectedError) {
        let mut st = self.lock();
        st.config.fail_next = n;
        st.config.error = error;
    }

    /// Puts the endpoint back to sleep (only meaningful with `cold_start` set;
    /// without it the endpoint stays ready).
    pub fn scale_to_zero(&self) {
        let mut st = self.lock();
        if st.config.cold_start.is_some() {
            st.scale = ScaleState::ScaledToZero;
        }
    }

    pub fn scale_state(&self) -> ScaleState {
        self.lock().scale
    }

    /// Scale-to-zero gate: the first request on a sleeping endpoint starts a
    /// replica; returns `None` when a replica is ready, else when it will be.
    pub(crate) fn wake(&self) -> Option<Instant> {
        let mut st = self.lock();
        let now = Instant::now();
        match st.scale {
            ScaleState::Ready => None,
            ScaleState::ScaledToZero => {
                let delay = st.config.cold_start.unwrap_or_default();
                if delay.is_zero() {
                    st.scale = ScaleState::Ready;
                    return None;
                }
                // A configured delay too large for the clock means "never".
                let ready_at = now
                    .checked_add(delay)
                    .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400));
                st.scale = ScaleState::Initializing { ready_at };
                Some(ready_at)
            }
            ScaleState::Initializing { ready_at } if now >= ready_at => {
                st.scale = ScaleState::Ready;
                None
            }
            ScaleState::Initializing { ready_at } => Some(ready_at),
        }
    }

    /// Decides latency and fate of one request, consuming the deterministic
    /// budgets first so tests never depend on chance.
    pub(crate) fn draw(&self) -> Draw {
        let mut st = self.lock();
        let c = &mut st.config;
        let outcome = if c.reset_next > 0 {
            c.reset_next -= 1;
            Outcome::Reset
        } else if c.fail_next > 0 {
            c.fail_next -= 1;
            Outcome::Fail(c.error)
        } else if c.reset_rate > 0.0 && fastrand::f64() < c.reset_rate {
            Outcome::Reset
        } else if c.error_rate > 0.0 && fastrand::f64() < c.error_rate {
            Outcome::Fail(c.error)
        } else {
            Outcome::Proceed
        };
        Draw {
            latency: c.latency,
            outcome,
        }
    }
}

impl Default for Faults {
    fn default() -> Self {
        Faults::new(FaultConfig::default())
    }
}

fn initial_scale(config: &FaultConfig) -> ScaleState {
    match config.cold_start {
        Some(_) => ScaleState::ScaledToZero,
        None => ScaleState::Ready,
    }
}

/// Durations as humantime strings, read from a string or from milliseconds.
mod duration_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    pub(super) enum Repr {
        Millis(u64),
        Text(String),
    }

    impl Repr {
        pub(super) fn into_duration<E: serde::de::Error>(self) -> Result<Duration, E> {
            match self {
                Repr::Millis(ms) => Ok(Duration::from_millis(ms)),
                Repr::Text(s) => humantime::parse_duration(&s).map_err(E::custom),
            }
        }
    }

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Repr::deserialize(d)?.into_duration()
    }
}

mod opt_duration_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::duration_serde::Repr;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<Repr>::deserialize(d)?
            .map(Repr::into_duration)
            .transpose()
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn json_round_trip_with_humantime_and_millis() {
        let c: FaultConfig = serde_json::from_str(
            r#"{"latency":"50ms","token_latency":5,"cold_start":"2s","error":{"ModelError":{"original_status":400}},"fail_next":2}"#,
        )
        .unwrap();
        assert_eq!(c.latency, Duration::from_millis(50));
        assert_eq!(c.token_latency, Duration::from_millis(5));
        assert_eq!(c.cold_start, Some(Duration::from_secs(2)));
        assert_eq!(
            c.error,
            InjectedError::ModelError {
                original_status: 400
            }
        );
        let back: FaultConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert!(serde_json::from_str::<FaultConfig>(r#"{"latncy":"1s"}"#).is_err());
        assert!(serde_json::from_str::<FaultConfig>(r#"{"latency":"soon"}"#).is_err());
    }

    #[test]
    fn validate_rejects_bad_rates() {
        let c = FaultConfig {
            error_rate: 1.5,
            ..FaultConfig::default()
        };
        assert!(c.validate().is_err());
        let c = FaultConfig {
            reset_rate: f64::NAN,
            ..FaultConfig::default()
        };
        assert!(c.validate().is_err());
        assert!(FaultConfig::default().validate().is_ok());
    }

    #[test]
    fn parse_error_kinds() {
        assert_eq!(
            "503".parse::<InjectedError>().unwrap(),
            InjectedError::Status(503)
        );
        assert_eq!(
            "modelerror:500".parse::<InjectedError>().unwrap(),
            InjectedError::ModelError {
                original_status: 500
            }
        );
        assert_eq!(
            "Throttling".parse::<InjectedError>().unwrap(),
            InjectedError::ThrottlingException
        );
        assert_eq!(
            "ModelNotReadyException".parse::<InjectedError>().unwrap(),
            InjectedError::ModelNotReadyException
        );
        assert!("nope".parse::<InjectedError>().is_err());
        assert!("InternalFailure:3".parse::<InjectedError>().is_err());
        for e in [
            InjectedError::ModelError {
                original_status: 418,
            },
            InjectedError::Status(429),
            InjectedError::InternalDependencyException,
        ] {
            assert_eq!(e.to_string().parse::<InjectedError>().unwrap(), e);
        }
    }

    #[test]
    fn deterministic_budgets_are_consumed_in_order() {
        let f = Faults::default();
        f.update(|c| {
            c.reset_next = 1;
            c.fail_next = 2;
            c.error = InjectedError::InternalFailure;
        });
        assert_eq!(f.draw().outcome, Outcome::Reset);
        assert_eq!(
            f.draw().outcome,
            Outcome::Fail(InjectedError::InternalFailure)
        );
        assert_eq!(
            f.draw().outcome,
            Outcome::Fail(InjectedError::InternalFailure)
        );
        assert_eq!(f.draw().outcome, Outcome::Proceed);
        assert_eq!(f.get().fail_next, 0);
    }

    #[test]
    fn rates_of_one_always_fire() {
        let f = Faults::new(FaultConfig {
            error_rate: 1.0,
            ..FaultConfig::default()
        });
        for _ in 0..20 {
            assert!(matches!(f.draw().outcome, Outcome::Fail(_)));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn cold_start_wakes_after_delay() {
        let f = Faults::new(FaultConfig {
            cold_start: Some(Duration::from_secs(30)),
            ..FaultConfig::default()
        });
        assert_eq!(f.scale_state(), ScaleState::ScaledToZero);
        let ready_at = f.wake().unwrap();
        assert_eq!(f.wake(), Some(ready_at));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(f.wake(), None);
        assert_eq!(f.scale_state(), ScaleState::Ready);
        f.scale_to_zero();
        assert_eq!(f.scale_state(), ScaleState::ScaledToZero);
        // Turning cold start off wakes the endpoint for good.
        f.update(|c| c.cold_start = None);
        assert_eq!(f.wake(), None);
        f.scale_to_zero();
        assert_eq!(f.scale_state(), ScaleState::Ready);
    }
}
