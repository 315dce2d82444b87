//! The remote-write receiver (`POST /api/v1/write`, `--web.enable-remote-write-receiver`):
//! remote_write 1.0, a snappy block-compressed protobuf `prometheus.WriteRequest`, as
//! Prometheus 2.42's `storage/remote/write_handler.go` (`writeHandler.ServeHTTP`, `write`) and
//! `codec.go` (`DecodeWriteRequest`) take it.
//!
//! A request goes through three stages, each all or nothing:
//! 1. [`decode`]: the body (already bounded by the API's body limit, 413 beyond it) is checked
//!    against snappy's decompressed-length header before anything is decompressed, then the
//!    protobuf's series, labels and samples are counted by walking its wire format before
//!    `prost` builds a single struct, so decoding memory is bounded by [`ReceiverLimits`].
//! 2. [`validate`]: every series must have sorted, distinct, valid label names and a valid
//!    `__name__`; labels with empty values are dropped (Prometheus' `WithoutEmpty`). Within one
//!    request a sample not newer than the last kept sample of its series is dropped, as
//!    Prometheus' head drops it at commit (`headAppender.Commit`), and counted. Metadata,
//!    exemplars and native histograms are skipped (prost skips the fields this module does not
//!    declare), never an error.
//! 3. [`append`]: one [`Appender`] batch for the whole request; the first sample the store
//!    refuses (out of order, out of bounds or a different value at the newest timestamp of its
//!    series, as Prometheus answers them) rolls the batch back. The batch commits with
//!    [`Appender::try_commit`], so a full commit queue is a 429 and never a held request.
//!
//! Nothing of a refused request is visible to queries. As in Prometheus, a new series the store
//! created before a later sample was refused stays in the head without samples until head
//! garbage collection (it shows in label-name lookups only).
//!
//! Status codes: 204 accepted; 400 bad snappy, bad protobuf, invalid labels, refused samples
//! (Prometheus 2.42 answers 500 for empty or duplicate label names; later versions and this
//! engine answer 400, since a retry cannot succeed); 413 a size or count limit; 429 the commit
//! queue is full; 503 the store is not taking writes; 500 any other storage fault.
//!
//! Prometheus 2.42 exposes no receiver metrics; the engine counts requests by status and samples
//! on `/metrics` (`engine_remote_write_*`).
//!
//! Concurrency: one [`Receiver`] serves every connection; each request has its own appender;
//! counters are atomics. Decoding runs on the request's task (bodies are at most the API's body
//! limit; Prometheus sends 500 samples per request by default).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body;
use hyper::{Method, Request, Response, StatusCode};
use prost::Message as _;

use crate::limits::{
    REMOTE_WRITE_DECOMPRESSED_SIZE_MAX, REMOTE_WRITE_LABEL_COUNT_MAX, REMOTE_WRITE_SAMPLE_COUNT_MAX,
    REMOTE_WRITE_SERIES_COUNT_MAX,
};
use crate::metrics::MetricsSource;
use crate::model::{Label as ModelLabel, Labels, Sample as ModelSample, METRIC_NAME_LABEL};
use crate::rules::file::{is_valid_label_name, is_valid_metric_name};
use crate::storage::{AppendError, Appendable, CommitStats, StorageError};

/// `prometheus.WriteRequest` (prompb/remote.proto), the fields the receiver reads: `metadata`
/// (field 3) is skipped while decoding.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series, each with its labels and samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries` (prompb/types.proto) without `exemplars` (3) and `histograms` (4),
/// which are skipped while decoding.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Labels, sorted by name as the protocol requires.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Samples, oldest first.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Label {
    /// Label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Label value; empty means absent.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// Value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Unix milliseconds.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Bounds on one request after the API's body limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiverLimits {
    /// Largest decompressed request, bytes (snappy's length header).
    pub decompressed_size_max: usize,
    /// Most time series.
    pub series_count_max: usize,
    /// Most labels over all series.
    pub label_count_max: usize,
    /// Most samples over all series.
    pub sample_count_max: usize,
}

