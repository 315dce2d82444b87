//! A scrape target: its address, URL path and the labels attached to everything scraped from it,
//! and how a configured target becomes one (Prometheus scrape/target.go `TargetsFromGroup` and
//! `PopulateLabels`): the discovered labels (`__address__`, `__scheme__`, `__metrics_path__`,
//! `__scrape_interval__`, `__scrape_timeout__`, `job`, the static labels) go through the job's
//! `relabel_configs`; the result names where, how often and with which labels to scrape, or that
//! the target is dropped.
//!
//! Invariant of a populated [`Target`]: its address is non-empty and holds no `/`, its path
//! starts with `/`, its labels have an `instance` and none starting with `__`.

use std::collections::BTreeMap;

use crate::config::{format_duration_ms, parse_duration_ms, ScrapeConfig};
use crate::io::rng::fnv1a_64;
use crate::model::Labels;
use crate::relabel;

/// Label names Prometheus gives a target before relabeling (common/model `labels.go`).
pub const ADDRESS_LABEL: &str = "__address__";
/// The scheme; only `http` is scraped.
pub const SCHEME_LABEL: &str = "__scheme__";
/// The URL path.
pub const METRICS_PATH_LABEL: &str = "__metrics_path__";
/// The scrape interval, as a Prometheus duration.
pub const SCRAPE_INTERVAL_LABEL: &str = "__scrape_interval__";
/// The scrape timeout, as a Prometheus duration.
pub const SCRAPE_TIMEOUT_LABEL: &str = "__scrape_timeout__";
/// `__param_<name>`: the scrape URL's query parameter `name` (config `params`, relabeling).
pub const PARAM_LABEL_PREFIX: &str = "__param_";
/// Labels with this prefix are internal: removed from the target's labels after relabeling.
const RESERVED_LABEL_PREFIX: &str = "__";

/// One endpoint to scrape.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    /// `host:port`
    pub address: String,
    /// URL path, e.g. `/metrics`, with the query (`?module=x`) when the target has `params`.
    pub metrics_path: String,
    /// `job`, `instance` and the static labels, without `__name__`.
    pub labels: Labels,
}

/// A configured target after `relabel_configs`.
#[derive(Clone, Debug, PartialEq)]
pub enum Populated {
    /// Scraped: where, with which labels, how often.
    Active {
        /// The target.
        target: Target,
        /// Its scrape interval (`__scrape_interval__` after relabeling), ms.
        interval_ms: i64,
        /// Its scrape timeout (`__scrape_timeout__` after relabeling), ms.
        timeout_ms: i64,
    },
    /// A rule dropped it: not scraped, listed under `droppedTargets`.
    Dropped,
}

/// Why a configured target cannot be scraped after relabeling (Prometheus' messages); the target
/// is skipped and the error logged, as upstream's "Creating target failed".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// `__address__` is empty after relabeling.
    #[error("no address")]
    NoAddress,
    /// `__address__` holds a `/` (config.go `CheckTargetAddress`).
    #[error("{address:?} is not a valid hostname")]
    InvalidAddress {
        /// The relabeled address.
        address: String,
    },
    /// `__scheme__` is not `http`.
    #[error("scheme {scheme:?} is not supported, only http")]
    UnsupportedScheme {
        /// The relabeled scheme.
        scheme: String,
    },
    /// `__scrape_interval__` is not a positive duration.
    #[error("error parsing scrape interval: {message}")]
    Interval {
        /// What is wrong.
        message: String,
    },
    /// `__scrape_timeout__` is not a positive duration.
    #[error("error parsing scrape timeout: {message}")]
    Timeout {
        /// What is wrong.
        message: String,
    },
    /// The relabeled timeout is longer than the relabeled interval.
    #[error("scrape timeout cannot be greater than scrape interval ({timeout:?} > {interval:?})")]
    TimeoutOverInterval {
        /// The timeout label's value.
        timeout: String,
        /// The interval label's value.
        interval: String,
    },
}

