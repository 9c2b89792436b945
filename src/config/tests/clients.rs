//! `[clients.NAME]` and `server.auth`: keys kept only as hashes, every
//! mistake named by its key path, and no key ever in a message.

use super::*;
use crate::config::{key_hash, route_matches, AuthMode};

const KEY: &str = "hf_canary_0123456789";

#[test]
fn a_client_makes_keys_required_and_keeps_only_hashes() {
    let hash = hex::encode(key_hash(b"second-key").0);
    let config = parse(&minimal(&format!(
        r#"
[clients.web-app]
api_key = "${{HF_TOKEN}}"
api_keys_sha256 = ["{hash}"]
routes = ["flan", "flan-*"]

[clients.batch]
api_keys = ["k1", "k2"]
"#
    )));
    assert_eq!(config.server.auth, AuthMode::Required);
    let names: Vec<&str> = config.clients.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["batch", "web-app"]);
    let web = &config.clients[1];
    assert_eq!(
        web.keys,
        [key_hash(KEY.as_bytes()), key_hash(b"second-key")]
    );
    assert_eq!(
        web.routes.as_deref(),
        Some(&["flan".to_string(), "flan-*".to_string()][..])
    );
    assert_eq!(config.clients[0].routes, None);
    // The key's text is nowhere in what the config holds.
    assert!(!format!("{config:?}").contains(KEY));
}

