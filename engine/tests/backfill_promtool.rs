//! `enginectl tsdb create-blocks-from openmetrics` against Prometheus 2.42's promtool on the
//! same OpenMetrics file: `promtool tsdb dump` prints the same samples for both output
//! directories (and `enginectl tsdb dump` prints them too), the blocks cover the same ranges with
//! the same counts; the engine server and Prometheus serve the directory enginectl wrote with the
//! answers the engine gives on promtool's. (The engine serving a promtool-backfilled directory
//! alone is `migrate_prometheus.rs`'s `engine_serves_blocks_promtool_wrote`.) Peer parts run
//! when promtool and prometheus are installed and must run when `ENGINE_PEER_TESTS=1`; loopback
//! only, temporary directories, processes killed at the end.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // Tests drive real processes, sockets and files.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use common::{free_port, peer, wait_for_body, Process};

/// Deadline for a server to answer.
const WAIT_S_MAX: u64 = 60;

fn temp_dir(name: &str) -> PathBuf {
    common::temp_dir("engine-backfill", name)
}

fn enginectl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_enginectl"))
}

#[track_caller]
fn succeeded(output: Output, what: &str) -> String {
    assert!(output.status.success(), "{what} failed ({}):\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// Every family type, escapes, exemplars, `_created`, NaN and infinities, fractional-second
/// timestamps (which the conversion to ms truncates), over `hours` hours at 15 s from
/// `start_s`, so the samples span several 2-hour blocks.
fn exposition(start_s: i64, hours: i64) -> String {
    let steps = hours * 240;
    let time = |step: i64| format!("{}.{:03}", start_s + step * 15, (step * 7) % 1000);
    let mut text = String::new();
    text.push_str("# TYPE backfill_requests counter\n# HELP backfill_requests Requests \\\\ served.\n");
    for (code, path) in [("200", "/a"), ("500", "/q\\\"uote\\\\d\\n")] {
        for step in 0..steps {
            let exemplar =
                if step % 50 == 0 { format!(" # {{trace_id=\"t{step}\"}} 1 {}", time(step)) } else { String::new() };
            text.push_str(&format!(
                "backfill_requests_total{{code=\"{code}\",path=\"{path}\"}} {} {}{exemplar}\n",
                step * 3 + code.len() as i64,
                time(step)
            ));
            text.push_str(&format!(
                "backfill_requests_created{{code=\"{code}\",path=\"{path}\"}} {start_s} {}\n",
                time(step)
            ));
        }
    }
    text.push_str("# TYPE backfill_temperature_celsius gauge\n# UNIT backfill_temperature_celsius celsius\n");
    for step in 0..steps {
        let value = match step % 101 {
            7 => "NaN".to_string(),
            8 => "+Inf".to_string(),
            9 => "-Inf".to_string(),
            _ => format!("{}", -10.0 + step as f64 * 0.0625),
        };
        text.push_str(&format!("backfill_temperature_celsius{{room=\"lab\"}} {value} {}\n", time(step)));
    }
    text.push_str("# TYPE backfill_latency_seconds histogram\n");
    for step in 0..steps {
        let t = time(step);
        let (low, high) = (step, step * 2 + 1);
        text.push_str(&format!("backfill_latency_seconds_bucket{{le=\"0.1\"}} {low} {t} # {{id=\"x\"}} 0.05\n"));
        text.push_str(&format!("backfill_latency_seconds_bucket{{le=\"+Inf\"}} {high} {t}\n"));
        text.push_str(&format!("backfill_latency_seconds_count {high} {t}\n"));
        text.push_str(&format!("backfill_latency_seconds_sum {} {t}\n", step as f64 * 0.75));
    }
    text.push_str("# TYPE backfill_rpc_seconds summary\n");
    for step in 0..steps {
        let t = time(step);
        text.push_str(&format!("backfill_rpc_seconds{{quantile=\"0.5\"}} {} {t}\n", (step % 13) as f64 * 0.01));
        text.push_str(&format!("backfill_rpc_seconds{{quantile=\"0.99\"}} {} {t}\n", (step % 17) as f64 * 0.02));
        text.push_str(&format!("backfill_rpc_seconds_count {step} {t}\nbackfill_rpc_seconds_sum {} {t}\n", step * 2));
    }
    text.push_str("# TYPE backfill_state stateset\n");
    for step in (0..steps).step_by(4) {
        let on = u8::from(step % 8 == 0);
        text.push_str(&format!("backfill_state{{backfill_state=\"on\"}} {on} {}\n", time(step)));
        text.push_str(&format!("backfill_state{{backfill_state=\"off\"}} {} {}\n", 1 - on, time(step)));
    }
    text.push_str("# TYPE backfill_build info\n");
    for step in (0..steps).step_by(40) {
        text.push_str(&format!("backfill_build_info{{version=\"1.2\"}} 1 {}\n", time(step)));
    }
    text.push_str("backfill_untyped 42 ");
    text.push_str(&format!("{}\n# EOF\n", time(1)));
    text
}

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// The blocks' `meta.json` ranges and counts, oldest first.
fn metas(dir: &Path) -> Vec<(i64, i64, u64, u64)> {
    let mut metas: Vec<(i64, i64, u64, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| {
            let meta = std::fs::read(entry.unwrap().path().join("meta.json")).ok()?;
            let meta: serde_json::Value = serde_json::from_slice(&meta).unwrap();
            let count = |name: &str| meta["stats"][name].as_u64().unwrap();
            Some((
                meta["minTime"].as_i64().unwrap(),
                meta["maxTime"].as_i64().unwrap(),
                count("numSamples"),
                count("numSeries"),
            ))
        })
        .collect();
    metas.sort();
    metas
}

fn backfill_both(promtool: &Path, dir: &Path, text: &str) -> (PathBuf, PathBuf) {
    let input = dir.join("input.om");
    std::fs::write(&input, text).unwrap();
    let (ours, theirs) = (dir.join("ours"), dir.join("theirs"));
    let listed = succeeded(
        enginectl().args(["tsdb", "create-blocks-from", "openmetrics"]).arg(&input).arg(&ours).output().unwrap(),
        "enginectl tsdb create-blocks-from",
    );
    assert!(listed.starts_with("BLOCK ULID"), "{listed}");
    succeeded(
        Command::new(promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics", "-q"])
            .arg(&input)
            .arg(&theirs)
            .output()
            .unwrap(),
        "promtool tsdb create-blocks-from",
    );
    (ours, theirs)
}

#[test]
fn backfill_dumps_as_promtools() {
    let Some(promtool) = peer("/usr/bin/promtool") else { return };
    let dir = temp_dir("dump");
    let (ours, theirs) = backfill_both(&promtool, &dir, &exposition(1_700_000_000, 5));
    let (our_metas, their_metas) = (metas(&ours), metas(&theirs));
    assert!(our_metas.len() >= 3, "5 hours span at least three 2-hour blocks: {our_metas:?}");
    assert_eq!(our_metas, their_metas, "block ranges, sample and series counts");
    // promtool's dump opens the directory as a database, which wants a `wal` directory.
    for data in [&ours, &theirs] {
        std::fs::create_dir_all(data.join("wal")).unwrap();
    }
    let dump = |program: &Path, data: &Path| {
        sorted_lines(&succeeded(Command::new(program).args(["tsdb", "dump"]).arg(data).output().unwrap(), "tsdb dump"))
    };
    let theirs_dumped = dump(&promtool, &theirs);
    let sample_count: u64 = their_metas.iter().map(|meta| meta.2).sum();
    assert_eq!(theirs_dumped.len() as u64, sample_count);
    assert_eq!(dump(&promtool, &ours), theirs_dumped, "promtool tsdb dump: the same samples");
    assert_eq!(dump(Path::new(env!("CARGO_BIN_EXE_enginectl")), &ours), theirs_dumped, "enginectl tsdb dump too");
    println!("backfill: {} samples in {} blocks dump alike", sample_count, our_metas.len());
    let _ = std::fs::remove_dir_all(&dir);
}

fn start(binary: &Path, dir: &Path, data: &Path, name: &str, port: u16) -> Process {
    let config = dir.join(format!("{name}.yml"));
    std::fs::write(&config, "global:\n  scrape_interval: 1m\n").unwrap();
    let log_path = dir.join(format!("{name}.log"));
    let child = Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .env("NO_COLOR", "1")
        .spawn()
        .unwrap_or_else(|error| panic!("start {}: {error}", binary.display()));
    Process { child, log_path }
}

/// The answer to `query` at `time_s` as (labels, values) pairs, sorted, once it is non-empty.
fn answer(port: u16, query: &str, time_s: i64, process: &Process) -> Vec<(String, String)> {
    let encoded: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
    let path = format!("/api/v1/query?query={encoded}&time={time_s}");
    let body = wait_for_body(port, &path, WAIT_S_MAX, process, |body| body.contains("\"result\":[{"));
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut result: Vec<(String, String)> = json["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| (entry["metric"].to_string(), entry["values"].to_string()))
        .collect();
    result.sort();
    result
}

#[test]
fn servers_answer_alike_on_backfilled_directories() {
    let (Some(promtool), Some(prometheus)) = (peer("/usr/bin/promtool"), peer("/usr/bin/prometheus")) else { return };
    let dir = temp_dir("serve");
    let now_s = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    // Inside Prometheus' retention and older than its head; blocks end an hour before now.
    let start_s = (now_s - 5 * 3600) / 60 * 60;
    let (ours, theirs) = backfill_both(&promtool, &dir, &exposition(start_s, 4));
    let query = "{__name__=~\"backfill_.+\"}[20m]";
    let at_s = start_s + 3 * 3600; // Inside the third block; the window crosses a block boundary.
    let engine_on_theirs = {
        let port = free_port();
        let process = start(Path::new(env!("CARGO_BIN_EXE_server")), &dir, &theirs, "engine-theirs", port);
        answer(port, query, at_s, &process)
    };
    let engine_on_ours = {
        let port = free_port();
        let process = start(Path::new(env!("CARGO_BIN_EXE_server")), &dir, &ours, "engine-ours", port);
        answer(port, query, at_s, &process)
    };
    let prometheus_on_ours = {
        let port = free_port();
        let process = start(&prometheus, &dir, &ours, "prometheus-ours", port);
        answer(port, query, at_s, &process)
    };
    // 17 series; `backfill_untyped` has one sample, at the start, outside the window.
    assert_eq!(engine_on_theirs.len(), 16, "every backfilled series: {engine_on_theirs:?}");
    assert_eq!(engine_on_ours, engine_on_theirs, "the engine, on enginectl's and on promtool's blocks");
    assert_eq!(prometheus_on_ours, engine_on_theirs, "Prometheus 2.42 on enginectl's blocks");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without peers: bad input fails with the line, out-of-order samples are refused, nothing is
/// left behind, and flags parse as promtool's.
#[test]
fn bad_input_is_refused_with_its_line() {
    let dir = temp_dir("bad");
    #[track_caller]
    fn check(dir: &Path, name: &str, text: &str, expected: &str) {
        let input = dir.join(format!("{name}.om"));
        std::fs::write(&input, text).unwrap();
        let out = dir.join(name);
        let output =
            enginectl().args(["tsdb", "create-blocks-from", "openmetrics"]).arg(&input).arg(&out).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
        let left = std::fs::read_dir(&out).map(|entries| entries.count()).unwrap_or(0);
        assert_eq!(left, 0, "{name}: no block written");
    }
    check(
        &dir,
        "order",
        "# TYPE i info\ni_info{v=\"1\"} 1 10\ni_info{v=\"1\"} 1 5\n# EOF\n",
        "line 3: out of order sample",
    );
    check(&dir, "timestamp", "# TYPE g gauge\ng 1\n# EOF\n", "line 2: expected a timestamp");
    check(&dir, "syntax", "# TYPE g gauge\ng 1 1\ng 0x1 2\n# EOF\n", "openmetrics line 3, column 3");
    check(&dir, "eof", "g 1 1\n", "missing # EOF");

    let input = dir.join("ok.om");
    std::fs::write(&input, "g 1 0\ng 2 30000\n# EOF\n").unwrap();
    let run = |arguments: &[&str], out: &str| {
        let mut command = enginectl();
        command.args(["tsdb", "create-blocks-from", "openmetrics"]).args(arguments).arg(&input).arg(dir.join(out));
        command.output().unwrap()
    };
    let quiet = succeeded(run(&["--max-block-duration=18h", "--quiet"], "eighteen"), "18h");
    assert_eq!(quiet, "", "--quiet prints nothing");
    assert_eq!(metas(&dir.join("eighteen")).len(), 1, "0 s and 30,000 s in one 18-hour block");
    // Run from `dir`, so the default output directory `data/` lands there.
    let output = enginectl()
        .current_dir(&dir)
        .args(["tsdb", "create-blocks-from", "openmetrics", "-r", "--max-block-duration", "2h", "ok.om"])
        .output()
        .unwrap();
    let listed = succeeded(output, "-r");
    assert!(listed.contains("1970-01-01 00:00:00 +0000 UTC"), "{listed}");
    assert_eq!(metas(&dir.join("data")).len(), 2, "0 s and 30,000 s in two 2-hour blocks: {listed}");
    assert_eq!(run(&["--frobnicate"], "never").status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}
