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
    let config = format!(
        "global:\n  scrape_interval: 1s\n  external_labels:\n    replica: {name}\n\
         scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: [\"127.0.0.1:{exporter_port}\"]\n"
    );
    common::start_engine(dir, name, &format!("{name}-{generation}"), port, Some(&config), extra)
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
    let query_node = common::start_engine(
        &dir,
        "query",
        "query",
        port_query,
        None,
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

/// HAProxy's health-check interval and fall count, as the design documents configure them.
const CHECK_INTER_S: u64 = 2;
const CHECK_FALL: u64 = 3;

fn start_haproxy(binary: &Path, dir: &Path, port: u16, backends: &[(&str, u16)]) -> Process {
    let config = dir.join("haproxy.cfg");
    let mut text = format!(
        "global\n  maxconn 256\n\
         defaults\n  mode http\n  timeout connect 500ms\n  timeout client 10s\n  timeout server 10s\n\
         frontend engines_in\n  bind 127.0.0.1:{port}\n  default_backend engines\n\
         backend engines\n  balance roundrobin\n  option httpchk GET /-/healthy\n"
    );
    for (name, backend_port) in backends {
        text.push_str(&format!(
            "  server {name} 127.0.0.1:{backend_port} check inter {CHECK_INTER_S}s fall {CHECK_FALL} rise 2\n"
        ));
    }
    std::fs::write(&config, text).unwrap();
    let log_path = dir.join("haproxy.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(binary)
        .arg("-db")
        .arg("-f")
        .arg(&config)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start haproxy");
    Process { child, log_path }
}

/// `up{job="node"}` through `port`: the status and the result without timestamps.
fn answer_without_time(port: u16) -> (u16, String) {
    let Ok((status, body)) = http_get(port, "/api/v1/query?query=up%7Bjob%3D%22node%22%7D") else {
        return (0, String::new());
    };
    let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let result: Vec<String> = json["data"]["result"]
        .as_array()
        .map(|series| series.iter().map(|sample| format!("{} {}", sample["metric"], sample["value"][1])).collect())
        .unwrap_or_default();
    (status, result.join("\n"))
}

#[test]
fn haproxy_in_front_of_a_pair_answers_through_a_replica_death() {
    let (Some(node_exporter), Some(haproxy)) = (peer("/usr/bin/prometheus-node-exporter"), peer("/usr/sbin/haproxy"))
    else {
        return;
    };
    let dir = common::temp_dir("engine-ha-haproxy", "pair");
    let (_exporter, exporter_port) = start_node_exporter(&node_exporter, &dir);
    let (port_a, port_b, port_proxy) = (free_port(), free_port(), free_port());
    let replica_a = start_replica(&dir, "a", port_a, exporter_port, 0);
    let replica_b = start_replica(&dir, "b", port_b, exporter_port, 0);
    let proxy = start_haproxy(&haproxy, &dir, port_proxy, &[("a", port_a), ("b", port_b)]);
    let log_a = replica_a.log_path.clone();
    let failure = |what: &str| {
        format!(
            "{what}\nhaproxy log:\n{}\nreplica a log:\n{}\nreplica b log:\n{}",
            proxy.log(),
            std::fs::read_to_string(&log_a).unwrap_or_default(),
            replica_b.log()
        )
    };
    // Both replicas scraping, both marked up (rise 2 x inter).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while [port_a, port_b].iter().any(|&port| answer_without_time(port).1.is_empty()) {
        assert!(std::time::Instant::now() < deadline, "{}", failure("replicas never answered"));
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2 * CHECK_INTER_S + 1));
    let expected = answer_without_time(port_a).1;
    assert_eq!(answer_without_time(port_b).1, expected, "identical replicas answer alike");

    let started = std::time::Instant::now();
    let kill_after = Duration::from_secs(4);
    let run_for = Duration::from_secs(20);
    let mut replica_a = Some(replica_a);
    let mut killed_at: Option<Duration> = None;
    let mut outcomes: Vec<(Duration, u16, String)> = Vec::new();
    while started.elapsed() < run_for {
        if killed_at.is_none() && started.elapsed() >= kill_after {
            drop(replica_a.take());
            killed_at = Some(started.elapsed());
        }
        let (status, answer) = answer_without_time(port_proxy);
        outcomes.push((started.elapsed(), status, answer));
        std::thread::sleep(Duration::from_millis(200));
    }
    let killed_at = killed_at.unwrap();
    // Requests routed to the dead replica fail until HAProxy marks it down: at most fall x
    // inter after the death, plus one check interval of phase and a second of slack.
    let window_end = killed_at + Duration::from_secs(CHECK_FALL * CHECK_INTER_S + CHECK_INTER_S + 1);
    let mut failed = 0;
    for (at, status, answer) in &outcomes {
        if *status == 200 {
            assert_eq!(answer, &expected, "{}", failure(&format!("a different answer at {at:?}")));
            continue;
        }
        failed += 1;
        assert!(
            *at >= killed_at && *at <= window_end,
            "{}",
            failure(&format!("status {status} at {at:?}, outside the fall window {killed_at:?}..{window_end:?}"))
        );
    }
    let answered_after = outcomes.iter().filter(|(at, status, _)| *at > window_end && *status == 200).count();
    assert!(answered_after >= 10, "{}", failure(&format!("only {answered_after} answers after the fall window")));
    eprintln!("{} queries through haproxy, {failed} failed within the fall window", outcomes.len());
    drop(proxy);
    drop(replica_b);
}
