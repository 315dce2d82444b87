//! What `/api/v1/targets` reports: every active target with the health, error and duration of
//! its last scrape, and every target `relabel_configs` dropped, with its discovered labels. Scrape loops write their target's slot after each scrape; the API reads all
//! slots. One small mutex per target, held only to copy a few fields, so neither side waits on
//! the other for long.

use std::sync::{Arc, Mutex};

use crate::api::json::{write_labels, write_string};
use crate::calendar::format_rfc3339_ms;
use crate::config::format_duration_ms;
use crate::model::Labels;

/// A target's health as Prometheus names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Not scraped yet.
    Unknown,
    /// The last scrape succeeded.
    Up,
    /// The last scrape failed.
    Down,
}

impl Health {
    fn name(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

/// The outcome of a target's last scrape.
#[derive(Clone, Debug, PartialEq)]
pub struct LastScrape {
    /// Health.
    pub health: Health,
    /// When it started, Unix ms (0 before the first).
    pub started_ms: i64,
    /// How long it took, seconds.
    pub duration_seconds: f64,
    /// Why it failed; empty on success.
    pub error: String,
}

/// One active target as the API shows it.
#[derive(Debug)]
pub struct ActiveTarget {
    /// `job_name`.
    pub scrape_pool: String,
    /// `http://address/path`.
    pub scrape_url: String,
    /// Labels before relabelling (`__address__`, `__metrics_path__`, ...).
    pub discovered_labels: Labels,
    /// The target's labels (`job`, `instance`, static labels).
    pub labels: Labels,
    /// Scrape interval, ms.
    pub interval_ms: i64,
    /// Scrape timeout, ms.
    pub timeout_ms: i64,
    last: Mutex<LastScrape>,
    metadata: Mutex<super::metadata::FamilyMap>,
}

impl ActiveTarget {
    /// A target not scraped yet.
    pub fn new(
        scrape_pool: String,
        scrape_url: String,
        discovered_labels: Labels,
        labels: Labels,
        interval_ms: i64,
        timeout_ms: i64,
    ) -> Self {
        ActiveTarget {
            scrape_pool,
            scrape_url,
            discovered_labels,
            labels,
            interval_ms,
            timeout_ms,
            last: Mutex::new(LastScrape {
                health: Health::Unknown,
                started_ms: 0,
                duration_seconds: 0.0,
                error: String::new(),
            }),
            metadata: Mutex::default(),
        }
    }

    /// Replaces the families shown for this target.
    pub fn set_metadata(&self, families: super::metadata::FamilyMap) {
        *self.metadata.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = families;
    }

    /// The families its scrapes have exposed.
    pub fn metadata(&self) -> super::metadata::FamilyMap {
        self.metadata.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Records a finished scrape.
    pub fn record(&self, last: LastScrape) {
        *self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = last;
    }

    /// The last scrape's outcome.
    pub fn last(&self) -> LastScrape {
        self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

/// A target `relabel_configs` dropped, as the API shows it (Prometheus 2.42's `DroppedTarget`).
#[derive(Clone, Debug, PartialEq)]
pub struct DroppedTarget {
    /// `job_name`, for the `scrapePool` filter.
    pub scrape_pool: String,
    /// Labels before relabelling.
    pub discovered_labels: Labels,
}

/// Every active and dropped target, in configuration order.
#[derive(Debug, Default)]
pub struct Targets {
    /// The targets scraped.
    pub active: Vec<Arc<ActiveTarget>>,
    /// The targets relabeling dropped.
    pub dropped: Vec<DroppedTarget>,
}

/// Which targets `/api/v1/targets?state=` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateFilter {
    /// `active`.
    Active,
    /// `dropped`.
    Dropped,
    /// `any` or absent.
    Any,
}

impl StateFilter {
    /// Parses `state` (case-insensitive, as Prometheus): unknown values mean `any`.
    pub fn parse(text: Option<&str>) -> StateFilter {
        match text.map(str::to_ascii_lowercase).as_deref() {
            Some("active") => StateFilter::Active,
            Some("dropped") => StateFilter::Dropped,
            _ => StateFilter::Any,
        }
    }
}

impl Targets {
    /// Prometheus' `/api/v1/targets` body; `scrape_pool` (when set) keeps one job's targets.
    pub fn body(&self, state: StateFilter, scrape_pool: Option<&str>) -> String {
        let mut out = String::from("{\"status\":\"success\",\"data\":{\"activeTargets\":[");
        if state != StateFilter::Dropped {
            let selected =
                self.active.iter().filter(|target| scrape_pool.is_none_or(|pool| target.scrape_pool == pool));
            for (index, target) in selected.enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_target(&mut out, target);
            }
        }
        out.push_str("],\"droppedTargets\":[");
        if state != StateFilter::Active {
            let selected =
                self.dropped.iter().filter(|target| scrape_pool.is_none_or(|pool| target.scrape_pool == pool));
            for (index, target) in selected.enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str("{\"discoveredLabels\":");
                write_labels(&mut out, &target.discovered_labels);
                out.push('}');
            }
        }
        out.push_str("]}}");
        out
    }
}

impl Targets {
    /// Prometheus' `/api/v1/metadata` body: per metric name the distinct (type, help, unit)
    /// over all targets; `metric` keeps one name, `limit` caps the names and
    /// `limit_per_metric` the entries per name (0: no cap).
    pub fn metadata_body(&self, metric: Option<&str>, limit: usize, limit_per_metric: usize) -> String {
        let mut by_name: std::collections::BTreeMap<String, Vec<(&'static str, String, String)>> =
            std::collections::BTreeMap::new();
        for target in &self.active {
            for (name, family) in target.metadata().iter() {
                if metric.is_some_and(|wanted| wanted != name) {
                    continue;
                }
                let entry = (family.type_name(), family.help(), family.unit.clone());
                let entries = by_name.entry(name.clone()).or_default();
                if !entries.contains(&entry) {
                    entries.push(entry);
                }
            }
        }
        let mut out = String::from("{\"status\":\"success\",\"data\":{");
        let name_count_max = if limit == 0 { usize::MAX } else { limit };
        for (index, (name, entries)) in by_name.iter().take(name_count_max).enumerate() {
            if index > 0 {
                out.push(',');
            }
            write_string(&mut out, name);
            out.push_str(":[");
            let entry_count_max = if limit_per_metric == 0 { usize::MAX } else { limit_per_metric };
            for (entry_index, (type_name, help, unit)) in entries.iter().take(entry_count_max).enumerate() {
                if entry_index > 0 {
                    out.push(',');
                }
                out.push_str("{\"type\":");
                write_string(&mut out, type_name);
                out.push_str(",\"help\":");
                write_string(&mut out, help);
                out.push_str(",\"unit\":");
                write_string(&mut out, unit);
                out.push('}');
            }
            out.push(']');
        }
        out.push_str("}}");
        out
    }
}

fn write_target(out: &mut String, target: &ActiveTarget) {
    let last = target.last();
    out.push_str("{\"discoveredLabels\":");
    write_labels(out, &target.discovered_labels);
    out.push_str(",\"labels\":");
    write_labels(out, &target.labels);
    out.push_str(",\"scrapePool\":");
    write_string(out, &target.scrape_pool);
    out.push_str(",\"scrapeUrl\":");
    write_string(out, &target.scrape_url);
    out.push_str(",\"globalUrl\":");
    write_string(out, &target.scrape_url);
    out.push_str(",\"lastError\":");
    write_string(out, &last.error);
    out.push_str(",\"lastScrape\":");
    // Go's zero time before the first scrape, as Prometheus shows it.
    let started = if last.health == Health::Unknown {
        "0001-01-01T00:00:00Z".to_string()
    } else {
        format_rfc3339_ms(last.started_ms)
    };
    write_string(out, &started);
    out.push_str(",\"lastScrapeDuration\":");
    out.push_str(&format!("{}", last.duration_seconds));
    out.push_str(",\"health\":");
    write_string(out, last.health.name());
    out.push_str(",\"scrapeInterval\":");
    write_string(out, &format_duration_ms(target.interval_ms));
    out.push_str(",\"scrapeTimeout\":");
    write_string(out, &format_duration_ms(target.timeout_ms));
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(pool: &str) -> Arc<ActiveTarget> {
        Arc::new(ActiveTarget::new(
            pool.to_string(),
            "http://h:1/metrics".to_string(),
            Labels::from_pairs([("__address__", "h:1"), ("job", pool)]),
            Labels::from_pairs([("instance", "h:1"), ("job", pool)]),
            15_000,
            10_000,
        ))
    }

    #[test]
    fn body_shows_health_before_and_after_scrapes() {
        let targets = Targets { active: vec![target("a"), target("b")], dropped: Vec::new() };
        let body = targets.body(StateFilter::Any, Some("a"));
        assert_eq!(
            body,
            r#"{"status":"success","data":{"activeTargets":[{"discoveredLabels":{"__address__":"h:1","job":"a"},"labels":{"instance":"h:1","job":"a"},"scrapePool":"a","scrapeUrl":"http://h:1/metrics","globalUrl":"http://h:1/metrics","lastError":"","lastScrape":"0001-01-01T00:00:00Z","lastScrapeDuration":0,"health":"unknown","scrapeInterval":"15s","scrapeTimeout":"10s"}],"droppedTargets":[]}}"#
        );
        targets.active[1].record(LastScrape {
            health: Health::Down,
            started_ms: 1_700_000_000_500,
            duration_seconds: 0.25,
            error: "connect: refused".to_string(),
        });
        let parsed: serde_json::Value = serde_json::from_str(&targets.body(StateFilter::Active, None)).unwrap();
        let second = &parsed["data"]["activeTargets"][1];
        assert_eq!(second["health"], "down");
        assert_eq!(second["lastError"], "connect: refused");
        assert_eq!(second["lastScrape"], "2023-11-14T22:13:20.5Z");
        assert_eq!(second["lastScrapeDuration"], 0.25);
        assert_eq!(
            targets.body(StateFilter::Dropped, None),
            r#"{"status":"success","data":{"activeTargets":[],"droppedTargets":[]}}"#
        );
    }

    #[test]
    fn dropped_targets_show_their_discovered_labels() {
        let dropped = |pool: &str, address: &str| DroppedTarget {
            scrape_pool: pool.to_string(),
            discovered_labels: Labels::from_pairs([("__address__", address), ("job", pool)]),
        };
        let targets = Targets { active: vec![target("a")], dropped: vec![dropped("a", "x:1"), dropped("b", "y:1")] };
        assert_eq!(
            targets.body(StateFilter::Dropped, Some("a")),
            r#"{"status":"success","data":{"activeTargets":[],"droppedTargets":[{"discoveredLabels":{"__address__":"x:1","job":"a"}}]}}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&targets.body(StateFilter::Any, None)).unwrap();
        assert_eq!(parsed["data"]["activeTargets"].as_array().unwrap().len(), 1);
        assert_eq!(parsed["data"]["droppedTargets"][1]["discoveredLabels"]["__address__"], "y:1");
        let active_only: serde_json::Value = serde_json::from_str(&targets.body(StateFilter::Active, None)).unwrap();
        assert_eq!(active_only["data"]["droppedTargets"], serde_json::json!([]));
    }
}
