//! The remote read client (`remote_read` in the configuration): before a query evaluates, the
//! series its selectors need over its time range are read from each configured store's
//! `/api/v1/read` (Prometheus, this engine, Thanos, VictoriaMetrics...) and merged with the local
//! storage, as Prometheus' fanout storage merges its secondary queriers.
//!
//! Per store, as Prometheus 2.42 (`storage/remote/read.go`):
//! - `required_matchers`: a selector without each of them as an equality matcher is not sent;
//! - `filter_external_labels`: the engine's external labels a selector does not match on are sent
//!   as equality matchers, and removed from the answered series, so a store holding several
//!   servers' data answers this one's;
//! - `read_recent: false`: the store is asked only for times before the oldest local sample
//!   (nothing when the query starts after it).
//!
//! Merging: series with equal labels from local and remote become one, samples merged by time,
//! the local sample kept on equal timestamps ([`crate::storage::merge`]). A store that fails or
//! times out is a warning in the answer (`remote read from <name>: ...`), never a failed query.
//!
//! Bounds: one request per store per query, all selectors in it; the answer at most
//! [`REMOTE_READ_CLIENT_RESPONSE_SIZE_MAX_BYTES`] on the wire and
//! [`REMOTE_READ_CLIENT_DECOMPRESSED_SIZE_MAX_BYTES`] decompressed; `remote_timeout` per request.
//! The fetched series live in memory for the query's evaluation only.
//!
//! Concurrency: every store is read at once, each on its own task (through the environment's
//! spawner); the answers merge in configuration order. Time and network only through the
//! [`Env`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use prost::Message as _;

use crate::api::remote_read::{
    read_frames, LabelMatcher, Query, ReadRequest, ReadResponse, RESPONSE_TYPE_SAMPLES,
    RESPONSE_TYPE_STREAMED_XOR_CHUNKS,
};
use crate::config::{Config, RemoteReadConfig};
use crate::io::http_client::{self, HttpEndpoint, HttpRequest};
use crate::io::Env;
use crate::model::{Label, Labels, MatchKind, Matcher, Sample};
use crate::promql::QueryReach;
use crate::storage::merge::{merge_samples, MergeQuerier};
use crate::storage::{Querier, Queryable, SelectHints, Series, SeriesSet, StorageError};

/// Largest remote read answer on the wire, bytes.
pub const REMOTE_READ_CLIENT_RESPONSE_SIZE_MAX_BYTES: usize = 128 * 1024 * 1024;

/// Largest decompressed `SAMPLES` answer, bytes.
pub const REMOTE_READ_CLIENT_DECOMPRESSED_SIZE_MAX_BYTES: usize = 512 * 1024 * 1024;

/// One store.
pub(crate) struct ReadClient {
    config: RemoteReadConfig,
    endpoint: HttpEndpoint,
}

/// The stores of the configuration in force.
pub struct RemoteReaders {
    env: Env,
    /// `--query.store` entries, fixed for the process's life.
    query_stores: Vec<RemoteReadConfig>,
    clients: Mutex<Arc<Vec<ReadClient>>>,
    external_labels: Mutex<BTreeMap<String, String>>,
}

/// What the stores answered for one query.
pub struct Prefetched {
    /// Every series fetched, merged by labels.
    pub store: Arc<SeriesStore>,
    /// One line per store that failed.
    pub warnings: Vec<String>,
}

impl RemoteReaders {
    /// `query_stores` (the query node's `--query.store` base URLs, always read) and, after
    /// [`RemoteReaders::apply_config`], the configuration's `remote_read` stores.
    pub fn new(env: Env, query_stores: &[String], remote_timeout_ms: i64) -> Arc<RemoteReaders> {
        let query_stores = query_stores
            .iter()
            .map(|base| {
                let url = format!("{}/api/v1/read", base.trim_end_matches('/'));
                RemoteReadConfig {
                    name: base.trim_start_matches("http://").trim_end_matches('/').to_string(),
                    url,
                    remote_timeout_ms,
                    headers: BTreeMap::new(),
                    authorization: None,
                    required_matchers: BTreeMap::new(),
                    read_recent: true,
                    filter_external_labels: false,
                }
            })
            .collect();
        let readers = Arc::new(RemoteReaders {
            env,
            query_stores,
            clients: Mutex::new(Arc::new(Vec::new())),
            external_labels: Mutex::new(BTreeMap::new()),
        });
        readers.set_clients(&[]);
        readers
    }

