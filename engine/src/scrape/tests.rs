//! Scrape loop tests over an in-memory network: each connection is a tokio duplex pipe with a
//! hyper server on the far end answering from a table of canned responses, so every outcome
//! (good body, malformed body, HTTP error, refused connection) is exercised without sockets.

// Exposition formats, gzip, params, exemplars and the report series.
mod formats;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::scrape_loop::{ScrapeLimits, ScrapeLoop, ScrapeState};
use super::Target;
use crate::io::net::BoxFuture;
use crate::io::{BoxConnection, Clock, Env, Listener, MemFileSystem, Network, RandomStreams, TokioSpawner};
use crate::metrics::SelfMetrics;
use crate::model::{is_stale_nan, Labels, MatchKind, Matcher};
use crate::storage::{AppendError, Appendable, Appender, CommitFuture, Queryable, SeriesRef};
use crate::tsdb::{Db, DbOptions};

#[derive(Default)]
struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One canned answer: status, headers, body.
#[derive(Clone)]
struct Canned {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Bytes,
}

/// A request as the canned server saw it: URI and headers.
type RecordedRequest = (String, BTreeMap<String, String>);

/// address -> canned answer; a missing address refuses connections. Requests are recorded as
/// (URI, headers).
#[derive(Clone, Default)]
struct CannedNetwork {
    answers: Arc<Mutex<BTreeMap<String, Canned>>>,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
}

impl CannedNetwork {
    fn serve(&self, address: &str, status: u16, body: &str) {
        self.serve_with(address, status, &[], Bytes::from(body.to_string()));
    }

    fn serve_with(&self, address: &str, status: u16, headers: &[(&'static str, &str)], body: Bytes) {
        let headers = headers.iter().map(|(name, value)| (*name, value.to_string())).collect();
        self.answers.lock().unwrap().insert(address.to_string(), Canned { status, headers, body });
    }

    fn last_request(&self) -> RecordedRequest {
        self.requests.lock().unwrap().last().cloned().unwrap()
    }
}

impl Network for CannedNetwork {
    fn bind(&self, _address: String) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        Box::pin(async { Err(io::Error::from(io::ErrorKind::Unsupported)) })
    }

    fn connect(&self, address: String) -> BoxFuture<'static, io::Result<BoxConnection>> {
        let canned = self.answers.lock().unwrap().get(&address).cloned();
        let requests = self.requests.clone();
        Box::pin(async move {
            let canned = canned.ok_or_else(|| io::Error::from(io::ErrorKind::ConnectionRefused))?;
            let (client, server) = tokio::io::duplex(1 << 16);
            tokio::spawn(async move {
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let headers = request
                        .headers()
                        .iter()
                        .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("").to_string()))
                        .collect();
                    requests.lock().unwrap().push((request.uri().to_string(), headers));
                    let mut response = Response::new(Full::new(canned.body.clone()));
                    *response.status_mut() = StatusCode::from_u16(canned.status).unwrap();
                    for (name, value) in &canned.headers {
                        response.headers_mut().insert(*name, value.parse().unwrap());
                    }
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(server), service).await;
            });
            Ok(Box::new(client) as BoxConnection)
        })
    }
}

/// Calls the loop made for scraped series (report series are not counted).
#[derive(Debug, Default, PartialEq, Eq)]
struct AppendCounts {
    by_labels: u64,
    by_ref: u64,
    unknown_ref: u64,
}

/// The store as the loop sees it, recording its calls. References carry an epoch in their top
/// bits; [`Recording::drop_all_series`] starts a new epoch, so every reference handed out
/// before is unknown, as after the head dropped its series.
#[derive(Clone)]
struct Recording {
    db: Db,
    state: Arc<Mutex<(AppendCounts, u64)>>,
}

const EPOCH_SHIFT: u32 = 40;

impl Recording {
    fn drop_all_series(&self) {
        self.state.lock().unwrap().1 += 1;
    }

    fn take_counts(&self) -> AppendCounts {
        std::mem::take(&mut self.state.lock().unwrap().0)
    }
}

impl Appendable for Recording {
    fn appender(&self) -> Box<dyn Appender> {
        Box::new(RecordingAppender { inner: self.db.appender(), state: self.state.clone() })
    }
}

struct RecordingAppender {
    inner: Box<dyn Appender>,
    state: Arc<Mutex<(AppendCounts, u64)>>,
}

fn is_report_series(labels: &Labels) -> bool {
    matches!(
        labels.metric_name(),
        Some(
            "up" | "scrape_duration_seconds"
                | "scrape_samples_scraped"
                | "scrape_samples_post_metric_relabeling"
                | "scrape_series_added"
        )
    )
}

