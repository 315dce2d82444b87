//! The remote-read endpoint (`POST /api/v1/read`), as Prometheus 2.42's
//! `storage/remote/read_handler.go` serves it: a snappy-compressed protobuf
//! `prometheus.ReadRequest` of one or more queries (a time range and label matchers each),
//! answered with either response type the client accepts, in the client's order of preference:
//! - `SAMPLES` (the default, and what Prometheus' own `remote_read` client asks for): one
//!   snappy-compressed `ReadResponse` with every series' raw samples;
//! - `STREAMED_XOR_CHUNKS` (Thanos' sidecar asks for it): a sequence of frames, each
//!   `uvarint(length) | CRC32-Castagnoli(data), big-endian | data`, `data` a protobuf
//!   `ChunkedReadResponse` holding one series' XOR chunks (at most 120 samples each, as the
//!   head cuts them) and its query's index; a series whose chunks pass the frame size limit is
//!   split over several frames.
//!
//! External labels work as in Prometheus: an equality matcher on an external label with the
//! external value is dropped before selecting (the labels are not stored), and every series
//! answered carries the external labels it does not have itself.
//!
//! Bounds: the request body by the API's body limit (413) and its decompressed size
//! ([`REMOTE_READ_DECOMPRESSED_SIZE_MAX`], 400, checked on snappy's header before
//! decompressing); the samples of one request by the sample limit (400 past it, as Prometheus'
//! `--storage.remote.read-sample-limit`, for both response types: the answer is built in memory);
//! requests at once by the concurrency limit (503 past it, where Prometheus waits on a gate).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body;
use hyper::{Method, Request, Response, StatusCode};
use prost::Message as _;

use super::remote_write::{Label, Sample, TimeSeries};
use crate::model::{Labels, MatchKind, Matcher};
use crate::storage::{Queryable, SelectHints};
use crate::tsdb::chunk::XorChunk;

/// Largest decompressed request, bytes.
pub const REMOTE_READ_DECOMPRESSED_SIZE_MAX: usize = 32 * 1024 * 1024;

/// Samples one XOR chunk of a streamed answer holds at most (the head's chunk size).
pub const REMOTE_READ_CHUNK_SAMPLE_COUNT_MAX: usize = 120;

/// `ReadRequest.ResponseType.SAMPLES`.
pub const RESPONSE_TYPE_SAMPLES: i32 = 0;
/// `ReadRequest.ResponseType.STREAMED_XOR_CHUNKS`.
pub const RESPONSE_TYPE_STREAMED_XOR_CHUNKS: i32 = 1;
/// `Chunk.Encoding.XOR`.
pub const CHUNK_ENCODING_XOR: i32 = 1;

/// The streamed response's content type.
pub const STREAMED_CONTENT_TYPE: &str = "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse";

/// `prometheus.ReadRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadRequest {
    /// The queries, answered in order.
    #[prost(message, repeated, tag = "1")]
    pub queries: Vec<Query>,
    /// Response types the client takes, preferred first (empty: `SAMPLES`).
    #[prost(int32, repeated, tag = "2")]
    pub accepted_response_types: Vec<i32>,
}

/// `prometheus.Query`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Query {
    /// Inclusive start, Unix ms.
    #[prost(int64, tag = "1")]
    pub start_timestamp_ms: i64,
    /// Inclusive end, Unix ms.
    #[prost(int64, tag = "2")]
    pub end_timestamp_ms: i64,
    /// Every matcher must match.
    #[prost(message, repeated, tag = "3")]
    pub matchers: Vec<LabelMatcher>,
    /// What the client will do with the data.
    #[prost(message, optional, tag = "4")]
    pub hints: Option<ReadHints>,
}

/// `prometheus.LabelMatcher`; `type` 0 `=`, 1 `!=`, 2 `=~`, 3 `!~`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelMatcher {
    /// Matcher type.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// Label name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Value or regular expression.
    #[prost(string, tag = "3")]
    pub value: String,
}

/// `prometheus.ReadHints`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadHints {
    /// Query step, ms.
    #[prost(int64, tag = "1")]
    pub step_ms: i64,
    /// Surrounding function.
    #[prost(string, tag = "2")]
    pub func: String,
    /// Start the client needs, Unix ms.
    #[prost(int64, tag = "3")]
    pub start_ms: i64,
    /// End the client needs, Unix ms.
    #[prost(int64, tag = "4")]
    pub end_ms: i64,
    /// Aggregation grouping labels.
    #[prost(string, repeated, tag = "5")]
    pub grouping: Vec<String>,
    /// `by` (true) or `without`.
    #[prost(bool, tag = "6")]
    pub by: bool,
    /// Range of a range selector, ms.
    #[prost(int64, tag = "7")]
    pub range_ms: i64,
}

