//! Query frontend: a caching, coalescing, rate-limiting proxy in front of any Prometheus-
//! compatible API (this engine, Prometheus, VictoriaMetrics), serving the same `/api/v1/*`
//! endpoints so dashboards point at it unchanged.
//!
//! A query request is answered, in order, from: the in-process answer cache (L1, whole answers
//! for a few seconds); the flight already fetching the same answer (coalescing); or the
//! downstream, through the circuit breaker, where a range query fetches only what its extents
//! lack. When the downstream fails or the breaker is open, a stale copy is served with a
//! warning; without one, a 503 says why. Rate limits (per user, per key, global) come before
//! all of it.
//!
//! Everything goes through the engine's `io` environment (network, wall clock, spawner) and
//! `tokio::time`, so the simulator runs the frontend in virtual time.

pub mod breaker;
pub mod cache;
pub mod coalesce;
pub mod config;
pub mod downstream;
pub mod extents;
pub mod limits;
pub mod shared;
pub mod stats;
mod views;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use tokio::time::Instant;

use self::breaker::{Admission, Breaker};
use self::cache::{AnswerCache, Lookup};
use self::coalesce::{Coalescer, Role};
use self::config::FrontendConfig;
use self::downstream::{Answer, Downstream, Outgoing};
use self::extents::{
    merge_into, parse_range_answer, render_range_answer, slice, split_by_interval, Extent, ExtentCache,
};
use self::limits::{RateLimit, Refusal};
use self::shared::{Shared, SharedAnswer};
use self::stats::{Gauges, Outcome, Stats};
use crate::api::json::write_timestamp;
use crate::api::params::{parse_duration_param_ms, parse_time_ms};
use crate::io::Env;

/// Largest request body read (a form-encoded query).
pub const REQUEST_BODY_SIZE_MAX_BYTES: usize = 1 << 20;

/// Prometheus refuses range queries of more points than this; such requests pass through so
/// the client gets Prometheus' own error.
const RANGE_POINT_COUNT_MAX: i64 = 11_000;

/// Header naming the tenant whose answers a request shares (Cortex' convention); requests
/// without it share the empty tenant.
pub const TENANT_HEADER: &str = "X-Scope-OrgID";

/// Longest a replica holds the flight lock of an answer in Redis (its fetch normally ends
/// sooner and releases it).
const FLIGHT_LOCK_HOLD_MS: u64 = 30_000;
/// Pause between looks for another replica's answer while it holds the flight lock.
const FLIGHT_POLL_MS: u64 = 20;

/// Response header saying how a query was answered ([`Outcome::name`]: `l1`, `l2`, `extents`,
/// `coalesced`, `miss`, `stale`, `unavailable`).
pub const CACHE_HEADER: &str = "x-cache";

/// Warning attached to an answer served stale.
const STALE_WARNING_BREAKER: &str = "circuit breaker open";

/// The frontend.
pub struct Frontend {
    env: Env,
    config: FrontendConfig,
    downstream: Downstream,
    l1: Mutex<AnswerCache>,
    extents: Mutex<ExtentCache>,
    flights: Coalescer<Fetched>,
    limits: Mutex<Limits>,
    breaker: Mutex<Breaker>,
    stats: Stats,
    /// Redis, when configured.
    shared: Option<Shared>,
}

struct Limits {
    user: RateLimit,
    key: RateLimit,
    global: RateLimit,
}

/// What a flight brings back, shared by its followers.
#[derive(Clone, Debug)]
enum Fetched {
    /// The downstream answered (any status).
    Answer {
        /// The answer.
        answer: Answer,
        /// Downstream requests the flight made (0: every point came from extents, or from
        /// another replica's fetch).
        downstream_request_count: u32,
        /// Another replica fetched it (seen through Redis).
        from_peer: bool,
    },
    /// No answer: the breaker is open, or the downstream is unreachable.
    Failed {
        /// Why.
        reason: String,
        /// Whether the breaker refused it (then stale copies say so).
        breaker_open: bool,
    },
}

