//! The remote write sender against real receivers: Prometheus 2.42 with
//! `--web.enable-remote-write-receiver` and VictoriaMetrics 1.79 (Debian's `/usr/bin/prometheus`
//! and `/usr/bin/victoria-metrics`). The engine scrapes itself every second and remote-writes to
//! both, with an external label and a `write_relabel_configs` drop. Midway both receivers stop
//! for several seconds; meanwhile the engine, retrying a round, is killed (SIGKILL) and restarted
//! on the same data directory, and resends that round. Then every sample
//! the engine holds must be in both receivers, exactly, with the external label, and nothing
//! the relabel rule drops. Runs when both are installed, and must run when
//! `ENGINE_PEER_TESTS=1`. All listen on loopback only, each with its own directory.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // Tests drive real processes, sockets and files.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{difference, free_port, http_get, now_ms, peer, query_matrix, with_label, Matrix, Process};

/// Deadline for each wait (first samples, the receivers catching up).
const WAIT_S_MAX: u64 = 90;

/// How long the receivers are down, seconds: several rounds retried meanwhile.
const OUTAGE_S: u64 = 6;

/// The families the sender's relabel rule drops.
const DROPPED_PREFIX: &str = "engine_remote_write_";

struct Ports {
    engine: u16,
    prometheus: u16,
    victoria: u16,
}

fn start_engine(dir: &Path, ports: &Ports, generation: u32) -> Process {
    let queue = "    queue_config:\n      batch_send_deadline: 1s\n      min_backoff: 100ms\n      max_backoff: 1s\n    \
                 write_relabel_configs:\n      - source_labels: [__name__]\n        regex: engine_remote_write_.*\n        action: drop\n";
    let config = format!(
        "global:\n  scrape_interval: 1s\n  external_labels:\n    sender: engine\n\
         scrape_configs:\n  - job_name: engine\n    static_configs:\n      - targets: [\"127.0.0.1:{}\"]\n\
         remote_write:\n  - url: http://127.0.0.1:{}/api/v1/write\n    name: prometheus\n{queue}\
         \x20 - url: http://127.0.0.1:{}/api/v1/write\n    name: victoria\n{queue}",
        ports.engine, ports.prometheus, ports.victoria
    );
    common::start_engine(dir, "engine", &format!("engine-{generation}"), ports.engine, Some(&config), &[])
}

fn start_prometheus(binary: &Path, dir: &Path, port: u16, generation: u32) -> Process {
    // No scrape jobs: it holds only what the engine sends.
    let log_name = format!("prometheus-{generation}");
    common::start_prometheus(
        binary,
        dir,
        &log_name,
        port,
        "global:\n  scrape_interval: 1m\n",
        &["--web.enable-remote-write-receiver"],
    )
}