impl Appender for RecordingAppender {
    fn append(
        &mut self,
        series_ref: Option<SeriesRef>,
        labels: &Labels,
        timestamp_ms: i64,
        value: f64,
    ) -> Result<SeriesRef, AppendError> {
        let epoch = {
            let mut state = self.state.lock().unwrap();
            if !is_report_series(labels) {
                state.0.by_labels += 1;
            }
            state.1
        };
        let hint = series_ref
            .filter(|hint| hint.0 >> EPOCH_SHIFT == epoch)
            .map(|hint| SeriesRef(hint.0 & ((1 << EPOCH_SHIFT) - 1)));
        let inner_ref = self.inner.append(hint, labels, timestamp_ms, value)?;
        Ok(SeriesRef(inner_ref.0 | epoch << EPOCH_SHIFT))
    }

    fn append_by_ref(&mut self, series_ref: SeriesRef, timestamp_ms: i64, value: f64) -> Result<(), AppendError> {
        let epoch = {
            let mut state = self.state.lock().unwrap();
            state.0.by_ref += 1;
            if series_ref.0 >> EPOCH_SHIFT != state.1 {
                state.0.unknown_ref += 1;
                return Err(AppendError::UnknownSeriesRef { series_ref: series_ref.0 });
            }
            state.1
        };
        self.inner.append_by_ref(SeriesRef(series_ref.0 ^ epoch << EPOCH_SHIFT), timestamp_ms, value)
    }

    fn commit(self: Box<Self>) -> CommitFuture {
        self.inner.commit()
    }

    fn rollback(self: Box<Self>) {
        self.inner.rollback()
    }
}

struct Fixture {
    clock: Arc<TestClock>,
    network: CannedNetwork,
    db: Db,
    store: Recording,
    scrape_loop: ScrapeLoop,
    state: ScrapeState,
}

const ADDRESS: &str = "target:9100";

fn fixture(configure: impl FnOnce(&mut ScrapeLoop)) -> Fixture {
    let clock = Arc::new(TestClock::default());
    let network = CannedNetwork::default();
    let env = Env {
        clock: clock.clone(),
        fs: Arc::new(MemFileSystem::default()),
        net: Arc::new(network.clone()),
        spawner: Arc::new(TokioSpawner),
        random: RandomStreams::new(1),
    };
    let db = Db::open(env.fs.clone(), env.spawner.as_ref(), Path::new("/db"), DbOptions::default()).unwrap();
    let store = Recording { db: db.clone(), state: Arc::default() };
    let mut scrape_loop = ScrapeLoop {
        env,
        target: Target {
            address: ADDRESS.to_string(),
            metrics_path: "/metrics".to_string(),
            labels: Labels::from_pairs([("job", "node"), ("instance", ADDRESS)]),
        },
        appendable: Arc::new(store.clone()),
        metrics: Arc::new(SelfMetrics::default()),
        interval_ms: 1000,
        timeout_ms: 500,
        honor_labels: false,
        honor_timestamps: true,
        metric_relabel_configs: Vec::new().into(),
        limits: ScrapeLimits::default(),
        body_size_max: 1 << 20,
        offset_seed: 0,
        health: None,
        stop: None,
        exemplars: None,
    };
    configure(&mut scrape_loop);
    Fixture { clock, network, db, store, scrape_loop, state: ScrapeState::new(1) }
}

impl Fixture {
    async fn scrape_at(&mut self, time_ms: i64) {
        self.clock.0.store(time_ms, Ordering::Relaxed);
        self.scrape_loop.scrape_and_report(&mut self.state).await;
    }

    /// Every stored sample of `name` as (labels text, timestamp, value).
    fn samples(&self, name: &str) -> Vec<(String, i64, f64)> {
        let matcher = Matcher::new(MatchKind::Equal, "__name__", name).unwrap();
        let mut out = Vec::new();
        for series in self.db.querier(i64::MIN, i64::MAX).unwrap().select(None, &[matcher]) {
            let series = series.unwrap();
            for sample in series.samples {
                out.push((series.labels.to_string(), sample.timestamp_ms, sample.value));
            }
        }
        out
    }

    fn last(&self, name: &str) -> f64 {
        self.samples(name).last().map(|(_, _, value)| *value).unwrap_or(f64::NAN)
    }
}