#[test]
fn auth_none_opts_out_and_warns_off_loopback() {
    let config = parse(&minimal(
        "[server]\nauth = \"none\"\nlisten = \"0.0.0.0:8080\"\n[clients.a]\napi_key = \"k\"\n",
    ));
    assert_eq!(config.server.auth, AuthMode::None);
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.starts_with("server.auth: anyone who reaches 0.0.0.0:8080")),
        "{:?}",
        config.warnings
    );
    // Without clients, auth is off; on loopback, nothing to warn about.
    let config = parse(&minimal(""));
    assert_eq!(config.server.auth, AuthMode::None);
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn client_mistakes_are_named_by_key_path_without_the_key() {
    let errs = errors(&minimal(
        r#"
[server]
auth = "sometimes"

[clients.nokey]
routes = ["flan"]

[clients.bad]
api_key = "has space ${HF_TOKEN}"
api_key_sha256 = "abc"
routes = ["fl/an", ""]

[clients."bad name"]
api_key = "x"

[clients.twin]
api_key = "${HF_TOKEN}"

[clients.twin2]
api_key = "${HF_TOKEN}"
"#,
    ));
    let expected = [
        r#"server.auth: unknown mode "sometimes": use "required" or "none""#,
        "clients.nokey: needs an API key: api_key, api_keys, api_key_sha256 or api_keys_sha256",
        "clients.bad.api_key: must be visible ASCII without spaces (it travels in a header)",
        "clients.bad.api_key_sha256: must be a SHA-256 in hex (64 hex digits)",
        r#"clients.bad.routes[0]: a route name or a pattern with "*" (letters, digits, ".", "_", "-")"#,
        r#"clients.bad.routes[1]: a route name or a pattern with "*" (letters, digits, ".", "_", "-")"#,
        r#"clients."bad name": invalid client name, use only letters, digits, ".", "_" and "-""#,
        r#"clients.twin2: has a key client "twin" has too; each key names one client"#,
    ];
    for e in expected {
        assert!(
            errs.iter().any(|got| got == e),
            "missing {e:?} in {errs:#?}"
        );
    }
    assert!(errs.iter().all(|e| !e.contains(KEY)), "{errs:#?}");
    // auth = "required" needs a client.
    let errs = errors(&minimal("[server]\nauth = \"required\"\n"));
    assert_eq!(
        errs,
        [r#"server.auth: "required" needs at least one [clients.NAME] with a key"#]
    );
}

#[test]
fn a_pattern_that_matches_no_route_is_a_warning() {
    let config = parse(&minimal(
        "[clients.a]\napi_key = \"k\"\nroutes = [\"flam-*\", \"flan\"]\n",
    ));
    assert_eq!(
        config.warnings,
        [r#"clients.a.routes[0]: "flam-*" matches no route"#]
    );
}

#[test]
fn route_patterns_match_as_globs() {
    for (pattern, name, matches) in [
        ("flan", "flan", true),
        ("flan", "flan-2", false),
        ("flan-*", "flan-2", true),
        ("flan-*", "flan-", true),
        ("flan-*", "flan", false),
        ("*", "anything", true),
        ("*-large", "flan-large", true),
        ("*-large", "flan-large-2", false),
        ("a*b*c", "a-x-b-y-c", true),
        ("a*b*c", "acb", false),
        ("ab*ab", "ab", false),
        ("ab*ab", "abab", true),
    ] {
        assert_eq!(route_matches(pattern, name), matches, "{pattern} ~ {name}");
    }
}

#[test]
fn rate_limits_and_in_flight_are_read_with_their_defaults() {
    let config = parse(&minimal(
        r#"
[routes.flan.rate_limit]
requests_per_second = 200
burst = 400

[clients.a]
api_key = "k"
rate_limit = { requests_per_second = 2.5 }
max_in_flight = 16
"#,
    ));
    let limit = config.routes[0].rate_limit.unwrap();
    assert_eq!((limit.per_second, limit.burst), (200.0, 400));
    let a = &config.clients[0];
    // The burst defaults to the rate, rounded up.
    assert_eq!(
        a.rate_limit.map(|r| (r.per_second, r.burst)),
        Some((2.5, 3))
    );
    assert_eq!(a.max_in_flight, Some(16));
}

#[test]
fn rate_limit_mistakes_are_named_by_key_path() {
    let errs = errors(&minimal(
        r#"
[clients.a]
api_key = "k"
rate_limit = { burst = 3, per_minute = 5 }

[clients.b]
api_key = "k2"
rate_limit = { requests_per_second = -1 }
"#,
    ));
    for e in [
        "clients.a.rate_limit.per_minute: unknown key",
        "clients.a.rate_limit.requests_per_second: required in a rate_limit",
        "clients.b.rate_limit.requests_per_second: must be greater than 0",
    ] {
        assert!(
            errs.iter().any(|got| got == e),
            "missing {e:?} in {errs:#?}"
        );
    }
}

#[test]
fn an_aws_key_pair_takes_its_secret_from_the_environment_or_a_file_never_inline() {
    let secret_file = super::tls::pem_file("aws-secret", "file-canary-secret\n");
    let config = parse(&minimal(&format!(
        r#"
[clients.a]
api_key = "k1"
aws_access_key_id = "AKIAINFERGATEWEB01"
aws_secret_access_key = "${{HF_TOKEN}}"

[clients.b]
api_key = "k2"
aws_access_key_id = "AKIAINFERGATEBATCH"
aws_secret_access_key_file = {:?}
"#,
        secret_file.display().to_string()
    )));
    let a = config.clients[0].aws.as_ref().unwrap();
    assert_eq!(a.access_key_id, "AKIAINFERGATEWEB01");
    assert_eq!(a.secret_access_key.expose(), KEY);
    let b = config.clients[1].aws.as_ref().unwrap();
    assert_eq!(b.secret_access_key.expose(), "file-canary-secret");
    assert_eq!(a.session_token, None);
    let with_token = parse(&minimal(
        "[clients.a]\napi_key = \"k\"\naws_access_key_id = \"ASIAINFERGATEWEB01\"\n\
         aws_secret_access_key = \"${HF_TOKEN}\"\naws_session_token = \"${HF_TOKEN}\"\n",
    ));
    let key = with_token.clients[0].aws.as_ref().unwrap();
    assert_eq!(key.session_token.as_ref().map(|t| t.expose()), Some(KEY));
    assert!(!format!("{config:?}").contains("canary"));

    let cases = [
        (
            "aws_access_key_id = \"AKIAINFERGATEWEB01\"\naws_secret_access_key = \"inline-canary\"",
            "clients.a.aws_secret_access_key: must not be written in the file",
        ),
        (
            "aws_access_key_id = \"AKIAINFERGATEWEB01\"",
            "clients.a.aws_secret_access_key: required with aws_access_key_id",
        ),
        (
            "aws_secret_access_key = \"${HF_TOKEN}\"",
            "clients.a.aws_access_key_id: required",
        ),
        (
            "aws_access_key_id = \"short\"\naws_secret_access_key = \"${HF_TOKEN}\"",
            "clients.a.aws_access_key_id: must be 16 to 128",
        ),
        (
            "aws_access_key_id = \"AKIAINFERGATEWEB01\"\naws_secret_access_key = \"${HF_TOKEN}\"\naws_session_token = \"inline-canary\"",
            "clients.a.aws_session_token: must not be written in the file",
        ),
        (
            "aws_session_token = \"${HF_TOKEN}\"",
            "clients.a.aws_session_token: needs aws_access_key_id and its secret",
        ),
    ];
    for (keys, expected) in cases {
        let errors = errors(&minimal(&format!("[clients.a]\napi_key = \"k\"\n{keys}\n")));
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "{expected:?} not in {errors:?}"
        );
        assert!(!errors.join("\n").contains("canary"), "{errors:?}");
    }
    let shared =
        "aws_access_key_id = \"AKIAINFERGATEWEB01\"\naws_secret_access_key = \"${HF_TOKEN}\"";
    let errors = errors(&minimal(&format!(
        "[clients.a]\napi_key = \"k\"\n{shared}\n[clients.b]\napi_key = \"k2\"\n{shared}\n"
    )));
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("clients.b.aws_access_key_id: client \"a\" has this")),
        "{errors:?}"
    );
}

