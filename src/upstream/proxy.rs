//! HTTP proxies from the environment, as curl reads them: `HTTPS_PROXY` for
//! `https` endpoints (a CONNECT tunnel, TLS end to end through it),
//! `HTTP_PROXY` for `http` endpoints (requests in absolute form),
//! `ALL_PROXY` for both, `NO_PROXY` for the hosts that bypass them; each
//! also in lower case. hyper-util's matcher reads them; this module names
//! a proxy without its credentials and refuses the kinds the connector
//! cannot use.

use std::fmt;

use http::{HeaderValue, Uri};
use hyper_util::client::proxy::matcher::{Intercept, Matcher};

/// The proxies the environment names.
pub(crate) struct Proxies {
    matcher: Matcher,
}

impl fmt::Debug for Proxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The matcher holds proxy credentials: never printed.
        f.write_str("Proxies")
    }
}

/// One proxy to go through.
#[derive(Clone)]
pub(crate) struct Proxy(Intercept);

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Proxy({})", self.address())
    }
}

impl Proxies {
    /// The proxies of this process's environment.
    pub(crate) fn from_env() -> Self {
        Self {
            matcher: Matcher::from_env(),
        }
    }

    /// No proxy at all.
    #[cfg(test)]
    pub(crate) fn none() -> Self {
        Self {
            matcher: Matcher::builder().build(),
        }
    }

    #[cfg(test)]
    pub(crate) fn with(all: &str, no: &str) -> Self {
        Self {
            matcher: Matcher::builder().all(all).no(no).build(),
        }
    }

    /// The proxy for connections to `dst`, if any.
    pub(crate) fn for_uri(&self, dst: &Uri) -> Option<Proxy> {
        self.matcher.intercept(dst).map(Proxy)
    }

    /// The proxy for `dst`, checked once at start: only `http://` proxies
    /// can be used (an `https://` or SOCKS proxy is refused with why).
    pub(crate) fn check(&self, dst: &Uri) -> Result<Option<Proxy>, String> {
        let Some(proxy) = self.for_uri(dst) else {
            return Ok(None);
        };
        match proxy.0.uri().scheme_str() {
            Some("http") => Ok(Some(proxy)),
            other => Err(format!(
                "the environment's proxy for it ({}://{}) is not an http:// proxy; infergate \
                 reaches proxies over plain HTTP, the CONNECT tunnel carrying TLS end to end",
                other.unwrap_or("?"),
                proxy.address()
            )),
        }
    }
}

impl Proxy {
    pub(crate) fn uri(&self) -> &Uri {
        self.0.uri()
    }

    /// `Basic …` from the proxy URL's user and password, marked sensitive.
    pub(crate) fn authorization(&self) -> Option<HeaderValue> {
        self.0.basic_auth().map(|v| {
            let mut v = v.clone();
            v.set_sensitive(true);
            v
        })
    }

    /// `host:port`, for messages: never the credentials.
    pub(crate) fn address(&self) -> String {
        super::connect::authority(self.0.uri())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http_proxy_is_used_with_its_credentials_and_named_without_them() {
        let proxies = Proxies::with("http://user:secret@127.0.0.1:3128", "");
        let dst: Uri = "https://runtime.sagemaker.us-east-1.amazonaws.com/x"
            .parse()
            .unwrap();
        let proxy = proxies.check(&dst).unwrap().unwrap();
        assert_eq!(proxy.address(), "127.0.0.1:3128");
        let auth = proxy.authorization().unwrap();
        assert!(auth.is_sensitive());
        assert_eq!(auth, "Basic dXNlcjpzZWNyZXQ=");
    }

    #[test]
    fn no_proxy_bypasses() {
        let proxies = Proxies::with("http://127.0.0.1:3128", "localhost,127.0.0.1");
        let dst: Uri = "https://localhost:8443/".parse().unwrap();
        assert!(proxies.for_uri(&dst).is_none());
        assert!(Proxies::none().for_uri(&dst).is_none());
    }

    #[test]
    fn an_https_or_socks_proxy_is_refused_without_its_credentials() {
        let dst: Uri = "https://example.com/".parse().unwrap();
        for url in ["https://u:secret@proxy:443", "socks5://u:secret@proxy:1080"] {
            let err = Proxies::with(url, "").check(&dst).unwrap_err();
            assert!(err.contains("not an http:// proxy"), "{err}");
            assert!(!err.contains("secret"), "{err}");
        }
    }
}
