//! The pid file (`server.pid_file`): written while the gateway runs, so
//! that `infergate reload` can find the process and send it SIGHUP. A
//! stale file (the gateway killed, its id since taken by another process)
//! must not get an unrelated process signalled: SIGHUP's default action
//! ends a process.

use std::path::{Path, PathBuf};

/// The process id in a file while the gateway runs; removed when dropped,
/// if it still names this process.
#[derive(Debug)]
pub struct PidFile(PathBuf);

impl PidFile {
    /// Written whole or not at all: to a file beside it, then renamed.
    pub fn write(path: &Path) -> std::io::Result<Self> {
        let fail = |e: std::io::Error| {
            std::io::Error::new(e.kind(), format!("server.pid_file {}: {e}", path.display()))
        };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        std::fs::write(&tmp, format!("{}\n", std::process::id())).map_err(fail)?;
        std::fs::rename(&tmp, path).map_err(fail)?;
        Ok(Self(path.to_owned()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
            == Some(std::process::id());
        if ours {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// Sends SIGHUP to the `infergate serve` process whose id `pid_file`
/// holds; its id.
pub fn signal_reload(pid_file: &Path) -> Result<u32, String> {
    let shown = pid_file.display();
    let text = std::fs::read_to_string(pid_file).map_err(|e| format!("{shown}: {e}"))?;
    // A positive id above init's only: 0, -1 and -N would signal a group
    // or every process the user may signal.
    let id = text
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|&id| id > 1)
        .ok_or_else(|| format!("{shown}: {:?} is not a process id", text.trim()))?;
    if !is_infergate(id) {
        return Err(format!(
            "{shown}: process {id} is not an infergate gateway (infergate serve; the file is stale?); nothing sent"
        ));
    }
    let pid = i32::try_from(id)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| format!("{shown}: {id} is not a process id"))?;
    rustix::process::kill_process(pid, rustix::process::Signal::HUP)
        .map_err(|e| format!("process {id} of {shown}: {e}"))?;
    Ok(id)
}

/// Whether process `id` is another process running `infergate serve` (its
/// binary named so, or this very program), as far as `/proc` says; without
/// `/proc` (not Linux), taken on trust. An emulator or the demo, the same
/// binary, has no reload to do, and SIGHUP would end it.
fn is_infergate(id: u32) -> bool {
    if id == std::process::id() {
        return false;
    }
    let proc = Path::new("/proc");
    if !proc.is_dir() {
        return true;
    }
    let dir = proc.join(id.to_string());
    let Ok(cmdline) = std::fs::read(dir.join("cmdline")) else {
        return false;
    };
    let mut args = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned());
    let argv0 = PathBuf::from(args.next().unwrap_or_default());
    if !args.any(|a| a == "serve") {
        return false;
    }
    // The binary, or (when its link may not be read) the command line's.
    let program = std::fs::read_link(dir.join("exe")).unwrap_or(argv0);
    // A binary replaced by an upgrade since it started reads "(deleted)".
    let program = program.to_string_lossy();
    let program = Path::new(program.trim_end_matches(" (deleted)"));
    program.file_name().is_some_and(|n| n == "infergate")
        || std::env::current_exe().is_ok_and(|me| me == program)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(contents: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("infergate-pid-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("infergate.pid");
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn only_a_single_process_above_init_is_signalled() {
        for junk in ["-1", "0", "1", "-42", "abc", ""] {
            let err = signal_reload(&file(junk)).unwrap_err();
            assert!(err.contains("is not a process id"), "{junk}: {err}");
        }
    }

    #[test]
    fn a_stale_file_naming_another_program_sends_nothing() {
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let err = signal_reload(&file(&other.id().to_string())).unwrap_err();
        assert!(err.contains("not an infergate gateway"), "{err}");
        assert!(other.try_wait().unwrap().is_none(), "it was signalled");
        let _ = other.kill();
        let _ = other.wait();
        // Nor this very process.
        let err = signal_reload(&file(&std::process::id().to_string())).unwrap_err();
        assert!(err.contains("not an infergate gateway"), "{err}");
    }

    #[test]
    fn the_file_goes_with_its_process_only_if_it_still_names_it() {
        let path = file("");
        drop(PidFile::write(&path).unwrap());
        assert!(!path.exists());
        let written = PidFile::write(&path).unwrap();
        // Another gateway took the file over meanwhile.
        std::fs::write(&path, "4242\n").unwrap();
        drop(written);
        assert!(path.exists(), "another process's pid file was removed");
    }
}