#[tokio::test]
async fn good_scrape_writes_samples_with_target_labels_and_report() {
    let mut fixture = fixture(|_| {});
    fixture.network.serve(ADDRESS, 200, "# TYPE a gauge\na{x=\"1\"} 5\na{x=\"2\"} 6\nb 7 123\n");
    fixture.scrape_at(10_000).await;
    assert_eq!(
        fixture.samples("a"),
        vec![
            ("a{instance=\"target:9100\", job=\"node\", x=\"1\"}".to_string(), 10_000, 5.0),
            ("a{instance=\"target:9100\", job=\"node\", x=\"2\"}".to_string(), 10_000, 6.0),
        ]
    );
    assert_eq!(fixture.samples("b")[0].1, 123, "explicit timestamps are honoured");
    assert_eq!(fixture.samples("up"), vec![("up{instance=\"target:9100\", job=\"node\"}".to_string(), 10_000, 1.0)]);
    assert_eq!(fixture.last("scrape_samples_scraped"), 3.0);
    assert!(fixture.last("scrape_duration_seconds") >= 0.0);
}

#[tokio::test]
async fn vanished_series_get_a_staleness_marker() {
    let mut fixture = fixture(|_| {});
    fixture.network.serve(ADDRESS, 200, "a{x=\"1\"} 5\na{x=\"2\"} 6\n");
    fixture.scrape_at(10_000).await;
    fixture.network.serve(ADDRESS, 200, "a{x=\"1\"} 5\n");
    fixture.scrape_at(11_000).await;
    let gone: Vec<_> = fixture.samples("a").into_iter().filter(|(labels, _, _)| labels.contains("x=\"2\"")).collect();
    assert_eq!(gone.len(), 2);
    assert_eq!(gone[1].1, 11_000);
    assert!(is_stale_nan(gone[1].2), "second sample must be the staleness marker");
}

