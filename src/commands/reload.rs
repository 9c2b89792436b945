//! `infergate reload`: finds the running gateway and asks it to read its
//! config file again. The gateway validates the file itself, with its own
//! environment and its own file permissions (the command's may differ):
//! asked through its admin listener, it answers with what the reload did;
//! signalled through its pid file, its log says.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::reload::signal_reload;

/// Where `infergate reload` finds the gateway.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    /// The admin listener's base URL.
    admin: Option<String>,
    pid_file: Option<PathBuf>,
}

/// `infergate reload`: by `url`, by `pid_file`, or by what the config file
/// at `config` says (its `server.admin_listen`, falling back to its
/// `server.pid_file` when nothing answers there).
pub fn reload(config: Option<&Path>, pid_file: Option<&Path>, url: Option<&str>) -> ExitCode {
    let target = match (url, pid_file, config) {
        (Some(url), _, _) => Target {
            admin: Some(base_url(url)),
            pid_file: None,
        },
        (None, Some(file), _) => Target {
            admin: None,
            pid_file: Some(file.to_owned()),
        },
        (None, None, Some(path)) => match Target::of_file(path) {
            Ok(target) => target,
            Err(e) => {
                eprintln!("infergate reload: {e}");
                return ExitCode::FAILURE;
            }
        },
        (None, None, None) => {
            eprintln!("infergate reload: give --config, --pid-file or --url");
            return ExitCode::FAILURE;
        }
    };
    if let Some(base) = &target.admin {
        match ask(&format!("{base}/v1/reload")) {
            Asked::Answered(code) => return code,
            Asked::Unreachable(e) if target.pid_file.is_none() => {
                eprintln!("infergate reload: {base}: {e}");
                return ExitCode::FAILURE;
            }
            Asked::Unreachable(e) => {
                eprintln!("infergate reload: {base}: {e}; trying the pid file");
            }
        }
    }
    let Some(file) = target.pid_file else {
        return ExitCode::FAILURE;
    };
    match signal_reload(&file) {
        Ok(pid) => {
            println!("sent SIGHUP to process {pid}; its log says whether the config applied");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("infergate reload: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `url` without a trailing `/` or `/v1/reload`.
fn base_url(url: &str) -> String {
    let url = url.trim_end_matches('/');
    url.strip_suffix("/v1/reload").unwrap_or(url).to_owned()
}

impl Target {
    /// What the file's `[server]` says, read as TOML and not validated
    /// (the gateway does that): its admin listener (on loopback when it
    /// listens on every address) and its pid file.
    fn of_file(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
        let root: toml::Table = text
            .parse()
            .map_err(|e| format!("{shown} is not TOML, nothing sent: {e}"))?;
        let server = root.get("server").and_then(|s| s.as_table());
        let setting = |key: &str| server.and_then(|s| s.get(key)).and_then(|v| v.as_str());
        let admin = match setting("admin_listen") {
            Some(addr) => Some(admin_url(addr).ok_or_else(|| {
                format!("{shown}: server.admin_listen {addr:?} is not an address")
            })?),
            None => None,
        };
        let target = Self {
            admin,
            pid_file: setting("pid_file").map(PathBuf::from),
        };
        if target
            == (Self {
                admin: None,
                pid_file: None,
            })
        {
            return Err(format!(
                "{shown} sets neither server.admin_listen nor server.pid_file; \
                 give --url or --pid-file, or send SIGHUP to the gateway"
            ));
        }
        Ok(target)
    }
}

/// The URL of an admin listener on `addr`.
fn admin_url(addr: &str) -> Option<String> {
    let mut addr: SocketAddr = addr.parse().ok()?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    Some(format!("http://{addr}"))
}

/// How asking the admin listener went.
enum Asked {
    /// It answered; the command's exit code.
    Answered(ExitCode),
    /// Nothing answered there.
    Unreachable(String),
}

/// `POST url` and prints what the reload did.
fn ask(url: &str) -> Asked {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Asked::Answered(ExitCode::FAILURE);
    };
    rt.block_on(async {
        // The gateway is local: no proxy of the environment in between (it
        // would see the admin key).
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .no_proxy()
            .build();
        let Ok(client) = client else {
            return Asked::Answered(ExitCode::FAILURE);
        };
        let mut req = client.post(url);
        if let Ok(key) = std::env::var("INFERGATE_ADMIN_KEY") {
            req = req.bearer_auth(key);
        }
        let res = match req.send().await {
            Ok(res) => res,
            Err(e) if e.is_connect() => return Asked::Unreachable(e.to_string()),
            Err(e) => {
                eprintln!("infergate reload: {url}: {e}");
                return Asked::Answered(ExitCode::FAILURE);
            }
        };
        let status = res.status();
        let body = res.bytes().await.ok();
        let body = body.and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        Asked::Answered(match body {
            Some(body) => print_outcome(status, &body),
            None => {
                eprintln!("infergate reload: {url} answered {status}");
                ExitCode::FAILURE
            }
        })
    })
}

fn print_outcome(status: reqwest::StatusCode, body: &serde_json::Value) -> ExitCode {
    let lines = |key: &str| -> Vec<String> {
        body[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let hash = body["hash"].as_str().unwrap_or("");
    match body["result"].as_str() {
        Some("applied") => {
            println!("reloaded: config {hash} serves now");
            for key in lines("needs_restart") {
                println!("needs a restart (the running value stays): {key}");
            }
            ExitCode::SUCCESS
        }
        Some("rejected") => {
            eprintln!("infergate reload: refused; the running config keeps serving:");
            for e in lines("errors") {
                eprintln!("{e}");
            }
            ExitCode::FAILURE
        }
        _ => {
            let message = body["error"]["message"].as_str().unwrap_or("");
            eprintln!("infergate reload: answered {status}: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_is_found_by_what_the_file_says() {
        let dir = std::env::temp_dir().join(format!("infergate-target-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |text: &str| {
            let path = dir.join(format!("{}.toml", fastrand::u64(..)));
            std::fs::write(&path, text).unwrap();
            Target::of_file(&path)
        };
        // Not validated: a route with errors does not stop the command.
        let both = file(
            "[server]\nadmin_listen = \"0.0.0.0:9090\"\npid_file = \"/run/g.pid\"\n\
             [routes.x]\nattempts = 0\n",
        );
        assert_eq!(
            both.unwrap(),
            Target {
                admin: Some("http://127.0.0.1:9090".into()),
                pid_file: Some("/run/g.pid".into()),
            }
        );
        let v6 = file("[server]\nadmin_listen = \"[::]:9090\"\n").unwrap();
        assert_eq!(v6.admin.as_deref(), Some("http://[::1]:9090"));
        assert!(file("[server]\nadmin_listen = \"nowhere\"\n")
            .unwrap_err()
            .contains("is not an address"));
        assert!(file("[server\n").unwrap_err().contains("is not TOML"));
        assert!(file("[server]\n").unwrap_err().contains("sets neither"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_url_is_taken_with_or_without_the_path() {
        for url in [
            "http://a:1",
            "http://a:1/",
            "http://a:1/v1/reload",
            "http://a:1/v1/reload/",
        ] {
            assert_eq!(base_url(url), "http://a:1", "{url}");
        }
    }
}
