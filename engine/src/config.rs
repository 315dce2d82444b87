//! Configuration: Prometheus' YAML format (config/config.go), the subset the engine implements,
//! plus the embedded default that lets the server start with no file.
//!
//! Invariants of a parsed [`Config`]: every value is resolved (a job's interval and timeout are
//! set, inheriting from `global`), every timeout is at most its interval, job names are unique,
//! targets are `host:port`. Unknown keys and bad values are errors naming the key and its line;
//! keys Prometheus knows but the engine does not implement yet are errors saying so, never
//! silently ignored.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer};
use serde::Deserialize;

use crate::relabel::{self, RawRelabelConfig, RelabelConfig};

mod alert_manager;
mod alerting;
mod frontend;
mod remote_read;
mod remote_write;

pub use alert_manager::{AlertManagerSection, AlertManagerSource};
pub(crate) use alerting::base64_decode;
pub use alerting::{AlertingConfig, AlertmanagerConfig};
pub use frontend::FrontendSection;
pub use remote_read::RemoteReadConfig;
pub use remote_write::{QueueConfig, RemoteWriteConfig};

/// Prometheus' default scrape interval.
const SCRAPE_INTERVAL_MS_DEFAULT: i64 = 60_000;
/// Prometheus' default scrape timeout.
const SCRAPE_TIMEOUT_MS_DEFAULT: i64 = 10_000;
/// Prometheus' default rule evaluation interval.
const EVALUATION_INTERVAL_MS_DEFAULT: i64 = 60_000;

/// A resolved configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Global settings.
    pub global: GlobalConfig,
    /// Scrape jobs.
    pub scrape_configs: Vec<ScrapeConfig>,
    /// The `storage.tsdb` section (the design documents' keys); unset keys keep the flags' values.
    pub storage: StorageConfig,
    /// `rule_files` patterns as written (resolved against the config file's directory by
    /// `rules::file::resolve_rule_files`).
    pub rule_files: Vec<String>,
    /// The `alerting` section: where the notifier sends alerts.
    pub alerting: AlertingConfig,
    /// The `alert_manager` section: the embedded alert manager, when present.
    pub alert_manager: Option<AlertManagerSection>,
    /// The `frontend` section: the query frontend run inside the server, when present.
    pub frontend: Option<FrontendSection>,
    /// The `remote_write` section: where the remote write sender ships samples.
    pub remote_write: Vec<RemoteWriteConfig>,
    /// The `remote_read` section: stores queries also read from.
    pub remote_read: Vec<RemoteReadConfig>,
    /// The YAML this was parsed from, as written (`/api/v1/status/config`).
    pub source_yaml: String,
}

/// The `storage.tsdb` and `storage.exemplars` sections.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageConfig {
    /// Largest WAL segment, bytes (`wal_segment_size: 64MB`).
    pub wal_segment_size_max: Option<u64>,
    /// Most series in the head (`max_series`).
    pub series_count_max: Option<u64>,
    /// WAL record compression (`compression`: none, snappy, zstd or lz4).
    pub wal_compression: Option<String>,
    /// Skip the data directory's lock file (`no_lockfile`).
    pub no_lockfile: Option<bool>,
    /// How long blocks are kept (`retention: 15d`, or Prometheus 3's `retention: {time: 15d}`).
    pub retention_duration_ms: Option<i64>,
    /// How many bytes blocks, WAL and head chunks may take (`retention_size: 512MB`, or
    /// `retention: {size: 512MB}`).
    pub retention_size_bytes: Option<u64>,
    /// The head's block range, the first compaction level (`min_block_duration: 2h`).
    pub block_duration_min_ms: Option<i64>,
    /// The longest compacted block (`max_block_duration: 36h`).
    pub block_duration_max_ms: Option<i64>,
    /// `storage.exemplars.max_exemplars`: exemplars kept in memory over all series (0: none kept).
    pub exemplar_count_max: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            wal_segment_size_max: None,
            series_count_max: None,
            wal_compression: None,
            no_lockfile: None,
            retention_duration_ms: None,
            retention_size_bytes: None,
            block_duration_min_ms: None,
            block_duration_max_ms: None,
            exemplar_count_max: crate::exemplars::EXEMPLAR_COUNT_MAX_DEFAULT,
        }
    }
}

/// The `global` section.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalConfig {
    /// Default scrape interval.
    pub scrape_interval_ms: i64,
    /// Default scrape timeout.
    pub scrape_timeout_ms: i64,
    /// Rule evaluation interval.
    pub evaluation_interval_ms: i64,
    /// `rule_query_offset`: how far before the evaluation time rules query (default 0).
    pub rule_query_offset_ms: i64,
    /// Labels attached to data leaving the engine; also seed the scrape phase.
    pub external_labels: BTreeMap<String, String>,
    /// Scrape limits every job inherits unless it sets its own (0: none).
    pub limits: ScrapeLimitConfig,
}

/// The scrape limits of the global section (each 0 for no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScrapeLimitConfig {
    /// `body_size_limit`, bytes.
    pub body_size_limit: u64,
    /// `sample_limit`.
    pub sample_limit: u64,
    /// `label_limit`.
    pub label_limit: u64,
    /// `label_name_length_limit`, bytes.
    pub label_name_length_limit: u64,
    /// `label_value_length_limit`, bytes.
    pub label_value_length_limit: u64,
}

