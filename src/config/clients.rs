//! Phase two for `[clients.<name>]` and `server.auth`: who may call.
//!
//! A key is kept only as its SHA-256: `api_key`/`api_keys` (usually
//! `${VAR}` references) are hashed here and the text dropped;
//! `api_key_sha256`/`api_keys_sha256` give the hash itself, in hex. Several
//! keys per client let a key rotate. `routes` lists route names or
//! patterns with `*` (`flan-*`); absent, every route.

use std::collections::BTreeMap;

use super::bounds::{self, integer};
use super::diag::{index_path, key_path, Diagnostics};
use super::limits::rate_limit;
use super::raw::RawClient;
use super::{AuthMode, ClientAwsKey, ClientConfig, KeyHash};
use crate::secret::Secret;

/// Longest API key accepted, in bytes (a header value must hold it).
const MAX_KEY_BYTES: usize = 4096;

/// The SHA-256 of a key, as the gateway compares keys.
pub fn key_hash(key: &[u8]) -> KeyHash {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key);
    let mut hash = [0u8; 32];
    hash.copy_from_slice(digest.as_ref());
    KeyHash(hash)
}

/// One client's validated config.
pub(super) fn client_config(
    name: String,
    raw: RawClient,
    path: &str,
    diag: &mut Diagnostics,
) -> ClientConfig {
    let mut keys = Vec::new();
    let declared = raw.api_key.is_some()
        || raw.api_keys.as_ref().is_some_and(|k| !k.is_empty())
        || raw.api_key_sha256.is_some()
        || raw.api_keys_sha256.as_ref().is_some_and(|k| !k.is_empty());
    let clear = raw.api_key.map(|k| (key_path(path, "api_key"), k));
    let clears = raw.api_keys.unwrap_or_default().into_iter().enumerate();
    let clears = clears.map(|(i, k)| (index_path(&key_path(path, "api_keys"), i), k));
    for (at, key) in clear.into_iter().chain(clears) {
        // Never the key itself in a message: it may be a secret.
        if key.is_empty() {
            diag.error(&at, "must not be empty");
        } else if key.len() > MAX_KEY_BYTES {
            diag.error(&at, format!("longer than {MAX_KEY_BYTES} bytes"));
        } else if !key.bytes().all(|b| b.is_ascii_graphic()) {
            diag.error(
                &at,
                "must be visible ASCII without spaces (it travels in a header)",
            );
        } else {
            keys.push(key_hash(key.as_bytes()));
        }
    }
    let hashed = raw
        .api_key_sha256
        .map(|h| (key_path(path, "api_key_sha256"), h));
    let hasheds = raw
        .api_keys_sha256
        .unwrap_or_default()
        .into_iter()
        .enumerate();
    let hasheds = hasheds.map(|(i, h)| (index_path(&key_path(path, "api_keys_sha256"), i), h));
    for (at, text) in hashed.into_iter().chain(hasheds) {
        let mut hash = [0u8; 32];
        match hex::decode_to_slice(text.trim(), &mut hash) {
            Ok(()) => keys.push(KeyHash(hash)),
            Err(_) => diag.error(&at, "must be a SHA-256 in hex (64 hex digits)"),
        }
    }
    // A key given but broken has its own error already.
    if !declared {
        diag.error(
            path,
            "needs an API key: api_key, api_keys, api_key_sha256 or api_keys_sha256",
        );
    }
    if let Some(patterns) = &raw.routes {
        let at = key_path(path, "routes");
        for (i, p) in patterns.iter().enumerate() {
            let ok = !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '*'));
            if !ok {
                diag.error(
                    &index_path(&at, i),
                    r#"a route name or a pattern with "*" (letters, digits, ".", "_", "-")"#,
                );
            }
        }
    }
    let routes = raw.routes;
    let rate_limit = raw
        .rate_limit
        .and_then(|r| rate_limit(r, &key_path(path, "rate_limit"), diag));
    let max_in_flight = raw.max_in_flight.map(|n| {
        let at = key_path(path, "max_in_flight");
        integer(Some(n), &at, bounds::CLIENT_MAX_IN_FLIGHT, 1, diag)
    });
    let token = raw.aws_session_token;
    let mut aws = aws_key(
        raw.aws_access_key_id,
        raw.aws_secret_access_key,
        raw.aws_secret_access_key_file,
        path,
        diag,
    );
    let token_at = key_path(path, "aws_session_token");
    match (token, &mut aws) {
        (None, _) => {}
        (Some(_), _) if !diag.is_interpolated(&token_at) => diag.error(
            &token_at,
            r#"must not be written in the file: use a reference such as "${WEB_APP_AWS_TOKEN}""#,
        ),
        (Some(t), Some(key)) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()) => {
            key.session_token = Some(Secret::new(t));
        }
        (Some(_), Some(_)) => diag.error(&token_at, "must be visible ASCII, not empty"),
        (Some(_), None) => diag.error(&token_at, "needs aws_access_key_id and its secret"),
    }
    let tokens_per_minute = super::limits::tokens_per_minute(raw.tokens_per_minute, path, diag);
    let route_limits = raw
        .route_limits
        .unwrap_or_default()
        .into_iter()
        .map(|(route, raw)| {
            let at = key_path(&key_path(path, "route_limits"), &route);
            let limits = super::limits::spend_limits(raw, &at, diag);
            (route, limits)
        })
        .collect();
    ClientConfig {
        name,
        keys,
        routes,
        rate_limit,
        max_in_flight,
        admin: raw.admin.unwrap_or(false),
        aws,
        tokens_per_minute,
        route_limits,
    }
}

