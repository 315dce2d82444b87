//! The engine's push gateway (`--web.enable-pushgateway`) against Debian's Pushgateway 1.5:
//! the same pushes (PUT, POST, DELETE, base64 grouping values, refused bodies, inconsistent
//! pushes) go to both, each answer's status must match, and so must the exposition each serves
//! (the Pushgateway's `/metrics` without its own `go_`, `process_` and `pushgateway_`
//! families, the engine's `/pushgateway/metrics`), the timestamp gauges' non-zero values
//! masked. Then the engine must serve the same after a restart (the store is persisted) and
//! its queries must see the pushed series as a Prometheus scraping a Pushgateway with
//! `honor_labels: true` would (no `instance` label where it was empty). Skipped when the peer
//! is not installed; required under `ENGINE_PEER_TESTS=1` (CI).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // Real processes, sockets and files.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, http_get, peer, temp_dir, wait_for_body, Process};

/// Deadline for each wanted answer.
const WAIT_S_MAX: u64 = 30;

/// The pushes, in order: (method, path, body).
const PUSHES: &[(&str, &str, &str)] = &[
    (
        "PUT",
        "/metrics/job/j1/x@base64/=/y@base64/Zm9vL2Jhcg",
        "# HELP foo A foo.\n# TYPE foo counter\nfoo{bar=\"\",a=\"1\",job=\"other\"} 3\nfoo 1e6\n\
         # TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"1\"} 2.7\nh_sum 3\nh_count 3\n\
         # TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 2\ns_count 4\nuntyped_x{instance=\"i\"} 0.000001\n",
    ),
    ("POST", "/metrics/job@base64/cG9zdA/i/a", "m1 1\nm2 2\n"),
    (
        "POST",
        "/metrics/job/post/i/a",
        "m2 5\n# HELP m3 Help with \\\\ and \\n.\nm3{l=\"a\\\"b\\\\c\"} -Inf\nm3{l=\"z\"} NaN\n",
    ),
    ("PUT", "/metrics/job/replace", "a 1\nb 2\n"),
    ("PUT", "/metrics/job/replace", "c 3\n"),
    ("PUT", "/metrics/job/gone/k/v", "g 1\n"),
    ("DELETE", "/metrics/job/gone/k/v", ""),
    ("DELETE", "/metrics/job/never", ""),
    ("PUT", "/metrics/job/bad", "a{ 1\n"),
    ("PUT", "/metrics/job/bad", "# TYPE a nonsense\na 1\n"),
    ("PUT", "/metrics/job/odd/k", "a 1\n"),
    ("PUT", "/metrics/job/j2", "# TYPE foo gauge\nfoo 1\n"),
    ("PUT", "/metrics/job/ts", "a 1 1000\n"),
    ("PUT", "/metrics/job/dup", "d 1\nd 2\n"),
    ("PUT", "/metrics/job/e", "e{x=\"1\"} 1\n"),
    ("PUT", "/metrics/job/e/x/1", "e 1\n"),
    ("POST", "/metrics/job/values", "big 123456789\nsmall 0.00012\nneg -0.5\nint 42\nexp 1.5e-300\n"),
    ("PUT", "/metrics/job/empty/z@base64/YWJj", "q 1\n"),
    ("PUT", "/metrics/job/empty/z@base64/YWJj", ""),
    ("POST", "/metrics/job/j1/x@base64/=/y@base64/Zm9vL2Jhcg", "# TYPE foo counter\nfoo{a=\"2\"} 7\n"),
];

/// A plain HTTP/1.0 request to `127.0.0.1:port`; the status code.
fn send(port: u16, method: &str, path: &str, body: &str) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(stream, "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.get(9..12).and_then(|code| code.parse().ok()).unwrap_or(0)
}

