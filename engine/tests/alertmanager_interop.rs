//! The notifier against Debian's Alertmanager 0.25: the engine evaluates an alerting rule and
//! sends the alert; Alertmanager's API v2 (read directly and through `amtool`) must show it with
//! the engine's external labels added, the relabeled-away label gone, and the annotations as the
//! rule templated them. Skipped when the peer is not installed; required under
//! `ENGINE_PEER_TESTS=1` (CI).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // Real processes, sockets and files.

mod common;

use std::process::{Command, Stdio};

use common::{free_port, peer, temp_dir, wait_for_body, Process};

/// Deadline for each wanted answer.
const WAIT_S_MAX: u64 = 30;

#[test]
fn alerts_reach_debian_alertmanager_and_amtool_reads_them() {
    let (Some(alertmanager), Some(amtool)) = (peer("/usr/bin/prometheus-alertmanager"), peer("/usr/bin/amtool")) else {
        return;
    };
    let dir = temp_dir("engine-am-interop", "alerts");
    let am_port = free_port();
    std::fs::write(
        dir.join("alertmanager.yml"),
        "route:\n  receiver: blackhole\n  group_wait: 1s\nreceivers:\n  - name: blackhole\n",
    )
    .unwrap();
    let am_log = dir.join("alertmanager.log");
    let am = Process {
        child: Command::new(alertmanager)
            .arg(format!("--config.file={}", dir.join("alertmanager.yml").display()))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&am_log).unwrap())
            .spawn()
            .expect("start alertmanager"),
        log_path: am_log,
    };
    wait_for_body(am_port, "/-/ready", WAIT_S_MAX, &am, |_| true);

    std::fs::write(
        dir.join("rules.yml"),
        "groups:\n  - name: interop\n    interval: 1s\n    rules:\n      - alert: InteropAlwaysFiring\n        \
         expr: vector(42)\n        labels:\n          severity: page\n          replica: a\n        annotations:\n          \
         summary: 'value {{ $value }} in {{ $externalLabels.cluster }}'\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("engine.yml"),
        format!(
            "global:\n  evaluation_interval: 1s\n  external_labels: {{cluster: interop}}\nrule_files: ['rules.yml']\n\
             alerting:\n  alert_relabel_configs:\n    - {{action: labeldrop, regex: replica}}\n  alertmanagers:\n    \
             - static_configs: [{{targets: ['127.0.0.1:{am_port}']}}]\n"
        ),
    )
    .unwrap();
    let engine_port = free_port();
    let engine_log = dir.join("engine.log");
    let engine = Process {
        child: Command::new(env!("CARGO_BIN_EXE_server"))
            .arg(format!("--config.file={}", dir.join("engine.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{engine_port}"))
            .arg("--rules.alert.resend-delay=1s")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&engine_log).unwrap())
            .env("NO_COLOR", "1")
            .spawn()
            .expect("start engine"),
        log_path: engine_log,
    };

    let body =
        wait_for_body(am_port, "/api/v2/alerts", WAIT_S_MAX, &engine, |body| body.contains("InteropAlwaysFiring"));
    let alerts: serde_json::Value = serde_json::from_str(&body).unwrap();
    let alert = &alerts.as_array().unwrap()[0];
    assert_eq!(
        alert["labels"],
        serde_json::json!({"alertname": "InteropAlwaysFiring", "cluster": "interop", "severity": "page"}),
        "{body}"
    );
    assert_eq!(alert["annotations"], serde_json::json!({"summary": "value 42 in interop"}));
    assert_eq!(alert["status"]["state"], "active");
    assert!(alert["generatorURL"].as_str().unwrap().contains("/graph?g0.expr=vector%2842%29"), "{body}");

    let output = Command::new(amtool)
        .args(["alert", "query", "-o", "extended", &format!("--alertmanager.url=http://127.0.0.1:{am_port}")])
        .output()
        .expect("run amtool");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "amtool failed: {}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("alertname=\"InteropAlwaysFiring\""), "{stdout}");
    assert!(stdout.contains("cluster=\"interop\""), "{stdout}");

    let metrics = wait_for_body(engine_port, "/metrics", WAIT_S_MAX, &engine, |body| {
        body.contains("prometheus_notifications_sent_total{alertmanager=")
    });
    assert!(metrics.contains("prometheus_notifications_alertmanagers_discovered 1"), "{metrics}");
    assert!(metrics.contains("prometheus_notifications_dropped_total 0"), "{metrics}");
}
