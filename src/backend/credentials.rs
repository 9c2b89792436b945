//! AWS credentials for SageMaker backends: aws-config's default chain, an
//! optional assume-role on top, and a cache refreshed before expiry.
//!
//! aws-config's providers do not cache by themselves (the SDK's identity
//! cache does that for SDK clients), so the gateway keeps its own:
//!
//! - the fast path is a read lock on the current credentials;
//! - a refresh starts a margin before expiry (a quarter of the lifetime, at
//!   most five minutes) in the background, while requests go on with the
//!   credentials they have; only when there are none, or they have expired,
//!   does a request wait for the provider (one fetch at a time);
//! - a failed refresh is retried with a doubling back-off (1 s to 60 s), not
//!   on every request, and the current credentials stay in use until they
//!   expire.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::sts::AssumeRoleProvider;
use aws_config::Region;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;

use crate::config::SageMakerConfig;

/// Longest lead time before expiry at which a refresh starts.
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Longest time before expiry at which credentials are no longer used, so a
/// signature never carries credentials that expire in flight.
const MAX_EXPIRY_MARGIN: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Why no credentials could be had. The message is the provider's error
/// chain: for the gateway's log, not for clients.
#[derive(Debug, thiserror::Error)]
#[error("no AWS credentials: {0}")]
pub struct CredentialsError(String);

#[derive(Clone)]
struct Cached {
    credentials: Credentials,
    /// When to fetch new ones; `None` for credentials that never expire.
    refresh_at: Option<SystemTime>,
    /// Past this, the credentials are not used any more.
    usable_until: Option<SystemTime>,
}

#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
    next_try: Option<SystemTime>,
    last_error: String,
}

/// A cached, refreshing source of AWS credentials for one backend.
pub struct CredentialSource {
    provider: SharedCredentialsProvider,
    /// Counts fetches in the metrics, under this backend's name.
    observer: Option<(crate::metrics::Metrics, String)>,
    cached: RwLock<Option<Cached>>,
    /// Held while a request waits for credentials it does not have.
    fetch: tokio::sync::Mutex<()>,
    refreshing: AtomicBool,
    backoff: Mutex<Backoff>,
}

impl std::fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialSource")
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

enum Current {
    Fresh(Credentials),
    /// Still usable, but a refresh is due.
    Due(Credentials),
    Missing,
}

impl CredentialSource {
    /// The default chain (environment, profile incl. SSO, web identity,
    /// container endpoint, IMDS) for the backend's region and profile, with
    /// `role_arn` assumed on top when set.
    pub async fn from_config(cfg: &SageMakerConfig) -> Self {
        let region = Region::new(cfg.region.clone());
        let mut chain = DefaultCredentialsChain::builder().region(region.clone());
        if let Some(profile) = &cfg.profile {
            chain = chain.profile_name(profile);
        }
        let chain = chain.build().await;
        let provider = match &cfg.role_arn {
            None => SharedCredentialsProvider::new(chain),
            Some(role_arn) => {
                let mut builder = AssumeRoleProvider::builder(role_arn.clone())
                    .region(region)
                    .session_name(
                        cfg.role_session_name
                            .clone()
                            .unwrap_or_else(|| "infergate".to_string()),
                    );
                if let Some(id) = &cfg.external_id {
                    builder = builder.external_id(id.expose());
                }
                SharedCredentialsProvider::new(builder.build_from_provider(chain).await)
            }
        };
        Self::from_provider(provider)
    }

    /// Wraps any provider (static credentials for the demo, tests).
    pub fn from_provider(provider: SharedCredentialsProvider) -> Self {
        Self {
            provider,
            observer: None,
            cached: RwLock::new(None),
            fetch: tokio::sync::Mutex::new(()),
            refreshing: AtomicBool::new(false),
            backoff: Mutex::new(Backoff::default()),
        }
    }

    /// Counts this source's fetches in `metrics` as `backend`'s.
    pub fn observed(mut self, metrics: crate::metrics::Metrics, backend: &str) -> Self {
        self.observer = Some((metrics, backend.to_string()));
        self
    }

