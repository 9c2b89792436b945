//! Hot reload of `infergate serve`: a change of the file (a ConfigMap's
//! `..data` symlink swap included), SIGHUP, `infergate reload` through the
//! admin listener and the pid file; a bad file refused with its key paths
//! while the running config serves on; a request in flight finishing on the
//! config it started with; a revoked key refused at once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use infergate::emulator::{self, EmulatorHandle};

use crate::common::child::{listen_addr, run, wait_timeout, Running, Stream, BIN};
use crate::common::net::metrics_text;
use crate::common::wait::{wait_for, wait_until};

const KEY: &str = "reload-test-key-4c1d";
const NEXT_KEY: &str = "reload-test-key-next-77aa";

async fn hf() -> EmulatorHandle {
    let loopback: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    emulator::huggingface::start(loopback, emulator::HuggingFaceOptions::default())
        .await
        .unwrap()
}

/// A config on `hf` with `server` lines, the routes `routes` and a client
/// whose keys are `keys`.
fn config(hf: &str, server: &str, routes: &[&str], keys: &[&str]) -> String {
    let mut text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"5s\"\n{server}\n\
         [backends.hf]\nkind = \"huggingface\"\nurl = \"{hf}\"\n"
    );
    for r in routes {
        text.push_str(&format!("[routes.{r}]\nbackends = [\"hf\"]\n"));
    }
    let keys: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
    text.push_str(&format!(
        "[clients.app]\napi_keys = [{}]\nadmin = true\n",
        keys.join(", ")
    ));
    text
}

/// A directory laid out as Kubernetes mounts a ConfigMap: the file is a
/// symlink through `..data`, itself a symlink to the current version's
/// directory, and an update swaps `..data` (the file is never written).
struct ConfigMap {
    dir: PathBuf,
    version: usize,
}

impl ConfigMap {
    fn new(text: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "infergate-configmap-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut map = Self { dir, version: 0 };
        map.update(text);
        std::os::unix::fs::symlink("..data/infergate.toml", map.path()).unwrap();
        map
    }

    fn path(&self) -> PathBuf {
        self.dir.join("infergate.toml")
    }

    /// What the kubelet does: the new version in a directory of its own,
    /// then `..data` renamed over atomically.
    fn update(&mut self, text: &str) {
        self.version += 1;
        let version = format!("..2026_12_03_{}", self.version);
        std::fs::create_dir(self.dir.join(&version)).unwrap();
        std::fs::write(self.dir.join(&version).join("infergate.toml"), text).unwrap();
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&version, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
    }
}