/// One scrape job.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapeConfig {
    /// `job` label value.
    pub job_name: String,
    /// Time between scrapes.
    pub scrape_interval_ms: i64,
    /// Longest one scrape may take.
    pub scrape_timeout_ms: i64,
    /// URL path of the metrics page.
    pub metrics_path: String,
    /// Keep scraped labels that clash with target labels.
    pub honor_labels: bool,
    /// Use timestamps present in the body.
    pub honor_timestamps: bool,
    /// Most samples per scrape; 0 for no limit.
    pub sample_limit: u64,
    /// Largest uncompressed body, bytes; 0 for no limit (the server-wide bound still applies).
    pub body_size_limit: u64,
    /// Most labels per series; 0 for no limit.
    pub label_limit: u64,
    /// Longest label name, bytes; 0 for no limit.
    pub label_name_length_limit: u64,
    /// Longest label value, bytes; 0 for no limit.
    pub label_value_length_limit: u64,
    /// Static targets.
    pub static_configs: Vec<StaticConfig>,
    /// `relabel_configs`: applied to each target's labels before it is scraped.
    pub relabel_configs: Vec<RelabelConfig>,
    /// `metric_relabel_configs`: applied to each scraped sample's final labels.
    pub metric_relabel_configs: Vec<RelabelConfig>,
    /// `params`: query parameters of the scrape URL (`__param_<name>` labels override the first
    /// value of each).
    pub params: BTreeMap<String, Vec<String>>,
}