/// `prometheus.ReadResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadResponse {
    /// One result per query, in order.
    #[prost(message, repeated, tag = "1")]
    pub results: Vec<QueryResult>,
}

/// `prometheus.QueryResult`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct QueryResult {
    /// Matching series with their samples in range.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.ChunkedReadResponse`: one frame of a streamed answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ChunkedReadResponse {
    /// Series (this engine sends one per frame).
    #[prost(message, repeated, tag = "1")]
    pub chunked_series: Vec<ChunkedSeries>,
    /// Index of the query the series answers.
    #[prost(int64, tag = "2")]
    pub query_index: i64,
}

/// `prometheus.ChunkedSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ChunkedSeries {
    /// Labels, sorted.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Chunks, oldest first, not overlapping.
    #[prost(message, repeated, tag = "2")]
    pub chunks: Vec<Chunk>,
}

/// `prometheus.Chunk`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Chunk {
    /// First sample's time, Unix ms.
    #[prost(int64, tag = "1")]
    pub min_time_ms: i64,
    /// Last sample's time, Unix ms.
    #[prost(int64, tag = "2")]
    pub max_time_ms: i64,
    /// Encoding; always XOR here.
    #[prost(int32, tag = "3")]
    pub r#type: i32,
    /// Prometheus' chunk bytes (sample count header included).
    #[prost(bytes = "vec", tag = "4")]
    pub data: Vec<u8>,
}

/// Limits of the endpoint (Prometheus' `--storage.remote.read-*` flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteReadLimits {
    /// Most samples one request answers (0: no limit).
    pub sample_count_max: usize,
    /// Most requests served at once.
    pub concurrency_max: usize,
    /// Largest frame of a streamed answer, bytes.
    pub frame_size_max: usize,
}

impl Default for RemoteReadLimits {
    fn default() -> Self {
        RemoteReadLimits { sample_count_max: 50_000_000, concurrency_max: 10, frame_size_max: 1_048_576 }
    }
}

/// The endpoint's state: its limits and the requests in flight.
pub struct RemoteReadServer {
    limits: RemoteReadLimits,
    in_flight: Arc<tokio::sync::Semaphore>,
}

/// Why a request was refused; the message is the response body.
#[derive(Debug, PartialEq, Eq)]
pub struct ReadError {
    /// HTTP status.
    pub status: StatusCode,
    /// Text.
    pub message: String,
}

fn bad_request(message: impl Into<String>) -> ReadError {
    ReadError { status: StatusCode::BAD_REQUEST, message: message.into() }
}

/// A successful answer: content type, content encoding (if any) and body.
#[derive(Debug)]
pub struct ReadAnswer {
    /// `Content-Type`.
    pub content_type: &'static str,
    /// `Content-Encoding`, `snappy` for the samples type.
    pub content_encoding: Option<&'static str>,
    /// Body.
    pub body: Vec<u8>,
}

impl RemoteReadServer {
    /// An endpoint with `limits`.
    pub fn new(limits: RemoteReadLimits) -> Self {
        RemoteReadServer { limits, in_flight: Arc::new(tokio::sync::Semaphore::new(limits.concurrency_max.max(1))) }
    }