impl Default for ReceiverLimits {
    fn default() -> Self {
        ReceiverLimits {
            decompressed_size_max: REMOTE_WRITE_DECOMPRESSED_SIZE_MAX,
            series_count_max: REMOTE_WRITE_SERIES_COUNT_MAX,
            label_count_max: REMOTE_WRITE_LABEL_COUNT_MAX,
            sample_count_max: REMOTE_WRITE_SAMPLE_COUNT_MAX,
        }
    }
}

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum RemoteWriteError {
    /// The body is larger than the API's body limit.
    #[error("request body exceeds the limit of {size_max} bytes")]
    BodyTooLarge {
        /// The limit.
        size_max: usize,
    },
    /// Reading the body failed (the client went away, a broken chunked encoding).
    #[error("read request body: {reason}")]
    BodyRead {
        /// Cause.
        reason: String,
    },
    /// Not a snappy block.
    #[error("decompress snappy block: {source}")]
    Snappy {
        /// Cause.
        source: snap::Error,
    },
    /// Snappy's header announces more than the decompressed-size limit.
    #[error("decompressed request of {size} bytes exceeds the limit of {size_max} bytes")]
    DecompressedTooLarge {
        /// Announced size.
        size: usize,
        /// The limit.
        size_max: usize,
    },
    /// Too many series, labels or samples in one request.
    #[error("request carries more than {count_max} {what} (limit)")]
    TooMany {
        /// `series`, `labels` or `samples`.
        what: &'static str,
        /// The limit.
        count_max: usize,
    },
    /// Not a protobuf `WriteRequest`.
    #[error("decode protobuf WriteRequest: {reason}")]
    Protobuf {
        /// Cause.
        reason: String,
    },
    /// A series' labels break the protocol's rules.
    #[error("invalid series {labels}: {reason}")]
    InvalidLabels {
        /// The labels as sent.
        labels: String,
        /// Which rule.
        reason: String,
    },
    /// The store refused a sample (out of order, out of bounds, a different value at the same
    /// timestamp, a limit); the whole batch was rolled back.
    #[error("append: {source}")]
    Append {
        /// Cause.
        source: AppendError,
    },
    /// The store failed or is busy; nothing of the batch is visible.
    #[error("commit: {source}")]
    Storage {
        /// Cause.
        source: StorageError,
    },
}

impl RemoteWriteError {
    /// The HTTP status Prometheus' sender acts on: 4xx are dropped, 429 and 5xx retried.
    pub fn status(&self) -> StatusCode {
        match self {
            RemoteWriteError::BodyTooLarge { .. }
            | RemoteWriteError::DecompressedTooLarge { .. }
            | RemoteWriteError::TooMany { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            RemoteWriteError::BodyRead { .. }
            | RemoteWriteError::Snappy { .. }
            | RemoteWriteError::Protobuf { .. }
            | RemoteWriteError::InvalidLabels { .. } => StatusCode::BAD_REQUEST,
            RemoteWriteError::Append { source } => match source {
                AppendError::UnknownSeriesRef { .. } | AppendError::SeriesRefsExhausted => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
                _ => StatusCode::BAD_REQUEST,
            },
            RemoteWriteError::Storage { source } => match source {
                StorageError::CommitQueueFull { .. } => StatusCode::TOO_MANY_REQUESTS,
                StorageError::NotReady { .. } => StatusCode::SERVICE_UNAVAILABLE,
                StorageError::Write { .. } | StorageError::Read { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }
}

/// Counts of one protobuf `WriteRequest`, taken from its wire format before decoding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    series: usize,
    labels: usize,
    samples: usize,
}

/// Decompresses and decodes a request body within `limits`.
pub fn decode(body: &[u8], limits: &ReceiverLimits) -> Result<WriteRequest, RemoteWriteError> {
    let size = snap::raw::decompress_len(body).map_err(|source| RemoteWriteError::Snappy { source })?;
    if size > limits.decompressed_size_max {
        return Err(RemoteWriteError::DecompressedTooLarge { size, size_max: limits.decompressed_size_max });
    }
    let bytes = snap::raw::Decoder::new().decompress_vec(body).map_err(|source| RemoteWriteError::Snappy { source })?;
    count(&bytes, limits)?;
    WriteRequest::decode(bytes.as_slice()).map_err(|error| RemoteWriteError::Protobuf { reason: error.to_string() })
}

/// Counts series (field 1 of the request), labels and samples (fields 1 and 2 of a series),
/// refusing as soon as a count passes its limit.
fn count(bytes: &[u8], limits: &ReceiverLimits) -> Result<Counts, RemoteWriteError> {
    let too_many = |what, count_max| RemoteWriteError::TooMany { what, count_max };
    let mut counts = Counts::default();
    for_each_field(bytes, |tag, series| {
        if tag != 1 {
            return Ok(());
        }
        counts.series += 1;
        if counts.series > limits.series_count_max {
            return Err(too_many("series", limits.series_count_max));
        }
        let Some(series) = series else { return Ok(()) };
        for_each_field(series, |tag, _| {
            match tag {
                1 => {
                    counts.labels += 1;
                    if counts.labels > limits.label_count_max {
                        return Err(too_many("labels", limits.label_count_max));
                    }
                }
                2 => {
                    counts.samples += 1;
                    if counts.samples > limits.sample_count_max {
                        return Err(too_many("samples", limits.sample_count_max));
                    }
                }
                _ => {}
            }
            Ok(())
        })
    })?;
    Ok(counts)
}

/// Calls `visit(tag, payload)` for every field of one protobuf message, `payload` being the
/// bytes of a length-delimited field and `None` for scalars.
fn for_each_field<'a>(
    mut bytes: &'a [u8],
    mut visit: impl FnMut(u64, Option<&'a [u8]>) -> Result<(), RemoteWriteError>,
) -> Result<(), RemoteWriteError> {
    let malformed = |reason: &str| RemoteWriteError::Protobuf { reason: reason.to_string() };
    let varint = |bytes: &mut &'a [u8]| {
        prost::encoding::decode_varint(bytes).map_err(|error| RemoteWriteError::Protobuf { reason: error.to_string() })
    };
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        let tag = key >> 3;
        let payload = match key & 7 {
            0 => {
                varint(&mut bytes)?;
                None
            }
            1 | 5 => {
                let size = if key & 7 == 1 { 8 } else { 4 };
                bytes = bytes.get(size..).ok_or_else(|| malformed("truncated fixed-width field"))?;
                None
            }
            2 => {
                let size = usize::try_from(varint(&mut bytes)?).map_err(|_| malformed("field length overflows"))?;
                let (payload, rest) = bytes
                    .split_at_checked(size)
                    .ok_or_else(|| malformed("length-delimited field runs past the end"))?;
                bytes = rest;
                Some(payload)
            }
            wire_type => return Err(malformed(&format!("unsupported wire type {wire_type} (field {tag})"))),
        };
        visit(tag, payload)?;
    }
    Ok(())
}

/// One series of a validated request, samples strictly increasing in time.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesSamples {
    /// Labels, sorted, distinct, none empty, with a valid `__name__`.
    pub labels: Labels,
    /// Samples to append.
    pub samples: Vec<ModelSample>,
}

