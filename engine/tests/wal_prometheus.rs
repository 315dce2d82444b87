//! WAL compatibility with real Prometheus 2.42 (Debian's `/usr/bin/prometheus`), both ways:
//! Prometheus starts on a WAL this engine wrote and answers a query from it; this engine decodes
//! every record of a WAL Prometheus wrote. Runs when `prometheus` is installed, and must run when
//! `ENGINE_PEER_TESTS=1`. Prometheus listens on loopback only, with its own temporary directory,
//! and is killed (SIGKILL) at the end of each test.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // Tests drive real processes, sockets and files.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{free_port, peer, wait_for_body, Process};
use engine::io::RealFileSystem;
use engine::model::{Labels, SeriesRef};
use engine::tsdb::wal::{
    decode_segment, encode_samples, encode_series, Compression, Record, RefSample, ReplayItem, Wal, WalOptions,
};

/// Deadline for Prometheus to produce a wanted answer.
const WAIT_S_MAX: u64 = 40;

fn prometheus() -> Option<PathBuf> {
    peer("/usr/bin/prometheus")
}

fn temp_dir(name: &str) -> PathBuf {
    common::temp_dir("engine-wal-prometheus", name)
}

fn start_prometheus(binary: &Path, dir: &Path, port: u16, scrape_self: bool) -> Process {
    let config = dir.join("prometheus.yml");
    let mut text = String::from("global:\n  scrape_interval: 1s\n");
    if scrape_self {
        text.push_str(&format!(
            "scrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: [\"127.0.0.1:{port}\"]\n"
        ));
    }
    std::fs::write(&config, text).unwrap();
    let log_path = dir.join("prometheus.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    Process { child, log_path }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn segments(wal_dir: &Path) -> Vec<(u32, Vec<u8>)> {
    let mut segments: Vec<(u32, Vec<u8>)> = std::fs::read_dir(wal_dir)
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.unwrap();
            let index = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((index, std::fs::read(entry.path()).unwrap()))
        })
        .collect();
    segments.sort();
    segments
}

/// This engine writes series and samples (snappy); Prometheus 2.42 replays them and answers.
#[test]
fn prometheus_reads_the_engine_wal() {
    let Some(binary) = prometheus() else { return };
    let dir = temp_dir("reads");
    let wal_dir = dir.join("data/wal");
    let labels = Labels::from_pairs([("__name__", "engine_wal_written"), ("job", "engine"), ("instance", "a")]);
    let last_ms = now_ms() / 1000 * 1000;
    let options = WalOptions { compression: Compression::Snappy, ..WalOptions::default() };
    let (mut wal, _) = Wal::open(Arc::new(RealFileSystem), &wal_dir, options, &mut |_| {}).unwrap();
    let mut series = Vec::new();
    encode_series(&[(SeriesRef(7), &labels)], &mut series);
    let samples: Vec<RefSample> = (0..60)
        .map(|step| RefSample {
            series_ref: SeriesRef(7),
            timestamp_ms: last_ms - (59 - step) * 1000,
            value: step as f64 * 1.5,
        })
        .collect();
    let mut encoded = Vec::new();
    encode_samples(&samples, &mut encoded);
    wal.log(&[&series, &encoded], true).unwrap();
    drop(wal);
    let port = free_port();
    let process = start_prometheus(&binary, &dir, port, false);
    let path = format!("/api/v1/query?query=engine_wal_written&time={:.3}", last_ms as f64 / 1000.0);
    let answer = wait_for_body(port, &path, WAIT_S_MAX, &process, |body| body.contains("\"result\":[{"));
    let json: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let result = &json["data"]["result"][0];
    assert_eq!(result["metric"]["job"], "engine", "{answer}");
    assert_eq!(result["value"][1], "88.5", "the last sample, 59 * 1.5: {answer}");
    drop(process);
    let log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
    assert!(
        !log.contains("WAL read error") && !log.contains("corruption") && !log.contains("level=error"),
        "Prometheus repaired the WAL:\n{log}"
    );
    // And back: the directory Prometheus left (plus its new segment) replays clean here.
    let mut sample_count = 0;
    let mut visit = |item: ReplayItem| match item {
        ReplayItem::Record(Record::Samples(samples)) => sample_count += samples.len(),
        ReplayItem::Corruption(corruption) => panic!("{corruption:?}"),
        ReplayItem::Record(_) => {}
    };
    Wal::open(Arc::new(RealFileSystem), &wal_dir, WalOptions::default(), &mut visit).unwrap();
    assert_eq!(sample_count, 60);
}

