//! The frontend's settings: flags for the downstream and the listen address, a YAML file
//! (`--config.file`) for TTLs, limits, the breaker and the views. Every field has the design
//! documents' default, so the frontend starts on flags alone.

use serde::Deserialize;

use crate::config::parse_duration_ms;

/// Everything the frontend needs to run.
#[derive(Clone, Debug, PartialEq)]
pub struct FrontendConfig {
    /// Base URL of the Prometheus-compatible API behind the frontend, e.g. `http://127.0.0.1:9090`.
    pub downstream_url: String,
    /// Header naming the user for per-user limits and the cache's tenant; basic auth's user
    /// name is used when the header is absent.
    pub user_header: String,
    /// The cache settings.
    pub cache: CacheSettings,
    /// Rate limits.
    pub limits: LimitSettings,
    /// The downstream circuit breaker.
    pub breaker: BreakerSettings,
    /// The downstream HTTP client.
    pub downstream: DownstreamSettings,
    /// The metrics-view endpoints.
    pub views: Vec<ViewSettings>,
    /// Redis (`host:port`) shared by frontend replicas: L2 answers, rate limits, flight locks.
    pub redis_address: Option<String>,
}

impl FrontendConfig {
    /// The documents' defaults in front of `downstream_url`.
    pub fn new(downstream_url: String) -> FrontendConfig {
        FrontendConfig {
            downstream_url,
            user_header: "X-User-Id".to_string(),
            cache: CacheSettings::default(),
            limits: LimitSettings::default(),
            breaker: BreakerSettings::default(),
            downstream: DownstreamSettings::default(),
            views: Vec::new(),
            redis_address: None,
        }
    }

    /// Applies a YAML config file over the defaults (flags win over it afterwards).
    pub fn apply_file(&mut self, yaml: &str) -> Result<(), String> {
        let file: FileConfig = serde_yaml_ng::from_str(yaml).map_err(|error| error.to_string())?;
        if let Some(url) = file.downstream_url {
            self.downstream_url = url;
        }
        if let Some(header) = file.user_header {
            self.user_header = header;
        }
        if let Some(address) = file.redis_address {
            self.redis_address = Some(address);
        }
        if let Some(cache) = file.cache {
            let settings = &mut self.cache;
            set_duration(&mut settings.l1_ttl_ms, cache.l1_ttl, "cache.l1_ttl")?;
            set_duration(&mut settings.l2_ttl_ms, cache.l2_ttl, "cache.l2_ttl")?;
            set_duration(&mut settings.lock_wait_ms, cache.lock_wait, "cache.lock_wait")?;
            set_duration(&mut settings.stale_ms, cache.stale_for, "cache.stale_for")?;
            set_duration(&mut settings.split_interval_ms, cache.split_interval, "cache.split_interval")?;
            set_duration(&mut settings.max_freshness_ms, cache.max_freshness, "cache.max_freshness")?;
            set_duration(&mut settings.instant_resolution_ms, cache.instant_resolution, "cache.instant_resolution")?;
            if let Some(size) = cache.l1_size_bytes_max {
                settings.l1_size_bytes_max = size;
            }
            if let Some(size) = cache.extents_size_bytes_max {
                settings.extents_size_bytes_max = size;
            }
            if settings.split_interval_ms <= 0 || settings.instant_resolution_ms <= 0 {
                return Err("cache.split_interval and cache.instant_resolution must be positive".to_string());
            }
        }
        if let Some(limits) = file.limits {
            let settings = &mut self.limits;
            if let Some(count) = limits.user_requests_per_minute {
                settings.user_requests_per_minute = count;
            }
            if let Some(count) = limits.key_requests_per_minute {
                settings.key_requests_per_minute = count;
            }
            if let Some(count) = limits.global_requests_per_minute {
                settings.global_requests_per_minute = count;
            }
            if let Some(name) = limits.key_label {
                settings.key_label = name;
            }
        }
        if let Some(breaker) = file.breaker {
            let settings = &mut self.breaker;
            if let Some(count) = breaker.consecutive_failures {
                settings.consecutive_failures = count.max(1);
            }
            if let Some(ratio) = breaker.failure_ratio {
                if !(0.0..=1.0).contains(&ratio) || ratio == 0.0 {
                    return Err(format!("breaker.failure_ratio: {ratio} is not in (0, 1]"));
                }
                settings.failure_ratio = ratio;
            }
            if let Some(count) = breaker.ratio_window {
                settings.ratio_window = count.max(1);
            }
            set_duration(&mut settings.open_ms, breaker.open_for, "breaker.open_for")?;
        }
        if let Some(downstream) = file.downstream {
            let settings = &mut self.downstream;
            set_duration(&mut settings.timeout_ms, downstream.timeout, "downstream.timeout")?;
            if let Some(count) = downstream.idle_connections_max {
                settings.idle_connections_max = count;
            }
            if let Some(count) = downstream.connections_max {
                settings.connections_max = count.max(1);
            }
            if let Some(count) = downstream.retries_max {
                settings.retries_max = count;
            }
        }
        for view in file.views {
            self.views.push(view.validate()?);
        }
        Ok(())
    }
}

