//! Federation against real Prometheus 2.42 (Debian's `/usr/bin/prometheus`) as the global
//! server: the engine scrapes itself every second, records `job:up:sum` (a series without an
//! `instance`) and carries the external label `replica="a"`; Prometheus scrapes the engine's
//! `/federate` with `honor_labels: true` and two `match[]` selectors. Prometheus must parse every
//! answer, hold exactly the engine's series (its own labels kept, `replica="a"` added, no
//! `instance` where the engine has none), and every sample it stored must be one the engine
//! holds, with the engine's timestamp. Runs when `prometheus` is installed, and must run when
//! `ENGINE_PEER_TESTS=1`. Both listen on loopback only, each with its own temporary directory.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // Tests drive real processes, sockets and files.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{free_port, now_ms, peer, query_matrix, with_label, Matrix, Process};

/// Deadline for each wait.
const WAIT_S_MAX: u64 = 60;

/// What the global server federates.
const SELECTORS: [&str; 2] = ["{job=\"engine\"}", "{__name__=~\"job:.*\"}"];

fn start_engine(dir: &Path, port: u16) -> Process {
    let rules = dir.join("rules.yml");
    std::fs::write(&rules, "groups:\n  - name: sums\n    interval: 1s\n    rules:\n      - record: job:up:sum\n        expr: sum by (job) (up)\n").unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  external_labels:\n    replica: a\n\
         rule_files: [\"{}\"]\n\
         scrape_configs:\n  - job_name: engine\n    static_configs:\n      - targets: [\"127.0.0.1:{port}\"]\n",
        rules.display()
    );
    common::start_engine(dir, "engine", "engine", port, Some(&config), &[])
}

fn start_prometheus(binary: &Path, dir: &Path, port: u16, engine_port: u16) -> Process {
    let selectors: Vec<String> = SELECTORS.iter().map(|selector| format!("'{selector}'")).collect();
    let config = format!(
        "global:\n  scrape_interval: 1s\n\
         scrape_configs:\n  - job_name: federate\n    honor_labels: true\n    metrics_path: /federate\n    \
         params:\n      'match[]': [{}]\n    static_configs:\n      - targets: [\"127.0.0.1:{engine_port}\"]\n",
        selectors.join(", ")
    );
    common::start_prometheus(binary, dir, "prometheus", port, &config, &[])
}

#[test]
fn prometheus_federates_the_engine_with_honor_labels() {
    let Some(binary) = peer("/usr/bin/prometheus") else { return };
    let dir = common::temp_dir("engine-federate-prometheus", "honor-labels");
    let engine_port = free_port();
    let engine = start_engine(&dir, engine_port);
    let prometheus_port = free_port();
    let prometheus = start_prometheus(&binary, &dir, prometheus_port, engine_port);
    let failure = |what: &str| format!("{what}\nengine log:\n{}\nprometheus log:\n{}", engine.log(), prometheus.log());

    // Several federation scrapes, all successful.
    let deadline = Instant::now() + Duration::from_secs(WAIT_S_MAX);
    loop {
        let up = query_matrix(prometheus_port, "up{job=\"federate\"}[10s]", now_ms()).unwrap_or_default();
        let samples: Vec<u64> = up.values().flatten().map(|(_, bits)| *bits).collect();
        if samples.len() >= 6 {
            assert!(
                samples.iter().all(|bits| f64::from_bits(*bits) == 1.0),
                "{}",
                failure(&format!("a federation scrape failed: {up:?}"))
            );
            break;
        }
        assert!(Instant::now() < deadline, "{}", failure("prometheus did not scrape /federate"));
        std::thread::sleep(Duration::from_millis(500));
    }

    let end_ms = now_ms() - 1_000;
    let window = format!("[{}ms]", 30_000);
    let mut expected = Matrix::new();
    for selector in SELECTORS {
        let answer = query_matrix(engine_port, &format!("{selector}{window}"), end_ms).expect("the engine answers");
        expected.extend(with_label(&answer, "replica", "a"));
    }
    let held =
        query_matrix(prometheus_port, &format!("{{replica=\"a\"}}{window}"), end_ms).expect("prometheus answers");
    let expected_series: BTreeSet<&String> = expected.keys().collect();
    let held_series: BTreeSet<&String> = held.keys().collect();
    let missing: Vec<_> = expected_series.difference(&held_series).collect();
    let extra: Vec<_> = held_series.difference(&expected_series).collect();
    // A series the engine created within the last scrape may not be federated yet.
    assert!(missing.len() <= 2 && extra.is_empty(), "{}", failure(&format!("missing {missing:?}\nextra {extra:?}")));
    assert!(held.len() >= 50, "too few series federated: {}", held.len());
    let sum_series = held
        .keys()
        .find(|labels| labels.contains("\"job:up:sum\""))
        .unwrap_or_else(|| panic!("{}", failure("job:up:sum not federated")));
    assert!(!sum_series.contains("instance"), "instance=\"\" leaves the global series without one: {sum_series}");

    let mut compared = 0_usize;
    for (labels, samples) in &held {
        let engine_samples: BTreeSet<&(i64, u64)> = expected[labels].iter().collect();
        for sample in samples {
            assert!(
                engine_samples.contains(sample),
                "{}",
                failure(&format!("{labels}: prometheus holds {sample:?}, which the engine never had"))
            );
            compared += 1;
        }
    }
    assert!(compared >= 200, "too few samples compared: {compared}");
    eprintln!("federated {} series, {compared} samples, all the engine's own", held.len());
    drop(prometheus);
    drop(engine);
}