    /// Serves one HTTP request.
    pub async fn serve<B>(
        &self,
        queryable: &dyn Queryable,
        external_labels: &BTreeMap<String, String>,
        request: Request<B>,
        body_size_max: usize,
    ) -> Response<Full<Bytes>>
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if request.method() != Method::POST {
            return text_response(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n".to_string());
        }
        let Ok(_permit) = self.in_flight.try_acquire() else {
            return text_response(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("too many remote read requests at once (limit {})\n", self.limits.concurrency_max),
            );
        };
        let body = match Limited::new(request.into_body(), body_size_max).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => return text_response(StatusCode::PAYLOAD_TOO_LARGE, format!("read body: {error}\n")),
        };
        match self.answer(queryable, external_labels, &body) {
            Ok(answer) => {
                let mut builder =
                    Response::builder().status(StatusCode::OK).header("Content-Type", answer.content_type);
                if let Some(encoding) = answer.content_encoding {
                    builder = builder.header("Content-Encoding", encoding);
                }
                builder
                    .body(Full::new(Bytes::from(answer.body)))
                    .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
            }
            Err(error) => text_response(error.status, format!("{}\n", error.message)),
        }
    }

    /// The answer to one request body.
    pub fn answer(
        &self,
        queryable: &dyn Queryable,
        external_labels: &BTreeMap<String, String>,
        body: &[u8],
    ) -> Result<ReadAnswer, ReadError> {
        let size = snap::raw::decompress_len(body)
            .map_err(|error| bad_request(format!("decompress snappy block: {error}")))?;
        if size > REMOTE_READ_DECOMPRESSED_SIZE_MAX {
            return Err(bad_request(format!(
                "decompressed request of {size} bytes exceeds the limit of {REMOTE_READ_DECOMPRESSED_SIZE_MAX} bytes"
            )));
        }
        let bytes = snap::raw::Decoder::new()
            .decompress_vec(body)
            .map_err(|error| bad_request(format!("decompress snappy block: {error}")))?;
        let request = ReadRequest::decode(bytes.as_slice())
            .map_err(|error| bad_request(format!("decode protobuf ReadRequest: {error}")))?;
        let response_type = negotiate(&request.accepted_response_types)?;
        let mut results: Vec<Vec<(Labels, Vec<Sample>)>> = Vec::with_capacity(request.queries.len());
        let mut sample_count = 0_usize;
        for query in &request.queries {
            let series = self.select(queryable, external_labels, query, &mut sample_count)?;
            results.push(series);
        }
        match response_type {
            RESPONSE_TYPE_STREAMED_XOR_CHUNKS => Ok(ReadAnswer {
                content_type: STREAMED_CONTENT_TYPE,
                content_encoding: None,
                body: stream_frames(&results, self.limits.frame_size_max),
            }),
            _ => {
                let response = ReadResponse {
                    results: results
                        .into_iter()
                        .map(|series| QueryResult {
                            timeseries: series
                                .into_iter()
                                .map(|(labels, samples)| TimeSeries { labels: wire_labels(&labels), samples })
                                .collect(),
                        })
                        .collect(),
                };
                let protobuf = response.encode_to_vec();
                let body = snap::raw::Encoder::new().compress_vec(&protobuf).map_err(|error| ReadError {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    message: format!("compress response: {error}"),
                })?;
                Ok(ReadAnswer { content_type: "application/x-protobuf", content_encoding: Some("snappy"), body })
            }
        }
    }

    /// One query's series (external labels merged in), counting samples against the limit.
    fn select(
        &self,
        queryable: &dyn Queryable,
        external_labels: &BTreeMap<String, String>,
        query: &Query,
        sample_count: &mut usize,
    ) -> Result<Vec<(Labels, Vec<Sample>)>, ReadError> {
        let matchers = matchers(&query.matchers, external_labels)?;
        if matchers.is_empty() {
            // As Prometheus' index: no matcher selects nothing.
            return Ok(Vec::new());
        }
        let (start_ms, end_ms) = (query.start_timestamp_ms, query.end_timestamp_ms);
        let querier = queryable
            .querier(start_ms, end_ms)
            .map_err(|error| ReadError { status: StatusCode::INTERNAL_SERVER_ERROR, message: error.to_string() })?;
        let hints = query.hints.as_ref().map(|hints| SelectHints {
            start_ms: hints.start_ms,
            end_ms: hints.end_ms,
            step_ms: hints.step_ms,
            range_ms: hints.range_ms,
            function: (!hints.func.is_empty()).then(|| hints.func.clone()),
        });
        let mut answered = Vec::new();
        for series in querier.select(hints.as_ref(), &matchers) {
            let series = series
                .map_err(|error| ReadError { status: StatusCode::INTERNAL_SERVER_ERROR, message: error.to_string() })?;
            let samples: Vec<Sample> = series
                .samples
                .iter()
                .filter(|sample| (start_ms..=end_ms).contains(&sample.timestamp_ms))
                .map(|sample| Sample { value: sample.value, timestamp: sample.timestamp_ms })
                .collect();
            *sample_count += samples.len();
            if self.limits.sample_count_max > 0 && *sample_count > self.limits.sample_count_max {
                return Err(bad_request(format!(
                    "exceeded sample limit ({}): narrow the query's time range or matchers",
                    self.limits.sample_count_max
                )));
            }
            answered.push((with_external_labels(series.labels, external_labels), samples));
        }
        Ok(answered)
    }
}

