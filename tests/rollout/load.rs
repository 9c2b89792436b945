//! The load: requests at a steady rate through HAProxy, each checked
//! whole (a unary answer's text, a stream's every event up to the final
//! one), and the report of how they fared.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::haproxy::HaProxy;
use crate::watch::Timeline;
use crate::{LONG_STREAM_TOKENS, RATE, SHUTDOWN_DELAY, STREAM_TOKENS, UNARY_TOKENS};
use infergate::emulator::model::Generation;

/// Every request's outcome so far, shared by the load and the waits.
pub type Outcomes = Arc<Mutex<Vec<Outcome>>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Unary,
    Stream,
}

/// One request's fate.
#[derive(Debug)]
pub struct Outcome {
    id: u64,
    kind: Kind,
    route: &'static str,
    /// When it was sent, since the test began.
    at: Duration,
    took: Duration,
    /// The replica HAProxy says answered.
    served_by: String,
    /// Why it failed; `None` when it was answered whole and right.
    error: Option<String>,
    /// A stream whose 200 came but not its final event.
    cut: bool,
}

/// Requests at [`RATE`] a second through HAProxy until [`Load::finish`].
pub struct Load {
    outcomes: Outcomes,
    stop: Arc<AtomicBool>,
    late: Arc<AtomicBool>,
    ticker: tokio::task::JoinHandle<Vec<tokio::task::JoinHandle<()>>>,
}

impl Load {
    pub fn start(base: String, timeline: Timeline, outcomes: Outcomes) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let late = Arc::new(AtomicBool::new(false));
        // A client's own pool of keep-alive connections to HAProxy.
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let ticker = {
            let (outcomes, stop, late) =
                (Arc::clone(&outcomes), Arc::clone(&stop), Arc::clone(&late));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1) / RATE);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                let mut tasks = Vec::new();
                let mut id = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    tick.tick().await;
                    let Shape { kind, route, .. } = shape(id, late.load(Ordering::SeqCst));
                    let (client, base, outcomes) =
                        (client.clone(), base.clone(), Arc::clone(&outcomes));
                    let at = timeline.since();
                    tasks.push(tokio::spawn(async move {
                        let start = Instant::now();
                        let (served_by, result) = one(&client, &base, id, kind, route).await;
                        let (error, cut) = match result {
                            Ok(()) => (None, false),
                            Err(Failure::Failed(e)) => (Some(e), false),
                            Err(Failure::Cut(e)) => (Some(e), true),
                        };
                        outcomes.lock().unwrap().push(Outcome {
                            id,
                            kind,
                            route,
                            at,
                            took: start.elapsed(),
                            served_by,
                            error,
                            cut,
                        });
                    }));
                    id += 1;
                }
                tasks
            })
        };
        Self {
            outcomes,
            stop,
            late,
            ticker,
        }
    }

    pub fn done(&self) -> usize {
        self.outcomes.lock().unwrap().len()
    }

    pub fn include_late_route(&self) {
        self.late.store(true, Ordering::SeqCst);
    }

    /// Stops sending and waits for every request sent to end; the
    /// outcomes are then in order of sending.
    pub async fn finish(self) {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.ticker.await.unwrap() {
            task.await.unwrap();
        }
        self.outcomes.lock().unwrap().sort_by_key(|o| o.id);
    }
}

pub enum Failure {
    /// No answer, a wrong status, or a wrong body.
    Failed(String),
    /// A stream that began and did not end with its final event.
    Cut(String),
}

pub fn body(inputs: &str, max_new_tokens: u32) -> String {
    serde_json::json!({"inputs": inputs, "parameters": {"max_new_tokens": max_new_tokens}})
        .to_string()
}

/// Bytes of padding in a large prompt: past HAProxy's default buffer
/// (`tune.bufsize`, 16 kB), so that HAProxy cannot send the request again
/// once it has begun sending it; only the gateway can keep it safe.
const LARGE_PROMPT: usize = 20_000;

/// What request `id` is. Drawn from a generator seeded with the id: the
/// same in every run, and independent of HAProxy's round robin, which
/// alternates the replicas (a pattern of period two would send every
/// stream to one replica).
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub kind: Kind,
    pub route: &'static str,
    /// One stream in four lasts [`LONG_STREAM_TOKENS`], longer than the
    /// shutdown delay, so that some still run when a stopping replica
    /// closes its connections.
    pub long: bool,
    /// One other request in five carries [`LARGE_PROMPT`] bytes.
    pub large: bool,
}

