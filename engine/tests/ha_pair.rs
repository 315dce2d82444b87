//! HA pairs as real processes.
//!
//! Deduplication: two engine replicas
//! (`replica="a"`, `replica="b"`) scrape the same node exporter (Debian's
//! `prometheus-node-exporter`) every second; a third engine runs as a query node over both
//! (`--query.store`). Replica a is killed (SIGKILL) for several seconds and restarted, then
//! replica b the same. The query node's deduplicated view must be one series per scraped series,
//! without the replica label, with no hole wider than the scrape interval allows (each replica's
//! outage filled from the other) and no counter reset; `dedup=false` shows both replicas;
//! with a replica down, the answer carries a warning, or fails with `partial_response=false`.
//!
//! Gap fill: replica a runs with `--ha.peer` naming replica b; killed for several seconds and
//! restarted, it reads the window it missed from b before scraping again, and then holds
//! exactly b's samples for that window and no hole.
//!
//! Both run when the node exporter is installed, and must run when `ENGINE_PEER_TESTS=1`.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // Tests drive real processes, sockets and files.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, http_get, now_ms, peer, query_matrix, Process};

/// Each replica's outage, seconds.
const OUTAGE_S: u64 = 5;

/// Widest hole the deduplicated series may have, ms: a 1 s interval with scrape jitter.
const HOLE_MS_MAX: i64 = 2_500;

fn start_replica(dir: &Path, name: &str, port: u16, exporter_port: u16, generation: u32) -> Process {
    start_replica_with(dir, name, port, exporter_port, generation, &[])
}

fn start_replica_with(
    dir: &Path,
    name: &str,
    port: u16,
    exporter_port: u16,
    generation: u32,
    extra: &[String],
) -> Process {
    let config = dir.join(format!("{name}.yml"));
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  external_labels:\n    replica: {name}\n\
             scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: [\"127.0.0.1:{exporter_port}\"]\n"
        ),
    )
    .unwrap();
    let mut arguments = vec![format!("--config.file={}", config.display())];
    arguments.extend_from_slice(extra);
    start_engine(dir, &format!("{name}-{generation}"), &format!("{name}-data"), port, &arguments)
}

fn start_engine(dir: &Path, log_name: &str, data: &str, port: u16, extra: &[String]) -> Process {
    let log_path = dir.join(format!("{log_name}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_server"))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--storage.tsdb.path={}", dir.join(data).display()))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log)
        .env("NO_COLOR", "1")
        .spawn()
        .expect("start server binary");
    Process { child, log_path }
}

fn query_json(port: u16, query: &str, extra: &str) -> serde_json::Value {
    let encoded: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
    let (status, body) = http_get(port, &format!("/api/v1/query?query={encoded}{extra}")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    json["http_status"] = serde_json::Value::from(status);
    json
}

fn start_node_exporter(binary: &Path, dir: &Path) -> (Process, u16) {
    let port = free_port();
    let child = Command::new(binary)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start node exporter");
    (Process { child, log_path: dir.join("none") }, port)
}

/// `up{job="node"}`'s sample times on `port` over `[from_ms, to_ms]`.
fn up_times(port: u16, from_ms: i64, to_ms: i64) -> Vec<i64> {
    let matrix =
        query_matrix(port, &format!("up{{job=\"node\"}}[{}ms]", to_ms - from_ms + 1), to_ms).unwrap_or_default();
    matrix.values().flatten().map(|(time_ms, _)| *time_ms).collect()
}

#[test]
fn a_restarted_replica_fills_its_outage_from_its_peer() {
    let Some(node_exporter) = peer("/usr/bin/prometheus-node-exporter") else { return };
    let dir = common::temp_dir("engine-ha-gap-fill", "pair");
    let (_exporter, exporter_port) = start_node_exporter(&node_exporter, &dir);
    let (port_a, port_b) = (free_port(), free_port());
    let peer_flag = vec![format!("--ha.peer=http://127.0.0.1:{port_b}")];
    let started_ms = now_ms();
    let replica_b = start_replica(&dir, "b", port_b, exporter_port, 0);
    let replica_a = start_replica_with(&dir, "a", port_a, exporter_port, 0, &peer_flag);
    std::thread::sleep(Duration::from_secs(4));
    let killed_ms = now_ms();
    drop(replica_a);
    std::thread::sleep(Duration::from_secs(OUTAGE_S));
    let restarted_ms = now_ms();
    let replica_a = start_replica_with(&dir, "a", port_a, exporter_port, 1, &peer_flag);
    std::thread::sleep(Duration::from_secs(4));
    let end_ms = now_ms() - 1_000;
    let failure =
        |what: &str| format!("{what}\nreplica a log:\n{}\nreplica b log:\n{}", replica_a.log(), replica_b.log());

    let held_by_a = up_times(port_a, killed_ms, restarted_ms);
    let held_by_b = up_times(port_b, killed_ms, restarted_ms);
    assert!(
        held_by_b.len() >= (OUTAGE_S - 1) as usize,
        "{}",
        failure(&format!("b scraped through the outage: {held_by_b:?}"))
    );
    assert_eq!(held_by_a, held_by_b, "{}", failure("a holds b's samples for the window it missed"));
    let times = up_times(port_a, started_ms, end_ms);
    let widest = times.windows(2).map(|pair| pair[1] - pair[0]).max().unwrap_or(i64::MAX);
    assert!(widest <= HOLE_MS_MAX, "{}", failure(&format!("a {widest} ms hole in replica a: {times:?}")));
    let (_, metrics) = http_get(port_a, "/metrics").unwrap();
    let filled: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("engine_ha_gap_fill_samples_total ")?.parse().ok())
        .unwrap_or_else(|| panic!("{}", failure("no gap fill metrics")));
    assert!(filled >= held_by_b.len() as f64, "{}", failure(&format!("{filled} samples filled")));
    assert!(metrics.contains("engine_ha_gap_fill_success 1"), "{metrics}");
    drop(replica_a);
    drop(replica_b);
}