/// One `static_configs` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct StaticConfig {
    /// `host:port` addresses.
    pub targets: Vec<String>,
    /// Labels added to every series of these targets.
    pub labels: BTreeMap<String, String>,
}

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    /// The YAML does not parse or does not fit the schema (unknown key, bad value).
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A key Prometheus knows that the engine does not implement yet.
    #[error("line {line}: `{key}` is not supported yet")]
    Unsupported {
        /// The key.
        key: String,
        /// 1-based line (0 when it could not be located).
        line: usize,
    },
    /// Values that parse but do not fit together.
    #[error("{path}: {message}")]
    Invalid {
        /// Where, e.g. `scrape_configs[1] (job "node")`.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The embedded default: scrape the server itself (`self_target`, e.g. `localhost:9090`) every 5 s.
pub fn default_config_yaml(self_target: &str) -> String {
    format!(
        "# Embedded default configuration: the engine scrapes its own /metrics.\n\
         global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n\
         scrape_configs:\n  - job_name: engine\n    static_configs:\n      - targets: ['{self_target}']\n"
    )
}

/// Parses and validates a configuration file's text.
pub fn parse(yaml: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = if yaml.trim().is_empty() {
        RawConfig::default()
    } else {
        serde_yaml_ng::from_str::<Option<RawConfig>>(yaml).map_err(syntax_error)?.unwrap_or_default()
    };
    reject_unsupported(yaml, &raw.unsupported_keys())?;
    reject_unsupported(yaml, &raw.global.unsupported_keys())?;
    reject_unsupported(yaml, &raw.storage.unsupported_keys())?;
    reject_unsupported(yaml, &raw.storage.tsdb.unsupported_keys())?;
    reject_unsupported(yaml, &raw.storage.exemplars.unsupported_keys())?;
    for job in &raw.scrape_configs {
        reject_unsupported(yaml, &job.unsupported_keys())?;
    }
    let mut config = resolve(raw)?;
    config.source_yaml = yaml.to_string();
    Ok(config)
}

impl Config {
    /// One line for `enginectl check config`.
    pub fn summary(&self) -> String {
        let target_count: usize =
            self.scrape_configs.iter().flat_map(|job| &job.static_configs).map(|config| config.targets.len()).sum();
        let jobs: Vec<String> = self
            .scrape_configs
            .iter()
            .map(|job| format!("{} every {}", job.job_name, format_duration_ms(job.scrape_interval_ms)))
            .collect();
        format!("{} scrape configs, {target_count} targets ({})", self.scrape_configs.len(), jobs.join(", "))
    }
}

fn syntax_error(error: serde_yaml_ng::Error) -> ConfigError {
    let (line, column) = error.location().map(|location| (location.line(), location.column())).unwrap_or((0, 0));
    let message = error.to_string();
    // serde_yaml_ng appends " at line L column C"; the location is reported separately.
    let message = match message.rfind(" at line ") {
        Some(index) => message[..index].to_string(),
        None => message,
    };
    ConfigError::Syntax { line, column, message }
}

fn reject_unsupported(yaml: &str, keys: &[&'static str]) -> Result<(), ConfigError> {
    match keys.first() {
        None => Ok(()),
        Some(key) => Err(ConfigError::Unsupported { key: key.to_string(), line: find_key_line(yaml, key) }),
    }
}

/// Line of the first `key:` in key position (after indentation and an optional list dash).
fn find_key_line(yaml: &str, key: &str) -> usize {
    yaml.lines()
        .position(|line| {
            let trimmed = line.trim_start().trim_start_matches("- ").trim_start();
            trimmed.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .map_or(0, |index| index + 1)
}

fn resolve(raw: RawConfig) -> Result<Config, ConfigError> {
    let scrape_interval_ms = raw.global.scrape_interval.map_or(SCRAPE_INTERVAL_MS_DEFAULT, |duration| duration.0);
    // As Prometheus (GlobalConfig.UnmarshalYAML): an unset timeout defaults to 10 s, capped at
    // the interval; only an explicit timeout longer than the interval is an error.
    let scrape_timeout_ms =
        raw.global.scrape_timeout.map_or(SCRAPE_TIMEOUT_MS_DEFAULT.min(scrape_interval_ms), |duration| duration.0);
    if scrape_timeout_ms > scrape_interval_ms {
        return Err(ConfigError::Invalid {
            path: "global".to_string(),
            message: "global scrape timeout greater than scrape interval".to_string(),
        });
    }
    let global = GlobalConfig {
        scrape_interval_ms,
        scrape_timeout_ms,
        evaluation_interval_ms: raw.global.evaluation_interval.map_or(EVALUATION_INTERVAL_MS_DEFAULT, |d| d.0),
        rule_query_offset_ms: raw.global.rule_query_offset.map_or(0, |d| d.0),
        external_labels: raw.global.external_labels.unwrap_or_default().into_iter().map(|(n, v)| (n.0, v)).collect(),
        limits: ScrapeLimitConfig {
            body_size_limit: raw.global.body_size_limit.map_or(0, |size| size.0),
            sample_limit: raw.global.sample_limit.unwrap_or(0),
            label_limit: raw.global.label_limit.unwrap_or(0),
            label_name_length_limit: raw.global.label_name_length_limit.unwrap_or(0),
            label_value_length_limit: raw.global.label_value_length_limit.unwrap_or(0),
        },
    };
    let mut scrape_configs: Vec<ScrapeConfig> = Vec::new();
    for (index, job) in raw.scrape_configs.into_iter().enumerate() {
        let path = format!("scrape_configs[{index}] (job {:?})", job.job_name);
        let invalid = |message: String| ConfigError::Invalid { path: path.clone(), message };
        if job.job_name.is_empty() {
            return Err(invalid("job_name must not be empty".to_string()));
        }
        if scrape_configs.iter().any(|existing| existing.job_name == job.job_name) {
            return Err(invalid(format!("found multiple scrape configs with job name {:?}", job.job_name)));
        }
        let interval_ms = job.scrape_interval.map_or(global.scrape_interval_ms, |duration| duration.0);
        // As Prometheus: an unset timeout inherits the global one, capped at the job's interval.
        let timeout_ms = match job.scrape_timeout {
            Some(duration) => duration.0,
            None => global.scrape_timeout_ms.min(interval_ms),
        };
        if timeout_ms > interval_ms {
            return Err(invalid(format!(
                "scrape timeout greater than scrape interval for scrape config with job name {:?}",
                job.job_name
            )));
        }
        let metrics_path = job.metrics_path.unwrap_or_else(|| "/metrics".to_string());
        if !metrics_path.starts_with('/') {
            return Err(invalid(format!("metrics_path {metrics_path:?} must start with '/'")));
        }
        match job.scheme.as_deref() {
            None | Some("http") => {}
            Some("https") => return Err(invalid("scheme https is not supported yet".to_string())),
            Some(other) => return Err(invalid(format!("unknown scheme {other:?}, expected http"))),
        }
        // As alerting's relabel lists: the error names the job, the list and the rule's index.
        let relabel_list = |key: &str, raw: Option<Vec<RawRelabelConfig>>| {
            relabel::from_raw_list(&raw.unwrap_or_default())
                .map_err(|message| ConfigError::Invalid { path: format!("{path}.{key}"), message })
        };
        let relabel_configs = relabel_list("relabel_configs", job.relabel_configs)?;
        let metric_relabel_configs = relabel_list("metric_relabel_configs", job.metric_relabel_configs)?;
        scrape_configs.push(ScrapeConfig {
            job_name: job.job_name,
            scrape_interval_ms: interval_ms,
            scrape_timeout_ms: timeout_ms,
            metrics_path,
            honor_labels: job.honor_labels.unwrap_or(false),
            honor_timestamps: job.honor_timestamps.unwrap_or(true),
            // As Prometheus: a job's own limit, else the global one.
            sample_limit: job.sample_limit.unwrap_or(global.limits.sample_limit),
            body_size_limit: job.body_size_limit.map_or(global.limits.body_size_limit, |size| size.0),
            label_limit: job.label_limit.unwrap_or(global.limits.label_limit),
            label_name_length_limit: job.label_name_length_limit.unwrap_or(global.limits.label_name_length_limit),
            label_value_length_limit: job.label_value_length_limit.unwrap_or(global.limits.label_value_length_limit),
            static_configs: job
                .static_configs
                .unwrap_or_default()
                .into_iter()
                .map(|config| StaticConfig {
                    targets: config.targets.into_iter().map(|target| target.0).collect(),
                    labels: config.labels.unwrap_or_default().into_iter().map(|(n, v)| (n.0, v)).collect(),
                })
                .collect(),
            relabel_configs,
            metric_relabel_configs,
            params: job.params.unwrap_or_default(),
        });
    }
    let tsdb = raw.storage.tsdb;
    if tsdb.max_series == Some(0) {
        return Err(ConfigError::Invalid {
            path: "storage.tsdb".to_string(),
            message: "max_series must be positive".to_string(),
        });
    }
    if let Some(name) = &tsdb.compression {
        if !["none", "snappy", "zstd", "lz4"].contains(&name.as_str()) {
            return Err(ConfigError::Invalid {
                path: "storage.tsdb".to_string(),
                message: format!("compression {name:?} is not one of none, snappy, zstd, lz4"),
            });
        }
    }
    let retention = tsdb.retention.unwrap_or_default();
    if retention.size.is_some() && tsdb.retention_size.is_some() {
        return Err(ConfigError::Invalid {
            path: "storage.tsdb".to_string(),
            message: "retention size is set twice (retention.size and retention_size); keep one".to_string(),
        });
    }
    let retention_size_bytes = retention.size.or(tsdb.retention_size).map(|size| size.0);
    if retention_size_bytes == Some(0) {
        return Err(ConfigError::Invalid {
            path: "storage.tsdb".to_string(),
            message: "retention size must be greater than zero".to_string(),
        });
    }
    let block_duration_min_ms = tsdb.min_block_duration.map(|duration| duration.0);
    let block_duration_max_ms = tsdb.max_block_duration.map(|duration| duration.0);
    if let Some(max_ms) = block_duration_max_ms {
        // Prometheus would silently raise the maximum to the minimum; a typo deserves an error.
        let min_ms = block_duration_min_ms.unwrap_or(crate::limits::BLOCK_RANGE_MS_DEFAULT);
        if max_ms < min_ms {
            return Err(ConfigError::Invalid {
                path: "storage.tsdb".to_string(),
                message: format!(
                    "max_block_duration {} is shorter than min_block_duration {}",
                    format_duration_ms(max_ms),
                    format_duration_ms(min_ms)
                ),
            });
        }
    }
    let storage = StorageConfig {
        wal_segment_size_max: tsdb.wal_segment_size.map(|size| size.0),
        series_count_max: tsdb.max_series,
        wal_compression: tsdb.compression,
        no_lockfile: tsdb.no_lockfile,
        retention_duration_ms: retention.time.map(|duration| duration.0),
        retention_size_bytes,
        block_duration_min_ms,
        block_duration_max_ms,
        exemplar_count_max: raw
            .storage
            .exemplars
            .max_exemplars
            .map_or(crate::exemplars::EXEMPLAR_COUNT_MAX_DEFAULT, |count| usize::try_from(count).unwrap_or(usize::MAX)),
    };
    let alerting = alerting::resolve(raw.alerting)?;
    let alert_manager = alert_manager::resolve(raw.alert_manager)?;
    let frontend = frontend::resolve(raw.frontend)?;
    let remote_write = remote_write::resolve(raw.remote_write)?;
    let remote_read = remote_read::resolve(raw.remote_read)?;
    Ok(Config {
        global,
        scrape_configs,
        storage,
        rule_files: raw.rule_files,
        alerting,
        alert_manager,
        frontend,
        remote_write,
        remote_read,
        source_yaml: String::new(),
    })
}

/// Parses a Prometheus duration (`1h30m`, `500ms`, `0`) into milliseconds
/// (common/model `ParseDuration`: units y, w, d, h, m, s, ms, each at most once, largest first).
pub fn parse_duration_ms(text: &str) -> Result<i64, String> {
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 24 * 3_600_000),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ];
    let invalid = || format!("not a valid duration string: {text:?} (expected e.g. 15s, 1m30s, 500ms)");
    if text == "0" {
        return Ok(0);
    }
    if text.is_empty() {
        return Err(invalid());
    }
    let mut rest = text;
    let mut total_ms: i64 = 0;
    let mut next_unit_index = 0;
    while !rest.is_empty() {
        let digit_count = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digit_count == 0 {
            return Err(invalid());
        }
        let number: i64 = rest[..digit_count].parse().map_err(|_| invalid())?;
        rest = &rest[digit_count..];
        // "ms" must be tried before "m".
        let unit_index = (next_unit_index..UNITS.len())
            .filter(|&index| rest.starts_with(UNITS[index].0))
            .max_by_key(|&index| UNITS[index].0.len())
            .ok_or_else(invalid)?;
        let (unit, unit_ms) = UNITS[unit_index];
        rest = &rest[unit.len()..];
        total_ms = number.checked_mul(unit_ms).and_then(|ms| total_ms.checked_add(ms)).ok_or_else(invalid)?;
        next_unit_index = unit_index + 1;
    }
    Ok(total_ms)
}

/// Formats milliseconds as Prometheus does (`1m30s`, `0s`; common/model `Duration.String`:
/// years and weeks only when they divide the duration exactly, so 90 days is `90d`, not `12w6d`).
pub fn format_duration_ms(duration_ms: i64) -> String {
    if duration_ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    let mut rest_ms = duration_ms.unsigned_abs();
    if duration_ms < 0 {
        out.push('-');
    }
    for (unit, unit_ms) in [
        ("y", 31_536_000_000_u64),
        ("w", 604_800_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ] {
        let exact_only = unit == "y" || unit == "w";
        if exact_only && !rest_ms.is_multiple_of(unit_ms) {
            continue;
        }
        if rest_ms >= unit_ms {
            out.push_str(&format!("{}{unit}", rest_ms / unit_ms));
            rest_ms %= unit_ms;
        }
    }
    out
}

// ---- Raw (as written) forms. deny_unknown_fields gives unknown keys an error with their line.

#[derive(Clone, Copy, Debug, PartialEq)]
struct DurationMs(i64);

/// A size such as `64MB` (Prometheus `units.Base2Bytes`: B, KB, MB, GB, TB, PB, EB; powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq)]
struct SizeBytes(u64);

impl<'de> Deserialize<'de> for SizeBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_str(CheckedStr { expecting: "a size such as 64MB", check: parse_size_bytes })
            .map(SizeBytes)
    }
}

/// Parses `64MB`-style sizes into bytes (units are powers of 1024, as Prometheus' flags).
pub fn parse_size_bytes(text: &str) -> Result<u64, String> {
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let number: u64 = number.parse().map_err(|_| format!("not a size: {text:?}"))?;
    let shift = match unit {
        "" | "B" => 0,
        "KB" | "KiB" => 10,
        "MB" | "MiB" => 20,
        "GB" | "GiB" => 30,
        "TB" | "TiB" => 40,
        "PB" | "PiB" => 50,
        "EB" | "EiB" => 60,
        _ => return Err(format!("unknown size unit {unit:?} in {text:?}")),
    };
    number.checked_mul(1_u64 << shift).ok_or_else(|| format!("size {text:?} is too large"))
}

impl<'de> Deserialize<'de> for DurationMs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_str(CheckedStr { expecting: "a duration such as 15s", check: check_duration })
            .map(DurationMs)
    }
}

