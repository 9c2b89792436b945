//! What the test sees happen: a timeline of events, HAProxy's view of the
//! replicas as it changes, and the bounded waits, which on failure show
//! all of it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::haproxy::{HaProxy, Stats};
use crate::load::{body, check_unary, unary_case, Load, Outcomes, Report};
use crate::replica::{config_hash, reloads, Replica};
use crate::{UNARY_TOKENS, WAIT};

/// Events with their time since the test began, for failure messages.
#[derive(Clone)]
pub struct Timeline {
    t0: Instant,
    events: Arc<Mutex<Vec<String>>>,
}

impl Timeline {
    pub fn new() -> Self {
        Self {
            t0: Instant::now(),
            events: Arc::default(),
        }
    }

    pub fn since(&self) -> Duration {
        self.t0.elapsed()
    }

    pub fn note(&self, event: &str) {
        let at = self.since().as_secs_f64();
        self.events
            .lock()
            .unwrap()
            .push(format!("{at:7.3}s {event}"));
    }

    pub fn text(&self) -> String {
        self.events.lock().unwrap().join("\n")
    }
}

/// Watches HAProxy's stats every 20 ms on a thread of its own, noting each
/// change of a server's status in the timeline.
pub struct Monitor {
    statuses: Arc<Mutex<HashMap<String, String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Monitor {
    pub fn start(stats: Stats, timeline: Timeline) -> Self {
        let statuses: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (statuses, stop) = (Arc::clone(&statuses), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    for (name, status) in stats.statuses() {
                        let mut known = statuses.lock().unwrap();
                        if known.get(&name) != Some(&status) {
                            let was = known.get(&name).cloned().unwrap_or_default();
                            timeline.note(&format!("haproxy: {name} {was:?} -> {status:?}"));
                            known.insert(name, status);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Self {
            statuses,
            stop,
            thread: Some(thread),
        }
    }

    pub fn status(&self, server: &str) -> Option<String> {
        self.statuses.lock().unwrap().get(server).cloned()
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the waits share, and everything a failure message shows.
pub struct World<'a> {
    pub proxy: &'a HaProxy,
    pub monitor: &'a Monitor,
    pub timeline: &'a Timeline,
    pub outcomes: Outcomes,
}

impl World<'_> {
    /// The timeline, HAProxy's notable log lines and the replicas' output.
    pub fn context(&self, replicas: &[Replica]) -> String {
        let outputs: Vec<String> = replicas.iter().map(Replica::output).collect();
        let (summary, failures) = {
            let outcomes = self.outcomes.lock().unwrap();
            let report = Report::new(&outcomes, self.proxy, &[], self.timeline.since());
            (report.summary(), report.failures().join("\n"))
        };
        format!(
            "so far: {summary}\n{failures}\n\ntimeline:\n{}\n\nhaproxy (state changes, and requests not a clean 200 at first try):\n{}\n\n\
             replicas (access lines of 200s left out):\n{}",
            self.timeline.text(),
            self.proxy.notable_log(),
            outputs.join("\n")
        )
    }

    /// Fails with `what` and the whole context.
    pub fn fail(&self, what: &str, replicas: &[Replica]) -> ! {
        panic!("{what}\n\n{}", self.context(replicas))
    }

    /// Waits until HAProxy's stats show `replica` as `status`.
    pub async fn wait_status(&self, replica: &Replica, status: &str, replicas: &[Replica]) {
        let deadline = Instant::now() + WAIT;
        while self.monitor.status(replica.name).as_deref() != Some(status) {
            if Instant::now() > deadline {
                self.fail(
                    &format!("haproxy never saw {} {status}", replica.name),
                    replicas,
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `n` more requests than now have their outcome.
    pub async fn wait_done(&self, load: &Load, n: usize, replicas: &[Replica]) {
        let target = load.done() + n;
        let deadline = Instant::now() + WAIT;
        while load.done() < target {
            if Instant::now() > deadline {
                self.fail(
                    &format!("{n} more requests were not done within {WAIT:?}"),
                    replicas,
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the replica has counted more reloads with one of
    /// `results` (`applied`, `rejected`, `unchanged`) than `above`: its
    /// metrics then.
    pub async fn wait_reload(
        &self,
        replica: &Replica,
        results: &[&str],
        above: f64,
        replicas: &[Replica],
    ) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let metrics = replica.metrics().await;
            let counted = reloads(&metrics, results);
            if counted > above {
                self.timeline.note(&format!(
                    "{}: reloads counted {results:?}: {counted}",
                    replica.name
                ));
                return metrics;
            }
            if Instant::now() > deadline {
                let lines: Vec<&str> = metrics
                    .lines()
                    .filter(|l| l.starts_with("infergate_config_"))
                    .collect();
                self.fail(
                    &format!(
                        "{}: no more than {above} reloads counted {results:?} within {WAIT:?}; \
                         its config metrics: {lines:?}",
                        replica.name
                    ),
                    replicas,
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the replica has applied a new config, and checks that
    /// it reports it under a new hash.
    pub async fn wait_reloaded(
        &self,
        replica: &Replica,
        before: &Option<String>,
        replicas: &[Replica],
    ) {
        let metrics = self.wait_reload(replica, &["applied"], 0.0, replicas).await;
        let after = config_hash(&metrics);
        if after.is_none() || after == *before {
            self.fail(
                &format!(
                    "{}: a reload applied, but infergate_config_info's hash is {after:?} \
                     (before: {before:?})",
                    replica.name
                ),
                replicas,
            );
        }
        self.timeline.note(&format!(
            "{}: config hash {before:?} -> {after:?}",
            replica.name
        ));
    }

    /// SIGHUP with the file as it is: the reload is counted (`unchanged`,
    /// or `applied` by a gateway that builds the same config again), and
    /// the same config serves on, under the same hash.
    pub async fn reload_unchanged(&self, replica: &Replica, replicas: &[Replica]) {
        let metrics = replica.metrics().await;
        let (seen, before) = (
            reloads(&metrics, &["applied", "unchanged"]),
            config_hash(&metrics),
        );
        replica.signal("HUP", self.timeline);
        let metrics = self
            .wait_reload(replica, &["applied", "unchanged"], seen, replicas)
            .await;
        let after = config_hash(&metrics);
        if after != before {
            self.fail(
                &format!(
                    "{}: a SIGHUP with the file unchanged changed the config's hash from \
                     {before:?} to {after:?}",
                    replica.name
                ),
                replicas,
            );
        }
    }

    /// The new route answers on the replica itself, past HAProxy.
    pub async fn check_late_route(&self, replica: &Replica, replicas: &[Replica]) {
        let (inputs, expected) = unary_case(u64::MAX);
        let res = replica
            .client
            .post(replica.url("/v1/predict/late"))
            .header("content-type", "application/json")
            .body(body(&inputs, UNARY_TOKENS))
            .send()
            .await;
        let checked = match res {
            Ok(res) => check_unary(res, &expected).await,
            Err(e) => Err(format!("{e:#}")),
        };
        if let Err(e) = checked {
            self.fail(
                &format!("{}: the reloaded route does not answer: {e}", replica.name),
                replicas,
            );
        }
    }
}
