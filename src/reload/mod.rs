//! Hot reload: the config file read again, validated, then swapped in whole
//! ([`Live`]), on SIGHUP, on a change of the file's content (looked at every
//! `server.watch_interval` while `server.watch_config` is on; reading the
//! path follows Kubernetes' `..data` symlink swap of a ConfigMap), or when
//! asked through the admin door (`POST /v1/reload`, what `infergate reload`
//! sends).
//!
//! A file with errors is refused whole: every error is logged with its key
//! path and the running config keeps serving. A valid one is built into a
//! new gateway that takes over the state of whatever did not change
//! ([`Gateway::rebuild`]); requests already running finish on the old one.
//! Settings read only at start (listen addresses, workers, connection
//! slots, the listener's TLS files, the pid file, span export) keep their
//! running value, and the reload says they need a restart.

mod pid;

pub use pid::{signal_reload, PidFile};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::config::Config;
use crate::gateway::{Gateway, Live, ReloadHandle, ReloadOutcome};

/// The first 16 hex digits of the SHA-256 of a config file's text: enough
/// to tell versions apart in `infergate_config_info`, short for a label.
pub fn config_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    hex::encode(&digest[..8])
}

/// How long a refused version waits before the watcher tries it again: a
/// file it names may not be there yet (Kubernetes updates a Secret volume
/// apart from the ConfigMap), and until it applies, the refusal is logged
/// and counted again, so the alert on it holds.
const RETRY_REFUSED: Duration = Duration::from_secs(30);

/// Reloads one gateway's config file.
#[derive(Debug)]
pub struct Reloader {
    path: PathBuf,
    /// `--listen`, which replaces `server.listen` in every version.
    listen: Option<SocketAddr>,
    live: Arc<Live>,
    /// Touched by the reload loop only ([`Reloader::start`]), which runs
    /// one reload at a time.
    watch: Mutex<Watch>,
}

/// What the watcher knows of the file.
#[derive(Debug, Default)]
struct Watch {
    /// The hash of the version serving.
    serving: String,
    /// The hash of the version last applied or refused, and when a refused
    /// one is tried again.
    tried: String,
    retry_at: Option<Instant>,
    /// A new version read once: applied when the next look reads it again,
    /// so that a file caught halfway through being written is not.
    pending: Option<String>,
    /// Why the file could not be read, once logged.
    unreadable: Option<String>,
}

impl Reloader {
    /// The reloader of `live`, whose gateway was built from `text` read at
    /// `path`.
    pub fn new(path: &Path, listen: Option<SocketAddr>, live: Arc<Live>, text: &str) -> Arc<Self> {
        let hash = config_hash(text);
        live.load().metrics.config_serving(None, &hash);
        Arc::new(Self {
            path: path.to_owned(),
            listen,
            live,
            watch: Mutex::new(Watch {
                serving: hash.clone(),
                tried: hash,
                ..Watch::default()
            }),
        })
    }

    /// Reads the file and applies it if it is valid.
    async fn reload(&self) -> ReloadOutcome {
        let path = self.path.clone();
        match blocking(move || Config::read_regular(&path)).await {
            Ok(text) => self.apply(text).await,
            Err(errors) => self.refused(String::new(), errors.0),
        }
    }

    /// Applies `text` if it is a valid config.
    async fn apply(&self, text: String) -> ReloadOutcome {
        // Off the worker's runtime: validation reads the files the config
        // names, any of which may be slow (a network mount).
        let (hash, parsed) = blocking(move || (config_hash(&text), Config::parse(&text))).await;
        let outcome = self.try_apply(parsed, hash).await;
        let mut watch = self.watch();
        watch.tried.clone_from(&outcome.hash);
        watch.pending = None;
        watch.retry_at = (!outcome.applied).then(|| Instant::now() + RETRY_REFUSED);
        outcome
    }

    async fn try_apply(
        &self,
        parsed: Result<Config, crate::config::ConfigErrors>,
        hash: String,
    ) -> ReloadOutcome {
        let mut config = match parsed {
            Ok(config) => config,
            Err(errors) => return self.refused(hash, errors.0),
        };
        for w in &config.warnings {
            tracing::warn!("{w}");
        }
        if let Some(addr) = self.listen {
            config.server.listen = addr;
        }
        let running = self.live.load();
        let needs_restart = keep_running(&running.config, &mut config);
        let gateway = match running.rebuild(config).await {
            Ok(gateway) => gateway,
            Err(e) => return self.refused(hash, vec![e.to_string()]),
        };
        let metrics = gateway.metrics.clone();
        self.live.swap(Arc::clone(&gateway));
        // After the swap, so that no scrape on the old gateway sets them again.
        forget_removed(&running, &gateway);
        metrics.config_reload("applied");
        let before = std::mem::replace(&mut self.watch().serving, hash.clone());
        metrics.config_serving(Some(&before), &hash);
        for key in &needs_restart {
            tracing::warn!(key = %key, "changed in the config file; needs a restart, the running value stays");
        }
        tracing::info!(hash = %hash, file = %self.path.display(), "config reloaded");
        ReloadOutcome {
            applied: true,
            hash,
            errors: Vec::new(),
            needs_restart,
        }
    }

