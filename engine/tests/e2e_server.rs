//! End-to-end tests of the `server` binary as a user runs it: real sockets, real disk, real
//! processes. Peer tests (node-exporter, promtool from Debian) run when the peers are installed,
//! and must run when `ENGINE_PEER_TESTS=1` (CI sets it after installing them).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // Tests drive real processes, sockets and files.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Deadline for the server to produce a wanted answer.
const WAIT_S_MAX: u64 = 20;

struct Process {
    child: Child,
    log_path: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("engine-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn start_server(dir: &Path, port: u16, config: Option<&Path>) -> Process {
    static START_COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let start_index = START_COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let log_path = dir.join(format!("server-{start_index}.log"));
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_server"));
    command
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .stdout(Stdio::null())
        .stderr(log)
        .env("NO_COLOR", "1");
    if let Some(config) = config {
        command.arg(format!("--config.file={}", config.display()));
    }
    Process { child: command.spawn().expect("start server binary"), log_path }
}

/// A plain HTTP/1.0 GET; returns status code and body.
fn http_get(address: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.get(9..12).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default();
    Ok((status, body))
}

fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn query(port: u16, promql: &str, time: Option<f64>) -> serde_json::Value {
    let mut path = format!("/api/v1/query?query={}", encode(promql));
    if let Some(time) = time {
        path.push_str(&format!("&time={time}"));
    }
    let (status, body) = http_get(&format!("127.0.0.1:{port}"), &path).unwrap_or((0, String::new()));
    if status != 200 {
        return serde_json::Value::Null;
    }
    serde_json::from_str(&body).unwrap_or(serde_json::Value::Null)
}

/// Polls `promql` until `accept` holds for its result array, or panics with the last answer.
fn wait_for(
    port: u16,
    promql: &str,
    accept: impl Fn(&[serde_json::Value]) -> bool,
    process: &Process,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(WAIT_S_MAX);
    let mut last = serde_json::Value::Null;
    while Instant::now() < deadline {
        last = query(port, promql, None);
        if let Some(result) = last["data"]["result"].as_array() {
            if accept(result) {
                return result.clone();
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "no acceptable answer to {promql} within {WAIT_S_MAX} s; last answer: {last}\nserver log:\n{}",
        process.log()
    );
}

fn value_of(sample: &serde_json::Value) -> f64 {
    sample["value"][1].as_str().and_then(|text| text.parse().ok()).unwrap_or(f64::NAN)
}

/// Serves `body` to every HTTP request on a background thread; returns the port.
fn serve_static(body: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buffer = [0_u8; 4096];
            let _ = stream.read(&mut buffer);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// Every sample of every series, as series text -> timestamp text -> value text.
fn all_samples(port: u16, time_s: f64) -> BTreeMap<String, BTreeMap<String, String>> {
    let answer = query(port, "{__name__=~\".+\"}[1h]", Some(time_s));
    let mut samples = BTreeMap::new();
    for series in answer["data"]["result"].as_array().cloned().unwrap_or_default() {
        let points = series["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|point| (point[0].to_string(), point[1].as_str().unwrap().to_string()))
            .collect();
        samples.insert(series["metric"].to_string(), points);
    }
    samples
}

fn now_s() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

#[test]
fn default_config_scrapes_itself() {
    let dir = temp_dir("default");
    let port = free_port();
    let server = start_server(&dir, port, None);
    let result = wait_for(port, "up", |result| result.len() == 1 && value_of(&result[0]) == 1.0, &server);
    assert_eq!(result[0]["metric"]["job"], "engine");
    assert_eq!(result[0]["metric"]["instance"], format!("localhost:{port}"));
    assert_eq!(result[0]["metric"]["__name__"], "up");
    let (status, body) = http_get(&format!("127.0.0.1:{port}"), "/-/ready").unwrap();
    assert_eq!((status, body.as_str()), (200, "Engine is Ready.\n"));
    let (status, body) = http_get(&format!("127.0.0.1:{port}"), "/api/v1/query?query=sum(").unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"errorType\":\"bad_data\""), "{body}");
    // What Grafana's "Save & test" calls: 1+1, then buildinfo.
    let (status, body) = http_get(&format!("127.0.0.1:{port}"), "/api/v1/query?query=1%2B1").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"resultType\":\"scalar\"") && body.contains(",\"2\"]"), "{body}");
    let (status, body) = http_get(&format!("127.0.0.1:{port}"), "/api/v1/status/buildinfo").unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_get(&format!("127.0.0.1:{port}"), "/api/v1/status/flags").unwrap();
    assert_eq!(status, 200, "{body}");
    let flags: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(flags["data"]["web.listen-address"], format!("127.0.0.1:{port}"), "{body}");
    assert_eq!(flags["data"]["query.max-concurrency"], "20", "{body}");
    let (status, body) = http_get(&format!("127.0.0.1:{port}"), "/api/v1/status/config").unwrap();
    assert_eq!(status, 200, "{body}");
    let config: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(config["data"]["yaml"].as_str().unwrap().contains("job_name: engine"), "{body}");
    let (status, body) = http_get(&format!("127.0.0.1:{port}"), "/api/v1/status/runtimeinfo").unwrap();
    assert_eq!(status, 200, "{body}");
    let info: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["data"]["reloadConfigSuccess"], true, "{body}");
    assert_eq!(info["data"]["storageRetention"], "15d", "{body}");
    assert!(!info["data"]["CWD"].as_str().unwrap().is_empty(), "{body}");
    assert!(info["data"]["startTime"].as_str().unwrap().ends_with('Z'), "{body}");
    let (status, body) = http_get(&format!("127.0.0.1:{port}"), "/api/v1/parse_query?query=up%2B1").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"type\":\"binaryExpr\""), "{body}");
}

