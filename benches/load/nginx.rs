//! nginx as the baseline a user would compare the gateway with: the same HF
//! emulator behind a plain `proxy_pass`, started as its own process when an
//! `nginx` binary is found, and stopped when dropped (a panic included).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::net::free_port;
use crate::procfs::children;
use crate::HF_TOKEN;

// === finding and configuring nginx ===

/// `INFERGATE_BENCH_NGINX`, else `nginx` on `PATH` (or in `/usr/sbin`,
/// where distributions put it, often off a user's `PATH`).
pub fn nginx_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("INFERGATE_BENCH_NGINX") {
        return Some(PathBuf::from(p)).filter(|p| p.exists());
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|p| p.is_file())
}

/// A config as close to the gateway's setup as nginx allows: as many
/// workers, a keep-alive pool to the emulator, no buffering of streams, an
/// access log batched in memory (as the gateway's is by its writer) rather
/// than a write per request.
pub fn nginx_config(dir: &Path, port: u16, hf_port: u16, workers: usize) -> String {
    let d = dir.display();
    format!(
        r#"# Written by benches/load/nginx.rs.
daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile 20000;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{
    worker_connections 8192;
}}
http {{
    access_log {d}/access.log combined buffer=64k flush=100ms;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    # nginx closes a client connection after 1,000 requests by default, an
    # upstream one too: the gateway closes neither, so neither does nginx.
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    tcp_nodelay on;
    upstream hf {{
        server 127.0.0.1:{hf_port};
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Authorization "Bearer {HF_TOKEN}";
        location = /v1/predict/hf {{
            proxy_pass http://hf/;
        }}
        location = /v1/predict/hf/stream {{
            proxy_buffering off;
            proxy_pass http://hf/generate_stream;
        }}
        location = /nginx-ready {{
            access_log off;
            return 200 "ready\n";
        }}
    }}
}}
"#
    )
}

// === the nginx process ===

pub struct NginxProcess {
    pub child: Child,
    /// The master's pid.
    pub pid: String,
    pub base: String,
    pub dir: PathBuf,
    pub bin: PathBuf,
    pub version: String,
}

impl NginxProcess {
    /// Starts nginx in a fresh temporary prefix and waits until it answers.
    pub fn start(bin: PathBuf, hf_port: u16, workers: usize) -> Result<Self, String> {
        let dir =
            std::env::temp_dir().join(format!("infergate-bench-nginx-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let port = free_port();
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, nginx_config(&dir, port, hf_port, workers))
            .map_err(|e| format!("{}: {e}", conf.display()))?;
        let version = Command::new(&bin)
            .arg("-v")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stderr).ok())
            .and_then(|s| s.trim().strip_prefix("nginx version: ").map(str::to_string))
            .unwrap_or_else(|| "nginx (version unknown)".into());
        let child = Command::new(&bin)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            // The log nginx writes before it has read its config.
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("could not start {}: {e}", bin.display()))?;
        let mut n = NginxProcess {
            pid: child.id().to_string(),
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
            bin,
            version,
        };
        let ready_by = Instant::now() + Duration::from_secs(10);
        loop {
            if !matches!(n.child.try_wait(), Ok(None)) {
                return Err(format!("nginx exited:\n{}", n.error_log()));
            }
            if ready(port) && n.workers().len() >= workers {
                return Ok(n);
            }
            if Instant::now() > ready_by {
                return Err(format!("nginx did not answer:\n{}", n.error_log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The master and its workers: whose CPU time is nginx's.
    pub fn pids(&self) -> Vec<String> {
        let mut pids = vec![self.pid.clone()];
        pids.extend(self.workers());
        pids
    }

    fn workers(&self) -> Vec<String> {
        children(&self.pid)
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for NginxProcess {
    fn drop(&mut self) {
        // SIGKILL to the master alone would orphan the workers (they leave
        // when they see the master gone, but not at once): stop them too.
        let pids = self.pids();
        let _ = Command::new("kill")
            .arg("-TERM")
            .args(&pids)
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether `GET /nginx-ready` answers 200 (a blocking one-shot request).
fn ready(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"GET /nginx-ready HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"HTTP/1.1 200"))
}
