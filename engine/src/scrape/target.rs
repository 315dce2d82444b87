//! A scrape target: its address, URL path and the labels attached to everything scraped from it.

use std::collections::BTreeMap;

use crate::config::ScrapeConfig;
use crate::io::rng::fnv1a_64;
use crate::model::Labels;

/// One endpoint to scrape.
#[derive(Clone, Debug)]
pub struct Target {
    /// `host:port`
    pub address: String,
    /// URL path, e.g. `/metrics`.
    pub metrics_path: String,
    /// `job`, `instance` and the static labels, without `__name__`.
    pub labels: Labels,
}

impl Target {
    /// The target `address` of `scrape_config` with the static config's extra `labels`.
    pub fn new(scrape_config: &ScrapeConfig, address: &str, labels: &BTreeMap<String, String>) -> Self {
        let mut target_labels = Labels::from_pairs(labels.iter().map(|(name, value)| (name.as_str(), value.as_str())));
        target_labels.set("job", &scrape_config.job_name);
        if target_labels.get("instance").is_none() {
            target_labels.set("instance", address);
        }
        Target { address: address.to_string(), metrics_path: scrape_config.metrics_path.clone(), labels: target_labels }
    }

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
}
