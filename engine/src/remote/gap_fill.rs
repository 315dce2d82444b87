//! Gap fill after a restart (`--ha.peer`): a replica that was down reads the window it missed
//! from its HA peer before it starts scraping, so both replicas hold the same samples for it.
//! No peer system does this; Prometheus pairs keep their gaps forever.
//!
//! The window runs from the newest sample the replica holds after WAL replay (or, with none,
//! `--ha.gap-fill-max` back) to now, at most `--ha.gap-fill-max` long (the newest part when the
//! outage was longer). It is read through the peer's `/api/v1/read` in slices of
//! [`GAP_FILL_SLICE_MS`] (so one answer stays small), every series (`{__name__=~".+"}`), the
//! replica labels (`--query.replica-label`) removed from the answer (the peer adds its external
//! labels), and appended in commits of at most [`GAP_FILL_COMMIT_SAMPLE_COUNT_MAX`] samples.
//! Nothing else writes yet, so every series' filled samples are newer than what it holds; a
//! sample the head refuses anyway (out of bounds, a limit) is counted, not fatal.
//!
//! A peer that cannot be reached, or answers an error, ends the fill with what was filled so far
//! and a warning; startup goes on. The outcome is logged and exported on `/metrics`
//! (`engine_ha_gap_fill_*`).

use std::fmt::Write as _;
use std::sync::Mutex;

use crate::config::RemoteReadConfig;
use crate::io::Env;
use crate::model::{Labels, MatchKind, Matcher, METRIC_NAME_LABEL};
use crate::storage::Appendable;
use crate::tsdb::Db;

use super::read::ReadClient;

/// Longest time slice one request to the peer covers, ms.
pub const GAP_FILL_SLICE_MS: i64 = 5 * 60 * 1000;

/// Most samples one commit of filled samples holds.
pub const GAP_FILL_COMMIT_SAMPLE_COUNT_MAX: usize = 10_000;

/// `--ha.gap-fill-max` default, ms.
pub const GAP_FILL_WINDOW_MS_MAX_DEFAULT: i64 = 60 * 60 * 1000;

/// Where and how much to fill.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GapFillOptions {
    /// The peer's base URL (`http://host:port`).
    pub peer: String,
    /// Longest window filled, ms.
    pub window_ms_max: i64,
    /// Labels removed from the peer's series.
    pub replica_labels: Vec<String>,
    /// Timeout of one request to the peer, ms.
    pub request_timeout_ms: i64,
}

/// What one fill did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GapFillReport {
    /// First time filled, Unix ms (exclusive of what the replica held).
    pub from_ms: i64,
    /// Last time filled, Unix ms.
    pub to_ms: i64,
    /// Series that received samples.
    pub series_count: usize,
    /// Samples appended.
    pub sample_count: usize,
    /// Samples the head refused.
    pub refused_count: usize,
    /// Why the fill stopped early, if it did.
    pub error: Option<String>,
}