#[test]
fn rate_limits_choose_a_store_and_name_every_mistake() {
    use crate::config::{LimitStore, OnStoreError};
    let config = parse(&minimal(""));
    assert_eq!(config.rate_limits.store, LimitStore::Memory);
    assert_eq!(config.rate_limits.on_store_error, OnStoreError::Allow);
    let config = parse(&minimal(
        "[rate_limits]\nstore = \"redis\"\nredis_url = \"redis://:pw-canary@10.0.0.5:6380/2\"\non_store_error = \"deny\"\ntimeout = \"20ms\"\n",
    ));
    let LimitStore::Redis(redis) = &config.rate_limits.store else {
        panic!("not redis");
    };
    assert_eq!(redis.shown, "10.0.0.5:6380");
    assert_eq!(redis.timeout, std::time::Duration::from_millis(20));
    assert_eq!(redis.key_prefix, "infergate");
    assert_eq!(config.rate_limits.on_store_error, OnStoreError::Deny);
    assert!(!format!("{config:?}").contains("pw-canary"));
    let summary = config.summary();
    assert!(
        summary.contains(
            "rate limits: shared through Redis at 10.0.0.5:6380, timeout 20ms, on store error deny, headroom 0.5"
        ),
        "{summary}"
    );
    assert!(!summary.contains("pw-canary"));
    let with_headroom = |h: &str| {
        let extra = format!(
            "[rate_limits]\nstore = \"redis\"\nredis_url = \"redis://h\"\nheadroom = {h}\n"
        );
        parse(&minimal(&extra)).rate_limits.headroom
    };
    assert_eq!(with_headroom("0"), 0.0);
    assert_eq!(with_headroom("1"), 1.0);
    assert_eq!(with_headroom("0.25"), 0.25);

    for (section, expected) in [
        (
            "store = \"redis\"",
            "rate_limits.redis_url: required with store = \"redis\"",
        ),
        (
            "store = \"etcd\"",
            "rate_limits.store: unknown store \"etcd\"",
        ),
        (
            "store = \"redis\"\nredis_url = \"rediss://:pw-canary@h:6379\"",
            "rate_limits.redis_url: rediss:// (Redis over TLS) is not supported",
        ),
        (
            "store = \"redis\"\nredis_url = \"http://pw-canary@h\"",
            "rate_limits.redis_url: scheme \"http\" is not redis://",
        ),
        (
            "on_store_error = \"maybe\"",
            "rate_limits.on_store_error: unknown value",
        ),
        ("key_prefix = \"a b\"", "rate_limits.key_prefix: 1 to 64"),
        (
            // Its bounds are in bounds.rs; NaN is outside them too.
            "store = \"redis\"\nredis_url = \"redis://h\"\nheadroom = nan",
            "rate_limits.headroom: must be between 0.0 and 1.0",
        ),
        (
            "store = \"redis\"\nredis_url = \"redis://h\"\nredis_urls = [\"redis://h\"]",
            "rate_limits.redis_urls: give redis_url or redis_urls, not both",
        ),
        (
            "store = \"redis\"\nredis_urls = [\"redis://a\", \"redis://b\"]",
            "rate_limits.redis_urls: one URL for a single server",
        ),
        (
            "store = \"redis\"\nredis_mode = \"cluster\"\nredis_urls = []",
            "rate_limits.redis_urls: 1 to 32 seed URLs",
        ),
        (
            "store = \"redis\"\nredis_mode = \"sentinel\"\nredis_url = \"redis://h\"",
            "rate_limits.redis_mode: unknown mode \"sentinel\"",
        ),
        (
            "store = \"redis\"\nredis_mode = \"cluster\"\nredis_urls = [\"redis://a\", \"http://pw-canary@b\"]",
            "rate_limits.redis_urls[1]: scheme \"http\" is not redis://",
        ),
        (
            "store = \"redis\"\nredis_mode = \"cluster\"\nredis_urls = [\"redis://:pw-canary@a\", \"redis://:pw-canary2@b\"]",
            "rate_limits.redis_urls[1]: every seed of a Cluster needs the same user and password",
        ),
        (
            "store = \"redis\"\nredis_mode = \"cluster\"\nredis_url = \"redis://:pw-canary@a/2\"",
            "rate_limits.redis_url: a Redis Cluster has database 0 only",
        ),
        ("timeout = \"0s\"", "rate_limits.timeout:"),
        ("stores = 1", "rate_limits.stores: unknown key"),
    ] {
        let errors = errors(&minimal(&format!("[rate_limits]\n{section}\n")));
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "{expected:?} not in {errors:?}"
        );
        assert!(!errors.join("\n").contains("pw-canary"), "{errors:?}");
    }
}

