//! Recording and alerting rules (Prometheus' rules/: manager.go, group.go, alerting.go,
//! recording.go): rule files parsed and validated ([`file`]), groups evaluated on their interval
//! over the engine's PromQL ([`Group`]), recording rules' results and alerts' `ALERTS` /
//! `ALERTS_FOR_STATE` series written back through the storage [`Appender`](crate::storage::Appender),
//! alerts handed to an [`AlertSink`], the `/api/v1/rules` and `/api/v1/alerts` JSON ([`api`]),
//! and promtool's rule unit test files run over fresh storage ([`unittest`]).
//!
//! Invariants:
//! - The rules of a group run in file order, each committed before the next starts, so a
//!   recording rule's output is visible to the rules after it in the same evaluation.
//! - Evaluation timestamps of a group are `base + k * interval` with `base` derived from a stable
//!   FNV-1a hash of the group's name and file, so a restarted engine keeps each group's phase.
//! - A series a rule produced at its previous evaluation and not at this one gets a staleness
//!   marker (`seriesInPreviousEval`); so do all of a group's series when it is removed by a reload.
//!
//! Concurrency: one task per group (spawned through `io::Spawner`), at most
//! `max_concurrent_evals` evaluating at once (a semaphore). A group's state sits behind a
//! mutex that is never held across an await; API readers take it briefly. Time comes only from
//! the [`Clock`] (timestamps) and `tokio::time` (sleeps), so tests and the simulator run rules in
//! virtual time.

mod alerting;
pub mod api;
pub mod file;
mod group;
mod manager;
mod recording;
pub mod unittest;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::io::Clock;
use crate::notifier::AlertSink;
use crate::promql::{Engine, InstantSample, Value};
use crate::storage::{Appendable, Queryable};

pub use alerting::{AlertState, RuleAlert};
pub use file::{GroupSpec, RuleFile, RuleFileError, RuleKind, RuleSpec};
pub use group::{Group, GroupSnapshot, RuleSnapshot};
pub use manager::{LoggingAlertSink, Manager, ManagerOptions};

/// Prometheus `--rules.alert.resend-delay` default.
pub const RESEND_DELAY_MS_DEFAULT: i64 = 60_000;
/// Prometheus `--rules.alert.for-outage-tolerance` default.
pub const OUTAGE_TOLERANCE_MS_DEFAULT: i64 = 3_600_000;
/// Prometheus `--rules.alert.for-grace-period` default.
pub const FOR_GRACE_PERIOD_MS_DEFAULT: i64 = 600_000;
/// Prometheus `--rules.max-concurrent-evals` default.
pub const MAX_CONCURRENT_EVALS_DEFAULT: usize = 4;
/// How long a resolved alert is kept and re-sent (alerting.go `resolvedRetention`).
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60_000;

/// Everything rule evaluation reads and writes, shared by every group of a manager.
#[derive(Clone)]
pub struct EvalContext {
    /// The query engine rules evaluate over.
    pub engine: Engine,
    /// Where recorded series and `ALERTS` go.
    pub appendable: Arc<dyn Appendable>,
    /// Read for the `for` state restore (`ALERTS_FOR_STATE`).
    pub queryable: Arc<dyn Queryable>,
    /// Where alerts go.
    pub sink: Arc<dyn AlertSink>,
    /// Wall clock: `lastEvaluation` times (sample timestamps are the evaluation timestamps).
    pub clock: Arc<dyn Clock>,
    /// `global.external_labels`, for `$externalLabels` in templates.
    pub external_labels: BTreeMap<String, String>,
    /// `--web.external-url`, for generator URLs and `$externalURL`.
    pub external_url: String,
    /// Least time between two sends of a firing alert.
    pub resend_delay_ms: i64,
    /// How far back `for` state is restored from.
    pub outage_tolerance_ms: i64,
    /// Least time a restored alert stays pending after a restart.
    pub for_grace_period_ms: i64,
}

/// Rule health, as the API shows it (`rules.RuleHealth`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Not evaluated yet.
    Unknown,
    /// The last evaluation succeeded.
    Good,
    /// The last evaluation failed.
    Bad,
}

impl Health {
    /// Prometheus' spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Good => "ok",
            Health::Bad => "err",
        }
    }
}

/// Runs `expr` at `time_ms` as a rule sees it (rules/manager.go `EngineQueryFunc`): a scalar
/// becomes a one-element vector without labels; strings and matrices are errors.
pub fn query_vector(engine: &Engine, expr: &str, time_ms: i64) -> Result<Vec<InstantSample>, String> {
    match engine.instant_query(expr, time_ms) {
        Ok(Value::Vector(samples)) => Ok(samples),
        Ok(Value::Scalar(sample)) => Ok(vec![InstantSample {
            labels: crate::model::Labels::empty(),
            timestamp_ms: sample.timestamp_ms,
            value: sample.value,
        }]),
        Ok(_) => Err("rule result is not a vector or scalar".to_string()),
        Err(error) => Err(error.to_string()),
    }
}

/// `<external_url>/graph?g0.expr=<expr>&g0.tab=1` (util/strutil `TableLinkForExpression`),
/// with Go's `url.QueryEscape`.
pub fn generator_url(external_url: &str, expr: &str) -> String {
    let mut escaped = String::with_capacity(expr.len() * 3);
    for byte in expr.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => escaped.push(byte as char),
            b' ' => escaped.push('+'),
            _ => escaped.push_str(&format!("%{byte:02X}")),
        }
    }
    format!("{external_url}/graph?g0.expr={escaped}&g0.tab=1")
}

/// Go's `time.Time` JSON form (RFC 3339, fraction without trailing zeros) of Unix ms; `None`
/// is Go's zero time, `0001-01-01T00:00:00Z`.
pub fn go_time_json(time_ms: Option<i64>) -> String {
    let Some(time_ms) = time_ms else { return "0001-01-01T00:00:00Z".to_string() };
    let seconds = time_ms.div_euclid(1000);
    let fraction_ms = time_ms.rem_euclid(1000);
    let (year, month, day) = crate::calendar::civil_from_days(seconds.div_euclid(86_400));
    let second_of_day = seconds.rem_euclid(86_400);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    );
    if fraction_ms != 0 {
        let fraction = format!("{fraction_ms:03}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)`: shortest mantissa, exponent with sign and at
/// least two digits (`1e+00`, `2.5e-07`), `NaN`, `+Inf`, `-Inf`.
pub fn go_format_e(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    let text = format!("{value:e}");
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let sign = if exponent < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs())
}

/// FNV-1a, 64 bit: a hash stable across releases and processes (std's is randomised).
pub fn fnv1a64(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (index, part) in parts.iter().enumerate() {
        if index > 0 {
            hash ^= 0xff;
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        for byte in part.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}
