//! HELP and TYPE of the metric families a target exposes, for `/api/v1/metadata`.
//!
//! The scrape loop keeps one [`MetadataCache`] per target. A family already known with the
//! same text costs one map lookup by `&str` per scrape (no allocation); only a change allocates
//! and marks the cache for publishing, so the API's copy is replaced at most once per scrape.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::parse::{unescape_help, MetricType};

/// Most metric families kept per target: a target that invents family names cannot grow the
/// cache without bound; families past it are not shown.
pub const FAMILY_COUNT_MAX: usize = 10_000;

/// One family's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FamilyMetadata {
    /// Type; `untyped` (or no TYPE line) shows as `unknown`, as Prometheus shows it.
    pub metric_type: Option<MetricType>,
    /// Help text as written (escaped); unescaped when shown.
    pub help_escaped: String,
}

impl FamilyMetadata {
    /// Prometheus' type name.
    pub fn type_name(&self) -> &'static str {
        match self.metric_type {
            Some(MetricType::Counter) => "counter",
            Some(MetricType::Gauge) => "gauge",
            Some(MetricType::Histogram) => "histogram",
            Some(MetricType::Summary) => "summary",
            Some(MetricType::Untyped) | None => "unknown",
        }
    }

    /// The help text unescaped.
    pub fn help(&self) -> String {
        unescape_help(&self.help_escaped)
    }
}

/// Families by name, shared read-only with the API.
pub type FamilyMap = Arc<BTreeMap<String, FamilyMetadata>>;

/// A target's families as its scrapes saw them.
#[derive(Debug, Default)]
pub struct MetadataCache {
    families: BTreeMap<String, FamilyMetadata>,
    changed: bool,
}

impl MetadataCache {
    /// Records a `# HELP` line.
    pub fn set_help(&mut self, name: &str, help_escaped: &str) {
        if let Some(family) = self.family(name) {
            if family.help_escaped != help_escaped {
                family.help_escaped = help_escaped.to_string();
                self.changed = true;
            }
        }
    }

    /// Records a `# TYPE` line.
    pub fn set_type(&mut self, name: &str, metric_type: MetricType) {
        if let Some(family) = self.family(name) {
            if family.metric_type != Some(metric_type) {
                family.metric_type = Some(metric_type);
                self.changed = true;
            }
        }
    }

    /// A copy for the API when something changed since the last call.
    pub fn take_changed(&mut self) -> Option<FamilyMap> {
        if !self.changed {
            return None;
        }
        self.changed = false;
        Some(Arc::new(self.families.clone()))
    }

    fn family(&mut self, name: &str) -> Option<&mut FamilyMetadata> {
        if !self.families.contains_key(name) {
            if self.families.len() >= FAMILY_COUNT_MAX {
                return None;
            }
            self.families.insert(name.to_string(), FamilyMetadata { metric_type: None, help_escaped: String::new() });
            self.changed = true;
        }
        self.families.get_mut(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_published_once_and_the_cache_is_bounded() {
        let mut cache = MetadataCache::default();
        cache.set_help("up", "Target \\\\ up\\n");
        cache.set_type("up", MetricType::Gauge);
        let published = cache.take_changed().unwrap();
        assert_eq!(published["up"].type_name(), "gauge");
        assert_eq!(published["up"].help(), "Target \\ up\n");
        cache.set_help("up", "Target \\\\ up\\n");
        cache.set_type("up", MetricType::Gauge);
        assert!(cache.take_changed().is_none(), "same text: nothing to publish");
        cache.set_type("up", MetricType::Untyped);
        assert_eq!(cache.take_changed().unwrap()["up"].type_name(), "unknown");
        for index in 0..FAMILY_COUNT_MAX + 10 {
            cache.set_type(&format!("m{index}"), MetricType::Counter);
        }
        assert_eq!(cache.take_changed().unwrap().len(), FAMILY_COUNT_MAX);
    }
}
