//! Notifier tests over the in-memory network: an Alertmanager stand-in records every request
//! (or answers with an error, or never answers), under tokio's paused clock.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::*;
use crate::io::{MemFileSystem, MemNetwork, Network, RandomStreams, TokioSpawner};
use crate::model::Labels;

/// Requests one stand-in received: (path, authorization header, JSON body).
type Received = Arc<Mutex<Vec<(String, Option<String>, serde_json::Value)>>>;

/// Serves `address` on `net`, answering `status` after `delay_ms`, recording every request.
async fn alertmanager(net: &MemNetwork, address: &str, status: u16, delay_ms: u64) -> Received {
    let received: Received = Arc::default();
    let mut listener = net.bind(address.to_string()).await.unwrap();
    let log = received.clone();
    tokio::spawn(async move {
        while let Ok((connection, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let log = log.clone();
                    async move {
                        let path = request.uri().path().to_string();
                        let authorization = request
                            .headers()
                            .get("authorization")
                            .map(|value| value.to_str().unwrap_or("").to_string());
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        log.lock().unwrap().push((path, authorization, serde_json::from_slice(&body).unwrap()));
                        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                        let mut response = Response::new(Full::new(Bytes::from_static(b"")));
                        *response.status_mut() = StatusCode::from_u16(status).unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(connection), service)
                    .await;
            });
        }
    });
    received
}

fn env(net: &MemNetwork) -> Env {
    Env {
        clock: Arc::new(crate::io::RealClock),
        fs: Arc::new(MemFileSystem::default()),
        net: Arc::new(net.clone()),
        spawner: Arc::new(TokioSpawner),
        random: RandomStreams::new(1),
    }
}

fn alerting(yaml: &str) -> (AlertingConfig, BTreeMap<String, String>) {
    let config = crate::config::parse(yaml).unwrap();
    (config.alerting, config.global.external_labels)
}

fn alert(name: &str, index: usize) -> Alert {
    Alert {
        labels: Labels::from_pairs([
            ("alertname", name.to_string()),
            ("index", index.to_string()),
            ("replica", "a".to_string()),
        ]),
        annotations: Labels::from_pairs([("summary", "s")]),
        starts_at_ms: 1_700_000_000_000,
        ends_at_ms: 1_700_000_240_000,
        generator_url: "http://engine:9090/graph?g0.expr=up".to_string(),
    }
}

/// Lets the notifier's tasks run until `condition` holds (virtual time, bounded).
async fn until(condition: impl Fn() -> bool) {
    for _ in 0..1_000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached within 10 virtual seconds");
}

#[tokio::test(start_paused = true)]
async fn alerts_reach_every_alertmanager_in_batches_with_external_labels_and_relabeling() {
    let net = MemNetwork::default();
    let first = alertmanager(&net, "am-1:9093", 200, 0).await;
    let second = alertmanager(&net, "am-2:9093", 200, 0).await;
    let notifier = Notifier::new(env(&net), QUEUE_CAPACITY_DEFAULT);
    let (config, external_labels) = alerting(
        "global:\n  external_labels: {cluster: eu, replica: a}\nalerting:\n  alert_relabel_configs:\n    \
         - {action: labeldrop, regex: replica}\n  alertmanagers:\n    - static_configs: [{targets: ['am-1:9093', 'am-2:9093']}]\n      \
         path_prefix: /prefix\n      authorization: {credentials: secret}\n",
    );
    notifier.apply_config(&config, &external_labels);
    tokio::spawn(notifier.clone().run());
    notifier.send((0..300).map(|index| alert("HighLatency", index)).collect());
    until(|| first.lock().unwrap().len() == 2 && second.lock().unwrap().len() == 2).await;
    for received in [&first, &second] {
        let requests = received.lock().unwrap();
        assert_eq!(requests.iter().map(|(_, _, body)| body.as_array().unwrap().len()).collect::<Vec<_>>(), [256, 44]);
        let (path, authorization, body) = &requests[0];
        assert_eq!(path, "/prefix/api/v2/alerts");
        assert_eq!(authorization.as_deref(), Some("Bearer secret"));
        let first_alert = &body[0];
        assert_eq!(
            first_alert["labels"],
            serde_json::json!({"alertname": "HighLatency", "cluster": "eu", "index": "0"})
        );
        assert_eq!(first_alert["annotations"], serde_json::json!({"summary": "s"}));
        assert_eq!(first_alert["startsAt"], "2023-11-14T22:13:20Z");
        assert_eq!(first_alert["endsAt"], "2023-11-14T22:17:20Z");
        assert_eq!(first_alert["generatorURL"], "http://engine:9090/graph?g0.expr=up");
    }
    assert_eq!(notifier.dropped_total(), 0);
    let mut metrics = String::new();
    notifier.render(&mut metrics);
    assert!(metrics
        .contains("prometheus_notifications_sent_total{alertmanager=\"http://am-1:9093/prefix/api/v2/alerts\"} 300"));
    assert!(metrics.contains("prometheus_notifications_alertmanagers_discovered 2"));
    assert!(metrics.contains("prometheus_notifications_queue_capacity 10000"));
}

