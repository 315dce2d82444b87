//! Acceptance tests of the embedded alert manager in the style of Alertmanager's (test/with_api_v2):
//! alerts pushed at virtual times, a webhook receiver on the in-memory network recording every
//! notification's virtual arrival time, and the exact timeline asserted. Time is tokio's paused
//! clock; the alert manager's wall clock follows it.

use std::convert::Infallible;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::*;
use crate::io::{Clock, MemFileSystem, MemNetwork, Network, RandomStreams, TokioSpawner};

/// Unix ms at virtual time zero.
const BASE_MS: i64 = 1_700_000_000_000;

/// Wall time that follows tokio's (paused) clock from `BASE_MS`.
struct VirtualClock(tokio::time::Instant);

impl Clock for VirtualClock {
    fn now_ms(&self) -> i64 {
        BASE_MS + self.0.elapsed().as_millis() as i64
    }
}

/// (virtual seconds since the start, payload).
type Received = Arc<Mutex<Vec<(f64, serde_json::Value)>>>;

struct Fixture {
    net: MemNetwork,
    fs: Arc<MemFileSystem>,
    start: tokio::time::Instant,
    received: Received,
    failures_left: Arc<AtomicU32>,
}

impl Fixture {
    async fn new() -> Fixture {
        let fixture = Fixture {
            net: MemNetwork::default(),
            fs: Arc::new(MemFileSystem::default()),
            start: tokio::time::Instant::now(),
            received: Arc::default(),
            failures_left: Arc::default(),
        };
        fixture.serve_webhook("hook:80").await;
        fixture
    }

    async fn serve_webhook(&self, address: &str) {
        let mut listener = self.net.bind(address.to_string()).await.unwrap();
        let (received, start, failures_left) = (self.received.clone(), self.start, self.failures_left.clone());
        tokio::spawn(async move {
            while let Ok((connection, _)) = listener.accept().await {
                let (received, failures_left) = (received.clone(), failures_left.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                        let (received, failures_left) = (received.clone(), failures_left.clone());
                        async move {
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            let failing = failures_left
                                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(1))
                                .is_ok();
                            let mut response = Response::new(Full::new(Bytes::new()));
                            if failing {
                                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                            } else {
                                let at_s = start.elapsed().as_millis() as f64 / 1000.0;
                                received.lock().unwrap().push((at_s, serde_json::from_slice(&body).unwrap()));
                            }
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(connection), service)
                        .await;
                });
            }
        });
    }

    fn env(&self) -> Env {
        Env {
            clock: Arc::new(VirtualClock(self.start)),
            fs: self.fs.clone(),
            net: Arc::new(self.net.clone()),
            spawner: Arc::new(TokioSpawner),
            random: RandomStreams::new(7),
        }
    }

    fn start_manager(&self, yaml: &str) -> Arc<AlertManager> {
        self.start_manager_task(yaml).0
    }

    /// The manager and its dispatcher task (abort it to end the "process").
    fn start_manager_task(&self, yaml: &str) -> (Arc<AlertManager>, tokio::task::JoinHandle<()>) {
        let config = super::super::config::parse(yaml).unwrap();
        let options = AlertManagerOptions {
            data_dir: PathBuf::from("/data/alertmanager"),
            external_url: "http://am:9093".to_string(),
            retention_ms: nflog::RETENTION_MS_DEFAULT,
        };
        let manager = AlertManager::new(self.env(), config, options);
        let task = tokio::spawn(manager.clone().run());
        (manager, task)
    }

    /// Virtual seconds since the start.
    fn now_s(&self) -> f64 {
        self.start.elapsed().as_millis() as f64 / 1000.0
    }

    async fn until_s(&self, at_s: f64) {
        let wait_ms = (at_s * 1000.0) as i64 - self.start.elapsed().as_millis() as i64;
        if wait_ms > 0 {
            tokio::time::sleep(Duration::from_millis(wait_ms as u64)).await;
        }
    }

    /// (arrival s, status, alertnames and instances of the alerts) of every notification so far.
    fn timeline(&self) -> Vec<(f64, String, Vec<String>)> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|(at_s, body)| {
                let alerts = body["alerts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|alert| {
                        format!(
                            "{}{}:{}",
                            alert["labels"]["alertname"].as_str().unwrap_or(""),
                            alert["labels"]["instance"].as_str().map(|i| format!("/{i}")).unwrap_or_default(),
                            alert["status"].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                (*at_s, body["status"].as_str().unwrap_or("").to_string(), alerts)
            })
            .collect()
    }
}

