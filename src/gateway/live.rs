//! The gateway a request runs on: one [`Gateway`] at a time, swapped whole
//! by a reload ([`crate::reload`]). Every request takes the current one when
//! it starts and keeps it to its end, so it runs entirely on the config it
//! started with; the old gateway goes when its last request does.
//!
//! A reload is asked through a [`ReloadHandle`] (the admin door's
//! `POST /v1/reload`), which the reloader answers with what it did.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot};

use super::Gateway;

/// The current gateway.
#[derive(Debug)]
pub struct Live {
    current: ArcSwap<Gateway>,
}

impl Live {
    pub fn new(gateway: Arc<Gateway>) -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwap::new(gateway),
        })
    }

    /// The gateway new requests run on.
    pub fn load(&self) -> Arc<Gateway> {
        self.current.load_full()
    }

    /// From now on, new requests run on `gateway`.
    pub fn swap(&self, gateway: Arc<Gateway>) {
        self.current.store(gateway);
    }
}

/// What a reload did, for whoever asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// Whether the new config now serves.
    pub applied: bool,
    /// The first 16 hex digits of the SHA-256 of the file read.
    pub hash: String,
    /// Why it was refused, one line per error, each with its key path.
    pub errors: Vec<String>,
    /// Changed settings that keep their running value until a restart.
    pub needs_restart: Vec<String>,
}

impl ReloadOutcome {
    /// `infergate_config_reloads_total`'s `result`.
    pub fn result(&self) -> &'static str {
        match self.applied {
            true => "applied",
            false => "rejected",
        }
    }
}

/// Asks the running reloader for a reload and waits for its outcome.
#[derive(Debug, Clone)]
pub struct ReloadHandle(mpsc::Sender<oneshot::Sender<ReloadOutcome>>);

impl ReloadHandle {
    /// A handle, and what the reloader receives the requests on.
    pub fn new() -> (Self, mpsc::Receiver<oneshot::Sender<ReloadOutcome>>) {
        let (tx, rx) = mpsc::channel(8);
        (Self(tx), rx)
    }

    /// Reloads now; `None` when no reloader runs any more.
    pub async fn reload(&self) -> Option<ReloadOutcome> {
        let (tx, rx) = oneshot::channel();
        self.0.send(tx).await.ok()?;
        rx.await.ok()
    }
}
