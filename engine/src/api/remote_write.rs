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