/// A validated request, ready to append.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    /// Series with at least one sample, in request order (a series sent twice appears twice).
    pub series: Vec<SeriesSamples>,
    /// Samples kept.
    pub sample_count: usize,
    /// Samples dropped: not newer than an earlier sample of their series in the request.
    pub dropped_sample_count: usize,
}

/// Checks every series of `request` and keeps the samples Prometheus' head would keep; the
/// first invalid series refuses the request.
pub fn validate(request: WriteRequest) -> Result<Batch, RemoteWriteError> {
    let mut batch = Batch::default();
    // Newest kept timestamp per series; looked up, never iterated.
    let mut newest_ms: HashMap<Labels, i64> = HashMap::new();
    for series in request.timeseries {
        let labels = validate_labels(&series.labels)?;
        if series.samples.is_empty() {
            // Only exemplars or histograms: nothing this engine stores.
            continue;
        }
        let mut newest = newest_ms.get(&labels).copied();
        let mut samples = Vec::with_capacity(series.samples.len());
        for sample in series.samples {
            if newest.is_some_and(|newest| sample.timestamp <= newest) {
                batch.dropped_sample_count += 1;
                continue;
            }
            newest = Some(sample.timestamp);
            samples.push(ModelSample { timestamp_ms: sample.timestamp, value: sample.value });
        }
        if let Some(newest) = newest {
            newest_ms.insert(labels.clone(), newest);
        }
        if !samples.is_empty() {
            batch.sample_count += samples.len();
            batch.series.push(SeriesSamples { labels, samples });
        }
    }
    Ok(batch)
}

/// The labels of one series as the store takes them, or why they break the protocol.
fn validate_labels(labels: &[Label]) -> Result<Labels, RemoteWriteError> {
    let invalid = |reason: String| RemoteWriteError::InvalidLabels { labels: display(labels), reason };
    for (index, label) in labels.iter().enumerate() {
        if !is_valid_label_name(&label.name) {
            return Err(invalid(format!("invalid label name {:?}", label.name)));
        }
        if let Some(previous) = index.checked_sub(1).map(|previous| &labels[previous].name) {
            if *previous == label.name {
                return Err(invalid(format!("duplicate label name {:?}", label.name)));
            }
            if *previous > label.name {
                return Err(invalid(format!("label names not sorted: {:?} after {previous:?}", label.name)));
            }
        }
    }
    match labels.iter().find(|label| label.name == METRIC_NAME_LABEL).map(|label| label.value.as_str()) {
        None | Some("") => return Err(invalid("no metric name (__name__ label)".to_string())),
        Some(name) if !is_valid_metric_name(name) => return Err(invalid(format!("invalid metric name {name:?}"))),
        Some(_) => {}
    }
    Ok(Labels::from_sorted_unchecked(
        labels
            .iter()
            .filter(|label| !label.value.is_empty())
            .map(|label| ModelLabel { name: label.name.clone(), value: label.value.clone() })
            .collect(),
    ))
}

/// Labels in request order as `{name="value", ...}`, for error messages.
fn display(labels: &[Label]) -> String {
    let mut text = String::from("{");
    for (index, label) in labels.iter().enumerate() {
        if index > 0 {
            text.push_str(", ");
        }
        let _ = write!(text, "{}={:?}", label.name, label.value);
    }
    text.push('}');
    text
}

