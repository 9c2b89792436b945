//! What `/proc` tells of a process, and of this machine.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

// === /proc readings ===

/// The CPU time of every thread of some processes, in ns, by thread:
/// `/proc/<pid>/task/<tid>/schedstat`'s first field, the scheduler's own
/// count of time on a CPU. utime + stime of `/proc/<pid>/stat` are in
/// clock ticks (10 ms), as coarse as the difference a slice measures.
pub struct CpuSample(HashMap<(String, String), u64>);

impl CpuSample {
    /// The threads of `pids` now (`"self"` for this process).
    pub fn of(pids: &[String]) -> Self {
        let mut threads = HashMap::new();
        for pid in pids {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                continue;
            };
            for task in tasks.flatten() {
                let tid = task.file_name().to_string_lossy().into_owned();
                if let Some(ns) = thread_ns(&task.path()) {
                    threads.insert((pid.clone(), tid), ns);
                }
            }
        }
        Self(threads)
    }

    /// The CPU time the same processes spent since `before`: every thread
    /// alive now, less what it had then. A thread that ended since counts
    /// no more.
    pub fn since(&self, before: &Self) -> u64 {
        self.0
            .iter()
            .map(|(thread, &ns)| ns.saturating_sub(before.0.get(thread).copied().unwrap_or(0)))
            .sum()
    }
}

fn thread_ns(task: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(task.join("schedstat")).ok()?;
    text.split_whitespace().next()?.parse().ok()
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