/// The labels of the target `address` of `scrape_config` before relabeling, as the API shows
/// them: `__address__`, then the static config's `labels`, then the job's scrape labels where
/// neither set them (upstream's `TargetsFromGroup` and the start of `PopulateLabels`).
pub fn discovered_labels(scrape_config: &ScrapeConfig, address: &str, labels: &BTreeMap<String, String>) -> Labels {
    let mut discovered = Labels::from_pairs(labels.iter().map(|(name, value)| (name.as_str(), value.as_str())));
    discovered.set(ADDRESS_LABEL, address);
    let scrape_labels = [
        ("job", scrape_config.job_name.clone()),
        (SCRAPE_INTERVAL_LABEL, format_duration_ms(scrape_config.scrape_interval_ms)),
        (SCRAPE_TIMEOUT_LABEL, format_duration_ms(scrape_config.scrape_timeout_ms)),
        (METRICS_PATH_LABEL, scrape_config.metrics_path.clone()),
        (SCHEME_LABEL, "http".to_string()),
    ];
    for (name, value) in scrape_labels {
        if discovered.get(name).is_none() {
            discovered.set(name, &value);
        }
    }
    for (name, values) in &scrape_config.params {
        if let Some(first) = values.first() {
            discovered.set(&format!("{PARAM_LABEL_PREFIX}{name}"), first);
        }
    }
    discovered
}

/// Applies the job's `relabel_configs` to `discovered` (see [`discovered_labels`]) and builds the
/// target, as upstream's `PopulateLabels`: a missing port is `:80`, `instance` defaults to the
/// address, labels starting with `__` are removed.
pub fn populate(scrape_config: &ScrapeConfig, discovered: &Labels) -> Result<Populated, TargetError> {
    let Some(relabeled) = relabel::process(discovered.clone(), &scrape_config.relabel_configs) else {
        return Ok(Populated::Dropped);
    };
    let mut address = relabeled.get(ADDRESS_LABEL).unwrap_or("").to_string();
    if address.is_empty() {
        return Err(TargetError::NoAddress);
    }
    if !split_host_port(&address) && split_host_port(&format!("{address}:1234")) {
        address.push_str(":80");
    }
    if address.contains('/') {
        return Err(TargetError::InvalidAddress { address });
    }
    let scheme = relabeled.get(SCHEME_LABEL).unwrap_or("");
    if !matches!(scheme, "http" | "") {
        return Err(TargetError::UnsupportedScheme { scheme: scheme.to_string() });
    }
    let interval = relabeled.get(SCRAPE_INTERVAL_LABEL).unwrap_or("");
    let interval_ms =
        positive_duration_ms(interval, "scrape interval").map_err(|message| TargetError::Interval { message })?;
    let timeout = relabeled.get(SCRAPE_TIMEOUT_LABEL).unwrap_or("");
    let timeout_ms =
        positive_duration_ms(timeout, "scrape timeout").map_err(|message| TargetError::Timeout { message })?;
    if timeout_ms > interval_ms {
        return Err(TargetError::TimeoutOverInterval { timeout: timeout.to_string(), interval: interval.to_string() });
    }
    // Go's url.URL writes an empty or relative path with a leading `/` when a host is set.
    let path = relabeled.get(METRICS_PATH_LABEL).unwrap_or("");
    let mut metrics_path = if path.starts_with('/') { path.to_string() } else { format!("/{path}") };
    let query = scrape_query(&scrape_config.params, &relabeled);
    if !query.is_empty() {
        metrics_path.push('?');
        metrics_path.push_str(&query);
    }
    let mut labels = Labels::from_pairs(
        relabeled
            .iter()
            .filter(|label| !label.name.starts_with(RESERVED_LABEL_PREFIX))
            .map(|label| (label.name.as_str(), label.value.as_str())),
    );
    if labels.get("instance").is_none() {
        labels.set("instance", &address);
    }
    Ok(Populated::Active { target: Target { address, metrics_path, labels }, interval_ms, timeout_ms })
}