/// Appends `batch` as one appender batch and commits it without waiting for queue room; the
/// first refused sample rolls everything back.
pub async fn append(appendable: &dyn Appendable, batch: &Batch) -> Result<CommitStats, RemoteWriteError> {
    let mut appender = appendable.appender();
    for series in &batch.series {
        let mut series_ref = None;
        for sample in &series.samples {
            match appender.append(series_ref, &series.labels, sample.timestamp_ms, sample.value) {
                Ok(found) => series_ref = Some(found),
                Err(source) => {
                    appender.rollback();
                    return Err(RemoteWriteError::Append { source });
                }
            }
        }
    }
    appender.try_commit().await.map_err(|source| RemoteWriteError::Storage { source })
}

/// Response codes counted in `engine_remote_write_requests_total`, in rendering order.
const CODES: [StatusCode; 7] = [
    StatusCode::NO_CONTENT,
    StatusCode::BAD_REQUEST,
    StatusCode::PAYLOAD_TOO_LARGE,
    StatusCode::TOO_MANY_REQUESTS,
    StatusCode::INTERNAL_SERVER_ERROR,
    StatusCode::SERVICE_UNAVAILABLE,
    StatusCode::METHOD_NOT_ALLOWED,
];

/// The receiver: its store, limits and counters.
pub struct Receiver {
    appendable: Arc<dyn Appendable>,
    limits: ReceiverLimits,
    requests_total: [AtomicU64; CODES.len()],
    samples_received_total: AtomicU64,
    samples_dropped_total: AtomicU64,
}

impl Receiver {
    /// A receiver appending to `appendable` within `limits`.
    pub fn new(appendable: Arc<dyn Appendable>, limits: ReceiverLimits) -> Self {
        Receiver {
            appendable,
            limits,
            requests_total: Default::default(),
            samples_received_total: AtomicU64::new(0),
            samples_dropped_total: AtomicU64::new(0),
        }
    }

    /// Decodes, validates and appends one request body; counts the samples accepted.
    pub async fn write(&self, body: &[u8]) -> Result<Batch, RemoteWriteError> {
        let batch = validate(decode(body, &self.limits)?)?;
        append(self.appendable.as_ref(), &batch).await?;
        self.samples_received_total.fetch_add(batch.sample_count as u64, Ordering::Relaxed);
        self.samples_dropped_total.fetch_add(batch.dropped_sample_count as u64, Ordering::Relaxed);
        Ok(batch)
    }

