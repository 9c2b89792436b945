//! What `/proc` tells of a process, and of this machine.

use std::path::Path;
use std::process::Command;

// === /proc readings ===

pub fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// utime + stime of a process, in clock ticks (all its threads).
pub fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    field(11).unwrap_or(0) + field(12).unwrap_or(0)
}

/// utime + stime summed over several processes (nginx's master and workers).
pub fn cpu_ticks_all(pids: &[String]) -> u64 {
    pids.iter().map(|p| cpu_ticks(p)).sum()
}

/// The processes whose parent is `pid` (field 4 of `/proc/<pid>/stat`).
pub fn children(pid: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let name = e.ok()?.file_name().into_string().ok()?;
        name.bytes().all(|b| b.is_ascii_digit()).then_some(name)
    })
    .filter(|p| {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        stat.rsplit_once(") ")
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .is_some_and(|ppid| ppid == pid)
    })
    .collect()
}

/// A `kB` line of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), or `Threads`.
pub fn status_value(pid: &str, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Resets the process's peak RSS (`VmHWM`) to its current RSS.
pub fn reset_peak(pid: &str) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

pub fn open_fds(pid: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

pub fn read_first(path: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

pub fn command_output(cmd: &str, args: &[&str]) -> Option<String> {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
}

/// Versions of a few dependencies, from the lockfile.
pub fn locked_versions(names: &[&str]) -> Vec<(String, String)> {
    let lock = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock"))
        .unwrap_or_default();
    let mut out = Vec::new();
    for name in names {
        let header = format!("name = \"{name}\"\nversion = \"");
        if let Some(pos) = lock.find(&header) {
            let rest = &lock[pos + header.len()..];
            if let Some(end) = rest.find('"') {
                out.push(((*name).to_string(), rest[..end].to_string()));
            }
        }
    }
    out
}
