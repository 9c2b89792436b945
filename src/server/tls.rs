//! HTTPS on the listener (`[server.tls]`): the rustls acceptor of the
//! current certificate, and the watch that re-reads the files.
//!
//! Every [`RELOAD_EVERY`] the watch reads the certificate, key and client
//! CA files and, when their bytes changed, builds a new server config from
//! them. New handshakes use it at once; connections already open keep the
//! session they made, so a rotation drops none. Reading the files' bytes
//! rather than watching for events works the same for a file replaced in
//! place, renamed over, or swapped through a symlink (as Kubernetes mounts
//! cert-manager's secrets). Files caught half-written (a key that does not
//! go with the certificate yet) are not used: the old config stays until
//! the files make a whole again, and the problem is logged once per
//! distinct state of the files.

use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio_rustls::TlsAcceptor;

use crate::config::tls::{alpn_h2_and_http1, ListenerPem, TlsFileError};
use crate::config::ListenerTls;

/// How often the files are read for a change.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// The listener's TLS: the acceptor of the files as last read whole.
pub struct Tls {
    files: ListenerTls,
    current: RwLock<TlsAcceptor>,
    /// The files as last read, used or not: what the next read is compared
    /// with, so a broken state is reported once.
    last_read: Mutex<Result<ListenerPem, TlsFileError>>,
}

/// What one look at the files found.
#[derive(Debug, PartialEq, Eq)]
pub enum Reload {
    Unchanged,
    Reloaded,
    /// The files changed but cannot be used as they are; the old
    /// certificate stays.
    Failed(TlsFileError),
}

impl Tls {
    /// The acceptor of `files` as they are now; an error names the key of
    /// the file at fault.
    pub fn load(files: &ListenerTls) -> io::Result<Arc<Self>> {
        let invalid = |e: TlsFileError| io::Error::new(io::ErrorKind::InvalidInput, e.to_string());
        let pem = ListenerPem::read(files).map_err(invalid)?;
        let config = pem.server_config(alpn_h2_and_http1()).map_err(invalid)?;
        Ok(Arc::new(Self {
            files: files.clone(),
            current: RwLock::new(TlsAcceptor::from(Arc::new(config))),
            last_read: Mutex::new(Ok(pem)),
        }))
    }

    /// The acceptor for a new connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads the files and takes them in if they changed and make a whole.
    pub fn reload(&self) -> Reload {
        let read = ListenerPem::read(&self.files);
        let mut last = self
            .last_read
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *last == read {
            return Reload::Unchanged;
        }
        *last = read.clone();
        drop(last);
        let built = read.and_then(|pem| pem.server_config(alpn_h2_and_http1()));
        match built {
            Ok(config) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) =
                    TlsAcceptor::from(Arc::new(config));
                Reload::Reloaded
            }
            Err(e) => Reload::Failed(e),
        }
    }

    /// Looks at the files every [`RELOAD_EVERY`] until `stop` resolves.
    pub async fn watch(self: Arc<Self>, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(RELOAD_EVERY) => {}
            }
            // Reading a few small files: off the worker's event loop all
            // the same, as a slow disk would stall its connections.
            let tls = Arc::clone(&self);
            match tokio::task::spawn_blocking(move || tls.reload()).await {
                Ok(Reload::Unchanged) => {}
                Ok(Reload::Reloaded) => {
                    tracing::info!(
                        cert_file = %self.files.cert_file.display(),
                        "the listener's TLS files changed: new connections get the new certificate"
                    );
                }
                Ok(Reload::Failed(e)) => tracing::warn!(
                    error = %e,
                    "the listener's TLS files changed but cannot be used yet; the previous certificate stays"
                ),
                Err(e) => tracing::warn!(error = %e, "reading the listener's TLS files failed"),
            }
        }
    }
}
