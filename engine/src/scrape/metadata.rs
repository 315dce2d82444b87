//! HELP, TYPE and UNIT of the metric families a target exposes, for `/api/v1/metadata`.
//!
//! Both formats feed it: the text format's escaped HELP text is kept as written (unescaped when
//! shown), OpenMetrics' arrives unescaped; types are kept by Prometheus' name (`untyped` and
//! OpenMetrics' `unknown` both show as `unknown`), units come from OpenMetrics' `# UNIT`.
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
    /// Prometheus' type name; `None` (no TYPE line) shows as `unknown`.
    pub type_name: Option<&'static str>,
    /// Help text as written: escaped as the text format escapes it when `help_is_escaped`.
    pub help_text: String,
    /// Whether `help_text` still holds the text format's escapes.
    pub help_is_escaped: bool,
    /// OpenMetrics' `# UNIT`, empty when none.
    pub unit: String,
}

/// A HELP text as a parser hands it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelpText<'a> {
    /// The text format's, `\\` and `\n` still escaped.
    Escaped(&'a str),
    /// Unescaped (OpenMetrics).
    Plain(&'a str),
}

impl FamilyMetadata {
    /// Prometheus' type name.
    pub fn type_name(&self) -> &'static str {
        self.type_name.unwrap_or("unknown")
    }

    /// The help text unescaped.
    pub fn help(&self) -> String {
        if self.help_is_escaped {
            unescape_help(&self.help_text)
        } else {
            self.help_text.clone()
        }
    }
}

/// Prometheus' name of a text-format type (`untyped` is `unknown`).
pub fn text_type_name(metric_type: MetricType) -> &'static str {
    match metric_type {
        MetricType::Counter => "counter",
        MetricType::Gauge => "gauge",
        MetricType::Histogram => "histogram",
        MetricType::Summary => "summary",
        MetricType::Untyped => "unknown",
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
    /// Records a `# HELP` line of the text format (`help_escaped` as written).
    pub fn set_help(&mut self, name: &str, help_escaped: &str) {
        self.set_help_text(name, HelpText::Escaped(help_escaped));
    }

    /// Records a `# HELP` line of either format.
    pub fn set_help_text(&mut self, name: &str, help: HelpText<'_>) {
        let (text, is_escaped) = match help {
            HelpText::Escaped(text) => (text, true),
            HelpText::Plain(text) => (text, false),
        };
        if let Some(family) = self.family(name) {
            if family.help_text != text || family.help_is_escaped != is_escaped {
                family.help_text = text.to_string();
                family.help_is_escaped = is_escaped;
                self.changed = true;
            }
        }
    }

    /// Records a `# TYPE` line of the text format.
    pub fn set_type(&mut self, name: &str, metric_type: MetricType) {
        self.set_type_name(name, text_type_name(metric_type));
    }

    /// Records a `# TYPE` line by Prometheus' type name.
    pub fn set_type_name(&mut self, name: &str, type_name: &'static str) {
        if let Some(family) = self.family(name) {
            if family.type_name != Some(type_name) {
                family.type_name = Some(type_name);
                self.changed = true;
            }
        }
    }

    /// Records OpenMetrics' `# UNIT` line.
    pub fn set_unit(&mut self, name: &str, unit: &str) {
        if let Some(family) = self.family(name) {
            if family.unit != unit {
                family.unit = unit.to_string();
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
            let family = FamilyMetadata {
                type_name: None,
                help_text: String::new(),
                help_is_escaped: false,
                unit: String::new(),
            };
            self.families.insert(name.to_string(), family);
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
        cache.set_help_text("om", HelpText::Plain("a \\ b"));
        cache.set_type_name("om", "gaugehistogram");
        cache.set_unit("om", "seconds");
        let published = cache.take_changed().unwrap();
        assert_eq!(
            (published["om"].type_name(), published["om"].help(), published["om"].unit.as_str()),
            ("gaugehistogram", "a \\ b".to_string(), "seconds"),
            "OpenMetrics help is kept unescaped"
        );
        cache.set_unit("om", "seconds");
        cache.set_help_text("om", HelpText::Plain("a \\ b"));
        assert!(cache.take_changed().is_none());
        for index in 0..FAMILY_COUNT_MAX + 10 {
            cache.set_type(&format!("m{index}"), MetricType::Counter);
        }
        assert_eq!(cache.take_changed().unwrap().len(), FAMILY_COUNT_MAX);
    }
}