    fn refused(&self, hash: String, errors: Vec<String>) -> ReloadOutcome {
        self.live.load().metrics.config_reload("rejected");
        tracing::error!(
            file = %self.path.display(),
            errors = errors.len(),
            "config reload refused; the running config keeps serving"
        );
        for e in &errors {
            tracing::error!("{e}");
        }
        ReloadOutcome {
            applied: false,
            hash,
            errors,
            needs_restart: Vec::new(),
        }
    }

    fn watch(&self) -> std::sync::MutexGuard<'_, Watch> {
        self.watch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The file's text, when the watcher should apply it now: a version
    /// read twice in a row, or a refused one due for another try. Read off
    /// the worker's runtime, a regular file of bounded size only.
    async fn due(&self) -> Option<String> {
        let path = self.path.clone();
        let read = blocking(move || {
            Config::read_regular(&path).map(|text| {
                let hash = config_hash(&text);
                (text, hash)
            })
        });
        let (text, hash) = match read.await {
            Ok(read) => read,
            Err(errors) => {
                let why = errors.0.join("; ");
                let mut watch = self.watch();
                if watch.unreadable.as_ref() != Some(&why) {
                    tracing::warn!(error = %why, "the running config keeps serving");
                    watch.unreadable = Some(why);
                }
                return None;
            }
        };
        let mut watch = self.watch();
        watch.unreadable = None;
        if hash == watch.tried {
            watch.pending = None;
            let retry = watch.retry_at.is_some_and(|at| Instant::now() >= at);
            return retry.then_some(text);
        }
        if watch.pending.as_ref() == Some(&hash) {
            return Some(text);
        }
        watch.pending = Some(hash);
        None
    }

    /// From now on, the gateway has a [`ReloadHandle`]; the future returned
    /// serves `hangup` (made as early as the process could, since SIGHUP's
    /// default action ends it), the watch and the requests, for as long as
    /// it is polled.
    pub fn start(self: &Arc<Self>, hangup: Hangup) -> impl std::future::Future<Output = ()> {
        let (handle, asks) = ReloadHandle::new();
        self.live.load().set_reload_handle(handle);
        Arc::clone(self).run(hangup, asks)
    }

    async fn run(
        self: Arc<Self>,
        mut hangup: Hangup,
        mut asks: mpsc::Receiver<oneshot::Sender<ReloadOutcome>>,
    ) {
        loop {
            let (watch, interval) = {
                let gateway = self.live.load();
                let server = &gateway.config.server;
                (server.watch_config, server.watch_interval)
            };
            tokio::select! {
                () = hangup.recv() => {
                    tracing::info!("SIGHUP: reloading the config");
                    self.reload().await;
                }
                Some(reply) = asks.recv() => {
                    tracing::info!("reload asked on the admin door");
                    let _ = reply.send(self.reload().await);
                }
                () = tokio::time::sleep(interval), if watch => {
                    if let Some(text) = self.due().await {
                        tracing::info!(file = %self.path.display(), "the config file changed: reloading");
                        self.apply(text).await;
                    }
                }
            }
        }
    }
}

/// `f` on a thread for blocking work, so that a slow file system stalls no
/// worker; a panic there is one again here.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Cancelled: the runtime is going away, and this task with it.
        Err(_) => std::future::pending().await,
    }
}

/// Keeps in `new` the running value of every setting read only at start,
/// and names those that differ.
fn keep_running(running: &Config, new: &mut Config) -> Vec<String> {
    fn keep<T: PartialEq + Clone>(key: &str, running: &T, new: &mut T, changed: &mut Vec<String>) {
        if running != new {
            changed.push(key.to_owned());
            new.clone_from(running);
        }
    }
    let mut changed = Vec::new();
    let (r, n) = (&running.server, &mut new.server);
    keep("server.listen", &r.listen, &mut n.listen, &mut changed);
    keep("server.workers", &r.workers, &mut n.workers, &mut changed);
    keep(
        "server.max_connections",
        &r.max_connections,
        &mut n.max_connections,
        &mut changed,
    );
    keep(
        "server.admin_listen",
        &r.admin_listen,
        &mut n.admin_listen,
        &mut changed,
    );
    keep("server.tls", &r.tls, &mut n.tls, &mut changed);
    keep(
        "server.pid_file",
        &r.pid_file,
        &mut n.pid_file,
        &mut changed,
    );
    keep(
        "telemetry",
        &running.telemetry,
        &mut new.telemetry,
        &mut changed,
    );
    changed
}