#[test]
fn malformed_target_is_down_others_unaffected_and_kill_9_loses_nothing() {
    let dir = temp_dir("kill9");
    let good_port = serve_static("# TYPE good gauge\ngood{a=\"1\"} 42\ngood{a=\"2\"} NaN\n");
    let bad_port = serve_static("# TYPE bad gauge\nbad{a=\"1\" 1\n");
    let config = dir.join("engine.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 500ms\nscrape_configs:\n  - job_name: good\n    static_configs:\n      - targets: ['127.0.0.1:{good_port}']\n  - job_name: broken\n    static_configs:\n      - targets: ['127.0.0.1:{bad_port}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let server = start_server(&dir, port, Some(&config));
    wait_for(port, "up{job=\"broken\"}", |result| result.len() == 1 && value_of(&result[0]) == 0.0, &server);
    wait_for(port, "good", |result| result.len() == 2, &server);
    // Let a few more scrapes commit, then snapshot and kill without warning.
    std::thread::sleep(Duration::from_secs(3));
    wait_for(port, "up{job=\"good\"}", |result| result.len() == 1 && value_of(&result[0]) == 1.0, &server);
    let log = server.log();
    assert!(log.contains("line 2, column"), "the parse error must name line and column; log:\n{log}");
    let (status, body) = http_get(&format!("127.0.0.1:{port}"), "/api/v1/targets?state=active").unwrap();
    assert_eq!(status, 200, "{body}");
    let targets: serde_json::Value = serde_json::from_str(&body).unwrap();
    let active = targets["data"]["activeTargets"].as_array().unwrap();
    let health_of = |pool: &str| active.iter().find(|target| target["scrapePool"] == pool).unwrap().clone();
    assert_eq!(health_of("good")["health"], "up", "{body}");
    assert_eq!(health_of("broken")["health"], "down", "{body}");
    assert!(health_of("broken")["lastError"].as_str().unwrap().contains("line 2"), "{body}");
    assert_eq!(health_of("good")["scrapeUrl"], format!("http://127.0.0.1:{good_port}/metrics"));
    let (status, body) = http_get(&format!("127.0.0.1:{port}"), "/api/v1/metadata?metric=good").unwrap();
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"status":"success","data":{"good":[{"type":"gauge","help":"","unit":""}]}}"#)
    );
    let snapshot_time_s = now_s();
    let before = all_samples(port, snapshot_time_s);
    let sample_count: usize = before.values().map(BTreeMap::len).sum();
    assert!(sample_count >= 20, "expected several scrapes of samples, got {sample_count}: {before:?}");
    let mut server = server;
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    let restarted = start_server(&dir, port, Some(&config));
    wait_for(port, "up", |result| !result.is_empty(), &restarted);
    let after = all_samples(port, snapshot_time_s);
    for (series, points) in &before {
        let got = after.get(series).unwrap_or_else(|| panic!("series {series} lost after kill -9"));
        for (timestamp, value) in points {
            assert_eq!(got.get(timestamp), Some(value), "sample {series} @{timestamp} lost after kill -9");
        }
    }
}

fn peer(binary: &str) -> Option<PathBuf> {
    let path = ["/usr/bin", "/usr/local/bin", "/usr/sbin"]
        .iter()
        .map(|dir| Path::new(dir).join(binary))
        .find(|path| path.exists());
    if path.is_none() && std::env::var("ENGINE_PEER_TESTS").as_deref() == Ok("1") {
        panic!(
            "ENGINE_PEER_TESTS=1 but {binary} is not installed (apt-get install prometheus prometheus-node-exporter)"
        );
    }
    path
}

