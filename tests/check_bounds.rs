//! `infergate check` refuses server settings past their bounds, with the key
//! path and the bound, even when the value is far beyond what the type holds.

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    const BIN: &str = env!("CARGO_BIN_EXE_infergate");

    /// One backend and one route: the least a config needs to be valid, so
    /// that the `[server]` line under test is the only error.
    const VALID_REST: &str = r#"
[backends.hf]
kind = "huggingface"
url = "http://127.0.0.1:9"

[routes.r]
backends = ["hf"]
"#;

    /// A directory of its own, removed when the test ends (passing or not).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(format!(
                "infergate-check-bounds-{}-{}",
                std::process::id(),
                fastrand::u64(..)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn write(&self, name: &str, contents: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, contents).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// `infergate check --config PATH`: exit code and both streams together.
    fn check(path: &Path) -> (i32, String) {
        let out = Command::new(BIN)
            .args(["check", "--config", path.to_str().unwrap()])
            .env_remove("INFERGATE_CONFIG")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }

    fn assert_refused(server_line: &str, expected: &str) {
        let dir = TempDir::new();
        let path = dir.write(
            "bounds.toml",
            &format!("[server]\n{server_line}\n{VALID_REST}"),
        );
        let (code, output) = check(&path);
        assert_eq!(code, 1, "{output}");
        assert!(output.contains(expected), "{output}");
    }

    #[test]
    fn a_header_read_timeout_of_centuries_is_refused_with_its_bound() {
        assert_refused(
            r#"header_read_timeout = "292277024626y""#,
            "server.header_read_timeout: must be at most 1h",
        );
    }

    #[test]
    fn max_connections_past_u32_is_refused_with_its_bound() {
        assert_refused(
            "max_connections = 4294967296",
            "server.max_connections: must be at most 1000000",
        );
    }
}
