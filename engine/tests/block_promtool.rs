//! Block compatibility with Prometheus 2.42's tools, both ways: blocks `promtool tsdb
//! create-blocks-from openmetrics` wrote open in this engine's reader with every sample intact;
//! blocks this engine wrote are listed sample for sample by `promtool tsdb dump`, pass
//! `promtool tsdb analyze`, and serve a query from a real `prometheus` (loopback, own temporary
//! directory, killed at the end). Runs when `promtool` is installed, and must run when
//! `ENGINE_PEER_TESTS=1`.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // Tests drive real processes, sockets and files.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use engine::io::RealFileSystem;
use engine::model::{Labels, Sample, STALE_NAN_BITS};
use engine::storage::{collect_series, Querier};
use engine::tsdb::block::{encode_chunks, write_block, Block, Ulid};

use common::{free_port, peer, wait_for_body, Process};

/// Deadline for a peer process to produce a wanted answer.
const WAIT_S_MAX: u64 = 40;

fn temp_dir(name: &str) -> PathBuf {
    common::temp_dir("engine-block-promtool", name)
}

/// Runs a command with a time limit; returns stdout, panicking with stderr on failure.
fn run(command: &mut Command) -> String {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start peer tool");
    let deadline = Instant::now() + Duration::from_secs(WAIT_S_MAX);
    let mut stdout = String::new();
    let mut pipe = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        pipe.read_to_string(&mut text).map(|_| text)
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{command:?} did not finish in {WAIT_S_MAX} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    stdout.push_str(&reader.join().unwrap().unwrap());
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(status.success(), "{command:?} failed ({status}):\n{stderr}\n{stdout}");
    stdout
}

/// A value's bits with every NaN made one (promtool prints stale markers as `NaN`, and parsers
/// differ in NaN payloads).
fn value_bits(value: f64) -> u64 {
    if value.is_nan() {
        f64::NAN.to_bits()
    } else {
        value.to_bits()
    }
}

type Expected = BTreeMap<Labels, Vec<(i64, u64)>>;

/// Several series over 3 hours at 15 s (so promtool cuts more than one 2-hour block), with
/// integers, fractions, NaN, infinities and negative values.
fn generated(start_ms: i64) -> Vec<(Labels, Vec<Sample>)> {
    let mut series = Vec::new();
    for (name, job, instance) in
        [("up", "node", "a"), ("up", "node", "b"), ("requests_total", "api", "a"), ("temperature", "lab", "z")]
    {
        let labels = Labels::from_pairs([("__name__", name), ("job", job), ("instance", instance)]);
        let samples = (0..720_i64)
            .map(|step| {
                let value = match (name, step % 97) {
                    (_, 13) => f64::NAN,
                    ("temperature", 50) => f64::INFINITY,
                    ("temperature", 51) => f64::NEG_INFINITY,
                    ("temperature", _) => -20.0 + (step as f64) * 0.125,
                    ("requests_total", _) => (step * step) as f64,
                    _ => (step % 2) as f64,
                };
                Sample { timestamp_ms: start_ms + step * 15_000 + jitter_ms(step), value }
            })
            .collect();
        series.push((labels, samples));
    }
    series.sort_by(|a, b| a.0.cmp(&b.0));
    series
}

/// Whole seconds: promtool's OpenMetrics parser truncates `seconds * 1000` to ms, which a
/// fractional second may not survive.
fn jitter_ms(step: i64) -> i64 {
    (step % 3) * 1000
}

fn expected(series: &[(Labels, Vec<Sample>)]) -> Expected {
    series
        .iter()
        .map(|(labels, samples)| {
            (labels.clone(), samples.iter().map(|sample| (sample.timestamp_ms, value_bits(sample.value))).collect())
        })
        .collect()
}

fn openmetrics_value(value: f64) -> String {
    match value {
        v if v.is_nan() => "NaN".to_string(),
        f64::INFINITY => "+Inf".to_string(),
        f64::NEG_INFINITY => "-Inf".to_string(),
        v => format!("{v:?}"),
    }
}

/// (a) promtool writes blocks from OpenMetrics; this engine reads every sample back.
#[test]
fn engine_reads_blocks_promtool_wrote() {
    let Some(promtool) = peer("/usr/bin/promtool") else { return };
    let dir = temp_dir("create");
    let series = generated(1_700_000_000_000);
    let mut text = String::new();
    // OpenMetrics wants each metric family together: group by name (series are sorted by labels).
    let mut families: BTreeMap<&str, Vec<&(Labels, Vec<Sample>)>> = BTreeMap::new();
    for entry in &series {
        families.entry(entry.0.metric_name().unwrap()).or_default().push(entry);
    }
    for (name, members) in &families {
        text.push_str(&format!("# TYPE {name} gauge\n"));
        for (labels, samples) in members.iter().map(|entry| (&entry.0, &entry.1)) {
            let pairs: Vec<String> = labels
                .iter()
                .filter(|label| label.name != "__name__")
                .map(|label| format!("{}=\"{}\"", label.name, label.value))
                .collect();
            for sample in samples {
                let seconds = format!("{}.{:03}", sample.timestamp_ms / 1000, sample.timestamp_ms % 1000);
                text.push_str(&format!(
                    "{name}{{{}}} {} {seconds}\n",
                    pairs.join(","),
                    openmetrics_value(sample.value)
                ));
            }
        }
    }
    text.push_str("# EOF\n");
    let input = dir.join("input.om");
    std::fs::write(&input, text).unwrap();
    let out = dir.join("blocks");
    run(Command::new(&promtool).args(["tsdb", "create-blocks-from", "openmetrics"]).arg(&input).arg(&out));

    let mut got: Expected = BTreeMap::new();
    let mut block_count = 0;
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        assert!(Ulid::parse(&name).is_some(), "promtool wrote {name}");
        let block = Block::open(Arc::new(RealFileSystem), &out.join(&name)).unwrap();
        assert_eq!(block.meta().ulid, name);
        block_count += 1;
        let all = collect_series(block.querier(i64::MIN, i64::MAX).select(None, &[])).unwrap();
        assert_eq!(block.meta().stats.sample_count, all.iter().map(|s| s.samples.len() as u64).sum::<u64>());
        for found in all {
            let samples = got.entry(found.labels).or_default();
            samples.extend(found.samples.iter().map(|sample| (sample.timestamp_ms, value_bits(sample.value))));
        }
    }
    assert!(block_count >= 2, "3 hours of samples span more than one 2-hour block, got {block_count}");
    for samples in got.values_mut() {
        samples.sort_by_key(|(timestamp_ms, _)| *timestamp_ms);
    }
    assert_eq!(got, expected(&series));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Parses a `promtool tsdb dump` line: `{a="1", b="2"} value timestamp_ms`.