/// The scrape URL's query as upstream's `Target.URL`: the config's `params`, each `__param_<name>`
/// label replacing its name's first value (or adding the name), encoded as Go's
/// `url.Values.Encode` (sorted by name).
fn scrape_query(params: &BTreeMap<String, Vec<String>>, labels: &Labels) -> String {
    let mut values = params.clone();
    for label in labels.iter() {
        let Some(name) = label.name.strip_prefix(PARAM_LABEL_PREFIX) else { continue };
        let entry = values.entry(name.to_string()).or_default();
        match entry.first_mut() {
            Some(first) => *first = label.value.clone(),
            None => entry.push(label.value.clone()),
        }
    }
    let mut query = String::new();
    for (name, list) in &values {
        for value in list {
            if !query.is_empty() {
                query.push('&');
            }
            query_escape(&mut query, name);
            query.push('=');
            query_escape(&mut query, value);
        }
    }
    query
}

/// Go's `url.QueryEscape`: unreserved bytes as they are, space as `+`, the rest `%XX`.
fn query_escape(out: &mut String, text: &str) {
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(byte as char),
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(b"0123456789ABCDEF"[usize::from(byte >> 4)]));
                out.push(char::from(b"0123456789ABCDEF"[usize::from(byte & 15)]));
            }
        }
    }
}

/// A duration label's value as upstream's `PopulateLabels` checks it: parses, and is not 0.
fn positive_duration_ms(text: &str, what: &str) -> Result<i64, String> {
    match parse_duration_ms(text)? {
        0 => Err(format!("{what} cannot be 0")),
        duration_ms => Ok(duration_ms),
    }
}

/// Whether Go's `net.SplitHostPort` accepts `address`: a port after the last `:`, and a host that
/// is either bracketed (`[::1]`) or free of `:`, `[` and `]`.
fn split_host_port(address: &str) -> bool {
    let Some((host, port)) = address.rsplit_once(':') else { return false };
    let host_ok = match host.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']').is_some_and(|inner| !inner.contains(['[', ']'])),
        None => !host.contains([':', '[', ']']),
    };
    host_ok && !port.contains(['[', ']'])
}

impl Target {
    /// Stable identity hash, for the scrape offset.
    pub fn hash(&self) -> u64 {
        fnv1a_64(format!("{}{}{}", self.labels, self.address, self.metrics_path).as_bytes())
    }

    /// Delay before the first scrape, in ms, so that each target scrapes at a fixed phase of its
    /// interval and targets spread over the interval (Prometheus scrape/target.go `offset`): the
    /// slot is pinned to wall-clock time, so a restart keeps the phase.
    pub fn first_scrape_delay_ms(&self, interval_ms: i64, now_ms: i64, offset_seed: u64) -> i64 {
        assert!(interval_ms > 0, "scrape interval must be positive, got {interval_ms}");
        let base_ms = interval_ms - now_ms.rem_euclid(interval_ms);
        let offset_ms = ((self.hash() ^ offset_seed) % interval_ms as u64) as i64;
        let next_ms = base_ms + offset_ms;
        if next_ms > interval_ms {
            next_ms - interval_ms
        } else {
            next_ms
        }
    }

    /// Labels of a scraped series: the target labels win; a scraped label that clashes is kept as
    /// `exported_<name>` unless `honor_labels` (Prometheus scrape/scrape.go `mutateSampleLabels`).
    pub fn series_labels(&self, scraped: &Labels, honor_labels: bool) -> Labels {
        let mut labels = scraped.clone();
        for label in self.labels.iter() {
            match scraped.get(&label.name) {
                Some(_) if honor_labels => {}
                Some(existing) => {
                    let mut exported = format!("exported_{}", label.name);
                    while labels.get(&exported).is_some() {
                        exported = format!("exported_{exported}");
                    }
                    let existing = existing.to_string();
                    labels.set(&exported, &existing);
                    labels.set(&label.name, &label.value);
                }
                None => labels.set(&label.name, &label.value),
            }
        }
        labels
    }
}