/// Prometheus 2.42 scrapes itself every second and is killed; every record of its WAL decodes.
#[test]
fn engine_reads_the_prometheus_wal() {
    let Some(binary) = prometheus() else { return };
    let dir = temp_dir("writes");
    let wal_dir = dir.join("data/wal");
    let port = free_port();
    let process = start_prometheus(&binary, &dir, port, true);
    let deadline = Instant::now() + Duration::from_secs(WAIT_S_MAX);
    // Wait until some samples of `up` are in the WAL (a few scrapes), then kill without warning.
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let up_sample_count = common::http_get(port, "/api/v1/query?query=count_over_time(up[1m])")
            .ok()
            .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
            .and_then(|json| json["data"]["result"][0]["value"][1].as_str().and_then(|v| v.parse::<u32>().ok()));
        if up_sample_count.is_some_and(|count| count >= 5) {
            break;
        }
        assert!(Instant::now() < deadline, "Prometheus did not scrape itself");
    }
    drop(process);
    let mut up_found = false;
    let mut sample_count = 0;
    let segments = segments(&wal_dir);
    assert!(!segments.is_empty());
    for (index, bytes) in &segments {
        for record in decode_segment(*index, bytes).unwrap() {
            match record {
                Record::Series(series) => {
                    up_found |= series.iter().any(|(_, labels)| labels.get("__name__") == Some("up"));
                }
                Record::Samples(samples) => sample_count += samples.len(),
                Record::Tombstones(_) => {}
            }
        }
    }
    assert!(up_found && sample_count > 100, "up found {up_found}, {sample_count} samples");
    let mut visit = |item: ReplayItem| assert!(matches!(item, ReplayItem::Record(_)), "{item:?}");
    Wal::open(Arc::new(RealFileSystem), &wal_dir, WalOptions::default(), &mut visit).unwrap();
}

/// A damaged WAL this engine repaired (a flipped byte inside a segment, a lost middle segment)
/// is one Prometheus 2.42 starts on without its own repair, with every sample that survived.
#[test]
fn prometheus_starts_on_a_repaired_wal() {
    let Some(binary) = prometheus() else { return };
    let dir = temp_dir("repaired");
    let wal_dir = dir.join("data/wal");
    let labels = Labels::from_pairs([("__name__", "engine_wal_repaired"), ("job", "engine")]);
    let last_ms = now_ms() / 1000 * 1000;
    let options = WalOptions { segment_size_max: 32 * 1024, compression: Compression::Snappy };
    let (mut wal, _) = Wal::open(Arc::new(RealFileSystem), &wal_dir, options, &mut |_| {}).unwrap();
    let mut series = Vec::new();
    encode_series(&[(SeriesRef(1), &labels)], &mut series);
    wal.log(&[&series], true).unwrap();
    let (record_count, samples_per_record) = (200_i64, 50_i64);
    let first_ms = last_ms - (record_count * samples_per_record - 1) * 100;
    for record_index in 0..record_count {
        let samples: Vec<RefSample> = (0..samples_per_record)
            .map(|step| {
                let index = record_index * samples_per_record + step;
                RefSample {
                    series_ref: SeriesRef(1),
                    timestamp_ms: first_ms + index * 100,
                    value: (index as f64).sqrt(),
                }
            })
            .collect();
        let mut encoded = Vec::new();
        encode_samples(&samples, &mut encoded);
        wal.log(&[&encoded], true).unwrap();
    }
    assert!(wal.segment_index() >= 3, "several segments");
    drop(wal);
    let segment = |index: u32| wal_dir.join(format!("{index:08}"));
    let mut bytes = std::fs::read(segment(1)).unwrap();
    bytes[5000] ^= 0x40;
    std::fs::write(segment(1), bytes).unwrap();
    std::fs::remove_file(segment(2)).unwrap();
    let (mut sample_count, mut corruption_count) = (0, 0);
    let mut visit = |item: ReplayItem| match item {
        ReplayItem::Record(Record::Samples(samples)) => sample_count += samples.len(),
        ReplayItem::Corruption(_) => corruption_count += 1,
        ReplayItem::Record(_) => {}
    };
    Wal::open(Arc::new(RealFileSystem), &wal_dir, WalOptions::default(), &mut visit).unwrap();
    assert_eq!(corruption_count, 2);
    assert!(sample_count > 0 && sample_count < (record_count * samples_per_record) as usize);
    let port = free_port();
    let process = start_prometheus(&binary, &dir, port, false);
    let path =
        format!("/api/v1/query?query=count_over_time(engine_wal_repaired%5B1h%5D)&time={:.3}", last_ms as f64 / 1000.0);
    let answer = wait_for_body(port, &path, WAIT_S_MAX, &process, |body| body.contains("\"result\":[{"));
    drop(process);
    let json: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(json["data"]["result"][0]["value"][1], sample_count.to_string().as_str(), "{answer}");
    let log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
    assert!(
        !log.contains("WAL read error") && !log.contains("corruption") && !log.contains("level=error"),
        "Prometheus repaired the WAL:\n{log}"
    );
}
