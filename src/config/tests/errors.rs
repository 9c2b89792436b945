//! The exact messages of structural errors: required keys, unknown keys,
//! types, names, ranges, syntax, and many errors in one pass.

use super::*;

// === required messages ===

#[test]
fn unknown_backend_in_route() {
    assert_eq!(
        errors(&format!(
            "{SM}{HF}[routes.flan]\nbackends = [\"sm-flan\", \"hf-flann\"]\n"
        )),
        [r#"routes.flan.backends[1]: unknown backend "hf-flann""#]
    );
    assert_eq!(
        errors(&format!(
            "{SM}[routes.flan]\nbackends = [{{ backend = \"hf-flann\" }}]\n"
        )),
        [r#"routes.flan.backends[0].backend: unknown backend "hf-flann""#]
    );
}

#[test]
fn route_without_backends() {
    let expected = ["routes.flan.backends: must list at least one backend"];
    assert_eq!(
        errors(&format!("{SM}[routes.flan]\nbackends = []\n")),
        expected
    );
    assert_eq!(
        errors(&format!("{SM}[routes.flan]\nattempts = 2\n")),
        expected
    );
}

#[test]
fn weight_out_of_range() {
    for weight in ["0", "1001", "-1", "99999999999"] {
        assert_eq!(
            errors(&format!(
                "{SM}[routes.flan]\nbackends = [{{ backend = \"sm-flan\", weight = {weight} }}]\n"
            )),
            ["routes.flan.backends[0].weight: must be between 1 and 1000"],
            "weight {weight}"
        );
    }
}

#[test]
fn backend_listed_twice() {
    assert_eq!(
        errors(&format!(
            "{SM}{HF}[routes.flan]\nbackends = [\"hf-flan\", \"sm-flan\", {{ backend = \"hf-flan\", weight = 2 }}]\n"
        )),
        [r#"routes.flan.backends[2]: backend "hf-flan" is listed twice"#]
    );
}

#[test]
fn at_least_one_route() {
    let expected = ["routes: at least one route is required"];
    assert_eq!(errors(&format!("{SM}{HF}")), expected);
    assert_eq!(errors(&format!("{SM}[routes]\n")), expected);
    assert_eq!(errors(""), expected);
}

#[test]
fn required_keys_per_kind() {
    assert_eq!(
        errors(
            "[backends.sm-flan]\nkind = \"sagemaker\"\n[routes.flan]\nbackends = [\"sm-flan\"]\n"
        ),
        [
            r#"backends.sm-flan.endpoint_name: required for kind "sagemaker""#,
            r#"backends.sm-flan.region: required for kind "sagemaker""#,
        ]
    );
    assert_eq!(
        errors(
            "[backends.hf-flan]\nkind = \"huggingface\"\n[routes.flan]\nbackends = [\"hf-flan\"]\n"
        ),
        [r#"backends.hf-flan.url: required for kind "huggingface""#]
    );
    assert_eq!(
        errors("[backends.x]\nregion = \"us-east-1\"\n[routes.flan]\nbackends = [\"x\"]\n"),
        [r#"backends.x.kind: required, expected "sagemaker" or "huggingface""#]
    );
}

#[test]
fn unknown_kind() {
    assert_eq!(
        errors("[backends.x]\nkind = \"sagmaker\"\nendpoint_name = \"e\"\n[routes.flan]\nbackends = [\"x\"]\n"),
        [r#"backends.x.kind: unknown backend kind "sagmaker", expected "sagemaker" or "huggingface""#]
    );
}

#[test]
fn keys_of_the_other_kind() {
    assert_eq!(
        errors(&minimal(
            "[backends.hf-flan2]\nkind = \"huggingface\"\nurl = \"https://h\"\nendpoint_name = \"x\"\nformat = \"hf\"\n"
        )),
        [
            r#"backends.hf-flan2.endpoint_name: not valid for kind "huggingface" (only for kind "sagemaker")"#,
            r#"backends.hf-flan2.format: not valid for kind "huggingface" (only for kind "sagemaker")"#,
        ]
    );
    assert_eq!(
        errors(&minimal(
            "[backends.sm2]\nkind = \"sagemaker\"\nendpoint_name = \"e\"\nregion = \"us-east-1\"\ntoken = \"${HF_TOKEN}\"\nurl = \"https://h\"\n"
        )),
        [
            r#"backends.sm2.url: not valid for kind "sagemaker" (only for kind "huggingface")"#,
            r#"backends.sm2.token: not valid for kind "sagemaker" (only for kind "huggingface")"#,
        ]
    );
}

// === unknown keys ===

#[test]
fn unknown_keys_at_every_level() {
    assert_eq!(
        errors(&format!(
            "serverr = 1\n{}",
            minimal(
                r#"
[server]
listn = "127.0.0.1:1"
[upstream]
connect_timout = "1s"
[backends.sm2]
kind = "sagemaker"
endpoint_name = "e"
region = "us-east-1"
regoin = "x"
[routes.r2]
backends = [{ backend = "sm2", wieght = 2 }]
atempts = 2
"#
            )
        )),
        [
            "serverr: unknown key",
            "server.listn: unknown key",
            "upstream.connect_timout: unknown key",
            "backends.sm2.regoin: unknown key",
            "routes.r2.atempts: unknown key",
            "routes.r2.backends[0].wieght: unknown key",
        ]
    );
}

// === many errors in one pass ===

#[test]
fn every_error_is_collected_in_one_pass() {
    let text = r#"
[server]
listen = "localhost"
max_body_bytes = 0
request_timeout = "0s"
shutdown_grace = "soon"
bogus = true

[backends.sm-flan]
kind = "sagemaker"
endpoint_name = "-bad-"
region = "US-EAST-1"
fips = true
endpoint_url = "ftp://x"
colour = "blue"

[backends.hf-flan]
kind = "huggingface"
url = "https://h?x=1"
token = "${HF_TOKEN_UNSET}"

[routes.flan]
backends = ["sm-flan", "hf-flann", "sm-flan", { backend = "hf-flan", weight = 0 }]
attempts = 11
timeout = 30
"#;
    assert_eq!(
        errors(text),
        [
            "server.bogus: unknown key",
            &format!("server.shutdown_grace: {INVALID_DURATION}"),
            r#"server.listen: invalid socket address, expected an IP address and a port such as "127.0.0.1:8080" or "[::]:8080""#,
            "server.max_body_bytes: must be greater than 0",
            "server.request_timeout: must be greater than 0",
            r#"backends.hf-flan.token: environment variable "HF_TOKEN_UNSET" is not set"#,
            "backends.hf-flan.url: must not have a query string",
            "backends.sm-flan.colour: unknown key",
            r#"backends.sm-flan.endpoint_name: must contain only letters, digits and "-", and start and end with a letter or digit"#,
            r#"backends.sm-flan.region: must be an AWS region such as "us-east-1" (lowercase letters, digits and "-")"#,
            "backends.sm-flan.endpoint_url: must be an http or https URL",
            "backends.sm-flan.fips: cannot be combined with endpoint_url (point endpoint_url at the FIPS endpoint instead)",
            r#"routes.flan.timeout: expected a duration string such as "30s", found integer"#,
            r#"routes.flan.backends[1]: unknown backend "hf-flann""#,
            r#"routes.flan.backends[2]: backend "sm-flan" is listed twice"#,
            "routes.flan.backends[3].weight: must be between 1 and 1000",
            "routes.flan.attempts: must be between 1 and 10",
        ]
    );
}

// === durations and numbers ===

#[test]
fn durations() {
    assert_eq!(
        errors(&minimal("[server]\nrequest_timeout = \"60\"\n")),
        [format!("server.request_timeout: {INVALID_DURATION}")]
    );
    assert_eq!(
        errors(&minimal("[server]\nrequest_timeout = 60\n")),
        [r#"server.request_timeout: expected a duration string such as "30s", found integer"#]
    );
    assert_eq!(
        errors(&minimal(
            "[upstream]\nconnect_timeout = \"0ms\"\npool_idle_timeout = \"0s\"\n"
        )),
        [
            "upstream.connect_timeout: must be greater than 0",
            "upstream.pool_idle_timeout: must be greater than 0",
        ]
    );
    let text = format!(
        "{HF}[backends.sm-flan]\nkind = \"sagemaker\"\nendpoint_name = \"e\"\nregion = \"us-east-1\"\ntimeout = \"0s\"\n[routes.flan]\nbackends = [\"sm-flan\", \"hf-flan\"]\ntimeout = \"0s\"\n"
    );
    assert_eq!(
        errors(&text),
        [
            "backends.sm-flan.timeout: must be greater than 0",
            "routes.flan.timeout: must be greater than 0",
        ]
    );
}

#[test]
fn numbers() {
    assert_eq!(
        errors(&minimal(
            "[server]\nmax_body_bytes = -1\nmax_connections = 0\nworkers = 0\n[upstream]\npool_max_idle_per_host = -1\n"
        )),
        [
            "server.max_body_bytes: must be greater than 0",
            "server.max_connections: must be greater than 0",
            "server.workers: must be greater than 0",
            "upstream.pool_max_idle_per_host: must not be negative",
        ]
    );
    assert_eq!(
        errors(&minimal("[server]\nworkers = 257\n")),
        ["server.workers: must be at most 256"]
    );
    assert_eq!(
        errors(&minimal("[server]\nmax_body_bytes = 1.5\n")),
        ["server.max_body_bytes: expected an integer, found float"]
    );
    for attempts in ["0", "11"] {
        assert_eq!(
            errors(&format!("{SM}{HF}[routes.flan]\nbackends = [\"sm-flan\", \"hf-flan\"]\nattempts = {attempts}\n")),
            ["routes.flan.attempts: must be between 1 and 10"]
        );
    }
}

// === structure ===

#[test]
fn sections_of_the_wrong_type() {
    assert_eq!(
        errors(&minimal("upstream = 5\n")),
        // `upstream = 5` after a table header belongs to [routes.flan].
        ["routes.flan.upstream: unknown key"]
    );
    assert_eq!(
        errors(&format!(
            "server = 5\nupstream = []\nroutes = \"flan\"\n{SM}"
        )),
        [
            "server: expected a table, found integer",
            "upstream: expected a table, found array",
            "routes: expected a table, found string",
        ]
    );
    assert_eq!(
        errors(&format!("backends = {{ a = 1 }}\n{ROUTE}")),
        [
            "backends.a: expected a table, found integer",
            r#"routes.flan.backends[0]: unknown backend "sm-flan""#,
            r#"routes.flan.backends[1]: unknown backend "hf-flan""#,
        ]
    );
    assert_eq!(
        errors(&minimal("[routes.r2]\nbackends = \"sm-flan\"\n")),
        ["routes.r2.backends: expected an array, found string"]
    );
    assert_eq!(
        errors(&minimal("[routes.r2]\nbackends = [\"sm-flan\", 3]\n")),
        [
            r#"routes.r2.backends[1]: expected a backend name or a table such as { backend = "name", weight = 1 }, found integer"#
        ]
    );
    assert_eq!(
        errors(&minimal("[routes.r2]\nbackends = [{ weight = 3 }]\n")),
        ["routes.r2.backends[0].backend: required"]
    );
}

#[test]
fn names() {
    assert_eq!(
        errors(&format!(
            "{SM}{HF}[routes.\"a/b\"]\nbackends = [\"sm-flan\", \"hf-flan\"]\n[backends.\"sm flan\"]\nkind = \"sagemaker\"\nendpoint_name = \"e\"\nregion = \"us-east-1\"\n"
        )),
        [
            r#"backends."sm flan": invalid backend name, use only letters, digits, ".", "_" and "-""#,
            r#"routes."a/b": invalid route name, use only letters, digits, ".", "_" and "-""#,
        ]
    );
    let config = parse(&format!(
        "{SM}[routes.\"v1.flan_t5-small\"]\nbackends = [\"sm-flan\"]\n"
    ));
    assert_eq!(config.routes[0].name, "v1.flan_t5-small");
}

/// A TOML syntax error names the key the parser was reading, from the text
/// before it, then gives its line and column.
#[test]
fn syntax_errors_name_their_key_and_position() {
    let route = "[routes.flan]\nbackends = [\"sm-flan\"]\n";
    assert_eq!(
        errors(&format!("{SM}{route}attempts = 2\nattempts = 3\n")),
        ["routes.flan.attempts: duplicate key (line 9, column 1)"]
    );
    assert_eq!(
        errors(&format!("{SM}{route}attempts = 99999999999999999999\n")),
        ["routes.flan.attempts: integer out of range, TOML integers are between -9223372036854775808 and 9223372036854775807 (line 8, column 12)"]
    );
    assert_eq!(
        errors("[server]\nlisten = \"127.0.0.1:8080\nworkers = 2\n"),
        ["server.listen: unterminated string, expected a closing `\"` (line 2, column 25)"]
    );
    assert_eq!(
        errors("[server]\nlisten = '''127.0.0.1:8080\nworkers = 2\n"),
        ["server.listen: unterminated string, expected a closing `'''` (line 4, column 1)"]
    );
    assert_eq!(
        errors("[server]\nlisten = \n"),
        ["server.listen: missing value (line 2, column 10)"]
    );
    assert_eq!(
        errors(&format!(
            "{SM}[routes.flan]\nbackends = [{{ backend = \"sm-flan\", backend = \"x\" }}]\n"
        )),
        ["routes.flan.backends[0].backend: duplicate key (line 7, column 36)"]
    );
    assert_eq!(
        errors(&format!("{SM}[backends.sm-flan]\n")),
        ["backends.sm-flan: duplicate key (line 6, column 11)"]
    );
    assert_eq!(
        errors("[server\nlisten = \"x\"\n"),
        ["server: unclosed table, expected `]` (line 1, column 8)"]
    );
    // Where no table or key is open, the position alone.
    assert_eq!(
        errors("= 3\n"),
        ["TOML syntax error at line 1, column 1: unquoted keys cannot be empty, expected letters, numbers, `-`, `_`"]
    );
}
