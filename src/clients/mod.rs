//! Who is calling: the configured clients, found by their API key.
//!
//! A request names its client with `Authorization: Bearer <key>` (what the
//! openai and huggingface_hub clients send) or `x-api-key: <key>`. The key
//! is hashed (SHA-256) and the hash looked up: keys are never compared byte
//! by byte, so how long an answer takes says nothing about how much of a
//! key was right, and the gateway holds no key in clear. A client's key is
//! never sent upstream: the backends' requests are built from scratch.
//!
//! Doors ask [`Clients::identify`] before they look up a route, so a caller
//! without a valid key learns no route names, then [`Client::may_use`] once
//! the route is known.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use http::{header, HeaderMap, HeaderName, HeaderValue};

use crate::config::{key_hash, route_matches, AuthMode, ClientAwsKey, ClientConfig, KeyHash};
use crate::metrics::ClientSeries;
use crate::name_hash::{DigestMap, NameMap};

/// The header a client may send its key in instead of `Authorization`.
pub const API_KEY_HEADER: HeaderName = HeaderName::from_static("x-api-key");

/// What a 401 tells the client about how to authenticate (RFC 6750).
pub const WWW_AUTHENTICATE: HeaderValue = HeaderValue::from_static(r#"Bearer realm="infergate""#);

/// One configured client.
#[derive(Debug)]
pub struct Client {
    /// The client's config name: what logs and metrics show, never its key.
    pub name: Arc<str>,
    /// Route names and patterns it may call; `None`: every route.
    routes: Option<Vec<String>>,
    /// Whether its key also reads the operator paths on the main listener.
    pub admin: bool,
    /// Its requests' counters on each route it may use, by route name: set
    /// once the gateway's metrics know the routes.
    series: OnceLock<NameMap<ClientSeries>>,
}

impl Client {
    /// Whether the client may call route `route`.
    pub fn may_use(&self, route: &str) -> bool {
        match &self.routes {
            None => true,
            Some(patterns) => patterns.iter().any(|p| route_matches(p, route)),
        }
    }

    /// Its counters on `route`, if they were set.
    pub fn series(&self, route: &str) -> Option<&ClientSeries> {
        self.series.get()?.get(route)
    }

    /// Sets its counters on each route it may use, once.
    pub fn set_series(&self, series: NameMap<ClientSeries>) {
        let _ = self.series.set(series);
    }
}

/// Who a request says it is.
#[derive(Debug, Clone)]
pub enum Identity {
    /// Authentication is off (`server.auth = "none"`, or no client).
    Anonymous,
    /// A configured client's key.
    Client(Arc<Client>),
    /// No key, or one no client has (a revoked key among them).
    Unknown,
}

/// Every configured client, by the hash of each of its keys.
#[derive(Debug, Default)]
pub struct Clients {
    required: bool,
    by_key: DigestMap<KeyHash, Arc<Client>>,
    by_access_key: HashMap<String, (Arc<Client>, ClientAwsKey)>,
    all: Vec<Arc<Client>>,
}

impl Clients {
    /// The clients of the config and whether keys are required.
    pub fn new(auth: AuthMode, clients: &[ClientConfig]) -> Self {
        let mut by_key = HashMap::default();
        let mut by_access_key = HashMap::new();
        let mut all = Vec::with_capacity(clients.len());
        for c in clients {
            let client = Arc::new(Client {
                name: Arc::from(c.name.as_str()),
                routes: c.routes.clone(),
                admin: c.admin,
                series: OnceLock::new(),
            });
            for key in &c.keys {
                by_key.insert(*key, Arc::clone(&client));
            }
            if let Some(aws) = &c.aws {
                let signer = (Arc::clone(&client), aws.clone());
                by_access_key.insert(aws.access_key_id.clone(), signer);
            }
            all.push(client);
        }
        Self {
            required: auth == AuthMode::Required,
            by_key,
            by_access_key,
            all,
        }
    }

    /// The client an AWS access key id belongs to, with the key (its
    /// secret, and its session token if it is temporary) that checks its
    /// SigV4 signatures.
    pub fn by_access_key(&self, access_key_id: &str) -> Option<(&Arc<Client>, &ClientAwsKey)> {
        let (client, key) = self.by_access_key.get(access_key_id)?;
        Some((client, key))
    }

    /// Whether requests must carry a client's key.
    pub fn required(&self) -> bool {
        self.required
    }

    /// Every configured client, by name.
    pub fn all(&self) -> &[Arc<Client>] {
        &self.all
    }

    /// Who the request's headers say is calling.
    pub fn identify(&self, headers: &HeaderMap) -> Identity {
        if !self.required {
            return Identity::Anonymous;
        }
        match presented_key(headers).and_then(|key| self.by_key.get(&key_hash(key))) {
            Some(client) => Identity::Client(Arc::clone(client)),
            None => Identity::Unknown,
        }
    }
}

/// The key a request presents: `Authorization: Bearer <key>` (the scheme
/// in any case, RFC 7235), else `x-api-key`.
fn presented_key(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let v = auth.as_bytes();
        let (scheme, rest) = v.split_at(v.len().min(7));
        if scheme.eq_ignore_ascii_case(b"bearer ") {
            let key = rest.trim_ascii();
            return (!key.is_empty()).then_some(key);
        }
    }
    headers
        .get(API_KEY_HEADER)
        .map(|v| v.as_bytes().trim_ascii())
        .filter(|k| !k.is_empty())
}