#[test]
fn a_redis_cluster_is_named_by_its_seeds() {
    use crate::config::{LimitStore, RedisMode};
    let config = parse(&minimal(
        "[rate_limits]\nstore = \"redis\"\nredis_mode = \"cluster\"\nredis_urls = [\"redis://:pw-canary@10.0.0.5:7000\", \"redis://:pw-canary@10.0.0.6\"]\n",
    ));
    let LimitStore::Redis(redis) = &config.rate_limits.store else {
        panic!("not redis");
    };
    assert_eq!(redis.mode, RedisMode::Cluster);
    assert_eq!(redis.urls.len(), 2);
    assert_eq!(redis.shown, "10.0.0.5:7000, 10.0.0.6:6379");
    let summary = config.summary();
    assert!(
        summary.contains("shared through a Redis Cluster, seeds 10.0.0.5:7000, 10.0.0.6:6379"),
        "{summary}"
    );
    assert!(!format!("{config:?}{summary}").contains("pw-canary"));
    // One seed given as redis_url is a Cluster too.
    let one = parse(&minimal(
        "[rate_limits]\nstore = \"redis\"\nredis_mode = \"cluster\"\nredis_url = \"redis://h:7000\"\n",
    ));
    assert!(matches!(&one.rate_limits.store, LimitStore::Redis(r) if r.mode == RedisMode::Cluster));
    // 33 seeds are too many.
    let many: Vec<String> = (0..33).map(|i| format!("\"redis://h{i}\"")).collect();
    let errors = errors(&minimal(&format!(
        "[rate_limits]\nstore = \"redis\"\nredis_mode = \"cluster\"\nredis_urls = [{}]\n",
        many.join(", ")
    )));
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("rate_limits.redis_urls: 1 to 32")),
        "{errors:?}"
    );
}