/// The result of a cached lookup, as the query and view endpoints use it.
#[derive(Debug)]
enum Looked {
    /// A current answer (or the downstream's error answer).
    Answer(Answer),
    /// A stale copy of a success answer, and why it is served.
    Stale(Bytes, String),
    /// Nothing to serve.
    Unavailable(String),
}

/// Who is asking, from the request's headers.
#[derive(Clone, Debug, Default)]
struct Caller {
    user: String,
    tenant: String,
    /// Headers passed on downstream (tenant, authorization).
    forwarded: Vec<(String, String)>,
}

/// A query request, normalised for the cache.
#[derive(Clone, Debug)]
struct QueryPlan {
    /// L1 and coalescing key.
    key: String,
    /// Key of the latest answer to the same question asked relative to now (an instant query
    /// without a time, a range of the same length), kept for serving stale: the exact key
    /// changes with every step of the clock, so an outage would otherwise find no copy.
    latest_key: Option<String>,
    /// The downstream request for the whole answer.
    outgoing: Outgoing,
    /// For range queries: the range and how to fetch pieces of it.
    range: Option<RangePlan>,
}

#[derive(Clone, Debug)]
struct RangePlan {
    /// Extents key: tenant, query and every parameter but the range.
    extent_key: String,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    /// Whether pieces of the range may be fetched apart (no `@ start()` / `@ end()`).
    splittable: bool,
    /// Parameters other than start and end, sorted.
    fixed_pairs: Vec<(String, String)>,
}

impl Frontend {
    /// A frontend in front of `config.downstream_url`.
    pub fn new(env: Env, config: FrontendConfig) -> Result<Frontend, String> {
        let downstream = Downstream::new(env.clone(), &config.downstream_url, config.downstream.clone())
            .map_err(|error| format!("--frontend.downstream-url: {error}"))?;
        let now = Instant::now();
        Ok(Frontend {
            l1: Mutex::new(AnswerCache::new(config.cache.l1_size_bytes_max)),
            extents: Mutex::new(ExtentCache::new(config.cache.extents_size_bytes_max)),
            flights: Coalescer::default(),
            limits: Mutex::new(Limits {
                user: RateLimit::new("user", config.limits.user_requests_per_minute),
                key: RateLimit::new("key", config.limits.key_requests_per_minute),
                global: RateLimit::new("global", config.limits.global_requests_per_minute),
            }),
            breaker: Mutex::new(Breaker::new(config.breaker.clone(), now)),
            stats: Stats::default(),
            shared: config
                .redis_address
                .clone()
                .map(|address| Shared::new(env.clone(), address, "frontend:".to_string())),
            downstream,
            config,
            env,
        })
    }

