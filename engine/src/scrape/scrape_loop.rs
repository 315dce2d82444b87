//! The per-target loop: wait for the target's phase, then scrape every interval.
//!
//! Each scrape appends the body's samples in one batch (all or nothing: a malformed body or a
//! breached limit rolls the batch back and sets `up` to 0) and then the report series in a
//! second batch, as Prometheus does (scrape/scrape.go `scrapeAndReport`).
//!
//! The fast path (upstream `scrapeLoop.append`): the parser hands out each sample's raw series
//! text; a text the target's [`ScrapeCache`] knows is appended by reference
//! (`Appender::append_by_ref`) with no label parsing and no allocation. A miss parses the labels,
//! adds the target labels (`honor_labels` as upstream's `mutateSampleLabels`), applies the job's
//! `metric_relabel_configs`, checks the label limits, appends by labels and caches the returned
//! reference. When the store no longer knows a cached reference (it dropped the series, e.g.
//! after writing a block), the text is parsed and relabeled again, appended by labels and the
//! entry refreshed.
//!
//! Metric relabeling (upstream's `mutateSampleLabels` and `scrapeLoop.append`): a sample whose
//! labels a rule drops (or empties) is not appended; its text is cached as dropped, so later
//! scrapes skip it with one lookup and no relabeling (upstream's `addDropped`). A dropped sample
//! counts in `scrape_samples_scraped` but not toward `sample_limit`, which upstream applies to
//! the appender, after relabeling. A relabeled series without a metric name, or with an invalid
//! name, fails the scrape. Report series are not relabeled. A job without rules takes none of
//! these steps.
//!
//! Staleness is by reference (see `cache`): series the previous successful scrape appended at
//! its timestamp and this one did not get a stale marker in the same batch; after a failed scrape
//! all of them do, in a batch of their own. No label set is cloned or compared for it.
//!
//! Formats: the response's Content-Type picks the text or the OpenMetrics parser
//! (`fetch::Format`); both hand out the raw series text, so the cache serves both the same way.
//! OpenMetrics timestamps (seconds) arrive as ms; `_created` samples are ingested as ordinary
//! samples, as Prometheus 2.42 does; `# UNIT` goes to the metadata; a missing `# EOF` fails the
//! scrape. An exemplar is kept for the exemplar store with its series' final labels (parsed
//! again on a cache hit: exemplar lines are few) and its sample's timestamp when it has none, and
//! stored only once the scrape's batch committed.
//!
//! Report series (upstream's `report`): `up`, `scrape_duration_seconds`, `scrape_samples_scraped`
//! (sample lines), `scrape_samples_post_metric_relabeling` (samples left after metric relabeling,
//! counted when offered to storage, a refused one included, as upstream's `added`) and
//! `scrape_series_added` (cache misses appended within the sample limit: series new to this
//! target's cache, upstream's `seriesAdded`). A failed scrape reports the counts reached before
//! the failure, as upstream.
//!
//! Limits (`ScrapeLimits`, upstream's `scrape_config` keys, 0 meaning none): the body read stops
//! at `body_size_limit`; `sample_limit` counts samples offered to storage and, once passed, the
//! rest of the body is only counted; `label_limit`, `label_name_length_limit` and
//! `label_value_length_limit` apply to a new series' final labels. Any breach fails the scrape.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;

use super::cache::{CacheEntry, Lookup, ScrapeCache};
use super::fetch::Format;
use super::metadata::HelpText;
use super::parse::{self, TextParser};
use super::{fetch, ScrapeError, Target};
use crate::exemplars::{Exemplar, ExemplarStore};
use crate::exposition::openmetrics;
use crate::io::Env;
use crate::metrics::SelfMetrics;
use crate::model::{Labels, SeriesRef, METRIC_NAME_LABEL, STALE_NAN_BITS};
use crate::relabel::{self, RelabelConfig};
use crate::storage::{AppendError, Appendable, Appender};