    /// Takes the `remote_read` section and external labels of `config`.
    pub fn apply_config(&self, config: &Config) {
        self.set_clients(&config.remote_read);
        *self.external_labels.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
            config.global.external_labels.clone();
    }

    fn set_clients(&self, remote_read: &[RemoteReadConfig]) {
        let clients: Vec<ReadClient> = self
            .query_stores
            .iter()
            .chain(remote_read)
            .filter_map(|entry| match HttpEndpoint::parse(&entry.url) {
                Ok(endpoint) => Some(ReadClient { config: entry.clone(), endpoint }),
                Err(error) => {
                    tracing::error!(url = %entry.url, %error, "remote read store skipped");
                    None
                }
            })
            .collect();
        *self.clients.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(clients);
    }

    /// Whether `--query.store`s are configured (the engine is a query node).
    pub fn has_query_stores(&self) -> bool {
        !self.query_stores.is_empty()
    }

    /// Whether any store is configured.
    pub fn is_empty(&self) -> bool {
        self.clients.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).is_empty()
    }

    /// Reads what `reach` needs from every store; `local_start_ms` is the oldest local sample
    /// (for `read_recent: false`).
    pub async fn prefetch(&self, reach: &QueryReach, local_start_ms: Option<i64>) -> Prefetched {
        let clients = self.clients.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let external_labels =
            Arc::new(self.external_labels.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone());
        let selectors = Arc::new(reach.selectors.clone());
        // Every store at once, each on its own task; the answers are taken in configuration
        // order, so the merge does not depend on which store answered first.
        let mut answers = Vec::new();
        for (index, client) in clients.iter().enumerate() {
            let mut end_ms = reach.max_time_ms;
            if !client.config.read_recent {
                if let Some(local_start_ms) = local_start_ms {
                    if reach.min_time_ms > local_start_ms {
                        continue;
                    }
                    end_ms = end_ms.min(local_start_ms);
                }
            }
            let (sender, receiver) = tokio::sync::oneshot::channel();
            let (env, clients, selectors, external_labels) =
                (self.env.clone(), clients.clone(), selectors.clone(), external_labels.clone());
            let start_ms = reach.min_time_ms;
            self.env.spawner.spawn(
                "remote-read",
                Box::pin(async move {
                    let answer = clients[index].read(&env, &selectors, start_ms, end_ms, &external_labels).await;
                    let _ = sender.send(answer);
                }),
            );
            answers.push((client.config.name.clone(), receiver));
        }
        let mut store = SeriesStore::default();
        let mut warnings = Vec::new();
        for (name, receiver) in answers {
            let answer = receiver.await.unwrap_or_else(|_| Err("the read ended without an answer".to_string()));
            match answer {
                Ok(series) => series.into_iter().for_each(|series| store.add(series)),
                Err(error) => {
                    tracing::warn!(store = %name, %error, "remote read failed");
                    warnings.push(format!("remote read from {name}: {error}"));
                }
            }
        }
        Prefetched { store: Arc::new(store), warnings }
    }
}

impl ReadClient {
    /// A client of the store `config` names.
    pub(crate) fn new(config: RemoteReadConfig) -> Result<ReadClient, String> {
        let endpoint = HttpEndpoint::parse(&config.url).map_err(|error| error.to_string())?;
        Ok(ReadClient { config, endpoint })
    }

