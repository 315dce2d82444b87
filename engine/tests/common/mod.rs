//! Helpers shared by the tests that drive real processes on loopback: the engine's binaries and
//! Debian's Prometheus and promtool. Each test file uses a subset (`mod common;`).
#![allow(dead_code, clippy::disallowed_methods, clippy::disallowed_types)] // Real processes, sockets and files.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// Now, Unix ms.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Raw samples per series (labels as canonical JSON) that `/api/v1/query` at `time_ms` answers
/// for a range selector, values as bits (NaN compares).
pub type Matrix = BTreeMap<String, Vec<(i64, u64)>>;

/// [`Matrix`] of `query` at `time_ms` on `127.0.0.1:port`; `None` when the request or its JSON
/// fails.
pub fn query_matrix(port: u16, query: &str, time_ms: i64) -> Option<Matrix> {
    let encoded: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
    let path = format!("/api/v1/query?query={encoded}&time={:.3}", time_ms as f64 / 1000.0);
    let (status, body) = http_get(port, &path).ok()?;
    if status != 200 {
        return None;
    }
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    let mut matrix = Matrix::new();
    for series in json["data"]["result"].as_array()? {
        // serde_json's maps are sorted by key: the labels print canonically.
        let labels = series["metric"].to_string();
        let samples = series["values"]
            .as_array()?
            .iter()
            .map(|pair| {
                let time_ms = (pair[0].as_f64()? * 1000.0).round() as i64;
                let value = pair[1].as_str()?.parse::<f64>().ok()?;
                Some((time_ms, value.to_bits()))
            })
            .collect::<Option<Vec<_>>>()?;
        matrix.insert(labels, samples);
    }
    Some(matrix)
}

/// A line-by-line account of where `held` differs from `expected`, for a failure message.
pub fn difference(expected_name: &str, expected: &Matrix, held_name: &str, held: &Matrix) -> String {
    let mut text = String::new();
    for (labels, samples) in expected {
        match held.get(labels) {
            None => text.push_str(&format!("missing in {held_name}: {labels} ({} samples)\n", samples.len())),
            Some(got) if got != samples => {
                text.push_str(&format!("differs: {labels}\n  {expected_name} {samples:?}\n  {held_name} {got:?}\n"))
            }
            Some(_) => {}
        }
    }
    for labels in held.keys().filter(|labels| !expected.contains_key(*labels)) {
        text.push_str(&format!("only in {held_name}: {labels}\n"));
    }
    text
}

/// The engine's server binary on `127.0.0.1:port`, its data in `<dir>/<name>-data`; with
/// `config_yaml` written to `<dir>/<name>.yml` (else the embedded configuration); stderr to
/// `<dir>/<log_name>.log`; `extra` flags last. Killed when the handle drops.
pub fn start_engine(
    dir: &Path,
    name: &str,
    log_name: &str,
    port: u16,
    config_yaml: Option<&str>,
    extra: &[String],
) -> Process {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_server"));
    if let Some(yaml) = config_yaml {
        let config = dir.join(format!("{name}.yml"));
        std::fs::write(&config, yaml).unwrap();
        command.arg(format!("--config.file={}", config.display()));
    }
    let log_path = dir.join(format!("{log_name}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let child = command
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--storage.tsdb.path={}", dir.join(format!("{name}-data")).display()))
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .env("NO_COLOR", "1")
        .spawn()
        .expect("start server binary");
    Process { child, log_path }
}

/// The query frontend binary on `127.0.0.1:port` in front of the API on `downstream_port`, with
/// `config_yaml` written to `<dir>/<name>.yml`, stderr to `<dir>/<name>.log`, `extra` flags last.
pub fn start_frontend(
    dir: &Path,
    name: &str,
    port: u16,
    downstream_port: u16,
    config_yaml: &str,
    extra: &[String],
) -> Process {
    let config = dir.join(format!("{name}.yml"));
    std::fs::write(&config, config_yaml).unwrap();
    let log_path = dir.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_frontend"))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--frontend.downstream-url=http://127.0.0.1:{downstream_port}"))
        .arg(format!("--config.file={}", config.display()))
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .env("NO_COLOR", "1")
        .spawn()
        .expect("start frontend binary");
    Process { child, log_path }
}

/// Prometheus (`binary`) on `127.0.0.1:port` with `config_yaml`, its data in
/// `<dir>/prometheus-data`, stderr to `<dir>/<log_name>.log`, `extra` flags last.
pub fn start_prometheus(
    binary: &Path,
    dir: &Path,
    log_name: &str,
    port: u16,
    config_yaml: &str,
    extra: &[&str],
) -> Process {
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, config_yaml).unwrap();
    let log_path = dir.join(format!("{log_name}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let child = std::process::Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--storage.tsdb.path={}", dir.join("prometheus-data").display()))
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    Process { child, log_path }
}

/// `matrix` with `name="value"` added to every series (an external label as a peer sees it).
pub fn with_label(matrix: &Matrix, name: &str, value: &str) -> Matrix {
    matrix
        .iter()
        .map(|(labels, samples)| {
            let mut labels: serde_json::Map<String, serde_json::Value> = serde_json::from_str(labels).unwrap();
            labels.insert(name.to_string(), serde_json::Value::from(value));
            (serde_json::Value::Object(labels).to_string(), samples.clone())
        })
        .collect()
}