#[test]
fn a_full_queue_drops_the_oldest_alerts_and_counts_them() {
    let net = MemNetwork::default();
    let notifier = Notifier::new(env(&net), 5);
    notifier.send((0..3).map(|index| alert("A", index)).collect());
    notifier.send((3..8).map(|index| alert("A", index)).collect());
    assert_eq!(notifier.queue_length(), 5);
    assert_eq!(notifier.dropped_total(), 3);
    let kept: Vec<String> =
        notifier.lock().queue.iter().map(|alert| alert.labels.get("index").unwrap().to_string()).collect();
    assert_eq!(kept, ["3", "4", "5", "6", "7"]);
    // One send larger than the queue keeps its newest alerts.
    notifier.send((8..20).map(|index| alert("A", index)).collect());
    assert_eq!(notifier.queue_length(), 5);
    assert_eq!(notifier.dropped_total(), 3 + 5 + 7);
    assert_eq!(notifier.lock().queue.front().unwrap().labels.get("index"), Some("15"));
}

#[tokio::test(start_paused = true)]
async fn a_batch_counts_as_dropped_only_when_no_alertmanager_accepted_it() {
    let net = MemNetwork::default();
    let failing = alertmanager(&net, "bad:9093", 500, 0).await;
    let slow = alertmanager(&net, "slow:9093", 200, 60_000).await;
    let notifier = Notifier::new(env(&net), QUEUE_CAPACITY_DEFAULT);
    let (config, labels) = alerting(
        "alerting:\n  alertmanagers:\n    - static_configs: [{targets: ['bad:9093', 'slow:9093', 'absent:9093']}]\n      timeout: 2s\n",
    );
    notifier.apply_config(&config, &labels);
    tokio::spawn(notifier.clone().run());
    notifier.send(vec![alert("A", 0), alert("A", 1)]);
    until(|| notifier.dropped_total() == 2).await;
    assert_eq!(failing.lock().unwrap().len(), 1);
    assert_eq!(slow.lock().unwrap().len(), 1);
    let mut metrics = String::new();
    notifier.render(&mut metrics);
    for url in ["bad", "slow", "absent"] {
        assert!(
            metrics.contains(&format!(
                "prometheus_notifications_errors_total{{alertmanager=\"http://{url}:9093/api/v2/alerts\"}} 1"
            )),
            "{url}: {metrics}"
        );
    }

    // One healthy Alertmanager is enough.
    let good = alertmanager(&net, "good:9093", 200, 0).await;
    let (config, labels) =
        alerting("alerting:\n  alertmanagers:\n    - static_configs: [{targets: ['bad:9093', 'good:9093']}]\n");
    notifier.apply_config(&config, &labels);
    notifier.send(vec![alert("B", 0)]);
    until(|| good.lock().unwrap().len() == 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(notifier.dropped_total(), 2);
}

#[tokio::test(start_paused = true)]
async fn disabled_alerting_sends_nothing() {
    let net = MemNetwork::default();
    let received = alertmanager(&net, "am:9093", 200, 0).await;
    let notifier = Notifier::new(env(&net), QUEUE_CAPACITY_DEFAULT);
    let (config, labels) =
        alerting("alerting:\n  enabled: false\n  alertmanagers:\n    - static_configs: [{targets: ['am:9093']}]\n");
    notifier.apply_config(&config, &labels);
    tokio::spawn(notifier.clone().run());
    notifier.send(vec![alert("A", 0)]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(received.lock().unwrap().is_empty());
    assert_eq!(notifier.queue_length(), 0);
    assert_eq!(notifier.dropped_total(), 0);
}

#[test]
fn alerts_that_relabeling_drops_are_never_queued() {
    let net = MemNetwork::default();
    let notifier = Notifier::new(env(&net), 10);
    let (config, labels) = alerting(
        "alerting:\n  alert_relabel_configs:\n    - {source_labels: [alertname], regex: Watchdog, action: drop}\n",
    );
    notifier.apply_config(&config, &labels);
    notifier.send(vec![alert("Watchdog", 0), alert("Real", 1)]);
    assert_eq!(notifier.queue_length(), 1);
}
