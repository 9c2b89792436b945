//! A real HAProxy in front of gateway replicas on loopback, configured as a
//! deployment in front of several replicas would be: health checks on
//! `/readyz`, retries and redispatch, connection reuse to the replicas. The
//! test starts it with a config of its own and stops it when dropped; its
//! log (one line per request, and every server state change) is kept for
//! the test's failure messages.
//!
//! haproxy must be installed: `scripts/test` installs Debian's `haproxy`
//! package when it is missing. Without it the test fails and says so; it
//! never skips.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::child::{Running, Stream};

/// Where Debian puts the binary, which a normal user's `PATH` may lack.
const CANDIDATES: [&str; 3] = ["haproxy", "/usr/sbin/haproxy", "/usr/local/sbin/haproxy"];

/// The log line of each request: its backend and server, status, bytes,
/// termination state, retries (`+` when redispatched) and timers.
const LOG_FORMAT: &str = "%tr %b/%s status=%ST bytes=%B term=%tsc retries=%rc \
                          Tw/Tc/Tr/Ta=%Tw/%Tc/%Tr/%Ta %{+Q}r";

/// One server behind HAProxy: its name in the stats, a loopback port, and
/// whether HAProxy speaks HTTP/2 to it (h2c, `proto h2`) or HTTP/1.1.
#[derive(Clone, Debug)]
pub struct Server {
    pub name: String,
    pub port: u16,
    pub h2: bool,
}

/// HAProxy's view of its servers, through its stats socket; a handle that
/// another thread can hold.
#[derive(Clone, Debug)]
pub struct Stats {
    socket: PathBuf,
    backend: &'static str,
}

impl Stats {
    /// Each server's status as the stats say it (`UP`, `DOWN`, `UP 1/2`
    /// going down, `DOWN 1/2` coming up, `MAINT`), by name.
    pub fn statuses(&self) -> Vec<(String, String)> {
        let Some(csv) = command(&self.socket, "show stat") else {
            return Vec::new();
        };
        let mut lines = csv.lines();
        let Some(header) = lines.next().and_then(|h| h.strip_prefix("# ")) else {
            return Vec::new();
        };
        let column = |name: &str| header.split(',').position(|c| c == name);
        let (Some(px), Some(sv), Some(st)) = (column("pxname"), column("svname"), column("status"))
        else {
            return Vec::new();
        };
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f.len() > st && f[px] == self.backend)
            .filter(|f| f[sv] != "BACKEND" && f[sv] != "FRONTEND")
            .map(|f| (f[sv].to_string(), f[st].to_string()))
            .collect()
    }
}

/// A running haproxy process, killed when dropped.
pub struct HaProxy {
    pub port: u16,
    /// The backend section's name, as the stats and the log name it.
    pub backend: &'static str,
    socket: PathBuf,
    dir: PathBuf,
    process: Running,
}

/// The haproxy binary, or the failure that tells how to install it.
fn binary() -> String {
    for candidate in CANDIDATES {
        if Command::new(candidate).arg("-v").output().is_ok() {
            return candidate.to_string();
        }
    }
    panic!(
        "haproxy is not installed (looked for {CANDIDATES:?}): install haproxy: \
         apt-get install haproxy, or run scripts/test which installs it"
    );
}

/// The config: a frontend on `port`, the `servers` behind it checked on
/// `/readyz` every 100 ms (two failures down, two successes up), and the
/// retries a deployment in front of non-idempotent POSTs turns on.
fn config(port: u16, socket: &Path, backend: &str, servers: &[Server]) -> String {
    let servers: String = servers
        .iter()
        .map(|s| {
            let proto = if s.h2 { " proto h2" } else { "" };
            format!("    server {} 127.0.0.1:{} check{proto}\n", s.name, s.port)
        })
        .collect();
    format!(
        r#"global
    log stdout format raw local0 info
    stats socket {socket} mode 600 level admin
    maxconn 4096

defaults
    mode http
    log global
    log-format "{LOG_FORMAT}"
    option log-health-checks
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    timeout http-keep-alive 5s
    timeout check 1s
    # A request refused, or answered with nothing at all (a replica that
    # closed a pooled connection as the request went out), is sent again,
    # to another replica each time. POSTs included: this is what makes a
    # POST retryable to HAProxy at all; the body must fit one buffer.
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout

frontend gateway
    bind 127.0.0.1:{port}
    default_backend {backend}

backend {backend}
    balance roundrobin
    http-reuse safe
    http-response set-header x-served-by %s
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 100ms fastinter 100ms downinter 100ms fall 2 rise 2
{servers}"#,
        socket = socket.display(),
    )
}