/// Request `id`'s shape; one in five goes to route `late` once it exists.
pub fn shape(id: u64, late: bool) -> Shape {
    let mut rng = fastrand::Rng::with_seed(id);
    let kind = if rng.bool() {
        Kind::Stream
    } else {
        Kind::Unary
    };
    let long = kind == Kind::Stream && rng.u8(..4) == 0;
    let large = !long && rng.u8(..5) == 0;
    let route = match rng.u8(..10) {
        0 | 1 if late => "late",
        n if n % 2 == 0 => "sm",
        _ => "hf",
    };
    Shape {
        kind,
        route,
        long,
        large,
    }
}

/// How many tokens request `id` asks for, as a `kind` request.
pub fn tokens(id: u64, kind: Kind) -> u32 {
    match kind {
        Kind::Unary => UNARY_TOKENS,
        Kind::Stream if shape(id, false).long => LONG_STREAM_TOKENS,
        Kind::Stream => STREAM_TOKENS,
    }
}

/// Request `id`'s prompt: words of its own last, so that the model's
/// answer (the words reversed) is its own too.
pub fn inputs(id: u64) -> String {
    let words = format!("alpha beta gamma delta epsilon zeta eta w{id}");
    let shape = shape(id, false);
    if shape.large {
        format!("{} {words}", "pad ".repeat(LARGE_PROMPT / 4).trim_end())
    } else if shape.long {
        let more: Vec<String> = (0..LONG_STREAM_TOKENS).map(|i| format!("t{i}")).collect();
        format!("{} {words}", more.join(" "))
    } else {
        words
    }
}

/// A unary request's prompt and the text the model makes of it.
pub fn unary_case(id: u64) -> (String, String) {
    let inputs = inputs(id);
    let expected = Generation::run(&inputs, Some(UNARY_TOKENS)).text();
    (inputs, expected)
}

/// Sends request `id`; which replica answered, and whether all was right.
pub async fn one(
    client: &reqwest::Client,
    base: &str,
    id: u64,
    kind: Kind,
    route: &str,
) -> (String, Result<(), Failure>) {
    let path = match kind {
        Kind::Unary => format!("{base}/v1/predict/{route}"),
        Kind::Stream => format!("{base}/v1/predict/{route}/stream"),
    };
    let tokens = tokens(id, kind);
    let inputs = inputs(id);
    let res = client
        .post(path)
        .header("content-type", "application/json")
        .header("x-request-id", format!("rollout-{id}"))
        .body(body(&inputs, tokens))
        .send()
        .await;
    let res = match res {
        Ok(res) => res,
        Err(e) => {
            return (
                String::new(),
                Err(Failure::Failed(format!("no answer: {e:#}"))),
            )
        }
    };
    let served_by = res
        .headers()
        .get("x-served-by")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let gen = Generation::run(&inputs, Some(tokens));
    let result = match kind {
        Kind::Unary => check_unary(res, &gen.text()).await.map_err(Failure::Failed),
        Kind::Stream => check_stream(res, &gen).await,
    };
    (served_by, result)
}

pub async fn check_unary(res: reqwest::Response, expected: &str) -> Result<(), String> {
    let status = res.status();
    let text = res
        .text()
        .await
        .map_err(|e| format!("status {status}, body cut: {e:#}"))?;
    if status != 200 {
        return Err(format!("status {status}: {text}"));
    }
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("not JSON ({e}): {text}"))?;
    if v[0]["generated_text"] != expected {
        return Err(format!("wrong body, wanted {expected:?}: {text}"));
    }
    Ok(())
}

pub async fn check_stream(res: reqwest::Response, gen: &Generation) -> Result<(), Failure> {
    let status = res.status();
    if status != 200 {
        let text = res.text().await.unwrap_or_default();
        return Err(Failure::Failed(format!("status {status}: {text}")));
    }
    let text = res
        .text()
        .await
        .map_err(|e| Failure::Cut(format!("the body broke off: {e:#}")))?;
    let mut data = Vec::new();
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        if block.lines().any(|l| l.starts_with("event:")) {
            return Err(Failure::Cut(format!(
                "an event that is not data: {block:?}"
            )));
        }
        data.extend(block.lines().filter_map(|l| l.strip_prefix("data:")));
    }
    let last: Option<serde_json::Value> = data.last().and_then(|d| serde_json::from_str(d).ok());
    let finished = text.ends_with("\n\n")
        && data.len() == gen.tokens.len()
        && last.is_some_and(|v| v["generated_text"] == gen.text());
    if !finished {
        return Err(Failure::Cut(format!(
            "{} of {} events, without the final one: {text:?}",
            data.len(),
            gen.tokens.len()
        )));
    }
    Ok(())
}