#[test]
fn query_node_deduplicates_an_ha_pair_across_each_replicas_outage() {
    let Some(node_exporter) = peer("/usr/bin/prometheus-node-exporter") else { return };
    let dir = common::temp_dir("engine-ha-dedup", "pair");
    let (_exporter, exporter_port) = start_node_exporter(&node_exporter, &dir);
    let (port_a, port_b, port_query) = (free_port(), free_port(), free_port());
    let started_ms = now_ms();
    let replica_a = start_replica(&dir, "a", port_a, exporter_port, 0);
    let replica_b = start_replica(&dir, "b", port_b, exporter_port, 0);
    let query_node = start_engine(
        &dir,
        "query",
        "query-data",
        port_query,
        &[format!("--query.store=http://127.0.0.1:{port_a}"), format!("--query.store=http://127.0.0.1:{port_b}")],
    );
    std::thread::sleep(Duration::from_secs(4));
    drop(replica_a);
    std::thread::sleep(Duration::from_secs(OUTAGE_S));
    let replica_a = start_replica(&dir, "a", port_a, exporter_port, 1);
    std::thread::sleep(Duration::from_secs(4));

    drop(replica_b);
    std::thread::sleep(Duration::from_secs(1));
    // One replica down: a warning, or an error without partial responses.
    let partial = query_json(port_query, "up", "");
    assert_eq!(partial["http_status"], 200, "{partial}");
    assert!(partial["warnings"].to_string().contains("remote read from 127.0.0.1:"), "{partial}");
    let strict = query_json(port_query, "up", "&partial_response=false");
    assert_eq!(strict["http_status"], 503, "{strict}");
    std::thread::sleep(Duration::from_secs(OUTAGE_S - 1));
    let replica_b = start_replica(&dir, "b", port_b, exporter_port, 1);
    std::thread::sleep(Duration::from_secs(4));

    let end_ms = now_ms() - 1_000;
    let window_ms = end_ms - started_ms;
    let failure = |what: &str| {
        format!(
            "{what}\nquery node log:\n{}\nreplica a log:\n{}\nreplica b log:\n{}",
            query_node.log(),
            replica_a.log(),
            replica_b.log()
        )
    };
    let up =
        query_matrix(port_query, &format!("up{{job=\"node\"}}[{window_ms}ms]"), end_ms).expect("query node answers");
    assert_eq!(up.len(), 1, "{}", failure(&format!("one deduplicated series: {:?}", up.keys())));
    let (labels, samples) = up.iter().next().unwrap();
    assert!(!labels.contains("replica"), "{labels}");
    let times: Vec<i64> = samples.iter().map(|(time_ms, _)| *time_ms).collect();
    let widest = times.windows(2).map(|pair| pair[1] - pair[0]).max().unwrap_or(i64::MAX);
    assert!(times.len() >= 15, "{}", failure(&format!("too few samples: {times:?}")));
    assert!(widest <= HOLE_MS_MAX, "{}", failure(&format!("a {widest} ms hole in the deduplicated series: {times:?}")));

    // Each replica alone has its outage's hole.
    let encoded: String =
        form_urlencoded::byte_serialize(format!("up{{job=\"node\"}}[{window_ms}ms]").as_bytes()).collect();
    let (_, body) =
        http_get(port_query, &format!("/api/v1/query?query={encoded}&time={:.3}&dedup=false", end_ms as f64 / 1000.0))
            .unwrap();
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let replicas = json["data"]["result"].as_array().cloned().unwrap_or_default();
    assert_eq!(replicas.len(), 2, "dedup=false shows both replicas: {body}");
    for replica in &replicas {
        let times: Vec<f64> =
            replica["values"].as_array().unwrap().iter().map(|pair| pair[0].as_f64().unwrap()).collect();
        let hole_s = times.windows(2).map(|pair| pair[1] - pair[0]).fold(0.0, f64::max);
        assert!(
            hole_s >= (OUTAGE_S - 1) as f64,
            "replica {} had its outage: widest hole {hole_s} s",
            replica["metric"]["replica"]
        );
    }

    // Counters through the deduplicated view never reset.
    let resets = query_json(port_query, &format!("max(resets(node_cpu_seconds_total[{window_ms}ms]))"), "");
    assert_eq!(resets["data"]["result"][0]["value"][1], "0", "{}", failure(&resets.to_string()));
    drop(query_node);
    drop(replica_a);
    drop(replica_b);
}
