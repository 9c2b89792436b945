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

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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

/// Reloads one gateway's config file.
#[derive(Debug)]
pub struct Reloader {
    path: PathBuf,
    /// `--listen`, which replaces `server.listen` in every version.
    listen: Option<SocketAddr>,
    live: Arc<Live>,
    /// What the watcher last read: the hash of the text (applied or not,
    /// so that a bad version is tried once), or why it could not read it
    /// (logged once).
    seen: Mutex<Seen>,
    /// One reload at a time.
    turn: tokio::sync::Mutex<()>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Text(String),
    Unreadable(String),
}

impl Reloader {
    /// The reloader of `live`, whose gateway was built from `text` read at
    /// `path`; the gateway learns how to ask it for a reload.
    pub fn new(path: &Path, listen: Option<SocketAddr>, live: Arc<Live>, text: &str) -> Arc<Self> {
        let hash = config_hash(text);
        live.load().metrics.config_serving(&hash);
        Arc::new(Self {
            path: path.to_owned(),
            listen,
            live,
            seen: Mutex::new(Seen::Text(hash)),
            turn: tokio::sync::Mutex::new(()),
        })
    }

    /// Reads the file and applies it if it is valid.
    pub async fn reload(&self) -> ReloadOutcome {
        match Config::read(&self.path) {
            Ok(text) => self.apply(&text).await,
            Err(errors) => self.refused(String::new(), errors.0),
        }
    }

    /// Applies `text` if it is a valid config.
    async fn apply(&self, text: &str) -> ReloadOutcome {
        let _turn = self.turn.lock().await;
        let hash = config_hash(text);
        self.saw(Seen::Text(hash.clone()));
        let mut config = match Config::parse(text) {
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
        forget_removed(&running, &gateway);
        gateway.metrics.config_reload("applied");
        gateway.metrics.config_serving(&hash);
        self.live.swap(gateway);
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

    /// Records what the watcher saw; whether it is new.
    fn saw(&self, seen: Seen) -> bool {
        let mut last = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let new = *last != seen;
        *last = seen;
        new
    }

    /// The file's text, when it is not what was last seen.
    fn changed(&self) -> Option<String> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => self.saw(Seen::Text(config_hash(&text))).then_some(text),
            Err(e) => {
                if self.saw(Seen::Unreadable(e.to_string())) {
                    tracing::warn!(file = %self.path.display(), error = %e, "cannot read the config file; the running config keeps serving");
                }
                None
            }
        }
    }

    /// Starts listening for SIGHUP now (its default action ends the
    /// process) and gives the gateway a [`ReloadHandle`]; the future
    /// returned then serves the signals, the watch and the requests, for
    /// as long as it is polled.
    pub fn start(self: &Arc<Self>) -> std::io::Result<impl std::future::Future<Output = ()>> {
        let hangup = Hangup::new()?;
        let (handle, asks) = ReloadHandle::new();
        self.live.load().set_reload_handle(handle);
        Ok(Arc::clone(self).run(hangup, asks))
    }

    async fn run(
        self: Arc<Self>,
        mut hangup: Hangup,
        mut asks: mpsc::Receiver<oneshot::Sender<ReloadOutcome>>,
    ) {
        loop {
            let server = self.live.load().config.server.clone();
            let watch = server.watch_config;
            tokio::select! {
                () = hangup.recv() => {
                    tracing::info!("SIGHUP: reloading the config");
                    self.reload().await;
                }
                Some(reply) = asks.recv() => {
                    tracing::info!("reload asked on the admin door");
                    let _ = reply.send(self.reload().await);
                }
                () = tokio::time::sleep(server.watch_interval), if watch => {
                    if let Some(text) = self.changed() {
                        tracing::info!(file = %self.path.display(), "the config file changed: reloading");
                        self.apply(&text).await;
                    }
                }
            }
        }
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

/// SIGHUP, on Unix.
struct Hangup {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Hangup {
    fn new() -> std::io::Result<Self> {
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

/// The process id in a file while the gateway runs (`server.pid_file`),
/// for `infergate reload`; removed when dropped.
#[derive(Debug)]
pub struct PidFile(PathBuf);

impl PidFile {
    pub fn write(path: &Path) -> std::io::Result<Self> {
        std::fs::write(path, format!("{}\n", std::process::id())).map_err(|e| {
            std::io::Error::new(e.kind(), format!("server.pid_file {}: {e}", path.display()))
        })?;
        Ok(Self(path.to_owned()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Sends SIGHUP to the process whose id `pid_file` holds; its id.
pub fn signal_reload(pid_file: &Path) -> Result<i32, String> {
    let text =
        std::fs::read_to_string(pid_file).map_err(|e| format!("{}: {e}", pid_file.display()))?;
    let pid = text
        .trim()
        .parse::<i32>()
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| format!("{}: not a process id", pid_file.display()))?;
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).map_err(|e| {
        format!(
            "process {} of {}: {e}",
            pid.as_raw_nonzero(),
            pid_file.display()
        )
    })?;
    Ok(pid.as_raw_nonzero().get())
}
