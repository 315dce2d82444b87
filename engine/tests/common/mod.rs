//! Helpers shared by the tests that drive real processes on loopback: the engine's binaries and
//! Debian's Prometheus and promtool. Each test file uses a subset (`mod common;`).
#![allow(dead_code, clippy::disallowed_methods, clippy::disallowed_types)] // Real processes, sockets and files.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// A child process, killed with SIGKILL (no clean shutdown, as after a crash) when dropped.
pub struct Process {
    /// The process.
    pub child: Child,
    /// Where its stderr goes.
    pub log_path: PathBuf,
}

impl Process {
    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The peer binary at `path`, or `None` (test skipped) when it is not installed; under
/// `ENGINE_PEER_TESTS=1` (CI) a missing peer fails the test instead.
pub fn peer(path: &str) -> Option<PathBuf> {
    let path = Path::new(path);
    if path.exists() {
        return Some(path.to_path_buf());
    }
    if std::env::var("ENGINE_PEER_TESTS").as_deref() == Ok("1") {
        panic!("ENGINE_PEER_TESTS=1 but {} is not installed (apt-get install prometheus)", path.display());
    }
    eprintln!("skipped: {} not installed (set ENGINE_PEER_TESTS=1 to require it)", path.display());
    None
}

/// A loopback port free right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A fresh, empty temporary directory named for the test file (`prefix`) and the test.
pub fn temp_dir(prefix: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A plain HTTP/1.0 GET to `127.0.0.1:port`; the status code and the body.
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.get(9..12).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// Polls `path` until a 200 answer's body satisfies `accept`, for at most `wait_s_max` seconds;
/// panics with `process`' log otherwise.
pub fn wait_for_body(
    port: u16,
    path: &str,
    wait_s_max: u64,
    process: &Process,
    accept: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(wait_s_max);
    loop {
        if let Ok((200, body)) = http_get(port, path) {
            if accept(&body) {
                return body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no acceptable answer to {path} within {wait_s_max} s; log:\n{}",
            process.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