    /// Routes and answers one request.
    pub async fn handle<B>(self: &Arc<Self>, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = request.uri().path().to_string();
        let method = request.method().clone();
        let readable = method == Method::GET || method == Method::HEAD;
        match path.as_str() {
            "/-/healthy" if readable => return text(StatusCode::OK, "Frontend is Healthy.\n"),
            "/-/ready" if readable => return text(StatusCode::OK, "Frontend is Ready.\n"),
            "/metrics" if readable => {
                let body = self.stats.metrics_text(&self.gauges());
                return respond(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", Bytes::from(body));
            }
            "/api/v1/metrics/cache-stats" if readable => {
                return respond(
                    StatusCode::OK,
                    "application/json",
                    Bytes::from(self.stats.cache_stats_json(&self.gauges())),
                );
            }
            _ => {}
        }
        let view =
            self.config.views.iter().enumerate().find_map(|(index, view)| Some((index, view.match_path(&path)?)));
        if !path.starts_with("/api/") && view.is_none() {
            return text(StatusCode::NOT_FOUND, "404 page not found\n");
        }
        self.stats.requests_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let caller = self.caller(request.headers());
        let query_string = request.uri().query().unwrap_or_default().to_string();
        let content_type = header_text(request.headers(), CONTENT_TYPE);
        let body = match Limited::new(request.into_body(), REQUEST_BODY_SIZE_MAX_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => return api_error(StatusCode::PAYLOAD_TOO_LARGE, "bad_data", &format!("read body: {error}")),
        };
        let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query_string.as_bytes()).into_owned().collect();
        if method == Method::POST && content_type.starts_with("application/x-www-form-urlencoded") {
            pairs.extend(form_urlencoded::parse(&body).into_owned());
        }
        if let Some((index, labels)) = view {
            let key =
                labels.iter().find(|(name, _)| *name == self.config.limits.key_label).map(|(_, value)| value.clone());
            if let Err(refusal) = self.admit(&caller, key.as_deref()).await {
                return self.refused(&refusal);
            }
            self.stats.view_requests_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return self.view(index, labels, &caller).await;
        }
        let key = pairs.iter().find(|(name, _)| *name == self.config.limits.key_label).map(|(_, value)| value.clone());
        if let Err(refusal) = self.admit(&caller, key.as_deref()).await {
            return self.refused(&refusal);
        }
        let is_query =
            matches!(path.as_str(), "/api/v1/query" | "/api/v1/query_range") && (readable || method == Method::POST);
        if let Some(plan) = is_query.then(|| self.plan(&path, &pairs, &caller)).flatten() {
            let (looked, outcome) = self.lookup_uncounted(&plan).await;
            self.stats.count(outcome);
            let mut response = match looked {
                Looked::Answer(answer) => answer_response(answer),
                Looked::Stale(body, reason) => {
                    respond(StatusCode::OK, "application/json", with_warning(&body, &format!("stale answer: {reason}")))
                }
                Looked::Unavailable(reason) => api_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", &reason),
            };
            response.headers_mut().insert(CACHE_HEADER, hyper::header::HeaderValue::from_static(outcome.name()));
            return response;
        }
        self.stats.passthrough_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let outgoing = Outgoing {
            method,
            path_and_query: if query_string.is_empty() { path } else { format!("{path}?{query_string}") },
            headers: caller.forwarded.clone(),
            content_type,
            body,
        };
        match self.send_guarded(outgoing).await {
            Ok(answer) => answer_response(answer),
            Err((reason, _)) => api_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", &reason),
        }
    }

    fn caller(&self, headers: &hyper::HeaderMap) -> Caller {
        let mut caller = Caller { user: header_text(headers, self.config.user_header.as_str()), ..Caller::default() };
        let authorization = header_text(headers, AUTHORIZATION);
        if caller.user.is_empty() {
            if let Some(user) = authorization
                .strip_prefix("Basic ")
                .and_then(|encoded| crate::config::base64_decode(encoded.trim()))
                .and_then(|decoded| String::from_utf8(decoded).ok())
                .and_then(|credentials| credentials.split(':').next().map(String::from))
            {
                caller.user = user;
            }
        }
        caller.tenant = header_text(headers, TENANT_HEADER);
        if !caller.tenant.is_empty() {
            caller.forwarded.push((TENANT_HEADER.to_string(), caller.tenant.clone()));
        }
        if !authorization.is_empty() {
            caller.forwarded.push((AUTHORIZATION.to_string(), authorization));
        }
        caller
    }

