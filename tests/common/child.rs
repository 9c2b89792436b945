//! The `infergate` binary as a child process: its output lines collected as
//! they come, bounded waits on them, a gateway serving a config file
//! ([`ChildGateway`]), and temporary config files.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::wait::poll;

/// The binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_infergate");

/// Longest a child process is waited for: to start, to print, to exit.
pub const CHILD_WAIT: Duration = Duration::from_secs(30);

/// Which output stream of a child a test watches.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A child process whose stdout and stderr lines are collected as they come.
pub struct Running {
    pub child: Child,
    /// Every line of both streams, in arrival order, with its stream.
    lines: Arc<Mutex<Vec<(Stream, String)>>>,
    /// The watched stream's lines, for [`Running::wait_for_line`].
    watched: mpsc::Receiver<String>,
    watch: Stream,
    /// One message from each reader thread when its stream ends.
    ended: mpsc::Receiver<()>,
}

impl Running {
    pub fn spawn(mut cmd: Command, watch: Stream) -> Self {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let lines: Arc<Mutex<Vec<(Stream, String)>>> = Arc::default();
        let (tx, watched) = mpsc::channel();
        let (end_tx, ended) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        for (stream, which) in [
            (Box::new(stdout) as Box<dyn Read + Send>, Stream::Stdout),
            (Box::new(stderr) as Box<dyn Read + Send>, Stream::Stderr),
        ] {
            let (lines, tx, end_tx) = (lines.clone(), tx.clone(), end_tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push((which, line.clone()));
                    if which == watch {
                        let _ = tx.send(line);
                    }
                }
                let _ = end_tx.send(());
            });
        }
        Self {
            child,
            lines,
            watched,
            watch,
            ended,
        }
    }

    /// The watched stream's lines so far.
    pub fn lines(&self) -> Vec<String> {
        let all = self.lines.lock().unwrap();
        all.iter()
            .filter(|(s, _)| *s == self.watch)
            .map(|(_, l)| l.clone())
            .collect()
    }

    /// Both streams' lines so far, in arrival order.
    pub fn output(&self) -> String {
        let all = self.lines.lock().unwrap();
        all.iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Blocks until a line containing `needle` comes on the watched stream.
    pub fn wait_for_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + CHILD_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.watched.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => continue,
                Err(_) => panic!("no line with {needle:?}; output so far:\n{}", self.output()),
            }
        }
    }

    /// Waits until the watched stream's lines satisfy `pred`.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[String]) -> bool) {
        if poll(CHILD_WAIT, || pred(&self.lines()).then_some(()))
            .await
            .is_none()
        {
            panic!("timed out waiting for {what}:\n{}", self.output());
        }
    }

    /// Kills the child (if it still runs) and waits until both of its
    /// streams have been read to the end, so every line it wrote is in.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let deadline = Instant::now() + CHILD_WAIT;
        for _ in 0..2 {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.ended.recv_timeout(left).is_err() {
                panic!("the child's output never ended:\n{}", self.output());
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every variable a child gateway must not inherit from whoever runs the
/// tests: a test names its proxies itself.
pub const PROXY_VARS: [&str; 8] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// The gateway binary serving `config` from a file of its own, with
/// `HF_TOKEN` set, none of the caller's proxy variables, and `env` added;
/// its stderr is the log. Killed when dropped.
pub struct ChildGateway {
    pub base: String,
    pub process: Running,
}

impl ChildGateway {
    pub fn start(config: &str, env: &[(&str, &str)]) -> Self {
        let path = write_temp("infergate.toml", config);
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--config", path.to_str().unwrap()])
            .env_remove("INFERGATE_CONFIG")
            .env("HF_TOKEN", super::HF_TOKEN);
        for var in PROXY_VARS {
            cmd.env_remove(var);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let process = Running::spawn(cmd, Stream::Stderr);
        let line = process.wait_for_line("infergate listening");
        Self {
            base: format!("http://{}", listen_addr(&line)),
            process,
        }
    }

    /// Stops the process and gives everything it logged.
    pub fn stop(mut self) -> String {
        self.process.stop();
        self.process.output()
    }
}

/// Runs the binary to its end with `args` and extra environment variables
/// (no `INFERGATE_CONFIG` from the caller's): its exit code, stdout, stderr.
pub fn run(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("INFERGATE_CONFIG");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Polls the child until it exits, at most `limit`; kills it past that.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

/// The listening address from the gateway's start line, text or JSON.
pub fn listen_addr(line: &str) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
        return v["listen"].as_str().unwrap().to_string();
    }
    line.split("listen=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Writes `contents` to `name` in a new directory of its own.
pub fn write_temp(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "infergate-test-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}