    /// The series of `selectors` over `[start_ms, end_ms]` from this store.
    pub(crate) async fn read(
        &self,
        env: &Env,
        selectors: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
        external_labels: &BTreeMap<String, String>,
    ) -> Result<Vec<Series>, String> {
        let mut queries = Vec::new();
        let mut added_labels: Vec<Vec<String>> = Vec::new();
        for matchers in selectors {
            let has_required = self.config.required_matchers.iter().all(|(name, value)| {
                matchers
                    .iter()
                    .any(|matcher| matcher.kind == MatchKind::Equal && matcher.name == *name && matcher.value == *value)
            });
            if !has_required {
                continue;
            }
            let mut wire: Vec<LabelMatcher> = matchers.iter().map(wire_matcher).collect();
            let mut added = Vec::new();
            if self.config.filter_external_labels {
                for (name, value) in external_labels {
                    if matchers.iter().all(|matcher| matcher.name != *name) {
                        wire.push(LabelMatcher { r#type: 0, name: name.clone(), value: value.clone() });
                        added.push(name.clone());
                    }
                }
            }
            queries.push(Query { start_timestamp_ms: start_ms, end_timestamp_ms: end_ms, matchers: wire, hints: None });
            added_labels.push(added);
        }
        if queries.is_empty() {
            return Ok(Vec::new());
        }
        let request = ReadRequest {
            queries,
            accepted_response_types: vec![RESPONSE_TYPE_STREAMED_XOR_CHUNKS, RESPONSE_TYPE_SAMPLES],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .map_err(|error| format!("compress request: {error}"))?;
        let mut headers = vec![
            ("Content-Encoding".to_string(), "snappy".to_string()),
            ("Accept-Encoding".to_string(), "snappy".to_string()),
            ("X-Prometheus-Remote-Read-Version".to_string(), "0.1.0".to_string()),
        ];
        if let Some(authorization) = &self.config.authorization {
            headers.push(("Authorization".to_string(), authorization.clone()));
        }
        headers.extend(self.config.headers.iter().map(|(name, value)| (name.clone(), value.clone())));
        let http_request = HttpRequest {
            method: hyper::Method::POST,
            endpoint: self.endpoint.clone(),
            headers,
            content_type: "application/x-protobuf".to_string(),
            body: Bytes::from(body),
        };
        let response = http_client::send_with_body_limit(
            env.net.as_ref(),
            env.spawner.as_ref(),
            http_request,
            self.config.remote_timeout_ms.max(1) as u64,
            REMOTE_READ_CLIENT_RESPONSE_SIZE_MAX_BYTES,
        )
        .await
        .map_err(|error| error.to_string())?;
        if !(200..300).contains(&response.status) {
            let text = String::from_utf8_lossy(&response.body[..response.body.len().min(512)]).trim().to_string();
            return Err(format!("server returned HTTP status {}: {text}", response.status));
        }
        let per_query = if response.content_type.starts_with("application/x-streamed-protobuf") {
            decode_streamed(&response.body, added_labels.len())?
        } else {
            decode_samples(&response.body)?
        };
        let mut series = Vec::new();
        for (index, answered) in per_query.into_iter().enumerate() {
            let added = added_labels.get(index).map(Vec::as_slice).unwrap_or(&[]);
            for (labels, samples) in answered {
                let labels: Vec<Label> = labels.into_iter().filter(|label| !added.contains(&label.name)).collect();
                series.push(Series {
                    labels: Labels::from_pairs(labels.into_iter().map(|label| (label.name, label.value))),
                    samples,
                });
            }
        }
        Ok(series)
    }
}

fn wire_matcher(matcher: &Matcher) -> LabelMatcher {
    let kind = match matcher.kind {
        MatchKind::Equal => 0,
        MatchKind::NotEqual => 1,
        MatchKind::Regex => 2,
        MatchKind::NotRegex => 3,
    };
    LabelMatcher { r#type: kind, name: matcher.name.clone(), value: matcher.value.clone() }
}

type Answered = Vec<(Vec<Label>, Vec<Sample>)>;

fn decode_samples(body: &[u8]) -> Result<Vec<Answered>, String> {
    let size = snap::raw::decompress_len(body).map_err(|error| format!("decompress answer: {error}"))?;
    if size > REMOTE_READ_CLIENT_DECOMPRESSED_SIZE_MAX_BYTES {
        return Err(format!(
            "answer of {size} bytes decompressed exceeds the limit of {REMOTE_READ_CLIENT_DECOMPRESSED_SIZE_MAX_BYTES}"
        ));
    }
    let bytes =
        snap::raw::Decoder::new().decompress_vec(body).map_err(|error| format!("decompress answer: {error}"))?;
    let response = ReadResponse::decode(bytes.as_slice()).map_err(|error| format!("decode ReadResponse: {error}"))?;
    Ok(response
        .results
        .into_iter()
        .map(|result| {
            result
                .timeseries
                .into_iter()
                .map(|series| {
                    let labels =
                        series.labels.into_iter().map(|label| Label { name: label.name, value: label.value }).collect();
                    let samples = series
                        .samples
                        .into_iter()
                        .map(|sample| Sample { timestamp_ms: sample.timestamp, value: sample.value })
                        .collect();
                    (labels, samples)
                })
                .collect()
        })
        .collect())
}

fn decode_streamed(body: &[u8], query_count: usize) -> Result<Vec<Answered>, String> {
    let mut per_query: Vec<Answered> = vec![Vec::new(); query_count];
    for frame in read_frames(body)? {
        let index = usize::try_from(frame.query_index).ok().filter(|&index| index < query_count);
        let Some(index) = index else {
            return Err(format!("frame for query {} of {query_count}", frame.query_index));
        };
        for series in frame.chunked_series {
            let labels: Vec<Label> =
                series.labels.into_iter().map(|label| Label { name: label.name, value: label.value }).collect();
            let mut samples = Vec::new();
            for chunk in &series.chunks {
                if chunk.r#type != crate::api::remote_read::CHUNK_ENCODING_XOR {
                    continue; // Native histograms: floats only here.
                }
                let decoded =
                    crate::tsdb::chunk::decode(&chunk.data).map_err(|error| format!("decode chunk: {error}"))?;
                samples.extend(decoded.into_iter().map(|(timestamp_ms, value)| Sample { timestamp_ms, value }));
            }
            // A series split over frames arrives as consecutive entries with equal labels.
            match per_query[index].last_mut() {
                Some((last_labels, last_samples)) if *last_labels == labels => last_samples.extend(samples),
                _ => per_query[index].push((labels, samples)),
            }
        }
    }
    Ok(per_query)
}

/// Series held in memory (what remote stores answered), queried by matchers and time.
#[derive(Debug, Default)]
pub struct SeriesStore {
    series: BTreeMap<Labels, Vec<Sample>>,
}

impl SeriesStore {
    /// Adds `series`, merging samples with a series of equal labels already held.
    pub fn add(&mut self, series: Series) {
        match self.series.get_mut(&series.labels) {
            Some(samples) => *samples = merge_samples(samples, &series.samples),
            None => {
                let mut samples = series.samples;
                samples.sort_by_key(|sample| sample.timestamp_ms);
                samples.dedup_by_key(|sample| sample.timestamp_ms);
                self.series.insert(series.labels, samples);
            }
        }
    }

    /// Series held.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

struct SeriesStoreQuerier {
    store: Arc<SeriesStore>,
    min_time_ms: i64,
    max_time_ms: i64,
}

/// A querier over a [`SeriesStore`] (shared, so a querier can outlive the call that made it).
pub fn series_store_querier(store: Arc<SeriesStore>, min_time_ms: i64, max_time_ms: i64) -> Box<dyn Querier> {
    Box::new(SeriesStoreQuerier { store, min_time_ms, max_time_ms })
}

impl SeriesStoreQuerier {
    fn matching<'a>(&'a self, matchers: &'a [Matcher]) -> impl Iterator<Item = (&'a Labels, &'a Vec<Sample>)> + 'a {
        self.store.series.iter().filter(move |(labels, _)| {
            matchers.iter().all(|matcher| matcher.matches(labels.get(&matcher.name).unwrap_or("")))
        })
    }
}

impl Querier for SeriesStoreQuerier {
    fn select(&self, _hints: Option<&SelectHints>, matchers: &[Matcher]) -> SeriesSet<'_> {
        let (min_time_ms, max_time_ms) = (self.min_time_ms, self.max_time_ms);
        let selected: Vec<Series> = self
            .matching(matchers)
            .filter_map(|(labels, samples)| {
                let in_range: Vec<Sample> = samples
                    .iter()
                    .filter(|sample| (min_time_ms..=max_time_ms).contains(&sample.timestamp_ms))
                    .copied()
                    .collect();
                (!in_range.is_empty()).then(|| Series { labels: labels.clone(), samples: in_range })
            })
            .collect();
        Box::new(selected.into_iter().map(Ok))
    }

    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        let mut names: Vec<String> =
            self.matching(matchers).flat_map(|(labels, _)| labels.iter().map(|label| label.name.clone())).collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        let mut values: Vec<String> =
            self.matching(matchers).filter_map(|(labels, _)| labels.get(name).map(str::to_string)).collect();
        values.sort();
        values.dedup();
        Ok(values)
    }
}

/// The local storage with what remote stores answered merged in (local samples first).
pub struct MergedQueryable {
    local: Arc<dyn Queryable>,
    remote: Arc<SeriesStore>,
}

impl MergedQueryable {
    /// `local` merged with `remote`.
    pub fn new(local: Arc<dyn Queryable>, remote: Arc<SeriesStore>) -> Self {
        MergedQueryable { local, remote }
    }
}

impl Queryable for MergedQueryable {
    fn querier(&self, min_time_ms: i64, max_time_ms: i64) -> Result<Box<dyn Querier>, StorageError> {
        let local = self.local.querier(min_time_ms, max_time_ms)?;
        let remote = series_store_querier(self.remote.clone(), min_time_ms, max_time_ms);
        Ok(Box::new(MergeQuerier::new(vec![local, remote])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(pairs: &[(&str, &str)], times: &[i64]) -> Series {
        Series {
            labels: Labels::from_pairs(pairs.iter().copied()),
            samples: times.iter().map(|&timestamp_ms| Sample { timestamp_ms, value: timestamp_ms as f64 }).collect(),
        }
    }

    #[test]
    fn series_store_merges_by_labels_and_answers_by_matchers_and_time() {
        let mut store = SeriesStore::default();
        store.add(series(&[("__name__", "up"), ("job", "a")], &[3, 1, 2]));
        store.add(series(&[("__name__", "up"), ("job", "a")], &[2, 4]));
        store.add(series(&[("__name__", "up"), ("job", "b")], &[10]));
        assert_eq!(store.len(), 2);
        let querier = series_store_querier(Arc::new(store), 2, 9);
        let matchers = [Matcher::new(MatchKind::Equal, "__name__", "up").unwrap()];
        let selected: Vec<Series> = querier.select(None, &matchers).map(Result::unwrap).collect();
        assert_eq!(selected.len(), 1, "job b has nothing in range");
        let times: Vec<i64> = selected[0].samples.iter().map(|sample| sample.timestamp_ms).collect();
        assert_eq!(times, [2, 3, 4]);
        assert_eq!(querier.label_values("job", &matchers).unwrap(), ["a", "b"]);
    }

    #[test]
    fn streamed_and_samples_answers_decode_alike() {
        let frames = {
            use crate::api::remote_read::{Chunk, ChunkedReadResponse, ChunkedSeries, CHUNK_ENCODING_XOR};
            let mut out = Vec::new();
            for (query_index, times) in [(0_i64, [1_i64, 2]), (0, [3, 4]), (1, [5, 6])] {
                let mut chunk = crate::tsdb::chunk::XorChunk::new();
                for time in times {
                    chunk.append(time, time as f64);
                }
                let message = ChunkedReadResponse {
                    chunked_series: vec![ChunkedSeries {
                        labels: vec![crate::api::remote_write::Label { name: "__name__".into(), value: "m".into() }],
                        chunks: vec![Chunk {
                            min_time_ms: times[0],
                            max_time_ms: times[1],
                            r#type: CHUNK_ENCODING_XOR,
                            data: chunk.bytes().to_vec(),
                        }],
                    }],
                    query_index,
                };
                let data = message.encode_to_vec();
                prost::encoding::encode_varint(data.len() as u64, &mut out);
                out.extend_from_slice(&crc32c::crc32c(&data).to_be_bytes());
                out.extend_from_slice(&data);
            }
            out
        };
        let decoded = decode_streamed(&frames, 2).unwrap();
        assert_eq!(decoded[0].len(), 1, "a series split over two frames is one series");
        assert_eq!(decoded[0][0].1.len(), 4);
        assert_eq!(decoded[1][0].1.iter().map(|sample| sample.timestamp_ms).collect::<Vec<_>>(), [5, 6]);
        assert!(decode_streamed(&frames, 1).is_err(), "a frame for a query never asked");
        assert!(decode_samples(b"garbage").is_err());
    }
}
