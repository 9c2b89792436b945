//! The gateway as its own process: its config, binary and log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::net::free_port;
use crate::{ACCESS_KEY, ENDPOINT, HF_TOKEN, REGION, SECRET_KEY};

// === the gateway process ===

pub struct GatewayProcess {
    pub child: Child,
    pub pid: String,
    pub base: String,
    pub log: PathBuf,
    pub config: PathBuf,
}

impl GatewayProcess {
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

/// The gateway binary: the one cargo built for this bench, or
/// `INFERGATE_BENCH_GATEWAY` (another build, to compare two in one session).
pub fn gateway_bin() -> PathBuf {
    let bin = std::env::var_os("INFERGATE_BENCH_GATEWAY").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_infergate")),
        PathBuf::from,
    );
    if !bin.exists() {
        eprintln!(
            "load bench: the gateway binary {} does not exist; run `cargo bench --bench load` \
             (which builds it) or `cargo build --release` first",
            bin.display()
        );
        std::process::exit(2);
    }
    bin
}

pub fn target_dir() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_infergate"));
    bin.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// The bench's gateway config: routes over the emulators at `sm`, `hf`
/// and `slow`, and `hf-shadowed`'s shadow at `candidate`.
pub fn gateway_config(
    sm: &str,
    hf: &str,
    slow: &str,
    candidate: &str,
    workers: Option<usize>,
) -> String {
    let workers = workers.map_or(String::new(), |n| format!("workers = {n}\n"));
    format!(
        r#"# Written by benches/load.rs.
[server]
listen = "127.0.0.1:0"
request_timeout = "30s"
shutdown_grace = "1s"
{workers}
[backends.hf]
kind = "huggingface"
url = "{hf}"
token = "${{HF_TOKEN}}"

[backends.slow]
kind = "huggingface"
url = "{slow}"
token = "${{HF_TOKEN}}"

[backends.sm]
kind = "sagemaker"
endpoint_name = "{ENDPOINT}"
region = "{REGION}"
endpoint_url = "{sm}"

[routes.hf]
backends = ["hf"]

[routes.sm]
backends = ["sm"]

[routes.slow]
backends = ["slow"]

# `--only shadow`: every request also sent to a candidate, and the same
# request served from the cache.
[backends.hf-candidate]
kind = "huggingface"
url = "{candidate}"
token = "${{HF_TOKEN}}"

[routes.hf-shadowed]
backends = ["hf"]
shadow = [{{ backend = "hf-candidate", percent = 100 }}]

[routes.hf-cached]
backends = ["hf"]
cache = {{ ttl = "1h" }}
"#
    )
}

pub fn start_gateway(config: &str, log_level: Option<&str>) -> GatewayProcess {
    start_named(config, log_level, "gateway")
}

/// The same, its config and log named after `name` (several run at once).
pub fn start_named(config: &str, log_level: Option<&str>, name: &str) -> GatewayProcess {
    let bin = gateway_bin();
    let dir = target_dir();
    let path = std::env::temp_dir().join(format!(
        "infergate-bench-{name}-{}.toml",
        std::process::id()
    ));
    std::fs::write(&path, config).unwrap();
    let log = dir.join(format!("infergate-bench-{name}.log"));
    let log_file = std::fs::File::create(&log).unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(&bin);
    cmd.args(["serve", "--config"])
        .arg(&path)
        .args(["--listen", &listen])
        .env_clear()
        .env("HOME", std::env::temp_dir())
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("HF_TOKEN", HF_TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_file));
    if let Some(level) = log_level {
        cmd.env("INFERGATE_LOG_LEVEL", level);
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {}: {e}", bin.display()));
    let pid = child.id().to_string();
    GatewayProcess {
        child,
        pid,
        base: format!("http://{listen}"),
        log,
        config: path,
    }
}