/// Per-target limits of one scrape, as Prometheus' `scrape_config` keys of the same names; 0
/// means no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScrapeLimits {
    /// `body_size_limit`, bytes; the server-wide body limit applies as well.
    pub body_size_limit: usize,
    /// `sample_limit`: samples per scrape.
    pub sample_count_limit: u64,
    /// `label_limit`: labels of a series, `__name__` and target labels included.
    pub label_count_limit: usize,
    /// `label_name_length_limit`, bytes.
    pub label_name_size_limit: usize,
    /// `label_value_length_limit`, bytes.
    pub label_value_size_limit: usize,
}

/// Everything one target's loop needs.
pub struct ScrapeLoop {
    /// Clock, network, spawner.
    pub env: Env,
    /// What to scrape.
    pub target: Target,
    /// Where samples go.
    pub appendable: Arc<dyn Appendable>,
    /// Counters.
    pub metrics: Arc<SelfMetrics>,
    /// Time between scrapes.
    pub interval_ms: i64,
    /// Longest a scrape may take.
    pub timeout_ms: i64,
    /// Keep clashing scraped labels instead of the target's.
    pub honor_labels: bool,
    /// Use timestamps given in the body.
    pub honor_timestamps: bool,
    /// The job's `metric_relabel_configs`, shared by its targets; empty for none.
    pub metric_relabel_configs: Arc<[RelabelConfig]>,
    /// The target's limits.
    pub limits: ScrapeLimits,
    /// Largest body, bytes, server-wide (`RuntimeLimits::scrape_body_size_max`).
    pub body_size_max: usize,
    /// Mixed into the target hash for the phase.
    pub offset_seed: u64,
    /// Where the last scrape's outcome is shown (`/api/v1/targets`).
    pub health: Option<Arc<super::health::ActiveTarget>>,
    /// Turns true when the loop must end (a reload removed or changed the target); `None`: the
    /// loop runs until its task is cancelled.
    pub stop: Option<tokio::sync::watch::Receiver<bool>>,
    /// Where exemplars go; `None`: they are parsed and dropped.
    pub exemplars: Option<Arc<ExemplarStore>>,
}