fn text_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("Content-Type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// The first accepted type this server speaks (none listed: `SAMPLES`).
fn negotiate(accepted: &[i32]) -> Result<i32, ReadError> {
    if accepted.is_empty() {
        return Ok(RESPONSE_TYPE_SAMPLES);
    }
    accepted
        .iter()
        .copied()
        .find(|kind| [RESPONSE_TYPE_SAMPLES, RESPONSE_TYPE_STREAMED_XOR_CHUNKS].contains(kind))
        .ok_or_else(|| {
            bad_request(format!("server does not support any of the requested response types: {accepted:?}"))
        })
}

/// The request's matchers, without equality matchers that an external label satisfies.
fn matchers(wire: &[LabelMatcher], external_labels: &BTreeMap<String, String>) -> Result<Vec<Matcher>, ReadError> {
    let mut matchers = Vec::with_capacity(wire.len());
    for matcher in wire {
        let kind = match matcher.r#type {
            0 => MatchKind::Equal,
            1 => MatchKind::NotEqual,
            2 => MatchKind::Regex,
            3 => MatchKind::NotRegex,
            other => return Err(bad_request(format!("invalid matcher type {other}"))),
        };
        if kind == MatchKind::Equal && external_labels.get(&matcher.name) == Some(&matcher.value) {
            continue;
        }
        let built = Matcher::new(kind, &matcher.name, &matcher.value)
            .map_err(|error| bad_request(format!("invalid regular expression {:?}: {error}", matcher.value)))?;
        matchers.push(built);
    }
    Ok(matchers)
}

/// `labels` plus each external label it lacks (its own value wins).
fn with_external_labels(mut labels: Labels, external_labels: &BTreeMap<String, String>) -> Labels {
    for (name, value) in external_labels {
        if labels.get(name).is_none() {
            labels.set(name, value);
        }
    }
    labels
}

fn wire_labels(labels: &Labels) -> Vec<Label> {
    labels.iter().map(|label| Label { name: label.name.clone(), value: label.value.clone() }).collect()
}

/// Every series of every query as frames (see the module comment).
fn stream_frames(results: &[Vec<(Labels, Vec<Sample>)>], frame_size_max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for (query_index, series) in results.iter().enumerate() {
        for (labels, samples) in series {
            let labels = wire_labels(labels);
            let labels_size: usize = labels.iter().map(|label| label.name.len() + label.value.len() + 8).sum();
            let mut frame = ChunkedSeries { labels: labels.clone(), chunks: Vec::new() };
            let mut frame_size = labels_size;
            for window in samples.chunks(REMOTE_READ_CHUNK_SAMPLE_COUNT_MAX) {
                let mut chunk = XorChunk::new();
                for sample in window {
                    chunk.append(sample.timestamp, sample.value);
                }
                let chunk = Chunk {
                    min_time_ms: window[0].timestamp,
                    max_time_ms: window[window.len() - 1].timestamp,
                    r#type: CHUNK_ENCODING_XOR,
                    data: chunk.bytes().to_vec(),
                };
                let chunk_size = chunk.data.len() + 32;
                if !frame.chunks.is_empty() && frame_size + chunk_size > frame_size_max {
                    write_frame(&mut out, &frame, query_index);
                    frame = ChunkedSeries { labels: labels.clone(), chunks: Vec::new() };
                    frame_size = labels_size;
                }
                frame_size += chunk_size;
                frame.chunks.push(chunk);
            }
            write_frame(&mut out, &frame, query_index);
        }
    }
    out
}

fn write_frame(out: &mut Vec<u8>, series: &ChunkedSeries, query_index: usize) {
    let message = ChunkedReadResponse { chunked_series: vec![series.clone()], query_index: query_index as i64 };
    let data = message.encode_to_vec();
    prost::encoding::encode_varint(data.len() as u64, out);
    out.extend_from_slice(&crc32c::crc32c(&data).to_be_bytes());
    out.extend_from_slice(&data);
}