impl HaProxy {
    /// Starts haproxy in front of `servers` on a free loopback port and
    /// waits until its stats socket answers.
    pub fn start(servers: &[Server]) -> Self {
        let binary = binary();
        let port = super::net::free_port();
        let dir = std::env::temp_dir().join(format!(
            "infergate-haproxy-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("admin.sock");
        let backend = "replicas";
        let cfg = dir.join("haproxy.cfg");
        std::fs::write(&cfg, config(port, &socket, backend, servers)).unwrap();
        let mut cmd = Command::new(&binary);
        // -db: in the foreground, logging to this process's stdout.
        cmd.arg("-db").arg("-f").arg(&cfg);
        let mut process = Running::spawn(cmd, Stream::Stdout);
        let proxy_deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = process.child.try_wait() {
                process.stop();
                panic!(
                    "haproxy exited at start ({status}):\n{}\nconfig:\n{}",
                    process.output(),
                    std::fs::read_to_string(&cfg).unwrap_or_default()
                );
            }
            if command(&socket, "show info").is_some_and(|s| s.contains("Name: HAProxy")) {
                break;
            }
            assert!(
                Instant::now() < proxy_deadline,
                "haproxy's stats socket never answered:\n{}",
                process.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            port,
            backend,
            socket,
            dir,
            process,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A handle on its stats socket.
    pub fn stats(&self) -> Stats {
        Stats {
            socket: self.socket.clone(),
            backend: self.backend,
        }
    }

    /// Each server's status, by name ([`Stats::statuses`]).
    pub fn statuses(&self) -> Vec<(String, String)> {
        self.stats().statuses()
    }

    /// `server`'s status, if the stats have it.
    pub fn status(&self, server: &str) -> Option<String> {
        self.statuses()
            .into_iter()
            .find(|(name, _)| name == server)
            .map(|(_, status)| status)
    }

    /// Everything haproxy wrote so far, both streams.
    pub fn log(&self) -> String {
        self.process.output()
    }

    /// The log lines worth reading after a failure: server state changes,
    /// health checks that changed something, and every request that was
    /// retried, redispatched, or did not end as a clean 200.
    pub fn notable_log(&self) -> String {
        self.log()
            .lines()
            // haproxy writes state changes to its log and again to
            // stderr as warnings: once is enough.
            .filter(|l| !l.starts_with("[WARNING]"))
            .filter(|l| {
                let request = l.contains(" status=");
                !request
                    || !l.contains(" status=200 ")
                    || !l.contains(" term=---- ")
                    || !l.contains(" retries=0 ")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Why HAProxy took `server` out of rotation, each time it did: the
    /// reason of the health check that turned it DOWN (`Layer7 wrong
    /// status, code: 503` for a 503 answer, `Layer4 connection problem`
    /// for a refused connection).
    pub fn down_reasons(&self, server: &str) -> Vec<String> {
        let check = format!("Health check for server {}/{server} failed, ", self.backend);
        let down = format!("Server {}/{server} is DOWN", self.backend);
        let mut last = None;
        let mut reasons = Vec::new();
        for line in self.log().lines().filter(|l| !l.starts_with("[WARNING]")) {
            if let Some(rest) = line.strip_prefix(&check) {
                let reason = rest.strip_prefix("reason: ").unwrap_or(rest);
                let reason = reason.split(", check duration").next().unwrap_or(reason);
                last = Some(reason.to_string());
            } else if line.starts_with(&down) {
                reasons.push(
                    last.take()
                        .unwrap_or_else(|| format!("no check before: {line}")),
                );
            }
        }
        reasons
    }

    /// How many requests the log shows retried (`retries` above 0), and
    /// how many of those went to another server (`+`).
    pub fn retried(&self) -> (usize, usize) {
        let log = self.log();
        let retries: Vec<&str> = log
            .lines()
            .filter_map(|l| l.split(" retries=").nth(1)?.split(' ').next())
            .filter(|r| *r != "0")
            .collect();
        let redispatched = retries.iter().filter(|r| r.starts_with('+')).count();
        (retries.len(), redispatched)
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.process.child.kill();
        let _ = self.process.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One command on the stats socket; its whole answer, or `None` when the
/// socket cannot be reached.
fn command(socket: &Path, command: &str) -> Option<String> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(format!("{command}\n").as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}