    fn observe(&self, ok: bool) {
        if let Some((metrics, backend)) = &self.observer {
            metrics.credentials_refresh(backend, ok);
        }
    }

    /// Current credentials; waits for the provider only when there are none
    /// that can be used.
    pub async fn get(self: &Arc<Self>) -> Result<Credentials, CredentialsError> {
        match self.current(SystemTime::now()) {
            Current::Fresh(c) => Ok(c),
            Current::Due(c) => {
                self.refresh_in_background();
                Ok(c)
            }
            Current::Missing => self.fetch_now().await,
        }
    }

    fn current(&self, now: SystemTime) -> Current {
        let Ok(slot) = self.cached.read() else {
            return Current::Missing;
        };
        let Some(c) = slot.as_ref() else {
            return Current::Missing;
        };
        if c.usable_until.is_some_and(|until| now >= until) {
            return Current::Missing;
        }
        match c.refresh_at {
            Some(at) if now >= at => Current::Due(c.credentials.clone()),
            _ => Current::Fresh(c.credentials.clone()),
        }
    }

    /// Starts one background refresh, unless one runs or the back-off after
    /// a failure has not passed.
    fn refresh_in_background(self: &Arc<Self>) {
        let now = SystemTime::now();
        let waiting = self
            .backoff
            .lock()
            .map(|b| b.next_try.is_some_and(|t| now < t))
            .unwrap_or(false);
        if waiting || self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let _ = this.fetch_and_store().await;
            this.refreshing.store(false, Ordering::Release);
        });
    }

    /// Waits for credentials: one fetch at a time; a request that waited
    /// behind another's fetch uses its result.
    /// While the back-off after a failure runs, requests fail at once with
    /// that failure instead of each asking the provider again.
    async fn fetch_now(&self) -> Result<Credentials, CredentialsError> {
        let _guard = self.fetch.lock().await;
        let now = SystemTime::now();
        if let Current::Fresh(c) | Current::Due(c) = self.current(now) {
            return Ok(c);
        }
        if let Ok(b) = self.backoff.lock() {
            if b.next_try.is_some_and(|t| now < t) {
                return Err(CredentialsError(b.last_error.clone()));
            }
        }
        self.fetch_and_store().await
    }

    async fn fetch_and_store(&self) -> Result<Credentials, CredentialsError> {
        let result = self.provider.provide_credentials().await;
        self.observe(result.is_ok());
        match result {
            Ok(credentials) => {
                let fetched = SystemTime::now();
                let lifetime = credentials
                    .expiry()
                    .map(|exp| exp.duration_since(fetched).unwrap_or_default());
                let cached = Cached {
                    refresh_at: credentials
                        .expiry()
                        .zip(lifetime)
                        .map(|(exp, life)| exp - (life / 4).min(MAX_REFRESH_MARGIN)),
                    usable_until: credentials
                        .expiry()
                        .zip(lifetime)
                        .map(|(exp, life)| exp - (life / 8).min(MAX_EXPIRY_MARGIN)),
                    credentials: credentials.clone(),
                };
                if let Ok(mut slot) = self.cached.write() {
                    *slot = Some(cached);
                }
                if let Ok(mut b) = self.backoff.lock() {
                    *b = Backoff::default();
                }
                tracing::debug!(
                    expires_in_secs = lifetime.map(|d| d.as_secs()),
                    "fetched AWS credentials"
                );
                Ok(credentials)
            }
            Err(err) => {
                // aws-config errors carry no secret values.
                let message = super::cause_chain(&err);
                if let Ok(mut b) = self.backoff.lock() {
                    let wait = FIRST_BACKOFF
                        .saturating_mul(1 << b.failures.min(6))
                        .min(MAX_BACKOFF);
                    b.failures = b.failures.saturating_add(1);
                    b.next_try = Some(SystemTime::now() + wait);
                    b.last_error.clone_from(&message);
                }
                tracing::warn!(error = %message, "could not fetch AWS credentials");
                Err(CredentialsError(message))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::provider::future;
    use std::sync::atomic::AtomicU32;

    /// Hands out credentials with the given lifetime; fails while `fail` is set.
    #[derive(Debug)]
    struct Counting {
        calls: Arc<AtomicU32>,
        lifetime: Duration,
        fail: Arc<AtomicBool>,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail.load(Ordering::SeqCst) {
                return future::ProvideCredentials::ready(Err(
                    aws_credential_types::provider::error::CredentialsError::not_loaded(
                        "nothing in the chain",
                    ),
                ));
            }
            let creds = Credentials::new(
                format!("AKID{n}"),
                "secret",
                None,
                Some(SystemTime::now() + self.lifetime),
                "counting",
            );
            future::ProvideCredentials::ready(Ok(creds))
        }
    }

    fn source(lifetime: Duration) -> (Arc<CredentialSource>, Arc<AtomicU32>, Arc<AtomicBool>) {
        let calls = Arc::new(AtomicU32::new(0));
        let fail = Arc::new(AtomicBool::new(false));
        let src = Arc::new(CredentialSource::from_provider(
            SharedCredentialsProvider::new(Counting {
                calls: calls.clone(),
                lifetime,
                fail: fail.clone(),
            }),
        ));
        (src, calls, fail)
    }

    #[tokio::test]
    async fn caches_until_the_refresh_margin() {
        let (src, calls, _) = source(Duration::from_secs(3600));
        let a = src.get().await.unwrap();
        let b = src.get().await.unwrap();
        assert_eq!(a.access_key_id(), b.access_key_id());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(matches!(src.current(SystemTime::now()), Current::Fresh(_)));
        // 56 minutes on, the refresh is due (at most five minutes before
        // expiry) but the credentials are still usable.
        let later = SystemTime::now() + Duration::from_secs(56 * 60);
        assert!(matches!(src.current(later), Current::Due(_)));
        // Within the last minutes, they are not used any more.
        let last = SystemTime::now() + Duration::from_secs(3600 - 5);
        assert!(matches!(src.current(last), Current::Missing));
    }

    #[tokio::test]
    async fn expired_credentials_are_fetched_again() {
        // A lifetime of zero: expired as soon as fetched.
        let (src, calls, _) = source(Duration::ZERO);
        let a = src.get().await.unwrap();
        let b = src.get().await.unwrap();
        assert_ne!(a.access_key_id(), b.access_key_id());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_due_refresh_runs_in_the_background() {
        let (src, calls, _) = source(Duration::from_secs(3600));
        let first = src.get().await.unwrap();
        // Make the cached credentials due for refresh, still usable.
        if let Ok(mut slot) = src.cached.write() {
            slot.as_mut().unwrap().refresh_at = Some(SystemTime::now());
        }
        let served = src.get().await.unwrap();
        assert_eq!(served.access_key_id(), first.access_key_id(), "no waiting");
        // The background refresh lands.
        for _ in 0..200 {
            if calls.load(Ordering::SeqCst) == 2 && !src.refreshing.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(src.get().await.unwrap().access_key_id(), "AKID1");
    }

    #[tokio::test]
    async fn a_failed_refresh_backs_off_and_keeps_the_current_credentials() {
        let (src, calls, fail) = source(Duration::from_secs(3600));
        src.get().await.unwrap();
        fail.store(true, Ordering::SeqCst);
        if let Ok(mut slot) = src.cached.write() {
            slot.as_mut().unwrap().refresh_at = Some(SystemTime::now());
        }
        for _ in 0..50 {
            assert_eq!(src.get().await.unwrap().access_key_id(), "AKID0");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // One failed refresh, then the back-off holds: not one per request.
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn no_credentials_is_an_error_and_the_provider_is_not_hammered() {
        let (src, calls, fail) = source(Duration::from_secs(60));
        fail.store(true, Ordering::SeqCst);
        for _ in 0..20 {
            let err = src.get().await.unwrap_err();
            assert!(err.to_string().starts_with("no AWS credentials: "), "{err}");
            assert!(err.to_string().contains("nothing in the chain"), "{err}");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the back-off holds");
    }
}