fn set_duration(target: &mut i64, text: Option<String>, name: &str) -> Result<(), String> {
    if let Some(text) = text {
        *target = parse_duration_ms(&text).map_err(|error| format!("{name}: {error}"))?;
    }
    Ok(())
}

/// Results cache settings.
#[derive(Clone, Debug, PartialEq)]
pub struct CacheSettings {
    /// How long an answer is served from the in-process cache (the documents' 5 s).
    pub l1_ttl_ms: i64,
    /// How long an answer is served from Redis (the documents' 15 s).
    pub l2_ttl_ms: i64,
    /// How long after its TTL an answer is kept for serving while the breaker is open (5 min).
    pub stale_ms: i64,
    /// How long a replica waits for another replica's fetch of the same answer (seen by its
    /// lock in Redis) before fetching itself.
    pub lock_wait_ms: i64,
    /// Most bytes of answers in the in-process cache.
    pub l1_size_bytes_max: usize,
    /// Most bytes of range-query extents.
    pub extents_size_bytes_max: usize,
    /// Range queries are fetched in pieces of this length, aligned to it (Cortex: a day).
    pub split_interval_ms: i64,
    /// Samples newer than now minus this are never kept in extents (Cortex: 1 min): the
    /// newest data may still change (late scrapes, rule evaluations).
    pub max_freshness_ms: i64,
    /// Instant queries without an explicit time are evaluated at now rounded down to this.
    pub instant_resolution_ms: i64,
}

impl Default for CacheSettings {
    fn default() -> CacheSettings {
        CacheSettings {
            l1_ttl_ms: 5_000,
            l2_ttl_ms: 15_000,
            stale_ms: 300_000,
            lock_wait_ms: 2_000,
            l1_size_bytes_max: 256 << 20,
            extents_size_bytes_max: 256 << 20,
            split_interval_ms: 86_400_000,
            max_freshness_ms: 60_000,
            instant_resolution_ms: 5_000,
        }
    }
}

/// Token-bucket rate limits; 0 turns a limit off.
#[derive(Clone, Debug, PartialEq)]
pub struct LimitSettings {
    /// Per user (the documents' 100/min).
    pub user_requests_per_minute: u64,
    /// Per key taken from the request (the documents' database id, 1,000/min).
    pub key_requests_per_minute: u64,
    /// All requests together (off by default).
    pub global_requests_per_minute: u64,
    /// The view path label, or else the query parameter, holding the key.
    pub key_label: String,
}

impl Default for LimitSettings {
    fn default() -> LimitSettings {
        LimitSettings {
            user_requests_per_minute: 100,
            key_requests_per_minute: 1_000,
            global_requests_per_minute: 0,
            key_label: "db_id".to_string(),
        }
    }
}

