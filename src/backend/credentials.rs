//! AWS credentials for SageMaker backends: aws-config's default chain, an
//! optional assume-role on top, and a cache refreshed before expiry.
//!
//! aws-config's providers do not cache by themselves (the SDK's identity
//! cache does that for SDK clients), so the gateway keeps its own: the fast
//! path is a read lock on the current credentials; a refresh is single-flight
//! behind an async mutex, starts a margin before expiry (a quarter of the
//! lifetime, at most five minutes), and keeps serving the old credentials
//! while they are still valid should the refresh fail.

use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::sts::AssumeRoleProvider;
use aws_config::Region;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;

use crate::config::SageMakerConfig;

/// Longest lead time before expiry at which a refresh starts.
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Why no credentials could be had.
#[derive(Debug, thiserror::Error)]
#[error("no AWS credentials: {0}")]
pub struct CredentialsError(String);

#[derive(Clone)]
struct Cached {
    credentials: Credentials,
    /// When to fetch new ones; `None` for credentials that never expire.
    refresh_at: Option<SystemTime>,
}

/// A cached, refreshing source of AWS credentials for one backend.
pub struct CredentialSource {
    provider: SharedCredentialsProvider,
    cached: RwLock<Option<Cached>>,
    refresh: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialSource")
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
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
                    builder = builder.external_id(id.clone());
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
            cached: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    /// Current credentials, fetching or refreshing them when due.
    pub async fn get(&self) -> Result<Credentials, CredentialsError> {
        let now = SystemTime::now();
        if let Some(c) = self.fresh(now) {
            return Ok(c);
        }
        let _guard = self.refresh.lock().await;
        // Another task may have refreshed while we waited.
        if let Some(c) = self.fresh(SystemTime::now()) {
            return Ok(c);
        }
        match self.provider.provide_credentials().await {
            Ok(credentials) => {
                let fetched = SystemTime::now();
                let refresh_at = credentials.expiry().map(|exp| {
                    let lifetime = exp.duration_since(fetched).unwrap_or_default();
                    exp - (lifetime / 4).min(MAX_REFRESH_MARGIN)
                });
                if let Ok(mut slot) = self.cached.write() {
                    *slot = Some(Cached {
                        credentials: credentials.clone(),
                        refresh_at,
                    });
                }
                tracing::debug!(
                    expires_in_secs = credentials
                        .expiry()
                        .and_then(|e| e.duration_since(fetched).ok())
                        .map(|d| d.as_secs()),
                    "fetched AWS credentials"
                );
                Ok(credentials)
            }
            Err(err) => {
                let message = error_chain(&err);
                // Still-valid credentials beat a failed refresh.
                let still_valid = self.cached.read().ok().and_then(|slot| {
                    slot.as_ref()
                        .filter(|c| {
                            c.credentials
                                .expiry()
                                .is_none_or(|exp| exp > SystemTime::now())
                        })
                        .map(|c| c.credentials.clone())
                });
                match still_valid {
                    Some(c) => {
                        tracing::warn!(error = %message, "credentials refresh failed; using the current ones until they expire");
                        Ok(c)
                    }
                    None => Err(CredentialsError(message)),
                }
            }
        }
    }

    fn fresh(&self, now: SystemTime) -> Option<Credentials> {
        let slot = self.cached.read().ok()?;
        let cached = slot.as_ref()?;
        match cached.refresh_at {
            Some(at) if now >= at => None,
            _ => Some(cached.credentials.clone()),
        }
    }
}

/// The provider error with its sources, one line; aws-config errors carry no
/// secret values.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use aws_credential_types::provider::future;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[derive(Debug)]
    struct Counting {
        calls: Arc<AtomicU32>,
        lifetime: Duration,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
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

    #[tokio::test]
    async fn caches_until_the_refresh_margin() {
        let calls = Arc::new(AtomicU32::new(0));
        let src = CredentialSource::from_provider(SharedCredentialsProvider::new(Counting {
            calls: calls.clone(),
            lifetime: Duration::from_secs(3600),
        }));
        let a = src.get().await.unwrap();
        let b = src.get().await.unwrap();
        assert_eq!(a.access_key_id(), b.access_key_id());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn refreshes_credentials_that_are_due() {
        let calls = Arc::new(AtomicU32::new(0));
        // A lifetime of zero puts the refresh point in the past at once.
        let src = CredentialSource::from_provider(SharedCredentialsProvider::new(Counting {
            calls: calls.clone(),
            lifetime: Duration::ZERO,
        }));
        let a = src.get().await.unwrap();
        let b = src.get().await.unwrap();
        assert_ne!(a.access_key_id(), b.access_key_id());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn no_credentials_is_an_error_without_secrets() {
        #[derive(Debug)]
        struct Failing;
        impl ProvideCredentials for Failing {
            fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
            where
                Self: 'a,
            {
                future::ProvideCredentials::ready(Err(
                    aws_credential_types::provider::error::CredentialsError::not_loaded(
                        "nothing in the chain",
                    ),
                ))
            }
        }
        let src = CredentialSource::from_provider(SharedCredentialsProvider::new(Failing));
        let err = src.get().await.unwrap_err();
        assert!(err.to_string().starts_with("no AWS credentials"));
    }
}