/// An alert as the engine's notifier sends it: firing until `ends_at_s` (virtual seconds).
fn alert(name: &str, instance: &str, starts_at_s: f64, ends_at_s: f64) -> Alert {
    Alert {
        labels: Labels::from_pairs([("alertname", name), ("instance", instance)]),
        annotations: Labels::from_pairs([("summary", format!("{name} on {instance}"))]),
        starts_at_ms: BASE_MS + (starts_at_s * 1000.0) as i64,
        ends_at_ms: BASE_MS + (ends_at_s * 1000.0) as i64,
        generator_url: String::new(),
    }
}

fn labeled(mut alert: Alert, pairs: &[(&str, &str)]) -> Alert {
    for (name, value) in pairs {
        alert.labels.set(name, value);
    }
    alert
}

const CONFIG: &str = "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 30s\n  group_interval: 1m\n  \
                      repeat_interval: 3m\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: 'http://hook/'\n";

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| item.to_string()).collect()
}

#[tokio::test(start_paused = true)]
async fn alerts_of_a_group_arrive_together_after_group_wait_then_every_group_interval() {
    let f = Fixture::new().await;
    let manager = f.start_manager(CONFIG);
    manager.put_alerts(vec![alert("Down", "a", 0.0, 600.0), alert("Down", "b", 0.0, 600.0)]);
    f.until_s(10.0).await;
    manager.put_alerts(vec![alert("Down", "c", 10.0, 600.0)]);
    f.until_s(40.0).await;
    manager.put_alerts(vec![alert("Down", "d", 40.0, 600.0)]);
    f.until_s(100.0).await;
    assert_eq!(
        f.timeline(),
        [
            (30.0, "firing".to_string(), strings(&["Down/a:firing", "Down/b:firing", "Down/c:firing"])),
            (
                90.0,
                "firing".to_string(),
                strings(&["Down/a:firing", "Down/b:firing", "Down/c:firing", "Down/d:firing"])
            ),
        ]
    );
    let body = &f.received.lock().unwrap()[0].1;
    assert_eq!(body["groupKey"], "{}:{alertname=\"Down\"}");
    assert_eq!(body["receiver"], "hook");
    assert_eq!(body["externalURL"], "http://am:9093");
}

