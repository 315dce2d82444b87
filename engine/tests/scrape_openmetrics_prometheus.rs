//! The scrape path against real Prometheus 2.42 (Debian's `/usr/bin/prometheus` with
//! `--enable-feature=exemplar-storage`): both scrape the same OpenMetrics target, served by this
//! test over loopback, gzip-compressed whenever the request accepts it. Each must send the same
//! `Accept` and `Accept-Encoding` headers, and the two query APIs must then answer the same:
//! every scraped series with its value (histogram with `_created`, counter with an explicit
//! timestamp, gauge with a unit, info and stateset families), the same report series, and the
//! same exemplars from `/api/v1/query_exemplars`. Runs when `prometheus` is installed, and must
//! run when `ENGINE_PEER_TESTS=1`.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // Real processes, sockets and files.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{free_port, http_get, peer, Process};

/// Deadline for each wait (first scrapes, both sides settling).
const WAIT_S_MAX: u64 = 60;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The target's body; `{T}` is replaced by a fixed recent timestamp in seconds (explicit sample
/// and exemplar timestamps, so both scrapers store exactly the same ones).
const BODY: &str = r#"# TYPE request_seconds histogram
# UNIT request_seconds seconds
# HELP request_seconds Request latency.
request_seconds_bucket{le="0.1",path="/a"} 1 # {trace_id="abc"} 0.05 {T}
request_seconds_bucket{le="1",path="/a"} 3 # {trace_id="abd",span="x"} 0.5 {T}
request_seconds_bucket{le="+Inf",path="/a"} 4
request_seconds_count{path="/a"} 4
request_seconds_sum{path="/a"} 1.25
request_seconds_created{path="/a"} 1699999000.25
# TYPE jobs counter
# HELP jobs Jobs with \"quotes\" and a \\ backslash.
jobs_total{kind="a"} 3 {T} # {trace_id="def"} 1 {T}
jobs_created{kind="a"} 1699999000 {T}
# TYPE temperature_celsius gauge
# UNIT temperature_celsius celsius
temperature_celsius{room="x"} -1.5e-3
temperature_celsius{room="y"} NaN
# TYPE build info
build_info{version="1.2.3",revision="abc"} 1
# TYPE feature stateset
feature{feature="a"} 1
feature{feature="b"} 0
# TYPE queue_depth gaugehistogram
queue_depth_bucket{le="10"} 2
queue_depth_bucket{le="+Inf"} 3
queue_depth_gcount 3
queue_depth_gsum 12
# TYPE legacy unknown
legacy 42
# EOF
"#;

/// The request headers each scraper sent, by User-Agent product (`Prometheus`, `engine`).
type SeenHeaders = Arc<Mutex<BTreeMap<String, BTreeMap<String, String>>>>;

/// Serves `body` to every request on `listener`, gzip-compressed when accepted; records headers.
fn serve_target(listener: TcpListener, body: String, seen: SeenHeaders) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = BTreeMap::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.trim_end().split_once(':') {
                    headers.insert(name.to_ascii_lowercase(), value.trim().to_string());
                }
            }
            let agent = headers.get("user-agent").cloned().unwrap_or_default();
            let product = agent.split('/').next().unwrap_or("").to_string();
            let gzip = headers.get("accept-encoding").is_some_and(|accepted| accepted.contains("gzip"));
            seen.lock().unwrap().insert(product, headers);
            let (encoding, payload) = if gzip {
                let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                encoder.write_all(body.as_bytes()).unwrap();
                ("Content-Encoding: gzip\r\n", encoder.finish().unwrap())
            } else {
                ("", body.clone().into_bytes())
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {OPENMETRICS}\r\n{encoding}Content-Length: {}\r\nConnection: close\r\n\r\n",
                payload.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&payload);
        }
    });
}

fn scrape_config(target_port: u16) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n  - job_name: om\n    static_configs:\n      - targets: [\"127.0.0.1:{target_port}\"]\n"
    )
}

