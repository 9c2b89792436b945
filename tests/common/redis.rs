//! A real `redis-server` on a free loopback port, started and stopped by
//! the test that needs it (no persistence, nothing kept after it stops).
//!
//! redis-server must be installed: `scripts/test` (README's test command)
//! and `.ci/run` install Debian's `redis-server` package when it is
//! missing. Without it the test fails and says so; it never skips.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One redis-server process.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    /// What it was started with beyond its port, for a restart.
    extra: Vec<String>,
}

impl RedisServer {
    /// A new server on a free port, answering PING.
    pub fn start() -> Self {
        Self::start_on(super::net::free_port())
    }

    /// A server on `port` (a restart of one stopped before).
    pub fn start_on(port: u16) -> Self {
        Self::start_with(port, Vec::new())
    }

    /// A server on `port` with `extra` arguments, answering PING.
    fn start_with(port: u16, extra: Vec<String>) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ])
            .args(&extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-server ({e}): install it (Debian: apt-get install redis-server) \
                     or run scripts/test, which does"
                )
            });
        let server = Self {
            port,
            child: Some(child),
            extra,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.command("PING").as_deref() != Some("+PONG\r\n") {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The `[rate_limits]` lines that name this server.
    pub fn store(&self) -> String {
        format!("redis_url = \"{}\"", self.url())
    }

    /// Sends one inline command and returns the raw reply, or `None` when
    /// the server cannot be reached.
    pub fn command(&self, command: &str) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        stream.write_all(format!("{command}\r\n").as_bytes()).ok()?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 16384];
        loop {
            let n = stream.read(&mut buf).ok()?;
            reply.extend_from_slice(&buf[..n]);
            if n == 0 || complete(&reply) {
                break;
            }
        }
        String::from_utf8(reply).ok()
    }

    /// The integer reply of `command` (`DBSIZE`, `PTTL key`).
    pub fn integer(&self, command: &str) -> Option<i64> {
        let reply = self.command(command)?;
        reply.strip_prefix(':')?.trim_end().parse().ok()
    }

    /// The bulk string reply of `command` (`RANDOMKEY`); `None` for nil.
    pub fn bulk(&self, command: &str) -> Option<String> {
        let reply = self.command(command)?;
        let (_, rest) = reply.strip_prefix('$')?.split_once("\r\n")?;
        Some(rest.strip_suffix("\r\n")?.to_owned())
    }

    /// How many times `EVALSHA` ran (`INFO commandstats`).
    pub fn evalsha_calls(&self) -> u64 {
        let info = self.command("INFO commandstats").unwrap_or_default();
        info.lines()
            .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
            .and_then(|rest| rest.split(',').next()?.parse().ok())
            .unwrap_or(0)
    }

    /// Stops the server (as a crash would: SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The head of the config of a gateway process sharing a Redis with
/// others: one worker on a free port, `[rate_limits]` on the Redis that
/// `store` names (its lines: [`RedisServer::store`], [`RedisCluster::store`])
/// with a 250ms timeout and `on_error`, and backend `hf` on the emulator at
/// `hf`. The routes and clients follow.
pub fn gateway_config(hf: &str, store: &str, on_error: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
workers = 1

[rate_limits]
store = "redis"
{store}
timeout = "250ms"
on_store_error = "{on_error}"

[backends.hf]
kind = "huggingface"
url = "{hf}"
token = "${{HF_TOKEN}}"
"#
    )
}

/// A Redis Cluster of three primaries on loopback (no replicas), its
/// 16384 slots split in three ranges, one per node in order.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    dir: std::path::PathBuf,
}

impl RedisCluster {
    /// Three nodes, joined and serving every slot (`cluster_state:ok`).
    pub fn start() -> Self {
        let dir = super::child::write_temp("cluster", "")
            .parent()
            .unwrap()
            .to_path_buf();
        let nodes: Vec<RedisServer> = (0..3)
            .map(|i| {
                let node_dir = dir.join(format!("node{i}"));
                std::fs::create_dir(&node_dir).unwrap();
                let extra = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                    "--dir",
                    node_dir.to_str().unwrap(),
                ];
                RedisServer::start_with(cluster_port(), extra.map(str::to_owned).to_vec())
            })
            .collect();
        let ranges = [(0, 5460), (5461, 10922), (10923, 16383)];
        for (node, (first, last)) in nodes.iter().zip(ranges) {
            let added = node.command(&format!("CLUSTER ADDSLOTSRANGE {first} {last}"));
            assert_eq!(added.as_deref(), Some("+OK\r\n"), "{added:?}");
        }
        for other in &nodes[1..] {
            let met = nodes[0].command(&format!("CLUSTER MEET 127.0.0.1 {}", other.port));
            assert_eq!(met.as_deref(), Some("+OK\r\n"), "{met:?}");
        }
        let cluster = Self { nodes, dir };
        cluster.wait_ok();
        cluster
    }

    /// Waits until every node that runs says `cluster_state:ok`.
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.nodes.iter().filter(|n| n.child.is_some()).all(|n| {
            n.command("CLUSTER INFO")
                .is_some_and(|i| i.contains("cluster_state:ok"))
        }) {
            assert!(Instant::now() < deadline, "the cluster did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `redis_urls = [...]` with every node as a seed.
    pub fn urls(&self) -> String {
        let urls: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("\"{}\"", n.url()))
            .collect();
        format!("[{}]", urls.join(", "))
    }

    /// The `[rate_limits]` lines that name this Cluster, every node a seed.
    pub fn store(&self) -> String {
        format!("redis_mode = \"cluster\"\nredis_urls = {}", self.urls())
    }

    /// The index of the node that holds `key`: the others answer `MOVED`.
    pub fn holder(&self, key: &str) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.command(&format!("EXISTS {key}")).as_deref() == Some(":1\r\n"))
    }

    /// Restarts node `i` after [`RedisServer::stop`], on its port and with
    /// its cluster state (its slots), its keys forgotten.
    pub fn restart(&mut self, i: usize) {
        let old = &self.nodes[i];
        self.nodes[i] = RedisServer::start_with(old.port, old.extra.clone());
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A free loopback port whose cluster bus port (10000 above) is free too.
fn cluster_port() -> u16 {
    loop {
        let port = super::net::free_port();
        let bus = port.checked_add(10000);
        if bus.is_some_and(|b| std::net::TcpListener::bind(("127.0.0.1", b)).is_ok()) {
            return port;
        }
    }
}

/// Whether a RESP reply is whole: a simple line, or a bulk string with all
/// its bytes.
fn complete(reply: &[u8]) -> bool {
    let Some(end) = reply.windows(2).position(|w| w == b"\r\n") else {
        return false;
    };
    if reply[0] != b'$' {
        return true;
    }
    let len: i64 = std::str::from_utf8(&reply[1..end])
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    len < 0 || reply.len() >= end + 2 + len as usize + 2
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
