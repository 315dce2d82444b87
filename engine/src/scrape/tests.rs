//! Scrape loop tests over an in-memory network: each connection is a tokio duplex pipe with a
//! hyper server on the far end answering from a table of canned responses, so every outcome
//! (good body, malformed body, HTTP error, refused connection) is exercised without sockets.

use std::collections::{BTreeMap, BTreeSet};
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

use super::scrape_loop::ScrapeLoop;
use super::Target;
use crate::io::net::BoxFuture;
use crate::io::{BoxConnection, Clock, Env, Listener, MemFileSystem, Network, RandomStreams, TokioSpawner};
use crate::metrics::SelfMetrics;
use crate::model::{is_stale_nan, Labels, MatchKind, Matcher};
use crate::storage::Queryable;
use crate::tsdb::{Db, DbOptions};

#[derive(Default)]
struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// address -> (status, body); a missing address refuses connections.
#[derive(Clone, Default)]
struct CannedNetwork(Arc<Mutex<BTreeMap<String, (u16, String)>>>);

impl CannedNetwork {
    fn serve(&self, address: &str, status: u16, body: &str) {
        self.0.lock().unwrap().insert(address.to_string(), (status, body.to_string()));
    }
}

impl Network for CannedNetwork {
    fn bind(&self, _address: String) -> BoxFuture<'static, io::Result<Box<dyn Listener>>> {
        Box::pin(async { Err(io::Error::from(io::ErrorKind::Unsupported)) })
    }

    fn connect(&self, address: String) -> BoxFuture<'static, io::Result<BoxConnection>> {
        let canned = self.0.lock().unwrap().get(&address).cloned();
        Box::pin(async move {
            let (status, body) = canned.ok_or_else(|| io::Error::from(io::ErrorKind::ConnectionRefused))?;
            let (client, server) = tokio::io::duplex(1 << 16);
            tokio::spawn(async move {
                let service = service_fn(move |_request| {
                    let mut response = Response::new(Full::new(Bytes::from(body.clone())));
                    *response.status_mut() = StatusCode::from_u16(status).unwrap();
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(server), service).await;
            });
            Ok(Box::new(client) as BoxConnection)
        })
    }
}

struct Fixture {
    clock: Arc<TestClock>,
    network: CannedNetwork,
    db: Db,
    scrape_loop: ScrapeLoop,
    previous: BTreeSet<Labels>,
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
    let mut scrape_loop = ScrapeLoop {
        env,
        target: Target {
            address: ADDRESS.to_string(),
            metrics_path: "/metrics".to_string(),
            labels: Labels::from_pairs([("job", "node"), ("instance", ADDRESS)]),
        },
        appendable: Arc::new(db.clone()),
        metrics: Arc::new(SelfMetrics::default()),
        interval_ms: 1000,
        timeout_ms: 500,
        honor_labels: false,
        honor_timestamps: true,
        sample_limit: 0,
        body_size_max: 1 << 20,
        offset_seed: 0,
    };
    configure(&mut scrape_loop);
    Fixture { clock, network, db, scrape_loop, previous: BTreeSet::new() }
}

impl Fixture {
    async fn scrape_at(&mut self, time_ms: i64) {
        self.clock.0.store(time_ms, Ordering::Relaxed);
        self.scrape_loop.scrape_and_report(&mut self.previous).await;
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
    assert_eq!(fixture.last("scrape_samples_scraped"), 0.0);
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
                scrape_loop.sample_limit = limit;
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
