//! The `remote_write` section (Prometheus config.go `RemoteWriteConfig`, `QueueConfig`): where
//! the remote write sender ships the WAL's samples, and how it batches and retries them.
//!
//! Defaults are Prometheus 2.42's (`DefaultRemoteWriteConfig`, `DefaultQueueConfig`). Keys
//! Prometheus has that the engine does not implement (TLS, OAuth 2, SigV4, Azure AD, proxies,
//! metadata, exemplars and native histograms) are errors saying so, never silently ignored.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::alerting::{authorization_header, RawAuthorization, RawBasicAuth};
use super::{ConfigError, DurationMs};
use crate::relabel::{self, RawRelabelConfig, RelabelConfig};

/// Prometheus' `remote_timeout` default.
const REMOTE_TIMEOUT_MS_DEFAULT: i64 = 30_000;

/// One resolved `remote_write` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteWriteConfig {
    /// Where `POST`s go (`url`), an `http://` URL.
    pub url: String,
    /// The queue's name (`name`, else the first 6 hex digits of the URL's SHA-256, as
    /// Prometheus names unnamed queues by a hash): the `remote_name` label of the metrics and
    /// the directory of the queue's progress marker.
    pub name: String,
    /// Longest one request may take (`remote_timeout`).
    pub remote_timeout_ms: i64,
    /// Extra request headers (`headers`).
    pub headers: BTreeMap<String, String>,
    /// `Authorization` header value (from `basic_auth` or `authorization`), if any.
    pub authorization: Option<String>,
    /// Applied to each series' labels (after external labels) before it is sent; a dropped
    /// series is never sent.
    pub write_relabel_configs: Vec<RelabelConfig>,
    /// Batching, sharding and retries.
    pub queue: QueueConfig,
}

/// The `queue_config` of a remote write entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// Samples buffered per shard (`capacity`).
    pub capacity: usize,
    /// Most concurrent requests (`max_shards`).
    pub shards_max: usize,
    /// Fewest concurrent requests (`min_shards`), the number a queue starts with.
    pub shards_min: usize,
    /// Most samples per request (`max_samples_per_send`).
    pub samples_per_send_max: usize,
    /// Longest a sample waits for a batch to fill (`batch_send_deadline`), ms.
    pub batch_send_deadline_ms: u64,
    /// First retry delay (`min_backoff`), ms; doubles each retry.
    pub backoff_min_ms: u64,
    /// Longest retry delay (`max_backoff`), ms.
    pub backoff_max_ms: u64,
    /// Retry a 429 answer (`retry_on_http_429`) instead of dropping the batch.
    pub retry_on_http_429: bool,
}