/// `aws_access_key_id` with its secret: `aws_secret_access_key` from the
/// environment (`"${VAR}"`, never written inline) or
/// `aws_secret_access_key_file`, a file holding it. All or nothing.
fn aws_key(
    id: Option<String>,
    secret: Option<String>,
    secret_file: Option<String>,
    path: &str,
    diag: &mut Diagnostics,
) -> Option<ClientAwsKey> {
    let id_at = key_path(path, "aws_access_key_id");
    let secret_at = key_path(path, "aws_secret_access_key");
    let file_at = key_path(path, "aws_secret_access_key_file");
    let secret = match (secret, secret_file) {
        (Some(_), Some(_)) => {
            diag.error(&file_at, "give aws_secret_access_key or this, not both");
            return None;
        }
        (Some(_), None) if !diag.is_interpolated(&secret_at) => {
            // Never the value in the message.
            diag.error(
                &secret_at,
                r#"must not be written in the file: use a reference such as "${WEB_APP_AWS_SECRET}" or aws_secret_access_key_file"#,
            );
            return None;
        }
        (Some(secret), None) => Some((secret, secret_at.clone())),
        (None, Some(file)) => match std::fs::read_to_string(&file) {
            Ok(text) => Some((text.trim().to_owned(), file_at)),
            Err(e) => {
                diag.error(&file_at, format!("cannot read {file}: {e}"));
                return None;
            }
        },
        (None, None) => None,
    };
    match (id, secret) {
        (None, None) => None,
        (Some(_), None) => {
            diag.error(&secret_at, "required with aws_access_key_id");
            None
        }
        (None, Some(_)) => {
            diag.error(&id_at, "required with an AWS secret access key");
            None
        }
        (Some(id), Some((secret, at))) => {
            // AWS's own rule for an access key id: 16 to 128 word characters.
            let id_ok = (16..=128).contains(&id.len())
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !id_ok {
                diag.error(&id_at, "must be 16 to 128 letters and digits, as AWS's are");
            }
            if secret.is_empty() || !secret.bytes().all(|b| b.is_ascii_graphic()) {
                diag.error(&at, "must be visible ASCII, not empty");
            }
            Some(ClientAwsKey {
                access_key_id: id,
                secret_access_key: Secret::new(secret),
                session_token: None,
            })
        }
    }
}

/// `server.auth`, given the clients: `required` by default once any client
/// exists, `none` without clients or when asked for.
pub(super) fn auth_mode(
    raw: Option<&str>,
    clients: &[ClientConfig],
    diag: &mut Diagnostics,
) -> AuthMode {
    match raw.map(str::trim) {
        None if clients.is_empty() => AuthMode::None,
        None | Some("required") => {
            if clients.is_empty() {
                diag.error(
                    "server.auth",
                    r#""required" needs at least one [clients.NAME] with a key"#,
                );
            }
            AuthMode::Required
        }
        Some("none") => AuthMode::None,
        Some(other) => {
            diag.error(
                "server.auth",
                format!(r#"unknown mode "{other}": use "required" or "none""#),
            );
            AuthMode::None
        }
    }
}

/// Cross-checks of the clients: no key or AWS access key id shared by two
/// clients (a key must say who is calling), and a warning for a route pattern that matches no
/// route (a typo would lock the client out).
pub(super) fn check_clients(clients: &[ClientConfig], routes: &[&str], diag: &mut Diagnostics) {
    let mut owners: BTreeMap<KeyHash, &str> = BTreeMap::new();
    let mut aws_owners: BTreeMap<&str, &str> = BTreeMap::new();
    for client in clients {
        let path = key_path("clients", &client.name);
        if let Some(aws) = &client.aws {
            if let Some(other) = aws_owners.insert(&aws.access_key_id, &client.name) {
                diag.error(
                    &key_path(&path, "aws_access_key_id"),
                    format!(r#"client "{other}" has this access key id too"#),
                );
            }
        }
        for key in &client.keys {
            match owners.get(key) {
                Some(other) if *other != client.name => diag.error(
                    &path,
                    format!(r#"has a key client "{other}" has too; each key names one client"#),
                ),
                _ => {
                    owners.insert(*key, &client.name);
                }
            }
        }
        for route in client.route_limits.keys() {
            let at = key_path(&key_path(&path, "route_limits"), route);
            if !routes.contains(&route.as_str()) {
                diag.error(&at, format!(r#"no route is named "{route}""#));
            } else if client
                .routes
                .as_ref()
                .is_some_and(|ps| !ps.iter().any(|p| super::route_matches(p, route)))
            {
                diag.warn(&at, "the client may not use this route (its routes)");
            }
        }
        for (i, pattern) in client.routes.iter().flatten().enumerate() {
            if !routes.iter().any(|r| super::route_matches(pattern, r)) {
                diag.warn(
                    &index_path(&key_path(&path, "routes"), i),
                    format!(r#""{pattern}" matches no route"#),
                );
            }
        }
    }
}