/// Fills the gap before `now_ms` from the peer; see the module comment.
pub async fn fill_gap(env: &Env, db: &Db, options: &GapFillOptions, now_ms: i64) -> GapFillReport {
    let held_until_ms = db.stats().time_range_ms.map(|(_, max_ms)| max_ms);
    let from_ms = held_until_ms
        .map_or(now_ms.saturating_sub(options.window_ms_max), |held| held.saturating_add(1))
        .max(now_ms.saturating_sub(options.window_ms_max));
    let mut report = GapFillReport { from_ms, to_ms: now_ms, ..GapFillReport::default() };
    if from_ms >= now_ms {
        return report;
    }
    let config = RemoteReadConfig {
        url: format!("{}/api/v1/read", options.peer.trim_end_matches('/')),
        name: options.peer.clone(),
        remote_timeout_ms: options.request_timeout_ms,
        headers: Default::default(),
        authorization: None,
        required_matchers: Default::default(),
        read_recent: true,
        filter_external_labels: false,
    };
    let client = match ReadClient::new(config) {
        Ok(client) => client,
        Err(error) => {
            report.error = Some(error);
            return report;
        }
    };
    let every_series = match Matcher::new(MatchKind::Regex, METRIC_NAME_LABEL, ".+") {
        Ok(matcher) => vec![matcher],
        Err(error) => {
            report.error = Some(error.to_string());
            return report;
        }
    };
    let mut filled_series: std::collections::BTreeSet<Labels> = std::collections::BTreeSet::new();
    let mut slice_start_ms = from_ms;
    while slice_start_ms <= now_ms {
        let slice_end_ms = slice_start_ms.saturating_add(GAP_FILL_SLICE_MS - 1).min(now_ms);
        let series = match client
            .read(env, std::slice::from_ref(&every_series), slice_start_ms, slice_end_ms, &Default::default())
            .await
        {
            Ok(series) => series,
            Err(error) => {
                report.error = Some(error);
                break;
            }
        };
        let mut appender = db.appender();
        let mut pending = 0_usize;
        for found in series {
            let labels = Labels::from_sorted_unchecked(
                found.labels.iter().filter(|label| !options.replica_labels.contains(&label.name)).cloned().collect(),
            );
            let mut appended_any = false;
            for sample in &found.samples {
                match appender.append(None, &labels, sample.timestamp_ms, sample.value) {
                    Ok(_) => {
                        report.sample_count += 1;
                        pending += 1;
                        appended_any = true;
                    }
                    Err(_) => report.refused_count += 1,
                }
                if pending >= GAP_FILL_COMMIT_SAMPLE_COUNT_MAX {
                    if let Err(error) = appender.commit().await {
                        report.error = Some(format!("commit filled samples: {error}"));
                        return finish(report, filled_series.len());
                    }
                    appender = db.appender();
                    pending = 0;
                }
            }
            if appended_any {
                filled_series.insert(labels);
            }
        }
        if let Err(error) = appender.commit().await {
            report.error = Some(format!("commit filled samples: {error}"));
            break;
        }
        slice_start_ms = slice_end_ms.saturating_add(1);
    }
    finish(report, filled_series.len())
}

fn finish(mut report: GapFillReport, series_count: usize) -> GapFillReport {
    report.series_count = series_count;
    report
}

/// The last fill's outcome on `/metrics`.
#[derive(Default)]
pub struct GapFillMetrics {
    report: Mutex<Option<GapFillReport>>,
}

impl GapFillMetrics {
    /// Records `report`.
    pub fn record(&self, report: GapFillReport) {
        *self.report.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(report);
    }
}

impl crate::metrics::MetricsSource for GapFillMetrics {
    fn render(&self, out: &mut String) {
        let Some(report) = self.report.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone() else {
            return;
        };
        let window_s = (report.to_ms - report.from_ms).max(0) as f64 / 1000.0;
        let _ = write!(
            out,
            "# HELP engine_ha_gap_fill_samples_total Samples read from the HA peer at startup to fill the outage's gap.\n\
             # TYPE engine_ha_gap_fill_samples_total counter\nengine_ha_gap_fill_samples_total {}\n\
             # HELP engine_ha_gap_fill_series Series that received filled samples.\n\
             # TYPE engine_ha_gap_fill_series gauge\nengine_ha_gap_fill_series {}\n\
             # HELP engine_ha_gap_fill_refused_samples_total Filled samples the head refused.\n\
             # TYPE engine_ha_gap_fill_refused_samples_total counter\nengine_ha_gap_fill_refused_samples_total {}\n\
             # HELP engine_ha_gap_fill_window_seconds Length of the window filled.\n\
             # TYPE engine_ha_gap_fill_window_seconds gauge\nengine_ha_gap_fill_window_seconds {}\n\
             # HELP engine_ha_gap_fill_success Whether the fill read the whole window.\n\
             # TYPE engine_ha_gap_fill_success gauge\nengine_ha_gap_fill_success {}\n",
            report.sample_count,
            report.series_count,
            report.refused_count,
            crate::api::json::format_value(window_s),
            u8::from(report.error.is_none()),
        );
    }
}