    /// Takes a token from every limit that applies: global, the user's, the key's; from the
    /// buckets in Redis when it is configured (every replica shares them), in memory otherwise.
    /// Redis unreachable: the request is let through (fail-open) and counted.
    async fn admit(&self, caller: &Caller, key: Option<&str>) -> Result<(), Refusal> {
        if let Some(shared) = &self.shared {
            let limits = &self.config.limits;
            let scopes = [
                ("global", limits.global_requests_per_minute, Some("")),
                ("user", limits.user_requests_per_minute, Some(caller.user.as_str())),
                ("key", limits.key_requests_per_minute, key),
            ];
            for (scope, per_minute, identity) in scopes {
                let Some(identity) = identity.filter(|_| per_minute > 0) else { continue };
                let bucket = shared.key(&format!("limit:{scope}"), identity);
                match shared.take_token(&bucket, per_minute).await {
                    Some(Ok(())) => {}
                    Some(Err(retry_after)) => {
                        return Err(Refusal { scope, limit_per_minute: per_minute, remaining: 0, retry_after })
                    }
                    None => {
                        self.stats.limit_fail_open_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
            return Ok(());
        }
        let now = Instant::now();
        let mut limits = self.limits.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        limits.global.take("", now)?;
        limits.user.take(&caller.user, now)?;
        if let Some(key) = key {
            limits.key.take(key, now)?;
        }
        Ok(())
    }

    fn refused(&self, refusal: &Refusal) -> Response<Full<Bytes>> {
        self.stats.rate_limited_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let retry_after_s = refusal.retry_after.as_millis().div_ceil(1000).max(1) as u64;
        let body = serde_json::json!({
            "error": format!("rate limit exceeded ({} limit)", refusal.scope),
            "retry_after": retry_after_s,
            "limit": refusal.limit_per_minute,
            "remaining": refusal.remaining,
        });
        let mut response = respond(StatusCode::TOO_MANY_REQUESTS, "application/json", Bytes::from(body.to_string()));
        if let Ok(value) = hyper::header::HeaderValue::from_str(&retry_after_s.to_string()) {
            response.headers_mut().insert(RETRY_AFTER, value);
        }
        response
    }

    /// The cache plan of a query request; `None` when it is not cacheable (unparsable
    /// parameters, `stats` asked for, too many points), which passes it through so the
    /// downstream's own answer, errors included, reaches the client.
    fn plan(&self, path: &str, pairs: &[(String, String)], caller: &Caller) -> Option<QueryPlan> {
        let find = |name: &str| pairs.iter().rev().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
        let query = find("query")?;
        if find("stats").is_some() || query.is_empty() {
            return None;
        }
        let mut fixed_pairs: Vec<(String, String)> = pairs
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "time" | "start" | "end" | "timeout"))
            .cloned()
            .collect();
        fixed_pairs.sort();
        fixed_pairs.dedup_by(|later, earlier| later.0 == earlier.0);
        let fixed = encode(&fixed_pairs);
        if path == "/api/v1/query" {
            let resolution_ms = self.config.cache.instant_resolution_ms;
            let latest_key =
                find("time").is_none().then(|| format!("latest\u{0}instant\u{0}{}\u{0}{fixed}", caller.tenant));
            let time_ms = match find("time") {
                Some(text) => parse_time_ms(text).ok()?,
                None => self.env.clock.now_ms(),
            };
            let time_ms = time_ms - time_ms.rem_euclid(resolution_ms);
            let mut all = fixed_pairs.clone();
            all.push(("time".to_string(), seconds_text(time_ms)));
            return Some(QueryPlan {
                key: format!("instant\u{0}{}\u{0}{fixed}\u{0}{time_ms}", caller.tenant),
                latest_key,
                outgoing: self.query_request("/api/v1/query", &all, caller),
                range: None,
            });
        }
        let step_ms = parse_duration_param_ms(find("step")?).ok().filter(|step| *step > 0)?;
        let start_ms = parse_time_ms(find("start")?).ok()?;
        let end_ms = parse_time_ms(find("end")?).ok()?;
        // Aligned to the step, as Cortex' step alignment: every request of a dashboard then
        // lands on one grid, so answers and extents are shared.
        let start_ms = start_ms - start_ms.rem_euclid(step_ms);
        let end_ms = end_ms - end_ms.rem_euclid(step_ms);
        if end_ms < start_ms || (end_ms - start_ms) / step_ms >= RANGE_POINT_COUNT_MAX {
            return None;
        }
        let mut all = fixed_pairs.clone();
        all.push(("start".to_string(), seconds_text(start_ms)));
        all.push(("end".to_string(), seconds_text(end_ms)));
        Some(QueryPlan {
            key: format!("range\u{0}{}\u{0}{fixed}\u{0}{start_ms}\u{0}{end_ms}", caller.tenant),
            latest_key: Some(format!("latest\u{0}range\u{0}{}\u{0}{fixed}\u{0}{}", caller.tenant, end_ms - start_ms)),
            outgoing: self.query_request("/api/v1/query_range", &all, caller),
            range: Some(RangePlan {
                extent_key: format!("{}\u{0}{fixed}", caller.tenant),
                start_ms,
                end_ms,
                step_ms,
                splittable: !query.contains("start()") && !query.contains("end()"),
                fixed_pairs,
            }),
        })
    }

    fn query_request(&self, path: &str, pairs: &[(String, String)], caller: &Caller) -> Outgoing {
        Outgoing {
            method: Method::POST,
            path_and_query: path.to_string(),
            headers: caller.forwarded.clone(),
            content_type: "application/x-www-form-urlencoded".to_string(),
            body: Bytes::from(encode(pairs)),
        }
    }

    /// Answers `plan` from L1, a flight in progress, or the downstream; counts the outcome.
    async fn lookup(self: &Arc<Self>, plan: &QueryPlan) -> Looked {
        let (looked, outcome) = self.lookup_uncounted(plan).await;
        self.stats.count(outcome);
        looked
    }

    async fn lookup_uncounted(self: &Arc<Self>, plan: &QueryPlan) -> (Looked, Outcome) {
        let now = Instant::now();
        let cached = {
            let mut l1 = self.l1.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match l1.get(&plan.key, now) {
                Lookup::Miss => match plan.latest_key.as_ref().map(|key| l1.get(key, now)) {
                    Some(Lookup::Fresh(body) | Lookup::Stale(body)) => Lookup::Stale(body),
                    Some(Lookup::Miss) | None => Lookup::Miss,
                },
                found => found,
            }
        };
        let mut stale = match cached {
            Lookup::Fresh(body) => {
                return (Looked::Answer(json_answer(body)), Outcome::L1Hit);
            }
            Lookup::Stale(body) => Some(body),
            Lookup::Miss => None,
        };
        if let Some(shared) = &self.shared {
            match shared.get_answer(&shared.key("answer", &plan.key), self.config.cache.l2_ttl_ms).await {
                Some(SharedAnswer::Fresh(body)) => {
                    self.remember_local(plan, body.clone());
                    return (Looked::Answer(json_answer(body)), Outcome::L2Hit);
                }
                Some(SharedAnswer::Stale(body)) => stale = stale.or(Some(body)),
                None => {}
            }
        }
        let (fetched, role) = self.flights.run(&plan.key, || self.fetch(plan)).await;
        match fetched {
            Fetched::Answer { answer, .. } if answer.is_server_failure() && stale.is_some() => {
                let reason = format!("downstream answered {}", answer.status);
                (Looked::Stale(stale.unwrap_or_default(), reason), Outcome::Stale)
            }
            Fetched::Answer { answer, downstream_request_count, from_peer } => {
                let outcome = match role {
                    Role::Follower => Outcome::Coalesced,
                    Role::Leader if from_peer => Outcome::Coalesced,
                    Role::Leader if downstream_request_count == 0 => Outcome::ExtentHit,
                    Role::Leader => Outcome::Source,
                };
                (Looked::Answer(answer), outcome)
            }
            Fetched::Failed { reason, breaker_open } => match stale {
                Some(body) => {
                    let reason = if breaker_open { STALE_WARNING_BREAKER.to_string() } else { reason };
                    (Looked::Stale(body, reason), Outcome::Stale)
                }
                None => (Looked::Unavailable(reason), Outcome::Unavailable),
            },
        }
    }

    /// Fetches `plan`'s answer and caches what may be cached. With Redis, one replica fetches:
    /// the others see its flight lock and wait (at most `lock_wait`) for its answer to land.
    async fn fetch(self: &Arc<Self>, plan: &QueryPlan) -> Fetched {
        let Some(shared) = &self.shared else { return self.fetch_downstream(plan).await };
        let answer_key = shared.key("answer", &plan.key);
        let lock_key = shared.key("flight", &plan.key);
        let l2_ttl_ms = self.config.cache.l2_ttl_ms;
        let from_peer =
            |body| Fetched::Answer { answer: json_answer(body), downstream_request_count: 0, from_peer: true };
        match shared.try_lock(&lock_key, FLIGHT_LOCK_HOLD_MS).await {
            Some(true) => {
                // Taken: the answer may have landed between the first look and the lock.
                if let Some(SharedAnswer::Fresh(body)) = shared.get_answer(&answer_key, l2_ttl_ms).await {
                    shared.unlock(&lock_key).await;
                    self.remember_local(plan, body.clone());
                    return from_peer(body);
                }
                let fetched = self.fetch_downstream(plan).await;
                shared.unlock(&lock_key).await;
                fetched
            }
            Some(false) => {
                let deadline = Instant::now() + Duration::from_millis(self.config.cache.lock_wait_ms.max(0) as u64);
                while Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(FLIGHT_POLL_MS)).await;
                    if let Some(SharedAnswer::Fresh(body)) = shared.get_answer(&answer_key, l2_ttl_ms).await {
                        self.remember_local(plan, body.clone());
                        return from_peer(body);
                    }
                }
                self.fetch_downstream(plan).await
            }
            None => self.fetch_downstream(plan).await,
        }
    }

    async fn fetch_downstream(self: &Arc<Self>, plan: &QueryPlan) -> Fetched {
        if let Some(range) = plan.range.as_ref().filter(|range| range.splittable) {
            return self.fetch_range(plan, range).await;
        }
        match self.send_guarded(plan.outgoing.clone()).await {
            Ok(answer) => {
                if is_cacheable(&answer) && !has_warnings(&answer.body) {
                    self.remember(plan, answer.body.clone()).await;
                }
                Fetched::Answer { answer, downstream_request_count: 1, from_peer: false }
            }
            Err((reason, breaker_open)) => Fetched::Failed { reason, breaker_open },
        }
    }

    /// A range answer from the extents and, for their gaps, downstream pieces fetched at once.
    async fn fetch_range(self: &Arc<Self>, plan: &QueryPlan, range: &RangePlan) -> Fetched {
        let (start_ms, end_ms, step_ms) = (range.start_ms, range.end_ms, range.step_ms);
        let cached = self.extents.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).plan(
            &range.extent_key,
            start_ms,
            end_ms,
            step_ms,
        );
        let pieces: Vec<(i64, i64)> = cached
            .gaps
            .iter()
            .flat_map(|(gap_start, gap_end)| {
                split_by_interval(*gap_start, *gap_end, step_ms, self.config.cache.split_interval_ms)
            })
            .collect();
        let mut receivers = Vec::with_capacity(pieces.len());
        for (piece_start, piece_end) in &pieces {
            let mut pairs = range.fixed_pairs.clone();
            pairs.push(("start".to_string(), seconds_text(*piece_start)));
            pairs.push(("end".to_string(), seconds_text(*piece_end)));
            let outgoing = Outgoing { body: Bytes::from(encode(&pairs)), ..plan.outgoing.clone() };
            let (sender, receiver) = tokio::sync::oneshot::channel();
            let this = self.clone();
            self.env.spawner.spawn(
                "frontend-range-piece",
                Box::pin(async move {
                    let _ = sender.send(this.send_guarded(outgoing).await);
                }),
            );
            receivers.push(receiver);
        }
        // Whether the extents covered any of the range (with points or without).
        let covered_some = cached.gaps.as_slice() != [(start_ms, end_ms)];
        let mut matrix = cached.cached;
        let mut warnings = Vec::new();
        let mut cacheable = true;
        let cutoff_ms = self.env.clock.now_ms() - self.config.cache.max_freshness_ms;
        let request_count = pieces.len() as u32;
        for ((piece_start, piece_end), receiver) in pieces.into_iter().zip(receivers) {
            let answer = match receiver.await {
                Ok(Ok(answer)) => answer,
                Ok(Err((reason, breaker_open))) => return Fetched::Failed { reason, breaker_open },
                Err(_) => {
                    return Fetched::Failed {
                        reason: "range piece ended without an answer".to_string(),
                        breaker_open: false,
                    }
                }
            };
            let parsed = (answer.status == 200).then(|| parse_range_answer(&answer.body)).flatten();
            let Some(parsed) = parsed else {
                // An error (or an answer not understood): the client gets it as it is.
                return Fetched::Answer { answer, downstream_request_count: request_count, from_peer: false };
            };
            let piece_cacheable = parsed.warnings.is_empty() && is_cacheable(&answer);
            cacheable &= piece_cacheable;
            // Only points old enough not to change any more are kept.
            let cache_end_ms = piece_end.min(piece_start + (cutoff_ms - piece_start).div_euclid(step_ms) * step_ms);
            if piece_cacheable && cache_end_ms >= piece_start {
                let extent = Extent {
                    start_ms: piece_start,
                    end_ms: cache_end_ms,
                    matrix: slice(&parsed.matrix, piece_start, cache_end_ms),
                };
                self.extents.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(
                    &range.extent_key,
                    extent,
                    step_ms,
                );
            }
            warnings.extend(parsed.warnings);
            merge_into(&mut matrix, &parsed.matrix);
        }
        if covered_some && request_count > 0 {
            self.stats.extent_partial_hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let body = Bytes::from(render_range_answer(&matrix, start_ms, end_ms, &warnings));
        if cacheable {
            self.remember(plan, body.clone()).await;
        }
        Fetched::Answer { answer: json_answer(body), downstream_request_count: request_count, from_peer: false }
    }

    /// Keeps a fetched answer in L1 and, with Redis, in L2 for the other replicas.
    async fn remember(&self, plan: &QueryPlan, body: Bytes) {
        self.remember_local(plan, body.clone());
        if let Some(shared) = &self.shared {
            let keep_ms = self.config.cache.l2_ttl_ms + self.config.cache.stale_ms;
            shared.put_answer(&shared.key("answer", &plan.key), &body, keep_ms).await;
        }
    }

    fn remember_local(&self, plan: &QueryPlan, body: Bytes) {
        let ttl = Duration::from_millis(self.config.cache.l1_ttl_ms.max(0) as u64);
        let stale_for = Duration::from_millis(self.config.cache.stale_ms.max(0) as u64);
        let now = Instant::now();
        let mut l1 = self.l1.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(latest_key) = &plan.latest_key {
            // Only ever served stale: no TTL of its own.
            l1.insert(latest_key.clone(), body.clone(), now, Duration::ZERO, ttl + stale_for);
        }
        l1.insert(plan.key.clone(), body, now, ttl, stale_for);
    }

    /// Sends through the breaker: the answer (any status), or why there is none and whether the
    /// breaker refused it.
    async fn send_guarded(&self, outgoing: Outgoing) -> Result<Answer, (String, bool)> {
        let admission = self.breaker.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).admit(Instant::now());
        if admission == Admission::Refused {
            return Err((format!("{STALE_WARNING_BREAKER}: the downstream is not asked until it recovers"), true));
        }
        let result = self.downstream.send(outgoing).await;
        let failed = result.as_ref().map_or(true, Answer::is_server_failure);
        self.breaker.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).record(admission, failed, Instant::now());
        result.map_err(|error| (error.to_string(), false))
    }

    fn gauges(&self) -> Gauges {
        let (l1_entries, l1_bytes, l1_evictions) = {
            let l1 = self.l1.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            (l1.len(), l1.size_bytes(), l1.evicted_count())
        };
        let (extent_keys, extent_bytes) = {
            let extents = self.extents.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            (extents.len(), extents.size_bytes())
        };
        let (breaker_state, breaker_opened) = {
            let breaker = self.breaker.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            (breaker.state().code(), breaker.opened_count())
        };
        let limit_overflows = {
            let limits = self.limits.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            limits.user.overflow_count() + limits.key.overflow_count() + limits.global.overflow_count()
        };
        let load = |counter: &std::sync::atomic::AtomicU64| counter.load(std::sync::atomic::Ordering::Relaxed);
        Gauges {
            l1_entries,
            l1_bytes,
            l1_evictions,
            extent_keys,
            extent_bytes,
            breaker_state,
            breaker_opened,
            downstream_requests: load(&self.downstream.requests_total),
            downstream_retries: load(&self.downstream.retries_total),
            downstream_connections_opened: load(&self.downstream.connections_opened_total),
            limit_overflows,
            redis_configured: self.shared.is_some(),
            redis_up: self.shared.as_ref().is_some_and(|shared| shared.up.load(std::sync::atomic::Ordering::Relaxed)),
            redis_errors: self.shared.as_ref().map_or(0, |shared| load(&shared.errors_total)),
        }
    }
}