/// Resolves when `stop` turns true (never for `None` or a dropped sender's last value false).
async fn stopped(stop: &mut Option<tokio::sync::watch::Receiver<bool>>) {
    match stop {
        Some(receiver) => {
            if receiver.wait_for(|stop| *stop).await.is_err() {
                // The manager is gone without asking to stop: keep running.
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

/// What a loop carries from one scrape to the next.
#[derive(Debug)]
pub struct ScrapeState {
    /// Series text -> reference, with staleness marks.
    pub cache: ScrapeCache,
    /// The body buffer, reused across scrapes.
    body: Vec<u8>,
    /// References of the report series (`up`, ...), hints for their appends.
    report_refs: [Option<SeriesRef>; REPORT_SERIES_COUNT],
    /// Why the last scrape failed; `None` after a success.
    pub last_error: Option<String>,
    /// HELP, TYPE and UNIT seen so far.
    pub metadata: super::metadata::MetadataCache,
    /// The current scrape's exemplars with their series' labels, stored after the commit.
    exemplars: Vec<(Labels, Exemplar)>,
}

impl ScrapeState {
    /// The state before the first scrape; `hash_key` keys the cache's hash.
    pub fn new(hash_key: u64) -> Self {
        ScrapeState {
            cache: ScrapeCache::new(hash_key),
            body: Vec::new(),
            report_refs: [None; REPORT_SERIES_COUNT],
            last_error: None,
            metadata: super::metadata::MetadataCache::default(),
            exemplars: Vec::new(),
        }
    }
}

/// The report series' names, in the order upstream appends them.
const REPORT_SERIES_NAMES: [&str; REPORT_SERIES_COUNT] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];
const REPORT_SERIES_COUNT: usize = 5;

/// One line of either format, as the loop consumes it.
enum BodyEntry<'a> {
    Sample { series: &'a str, value: f64, timestamp_ms: Option<i64>, exemplar: Option<openmetrics::Exemplar<'a>> },
    Help { name: &'a str, help: BodyHelp<'a> },
    Type { name: &'a str, type_name: &'static str },
    Unit { name: &'a str, unit: &'a str },
    Other,
}

/// A HELP text as the parsers hand it out: the text format's still escaped, OpenMetrics'
/// unescaped (borrowed unless it had escapes).
enum BodyHelp<'a> {
    Escaped(&'a str),
    Plain(std::borrow::Cow<'a, str>),
}

/// The two pull parsers behind one interface; the hot loop is generic over it, so each format
/// gets its own monomorphised loop.
trait BodyParser<'a> {
    fn next_entry(&mut self) -> Option<Result<BodyEntry<'a>, ScrapeError>>;
    /// Labels of the sample `next_entry` returned last.
    fn sample_labels(&self, series: &'a str) -> Result<Labels, ScrapeError>;
}

impl<'a> BodyParser<'a> for TextParser<'a> {
    #[inline]
    fn next_entry(&mut self) -> Option<Result<BodyEntry<'a>, ScrapeError>> {
        Some(match self.next()? {
            Ok(parse::Entry::Sample { series, value, timestamp_ms }) => {
                Ok(BodyEntry::Sample { series, value, timestamp_ms, exemplar: None })
            }
            Ok(parse::Entry::Help { name, text }) => Ok(BodyEntry::Help { name, help: BodyHelp::Escaped(text) }),
            Ok(parse::Entry::Type { name, metric_type }) => {
                Ok(BodyEntry::Type { name, type_name: super::metadata::text_type_name(metric_type) })
            }
            Ok(parse::Entry::Comment { .. }) => Ok(BodyEntry::Other),
            Err(error) => Err(error.into()),
        })
    }

    fn sample_labels(&self, _series: &'a str) -> Result<Labels, ScrapeError> {
        Ok(self.labels()?)
    }
}

impl<'a> BodyParser<'a> for openmetrics::Parser<'a> {
    #[inline]
    fn next_entry(&mut self) -> Option<Result<BodyEntry<'a>, ScrapeError>> {
        Some(match self.next()? {
            Ok(openmetrics::Entry::Sample { series, value, timestamp_ms, exemplar, .. }) => {
                Ok(BodyEntry::Sample { series, value, timestamp_ms, exemplar })
            }
            Ok(openmetrics::Entry::Help { name, help }) => Ok(BodyEntry::Help { name, help: BodyHelp::Plain(help) }),
            Ok(openmetrics::Entry::Type { name, metric_type }) => {
                Ok(BodyEntry::Type { name, type_name: metric_type.as_str() })
            }
            Ok(openmetrics::Entry::Unit { name, unit }) => Ok(BodyEntry::Unit { name, unit }),
            Ok(openmetrics::Entry::Eof) => Ok(BodyEntry::Other),
            Err(error) => Err(error.into()),
        })
    }

    fn sample_labels(&self, series: &'a str) -> Result<Labels, ScrapeError> {
        Ok(openmetrics::series_labels(series)?)
    }
}

/// A body buffer keeps at most this many times its last body's size (and 1 MiB), so one huge
/// scrape does not pin its memory for the target's life.
const BODY_BUFFER_SLACK_FACTOR: usize = 4;
const BODY_BUFFER_SIZE_KEPT_MIN: usize = 1 << 20;

/// What the hot loop writes into, borrowed from the loop's state for one scrape.
struct Sink<'s> {
    cache: &'s mut ScrapeCache,
    metadata: &'s mut super::metadata::MetadataCache,
    exemplars: &'s mut Vec<(Labels, Exemplar)>,
    appender: &'s mut dyn Appender,
    scrape_ms: i64,
    counts: &'s mut Counts,
}

/// Where one sample goes.
enum Destination<'c> {
    /// A cached series: by reference, updating its entry.
    Known(&'c mut CacheEntry),
    /// A new series: by its final labels.
    New(Labels),
}