/// Splits a streamed answer back into its messages, checking each frame's CRC (tests, and the
/// engine's own remote-read client).
pub fn read_frames(mut bytes: &[u8]) -> Result<Vec<ChunkedReadResponse>, String> {
    let mut messages = Vec::new();
    while !bytes.is_empty() {
        let size = prost::encoding::decode_varint(&mut bytes).map_err(|error| format!("frame length: {error}"))?;
        let size = usize::try_from(size).map_err(|_| "frame length overflows".to_string())?;
        if bytes.len() < 4 + size {
            return Err(format!("frame of {size} bytes runs past the end"));
        }
        let (checksum, rest) = bytes.split_at(4);
        let (data, rest) = rest.split_at(size);
        let expected = u32::from_be_bytes([checksum[0], checksum[1], checksum[2], checksum[3]]);
        if crc32c::crc32c(data) != expected {
            return Err("frame checksum mismatch".to_string());
        }
        messages.push(ChunkedReadResponse::decode(data).map_err(|error| format!("decode frame: {error}"))?);
        bytes = rest;
    }
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::io::{MemFileSystem, TokioSpawner};
    use crate::storage::Appendable;
    use crate::tsdb::{Db, DbOptions};

    async fn db() -> Db {
        let db = Db::open(Arc::new(MemFileSystem::default()), &TokioSpawner, Path::new("/db"), DbOptions::default())
            .unwrap();
        let mut appender = db.appender();
        for (job, offset) in [("a", 0.0), ("b", 100.0)] {
            let labels = Labels::from_pairs([("__name__", "up"), ("job", job), ("instance", "h:1")]);
            for step in 0..300 {
                appender.append(None, &labels, 1_000_000 + step * 1_000, offset + step as f64).unwrap();
            }
        }
        appender.commit().await.unwrap();
        db
    }

    fn request(queries: Vec<Query>, accepted: Vec<i32>) -> Vec<u8> {
        let protobuf = ReadRequest { queries, accepted_response_types: accepted }.encode_to_vec();
        snap::raw::Encoder::new().compress_vec(&protobuf).unwrap()
    }

    fn query(start_ms: i64, end_ms: i64, matchers: &[(i32, &str, &str)]) -> Query {
        Query {
            start_timestamp_ms: start_ms,
            end_timestamp_ms: end_ms,
            matchers: matchers
                .iter()
                .map(|&(kind, name, value)| LabelMatcher {
                    r#type: kind,
                    name: name.to_string(),
                    value: value.to_string(),
                })
                .collect(),
            hints: None,
        }
    }

    fn external() -> BTreeMap<String, String> {
        BTreeMap::from([("replica".to_string(), "r1".to_string())])
    }

    fn label_pairs(labels: &[Label]) -> Vec<(&str, &str)> {
        labels.iter().map(|label| (label.name.as_str(), label.value.as_str())).collect()
    }

    #[tokio::test]
    async fn samples_answer_with_external_labels_and_ranges_inclusive() {
        let db = db().await;
        let server = RemoteReadServer::new(RemoteReadLimits::default());
        let body = request(
            vec![
                query(1_010_000, 1_012_000, &[(0, "__name__", "up"), (0, "replica", "r1")]),
                query(0, i64::MAX, &[(2, "job", "b|c"), (0, "__name__", "up")]),
                query(0, i64::MAX, &[(0, "replica", "other"), (0, "__name__", "up")]),
            ],
            vec![],
        );
        let answer = server.answer(&db, &external(), &body).unwrap();
        assert_eq!((answer.content_type, answer.content_encoding), ("application/x-protobuf", Some("snappy")));
        let response =
            ReadResponse::decode(snap::raw::Decoder::new().decompress_vec(&answer.body).unwrap().as_slice()).unwrap();
        assert_eq!(response.results.len(), 3);
        let first = &response.results[0].timeseries;
        assert_eq!(first.len(), 2, "the external label's own matcher is dropped, both jobs match");
        assert_eq!(
            label_pairs(&first[0].labels),
            [("__name__", "up"), ("instance", "h:1"), ("job", "a"), ("replica", "r1")]
        );
        let times: Vec<i64> = first[0].samples.iter().map(|sample| sample.timestamp).collect();
        assert_eq!(times, [1_010_000, 1_011_000, 1_012_000], "both ends inclusive");
        assert_eq!(first[1].samples[0].value, 110.0);
        assert_eq!(response.results[1].timeseries.len(), 1);
        assert_eq!(response.results[1].timeseries[0].samples.len(), 300);
        assert!(response.results[2].timeseries.is_empty(), "another replica's label matches nothing here");
    }

    #[tokio::test]
    async fn streamed_chunks_decode_to_the_same_samples_in_framed_crc_checked_messages() {
        let db = db().await;
        let server = RemoteReadServer::new(RemoteReadLimits { frame_size_max: 400, ..RemoteReadLimits::default() });
        let body =
            request(vec![query(0, i64::MAX, &[(0, "__name__", "up")])], vec![5, RESPONSE_TYPE_STREAMED_XOR_CHUNKS]);
        let answer = server.answer(&db, &external(), &body).unwrap();
        assert_eq!((answer.content_type, answer.content_encoding), (STREAMED_CONTENT_TYPE, None));
        let frames = read_frames(&answer.body).unwrap();
        assert!(frames.len() > 2, "a small frame limit splits each series: {} frames", frames.len());
        type LabelPairs = Vec<(String, String)>;
        let mut by_series: BTreeMap<LabelPairs, Vec<(i64, f64)>> = BTreeMap::new();
        for frame in &frames {
            assert_eq!(frame.query_index, 0);
            assert_eq!(frame.chunked_series.len(), 1);
            let series = &frame.chunked_series[0];
            let key: LabelPairs = series.labels.iter().map(|label| (label.name.clone(), label.value.clone())).collect();
            for chunk in &series.chunks {
                assert_eq!(chunk.r#type, CHUNK_ENCODING_XOR);
                let samples = crate::tsdb::chunk::decode(&chunk.data).unwrap();
                assert!(samples.len() <= REMOTE_READ_CHUNK_SAMPLE_COUNT_MAX);
                assert_eq!((samples[0].0, samples[samples.len() - 1].0), (chunk.min_time_ms, chunk.max_time_ms));
                by_series.entry(key.clone()).or_default().extend(samples);
            }
        }
        assert_eq!(by_series.len(), 2);
        for (labels, samples) in &by_series {
            assert!(labels.contains(&("replica".to_string(), "r1".to_string())));
            assert_eq!(samples.len(), 300);
            assert!(samples.windows(2).all(|pair| pair[0].0 + 1_000 == pair[1].0));
        }
        let mut damaged = answer.body.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert!(read_frames(&damaged).is_err(), "a flipped bit fails the frame's CRC");
    }

    #[tokio::test]
    async fn bad_requests_and_limits_are_refused_plainly() {
        let db = db().await;
        let server = RemoteReadServer::new(RemoteReadLimits { sample_count_max: 400, ..RemoteReadLimits::default() });
        let status = |body: &[u8]| server.answer(&db, &BTreeMap::new(), body).map(|_| ()).map_err(|error| error.status);
        assert_eq!(status(b"not snappy at all"), Err(StatusCode::BAD_REQUEST));
        let garbage = snap::raw::Encoder::new().compress_vec(&[0xff, 0xff, 0xff]).unwrap();
        assert_eq!(status(&garbage), Err(StatusCode::BAD_REQUEST));
        let unknown_type = request(vec![query(0, i64::MAX, &[(0, "__name__", "up")])], vec![7]);
        let error = server.answer(&db, &BTreeMap::new(), &unknown_type).unwrap_err();
        assert!(error.message.contains("does not support"), "{}", error.message);
        let bad_regex = request(vec![query(0, i64::MAX, &[(2, "job", "(")])], vec![]);
        assert_eq!(status(&bad_regex), Err(StatusCode::BAD_REQUEST));
        let bad_matcher = request(vec![query(0, i64::MAX, &[(9, "job", "a")])], vec![]);
        assert_eq!(status(&bad_matcher), Err(StatusCode::BAD_REQUEST));
        let too_many = request(vec![query(0, i64::MAX, &[(0, "__name__", "up")])], vec![]);
        let error = server.answer(&db, &BTreeMap::new(), &too_many).unwrap_err();
        assert!(error.message.contains("sample limit (400)"), "{}", error.message);
        let within = request(vec![query(0, i64::MAX, &[(0, "job", "a")])], vec![]);
        assert_eq!(status(&within), Ok(()), "300 samples fit");
        let none = request(vec![query(0, i64::MAX, &[])], vec![]);
        assert_eq!(status(&none), Ok(()), "no matcher: nothing, as Prometheus");
    }
}