/// Drops the gauges of the backends `old` had and `new` has not.
fn forget_removed(old: &Gateway, new: &Gateway) {
    for b in &old.backends {
        if !new.backends.iter().any(|n| n.name == b.name) {
            new.metrics.forget_backend(&b.name);
        }
    }
}

/// SIGHUP, heard from the moment it is made, on Unix.
#[derive(Debug)]
pub struct Hangup {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Hangup {
    /// Needs a runtime.
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?,
        })
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if self.signal.recv().await.is_some() {
            return;
        }
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::BuildOptions;

    fn text(route: &str) -> String {
        format!(
            "[backends.b]\nkind = \"huggingface\"\nurl = \"http://127.0.0.1:9\"\n\
             [routes.{route}]\nbackends = [\"b\"]\n"
        )
    }

    /// A reloader of a gateway built from `text("first")`, in a file of its own.
    async fn reloader() -> (Arc<Reloader>, PathBuf) {
        let dir = std::env::temp_dir().join(format!("infergate-watch-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("infergate.toml");
        let start = text("first");
        std::fs::write(&path, &start).unwrap();
        let config = Config::parse(&start).unwrap();
        let gateway = Gateway::build(config, BuildOptions::default())
            .await
            .unwrap();
        let live = Live::new(gateway);
        (Reloader::new(&path, None, live, &start), path)
    }

    #[tokio::test]
    async fn a_new_version_is_applied_once_two_looks_read_it_alike() {
        let (reloader, path) = reloader().await;
        assert!(reloader.due().await.is_none(), "the version serving");
        std::fs::write(&path, text("second")).unwrap();
        assert!(
            reloader.due().await.is_none(),
            "read once: it may be half written"
        );
        let text = reloader.due().await.expect("read twice alike");
        assert!(reloader.apply(text.clone()).await.applied);
        assert!(reloader.live.load().routes.get("second").is_some());
        assert!(
            reloader.due().await.is_none(),
            "applied: nothing more to do"
        );
        // Unreadable for a while, then back as it was: nothing to apply.
        std::fs::remove_file(&path).unwrap();
        assert!(reloader.due().await.is_none());
        std::fs::write(&path, &text).unwrap();
        assert!(reloader.due().await.is_none() && reloader.due().await.is_none());
    }

    #[tokio::test]
    async fn a_fifo_or_a_huge_file_at_the_path_is_refused_without_blocking() {
        let (reloader, path) = reloader().await;
        std::fs::remove_file(&path).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        // Neither the watcher nor an explicit reload opens it.
        let look = tokio::time::timeout(Duration::from_secs(5), reloader.due());
        assert!(look.await.unwrap().is_none());
        let outcome = tokio::time::timeout(Duration::from_secs(5), reloader.reload());
        let outcome = outcome.await.unwrap();
        assert!(!outcome.applied);
        assert!(
            outcome.errors[0].ends_with("not a regular file"),
            "{:?}",
            outcome.errors
        );
        std::fs::remove_file(&path).unwrap();
        let huge = "#".repeat(usize::try_from(crate::config::MAX_CONFIG_BYTES).unwrap() + 1);
        std::fs::write(&path, huge).unwrap();
        let outcome = reloader.reload().await;
        assert!(
            outcome.errors[0].ends_with("larger than 4 MiB"),
            "{:?}",
            outcome.errors
        );
        assert!(
            reloader.live.load().routes.get("first").is_some(),
            "the old config serves"
        );
    }

    #[tokio::test]
    async fn a_refused_version_is_tried_again_after_a_while() {
        let (reloader, path) = reloader().await;
        let bad = format!("{}[routes.bad]\nbackends = [\"nope\"]\n", text("first"));
        std::fs::write(&path, &bad).unwrap();
        let outcome = reloader.apply(bad.clone()).await;
        assert!(!outcome.applied);
        assert_eq!(
            outcome.errors,
            [r#"routes.bad.backends[0]: unknown backend "nope""#]
        );
        assert!(reloader.due().await.is_none(), "not again at once");
        reloader.watch().retry_at = Some(Instant::now());
        assert_eq!(
            reloader.due().await.as_deref(),
            Some(bad.as_str()),
            "again, later"
        );
    }
}