/// Validates a string inside the deserializer, so serde_yaml_ng reports the error with the
/// value's full key path and position (an error raised after deserializing would only name the
/// enclosing section).
struct CheckedStr<T> {
    expecting: &'static str,
    check: fn(&str) -> Result<T, String>,
}

impl<'de, T> de::Visitor<'de> for CheckedStr<T> {
    type Value = T;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        (self.check)(text).map_err(E::custom)
    }
}

fn check_duration(text: &str) -> Result<i64, String> {
    match parse_duration_ms(text)? {
        0 => Err(format!("duration {text:?} must be greater than zero")),
        duration_ms => Ok(duration_ms),
    }
}

/// A label name: `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct LabelName(String);

impl<'de> Deserialize<'de> for LabelName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(CheckedStr { expecting: "a label name", check: check_label_name }).map(LabelName)
    }
}

fn check_label_name(name: &str) -> Result<String, String> {
    let valid = name.bytes().next().is_some_and(|byte| byte.is_ascii_alphabetic() || byte == b'_')
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_');
    if !valid {
        return Err(format!("{name:?} is not a valid label name"));
    }
    if name.starts_with("__") {
        return Err(format!("label name {name:?} is reserved (starts with __)"));
    }
    Ok(name.to_string())
}

/// A scrape target, `host:port`.
#[derive(Clone, Debug, PartialEq)]
struct TargetAddress(String);