#[test]
fn tokens_per_minute_and_route_limits_are_read_and_checked() {
    let config = parse(&format!(
        "{SM}{HF}{ROUTE}tokens_per_minute = 5000\n{}",
        r#"
[clients.a]
api_key = "k"
tokens_per_minute = 1000
routes = ["flan"]

[clients.a.route_limits.flan]
rate_limit = { requests_per_second = 2 }
tokens_per_minute = 300
"#,
    ));
    assert_eq!(config.routes[0].tokens_per_minute, Some(5000));
    let a = &config.clients[0];
    assert_eq!(a.tokens_per_minute, Some(1000));
    let flan = a.route_limits["flan"];
    assert_eq!(flan.tokens_per_minute, Some(300));
    assert_eq!(flan.rate_limit.unwrap().burst, 2);

    let errors = errors(&minimal(
        "[clients.a]\napi_key = \"k\"\n[clients.a.route_limits.nope]\ntokens_per_minute = 1\n[clients.a.route_limits.flan]\nrpm = 1\n",
    ));
    for expected in [
        "clients.a.route_limits.nope: no route is named \"nope\"",
        "clients.a.route_limits.flan.rpm: unknown key",
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "{expected:?} not in {errors:?}"
        );
    }
}

#[test]
fn a_rate_too_small_for_the_clock_is_refused() {
    let errors = errors(&minimal(
        "[clients.a]\napi_key = \"k\"\nrate_limit = { requests_per_second = 1e-20 }\n",
    ));
    assert!(
        errors
            .iter()
            .any(|e| e
                .starts_with("clients.a.rate_limit.requests_per_second: must be at least 0.0001")),
        "{errors:?}"
    );
}

#[test]
fn the_sagemaker_door_is_open_by_default_and_its_regions_are_checked() {
    let config = parse(&minimal(""));
    assert!(config.doors.sagemaker.enabled);
    assert!(config.doors.sagemaker.regions.is_empty());
    let config = parse(&minimal(
        "[doors.sagemaker]\nenabled = false\nregions = [\"us-east-1\", \"eu-west-1\", \"us-east-1\"]\n",
    ));
    assert!(!config.doors.sagemaker.enabled);
    assert_eq!(config.doors.sagemaker.regions, ["us-east-1", "eu-west-1"]);
    assert_eq!(
        errors(&minimal(
            "[doors.sagemaker]\nregions = [\"us-east-1\", \"US East\"]\n"
        )),
        [
            r#"doors.sagemaker.regions[1]: must be an AWS region such as "us-east-1" (lowercase letters, digits and "-")"#
        ]
    );
    assert_eq!(
        errors(&minimal("[doors.sagemaker]\nregions = []\n")),
        ["doors.sagemaker.regions: must name at least one region, or be left out to accept any"]
    );
    let unknown = errors(&minimal(
        "[doors.sagemaker]\nenable = true\n[doors.openapi]\n",
    ));
    assert_eq!(unknown.len(), 2, "{unknown:?}");
    assert!(
        unknown
            .iter()
            .any(|e| e.starts_with("doors.sagemaker.enable: unknown key")),
        "{unknown:?}"
    );
    assert!(
        unknown
            .iter()
            .any(|e| e.starts_with("doors.openapi: unknown key")),
        "{unknown:?}"
    );
}