fn parse_dump_line(line: &str) -> (Labels, i64, u64) {
    let (labels, rest) = line.rsplit_once("} ").unwrap_or_else(|| panic!("bad dump line {line:?}"));
    let pairs = labels.trim_start_matches('{').split(", ").map(|pair| {
        let (name, value) = pair.split_once('=').unwrap();
        (name.to_string(), value.trim_matches('"').to_string())
    });
    let (value, timestamp_ms) = rest.split_once(' ').unwrap();
    let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
    (Labels::from_pairs(pairs), timestamp_ms.parse().unwrap(), value_bits(value))
}

fn write_engine_block(dir: &Path, series: &[(Labels, Vec<Sample>)], min_ms: i64, max_ms: i64) -> String {
    let chunked = series.iter().map(|(labels, samples)| (labels.clone(), encode_chunks(samples, 120)));
    let meta = write_block(Arc::new(RealFileSystem), dir, chunked, 1_700_000_000_000, 0xfeed, min_ms, max_ms).unwrap();
    assert_eq!(meta.stats.chunk_count, series.len() as u64 * 6);
    meta.ulid
}

fn with_stale_marker(mut series: Vec<(Labels, Vec<Sample>)>) -> Vec<(Labels, Vec<Sample>)> {
    series[0].1[100].value = f64::from_bits(STALE_NAN_BITS);
    series
}

/// (b) this engine writes a block; promtool dumps exactly its samples and analyzes it.
#[test]
fn promtool_reads_blocks_the_engine_wrote() {
    let Some(promtool) = peer("/usr/bin/promtool") else { return };
    let dir = temp_dir("dump");
    let start_ms = 1_700_000_000_000;
    let series = with_stale_marker(generated(start_ms));
    let ulid = write_engine_block(&dir, &series, start_ms, start_ms + 4 * 3_600_000);
    std::fs::create_dir_all(dir.join("wal")).unwrap(); // `dump` opens the directory as a database.
    let dump = run(Command::new(&promtool).args(["tsdb", "dump"]).arg(&dir));
    let mut got: Expected = BTreeMap::new();
    for line in dump.lines().filter(|line| !line.is_empty()) {
        let (labels, timestamp_ms, value_bits) = parse_dump_line(line);
        got.entry(labels).or_default().push((timestamp_ms, value_bits));
    }
    assert_eq!(got, expected(&series));
    let analysis = run(Command::new(&promtool).args(["tsdb", "analyze"]).arg(&dir).arg(&ulid));
    assert!(analysis.contains(&format!("Block ID: {ulid}")), "{analysis}");
    assert!(analysis.contains("Series: 4"), "{analysis}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Prometheus 2.42 starts on a data directory holding only a block this engine wrote and
/// answers a query from it.
#[test]
fn prometheus_serves_a_block_the_engine_wrote() {
    let Some(prometheus) = peer("/usr/bin/prometheus") else { return };
    let dir = temp_dir("serve");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    // Inside the default 15-day retention, and older than the head's range.
    let start_ms = (now_ms - 6 * 3_600_000) / 7_200_000 * 7_200_000;
    let series = generated(start_ms);
    write_engine_block(&data, &series, start_ms, start_ms + 4 * 3_600_000);
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1m\n").unwrap();
    let port = free_port();
    let log_path = dir.join("prometheus.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let process = Process {
        child: Command::new(&prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus"),
        log_path,
    };
    // requests_total's sample at step 10 is 100 (10 * 10).
    let at_ms = start_ms + 10 * 15_000 + jitter_ms(10);
    let path =
        format!("/api/v1/query?query=requests_total%7Bjob%3D%22api%22%7D&time={}.{:03}", at_ms / 1000, at_ms % 1000);
    let answer = wait_for_body(port, &path, WAIT_S_MAX, &process, |body| body.contains("\"result\":[{"));
    assert!(answer.contains("\"instance\":\"a\""), "{answer}");
    assert!(answer.contains("\"100\"]"), "{answer}");
    eprintln!("prometheus answered {path}: {answer}");
    drop(process);
    let _ = std::fs::remove_dir_all(&dir);
}