/// Whether the downstream allows keeping `answer`: a 200 without `Cache-Control: no-store`.
fn is_cacheable(answer: &Answer) -> bool {
    answer.status == 200 && !answer.cache_control.to_ascii_lowercase().contains("no-store")
}

/// Whether a JSON answer carries warnings (partial answers do): those are not cached.
fn has_warnings(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .map(|value| {
            value.get("warnings").and_then(|warnings| warnings.as_array()).is_some_and(|items| !items.is_empty())
        })
        .unwrap_or(true)
}

/// `body` (a success answer without warnings, as every cached one is) with one warning added.
fn with_warning(body: &Bytes, warning: &str) -> Bytes {
    let text = String::from_utf8_lossy(body);
    let Some(stripped) = text.trim_end().strip_suffix('}') else { return body.clone() };
    let mut out = String::with_capacity(text.len() + warning.len() + 16);
    out.push_str(stripped);
    out.push_str(",\"warnings\":[");
    crate::api::json::write_string(&mut out, warning);
    out.push_str("]}");
    Bytes::from(out)
}

fn encode(pairs: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

fn seconds_text(time_ms: i64) -> String {
    let mut out = String::new();
    write_timestamp(&mut out, time_ms);
    out
}

fn header_text(headers: &hyper::HeaderMap, name: impl hyper::header::AsHeaderName) -> String {
    headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_default().to_string()
}

fn respond(status: StatusCode, content_type: &str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", Bytes::from_static(body.as_bytes()))
}

fn api_error(status: StatusCode, error_type: &str, message: &str) -> Response<Full<Bytes>> {
    respond(status, "application/json", Bytes::from(crate::api::json::error(error_type, message)))
}

fn json_answer(body: Bytes) -> Answer {
    Answer { status: 200, content_type: "application/json".to_string(), cache_control: String::new(), body }
}

fn answer_response(answer: Answer) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = if answer.content_type.is_empty() { "application/json" } else { answer.content_type.as_str() };
    respond(status, content_type, answer.body)
}

/// Serves the frontend on `listener` until cancelled.
pub async fn serve(listener: Box<dyn crate::io::Listener>, frontend: Arc<Frontend>, connections_max: usize) {
    let spawner = frontend.env.spawner.clone();
    crate::api::serve::serve_with(listener, spawner, connections_max, move |request| {
        let frontend = frontend.clone();
        async move { frontend.handle(request).await }
    })
    .await;
}

#[cfg(test)]
mod tests;