    fn count_response(&self, status: StatusCode) {
        if let Some(index) = CODES.iter().position(|code| *code == status) {
            self.requests_total[index].fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl MetricsSource for Receiver {
    fn render(&self, out: &mut String) {
        let name = "engine_remote_write_requests_total";
        let _ = writeln!(out, "# HELP {name} Remote-write requests received, by response code.");
        let _ = writeln!(out, "# TYPE {name} counter");
        for (code, count) in CODES.iter().zip(&self.requests_total) {
            let _ = writeln!(out, "{name}{{code=\"{}\"}} {}", code.as_u16(), count.load(Ordering::Relaxed));
        }
        let families = [
            (
                "engine_remote_write_samples_received_total",
                "Samples of accepted remote-write requests, committed.",
                &self.samples_received_total,
            ),
            (
                "engine_remote_write_samples_dropped_total",
                "Samples of accepted remote-write requests dropped: not newer than an earlier sample of their series in the same request.",
                &self.samples_dropped_total,
            ),
        ];
        for (name, help, count) in families {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", count.load(Ordering::Relaxed));
        }
    }
}

/// Answers `/api/v1/write`: 404 when the receiver is not enabled (as Prometheus), 405 for
/// anything but POST, else the body (at most `body_size_max` bytes) written through `receiver`.
pub(super) async fn serve<B>(
    receiver: Option<&Receiver>,
    request: Request<B>,
    body_size_max: usize,
) -> Response<Full<Bytes>>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Some(receiver) = receiver else {
        return super::respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "remote write receiver needs to be enabled with --web.enable-remote-write-receiver\n".to_string(),
        );
    };
    if request.method() != Method::POST {
        receiver.count_response(StatusCode::METHOD_NOT_ALLOWED);
        return super::respond(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "Method Not Allowed\n".to_string());
    }
    let result = match Limited::new(request.into_body(), body_size_max).collect().await {
        Ok(collected) => receiver.write(&collected.to_bytes()).await.map(|_| ()),
        Err(error) if error.is::<LengthLimitError>() => Err(RemoteWriteError::BodyTooLarge { size_max: body_size_max }),
        Err(error) => Err(RemoteWriteError::BodyRead { reason: error.to_string() }),
    };
    let status = result.as_ref().err().map_or(StatusCode::NO_CONTENT, RemoteWriteError::status);
    receiver.count_response(status);
    match result {
        Ok(()) => super::respond(StatusCode::NO_CONTENT, "text/plain", String::new()),
        Err(error) => {
            if status.is_server_error() {
                tracing::error!(%error, "remote write");
            } else {
                tracing::warn!(%error, "remote write refused");
            }
            super::respond(status, "text/plain; charset=utf-8", format!("{error}\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use http_body_util::BodyExt;
    use proptest::prelude::*;

    use super::*;
    use crate::api::Api;
    use crate::io::{Clock, MemFileSystem, TokioSpawner};
    use crate::metrics::SelfMetrics;
    use crate::model::{MatchKind, Matcher, SeriesRef};
    use crate::promql::{Engine, EngineOptions};
    use crate::storage::{Appender, CommitFuture, Queryable};
    use crate::tsdb::{Db, DbOptions};

    // What Prometheus sends, metadata, exemplars and histograms included (encoding only).

    #[derive(Clone, PartialEq, prost::Message)]
    struct FullWriteRequest {
        #[prost(message, repeated, tag = "1")]
        timeseries: Vec<FullTimeSeries>,
        #[prost(message, repeated, tag = "3")]
        metadata: Vec<MetricMetadata>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct FullTimeSeries {
        #[prost(message, repeated, tag = "1")]
        labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        samples: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        exemplars: Vec<Exemplar>,
        #[prost(message, repeated, tag = "4")]
        histograms: Vec<Histogram>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Exemplar {
        #[prost(message, repeated, tag = "1")]
        labels: Vec<Label>,
        #[prost(double, tag = "2")]
        value: f64,
        #[prost(int64, tag = "3")]
        timestamp: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Histogram {
        #[prost(uint64, tag = "1")]
        count_int: u64,
        #[prost(double, tag = "3")]
        sum: f64,
        #[prost(sint32, tag = "4")]
        schema: i32,
        #[prost(message, repeated, tag = "11")]
        positive_spans: Vec<BucketSpan>,
        #[prost(sint64, repeated, tag = "12")]
        positive_deltas: Vec<i64>,
        #[prost(int64, tag = "15")]
        timestamp: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct BucketSpan {
        #[prost(sint32, tag = "1")]
        offset: i32,
        #[prost(uint32, tag = "2")]
        length: u32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct MetricMetadata {
        #[prost(int32, tag = "1")]
        kind: i32,
        #[prost(string, tag = "2")]
        metric_family_name: String,
        #[prost(string, tag = "4")]
        help: String,
        #[prost(string, tag = "5")]
        unit: String,
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<Label> {
        pairs.iter().map(|(name, value)| Label { name: name.to_string(), value: value.to_string() }).collect()
    }

    fn series(pairs: &[(&str, &str)], samples: &[(i64, f64)]) -> FullTimeSeries {
        FullTimeSeries {
            labels: labels(pairs),
            samples: samples.iter().map(|&(timestamp, value)| Sample { value, timestamp }).collect(),
            ..FullTimeSeries::default()
        }
    }

    fn request(timeseries: Vec<FullTimeSeries>) -> FullWriteRequest {
        FullWriteRequest { timeseries, metadata: Vec::new() }
    }

    fn snappy(bytes: &[u8]) -> Vec<u8> {
        snap::raw::Encoder::new().compress_vec(bytes).unwrap()
    }

    fn body(request: &FullWriteRequest) -> Vec<u8> {
        snappy(&request.encode_to_vec())
    }

    fn db() -> Db {
        Db::open(Arc::new(MemFileSystem::default()), &TokioSpawner, Path::new("/db"), DbOptions::default()).unwrap()
    }

    /// Every series the store holds with samples: (labels, [(t, v)]).
    fn stored(db: &Db) -> Vec<(String, Vec<(i64, f64)>)> {
        let matcher = Matcher::new(MatchKind::Regex, "__name__", ".+").unwrap();
        let querier = db.querier(i64::MIN, i64::MAX).unwrap();
        let selected = querier.select(None, &[matcher]);
        selected
            .map(|series| {
                let series = series.unwrap();
                let samples = series.samples.iter().map(|sample| (sample.timestamp_ms, sample.value)).collect();
                (series.labels.to_string(), samples)
            })
            .collect()
    }

    struct FixedClock;

    impl Clock for FixedClock {
        fn now_ms(&self) -> i64 {
            10_000
        }
    }

    /// An API with the receiver over `appendable` (body limit 4 KiB), and the receiver.
    fn api(db: &Db, appendable: Arc<dyn Appendable>, limits: ReceiverLimits) -> (Api, Arc<Receiver>) {
        let receiver = Arc::new(Receiver::new(appendable, limits));
        let engine = Engine::new(Arc::new(db.clone()), EngineOptions::default());
        let metrics = Arc::new(SelfMetrics::default());
        metrics.add_source(receiver.clone());
        let api = Api::new(engine, Arc::new(FixedClock), db.clone(), metrics, 4096, Arc::new(TokioSpawner))
            .with_remote_write_receiver(receiver.clone());
        (api, receiver)
    }

    async fn call(api: &Api, method: Method, path: &str, body: Vec<u8>) -> (StatusCode, String) {
        let request = Request::builder().method(method).uri(path).body(Full::new(Bytes::from(body))).unwrap();
        let response = api.handle(request).await;
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    async fn post(api: &Api, body: Vec<u8>) -> (StatusCode, String) {
        call(api, Method::POST, "/api/v1/write", body).await
    }

    #[tokio::test]
    async fn a_valid_request_is_appended_and_queryable_metadata_exemplars_histograms_ignored() {
        let db = db();
        let (api, _) = api(&db, Arc::new(db.clone()), ReceiverLimits::default());
        let mut with_extras = series(&[("__name__", "up"), ("instance", "a:1"), ("job", "node")], &[(1_000, 1.0)]);
        with_extras.exemplars.push(Exemplar { labels: labels(&[("trace_id", "abc")]), value: 0.5, timestamp: 1_000 });
        let histogram_only = FullTimeSeries {
            labels: labels(&[("__name__", "latency_seconds"), ("job", "node")]),
            histograms: vec![Histogram {
                count_int: 3,
                sum: 1.5,
                schema: 0,
                positive_spans: vec![BucketSpan { offset: 0, length: 2 }],
                positive_deltas: vec![1, 1],
                timestamp: 1_000,
            }],
            ..FullTimeSeries::default()
        };
        let mut sent = request(vec![
            with_extras,
            // An empty value is an absent label.
            series(
                &[("__name__", "up"), ("env", ""), ("instance", "b:1"), ("job", "node")],
                &[(1_000, 0.0), (2_000, 1.0)],
            ),
            histogram_only,
            series(&[("__name__", "up"), ("instance", "a:1"), ("job", "node")], &[(2_000, f64::INFINITY)]),
        ]);
        sent.metadata.push(MetricMetadata {
            kind: 2,
            metric_family_name: "up".to_string(),
            help: "Up.".to_string(),
            unit: String::new(),
        });
        assert_eq!(post(&api, body(&sent)).await, (StatusCode::NO_CONTENT, String::new()));
        assert_eq!(
            stored(&db),
            vec![
                (r#"up{instance="a:1", job="node"}"#.to_string(), vec![(1_000, 1.0), (2_000, f64::INFINITY)]),
                (r#"up{instance="b:1", job="node"}"#.to_string(), vec![(1_000, 0.0), (2_000, 1.0)]),
            ]
        );
        let (status, answer) = call(&api, Method::GET, "/api/v1/query?query=up&time=2", Vec::new()).await;
        assert_eq!(status, StatusCode::OK);
        assert!(answer.contains(r#""instance":"b:1","job":"node"},"value":[2,"1"]"#), "{answer}");
        let (_, metrics) = call(&api, Method::GET, "/metrics", Vec::new()).await;
        for line in [
            "engine_remote_write_requests_total{code=\"204\"} 1",
            "engine_remote_write_requests_total{code=\"400\"} 0",
            "engine_remote_write_samples_received_total 4",
            "engine_remote_write_samples_dropped_total 0",
        ] {
            assert!(metrics.lines().any(|got| got == line), "{line:?} missing from\n{metrics}");
        }
    }

    /// Each invalid request is a 400 naming the problem, and nothing of it is visible, not even
    /// the valid series sent before the bad one.
    #[tokio::test]
    async fn invalid_requests_are_400_and_leave_nothing_visible() {
        #[track_caller]
        fn check(db: &Db, before: &[(String, Vec<(i64, f64)>)], answer: (StatusCode, String), message: &str) {
            assert_eq!(answer.0, StatusCode::BAD_REQUEST, "{message}: {}", answer.1);
            assert!(answer.1.contains(message), "{:?} lacks {message:?}", answer.1);
            assert_eq!(stored(db), before, "{message}: nothing of the request is visible");
        }
        let db = db();
        let (api, receiver) = api(&db, Arc::new(db.clone()), ReceiverLimits::default());
        // Stored before: `up{job="a"}` at 5 s.
        let stored_series = series(&[("__name__", "up"), ("job", "a")], &[(5_000, 1.0)]);
        assert_eq!(post(&api, body(&request(vec![stored_series]))).await.0, StatusCode::NO_CONTENT);
        let before = stored(&db);
        let valid = series(&[("__name__", "new"), ("job", "b")], &[(6_000, 1.0)]);
        let with_valid_first = |bad: FullTimeSeries| body(&request(vec![valid.clone(), bad]));
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not snappy at all".to_vec(), "decompress snappy block"),
            (snappy(&[0x0a, 0x05, 0x0a]), "decode protobuf WriteRequest"),
            // Field 1 with a string where a message belongs.
            (snappy(&[0x0a, 0x02, 0xff, 0xff]), "decode protobuf WriteRequest"),
            (with_valid_first(series(&[("job", "c")], &[(6_000, 1.0)])), "no metric name"),
            (with_valid_first(series(&[("__name__", ""), ("job", "c")], &[(6_000, 1.0)])), "no metric name"),
            (with_valid_first(series(&[("__name__", "1up")], &[(6_000, 1.0)])), "invalid metric name \"1up\""),
            (
                with_valid_first(series(&[("__name__", "up"), ("a-b", "c")], &[(6_000, 1.0)])),
                "invalid label name \"a-b\"",
            ),
            (with_valid_first(series(&[("", "c"), ("__name__", "up")], &[(6_000, 1.0)])), "invalid label name \"\""),
            (
                with_valid_first(series(&[("__name__", "up"), ("job", "c"), ("job", "d")], &[(6_000, 1.0)])),
                "duplicate label name \"job\"",
            ),
            (
                with_valid_first(series(&[("__name__", "up"), ("zone", "z"), ("job", "c")], &[(6_000, 1.0)])),
                "label names not sorted: \"job\" after \"zone\"",
            ),
            // A label set without samples is still checked.
            (with_valid_first(series(&[("job", "c")], &[])), "no metric name"),
            // Refused by the store: the batch is rolled back, `new{job="b"}` included.
            (with_valid_first(series(&[("__name__", "up"), ("job", "a")], &[(4_000, 1.0)])), "out of order sample"),
            (with_valid_first(series(&[("__name__", "up"), ("job", "a")], &[(5_000, 2.0)])), "duplicate sample"),
        ];
        for (bytes, message) in cases {
            check(&db, &before, post(&api, bytes).await, message);
        }
        // The same value at the newest timestamp is no error (Prometheus ignores it).
        let same = series(&[("__name__", "up"), ("job", "a")], &[(5_000, 1.0)]);
        assert_eq!(post(&api, body(&request(vec![same]))).await.0, StatusCode::NO_CONTENT);
        assert_eq!(stored(&db), before);
        assert_eq!(receiver.requests_total[1].load(Ordering::Relaxed), 13, "400s counted");
    }

    /// As Prometheus' head at commit: within one request, a sample not newer than the last kept
    /// sample of its series (also across two entries for the same series) is dropped.
    #[tokio::test]
    async fn out_of_order_and_duplicate_samples_within_a_request_are_dropped() {
        let db = db();
        let (api, receiver) = api(&db, Arc::new(db.clone()), ReceiverLimits::default());
        let pairs = [("__name__", "up"), ("job", "a")];
        let sent = request(vec![
            series(&pairs, &[(1_000, 1.0), (3_000, 3.0), (2_000, 2.0), (3_000, 4.0), (4_000, 5.0)]),
            series(&pairs, &[(4_000, 6.0), (5_000, 7.0)]),
        ]);
        assert_eq!(post(&api, body(&sent)).await.0, StatusCode::NO_CONTENT);
        assert_eq!(
            stored(&db),
            vec![(r#"up{job="a"}"#.to_string(), vec![(1_000, 1.0), (3_000, 3.0), (4_000, 5.0), (5_000, 7.0)])]
        );
        assert_eq!(receiver.samples_dropped_total.load(Ordering::Relaxed), 3);
        assert_eq!(receiver.samples_received_total.load(Ordering::Relaxed), 4);
    }

    #[tokio::test]
    async fn size_and_count_limits_are_413_and_checked_before_decoding() {
        let db = db();
        let limits =
            ReceiverLimits { decompressed_size_max: 200, series_count_max: 2, label_count_max: 5, sample_count_max: 3 };
        let (api, _) = api(&db, Arc::new(db.clone()), limits);
        #[track_caller]
        fn check(answer: (StatusCode, String), message: &str) {
            assert_eq!(answer.0, StatusCode::PAYLOAD_TOO_LARGE, "{message}: {}", answer.1);
            assert!(answer.1.contains(message), "{:?} lacks {message:?}", answer.1);
        }
        // The API's body limit (4096 bytes here).
        check(post(&api, vec![0; 4097]).await, "request body exceeds the limit of 4096 bytes");
        // A snappy header announcing 1 GiB: refused before any allocation.
        let mut huge = Vec::new();
        let mut length = 1_u64 << 30;
        while length >= 0x80 {
            huge.push((length as u8) | 0x80);
            length >>= 7;
        }
        huge.push(length as u8);
        check(post(&api, huge).await, "decompressed request of 1073741824 bytes exceeds the limit of 200 bytes");
        check(post(&api, snappy(&[0; 201])).await, "decompressed request of 201 bytes exceeds the limit of 200 bytes");
        let name = |value: &str| series(&[("__name__", value)], &[(1_000, 1.0)]);
        check(post(&api, body(&request(vec![name("a"), name("b"), name("c")]))).await, "more than 2 series");
        let wide = series(&[("__name__", "a"), ("b", "1"), ("c", "1"), ("d", "1"), ("e", "1")], &[(1_000, 1.0)]);
        check(post(&api, body(&request(vec![wide, name("b")]))).await, "more than 5 labels");
        let long = series(&[("__name__", "a")], &[(1_000, 1.0), (2_000, 1.0), (3_000, 1.0), (4_000, 1.0)]);
        check(post(&api, body(&request(vec![long]))).await, "more than 3 samples");
        assert_eq!(stored(&db), Vec::new());
        // At the limits: accepted.
        let full = series(&[("__name__", "a"), ("b", "1")], &[(1_000, 1.0), (2_000, 1.0)]);
        assert_eq!(post(&api, body(&request(vec![full, name("b")]))).await.0, StatusCode::NO_CONTENT);
    }

    /// Makes the error a commit fails with.
    type MakeError = fn() -> StorageError;

    /// A store whose commit fails with the given error.
    struct FailingStore(MakeError);

    struct FailingAppender(MakeError);

    impl Appendable for FailingStore {
        fn appender(&self) -> Box<dyn Appender> {
            Box::new(FailingAppender(self.0))
        }
    }

    impl Appender for FailingAppender {
        fn append(&mut self, _: Option<SeriesRef>, _: &Labels, _: i64, _: f64) -> Result<SeriesRef, AppendError> {
            Ok(SeriesRef(1))
        }
        fn append_by_ref(&mut self, _: SeriesRef, _: i64, _: f64) -> Result<(), AppendError> {
            Ok(())
        }
        fn commit(self: Box<Self>) -> CommitFuture {
            panic!("the receiver must not wait for queue room: try_commit, not commit")
        }
        fn try_commit(self: Box<Self>) -> CommitFuture {
            let error = (self.0)();
            Box::pin(async move { Err(error) })
        }
        fn rollback(self: Box<Self>) {}
    }

    #[tokio::test]
    async fn storage_faults_are_retryable_statuses() {
        #[track_caller]
        fn check(answer: (StatusCode, String), status: StatusCode, message: &str) {
            assert_eq!(answer.0, status, "{}", answer.1);
            assert!(answer.1.contains(message), "{:?} lacks {message:?}", answer.1);
        }
        let sent = body(&request(vec![series(&[("__name__", "up")], &[(1_000, 1.0)])]));
        let cases: [(MakeError, StatusCode, &str); 3] = [
            (
                || StorageError::CommitQueueFull { capacity_count: 1024 },
                StatusCode::TOO_MANY_REQUESTS,
                "commit queue full",
            ),
            (
                || StorageError::NotReady { reason: "disk full".to_string() },
                StatusCode::SERVICE_UNAVAILABLE,
                "disk full",
            ),
            (
                || StorageError::Write { context: "write wal", source: "EIO".into() },
                StatusCode::INTERNAL_SERVER_ERROR,
                "write wal: EIO",
            ),
        ];
        for (error, status, message) in cases {
            let db = db();
            let (api, _) = api(&db, Arc::new(FailingStore(error)), ReceiverLimits::default());
            check(post(&api, sent.clone()).await, status, message);
        }
    }

    #[tokio::test]
    async fn disabled_receiver_is_404_and_only_post_is_allowed() {
        let db = db();
        let engine = Engine::new(Arc::new(db.clone()), EngineOptions::default());
        let disabled = Api::new(
            engine,
            Arc::new(FixedClock),
            db.clone(),
            Arc::new(SelfMetrics::default()),
            4096,
            Arc::new(TokioSpawner),
        );
        let (status, message) = post(&disabled, Vec::new()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(message.contains("--web.enable-remote-write-receiver"), "{message}");
        let (api, _) = api(&db, Arc::new(db.clone()), ReceiverLimits::default());
        assert_eq!(call(&api, Method::GET, "/api/v1/write", Vec::new()).await.0, StatusCode::METHOD_NOT_ALLOWED);
        // Not even snappy's length header.
        assert_eq!(post(&api, Vec::new()).await.0, StatusCode::BAD_REQUEST);
        // An empty request is a valid no-op.
        assert_eq!(post(&api, snappy(&[])).await.0, StatusCode::NO_CONTENT);
    }

    fn arbitrary_request() -> impl Strategy<Value = WriteRequest> {
        let label = ("[a-z_]{0,6}", "\\PC{0,6}").prop_map(|(name, value)| Label { name, value });
        let sample = (any::<f64>(), any::<i64>()).prop_map(|(value, timestamp)| Sample { value, timestamp });
        let series = (prop::collection::vec(label, 0..4), prop::collection::vec(sample, 0..4))
            .prop_map(|(labels, samples)| TimeSeries { labels, samples });
        prop::collection::vec(series, 0..4).prop_map(|timeseries| WriteRequest { timeseries })
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(sent in arbitrary_request()) {
            let decoded = decode(&snappy(&sent.encode_to_vec()), &ReceiverLimits::default()).unwrap();
            // Compared as bytes: NaN != NaN, and proto3 does not tell -0.0 from an absent 0.0.
            prop_assert_eq!(decoded.encode_to_vec(), sent.encode_to_vec());
        }

        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let limits = ReceiverLimits::default();
            let _ = decode(&bytes, &limits).map(validate);
            let _ = decode(&snappy(&bytes), &limits).map(validate);
        }
    }
}