/// When the breaker opens and for how long.
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerSettings {
    /// Opens after this many failures in a row (the documents' 5).
    pub consecutive_failures: u32,
    /// ... or when this share of the last `ratio_window` requests failed.
    pub failure_ratio: f64,
    /// Requests the ratio is taken over; the ratio is not judged before this many.
    pub ratio_window: usize,
    /// How long it stays open before one probe is let through (60 s).
    pub open_ms: i64,
}

impl Default for BreakerSettings {
    fn default() -> BreakerSettings {
        BreakerSettings { consecutive_failures: 5, failure_ratio: 0.5, ratio_window: 20, open_ms: 60_000 }
    }
}

/// The downstream HTTP client.
#[derive(Clone, Debug, PartialEq)]
pub struct DownstreamSettings {
    /// Whole-exchange timeout (30 s).
    pub timeout_ms: i64,
    /// Idle keep-alive connections kept (100).
    pub idle_connections_max: usize,
    /// Connections open at once, idle or busy (200).
    pub connections_max: usize,
    /// Retries of an idempotent request after a connection failure or a 502/503/504.
    pub retries_max: u32,
}

impl Default for DownstreamSettings {
    fn default() -> DownstreamSettings {
        DownstreamSettings { timeout_ms: 30_000, idle_connections_max: 100, connections_max: 200, retries_max: 2 }
    }
}

/// One metrics-view endpoint: a path template whose `{name}` segments become labels, an
/// optional lookup query telling whether the object exists and which engine it runs, and the
/// named PromQL values per engine.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ViewSettings {
    /// e.g. `/api/v1/domain/{domain}/project/{project}/databases/{db_id}/metrics`.
    pub path: String,
    /// PromQL whose answer names the object's engine in `engine_label`; an empty answer is 404.
    /// Without it every object exists and uses the engine `default`.
    #[serde(default)]
    pub lookup: Option<String>,
    /// Label of the lookup's answer naming the engine.
    #[serde(default = "default_engine_label")]
    pub engine_label: String,
    /// Engine name to the named queries of that engine; `{label}` in a query is replaced by
    /// the path segment's value.
    pub engines: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
}

fn default_engine_label() -> String {
    "engine".to_string()
}

impl ViewSettings {
    fn validate(self) -> Result<ViewSettings, String> {
        if !self.path.starts_with('/') {
            return Err(format!("view {:?}: the path must start with /", self.path));
        }
        let labels = self.path_labels();
        for query in self.engines.values().flat_map(|queries| queries.values()).chain(self.lookup.as_ref()) {
            for name in placeholders(query) {
                if !labels.contains(&name) {
                    return Err(format!("view {:?}: query {query:?} uses {{{name}}}, not in the path", self.path));
                }
            }
        }
        if self.engines.is_empty() {
            return Err(format!("view {:?}: no engines", self.path));
        }
        Ok(self)
    }

    /// The `{name}` segments of the path, in order.
    pub fn path_labels(&self) -> Vec<String> {
        self.path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .map(String::from)
            .collect()
    }

    /// The labels of `path` when it matches the template, in template order.
    pub fn match_path(&self, path: &str) -> Option<Vec<(String, String)>> {
        let template: Vec<&str> = self.path.split('/').collect();
        let actual: Vec<&str> = path.split('/').collect();
        if template.len() != actual.len() {
            return None;
        }
        let mut labels = Vec::new();
        for (pattern, segment) in template.iter().zip(&actual) {
            match pattern.strip_prefix('{').and_then(|rest| rest.strip_suffix('}')) {
                Some(name) if !segment.is_empty() => labels.push((name.to_string(), segment.to_string())),
                Some(_) => return None,
                None if pattern == segment => {}
                None => return None,
            }
        }
        Some(labels)
    }
}

/// The `{name}` placeholders of a query template.
pub fn placeholders(template: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) if is_label_name(&after[..close]) => {
                names.push(after[..close].to_string());
                rest = &after[close + 1..];
            }
            _ => rest = after,
        }
    }
    names
}

