//! The query frontend under a thundering herd: a `frontend` host runs the engine's frontend
//! (`engine::frontend`) in front of the `engine` host, and a `herd` client simulates many users,
//! each polling one dashboard view every `poll_interval` (a range query over the last `range`,
//! phases seeded), open loop. It measures what users see (latency, errors, how each answer was
//! served, from the frontend's `X-Cache` header) and, independently of the frontend's own
//! counters, how many range queries reached the engine (its `engine_http_requests_total`).
//!
//! The documents' workload is 100,000 users over 200 views; the scenario scales both down by the
//! same factor, which keeps users per view, and so the share of requests a cache can absorb.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

/// Port the frontend listens on.
pub const FRONTEND_PORT: u16 = 9092;
/// Where the frontend listens inside the simulation.
pub const FRONTEND_ADDRESS: &str = "frontend:9092";

/// The `[frontend]` scenario section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontendSection {
    /// Simulated users, each polling one view.
    pub users: u64,
    /// Distinct views (range queries); user `u` polls view `u % views`.
    pub views: u64,
    /// Time between one user's polls, ms.
    pub poll_interval_ms: u64,
    /// Each poll's range, ms back from now.
    pub range_ms: i64,
    /// Each poll's step, seconds.
    pub step_s: i64,
    /// A user gives up on an answer after this long, ms.
    pub user_timeout_ms: u64,
    /// Largest one-way delay between the users and the frontend, ms (the herd sits in the
    /// frontend's data centre, behind the dashboards' proxy).
    pub client_link_latency_ms_max: u64,
    /// The frontend's config file (YAML), as `frontend --config.file` reads it.
    #[serde(default)]
    pub config: String,
}

impl FrontendSection {
    /// Checks the section.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.users > 0 && self.views > 0, "[frontend]: users and views must be positive");
        anyhow::ensure!(
            self.poll_interval_ms > 0 && self.step_s > 0,
            "[frontend]: poll interval and step must be positive"
        );
        let mut config = engine::frontend::config::FrontendConfig::new("http://engine:9090".to_string());
        config.apply_file(&self.config).map_err(|error| anyhow::anyhow!("[frontend] config: {error}"))?;
        Ok(())
    }

    /// The range query of view `index`: a different shape of work over the generated series.
    pub fn view_query(&self, index: u64, series_count: usize) -> String {
        let series = index % series_count.max(1) as u64;
        format!("avg_over_time(sim_value{{series=\"{series}\"}}[1m]) * {}", index + 1)
    }
}

/// One user's answer.
#[derive(Debug, Clone, Copy)]
struct Answered {
    view: u64,
    sent_at_ms: u64,
    latency_us: u64,
    ok: bool,
    /// The `X-Cache` header's outcome was a cached one (l1, l2, extents, coalesced, stale).
    cached: bool,
}

/// What the herd observed.
#[derive(Debug)]
pub struct HerdOutcome {
    /// Requests sent.
    pub request_count: u64,
    /// Answered 200.
    pub ok_count: u64,
    /// Failed (error status, timeout, refused).
    pub error_count: u64,
    /// Of those, for views a user had already been answered (cached views).
    pub cached_view_error_count: u64,
    /// Of the errors, those sent during a partition of the frontend from the engine.
    pub outage_error_count: u64,
    /// Latency of cached answers, virtual µs.
    pub cached_latency_us: Histogram<u64>,
    /// Latency of every successful answer, virtual µs.
    pub latency_us: Histogram<u64>,
    /// `X-Cache` values seen, with counts.
    pub served_by: BTreeMap<String, u64>,
    /// Range queries the engine received over the run (its own counter).
    pub engine_range_request_count: Option<u64>,
    /// The frontend's `/api/v1/metrics/cache-stats` at the end.
    pub frontend_stats: Option<serde_json::Value>,
    /// (virtual ms since the start, latency µs, ok) of every [`POINT_STRIDE`]-th request and
    /// of every failed one, for the chart.
    pub points: Vec<(u64, u64, bool)>,
}

/// Points kept for the chart, at most.
const POINT_COUNT_MAX: usize = 20_000;
/// One request in this many is drawn (all failures are).
const POINT_STRIDE: u64 = 100;

impl Default for HerdOutcome {
    fn default() -> Self {
        let histogram =
            || Histogram::new_with_bounds(1, 600_000_000, 3).unwrap_or_else(|_| unreachable!("valid bounds"));
        HerdOutcome {
            request_count: 0,
            ok_count: 0,
            error_count: 0,
            cached_view_error_count: 0,
            outage_error_count: 0,
            cached_latency_us: histogram(),
            latency_us: histogram(),
            served_by: BTreeMap::new(),
            engine_range_request_count: None,
            frontend_stats: None,
            points: Vec::new(),
        }
    }
}

/// Shared outcome, written by the herd and read by the harness.
pub type SharedHerd = Arc<Mutex<HerdOutcome>>;

/// The frontend host: the engine's frontend over the simulated environment.
pub async fn frontend_host(section: FrontendSection, seed: u64) -> turmoil::Result {
    let env = crate::env::sim_env(seed);
    let mut config = engine::frontend::config::FrontendConfig::new("http://engine:9090".to_string());
    config.apply_file(&section.config)?;
    let frontend = Arc::new(engine::frontend::Frontend::new(env.clone(), config)?);
    let listener = env.net.bind(format!("0.0.0.0:{FRONTEND_PORT}")).await?;
    engine::frontend::serve(listener, frontend, 100_000).await;
    Ok(())
}

