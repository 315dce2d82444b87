//! The embedded alert manager as a user runs it: the engine's own rules feed it in process, its
//! webhook receiver gets Alertmanager's version 4 payload, and Debian's `amtool` (Alertmanager
//! 0.25) queries alerts and adds, lists and expires silences against the engine's API v2.
//! Skipped when amtool is not installed; required under `ENGINE_PEER_TESTS=1` (CI).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // Real processes, sockets and files.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, peer, temp_dir, wait_for_body, Process};

const WAIT_S_MAX: u64 = 30;

/// Accepts POSTs on a loopback port and keeps their bodies.
fn webhook_receiver() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
    let kept = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut content_length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    content_length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; content_length];
            let _ = reader.read_exact(&mut body);
            kept.lock().unwrap().push(String::from_utf8_lossy(&body).to_string());
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (port, bodies)
}

fn amtool(amtool: &std::path::Path, port: u16, arguments: &[&str]) -> String {
    let output = Command::new(amtool)
        .args(arguments)
        .arg(format!("--alertmanager.url=http://127.0.0.1:{port}"))
        .output()
        .expect("run amtool");
    assert!(
        output.status.success(),
        "amtool {arguments:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).to_string()
}

#[test]
fn rules_notify_through_the_embedded_alert_manager_and_amtool_manages_it() {
    let Some(amtool_path) = peer("/usr/bin/amtool") else { return };
    let dir = temp_dir("engine-embedded-am", "amtool");
    let (hook_port, bodies) = webhook_receiver();
    std::fs::write(
        dir.join("rules.yml"),
        "groups:\n  - name: embedded\n    interval: 1s\n    rules:\n      - alert: EmbeddedAlwaysFiring\n        \
         expr: vector(7)\n        labels: {severity: page}\n        annotations: {summary: 'value {{ $value }}'}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("engine.yml"),
        format!(
            "global:\n  evaluation_interval: 1s\nrule_files: ['rules.yml']\nalert_manager:\n  config:\n    route:\n      \
             receiver: hook\n      group_by: [alertname]\n      group_wait: 1s\n      group_interval: 2s\n    receivers:\n      \
             - name: hook\n        webhook_configs: [{{url: 'http://127.0.0.1:{hook_port}/hook'}}]\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let log_path = dir.join("engine.log");
    let engine = Process {
        child: Command::new(env!("CARGO_BIN_EXE_server"))
            .arg(format!("--config.file={}", dir.join("engine.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .env("NO_COLOR", "1")
            .spawn()
            .expect("start engine"),
        log_path,
    };

    // The webhook receives Alertmanager's version 4 payload.
    let deadline = Instant::now() + Duration::from_secs(WAIT_S_MAX);
    let payload: serde_json::Value = loop {
        if let Some(body) = bodies.lock().unwrap().first() {
            break serde_json::from_str(body).unwrap();
        }
        assert!(Instant::now() < deadline, "no notification; log:\n{}", engine.log());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(payload["version"], "4");
    assert_eq!(payload["status"], "firing");
    assert_eq!(payload["groupKey"], "{}:{alertname=\"EmbeddedAlwaysFiring\"}");
    assert_eq!(payload["alerts"][0]["annotations"]["summary"], "value 7");

    let alerts = amtool(&amtool_path, port, &["alert", "query", "-o", "extended"]);
    assert!(alerts.contains("alertname=\"EmbeddedAlwaysFiring\""), "{alerts}");
    assert!(alerts.contains("severity=\"page\""), "{alerts}");

    let id = amtool(
        &amtool_path,
        port,
        &["silence", "add", "alertname=EmbeddedAlwaysFiring", "--comment=maintenance", "--author=ci", "--duration=1h"],
    )
    .trim()
    .to_string();
    assert_eq!(id.len(), 36, "a UUID-shaped silence id: {id:?}");
    let silences = amtool(&amtool_path, port, &["silence", "query", "-o", "extended"]);
    assert!(silences.contains(&id) && silences.contains("maintenance"), "{silences}");
    let body = wait_for_body(port, "/api/v2/alerts?silenced=true", WAIT_S_MAX, &engine, |body| {
        body.contains("\"state\":\"suppressed\"")
    });
    assert!(body.contains(&id), "{body}");
    // Silenced: amtool's default query hides it.
    let active = amtool(&amtool_path, port, &["alert", "query"]);
    assert!(!active.contains("EmbeddedAlwaysFiring"), "{active}");

    amtool(&amtool_path, port, &["silence", "expire", &id]);
    let expired = amtool(&amtool_path, port, &["silence", "query", "--expired", "-o", "extended"]);
    assert!(expired.contains(&id), "{expired}");
    let status = wait_for_body(port, "/api/v2/status", WAIT_S_MAX, &engine, |_| true);
    assert!(status.contains("\"cluster\"") && status.contains("\"original\""), "{status}");
    let metrics = wait_for_body(port, "/metrics", WAIT_S_MAX, &engine, |body| body.contains("alertmanager_alerts{"));
    assert!(metrics.contains("alertmanager_notifications_total{integration=\"webhook\"}"), "{metrics}");
}

/// Debian's Prometheus 2.42 sends its alerts to the engine's embedded alert manager as it would
/// to an Alertmanager (API v2), and the engine's API lists them.
#[test]
fn prometheus_sends_to_the_embedded_alert_manager() {
    let Some(prometheus) = peer("/usr/bin/prometheus") else { return };
    let dir = temp_dir("engine-embedded-am", "prometheus");
    std::fs::write(
        dir.join("engine.yml"),
        "alert_manager:\n  config:\n    route: {receiver: none, group_by: [alertname]}\n    receivers: [{name: none}]\n",
    )
    .unwrap();
    let port = free_port();
    let log_path = dir.join("engine.log");
    let engine = Process {
        child: Command::new(env!("CARGO_BIN_EXE_server"))
            .arg(format!("--config.file={}", dir.join("engine.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .env("NO_COLOR", "1")
            .spawn()
            .expect("start engine"),
        log_path,
    };
    wait_for_body(port, "/-/ready", WAIT_S_MAX, &engine, |_| true);
    std::fs::write(
        dir.join("rules.yml"),
        "groups:\n  - name: from-prometheus\n    interval: 1s\n    rules:\n      - alert: FromPrometheus\n        \
         expr: vector(3)\n        labels: {team: db}\n        annotations: {summary: 'seen {{ $value }}'}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  evaluation_interval: 1s\n  external_labels: {{source: prometheus}}\nrule_files: ['rules.yml']\n\
             alerting:\n  alertmanagers:\n    - static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
        ),
    )
    .unwrap();
    let prometheus_port = free_port();
    let prometheus_log = dir.join("prometheus.log");
    let _prometheus = Process {
        child: Command::new(prometheus)
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("prometheus-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"))
            // The first evaluation may run before discovery lists the alert manager; resend soon.
            .arg("--rules.alert.resend-delay=1s")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&prometheus_log).unwrap())
            .spawn()
            .expect("start prometheus"),
        log_path: prometheus_log,
    };
    let body = wait_for_body(port, "/api/v2/alerts", WAIT_S_MAX, &engine, |body| body.contains("FromPrometheus"));
    let alerts: serde_json::Value = serde_json::from_str(&body).unwrap();
    let alert = &alerts[0];
    assert_eq!(
        alert["labels"],
        serde_json::json!({"alertname": "FromPrometheus", "source": "prometheus", "team": "db"}),
        "{body}"
    );
    assert_eq!(alert["annotations"]["summary"], "seen 3");
    assert_eq!(alert["status"]["state"], "active");
    assert_eq!(alert["receivers"], serde_json::json!([{"name": "none"}]));
    let groups =
        wait_for_body(port, "/api/v2/alerts/groups", WAIT_S_MAX, &engine, |body| body.contains("FromPrometheus"));
    assert!(groups.contains("\"labels\":{\"alertname\":\"FromPrometheus\"}"), "{groups}");
}