fn is_label_name(text: &str) -> bool {
    let mut chars = text.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    downstream_url: Option<String>,
    user_header: Option<String>,
    redis_address: Option<String>,
    cache: Option<FileCache>,
    limits: Option<FileLimits>,
    breaker: Option<FileBreaker>,
    downstream: Option<FileDownstream>,
    #[serde(default)]
    views: Vec<ViewSettings>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCache {
    l1_ttl: Option<String>,
    l2_ttl: Option<String>,
    lock_wait: Option<String>,
    stale_for: Option<String>,
    l1_size_bytes_max: Option<usize>,
    extents_size_bytes_max: Option<usize>,
    split_interval: Option<String>,
    max_freshness: Option<String>,
    instant_resolution: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    user_requests_per_minute: Option<u64>,
    key_requests_per_minute: Option<u64>,
    global_requests_per_minute: Option<u64>,
    key_label: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBreaker {
    consecutive_failures: Option<u32>,
    failure_ratio: Option<f64>,
    ratio_window: Option<usize>,
    open_for: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDownstream {
    timeout: Option<String>,
    idle_connections_max: Option<usize>,
    connections_max: Option<usize>,
    retries_max: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIEWS: &str = r#"
cache:
  l1_ttl: 2s
  max_freshness: 30s
limits:
  user_requests_per_minute: 10
breaker:
  open_for: 10s
views:
  - path: /api/v1/domain/{domain}/project/{project}/databases/{db_id}/metrics
    lookup: 'dbaas_database_info{db_id="{db_id}"}'
    engines:
      postgres:
        connections: 'sum(pg_stat_activity_count{db_id="{db_id}"})'
"#;

    #[test]
    fn file_over_defaults() {
        let mut config = FrontendConfig::new("http://127.0.0.1:9090".to_string());
        config.apply_file(VIEWS).unwrap();
        assert_eq!(config.cache.l1_ttl_ms, 2_000);
        assert_eq!(config.cache.max_freshness_ms, 30_000);
        assert_eq!(config.cache.stale_ms, 300_000);
        assert_eq!(config.limits.user_requests_per_minute, 10);
        assert_eq!(config.limits.key_requests_per_minute, 1_000);
        assert_eq!(config.breaker.open_ms, 10_000);
        assert_eq!(config.views.len(), 1);
        let view = &config.views[0];
        assert_eq!(view.path_labels(), ["domain", "project", "db_id"]);
        assert_eq!(
            view.match_path("/api/v1/domain/d/project/p/databases/db-1/metrics").unwrap(),
            [("domain".into(), "d".into()), ("project".into(), "p".into()), ("db_id".into(), "db-1".into())]
        );
        assert!(view.match_path("/api/v1/domain/d/project/p/databases/db-1").is_none());
        assert!(view.match_path("/api/v1/domain//project/p/databases/db-1/metrics").is_none());
    }

    #[test]
    fn bad_files_are_refused() {
        let mut config = FrontendConfig::new(String::new());
        assert!(config.apply_file("cache: {l1_ttl: soon}").unwrap_err().contains("cache.l1_ttl"));
        assert!(config.apply_file("caches: {}").unwrap_err().contains("unknown field"));
        let unknown_label = "views:\n  - path: /v/{id}\n    engines:\n      default:\n        x: 'up{job=\"{job}\"}'\n";
        assert!(config.apply_file(unknown_label).unwrap_err().contains("{job}"));
        assert!(config.apply_file("breaker: {failure_ratio: 2}").unwrap_err().contains("failure_ratio"));
    }

    #[test]
    fn placeholders_skip_matchers() {
        assert_eq!(placeholders(r#"up{db_id="{db_id}"} + on() x{a="b"}"#), ["db_id"]);
        assert!(placeholders("rate(x[5m])").is_empty());
    }
}