/// Counts of one scrape's body.
#[derive(Debug, Default)]
struct Counts {
    /// Sample lines parsed (upstream's `total`: scrape_samples_scraped).
    sample_count: u64,
    /// Samples offered to storage (what `sample_limit` counts).
    offered_count: u64,
    /// Samples the store refused (out of order, duplicates).
    rejected_count: u64,
    /// Samples left after metric relabeling (upstream's `added`).
    post_relabel_count: u64,
    /// Series new to the cache, appended within the limit (upstream's `seriesAdded`).
    series_added_count: u64,
}

impl ScrapeLoop {
    /// Runs until the task is cancelled or `stop` turns true; on a stop, every series the loop
    /// wrote, its report series included, gets a staleness marker (scrape.go `endOfRunStaleness`),
    /// so a target removed by a reload disappears from queries at once instead of after the
    /// lookback delta.
    pub async fn run(mut self) {
        let mut stop = self.stop.take();
        let delay_ms = self.target.first_scrape_delay_ms(self.interval_ms, self.env.clock.now_ms(), self.offset_seed);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(delay_ms as u64)) => {}
            _ = stopped(&mut stop) => return,
        }
        let mut ticker = tokio::time::interval(Duration::from_millis(self.interval_ms as u64));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let hash_key = self.env.random.stream("scrape-cache").next_u64() ^ self.target.hash();
        let mut state = ScrapeState::new(hash_key);
        loop {
            tokio::select! {
                _ = ticker.tick() => self.scrape_and_report(&mut state).await,
                _ = stopped(&mut stop) => {
                    self.end_of_run_staleness(&mut state).await;
                    return;
                }
            }
        }
    }

    /// Staleness markers for every series of the last scrape and the report series.
    async fn end_of_run_staleness(&self, state: &mut ScrapeState) {
        let now_ms = self.env.clock.now_ms();
        self.mark_stale_after_failure(state, now_ms).await;
        let mut appender = self.appendable.appender();
        for (name, series_ref) in REPORT_SERIES_NAMES.iter().zip(state.report_refs.iter()) {
            let Some(series_ref) = series_ref else { continue };
            let mut labels = self.target.labels.clone();
            labels.set(METRIC_NAME_LABEL, name);
            if let Err(error) = appender.append(Some(*series_ref), &labels, now_ms, f64::from_bits(STALE_NAN_BITS)) {
                tracing::warn!(%error, series = name, "append end-of-run staleness marker");
            }
        }
        if let Err(error) = appender.commit().await {
            tracing::warn!(%error, "commit end-of-run staleness markers");
        }
    }

    /// The body limit in force: the target's, within the server's.
    fn body_size_limit(&self) -> usize {
        match self.limits.body_size_limit {
            0 => self.body_size_max,
            limit => limit.min(self.body_size_max),
        }
    }

    /// One scrape with its report series; `state` carries the cache and buffers between scrapes.
    pub async fn scrape_and_report(&self, state: &mut ScrapeState) {
        self.metrics.scrapes_total.fetch_add(1, Ordering::Relaxed);
        let scrape_ms = self.env.clock.now_ms();
        let started = tokio::time::Instant::now(); // tokio's clock: virtual under turmoil
        let fetched = tokio::time::timeout(
            Duration::from_millis(self.timeout_ms as u64),
            fetch::fetch(
                self.env.net.as_ref(),
                self.env.spawner.as_ref(),
                &self.target,
                self.timeout_ms,
                self.body_size_limit(),
                &mut state.body,
            ),
        )
        .await
        .unwrap_or(Err(ScrapeError::Timeout { timeout_ms: self.timeout_ms }));
        let duration_seconds = started.elapsed().as_secs_f64();
        let mut counts = Counts::default();
        let result = match fetched {
            Ok(format) => self.append_body(state, format, scrape_ms, &mut counts).await,
            Err(error) => Err(error),
        };
        state.last_error = result.as_ref().err().map(|error| error.to_string());
        if let Err(error) = &result {
            self.metrics.scrape_failures_total.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                job = self.target.labels.get("job").unwrap_or(""),
                target = %self.target.address,
                %error,
                "scrape failed"
            );
            self.mark_stale_after_failure(state, scrape_ms).await;
        }
        let kept_size = (state.body.len() * BODY_BUFFER_SLACK_FACTOR).max(BODY_BUFFER_SIZE_KEPT_MIN);
        if state.body.capacity() > kept_size {
            state.body.clear();
            state.body.shrink_to(kept_size);
        }
        self.metrics.scrape_samples_rejected_total.fetch_add(counts.rejected_count, Ordering::Relaxed);
        if let Some(health) = &self.health {
            if let Some(families) = state.metadata.take_changed() {
                health.set_metadata(families);
            }
            health.record(super::health::LastScrape {
                health: if result.is_ok() { super::health::Health::Up } else { super::health::Health::Down },
                started_ms: scrape_ms,
                duration_seconds,
                error: state.last_error.clone().unwrap_or_default(),
            });
        }
        let up = if result.is_ok() { 1.0 } else { 0.0 };
        self.report(state, scrape_ms, up, duration_seconds, &counts).await;
    }

    async fn append_body(
        &self,
        state: &mut ScrapeState,
        format: Format,
        scrape_ms: i64,
        counts: &mut Counts,
    ) -> Result<(), ScrapeError> {
        let mut appender = self.appendable.appender();
        let ScrapeState { cache, body, metadata, exemplars, .. } = state;
        exemplars.clear();
        let mut sink = Sink { cache, metadata, exemplars, appender: appender.as_mut(), scrape_ms, counts };
        let appended = match format {
            Format::Text => self.append_samples(TextParser::new(body), &mut sink),
            Format::OpenMetrics => {
                // client_golang exposes distributions of negative observations (see the parser).
                let options = openmetrics::ParseOptions { negative_observations: true };
                self.append_samples(openmetrics::Parser::with_options(body, options), &mut sink)
            }
        };
        if let Err(error) = appended {
            appender.rollback();
            exemplars.clear();
            return Err(error);
        }
        cache
            .end_scrape(true, |series_ref, series| self.append_stale(appender.as_mut(), series_ref, series, scrape_ms));
        appender.commit().await.map_err(|error| ScrapeError::Commit(error.to_string()))?;
        if let Some(store) = &self.exemplars {
            if !exemplars.is_empty() {
                store.add_all(exemplars.drain(..));
            }
        }
        exemplars.clear();
        Ok(())
    }

    /// The body's samples into `sink.appender`: the hot loop.
    fn append_samples<'a>(&self, mut parser: impl BodyParser<'a>, sink: &mut Sink<'_>) -> Result<(), ScrapeError> {
        let Sink { cache, metadata, exemplars, appender, scrape_ms, counts } = sink;
        let scrape_ms = *scrape_ms;
        let keeps_exemplars = self.exemplars.is_some();
        let sample_count_limit = self.limits.sample_count_limit;
        while let Some(entry) = parser.next_entry() {
            let (series, value, timestamp_ms, exemplar) = match entry? {
                BodyEntry::Sample { series, value, timestamp_ms, exemplar } => (series, value, timestamp_ms, exemplar),
                BodyEntry::Help { name, help } => {
                    match &help {
                        BodyHelp::Escaped(text) => metadata.set_help_text(name, HelpText::Escaped(text)),
                        BodyHelp::Plain(text) => metadata.set_help_text(name, HelpText::Plain(text)),
                    }
                    continue;
                }
                BodyEntry::Type { name, type_name } => {
                    metadata.set_type_name(name, type_name);
                    continue;
                }
                BodyEntry::Unit { name, unit } => {
                    metadata.set_unit(name, unit);
                    continue;
                }
                BodyEntry::Other => continue,
            };
            counts.sample_count += 1;
            if sample_count_limit > 0 && counts.offered_count > sample_count_limit {
                // Past the limit: only counted, for scrape_samples_scraped and, unless metric
                // relabeling is known to drop it, scrape_samples_post_metric_relabeling.
                if !cache.is_dropped(series) {
                    counts.post_relabel_count += 1;
                }
                continue;
            }
            let (timestamp_ms, tracks_staleness) = match timestamp_ms {
                Some(timestamp_ms) if self.honor_timestamps => (timestamp_ms, false),
                _ => (scrape_ms, true),
            };
            let destination = match cache.get(series) {
                // A second line of one series at the scrape's timestamp (upstream: duplicate).
                Lookup::Repeated(_) if tracks_staleness => {
                    counts.rejected_count += 1;
                    counts.post_relabel_count += 1;
                    continue;
                }
                Lookup::Hit(entry) | Lookup::Repeated(entry) => Destination::Known(entry),
                Lookup::Dropped => continue,
                Lookup::Miss => match self.final_labels(&parser.sample_labels(series)?)? {
                    Some(labels) => {
                        self.check_label_limits(&labels)?;
                        Destination::New(labels)
                    }
                    None => {
                        cache.insert_dropped(series);
                        continue;
                    }
                },
            };
            counts.offered_count += 1;
            counts.post_relabel_count += 1;
            if sample_count_limit > 0 && counts.offered_count > sample_count_limit {
                continue;
            }
            if let Some(exemplar) = exemplar.filter(|_| keeps_exemplars) {
                let series_labels = match &destination {
                    Destination::New(labels) => Some(labels.clone()),
                    Destination::Known(_) => self.final_labels(&parser.sample_labels(series)?)?,
                };
                if let Some(series_labels) = series_labels {
                    let timestamp_ms = exemplar.timestamp_ms.unwrap_or(timestamp_ms);
                    exemplars.push((
                        series_labels,
                        Exemplar { labels: exemplar.labels(), value: exemplar.value, timestamp_ms },
                    ));
                }
            }
            let appended = match destination {
                Destination::Known(entry) => match appender.append_by_ref(entry.series_ref(), timestamp_ms, value) {
                    Err(AppendError::UnknownSeriesRef { .. }) => {
                        match self.final_labels(&parser.sample_labels(series)?)? {
                            Some(labels) => appender
                                .append(None, &labels, timestamp_ms, value)
                                .map(|new_ref| entry.appended(new_ref, tracks_staleness)),
                            // The rules are fixed and kept this text when it was cached.
                            None => Ok(()),
                        }
                    }
                    other => other.map(|()| entry.appended(entry.series_ref(), tracks_staleness)),
                },
                Destination::New(labels) => appender.append(None, &labels, timestamp_ms, value).map(|series_ref| {
                    cache.insert(series, series_ref, tracks_staleness);
                    counts.series_added_count += 1;
                }),
            };
            if let Err(error) = appended {
                counts.rejected_count += 1;
                tracing::debug!(%error, series, "sample rejected");
            }
        }
        if sample_count_limit > 0 && counts.offered_count > sample_count_limit {
            return Err(ScrapeError::SampleLimit {
                limit_count: sample_count_limit,
                actual_count: counts.sample_count,
            });
        }
        Ok(())
    }

    /// A new series' final labels: the scraped ones with the target labels added
    /// (`honor_labels`), then the job's `metric_relabel_configs` (upstream's
    /// `mutateSampleLabels`); `None` when a rule drops the series or leaves no label.
    fn final_labels(&self, scraped: &Labels) -> Result<Option<Labels>, ScrapeError> {
        let labels = self.target.series_labels(scraped, self.honor_labels);
        if self.metric_relabel_configs.is_empty() {
            return Ok(Some(labels));
        }
        let Some(labels) = relabel::process(labels, &self.metric_relabel_configs) else { return Ok(None) };
        if labels.is_empty() {
            return Ok(None);
        }
        if labels.metric_name().is_none() {
            return Err(ScrapeError::MetricNameMissing);
        }
        if !relabel::is_valid_series(&labels) {
            return Err(ScrapeError::InvalidLabels { labels: labels.to_string() });
        }
        Ok(Some(labels))
    }

    /// Upstream's `verifyLabelLimits` on a new series' final labels.
    fn check_label_limits(&self, labels: &Labels) -> Result<(), ScrapeError> {
        let limits = &self.limits;
        let metric = || labels.metric_name().unwrap_or("").chars().take(50).collect::<String>();
        if limits.label_count_limit > 0 && labels.len() > limits.label_count_limit {
            return Err(ScrapeError::LabelLimit {
                metric: metric(),
                label_count: labels.len(),
                limit_count: limits.label_count_limit,
            });
        }
        if limits.label_name_size_limit == 0 && limits.label_value_size_limit == 0 {
            return Ok(());
        }
        for label in labels.iter() {
            if limits.label_name_size_limit > 0 && label.name.len() > limits.label_name_size_limit {
                return Err(ScrapeError::LabelNameLengthLimit {
                    metric: metric(),
                    label_name: label.name.chars().take(50).collect(),
                    length_size: label.name.len(),
                    limit_size: limits.label_name_size_limit,
                });
            }
            if limits.label_value_size_limit > 0 && label.value.len() > limits.label_value_size_limit {
                return Err(ScrapeError::LabelValueLengthLimit {
                    metric: metric(),
                    label_name: label.name.chars().take(50).collect(),
                    label_value: label.value.chars().take(50).collect(),
                    length_size: label.value.len(),
                    limit_size: limits.label_value_size_limit,
                });
            }
        }
        Ok(())
    }

    /// A stale marker by reference; by labels (parsed from the cached text) when the store
    /// dropped the series. A marker the store refuses (a newer sample exists, or the same
    /// series was appended under another text this scrape) is harmless and dropped.
    fn append_stale(&self, appender: &mut dyn Appender, series_ref: SeriesRef, series: &str, scrape_ms: i64) {
        let stale_nan = f64::from_bits(STALE_NAN_BITS);
        if let Err(AppendError::UnknownSeriesRef { .. }) = appender.append_by_ref(series_ref, scrape_ms, stale_nan) {
            // The text came from either format; OpenMetrics' grammar is the stricter one.
            let scraped = openmetrics::series_labels(series)
                .map_err(ScrapeError::from)
                .or_else(|_| parse::series_labels(series).map_err(ScrapeError::from));
            if let Ok(Some(labels)) = scraped.and_then(|scraped| self.final_labels(&scraped)) {
                let _ = appender.append(None, &labels, scrape_ms, stale_nan);
            }
        }
    }

    async fn mark_stale_after_failure(&self, state: &mut ScrapeState, scrape_ms: i64) {
        let mut appender = self.appendable.appender();
        let mut marker_count = 0_usize;
        state.cache.end_scrape(false, |series_ref, series| {
            marker_count += 1;
            self.append_stale(appender.as_mut(), series_ref, series, scrape_ms);
        });
        if marker_count == 0 {
            appender.rollback();
            return;
        }
        if let Err(error) = appender.commit().await {
            tracing::warn!(%error, "commit staleness markers");
        }
    }

    async fn report(&self, state: &mut ScrapeState, scrape_ms: i64, up: f64, duration_seconds: f64, counts: &Counts) {
        let mut appender = self.appendable.appender();
        let values: [f64; REPORT_SERIES_COUNT] = [
            up,
            duration_seconds,
            counts.sample_count as f64,
            counts.post_relabel_count as f64,
            counts.series_added_count as f64,
        ];
        for ((name, value), series_ref) in REPORT_SERIES_NAMES.into_iter().zip(values).zip(state.report_refs.iter_mut())
        {
            let mut labels = self.target.labels.clone();
            labels.set(METRIC_NAME_LABEL, name);
            match appender.append(*series_ref, &labels, scrape_ms, value) {
                Ok(appended_ref) => *series_ref = Some(appended_ref),
                Err(error) => tracing::warn!(%error, series = name, "append report sample"),
            }
        }
        if let Err(error) = appender.commit().await {
            tracing::warn!(%error, "commit report samples");
        }
    }
}