#[test]
fn scrapes_node_exporter_and_answers_promtool() {
    let (Some(node_exporter), Some(promtool)) = (peer("prometheus-node-exporter"), peer("promtool")) else {
        eprintln!(
            "skipped: prometheus-node-exporter or promtool not installed (set ENGINE_PEER_TESTS=1 to require them)"
        );
        return;
    };
    let dir = temp_dir("node");
    let exporter_port = free_port();
    let exporter = Process {
        child: Command::new(node_exporter)
            .arg(format!("--web.listen-address=127.0.0.1:{exporter_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node exporter"),
        log_path: dir.join("none"),
    };
    let config = dir.join("engine.yml");
    std::fs::write(
        &config,
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{exporter_port}']\n"),
    )
    .unwrap();
    let port = free_port();
    let server = start_server(&dir, port, Some(&config));
    let idle = wait_for(port, "node_cpu_seconds_total{mode=\"idle\"}", |result| !result.is_empty(), &server);
    // The engine's value must be one the exporter served: at most a few seconds of idle time
    // behind the exporter's current counter, never ahead of it.
    let (_, exposition) = http_get(&format!("127.0.0.1:{exporter_port}"), "/metrics").unwrap();
    for sample in &idle {
        let cpu = sample["metric"]["cpu"].as_str().unwrap();
        let needle = format!("node_cpu_seconds_total{{cpu=\"{cpu}\",mode=\"idle\"}} ");
        let line = exposition
            .lines()
            .find(|line| line.starts_with(&needle))
            .unwrap_or_else(|| panic!("exporter has no {needle}"));
        let exporter_value: f64 = line[needle.len()..].trim().parse().unwrap();
        let engine_value = value_of(sample);
        assert!(
            engine_value <= exporter_value && exporter_value - engine_value < 10.0,
            "cpu {cpu}: engine {engine_value}, exporter {exporter_value}"
        );
        assert_eq!(sample["metric"]["job"], "node");
        assert_eq!(sample["metric"]["instance"], format!("127.0.0.1:{exporter_port}"));
    }
    let output =
        Command::new(&promtool).args(["query", "instant", &format!("http://127.0.0.1:{port}"), "up"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "promtool failed: {stdout} {}", String::from_utf8_lossy(&output.stderr));
    assert!(
        stdout.contains(&format!("up{{instance=\"127.0.0.1:{exporter_port}\", job=\"node\"}} => 1")),
        "promtool output: {stdout}"
    );
    // promtool's metadata queries go through /api/v1/series and /api/v1/label/<name>/values.
    let server_url = format!("http://127.0.0.1:{port}");
    let output = Command::new(&promtool).args(["query", "series", "--match=up", &server_url]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "promtool query series failed: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(&format!("instance=\"127.0.0.1:{exporter_port}\"")), "promtool series output: {stdout}");
    let output = Command::new(&promtool).args(["query", "labels", &server_url, "job"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "promtool query labels failed: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.lines().any(|line| line.trim() == "node"), "promtool labels output: {stdout}");
    drop(exporter);
}

/// A plain HTTP/1.0 POST without a body; returns status code and body.
fn http_post(address: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "POST {path} HTTP/1.0\r\nHost: {address}\r\nContent-Length: 0\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.get(9..12).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// `POST /-/reload` applies a changed file: a new target is scraped, a removed one stops (its
/// series marked stale); an invalid file is refused, counted, and the old configuration stays.
#[test]
fn reload_applies_new_scrape_targets_and_refuses_an_invalid_file() {
    let dir = temp_dir("reload");
    let first_port = serve_static("# TYPE first gauge\nfirst 1\n");
    let second_port = serve_static("# TYPE second gauge\nsecond 2\n");
    let config = dir.join("engine.yml");
    let write_config = |ports: &[u16]| {
        let targets: Vec<String> = ports.iter().map(|port| format!("'127.0.0.1:{port}'")).collect();
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            ),
        )
        .unwrap();
    };
    write_config(&[first_port]);
    let port = free_port();
    let server = start_server(&dir, port, Some(&config));
    let address = format!("127.0.0.1:{port}");
    wait_for(port, "first", |result| !result.is_empty(), &server);

    write_config(&[second_port]);
    let (status, body) = http_post(&address, "/-/reload").unwrap();
    assert_eq!(status, 200, "{body}");
    wait_for(port, "second", |result| !result.is_empty(), &server);
    // The removed target's series got a staleness marker: it is gone from instant queries at once.
    wait_for(port, "first", |result| result.is_empty(), &server);
    let (_, targets) = http_get(&address, "/api/v1/targets").unwrap();
    assert!(targets.contains(&format!("127.0.0.1:{second_port}")), "{targets}");
    assert!(!targets.contains(&format!("127.0.0.1:{first_port}")), "{targets}");

    std::fs::write(&config, "scrape_configs:\n  - job_name: app\n    scrape_intreval: 5s\n").unwrap();
    let (status, body) = http_post(&address, "/-/reload").unwrap();
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("scrape_intreval"), "{body}");
    let (_, metrics) = http_get(&address, "/metrics").unwrap();
    assert!(metrics.contains("prometheus_config_last_reload_successful 0"), "{metrics}");
    let (_, targets) = http_get(&address, "/api/v1/targets").unwrap();
    assert!(targets.contains(&format!("127.0.0.1:{second_port}")), "the old configuration keeps running: {targets}");
}