impl Drop for ConfigMap {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn serve(path: &Path) -> (Running, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--config", path.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .env("INFERGATE_LOG_LEVEL", "info");
    let gw = Running::spawn(cmd, Stream::Stderr);
    let line = gw.wait_for_line("infergate listening");
    let base = format!("http://{}", listen_addr(&line));
    (gw, base)
}

/// The status of a predict call on `route` with `key`.
async fn call(base: &str, route: &str, key: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{base}/v1/predict/{route}"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(r#"{"inputs": "a b"}"#)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The value of the metric line starting with `series`, if any.
async fn metric(base: &str, series: &str) -> Option<String> {
    let text = metrics_text(&reqwest::Client::new(), base, Some(KEY)).await;
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .map(|v| v.trim().to_owned())
}

/// Waits until `route` answers `status`.
async fn until_status(base: &str, route: &str, key: &str, status: u16, what: &str) {
    wait_until(
        &format!("{route} answering {status} {what}"),
        || async move { call(base, route, key).await == status },
    )
    .await;
}

#[tokio::test]
async fn a_configmap_update_reloads_and_a_bad_version_is_refused_while_the_old_serves() {
    let hf = hf().await;
    let server = "watch_interval = \"100ms\"";
    let mut map = ConfigMap::new(&config(&hf.url(), server, &["first"], &[KEY]));
    let (mut gw, base) = serve(&map.path());
    assert_eq!(call(&base, "first", KEY).await, 200);
    let started = metric(&base, "infergate_config_info{hash=").await.unwrap();

    // A new route, and the key rotated: both keys valid during the rotation.
    map.update(&config(
        &hf.url(),
        server,
        &["first", "second"],
        &[KEY, NEXT_KEY],
    ));
    until_status(&base, "second", NEXT_KEY, 200, "after the update").await;
    assert_eq!(call(&base, "first", KEY).await, 200);
    assert_eq!(
        metric(&base, "infergate_config_reloads_total{result=\"applied\"}")
            .await
            .as_deref(),
        Some("1")
    );
    let reloaded = metric(&base, "infergate_config_info{hash=").await.unwrap();
    assert_ne!(
        started, reloaded,
        "infergate_config_info names the new version"
    );

    // A version with two errors: refused whole, both logged with their key
    // paths, and the running config (with its route and keys) serves on.
    let bad = config(&hf.url(), server, &["first", "second"], &[NEXT_KEY]).replace(
        "[routes.second]\nbackends = [\"hf\"]",
        "[routes.second]\nbackends = [\"hf-gone\"]\nattempts = 0",
    );
    map.update(&bad);
    gw.wait_for("the refusal", |lines| {
        lines.iter().any(|l| l.contains("config reload refused"))
    })
    .await;
    let out = gw.output();
    assert!(
        out.contains(r#"routes.second.backends[0]: unknown backend "hf-gone""#),
        "{out}"
    );
    assert!(
        out.contains("routes.second.attempts: must be between 1 and 10"),
        "{out}"
    );
    assert_eq!(
        call(&base, "second", KEY).await,
        200,
        "the old key still serves"
    );
    assert_eq!(
        metric(&base, "infergate_config_reloads_total{result=\"rejected\"}")
            .await
            .as_deref(),
        Some("1")
    );

    // Without an admin listener, POST /v1/reload is an admin client's.
    let reload = |key: Option<&str>| {
        let req = reqwest::Client::new().post(format!("{base}/v1/reload"));
        match key {
            Some(k) => req.bearer_auth(k),
            None => req,
        }
        .send()
    };
    assert_eq!(reload(None).await.unwrap().status(), 401);
    let res = reload(Some(KEY)).await.unwrap();
    assert_eq!(res.status(), 422, "the bad version is refused again");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["result"], "rejected");
    assert_eq!(body["errors"].as_array().unwrap().len(), 2, "{body}");
    let get = reqwest::Client::new()
        .get(format!("{base}/v1/reload"))
        .bearer_auth(KEY);
    assert_eq!(get.send().await.unwrap().status(), 405);

    // The rotation ends: the old key is refused at once.
    map.update(&config(
        &hf.url(),
        server,
        &["first", "second"],
        &[NEXT_KEY],
    ));
    until_status(&base, "second", KEY, 401, "after the old key's removal").await;
    assert_eq!(call(&base, "second", NEXT_KEY).await, 200);
    gw.stop();
}

#[tokio::test]
async fn sighup_and_infergate_reload_apply_what_the_file_says() {
    let hf = hf().await;
    let dir = std::env::temp_dir().join(format!("infergate-reload-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let pid_file = dir.join("infergate.pid");
    let admin = crate::common::net::free_port();
    let server = format!(
        "watch_config = false\nwatch_interval = \"50ms\"\npid_file = \"{}\"\n\
         admin_listen = \"127.0.0.1:{admin}\"",
        pid_file.display()
    );
    let path = dir.join("infergate.toml");
    std::fs::write(&path, config(&hf.url(), &server, &["first"], &[KEY])).unwrap();
    let (mut gw, base) = serve(&path);
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, gw.child.id(), "the pid file names the gateway");
    let path_arg = path.to_str().unwrap();

    // Not watched: a change waits for a reload (a watch would have seen
    // it several times over by now).
    std::fs::write(
        &path,
        config(&hf.url(), &server, &["first", "second"], &[KEY]),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(call(&base, "second", KEY).await, 404);

    // `infergate reload --config`: through the admin listener, which says
    // what the reload did.
    let (code, out, err) = run(&["reload", "--config", path_arg], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("reloaded: config "), "{out}");
    assert_eq!(call(&base, "second", KEY).await, 200);

    // A slow request in flight while a reload removes its route: it
    // finishes on the config it started with; a new one is a 404.
    hf.faults()
        .update(|f| f.latency = Duration::from_millis(1500));
    let before = hf.counters().requests();
    let slow = tokio::spawn({
        let base = base.clone();
        async move { call(&base, "second", KEY).await }
    });
    wait_for("the slow request at the backend", || {
        hf.counters().requests() > before
    })
    .await;
    std::fs::write(&path, config(&hf.url(), &server, &["first"], &[KEY])).unwrap();
    let (code, out, err) = run(
        &["reload", "--url", &format!("http://127.0.0.1:{admin}")],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    hf.faults().update(|f| f.latency = Duration::ZERO);
    assert_eq!(call(&base, "second", KEY).await, 404);
    assert_eq!(slow.await.unwrap(), 200, "the request in flight finished");

    // A bad file: the gateway validates it (with its own environment) and
    // both ways of asking report the refusal with the errors.
    let bad = config(&hf.url(), &server, &["first"], &[KEY]) + "[routes.broken]\nattempts = 0\n";
    std::fs::write(&path, bad).unwrap();
    let url = format!("http://127.0.0.1:{admin}/v1/reload");
    for how in [["--config", path_arg], ["--url", url.as_str()]] {
        let (code, _, err) = run(&["reload", how[0], how[1]], &[]);
        assert_eq!(code, 1, "{how:?}");
        assert!(
            err.contains("refused") && err.contains("routes.broken.attempts"),
            "{how:?}: {err}"
        );
    }
    assert_eq!(call(&base, "first", KEY).await, 200);

    // A setting read only at start is reported and keeps its running
    // value. The file now names an admin listener nothing listens on:
    // `reload --config` falls back to SIGHUP through the pid file.
    let moved = server.replace(&format!("127.0.0.1:{admin}"), "127.0.0.1:1");
    let third = config(&hf.url(), &moved, &["first", "third"], &[KEY]);
    std::fs::write(&path, third).unwrap();
    let (code, out, err) = run(&["reload", "--config", path_arg], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("trying the pid file") && out.starts_with("sent SIGHUP to process"),
        "{out}{err}"
    );
    until_status(&base, "third", KEY, 200, "after SIGHUP").await;
    gw.wait_for("the restart note", |lines| {
        lines
            .iter()
            .any(|l| l.contains("needs a restart") && l.contains("server.admin_listen"))
    })
    .await;
    let admin_metrics = reqwest::get(format!("http://127.0.0.1:{admin}/metrics")).await;
    assert_eq!(
        admin_metrics.unwrap().status(),
        200,
        "the admin listener stays"
    );
    // And SIGHUP by `--pid-file` directly.
    let fourth = config(&hf.url(), &moved, &["first", "fourth"], &[KEY]);
    std::fs::write(&path, fourth).unwrap();
    let (code, out, err) = run(&["reload", "--pid-file", pid_file.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}{err}");
    until_status(&base, "fourth", KEY, 200, "after SIGHUP").await;

    // The pid file goes with the process.
    let kill = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    assert!(kill.unwrap().success());
    assert_eq!(
        wait_timeout(&mut gw.child, Duration::from_secs(15)),
        Some(0)
    );
    gw.stop();
    assert!(!pid_file.exists(), "the pid file was removed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn reload_without_a_way_to_the_gateway_says_what_to_set() {
    let dir = std::env::temp_dir().join(format!("infergate-reload-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("infergate.toml");
    std::fs::write(&path, config("http://127.0.0.1:9", "", &["first"], &[KEY])).unwrap();
    let (code, _, err) = run(&["reload", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("neither server.admin_listen nor server.pid_file"),
        "{err}"
    );
    let (code, _, err) = run(&["reload"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("give --config, --pid-file or --url"), "{err}");
    // A pid file naming another infergate command (an emulator): SIGHUP
    // would end it, and it has nothing to reload.
    let mut emulator = Command::new(BIN);
    emulator.args(["emulate", "huggingface", "--listen", "127.0.0.1:0"]);
    let mut emulator = Running::spawn(emulator, Stream::Stderr);
    let pid_file = dir.join("emulator.pid");
    std::fs::write(&pid_file, emulator.child.id().to_string()).unwrap();
    let (code, _, err) = run(&["reload", "--pid-file", pid_file.to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("is not an infergate gateway"), "{err}");
    assert!(
        emulator.child.try_wait().unwrap().is_none(),
        "the emulator was signalled"
    );
    emulator.stop();
    let missing = dir.join("none.pid");
    let (code, _, err) = run(&["reload", "--pid-file", missing.to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("none.pid"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