fn start_engine(dir: &Path, port: u16, target_port: u16) -> Process {
    let config = dir.join("engine.yml");
    std::fs::write(&config, scrape_config(target_port)).unwrap();
    let log_path = dir.join("engine.log");
    let child = Command::new(env!("CARGO_BIN_EXE_server"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--storage.tsdb.path={}", dir.join("engine-data").display()))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .env("NO_COLOR", "1")
        .spawn()
        .expect("start server binary");
    Process { child, log_path }
}

fn start_prometheus(binary: &Path, dir: &Path, port: u16, target_port: u16) -> Process {
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, scrape_config(target_port)).unwrap();
    let log_path = dir.join("prometheus.log");
    let child = Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--storage.tsdb.path={}", dir.join("prometheus-data").display()))
        .arg("--enable-feature=exemplar-storage")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("start prometheus");
    Process { child, log_path }
}

fn now_s() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

fn get_json(port: u16, path: &str) -> Option<serde_json::Value> {
    match http_get(port, path).ok()? {
        (200, body) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

fn encoded(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// An instant query's vector as sorted "labels value" lines (values as text, NaN compares).
fn vector(port: u16, query: &str) -> Option<Vec<String>> {
    let json = get_json(port, &format!("/api/v1/query?query={}&time={:.3}", encoded(query), now_s()))?;
    let mut lines: Vec<String> = json["data"]["result"]
        .as_array()?
        .iter()
        .map(|sample| format!("{} {}", sample["metric"], sample["value"][1]))
        .collect();
    lines.sort();
    Some(lines)
}

/// A range selector's samples per series as sorted "labels [[t, v], ...]" lines.
fn matrix(port: u16, query: &str) -> Option<Vec<String>> {
    let json = get_json(port, &format!("/api/v1/query?query={}&time={:.3}", encoded(query), now_s()))?;
    let mut lines: Vec<String> = json["data"]["result"]
        .as_array()?
        .iter()
        .map(|series| format!("{} {}", series["metric"], series["values"]))
        .collect();
    lines.sort();
    Some(lines)
}

/// `/api/v1/query_exemplars` results, sorted by series labels.
fn exemplars(port: u16, query: &str, start_s: f64) -> Option<Vec<String>> {
    let path = format!("/api/v1/query_exemplars?query={}&start={start_s:.3}&end={:.3}", encoded(query), now_s() + 60.0);
    let json = get_json(port, &path)?;
    let mut lines: Vec<String> = json["data"]
        .as_array()?
        .iter()
        .map(|series| format!("{} {}", series["seriesLabels"], series["exemplars"]))
        .collect();
    lines.sort();
    Some(lines)
}

/// Polls until both sides give the same `Some` answer with at least one line, or panics with
/// both answers and logs at the deadline.
fn same_answer(
    what: &str,
    engine: &Process,
    prometheus: &Process,
    ask: impl Fn(&str) -> Option<Vec<String>>,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(WAIT_S_MAX);
    loop {
        let (ours, theirs) = (ask("engine"), ask("prometheus"));
        if let Some(lines) = ours.as_ref().filter(|lines| !lines.is_empty() && Some(*lines) == theirs.as_ref()) {
            return lines.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{what}: engine and Prometheus differ\n engine:     {ours:#?}\n prometheus: {theirs:#?}\n\
             engine log:\n{}\nprometheus log:\n{}",
            engine.log(),
            prometheus.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn engine_scrapes_openmetrics_as_prometheus_does() {
    let Some(binary) = peer("/usr/bin/prometheus") else { return };
    let dir = common::temp_dir("engine-scrape-openmetrics", "compare");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target_port = listener.local_addr().unwrap().port();
    let sample_s = (now_s() - 5.0).floor() + 0.25;
    let seen = SeenHeaders::default();
    serve_target(listener, BODY.replace("{T}", &format!("{sample_s:.3}")), seen.clone());

    let (engine_port, prometheus_port) = (free_port(), free_port());
    let engine = start_engine(&dir, engine_port, target_port);
    let prometheus = start_prometheus(&binary, &dir, prometheus_port, target_port);
    let port = |side: &str| if side == "engine" { engine_port } else { prometheus_port };

    // Every scraped series and value, report series excluded (their values are timings).
    let series = same_answer("scraped series", &engine, &prometheus, |side| {
        vector(port(side), "{job=\"om\",__name__!~\"up|scrape_.*\"}")
    });
    assert_eq!(series.len(), 18, "{series:#?}");
    for name in ["request_seconds_created", "jobs_created", "build_info", "feature", "queue_depth_gcount"] {
        assert!(series.iter().any(|line| line.contains(&format!("\"__name__\":\"{name}\""))), "{name}: {series:#?}");
    }
    // The explicit timestamps, to the millisecond.
    same_answer("explicit timestamps", &engine, &prometheus, |side| matrix(port(side), "jobs_total[5m]"));
    // The same report series, with the same counts once the target is known.
    same_answer("report series", &engine, &prometheus, |side| {
        vector(
            port(side),
            "up{job=\"om\"} or scrape_samples_scraped{job=\"om\"} \
             or scrape_samples_post_metric_relabeling{job=\"om\"} or scrape_series_added{job=\"om\"}",
        )
    });
    let names = |side: &str| vector(port(side), "count by (__name__) ({job=\"om\",__name__=~\"up|scrape_.*\"})");
    same_answer("report series names", &engine, &prometheus, names);
    // Exemplars with their labels, values and timestamps.
    let found = same_answer("exemplars", &engine, &prometheus, |side| {
        exemplars(port(side), "request_seconds_bucket or jobs_total", sample_s - 600.0)
    });
    assert_eq!(found.len(), 3, "{found:#?}");
    // The same content negotiation.
    let seen = seen.lock().unwrap();
    let header = |product: &str, name: &str| seen.get(product).and_then(|headers| headers.get(name)).cloned();
    for name in ["accept", "accept-encoding", "x-prometheus-scrape-timeout-seconds"] {
        assert_eq!(header("engine", name), header("Prometheus", name), "{name} header; all seen: {seen:#?}");
    }
    drop(engine);
    drop(prometheus);
}