/// Seed mixed into every target's offset: the external labels, so that HA replicas with
/// different labels scrape at different phases while a restart keeps its phase.
pub fn offset_seed(external_labels: &BTreeMap<String, String>) -> u64 {
    let text: String = external_labels.iter().map(|(name, value)| format!("{name}={value};")).collect();
    fnv1a_64(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            address: "localhost:9100".to_string(),
            metrics_path: "/metrics".to_string(),
            labels: Labels::from_pairs([("job", "node"), ("instance", "localhost:9100")]),
        }
    }

    #[test]
    fn offset_is_within_interval_and_phase_is_stable() {
        let target = target();
        for now_ms in [0, 1, 999, 12_345, 1_700_000_000_123] {
            let delay_ms = target.first_scrape_delay_ms(1000, now_ms, 7);
            assert!((0..=1000).contains(&delay_ms), "delay {delay_ms} at {now_ms}");
            let phase_ms = (now_ms + delay_ms) % 1000;
            assert_eq!(phase_ms, target.first_scrape_delay_ms(1000, 0, 7) % 1000);
        }
    }

    #[test]
    fn clashing_labels_are_exported_unless_honored() {
        let target = target();
        let scraped = Labels::from_pairs([("__name__", "x"), ("job", "inner")]);
        let labels = target.series_labels(&scraped, false);
        assert_eq!(labels.get("job"), Some("node"));
        assert_eq!(labels.get("exported_job"), Some("inner"));
        assert_eq!(labels.get("instance"), Some("localhost:9100"));
        let honored = target.series_labels(&scraped, true);
        assert_eq!(honored.get("job"), Some("inner"));
        assert_eq!(honored.get("exported_job"), None);
    }

    /// A job `node` (15s interval, 10s timeout, `/metrics`) with `relabel_configs` from YAML.
    fn job(relabel_yaml: &str) -> ScrapeConfig {
        let yaml = format!(
            "global:\n  scrape_interval: 15s\nscrape_configs:\n  - job_name: node\n    relabel_configs: {relabel_yaml}\n"
        );
        crate::config::parse(&yaml).unwrap().scrape_configs.remove(0)
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    /// Populates `address` with static labels `static_labels` under `relabel_yaml`.
    fn populated(relabel_yaml: &str, address: &str, static_labels: &[(&str, &str)]) -> Result<Populated, TargetError> {
        let job = job(relabel_yaml);
        let static_labels: BTreeMap<String, String> =
            static_labels.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect();
        populate(&job, &discovered_labels(&job, address, &static_labels))
    }

    /// Address, path, target labels, interval and timeout of an active target.
    type Expected<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], i64, i64);

    #[track_caller]
    fn check(relabel_yaml: &str, address: &str, expected: Result<Expected, TargetError>) {
        let got = populated(relabel_yaml, address, &[("env", "dev")]);
        let expected =
            expected.map(|(address, metrics_path, target_labels, interval_ms, timeout_ms)| Populated::Active {
                target: Target {
                    address: address.to_string(),
                    metrics_path: metrics_path.to_string(),
                    labels: labels(target_labels),
                },
                interval_ms,
                timeout_ms,
            });
        assert_eq!(got, expected, "{relabel_yaml}");
    }

    #[test]
    fn discovered_labels_are_prometheus_scrape_labels_under_static_ones() {
        let job = job("[]");
        let static_labels =
            BTreeMap::from([("env".to_string(), "dev".to_string()), ("job".to_string(), "mine".to_string())]);
        assert_eq!(
            discovered_labels(&job, "h:1", &static_labels),
            labels(&[
                ("__address__", "h:1"),
                ("__metrics_path__", "/metrics"),
                ("__scheme__", "http"),
                ("__scrape_interval__", "15s"),
                ("__scrape_timeout__", "10s"),
                ("env", "dev"),
                ("job", "mine"),
            ]),
            "a static `job` label wins over the job name, as upstream"
        );
    }

    #[test]
    fn relabeling_builds_or_drops_the_target() {
        let plain: &[(&str, &str)] = &[("env", "dev"), ("instance", "h:1"), ("job", "node")];
        // No rules: the discovered labels without the `__` ones, `instance` from the address.
        check("[]", "h:1", Ok(("h:1", "/metrics", plain, 15_000, 10_000)));
        // Dropped by keep and drop rules.
        assert_eq!(
            populated("[{source_labels: [env], regex: prod, action: keep}]", "h:1", &[("env", "dev")]),
            Ok(Populated::Dropped)
        );
        assert_eq!(
            populated("[{source_labels: [__address__], regex: 'h:.*', action: drop}]", "h:1", &[]),
            Ok(Populated::Dropped)
        );
        // The address is rewritten and `instance` defaults to the new one, port 80 added when missing.
        check(
            "[{source_labels: [__address__], regex: '(.*):1', target_label: __address__, replacement: '$1:9100'}]",
            "h:1",
            Ok(("h:9100", "/metrics", &[("env", "dev"), ("instance", "h:9100"), ("job", "node")], 15_000, 10_000)),
        );
        check(
            "[{target_label: __address__, replacement: exporter}]",
            "h:1",
            Ok((
                "exporter:80",
                "/metrics",
                &[("env", "dev"), ("instance", "exporter:80"), ("job", "node")],
                15_000,
                10_000,
            )),
        );
        // An `instance` set by a rule is kept; the address keeps its own value.
        check(
            "[{source_labels: [__address__], target_label: instance, regex: '(.*):.*', replacement: '$1'}]",
            "h:1",
            Ok(("h:1", "/metrics", &[("env", "dev"), ("instance", "h"), ("job", "node")], 15_000, 10_000)),
        );
        // Path, interval and timeout come from their labels; internal labels never reach the target.
        check(
            "[{target_label: __metrics_path__, replacement: probe}, {target_label: __scrape_interval__, replacement: 1m}, \
              {target_label: __scrape_timeout__, replacement: 30s}, {target_label: __tmp_x, replacement: y}, \
              {source_labels: [__tmp_x], target_label: copied}]",
            "h:1",
            Ok(("h:1", "/probe", &[("copied", "y"), ("env", "dev"), ("instance", "h:1"), ("job", "node")], 60_000, 30_000)),
        );
        // labelmap from internal names is how `__` labels become target labels.
        check(
            "[{regex: '__(scheme)__', action: labelmap}]",
            "h:1",
            Ok((
                "h:1",
                "/metrics",
                &[("env", "dev"), ("instance", "h:1"), ("job", "node"), ("scheme", "http")],
                15_000,
                10_000,
            )),
        );
    }

    #[test]
    fn unusable_relabeled_targets_are_errors() {
        check("[{target_label: __address__, replacement: ''}]", "h:1", Err(TargetError::NoAddress));
        check("[{regex: __address__, action: labeldrop}]", "h:1", Err(TargetError::NoAddress));
        check(
            "[{target_label: __address__, replacement: 'h:1/x'}]",
            "h:1",
            Err(TargetError::InvalidAddress { address: "h:1/x".to_string() }),
        );
        check(
            "[{target_label: __scheme__, replacement: https}]",
            "h:1",
            Err(TargetError::UnsupportedScheme { scheme: "https".to_string() }),
        );
        check(
            "[{target_label: __scrape_interval__, replacement: 0s}]",
            "h:1",
            Err(TargetError::Interval { message: "scrape interval cannot be 0".to_string() }),
        );
        assert!(matches!(
            populated("[{target_label: __scrape_timeout__, replacement: soon}]", "h:1", &[]),
            Err(TargetError::Timeout { .. })
        ));
        let error = populated("[{target_label: __scrape_timeout__, replacement: 20s}]", "h:1", &[]).unwrap_err();
        assert_eq!(error.to_string(), "scrape timeout cannot be greater than scrape interval (\"20s\" > \"15s\")");
    }

    #[test]
    fn host_port_splits_as_go_does() {
        for (address, splits) in [
            ("h:1", true),
            ("h", false),
            ("[::1]:80", true),
            ("[::1]", false),
            ("::1", false),
            ("h:", true),
            ("a]:1", false),
        ] {
            assert_eq!(split_host_port(address), splits, "{address}");
        }
    }
}