fn start_victoria(binary: &Path, dir: &Path, port: u16, generation: u32) -> Process {
    let log_path = dir.join(format!("victoria-{generation}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(binary)
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg(format!("-storageDataPath={}", dir.join("victoria-data").display()))
        .arg("-retentionPeriod=1")
        // Answer with what was just written, and keep one sample per timestamp (a resent batch
        // is stored again otherwise; VictoriaMetrics' advice for any at-least-once sender).
        .arg("-search.latencyOffset=0s")
        .arg("-search.disableCache")
        .arg("-dedup.minScrapeInterval=1ms")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start victoria-metrics");
    Process { child, log_path }
}

/// SIGTERM, then waits for the process to exit (both receivers flush on it).
fn stop_gracefully(mut process: Process) {
    let _ = Command::new("kill").arg("-TERM").arg(process.child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while process.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `metric{...}` lines of `/metrics` whose name and labels start with `prefix`, summed.
fn metric_sum(port: u16, prefix: &str) -> f64 {
    let (_, metrics) = http_get(port, "/metrics").unwrap_or_default();
    metrics
        .lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

fn as_sent(engine: &Matrix) -> Matrix {
    let kept: Matrix = engine
        .iter()
        .filter(|(labels, _)| !labels.contains(&format!("\"__name__\":\"{DROPPED_PREFIX}")))
        .map(|(labels, samples)| (labels.clone(), samples.clone()))
        .collect();
    with_label(&kept, "sender", "engine")
}

/// VictoriaMetrics stores a value as a decimal (an integer mantissa and a power of ten), which
/// can move a float by an ulp or so; Prometheus stores the bits.
const VICTORIA_VALUE_TOLERANCE_FRACTION: f64 = 1e-12;

/// `held` holds `expected`'s series and timestamps, each value within `fraction` of its own.
fn same_within(expected: &Matrix, held: &Matrix, fraction: f64) -> bool {
    let same_value = |a: u64, b: u64| {
        let (a, b) = (f64::from_bits(a), f64::from_bits(b));
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()) || (a - b).abs() <= fraction * a.abs().max(b.abs())
    };
    expected.len() == held.len()
        && expected.iter().all(|(labels, samples)| {
            held.get(labels).is_some_and(|got| {
                got.len() == samples.len()
                    && got.iter().zip(samples).all(|((t1, v1), (t2, v2))| t1 == t2 && same_value(*v1, *v2))
            })
        })
}

#[test]
fn every_sample_reaches_prometheus_and_victoria_metrics_across_an_outage_and_a_restart() {
    let Some(prometheus_binary) = peer("/usr/bin/prometheus") else { return };
    let Some(victoria_binary) = peer("/usr/bin/victoria-metrics") else { return };
    let dir = common::temp_dir("engine-remote-write-sender", "every-sample");
    let ports = Ports { engine: free_port(), prometheus: free_port(), victoria: free_port() };
    let prometheus = start_prometheus(&prometheus_binary, &dir, ports.prometheus, 0);
    let victoria = start_victoria(&victoria_binary, &dir, ports.victoria, 0);
    let engine = start_engine(&dir, &ports, 0);
    let receivers_hold_up = || {
        let query = "up{job=\"engine\"}[1h]";
        [ports.prometheus, ports.victoria]
            .iter()
            .all(|&port| query_matrix(port, query, now_ms()).is_some_and(|matrix| !matrix.is_empty()))
    };
    let deadline = Instant::now() + Duration::from_secs(WAIT_S_MAX);
    while !receivers_hold_up() {
        assert!(Instant::now() < deadline, "no samples reached the receivers; engine log:\n{}", engine.log());
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(3));

    // The outage: both receivers down; the engine scrapes on and retries its round.
    stop_gracefully(prometheus);
    stop_gracefully(victoria);
    let retried_before = metric_sum(ports.engine, "prometheus_remote_storage_samples_retried_total");
    std::thread::sleep(Duration::from_secs(OUTAGE_S / 2));
    let retried = metric_sum(ports.engine, "prometheus_remote_storage_samples_retried_total");
    assert!(
        retried > retried_before,
        "no retries during the outage ({retried_before} then {retried}):\n{}",
        engine.log()
    );

    // The engine dies with a round under way and comes back on the same data; the receivers
    // come back a while later.
    drop(engine);
    let engine = start_engine(&dir, &ports, 1);
    std::thread::sleep(Duration::from_secs(OUTAGE_S / 2));
    let prometheus = start_prometheus(&prometheus_binary, &dir, ports.prometheus, 1);
    let victoria = start_victoria(&victoria_binary, &dir, ports.victoria, 1);
    let failure = |what: &str| {
        format!(
            "{what}\nengine log:\n{}\nprometheus log:\n{}\nvictoria log:\n{}",
            engine.log(),
            prometheus.log(),
            victoria.log()
        )
    };
    let deadline = Instant::now() + Duration::from_secs(WAIT_S_MAX);
    let first_ms = loop {
        let first = query_matrix(ports.engine, "up{job=\"engine\"}[1h]", now_ms())
            .and_then(|matrix| matrix.values().next().and_then(|samples| samples.first().map(|(time_ms, _)| *time_ms)));
        if let Some(first_ms) = first {
            break first_ms;
        }
        assert!(Instant::now() < deadline, "{}", failure("the restarted engine answers nothing"));
        std::thread::sleep(Duration::from_millis(500));
    };
    std::thread::sleep(Duration::from_secs(4));
    assert!(engine.log().contains("resending the round a restart interrupted"), "{}", failure("no round resent"));

    // Everything up to a second ago: the engine's answer is final; the receivers must catch up.
    let end_ms = now_ms() - 1_000;
    let query = format!("{{job=\"engine\"}}[{}ms]", end_ms - first_ms + 1);
    let expected = as_sent(&query_matrix(ports.engine, &query, end_ms).expect("the engine answers"));
    let sample_count: usize = expected.values().map(Vec::len).sum();
    assert!(
        expected.len() >= 50 && sample_count >= 1_000,
        "too little compared: {} series, {sample_count} samples",
        expected.len()
    );
    for (name, port, fraction) in
        [("prometheus", ports.prometheus, 0.0), ("victoria-metrics", ports.victoria, VICTORIA_VALUE_TOLERANCE_FRACTION)]
    {
        let deadline = Instant::now() + Duration::from_secs(WAIT_S_MAX);
        let held = loop {
            let held = query_matrix(port, &query, end_ms).unwrap_or_default();
            if same_within(&expected, &held, fraction) || Instant::now() >= deadline {
                break held;
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        assert!(
            same_within(&expected, &held, fraction),
            "{}",
            failure(&format!("{name} at {end_ms} for {query}:\n{}", difference("engine", &expected, name, &held)))
        );
        eprintln!("{name}: {} series, {sample_count} samples, as the engine holds them", expected.len());
    }
    drop(engine);
    drop(prometheus);
    drop(victoria);
}