impl Default for QueueConfig {
    /// Prometheus 2.42's `DefaultQueueConfig`.
    fn default() -> Self {
        QueueConfig {
            capacity: 2_500,
            shards_max: 200,
            shards_min: 1,
            samples_per_send_max: 500,
            batch_send_deadline_ms: 5_000,
            backoff_min_ms: 30,
            backoff_max_ms: 5_000,
            retry_on_http_429: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRemoteWrite {
    url: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    remote_timeout: Option<DurationMs>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    write_relabel_configs: Vec<RawRelabelConfig>,
    #[serde(default)]
    basic_auth: Option<RawBasicAuth>,
    #[serde(default)]
    authorization: Option<RawAuthorization>,
    #[serde(default)]
    queue_config: Option<RawQueueConfig>,
    #[serde(default)]
    follow_redirects: Option<bool>,
    #[serde(default)]
    enable_http2: Option<bool>,
    #[serde(default)]
    send_exemplars: Option<bool>,
    #[serde(default)]
    send_native_histograms: Option<bool>,
    #[serde(default)]
    tls_config: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    oauth2: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    sigv4: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    azuread: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    proxy_url: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    metadata_config: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueueConfig {
    #[serde(default)]
    capacity: Option<usize>,
    #[serde(default)]
    max_shards: Option<usize>,
    #[serde(default)]
    min_shards: Option<usize>,
    #[serde(default)]
    max_samples_per_send: Option<usize>,
    #[serde(default)]
    batch_send_deadline: Option<DurationMs>,
    #[serde(default)]
    min_backoff: Option<DurationMs>,
    #[serde(default)]
    max_backoff: Option<DurationMs>,
    #[serde(default)]
    retry_on_http_429: Option<bool>,
    /// Removed in Prometheus 2.11 (retries are unbounded); accepted and ignored as 2.42 does.
    #[serde(default)]
    #[allow(dead_code)]
    max_retries: Option<u64>,
    #[serde(default)]
    sample_age_limit: Option<serde_yaml_ng::Value>,
}

pub(super) fn resolve(raw: Vec<RawRemoteWrite>) -> Result<Vec<RemoteWriteConfig>, ConfigError> {
    let mut configs: Vec<RemoteWriteConfig> = Vec::new();
    for (index, entry) in raw.into_iter().enumerate() {
        let path = format!("remote_write[{index}]");
        let invalid = |message: String| ConfigError::Invalid { path: path.clone(), message };
        let unsupported = [
            ("tls_config", entry.tls_config.is_some()),
            ("oauth2", entry.oauth2.is_some()),
            ("sigv4", entry.sigv4.is_some()),
            ("azuread", entry.azuread.is_some()),
            ("proxy_url", entry.proxy_url.is_some()),
            ("metadata_config", entry.metadata_config.is_some()),
            ("send_exemplars", entry.send_exemplars == Some(true)),
            ("send_native_histograms", entry.send_native_histograms == Some(true)),
        ];
        let _ = (entry.follow_redirects, entry.enable_http2);
        let taken: Vec<(&str, &str)> =
            configs.iter().map(|config| (config.name.as_str(), config.url.as_str())).collect();
        // The name is a directory name (the queue's progress marker).
        let name = entry_identity(&path, "remote write", &unsupported, &entry.url, entry.name, &taken, true)?;
        let authorization = authorization_header(entry.basic_auth, entry.authorization).map_err(invalid)?;
        let write_relabel_configs = relabel::from_raw_list(&entry.write_relabel_configs)
            .map_err(|message| ConfigError::Invalid { path: format!("{path}.write_relabel_configs"), message })?;
        let queue = resolve_queue(entry.queue_config.unwrap_or_default())
            .map_err(|message| ConfigError::Invalid { path: format!("{path}.queue_config"), message })?;
        configs.push(RemoteWriteConfig {
            url: entry.url,
            name,
            remote_timeout_ms: entry.remote_timeout.map_or(REMOTE_TIMEOUT_MS_DEFAULT, |duration| duration.0),
            headers: entry.headers,
            authorization,
            write_relabel_configs,
            queue,
        });
    }
    Ok(configs)
}

fn resolve_queue(raw: RawQueueConfig) -> Result<QueueConfig, String> {
    if raw.sample_age_limit.is_some() {
        return Err("sample_age_limit is not supported yet".to_string());
    }
    let default = QueueConfig::default();
    let queue = QueueConfig {
        capacity: raw.capacity.unwrap_or(default.capacity),
        shards_max: raw.max_shards.unwrap_or(default.shards_max),
        shards_min: raw.min_shards.unwrap_or(default.shards_min),
        samples_per_send_max: raw.max_samples_per_send.unwrap_or(default.samples_per_send_max),
        batch_send_deadline_ms: raw.batch_send_deadline.map_or(default.batch_send_deadline_ms, |d| d.0 as u64),
        backoff_min_ms: raw.min_backoff.map_or(default.backoff_min_ms, |d| d.0 as u64),
        backoff_max_ms: raw.max_backoff.map_or(default.backoff_max_ms, |d| d.0 as u64),
        retry_on_http_429: raw.retry_on_http_429.unwrap_or(default.retry_on_http_429),
    };
    if queue.samples_per_send_max == 0 || queue.capacity == 0 || queue.shards_min == 0 {
        return Err("capacity, min_shards and max_samples_per_send must be positive".to_string());
    }
    if queue.shards_max < queue.shards_min {
        return Err(format!("max_shards {} is below min_shards {}", queue.shards_max, queue.shards_min));
    }
    if queue.shards_max > crate::limits::REMOTE_WRITE_SHARD_COUNT_MAX {
        return Err(format!(
            "max_shards {} exceeds the engine's limit of {}",
            queue.shards_max,
            crate::limits::REMOTE_WRITE_SHARD_COUNT_MAX
        ));
    }
    if queue.capacity > crate::limits::REMOTE_WRITE_CAPACITY_MAX {
        return Err(format!(
            "capacity {} exceeds the engine's limit of {} samples per shard",
            queue.capacity,
            crate::limits::REMOTE_WRITE_CAPACITY_MAX
        ));
    }
    if queue.backoff_max_ms < queue.backoff_min_ms {
        return Err(format!(
            "max_backoff {} ms is below min_backoff {} ms",
            queue.backoff_max_ms, queue.backoff_min_ms
        ));
    }
    Ok(queue)
}

/// The first 6 hex digits of the URL's SHA-256: a stable name for an unnamed queue.
/// What `remote_write` and `remote_read` entries share: keys the engine refuses, the URL check,
/// and the entry's name (`name`, else the URL's hash), unique among `taken` (name, URL) pairs
/// as the URL is; `file_name_safe` limits the name to letters, digits, `_`, `-` and `.`.
pub(super) fn entry_identity(
    path: &str,
    kind: &str,
    unsupported: &[(&str, bool)],
    url: &str,
    name: Option<String>,
    taken: &[(&str, &str)],
    file_name_safe: bool,
) -> Result<String, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid { path: path.to_string(), message };
    if let Some((key, _)) = unsupported.iter().find(|(_, set)| *set) {
        return Err(invalid(format!("{key} is not supported yet")));
    }
    crate::io::http_client::HttpEndpoint::parse(url).map_err(|error| invalid(error.to_string()))?;
    let name = match name {
        Some(name) if name.is_empty() => return Err(invalid("name must not be empty".to_string())),
        Some(name)
            if file_name_safe && !name.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"_-.".contains(&byte)) =>
        {
            return Err(invalid(format!("name {name:?} may hold only letters, digits, '_', '-' and '.'")))
        }
        Some(name) => name,
        None => url_hash_name(url),
    };
    if taken.iter().any(|(existing, _)| *existing == name) {
        return Err(invalid(format!("found multiple {kind} configs with name {name:?}")));
    }
    if taken.iter().any(|(_, existing)| *existing == url) {
        return Err(invalid(format!("found multiple {kind} configs with url {url:?}")));
    }
    Ok(name)
}

pub(super) fn url_hash_name(url: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(url.as_bytes());
    digest.iter().take(3).map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    #[test]
    fn remote_write_resolves_with_prometheus_defaults() {
        let config = parse(
            "remote_write:\n  - url: http://vm:8428/api/v1/write\n  - url: http://p:9090/api/v1/write\n    name: prom\n    \
             remote_timeout: 5s\n    headers: {X-Scope-OrgID: team}\n    authorization: {credentials: token}\n    \
             write_relabel_configs:\n      - {source_labels: [__name__], regex: 'go_.*', action: drop}\n    \
             queue_config: {max_samples_per_send: 1000, min_shards: 2, max_shards: 4, min_backoff: 1s, \
             max_backoff: 1m, retry_on_http_429: true, batch_send_deadline: 1s}\n",
        )
        .unwrap();
        let [first, second] = config.remote_write.as_slice() else { panic!("{:?}", config.remote_write) };
        assert_eq!(first.queue, QueueConfig::default());
        assert_eq!(first.remote_timeout_ms, 30_000);
        assert_eq!(first.name.len(), 6);
        assert_eq!(first.name, url_hash_name("http://vm:8428/api/v1/write"));
        assert_eq!(second.name, "prom");
        assert_eq!(second.remote_timeout_ms, 5_000);
        assert_eq!(second.authorization.as_deref(), Some("Bearer token"));
        assert_eq!(second.headers.get("X-Scope-OrgID").map(String::as_str), Some("team"));
        assert_eq!(second.write_relabel_configs.len(), 1);
        assert_eq!(
            second.queue,
            QueueConfig {
                capacity: 2_500,
                shards_max: 4,
                shards_min: 2,
                samples_per_send_max: 1_000,
                batch_send_deadline_ms: 1_000,
                backoff_min_ms: 1_000,
                backoff_max_ms: 60_000,
                retry_on_http_429: true,
            }
        );
    }

    #[test]
    fn bad_remote_write_entries_are_refused() {
        let error = |yaml: &str| parse(yaml).unwrap_err().to_string();
        assert!(error("remote_write:\n  - url: https://x/\n").contains("https"));
        assert!(error("remote_write:\n  - name: a\n").contains("url"));
        assert!(
            error("remote_write:\n  - url: http://x/\n    tls_config: {}\n").contains("tls_config is not supported")
        );
        assert!(error("remote_write:\n  - url: http://x/\n  - url: http://x/\n").contains("multiple"));
        assert!(
            error("remote_write:\n  - url: http://x/\n    name: a\n  - url: http://y/\n    name: a\n").contains("name")
        );
        assert!(error("remote_write:\n  - url: http://x/\n    queue_config: {min_shards: 3, max_shards: 2}\n")
            .contains("below min_shards"));
        assert!(error("remote_write:\n  - url: http://x/\n    queue_config: {max_samples_per_send: 0}\n")
            .contains("positive"));
        assert!(error("remote_write:\n  - url: http://x/\n    queue_config: {shards: 2}\n").contains("unknown field"));
        assert!(error("remote_write:\n  - url: http://x/\n    name: 'a/b'\n").contains("may hold only"));
        assert!(error(
            "remote_write:\n  - url: http://x/\n    basic_auth: {username: u}\n    authorization: {credentials: c}\n"
        )
        .contains("at most one"));
    }
}