#[tokio::test(start_paused = true)]
async fn an_unchanged_group_repeats_after_repeat_interval_and_a_resolve_is_sent_once() {
    let f = Fixture::new().await;
    let manager = f.start_manager(CONFIG);
    manager.put_alerts(vec![alert("Down", "a", 0.0, 1000.0)]);
    f.until_s(215.0).await;
    // Flushes at 30, 90, 150, 210: 210 is the first at least 3 m after the notification at 30.
    assert_eq!(f.timeline().iter().map(|(at, _, _)| *at).collect::<Vec<_>>(), [30.0, 210.0]);
    manager.put_alerts(vec![alert("Down", "a", 0.0, 220.0)]);
    f.until_s(400.0).await;
    let timeline = f.timeline();
    assert_eq!(timeline.len(), 3, "{timeline:?}");
    assert_eq!(timeline[2], (270.0, "resolved".to_string(), strings(&["Down/a:resolved"])));
    assert!(manager.groups().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_root_cause_inhibits_its_symptoms_with_equal_labels() {
    let f = Fixture::new().await;
    let manager = f.start_manager(&format!(
        "{CONFIG}inhibit_rules:\n  - source_matchers: [alertname=DatacenterDown]\n    \
         target_matchers: [alertname=HighLatency]\n    equal: [dc]\n"
    ));
    manager.put_alerts(vec![
        labeled(alert("DatacenterDown", "dc-eu", 0.0, 600.0), &[("dc", "eu")]),
        labeled(alert("HighLatency", "api-eu", 0.0, 600.0), &[("dc", "eu")]),
        labeled(alert("HighLatency", "api-us", 0.0, 600.0), &[("dc", "us")]),
    ]);
    f.until_s(35.0).await;
    let mut timeline = f.timeline();
    timeline.sort_by(|a, b| a.2.cmp(&b.2));
    assert_eq!(
        timeline,
        [
            (30.0, "firing".to_string(), strings(&["DatacenterDown/dc-eu:firing"])),
            (30.0, "firing".to_string(), strings(&["HighLatency/api-us:firing"])),
        ]
    );
    let views = manager.alerts();
    let inhibited = views.iter().find(|view| view.stored.alert.labels.get("instance") == Some("api-eu")).unwrap();
    assert_eq!(inhibited.state(), "suppressed");
    assert_eq!(inhibited.inhibited_by.len(), 1);
}

fn silence(matchers: &str, starts_at_s: f64, ends_at_s: f64) -> super::super::silence::PostableSilence {
    super::super::silence::PostableSilence {
        id: None,
        matchers: super::super::matcher::Matchers::new(super::super::matcher::parse_matchers(matchers).unwrap()),
        starts_at_ms: BASE_MS + (starts_at_s * 1000.0) as i64,
        ends_at_ms: BASE_MS + (ends_at_s * 1000.0) as i64,
        created_by: "test".to_string(),
        comment: "maintenance".to_string(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_silence_mutes_until_it_expires() {
    let f = Fixture::new().await;
    let manager = f.start_manager(CONFIG);
    let id = manager.set_silence(silence("{alertname=\"Down\"}", 0.0, 3600.0)).unwrap();
    manager.put_alerts(vec![alert("Down", "a", 0.0, 1000.0)]);
    f.until_s(100.0).await;
    assert!(f.timeline().is_empty());
    assert_eq!(manager.alerts()[0].silenced_by, std::slice::from_ref(&id.0));
    manager.expire_silence(&id).unwrap();
    f.until_s(155.0).await;
    assert_eq!(f.timeline(), [(150.0, "firing".to_string(), strings(&["Down/a:firing"]))]);
    assert_eq!(manager.silences(&[])[0].status.state.as_str(), "expired");
}

#[tokio::test(start_paused = true)]
async fn the_same_alert_from_both_replicas_of_an_ha_pair_notifies_once() {
    let f = Fixture::new().await;
    let manager = f.start_manager(CONFIG);
    manager.put_alerts(vec![alert("Down", "a", 0.0, 240.0)]);
    f.until_s(2.0).await;
    // The other replica evaluated two seconds later.
    manager.put_alerts(vec![alert("Down", "a", 2.0, 242.0)]);
    f.until_s(60.0).await;
    manager.put_alerts(vec![alert("Down", "a", 0.0, 300.0), alert("Down", "a", 2.0, 302.0)]);
    f.until_s(100.0).await;
    assert_eq!(f.timeline(), [(30.0, "firing".to_string(), strings(&["Down/a:firing"]))]);
    assert_eq!(manager.alerts().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_restart_does_not_notify_again_and_keeps_silences() {
    let f = Fixture::new().await;
    let (first, first_task) = f.start_manager_task(CONFIG);
    first.put_alerts(vec![alert("Down", "a", 0.0, 1000.0)]);
    first.set_silence(silence("{alertname=\"Other\"}", 0.0, 3600.0)).unwrap();
    f.until_s(35.0).await;
    assert_eq!(f.timeline().len(), 1);
    first_task.abort();
    drop(first);
    // A new process on the same disk: the rules re-send the firing alert.
    let second = f.start_manager(CONFIG);
    assert_eq!(second.silences(&[]).len(), 1);
    second.put_alerts(vec![alert("Down", "a", 0.0, 1000.0)]);
    f.until_s(180.0).await;
    assert_eq!(f.timeline().len(), 1, "{:?}", f.timeline());
    // The repeat interval still counts from the notification before the restart (at 30 s): the
    // new group flushes at 35 s (its alert is older than group_wait), 95, 155, then 215.
    f.until_s(240.0).await;
    assert_eq!(f.timeline().iter().map(|(at, _, _)| *at).collect::<Vec<_>>(), [30.0, 215.0]);
}

#[tokio::test(start_paused = true)]
async fn a_reload_routes_to_the_new_receiver() {
    let f = Fixture::new().await;
    f.serve_webhook("other:80").await;
    let manager = f.start_manager(CONFIG);
    manager.put_alerts(vec![alert("Down", "a", 0.0, 1000.0)]);
    f.until_s(35.0).await;
    manager.apply_config(
        super::super::config::parse(
            "route:\n  receiver: other\n  group_by: [alertname]\n  group_wait: 5s\nreceivers:\n  - name: other\n    \
             webhook_configs:\n      - url: 'http://other/'\n",
        )
        .unwrap(),
    );
    f.until_s(45.0).await;
    // The rebuilt group's alert is older than group_wait: it is flushed at once.
    let timeline =
        f.received.lock().unwrap().iter().map(|(at, body)| (*at, body["receiver"].clone())).collect::<Vec<_>>();
    assert_eq!(timeline, [(30.0, serde_json::json!("hook")), (35.0, serde_json::json!("other"))]);
}

#[tokio::test(start_paused = true)]
async fn resolved_notifications_of_muted_alerts_are_sent_only_when_asked() {
    for send_resolved_if_muted in [false, true] {
        let f = Fixture::new().await;
        let config = if send_resolved_if_muted {
            CONFIG.replace("route:\n", "route:\n  send_resolved_if_muted: true\n")
        } else {
            CONFIG.to_string()
        };
        let manager = f.start_manager(&config);
        manager.put_alerts(vec![alert("Down", "a", 0.0, 1000.0)]);
        f.until_s(40.0).await;
        manager.set_silence(silence("{alertname=\"Down\"}", 40.0, 3600.0)).unwrap();
        manager.put_alerts(vec![alert("Down", "a", 0.0, 100.0)]);
        f.until_s(200.0).await;
        let statuses: Vec<String> = f.timeline().into_iter().map(|(at, status, _)| format!("{at}:{status}")).collect();
        if send_resolved_if_muted {
            assert_eq!(statuses, ["30:firing", "150:resolved"]);
        } else {
            assert_eq!(statuses, ["30:firing"]);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn failed_deliveries_are_retried_with_backoff_and_counted() {
    let f = Fixture::new().await;
    f.failures_left.store(2, Ordering::Relaxed);
    let manager = f.start_manager(CONFIG);
    manager.put_alerts(vec![alert("Down", "a", 0.0, 1000.0)]);
    f.until_s(40.0).await;
    // 30 s, then 0.5 s and 1 s of backoff.
    assert_eq!(f.timeline(), [(31.5, "firing".to_string(), strings(&["Down/a:firing"]))]);
    let mut metrics = String::new();
    manager.render(&mut metrics);
    assert!(metrics.contains("alertmanager_notifications_total{integration=\"webhook\"} 1"), "{metrics}");
    assert!(metrics.contains("alertmanager_notifications_failed_total{integration=\"webhook\"} 0"), "{metrics}");
    assert!(metrics.contains("alertmanager_notification_requests_total{integration=\"webhook\"} 3"), "{metrics}");
    assert!(
        metrics.contains("alertmanager_notification_requests_failed_total{integration=\"webhook\"} 2"),
        "{metrics}"
    );
    assert!(f.now_s() >= 40.0);
}

#[tokio::test(start_paused = true)]
async fn an_old_alert_joining_a_new_group_is_sent_without_group_wait() {
    let f = Fixture::new().await;
    f.until_s(100.0).await;
    let manager = f.start_manager(CONFIG);
    // Started long ago (a restarted alert manager receiving a resend).
    manager.put_alerts(vec![alert("Down", "a", 0.0, 1000.0)]);
    f.until_s(105.0).await;
    assert_eq!(f.timeline().len(), 1);
    assert!(f.timeline()[0].0 < 101.0, "{:?}", f.timeline());
}