#[tokio::test]
async fn malformed_body_is_down_keeps_nothing_and_marks_stale() {
    let mut fixture = fixture(|_| {});
    fixture.network.serve(ADDRESS, 200, "a 1\n");
    fixture.scrape_at(10_000).await;
    fixture.network.serve(ADDRESS, 200, "a 2\nb{x=\"1\" 1\n");
    fixture.scrape_at(11_000).await;
    assert_eq!(fixture.last("up"), 0.0);
    // As upstream, the samples parsed before the error are counted; none is kept.
    assert_eq!(fixture.last("scrape_samples_scraped"), 1.0);
    let a = fixture.samples("a");
    assert_eq!(a.len(), 2, "the good line of a malformed body is not kept: {a:?}");
    assert!(is_stale_nan(a[1].2));
    assert!(fixture.samples("b").is_empty());
    assert_eq!(fixture.scrape_loop.metrics.scrape_failures_total.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn failures_set_up_to_zero() {
    for (serve, configure) in [(Some((500, "oops")), None), (None, None), (Some((200, "a 1\nb 2\nc 3\n")), Some(2_u64))]
    {
        let mut fixture = fixture(|scrape_loop| {
            if let Some(limit) = configure {
                scrape_loop.limits.sample_count_limit = limit;
            }
        });
        if let Some((status, body)) = serve {
            fixture.network.serve(ADDRESS, status, body);
        }
        fixture.scrape_at(10_000).await;
        assert_eq!(fixture.last("up"), 0.0, "{serve:?} {configure:?}");
        assert!(fixture.samples("a").is_empty());
    }
}

#[tokio::test]
async fn clashing_labels_and_honor_options() {
    let body = "a{job=\"inner\"} 1 5000\n";
    let mut plain = fixture(|_| {});
    plain.network.serve(ADDRESS, 200, body);
    plain.scrape_at(10_000).await;
    assert_eq!(plain.samples("a")[0].0, "a{exported_job=\"inner\", instance=\"target:9100\", job=\"node\"}");
    let mut honoring = fixture(|scrape_loop| {
        scrape_loop.honor_labels = true;
        scrape_loop.honor_timestamps = false;
    });
    honoring.network.serve(ADDRESS, 200, body);
    honoring.scrape_at(10_000).await;
    assert_eq!(honoring.samples("a"), vec![("a{instance=\"target:9100\", job=\"inner\"}".to_string(), 10_000, 1.0)]);
}

#[tokio::test]
async fn known_series_are_appended_by_reference_without_labels() {
    let mut fixture = fixture(|_| {});
    let body = "# TYPE a gauge\na{x=\"1\"} 5\na{x=\"2\"} 6\nb 7\n";
    fixture.network.serve(ADDRESS, 200, body);
    fixture.scrape_at(10_000).await;
    assert_eq!(fixture.store.take_counts(), AppendCounts { by_labels: 3, by_ref: 0, unknown_ref: 0 });
    assert_eq!(fixture.state.cache.len(), 3);
    fixture.scrape_at(11_000).await;
    assert_eq!(fixture.store.take_counts(), AppendCounts { by_labels: 0, by_ref: 3, unknown_ref: 0 });
    assert_eq!(
        fixture.samples("a"),
        vec![
            ("a{instance=\"target:9100\", job=\"node\", x=\"1\"}".to_string(), 10_000, 5.0),
            ("a{instance=\"target:9100\", job=\"node\", x=\"1\"}".to_string(), 11_000, 5.0),
            ("a{instance=\"target:9100\", job=\"node\", x=\"2\"}".to_string(), 10_000, 6.0),
            ("a{instance=\"target:9100\", job=\"node\", x=\"2\"}".to_string(), 11_000, 6.0),
        ]
    );
    // Another spelling of a known series is another cache entry for the same store series.
    fixture.network.serve(ADDRESS, 200, "a{x=\"1\",} 8\na{x=\"2\"} 6\nb 7\n");
    fixture.scrape_at(12_000).await;
    assert_eq!(fixture.store.take_counts(), AppendCounts { by_labels: 1, by_ref: 3, unknown_ref: 0 });
    assert_eq!(fixture.samples("a").len(), 6, "{:?}", fixture.samples("a"));
    assert_eq!(fixture.last("up"), 1.0);
    assert_eq!(fixture.state.cache.len(), 3, "the old spelling is evicted");
}

#[tokio::test]
async fn dropped_series_fall_back_to_labels_and_refresh_the_cache() {
    let mut fixture = fixture(|_| {});
    fixture.network.serve(ADDRESS, 200, "a{x=\"1\"} 5\na{x=\"2\"} 6\n");
    fixture.scrape_at(10_000).await;
    fixture.store.take_counts();
    fixture.store.drop_all_series();
    fixture.scrape_at(11_000).await;
    assert_eq!(fixture.store.take_counts(), AppendCounts { by_labels: 2, by_ref: 2, unknown_ref: 2 });
    assert_eq!(fixture.last("up"), 1.0);
    assert_eq!(fixture.samples("a").len(), 4);
    fixture.scrape_at(12_000).await;
    assert_eq!(fixture.store.take_counts(), AppendCounts { by_labels: 0, by_ref: 2, unknown_ref: 0 }, "refreshed");
    // A stale marker for a dropped series goes by the labels parsed from the cached text.
    fixture.store.drop_all_series();
    fixture.network.serve(ADDRESS, 200, "a{x=\"1\"} 5\n");
    fixture.scrape_at(13_000).await;
    assert_eq!(fixture.store.take_counts(), AppendCounts { by_labels: 2, by_ref: 2, unknown_ref: 2 });
    let gone = fixture.samples("a").into_iter().rfind(|(labels, _, _)| labels.contains("x=\"2\"")).unwrap();
    assert_eq!(gone.1, 13_000);
    assert!(is_stale_nan(gone.2));
}

#[tokio::test]
async fn staleness_goes_by_reference_once_and_then_evicts() {
    let mut fixture = fixture(|_| {});
    fixture.network.serve(ADDRESS, 200, "a{x=\"1\"} 5\na{x=\"2\"} 6\nc 1 5000\n");
    fixture.scrape_at(10_000).await;
    fixture.store.take_counts();
    fixture.network.serve(ADDRESS, 200, "a{x=\"1\"} 5\n");
    fixture.scrape_at(11_000).await;
    // One sample and one marker, both by reference; an explicitly stamped series gets none.
    assert_eq!(fixture.store.take_counts(), AppendCounts { by_labels: 0, by_ref: 2, unknown_ref: 0 });
    assert_eq!(fixture.state.cache.len(), 1);
    fixture.scrape_at(12_000).await;
    assert_eq!(fixture.store.take_counts(), AppendCounts { by_labels: 0, by_ref: 1, unknown_ref: 0 });
    let gone: Vec<_> = fixture.samples("a").into_iter().filter(|(labels, _, _)| labels.contains("x=\"2\"")).collect();
    assert_eq!(gone.len(), 2, "one marker only: {gone:?}");
    assert_eq!(fixture.samples("c").len(), 1);
    // A failed scrape marks what the last success appended, and the next success starts clean.
    fixture.network.serve(ADDRESS, 500, "");
    fixture.scrape_at(13_000).await;
    let kept = |fixture: &Fixture| -> Vec<(i64, f64)> {
        let samples = fixture.samples("a").into_iter().filter(|(labels, _, _)| labels.contains("x=\"1\""));
        samples.map(|(_, timestamp_ms, value)| (timestamp_ms, value)).collect()
    };
    assert_eq!(kept(&fixture).len(), 4);
    assert_eq!(kept(&fixture)[3].0, 13_000);
    assert!(is_stale_nan(kept(&fixture)[3].1));
    fixture.network.serve(ADDRESS, 200, "a{x=\"1\"} 7\n");
    fixture.scrape_at(14_000).await;
    assert_eq!(kept(&fixture)[4], (14_000, 7.0));
    // The marker went by reference; the failed fetch saw nothing, so the cache was emptied.
    assert_eq!(fixture.store.take_counts(), AppendCounts { by_labels: 1, by_ref: 1, unknown_ref: 0 });
}

#[tokio::test]
async fn repeated_line_at_the_scrape_timestamp_is_rejected() {
    let mut fixture = fixture(|_| {});
    fixture.network.serve(ADDRESS, 200, "a 1\na 2\nb 1 100\nb 2 200\n");
    fixture.scrape_at(10_000).await;
    assert_eq!(fixture.samples("a"), vec![("a{instance=\"target:9100\", job=\"node\"}".to_string(), 10_000, 1.0)]);
    assert_eq!(fixture.samples("b").len(), 2, "explicit timestamps append both");
    assert_eq!(fixture.scrape_loop.metrics.scrape_samples_rejected_total.load(Ordering::Relaxed), 1);
    assert_eq!(fixture.last("up"), 1.0);
}

#[track_caller]
fn check_limit(
    limits: ScrapeLimits,
    body: &str,
    expected_error: Option<&str>,
) -> impl std::future::Future<Output = ()> {
    let location = std::panic::Location::caller();
    let body = body.to_string();
    let expected_error = expected_error.map(str::to_string);
    async move {
        let mut fixture = fixture(|scrape_loop| scrape_loop.limits = limits);
        fixture.network.serve(ADDRESS, 200, &body);
        fixture.scrape_at(10_000).await;
        let context = format!("{location}: {limits:?} {body:?}");
        match &expected_error {
            None => {
                assert_eq!(fixture.state.last_error, None, "{context}");
                assert_eq!(fixture.last("up"), 1.0, "{context}");
                assert!(!fixture.samples("a").is_empty(), "{context}");
            }
            Some(expected) => {
                let error = fixture.state.last_error.clone().unwrap_or_default();
                assert!(error.contains(expected.as_str()), "{context}: {error}");
                assert_eq!(fixture.last("up"), 0.0, "{context}");
                assert!(fixture.samples("a").is_empty(), "{context}: the batch is rolled back");
            }
        }
    }
}

#[tokio::test]
async fn each_limit_fails_the_whole_scrape() {
    let none = ScrapeLimits::default();
    check_limit(none, "a 1\n", None).await;
    // Upstream refuses a body of the limit's size or more.
    check_limit(ScrapeLimits { body_size_limit: 5, ..none }, "a 1\n", None).await;
    check_limit(ScrapeLimits { body_size_limit: 4, ..none }, "a 1\n", Some("body size limit exceeded")).await;
    let huge: String = (0..20_000).map(|index| format!("a{{i=\"{index}\"}} 1\n")).collect();
    check_limit(ScrapeLimits { body_size_limit: 1000, ..none }, &huge, Some("body size limit exceeded: limit 1000"))
        .await;
    check_limit(ScrapeLimits { sample_count_limit: 2, ..none }, "a 1\nb 2\n", None).await;
    check_limit(
        ScrapeLimits { sample_count_limit: 2, ..none },
        "a 1\nb 2\nc 3\n",
        Some("sample limit exceeded: limit 2, got 3"),
    )
    .await;
    // __name__, instance and job count towards label_limit.
    check_limit(ScrapeLimits { label_count_limit: 4, ..none }, "a{x=\"1\"} 1\n", None).await;
    check_limit(
        ScrapeLimits { label_count_limit: 3, ..none },
        "a{x=\"1\"} 1\n",
        Some("label_limit exceeded (metric: a, number of labels: 4, limit: 3)"),
    )
    .await;
    check_limit(ScrapeLimits { label_name_size_limit: 8, ..none }, "a{x=\"1\"} 1\n", None).await;
    check_limit(
        ScrapeLimits { label_name_size_limit: 8, ..none },
        "a{longername=\"1\"} 1\n",
        Some("label_name_length_limit exceeded (metric: a, label name: longername, length: 10, limit: 8)"),
    )
    .await;
    // "target:9100" is 11 bytes.
    check_limit(ScrapeLimits { label_value_size_limit: 11, ..none }, "a{x=\"1\"} 1\n", None).await;
    check_limit(
        ScrapeLimits { label_value_size_limit: 11, ..none },
        "a{x=\"123456789012\"} 1\n",
        Some("label_value_length_limit exceeded (metric: a, label name: x, value: \"123456789012\", length: 12, limit: 11)"),
    )
    .await;
}

#[tokio::test]
async fn sample_limit_counts_the_whole_body_and_keeps_nothing() {
    let mut fixture = fixture(|scrape_loop| scrape_loop.limits.sample_count_limit = 2);
    fixture.network.serve(ADDRESS, 200, "a 1\nb 1\n");
    fixture.scrape_at(10_000).await;
    fixture.network.serve(ADDRESS, 200, "a 2\nb 2\nc 2\nd 2\n");
    fixture.scrape_at(11_000).await;
    assert_eq!(fixture.last("up"), 0.0);
    assert_eq!(fixture.last("scrape_samples_scraped"), 4.0);
    assert!(is_stale_nan(fixture.last("a")), "the last good scrape's series are marked stale");
    assert!(fixture.samples("c").is_empty());
}

#[tokio::test(start_paused = true)]
async fn start_relabels_targets_deduplicates_them_and_lists_the_dropped() {
    let fixture = fixture(|_| {});
    fixture.network.serve(ADDRESS, 200, "a 1\n");
    let config = crate::config::parse(
        "
global: {scrape_interval: 1s}
scrape_configs:
  - job_name: node
    relabel_configs:
      - {source_labels: [__address__], regex: 'skip:.*', action: drop}
      - {source_labels: [__address__], regex: 'bad:.*', target_label: __address__, replacement: ''}
      - {source_labels: [__address__], regex: '(.*):1', target_label: __address__, replacement: '${1}:9100'}
    static_configs:
      - targets: ['target:1', 'target:9100', 'skip:1', 'bad:1']
",
    )
    .unwrap();
    let env = fixture.scrape_loop.env.clone();
    let manager =
        super::start(&env, &config, Arc::new(fixture.store.clone()), Arc::new(SelfMetrics::default()), 1 << 20, None);
    let targets = manager.targets();
    // target:1 becomes target:9100, the same target as the second; skip:1 is dropped; bad:1 has
    // no address left and is skipped.
    assert_eq!(targets.active.len(), 1);
    let active = &targets.active[0];
    assert_eq!(active.scrape_url, "http://target:9100/metrics");
    assert_eq!(active.labels, Labels::from_pairs([("instance", ADDRESS), ("job", "node")]));
    assert_eq!(active.discovered_labels.get("__address__"), Some("target:1"));
    assert_eq!(targets.dropped.len(), 1);
    assert_eq!(targets.dropped[0].discovered_labels.get("__address__"), Some("skip:1"));
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let samples = fixture.samples("a");
    assert!(!samples.is_empty(), "the rewritten address is scraped");
    assert!(samples.iter().all(|(labels, _, _)| labels == "a{instance=\"target:9100\", job=\"node\"}"), "{samples:?}");
}

/// A rule list from YAML, as a job's `metric_relabel_configs`.
fn rules(yaml: &str) -> Arc<[crate::relabel::RelabelConfig]> {
    let raw: Vec<crate::relabel::RawRelabelConfig> = serde_yaml_ng::from_str(yaml).unwrap();
    crate::relabel::from_raw_list(&raw).unwrap().into()
}

#[tokio::test]
async fn metric_relabeling_drops_by_name_and_the_cache_remembers_it() {
    let mut fixture = fixture(|scrape_loop| {
        scrape_loop.metric_relabel_configs = rules("[{source_labels: [__name__], regex: 'go_.*', action: drop}]")
    });
    fixture.network.serve(ADDRESS, 200, "go_gc 1\na{x=\"1\"} 2\ngo_memstats{kind=\"heap\"} 3\ngo_gc 4\n");
    fixture.scrape_at(10_000).await;
    assert_eq!(fixture.last("up"), 1.0);
    assert!(fixture.samples("go_gc").is_empty() && fixture.samples("go_memstats").is_empty());
    assert_eq!(
        fixture.samples("a"),
        vec![("a{instance=\"target:9100\", job=\"node\", x=\"1\"}".to_string(), 10_000, 2.0)]
    );
    // Dropped samples were scraped: upstream counts them in scrape_samples_scraped.
    assert_eq!(fixture.last("scrape_samples_scraped"), 4.0);
    assert_eq!(fixture.store.take_counts(), AppendCounts { by_labels: 1, by_ref: 0, unknown_ref: 0 });
    assert_eq!((fixture.state.cache.len(), fixture.state.cache.dropped_len()), (1, 2));
    // The second scrape answers the dropped texts from the cache: with the rules gone it still
    // drops them, so no rule ran for them.
    fixture.scrape_loop.metric_relabel_configs = Vec::new().into();
    fixture.scrape_at(11_000).await;
    assert!(fixture.samples("go_gc").is_empty() && fixture.samples("go_memstats").is_empty());
    assert_eq!(fixture.store.take_counts(), AppendCounts { by_labels: 0, by_ref: 1, unknown_ref: 0 });
    assert_eq!(fixture.samples("a").len(), 2);
    // A dropped text not in the body is evicted: a new scrape relabels it again (no rules now).
    fixture.network.serve(ADDRESS, 200, "a{x=\"1\"} 2\n");
    fixture.scrape_at(12_000).await;
    assert_eq!(fixture.state.cache.dropped_len(), 0);
    fixture.network.serve(ADDRESS, 200, "a{x=\"1\"} 2\ngo_gc 5\n");
    fixture.scrape_at(13_000).await;
    assert_eq!(fixture.samples("go_gc").len(), 1);
}

#[tokio::test]
async fn metric_relabeling_labeldrop_and_replace_see_the_target_labels() {
    let mut fixture = fixture(|scrape_loop| {
        scrape_loop.metric_relabel_configs = rules(
            "[{regex: 'pod|exported_job', action: labeldrop},
              {source_labels: [instance], regex: '(.*):.*', target_label: host, replacement: '$1'},
              {source_labels: [__name__, code], regex: 'http_requests_total;(5..)', target_label: class, replacement: error},
              {source_labels: [__name__], regex: 'old_(.*)', target_label: __name__, replacement: 'new_$1'}]",
        )
    });
    fixture.network.serve(
        ADDRESS,
        200,
        "http_requests_total{code=\"500\",pod=\"p1\",job=\"inner\"} 1\nhttp_requests_total{code=\"200\",pod=\"p1\"} 2\nold_name 3\n",
    );
    fixture.scrape_at(10_000).await;
    assert_eq!(fixture.last("up"), 1.0, "{:?}", fixture.state.last_error);
    let series: Vec<String> = fixture.samples("http_requests_total").into_iter().map(|(labels, _, _)| labels).collect();
    assert_eq!(
        series,
        [
            "http_requests_total{class=\"error\", code=\"500\", host=\"target\", instance=\"target:9100\", job=\"node\"}",
            "http_requests_total{code=\"200\", host=\"target\", instance=\"target:9100\", job=\"node\"}",
        ]
    );
    assert!(fixture.samples("old_name").is_empty());
    assert_eq!(fixture.samples("new_name")[0].0, "new_name{host=\"target\", instance=\"target:9100\", job=\"node\"}");
    // Report series keep the target labels only.
    assert_eq!(fixture.samples("up")[0].0, "up{instance=\"target:9100\", job=\"node\"}");
    // Two texts that relabel to one series: the second sample at the same timestamp is refused.
    fixture.network.serve(ADDRESS, 200, "b{pod=\"p1\"} 1\nb{pod=\"p2\"} 2\n");
    fixture.scrape_at(11_000).await;
    assert_eq!(
        fixture.samples("b"),
        vec![("b{host=\"target\", instance=\"target:9100\", job=\"node\"}".to_string(), 11_000, 1.0)]
    );
    assert_eq!(fixture.last("up"), 1.0);
}

#[tokio::test]
async fn metric_relabeling_counts_toward_limits_after_dropping() {
    let drop_go = "[{source_labels: [__name__], regex: 'go_.*', action: drop}, {regex: x, action: labeldrop}]";
    let body = "go_a 1\ngo_b 1\na{x=\"1\"} 1\nb 1\n";
    // sample_limit counts what reaches the store, after relabeling (upstream's limitAppender).
    let mut fixture = fixture(|scrape_loop| {
        scrape_loop.metric_relabel_configs = rules(drop_go);
        scrape_loop.limits.sample_count_limit = 2;
        // a{x} has four labels before relabeling, three after.
        scrape_loop.limits.label_count_limit = 3;
    });
    fixture.network.serve(ADDRESS, 200, body);
    fixture.scrape_at(10_000).await;
    assert_eq!(fixture.state.last_error, None);
    assert_eq!(fixture.last("scrape_samples_scraped"), 4.0);
    assert_eq!(fixture.samples("a").len(), 1);
    fixture.network.serve(ADDRESS, 200, "go_a 1\na 1\nb 1\nc 1\n");
    fixture.scrape_at(11_000).await;
    assert_eq!(fixture.state.last_error.as_deref(), Some("sample limit exceeded: limit 2, got 4"));
}

#[tokio::test]
async fn metric_relabeling_that_empties_drops_and_that_loses_the_name_fails() {
    let mut emptied =
        fixture(|scrape_loop| scrape_loop.metric_relabel_configs = rules("[{regex: '.*', action: labeldrop}]"));
    emptied.network.serve(ADDRESS, 200, "a 1\n");
    emptied.scrape_at(10_000).await;
    assert_eq!(emptied.last("up"), 1.0);
    assert_eq!(emptied.state.cache.dropped_len(), 1);
    for (yaml, error) in [
        ("[{regex: __name__, action: labeldrop}]", "missing metric name (__name__ label)"),
        ("[{target_label: __name__, replacement: '1a'}]", "invalid metric name or label names"),
    ] {
        let mut fixture = fixture(|scrape_loop| scrape_loop.metric_relabel_configs = rules(yaml));
        fixture.network.serve(ADDRESS, 200, "a 1\n");
        fixture.scrape_at(10_000).await;
        assert_eq!(fixture.last("up"), 0.0, "{yaml}");
        assert!(
            fixture.state.last_error.clone().unwrap_or_default().starts_with(error),
            "{yaml}: {:?}",
            fixture.state.last_error
        );
    }
}

#[tokio::test]
async fn relabeled_series_the_store_forgot_are_relabeled_again() {
    let mut fixture = fixture(|scrape_loop| {
        scrape_loop.metric_relabel_configs =
            rules("[{source_labels: [x], target_label: zone, replacement: 'zone-$1'}, {regex: x, action: labeldrop}]")
    });
    fixture.network.serve(ADDRESS, 200, "a{x=\"1\"} 1\na{x=\"2\"} 2\n");
    fixture.scrape_at(10_000).await;
    fixture.store.take_counts();
    fixture.store.drop_all_series();
    fixture.network.serve(ADDRESS, 200, "a{x=\"1\"} 1\n");
    fixture.scrape_at(11_000).await;
    assert_eq!(fixture.store.take_counts(), AppendCounts { by_labels: 2, by_ref: 2, unknown_ref: 2 });
    let zone = |zone: &str| format!("a{{instance=\"target:9100\", job=\"node\", zone=\"zone-{zone}\"}}");
    let samples = fixture.samples("a");
    assert_eq!(samples.iter().filter(|(labels, _, _)| *labels == zone("1")).count(), 2, "{samples:?}");
    // The stale marker for the vanished text went by its relabeled labels.
    let gone = samples.iter().rfind(|(labels, _, _)| *labels == zone("2")).unwrap();
    assert!(is_stale_nan(gone.2) && gone.1 == 11_000, "{gone:?}");
}

#[tokio::test(start_paused = true)]
async fn a_reload_keeps_unchanged_loops_and_stops_removed_ones_with_staleness_markers() {
    let fixture = fixture(|_| {});
    fixture.network.serve(ADDRESS, 200, "a 1\n");
    fixture.network.serve("other:9100", 200, "b 1\n");
    let config = |targets: &str, interval: &str| {
        crate::config::parse(&format!(
            "global: {{scrape_interval: {interval}}}\nscrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: [{targets}]\n"
        ))
        .unwrap()
    };
    // The test clock moves with tokio's paused one, a second at a time.
    let advance = |seconds: i64| {
        let clock = fixture.clock.clone();
        async move {
            for _ in 0..seconds {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                clock.0.fetch_add(1000, Ordering::Relaxed);
            }
        }
    };
    let env = fixture.scrape_loop.env.clone();
    let manager = super::start(
        &env,
        &config("'target:9100', 'other:9100'", "1s"),
        Arc::new(fixture.store.clone()),
        Arc::new(SelfMetrics::default()),
        1 << 20,
        None,
    );
    advance(3).await;
    assert_eq!(manager.loop_count(), 2);
    assert_eq!(manager.targets().active.len(), 2);
    let a_before = fixture.samples("a").len();
    assert!(a_before >= 2 && !fixture.samples("b").is_empty());

    manager.apply(&config("'target:9100'", "1s"));
    advance(3).await;
    assert_eq!(manager.loop_count(), 1);
    assert_eq!(manager.targets().active.len(), 1);
    let b = fixture.samples("b");
    assert!(is_stale_nan(b.last().unwrap().2), "the removed target's series end with a staleness marker: {b:?}");
    assert!(is_stale_nan(fixture.samples("up").iter().rfind(|(labels, _, _)| labels.contains("other")).unwrap().2));
    let a = fixture.samples("a");
    assert!(a.len() > a_before && a.iter().all(|(_, _, value)| !is_stale_nan(*value)), "kept loop ran on: {a:?}");

    // A changed interval replaces the loop: one staleness marker, then new samples.
    manager.apply(&config("'target:9100'", "2s"));
    advance(5).await;
    let a = fixture.samples("a");
    let stale_count = a.iter().filter(|(_, _, value)| is_stale_nan(*value)).count();
    assert_eq!(stale_count, 1, "{a:?}");
    assert!(!is_stale_nan(a.last().unwrap().2), "{a:?}");
    assert_eq!(manager.targets().active[0].interval_ms, 2000);
}