/// Virtual ms windows `[from, to)` during which the frontend is cut off the engine.
pub type OutageWindows = Vec<(u64, u64)>;

/// The herd: every user polls its view from a seeded phase on, until `duration_ms`; then the
/// engine's and the frontend's counters are read.
pub async fn run(
    section: FrontendSection,
    series_count: usize,
    duration_ms: u64,
    outages: OutageWindows,
    seed: u64,
    outcome: SharedHerd,
) -> turmoil::Result {
    let started = tokio::time::Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x4e5d_0001);
    // (phase ms, user), sorted: one pass per poll round sends in time order.
    let mut phases: Vec<(u64, u64)> =
        (0..section.users).map(|user| (rng.random_range(0..section.poll_interval_ms), user)).collect();
    phases.sort_unstable();
    let answered_views: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
    let mut tasks = Vec::new();
    let mut round = 0;
    'rounds: loop {
        for &(phase_ms, user) in &phases {
            let at_ms = round * section.poll_interval_ms + phase_ms;
            if at_ms >= duration_ms {
                break 'rounds;
            }
            tokio::time::sleep_until(started + Duration::from_millis(at_ms)).await;
            let view = user % section.views;
            let query = section.view_query(view, series_count);
            let (section, outcome, answered_views) = (section.clone(), outcome.clone(), answered_views.clone());
            let in_outage = outages.iter().any(|(from, to)| (*from..*to).contains(&at_ms));
            tasks.push(tokio::spawn(async move {
                let sent = tokio::time::Instant::now();
                let result = poll(&section, &query, user).await;
                let latency_us = sent.elapsed().as_micros() as u64;
                let (ok, cache) = match &result {
                    Ok((200, cache)) => (true, cache.clone()),
                    Ok((_, cache)) => (false, cache.clone()),
                    Err(_) => (false, "error".to_string()),
                };
                let cached = ok && !matches!(cache.as_str(), "miss" | "unavailable" | "");
                let answer = Answered {
                    view,
                    sent_at_ms: sent.duration_since(started).as_millis() as u64,
                    latency_us,
                    ok,
                    cached,
                };
                record(&outcome, &answered_views, answer, &cache, in_outage);
            }));
            tasks.retain(|task| !task.is_finished());
        }
        round += 1;
    }
    for task in tasks {
        let _ = task.await;
    }
    let timeout = Duration::from_millis(section.user_timeout_ms);
    let engine_metrics = crate::http::get(crate::client::ENGINE_ADDRESS, "/metrics", timeout).await;
    let stats = crate::http::get(FRONTEND_ADDRESS, "/api/v1/metrics/cache-stats", timeout).await;
    let mut outcome = outcome.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Ok((_, body)) = engine_metrics {
        outcome.engine_range_request_count = String::from_utf8_lossy(&body).lines().find_map(|line| {
            line.strip_prefix("engine_http_requests_total{handler=\"/api/v1/query_range\"} ")?.parse().ok()
        });
    }
    if let Ok((_, body)) = stats {
        outcome.frontend_stats = serde_json::from_slice(&body).ok();
    }
    Ok(())
}

fn record(outcome: &SharedHerd, answered_views: &Mutex<BTreeSet<u64>>, answer: Answered, cache: &str, in_outage: bool) {
    let mut views = answered_views.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut outcome = outcome.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    outcome.request_count += 1;
    *outcome.served_by.entry(cache.to_string()).or_default() += 1;
    if answer.ok {
        outcome.ok_count += 1;
        views.insert(answer.view);
        let _ = outcome.latency_us.record(answer.latency_us.max(1));
        if answer.cached {
            let _ = outcome.cached_latency_us.record(answer.latency_us.max(1));
        }
    } else {
        outcome.error_count += 1;
        if views.contains(&answer.view) {
            outcome.cached_view_error_count += 1;
        }
        if in_outage {
            outcome.outage_error_count += 1;
        }
    }
    let drawn = !answer.ok || outcome.request_count.is_multiple_of(POINT_STRIDE);
    if drawn && outcome.points.len() < POINT_COUNT_MAX {
        outcome.points.push((answer.sent_at_ms, answer.latency_us, answer.ok));
    }
}

/// One poll: the view's range over the last `range_ms`, ending now. The status and `X-Cache`.
async fn poll(section: &FrontendSection, query: &str, user: u64) -> anyhow::Result<(u16, String)> {
    let now_ms = turmoil::since_epoch().map(|since| since.as_millis() as i64).unwrap_or(0);
    let encoded: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
    let path = format!(
        "/api/v1/query_range?query={encoded}&start={}&end={}&step={}",
        (now_ms - section.range_ms) as f64 / 1000.0,
        now_ms as f64 / 1000.0,
        section.step_s
    );
    let exchange = async {
        let stream = turmoil::net::TcpStream::connect(FRONTEND_ADDRESS).await?;
        let (mut sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = driver.await;
        });
        let request = Request::get(path.as_str())
            .header(hyper::header::HOST, FRONTEND_ADDRESS)
            .header("X-User-Id", format!("user-{user}"))
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let cache = response
            .headers()
            .get(engine::frontend::CACHE_HEADER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string();
        response.into_body().collect().await?;
        anyhow::Ok((status, cache))
    };
    tokio::time::timeout(Duration::from_millis(section.user_timeout_ms), exchange)
        .await
        .map_err(|_| anyhow::anyhow!("timed out"))?
}