impl<'de> Deserialize<'de> for TargetAddress {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_str(CheckedStr { expecting: "a host:port target", check: check_target })
            .map(TargetAddress)
    }
}

fn check_target(address: &str) -> Result<String, String> {
    let invalid = |why: &str| format!("target {address:?} {why}; expected host:port");
    let (host, port) = address.rsplit_once(':').ok_or_else(|| invalid("has no port"))?;
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner.strip_suffix(']').is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        !host.is_empty() && !host.contains(['/', ' ', '[', ']', ':'])
    };
    if !host_ok {
        return Err(invalid("has an invalid host"));
    }
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(address.to_string()),
        _ => Err(invalid("has an invalid port")),
    }
}

/// Declares a raw section: typed keys, plus keys Prometheus has that are not implemented yet.
macro_rules! raw_section {
    ($name:ident { $($field:ident : $type:ty),* $(,)? } unsupported { $($unsupported:ident),* $(,)? }) => {
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct $name {
            $( #[serde(default)] $field: $type, )*
            $( #[serde(default)] $unsupported: Option<serde_yaml_ng::Value>, )*
        }

        impl $name {
            fn unsupported_keys(&self) -> Vec<&'static str> {
                #[allow(unused_mut)] // A section without unsupported keys.
                let mut keys = Vec::new();
                $( if self.$unsupported.is_some() { keys.push(stringify!($unsupported)); } )*
                keys
            }
        }
    };
}

raw_section!(RawConfig {
    global: RawGlobal,
    scrape_configs: Vec<RawScrapeConfig>,
    storage: RawStorage,
    rule_files: Vec<String>,
    alerting: alerting::RawAlerting,
    alert_manager: Option<alert_manager::RawAlertManagerSection>,
    frontend: Option<frontend::RawFrontendSection>,
    remote_write: Vec<remote_write::RawRemoteWrite>,
    remote_read: Vec<remote_read::RawRemoteRead>,
} unsupported {
    scrape_config_files, tracing, otlp, runtime,
});

raw_section!(RawStorage {
    tsdb: RawTsdb,
    exemplars: RawExemplars,
} unsupported {
});

raw_section!(RawExemplars {
    max_exemplars: Option<u64>,
} unsupported {
});

raw_section!(RawTsdb {
    wal_segment_size: Option<SizeBytes>,
    max_series: Option<u64>,
    compression: Option<String>,
    no_lockfile: Option<bool>,
    retention: Option<RawRetention>,
    retention_size: Option<SizeBytes>,
    min_block_duration: Option<DurationMs>,
    max_block_duration: Option<DurationMs>,
} unsupported {
    out_of_order_time_window,
});

/// `retention`: a duration (the design documents' `retention: 15d`) or Prometheus 3's map
/// `retention: {time: 15d, size: 512MB}`.
#[derive(Debug, Default)]
struct RawRetention {
    time: Option<DurationMs>,
    size: Option<SizeBytes>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetentionMap {
    #[serde(default)]
    time: Option<DurationMs>,
    #[serde(default)]
    size: Option<SizeBytes>,
}

impl<'de> Deserialize<'de> for RawRetention {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RetentionVisitor;

        impl<'de> de::Visitor<'de> for RetentionVisitor {
            type Value = RawRetention;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a duration such as 15d, or a map with `time` and `size`")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<RawRetention, E> {
                let time_ms = check_duration(text).map_err(E::custom)?;
                Ok(RawRetention { time: Some(DurationMs(time_ms)), size: None })
            }

            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<RawRetention, A::Error> {
                let raw = RawRetentionMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawRetention { time: raw.time, size: raw.size })
            }
        }

        deserializer.deserialize_any(RetentionVisitor)
    }
}

raw_section!(RawGlobal {
    scrape_interval: Option<DurationMs>,
    scrape_timeout: Option<DurationMs>,
    evaluation_interval: Option<DurationMs>,
    external_labels: Option<BTreeMap<LabelName, String>>,
    body_size_limit: Option<SizeBytes>,
    sample_limit: Option<u64>,
    label_limit: Option<u64>,
    label_name_length_limit: Option<u64>,
    label_value_length_limit: Option<u64>,
    rule_query_offset: Option<DurationMs>,
} unsupported {
    query_log_file, scrape_failure_log_file, scrape_protocols, target_limit, keep_dropped_targets,
    metric_name_validation_scheme,
});