// === the verdict ===

/// One SIGTERM: to which replica, when, and how the process ended.
#[derive(Debug)]
pub struct Stop {
    pub replica: &'static str,
    pub at: Duration,
    pub code: Option<i32>,
}

impl Stop {
    pub fn new(replica: &'static str, at: Duration, code: Option<i32>) -> Self {
        Self { replica, at, code }
    }
}

pub struct Report<'a> {
    outcomes: &'a [Outcome],
    retried: (usize, usize),
    stops: &'a [Stop],
    took: Duration,
}

impl<'a> Report<'a> {
    pub fn new(
        outcomes: &'a [Outcome],
        proxy: &HaProxy,
        stops: &'a [Stop],
        took: Duration,
    ) -> Self {
        Self {
            outcomes,
            retried: proxy.retried(),
            stops,
            took,
        }
    }

    /// How many streams the stopped replica was still sending when its
    /// delay ended and it closed its connections.
    pub fn through_drain(&self, stop: &Stop) -> usize {
        let drain = stop.at + SHUTDOWN_DELAY;
        self.outcomes
            .iter()
            .filter(|o| o.kind == Kind::Stream && o.served_by == stop.replica)
            .filter(|o| o.at < drain && o.at + o.took > drain)
            .count()
    }

    pub fn summary(&self) -> String {
        let count = |f: &dyn Fn(&Outcome) -> bool| self.outcomes.iter().filter(|o| f(o)).count();
        let streams = count(&|o| o.kind == Kind::Stream);
        let late = count(&|o| o.route == "late");
        let large = count(&|o| shape(o.id, false).large);
        let long = count(&|o| shape(o.id, false).long);
        let failed = count(&|o| o.error.is_some() && !o.cut);
        let cut = count(&|o| o.cut);
        let by: Vec<String> = ["r0", "r1"]
            .iter()
            .map(|r| {
                let served = count(&|o| o.served_by == *r);
                let streams = count(&|o| o.served_by == *r && o.kind == Kind::Stream);
                format!("{r} {served} ({streams} streams)")
            })
            .collect();
        let stops: Vec<String> = self
            .stops
            .iter()
            .map(|s| {
                let code = s.code.map_or("none".to_string(), |c| c.to_string());
                format!(
                    "{} exit {code}, {} streams through its drain",
                    s.replica,
                    self.through_drain(s)
                )
            })
            .collect();
        format!(
            "rollout: {} requests sent ({} unary, {streams} streams ({long} of \
             {LONG_STREAM_TOKENS} tokens), {large} with a \
             prompt over HAProxy's buffer, {late} on the reloaded route; \
             served by {}), {failed} failed, {cut} cut streams; haproxy retried {} ({} on the other \
             replica); stops: {}; {:.1} s",
            self.outcomes.len(),
            self.outcomes.len() - streams,
            by.join(", "),
            self.retried.0,
            self.retried.1,
            stops.join(", "),
            self.took.as_secs_f64()
        )
    }

    /// Requests that failed or were cut.
    pub fn lost(&self) -> usize {
        self.outcomes.iter().filter(|o| o.error.is_some()).count()
    }

    /// The first failures, one line each.
    pub fn failures(&self) -> Vec<String> {
        let failed: Vec<&Outcome> = self.outcomes.iter().filter(|o| o.error.is_some()).collect();
        let mut lines: Vec<String> = failed
            .iter()
            .take(40)
            .map(|o| {
                format!(
                    "{:7.3}s +{:4}ms #{} {:?} {} via {:?}: {}{}",
                    o.at.as_secs_f64(),
                    o.took.as_millis(),
                    o.id,
                    o.kind,
                    o.route,
                    o.served_by,
                    if o.cut { "CUT " } else { "" },
                    o.error.as_deref().unwrap_or_default()
                )
            })
            .collect();
        if failed.len() > lines.len() {
            lines.push(format!("… and {} more", failed.len() - lines.len()));
        }
        lines
    }
}