/// A client of these keys and route patterns, with no limit.
#[cfg(test)]
fn configured(name: &str, keys: &[&[u8]], routes: Option<&[&str]>) -> ClientConfig {
    ClientConfig {
        name: name.into(),
        keys: keys.iter().map(|k| key_hash(k)).collect(),
        routes: routes.map(|r| r.iter().map(|p| (*p).to_owned()).collect()),
        rate_limit: None,
        max_in_flight: None,
        admin: false,
        aws: None,
        tokens_per_minute: None,
        route_limits: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients() -> Clients {
        let web = configured("web", &[b"old-key", b"new-key"], Some(&["flan", "llama-*"]));
        let batch = configured("batch", &[b"batch-key"], None);
        Clients::new(AuthMode::Required, &[web, batch])
    }

    fn with(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    fn name(id: Identity) -> Option<String> {
        match id {
            Identity::Client(c) => Some(c.name.to_string()),
            _ => None,
        }
    }

    #[test]
    fn a_key_names_its_client_in_either_header_and_every_rotated_key_works() {
        let c = clients();
        assert_eq!(
            name(c.identify(&with("authorization", "Bearer old-key"))).as_deref(),
            Some("web")
        );
        assert_eq!(
            name(c.identify(&with("authorization", "bearer  new-key "))).as_deref(),
            Some("web")
        );
        assert_eq!(
            name(c.identify(&with("x-api-key", "batch-key"))).as_deref(),
            Some("batch")
        );
        for unknown in [
            with("authorization", "Bearer wrong"),
            with("authorization", "Basic b2xkLWtleQ=="),
            with("authorization", "Bearer "),
            with("x-api-key", "old-ke"),
            HeaderMap::new(),
        ] {
            assert!(
                matches!(c.identify(&unknown), Identity::Unknown),
                "{unknown:?}"
            );
        }
    }

    #[test]
    fn without_required_auth_everyone_is_anonymous() {
        let c = Clients::new(AuthMode::None, &[]);
        assert!(matches!(c.identify(&HeaderMap::new()), Identity::Anonymous));
        assert!(!c.required());
    }

    #[test]
    fn a_client_may_use_the_routes_its_patterns_match() {
        let c = clients();
        let Identity::Client(web) = c.identify(&with("x-api-key", "new-key")) else {
            panic!("no client");
        };
        assert!(web.may_use("flan") && web.may_use("llama-3") && web.may_use("llama-"));
        assert!(!web.may_use("flan-large") && !web.may_use("llama") && !web.may_use("sm"));
        let Identity::Client(batch) = c.identify(&with("x-api-key", "batch-key")) else {
            panic!("no client");
        };
        assert!(batch.may_use("anything"));
    }
}

/// Keys are looked up by their SHA-256, so no answer says how much of a
/// key was right. Over many samples, interleaved in random order so that
/// the machine's noise falls on both alike, a key wrong in its first byte
/// and one wrong in its last take the same time to refuse; a byte by byte
/// comparison of the same keys, measured alongside as a control, shows the
/// difference a leak makes, and the lookup's difference must stay well
/// under it. A real leak would show in every round; noise is given three
/// rounds to pass one.
#[cfg(test)]
mod timing {
    use super::*;
    use std::time::Instant;

    const SAMPLES: usize = 4_000;
    /// The longest key accepted, so a comparison that stops at the first
    /// wrong byte saves the most.
    const LEN: usize = 4096;

    fn key() -> Vec<u8> {
        (0..LEN).map(|i| b'a' + (i % 26) as u8).collect()
    }

    fn wrong_at(i: usize) -> Vec<u8> {
        let mut key = key();
        key[i] ^= 0x01;
        key
    }

    fn bearer(key: &[u8]) -> HeaderMap {
        let mut value = b"Bearer ".to_vec();
        value.extend_from_slice(key);
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_bytes(&value).unwrap(),
        );
        h
    }

    /// The median nanoseconds of `run` on each of two inputs.
    fn medians<T>(inputs: [&T; 2], run: impl Fn(&T)) -> [i64; 2] {
        let mut times = [Vec::with_capacity(SAMPLES), Vec::with_capacity(SAMPLES)];
        for _ in 0..SAMPLES * 2 {
            let which = usize::from(fastrand::bool());
            let start = Instant::now();
            run(std::hint::black_box(inputs[which]));
            times[which].push(start.elapsed().as_nanos() as i64);
        }
        times.map(|mut v| {
            v.sort_unstable();
            v[v.len() / 2]
        })
    }

    #[test]
    fn a_key_wrong_in_its_first_byte_and_one_wrong_in_its_last_take_the_same_time() {
        let config = configured("web", &[&key()], None);
        let clients = Clients::new(AuthMode::Required, &[config]);
        let (first, last) = (wrong_at(0), wrong_at(LEN - 1));
        let headers = [bearer(&first), bearer(&last)];
        let stored = key();
        let mut seen = Vec::new();
        for _ in 0..3 {
            // The lookup: first byte wrong against last byte wrong, and
            // first against first (the noise of the measure itself).
            let [a, b] = medians([&headers[0], &headers[1]], |h| {
                assert!(matches!(clients.identify(h), Identity::Unknown));
            });
            let [a2, a3] = medians([&headers[0], &headers[0]], |h| {
                assert!(matches!(clients.identify(h), Identity::Unknown));
            });
            // The control: a comparison that stops at the first wrong byte.
            let [ca, cb] = medians([&first, &last], |k| {
                assert!(std::hint::black_box(&stored[..]) != &k[..]);
            });
            let (lookup, noise, control) = ((a - b).abs(), (a2 - a3).abs(), cb - ca);
            seen.push((lookup, noise, control));
            if control > 2 * noise.max(10) && lookup <= 2 * noise.max(10) {
                return;
            }
        }
        panic!(
            "(first vs last byte wrong, first vs first, byte-by-byte control) in ns, every round: \
             {seen:?}; the lookup's answer time depends on where the key is wrong"
        );
    }
}