raw_section!(RawScrapeConfig {
    job_name: String,
    scrape_interval: Option<DurationMs>,
    scrape_timeout: Option<DurationMs>,
    metrics_path: Option<String>,
    scheme: Option<String>,
    honor_labels: Option<bool>,
    honor_timestamps: Option<bool>,
    sample_limit: Option<u64>,
    body_size_limit: Option<SizeBytes>,
    label_limit: Option<u64>,
    label_name_length_limit: Option<u64>,
    label_value_length_limit: Option<u64>,
    static_configs: Option<Vec<RawStaticConfig>>,
    relabel_configs: Option<Vec<RawRelabelConfig>>,
    metric_relabel_configs: Option<Vec<RawRelabelConfig>>,
    params: Option<BTreeMap<String, Vec<String>>>,
} unsupported {
    basic_auth, authorization, oauth2, tls_config, proxy_url, no_proxy, proxy_from_environment,
    proxy_connect_header, follow_redirects, enable_http2, target_limit,
    keep_dropped_targets, scrape_protocols, scrape_classic_histograms, track_timestamps_staleness,
    native_histogram_bucket_limit, native_histogram_min_bucket_factor, enable_compression,
    file_sd_configs, kubernetes_sd_configs, consul_sd_configs, dns_sd_configs, ec2_sd_configs,
    http_sd_configs, azure_sd_configs, gce_sd_configs, openstack_sd_configs, docker_sd_configs,
    dockerswarm_sd_configs, nomad_sd_configs, marathon_sd_configs, serverset_sd_configs,
    digitalocean_sd_configs, hetzner_sd_configs, linode_sd_configs, scaleway_sd_configs, eureka_sd_configs,
    kuma_sd_configs, lightsail_sd_configs, ionos_sd_configs, puppetdb_sd_configs, triton_sd_configs,
    uyuni_sd_configs, vultr_sd_configs, nerve_sd_configs,
});

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStaticConfig {
    #[serde(default)]
    targets: Vec<TargetAddress>,
    #[serde(default)]
    labels: Option<BTreeMap<LabelName, String>>,
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[track_caller]
    fn check_error(yaml: &str, line: usize, message_parts: &[&str]) {
        let error = parse(yaml).expect_err(yaml);
        let text = error.to_string();
        assert!(text.starts_with(&format!("line {line}")), "wrong line in {text:?}");
        for part in message_parts {
            assert!(text.contains(part), "{text:?} lacks {part:?}");
        }
    }

    #[track_caller]
    fn check_invalid(yaml: &str, message_parts: &[&str]) {
        let error = parse(yaml).expect_err(yaml);
        assert!(matches!(error, ConfigError::Invalid { .. }), "{error:?}");
        for part in message_parts {
            assert!(error.to_string().contains(part), "{error} lacks {part:?}");
        }
    }

    const EXAMPLE: &str = "
global:
  scrape_interval: 15s
  evaluation_interval: 30s
  external_labels:
    replica: a
scrape_configs:
  - job_name: node
    scrape_interval: 1m30s
    scrape_timeout: 20s
    metrics_path: /probe
    honor_labels: true
    sample_limit: 1000
    static_configs:
      - targets: ['127.0.0.1:9100', '[::1]:9100']
        labels:
          env: dev
  - job_name: self
    static_configs:
      - targets: [localhost:9090]
";

    #[test]
    fn example_resolves_with_inheritance() {
        let config = parse(EXAMPLE).unwrap();
        assert_eq!(config.global.scrape_interval_ms, 15_000);
        assert_eq!(config.global.scrape_timeout_ms, 10_000);
        assert_eq!(config.global.evaluation_interval_ms, 30_000);
        assert_eq!(config.global.external_labels.get("replica").map(String::as_str), Some("a"));
        let node = &config.scrape_configs[0];
        assert_eq!((node.scrape_interval_ms, node.scrape_timeout_ms), (90_000, 20_000));
        assert_eq!(node.metrics_path, "/probe");
        assert!(node.honor_labels && node.honor_timestamps);
        assert_eq!(node.sample_limit, 1000);
        assert_eq!(node.static_configs[0].targets, vec!["127.0.0.1:9100", "[::1]:9100"]);
        assert_eq!(node.static_configs[0].labels.get("env").map(String::as_str), Some("dev"));
        let own = &config.scrape_configs[1];
        assert_eq!(
            (own.scrape_interval_ms, own.scrape_timeout_ms, own.metrics_path.as_str()),
            (15_000, 10_000, "/metrics")
        );
        assert_eq!(config.summary(), "2 scrape configs, 3 targets (node every 1m30s, self every 15s)");
    }

    #[test]
    fn scrape_limits_are_inherited_from_global_unless_a_job_sets_them() {
        let yaml = "
global:
  body_size_limit: 10MB
  sample_limit: 500
  label_limit: 30
  label_name_length_limit: 100
  label_value_length_limit: 200
scrape_configs:
  - job_name: inherits
    static_configs: [{targets: ['a:1']}]
  - job_name: own
    body_size_limit: 1KB
    sample_limit: 0
    label_limit: 5
    label_name_length_limit: 10
    label_value_length_limit: 20
    static_configs: [{targets: ['b:1']}]
";
        let config = parse(yaml).unwrap();
        let limits = |job: &ScrapeConfig| {
            (
                job.body_size_limit,
                job.sample_limit,
                job.label_limit,
                job.label_name_length_limit,
                job.label_value_length_limit,
            )
        };
        assert_eq!(limits(&config.scrape_configs[0]), (10 << 20, 500, 30, 100, 200));
        assert_eq!(limits(&config.scrape_configs[1]), (1 << 10, 0, 5, 10, 20), "an explicit 0 lifts the limit");
        let unlimited = parse("scrape_configs:\n  - job_name: a\n").unwrap();
        assert_eq!(limits(&unlimited.scrape_configs[0]), (0, 0, 0, 0, 0));
        assert!(parse("global:\n  body_size_limit: lots\n").is_err());
    }

    #[test]
    fn empty_and_default_configs() {
        for yaml in ["", "{}", "\n# nothing\n"] {
            let config = parse(yaml).unwrap();
            assert_eq!(config.global.scrape_interval_ms, 60_000);
            assert!(config.scrape_configs.is_empty());
        }
        let config = parse(&default_config_yaml("localhost:9090")).unwrap();
        assert_eq!(config.scrape_configs.len(), 1);
        assert_eq!(config.scrape_configs[0].job_name, "engine");
        assert_eq!(config.scrape_configs[0].scrape_interval_ms, 5000);
        assert_eq!(config.scrape_configs[0].static_configs[0].targets, vec!["localhost:9090"]);
    }

    #[test]
    fn timeout_is_capped_at_a_short_job_interval() {
        let config = parse("scrape_configs:\n  - job_name: fast\n    scrape_interval: 1s\n").unwrap();
        assert_eq!(config.scrape_configs[0].scrape_timeout_ms, 1000);
    }

    #[test]
    fn errors_name_key_and_line() {
        check_error("global:\n  scrape_intreval: 5s\n", 2, &["scrape_intreval"]);
        check_error("global:\n  scrape_interval: 5x\n", 2, &["global.scrape_interval", "5x", "duration"]);
        check_error("global:\n  scrape_interval: 0s\n", 2, &["global.scrape_interval", "greater than zero"]);
        check_error(
            "scrape_configs:\n  - job_name: a\n    static_configs:\n      - targets: ['nohost']\n",
            4,
            &["nohost", "host:port"],
        );
        check_error(
            "scrape_configs:\n  - job_name: a\n    static_configs:\n      - targets: ['h:99999']\n",
            4,
            &["invalid port"],
        );
        check_error(
            "scrape_configs:\n  - job_name: a\n    static_configs:\n      - labels: {1bad: x}\n",
            4,
            &["1bad", "label name"],
        );
        check_error("global:\n  external_labels:\n    __x: y\n", 3, &["reserved"]);
        check_error("scrape_configs:\n  - job_name: a\n    honor_labels: maybe\n", 3, &["honor_labels", "boolean"]);
        check_error("global: [1, 2\n", 1, &[]);
        check_error("tracing:\n  endpoint: x\n", 1, &["`tracing` is not supported yet"]);
        let config = parse("global:\n  rule_query_offset: 30s\nrule_files:\n  - a.yml\n  - 'r/*.yml'\n").unwrap();
        assert_eq!(config.rule_files, ["a.yml", "r/*.yml"]);
        assert_eq!(config.global.rule_query_offset_ms, 30_000);
        check_error(
            "scrape_configs:\n  - job_name: a\n\n    basic_auth: {username: x}\n",
            4,
            &["`basic_auth` is not supported yet"],
        );
    }

    #[test]
    fn params_and_max_exemplars_are_read() {
        let config = parse(
            "storage:\n  exemplars:\n    max_exemplars: 7\nscrape_configs:\n  - job_name: a\n    params: {module: [if_mib, x], b: []}\n",
        )
        .unwrap();
        assert_eq!(config.storage.exemplar_count_max, 7);
        let params = &config.scrape_configs[0].params;
        assert_eq!(params["module"], ["if_mib", "x"]);
        assert!(params["b"].is_empty());
        assert_eq!(parse("").unwrap().storage.exemplar_count_max, 100_000, "Prometheus' default");
        check_error("storage:\n  exemplars:\n    max_exemplars: -1\n", 3, &["max_exemplars"]);
        check_error("scrape_configs:\n  - job_name: a\n    params: {module: x}\n", 3, &["params"]);
    }

    #[test]
    fn invalid_combinations_name_the_job() {
        check_invalid(
            "scrape_configs:\n  - job_name: a\n  - job_name: a\n",
            &["scrape_configs[1]", "multiple scrape configs"],
        );
        check_invalid("scrape_configs:\n  - job_name: ''\n", &["must not be empty"]);
        check_invalid(
            "scrape_configs:\n  - job_name: a\n    scrape_interval: 5s\n    scrape_timeout: 10s\n",
            &["job \"a\"", "scrape timeout greater than scrape interval"],
        );
        check_invalid("scrape_configs:\n  - job_name: a\n    scheme: https\n", &["https is not supported yet"]);
        check_invalid("scrape_configs:\n  - job_name: a\n    metrics_path: metrics\n", &["must start with '/'"]);
        check_invalid("global:\n  scrape_interval: 5s\n  scrape_timeout: 6s\n", &["global scrape timeout greater"]);
    }

    #[test]
    fn scrape_jobs_take_relabel_rules() {
        let yaml = "
scrape_configs:
  - job_name: node
    relabel_configs:
      - {source_labels: [__address__], regex: 'skip:.*', action: drop}
      - {source_labels: [__address__], regex: '(.*):9100', target_label: __address__, replacement: '${1}:9101'}
    metric_relabel_configs:
      - {source_labels: [__name__], regex: 'go_.*', action: drop}
      - {regex: replica, action: labeldrop}
  - job_name: plain
";
        let config = parse(yaml).unwrap();
        let node = &config.scrape_configs[0];
        let actions = |rules: &[RelabelConfig]| rules.iter().map(|rule| rule.action().to_string()).collect::<Vec<_>>();
        assert_eq!(actions(&node.relabel_configs), ["drop", "replace"]);
        assert_eq!(actions(&node.metric_relabel_configs), ["drop", "labeldrop"]);
        let plain = &config.scrape_configs[1];
        assert!(plain.relabel_configs.is_empty() && plain.metric_relabel_configs.is_empty());
        assert_eq!(config, parse(yaml).unwrap(), "rules compare equal when parsed twice");

        check_invalid(
            "scrape_configs:\n  - job_name: a\n  - job_name: b\n    relabel_configs:\n      - {action: explode}\n",
            &["scrape_configs[1] (job \"b\").relabel_configs", "relabel rule 0", "unknown relabel action"],
        );
        check_invalid(
            "scrape_configs:\n  - job_name: b\n    metric_relabel_configs:\n      - {regex: x, action: keep}\n      - {source_labels: [a]}\n",
            &["(job \"b\").metric_relabel_configs", "relabel rule 1", "requires 'target_label'"],
        );
        check_invalid(
            "scrape_configs:\n  - job_name: b\n    relabel_configs:\n      - {source_labels: [a], regex: '(', target_label: b}\n",
            &["(job \"b\").relabel_configs", "invalid relabel regex"],
        );
        check_error(
            "scrape_configs:\n  - job_name: b\n    relabel_configs:\n      - {sourcelabels: [a]}\n",
            4,
            &["unknown field `sourcelabels`"],
        );
    }

    #[test]
    fn node_exporter_config() {
        let yaml = "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:9100']\n";
        let config = parse(yaml).unwrap();
        assert_eq!(config.scrape_configs[0].scrape_timeout_ms, 1000);
    }

    #[test]
    fn storage_section_takes_the_design_documents_keys() {
        let config = parse("storage:\n  tsdb:\n    wal_segment_size: 64MB\n    max_series: 2000000\n    compression: lz4\n    no_lockfile: true\n").unwrap();
        assert_eq!(
            config.storage,
            StorageConfig {
                wal_segment_size_max: Some(64 << 20),
                series_count_max: Some(2_000_000),
                wal_compression: Some("lz4".to_string()),
                no_lockfile: Some(true),
                ..StorageConfig::default()
            }
        );
        check_error(
            "storage:\n  tsdb:\n    out_of_order_time_window: 1h\n",
            3,
            &["`out_of_order_time_window` is not supported yet"],
        );
        check_error("storage:\n  tsdb:\n    wal_segment_size: 64XB\n", 3, &["unknown size unit"]);
        check_error("storage:\n  tsdb:\n    colour: red\n", 3, &["unknown field `colour`"]);
        check_invalid("storage:\n  tsdb:\n    max_series: 0\n", &["max_series must be positive"]);
        check_invalid("storage:\n  tsdb:\n    compression: gzip\n", &["compression \"gzip\" is not one of"]);
        assert_eq!(parse_size_bytes("128KB"), Ok(128 << 10));
        assert_eq!(parse_size_bytes("7"), Ok(7));
        assert!(parse_size_bytes("99999999EB").is_err());
        assert!(parse_size_bytes("MB").is_err());
    }

    #[test]
    fn storage_section_takes_retention_and_block_durations() {
        #[track_caller]
        fn check(tsdb_yaml: &str, expected: (Option<i64>, Option<u64>, Option<i64>, Option<i64>)) {
            let config = parse(&format!("storage:\n  tsdb:\n{tsdb_yaml}")).expect(tsdb_yaml);
            let storage = &config.storage;
            let got = (
                storage.retention_duration_ms,
                storage.retention_size_bytes,
                storage.block_duration_min_ms,
                storage.block_duration_max_ms,
            );
            assert_eq!(got, expected, "{tsdb_yaml}");
        }
        let (h, d) = (3_600_000, 86_400_000);
        check("    retention: 15d\n", (Some(15 * d), None, None, None));
        check("    retention: 30d\n    retention_size: 512MB\n", (Some(30 * d), Some(512 << 20), None, None));
        check("    retention:\n      time: 7d\n      size: 1GB\n", (Some(7 * d), Some(1 << 30), None, None));
        check("    retention: {size: 10KB}\n", (None, Some(10 << 10), None, None));
        check("    min_block_duration: 1h\n    max_block_duration: 1d\n", (None, None, Some(h), Some(d)));
        check("    max_block_duration: 2h\n", (None, None, None, Some(2 * h)));
        check("", (None, None, None, None));

        check_error("storage:\n  tsdb:\n    retention: 15x\n", 3, &["storage.tsdb.retention", "15x"]);
        check_error("storage:\n  tsdb:\n    retention: 0s\n", 3, &["greater than zero"]);
        check_error("storage:\n  tsdb:\n    retention: 5\n", 3, &["a duration such as 15d"]);
        check_error("storage:\n  tsdb:\n    retention:\n      percentage: 5\n", 4, &["unknown field `percentage`"]);
        check_error("storage:\n  tsdb:\n    retention:\n      size: 5XB\n", 4, &["unknown size unit"]);
        check_error("storage:\n  tsdb:\n    retention_size: lots\n", 3, &["retention_size", "not a size"]);
        check_error("storage:\n  tsdb:\n    min_block_duration: 0s\n", 3, &["min_block_duration", "greater than zero"]);
        check_invalid("storage:\n  tsdb:\n    retention_size: 0B\n", &["retention size must be greater than zero"]);
        check_invalid(
            "storage:\n  tsdb:\n    retention: {size: 1GB}\n    retention_size: 2GB\n",
            &["retention size is set twice"],
        );
        check_invalid(
            "storage:\n  tsdb:\n    min_block_duration: 6h\n    max_block_duration: 3h\n",
            &["max_block_duration 3h is shorter than min_block_duration 6h"],
        );
        check_invalid("storage:\n  tsdb:\n    max_block_duration: 1h\n", &["shorter than min_block_duration 2h"]);
    }

    #[test]
    fn durations() {
        for (text, expected_ms) in [
            ("0", 0),
            ("1ms", 1),
            ("15s", 15_000),
            ("1m30s", 90_000),
            ("2h", 7_200_000),
            ("1d", 86_400_000),
            ("1w", 604_800_000),
            ("1y", 31_536_000_000),
            ("1h1m1s1ms", 3_661_001),
        ] {
            assert_eq!(parse_duration_ms(text), Ok(expected_ms), "{text}");
        }
        for text in ["", "5", "s", "1.5s", "1s1m", "1m1m", "-1s", "1 s", "1x", "99999999999999999999y"] {
            assert!(parse_duration_ms(text).is_err(), "{text:?} should be rejected");
        }
        assert_eq!(format_duration_ms(90_000), "1m30s");
        assert_eq!(format_duration_ms(0), "0s");
        assert_eq!(format_duration_ms(3_661_001), "1h1m1s1ms");
        assert_eq!(format_duration_ms(90 * 86_400_000), "90d");
        assert_eq!(format_duration_ms(14 * 86_400_000), "2w");
        assert_eq!(format_duration_ms(366 * 86_400_000), "366d");
        assert_eq!(format_duration_ms(730 * 86_400_000), "2y");
    }

    proptest! {
        #[test]
        fn duration_format_parses_back(duration_ms in 0_i64..10_000_000_000_000) {
            prop_assert_eq!(parse_duration_ms(&format_duration_ms(duration_ms)), Ok(duration_ms));
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = parse(&text);
        }
    }
}