/// An exposition without the Pushgateway's own families, the timestamp gauges' non-zero values
/// replaced by `T`.
fn normalized(exposition: &str) -> String {
    let own = |name: &str| ["go_", "process_", "pushgateway_"].iter().any(|prefix| name.starts_with(prefix));
    let mut lines = Vec::new();
    for line in exposition.lines() {
        let name = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
            .unwrap_or(line)
            .split(['{', ' '])
            .next()
            .unwrap_or("");
        if own(name) {
            continue;
        }
        let is_time = line.starts_with("push_time_seconds") || line.starts_with("push_failure_time_seconds");
        match line.rsplit_once(' ') {
            Some((series, value)) if is_time && value != "0" => lines.push(format!("{series} T")),
            _ => lines.push(line.to_string()),
        }
    }
    lines.join("\n")
}

fn start_engine(dir: &Path, port: u16, start_index: usize) -> Process {
    let log_path = dir.join(format!("engine-{start_index}.log"));
    Process {
        child: Command::new(env!("CARGO_BIN_EXE_server"))
            .arg("--web.enable-pushgateway")
            .arg(format!("--config.file={}", dir.join("engine.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("engine-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .env("NO_COLOR", "1")
            .spawn()
            .expect("start engine"),
        log_path,
    }
}

#[test]
fn engine_push_gateway_serves_what_debian_pushgateway_serves() {
    let Some(pushgateway) = peer("/usr/bin/prometheus-pushgateway") else {
        return;
    };
    let dir = temp_dir("engine-pushgateway-compare", "sequence");
    let pg_port = free_port();
    let pg_log = dir.join("pushgateway.log");
    let pg = Process {
        child: Command::new(pushgateway)
            .arg(format!("--web.listen-address=127.0.0.1:{pg_port}"))
            // Debian's default is /var/lib/prometheus/pushgateway.data: keep this run's own.
            .arg(format!("--persistence.file={}", dir.join("pushgateway.data").display()))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&pg_log).unwrap())
            .spawn()
            .expect("start pushgateway"),
        log_path: pg_log,
    };
    std::fs::write(dir.join("engine.yml"), "global:\n  scrape_interval: 1s\n").unwrap();
    let engine_port = free_port();
    let mut engine = start_engine(&dir, engine_port, 0);
    wait_for_body(pg_port, "/-/ready", WAIT_S_MAX, &pg, |_| true);
    wait_for_body(engine_port, "/-/ready", WAIT_S_MAX, &engine, |_| true);

    for (method, path, body) in PUSHES {
        let expected = send(pg_port, method, path, body);
        let got = send(engine_port, method, path, body);
        assert_eq!(got, expected, "{method} {path} with {body:?}: engine {got}, pushgateway {expected}");
    }
    let (_, pg_body) = http_get(pg_port, "/metrics").unwrap();
    let expected = normalized(&pg_body);
    let engine_body = wait_for_body(engine_port, "/pushgateway/metrics", WAIT_S_MAX, &engine, |_| true);
    assert_eq!(normalized(&engine_body), expected, "engine's /pushgateway/metrics vs pushgateway's /metrics");
    assert!(expected.contains("y=\"foo/bar\"") && expected.contains("job=\"post\""), "the sequence took: {expected}");

    // Queries see the groups as a Prometheus scraping the gateway with honor_labels: true.
    let query = |promql: &str| {
        let path =
            format!("/api/v1/query?query={}", form_urlencoded::byte_serialize(promql.as_bytes()).collect::<String>());
        wait_for_body(engine_port, &path, WAIT_S_MAX, &engine, |body| body.contains("\"result\":[{"))
    };
    let body = query("foo{a=\"2\"}");
    assert!(body.contains("\"job\":\"j1\"") && body.contains("\"y\":\"foo/bar\""), "{body}");
    assert!(!body.contains("\"instance\"") && !body.contains("\"x\""), "empty labels are dropped: {body}");
    let body = query("untyped_x");
    assert!(body.contains("\"instance\":\"i\""), "a pushed instance stays: {body}");
    let body = query("push_failure_time_seconds{job=\"j2\"} > 0");
    assert!(body.contains("\"job\":\"j2\""), "{body}");

    // The store survives a restart.
    drop(engine);
    engine = start_engine(&dir, engine_port, 1);
    let engine_body = wait_for_body(engine_port, "/pushgateway/metrics", WAIT_S_MAX, &engine, |_| true);
    assert_eq!(normalized(&engine_body), expected, "after a restart");
    drop(pg);
}
