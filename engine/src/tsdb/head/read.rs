//! Reading the head (Prometheus tsdb/head_read.go): postings for the matchers, the candidates that
//! have samples in range sorted by labels, then each series' samples decoded only when the set
//! reaches it. Full chunks are shared `Arc`s, so a series is read under its shard lock only for
//! as long as it takes to clone the chunk handles and copy the open chunk's bytes.

use std::sync::Arc;

use super::{ChunkLocation, Head};
use crate::model::{Labels, Matcher, Sample};
use crate::storage::{Querier, SelectHints, Series, SeriesSet, StorageError};
use crate::tsdb::chunk;

/// A querier over `[min_time_ms, max_time_ms]` of the head.
pub struct HeadQuerier {
    head: Arc<Head>,
    min_time_ms: i64,
    max_time_ms: i64,
}

impl HeadQuerier {
    pub(crate) fn new(head: Arc<Head>, min_time_ms: i64, max_time_ms: i64) -> Self {
        HeadQuerier { head, min_time_ms, max_time_ms }
    }

    /// Chunks of a series overlapping the range, in time order: full chunks (shared, or where
    /// they are on disk) and a copy of the open one. Disk reads happen after the lock is released.
    fn chunks(&self, series_ref: u32) -> Result<Vec<Arc<[u8]>>, StorageError> {
        let (min, max) = (self.min_time_ms, self.max_time_ms);
        let located = self
            .head
            .with_series(series_ref, |series| {
                let mut chunks: Vec<ChunkLocation> = series
                    .closed
                    .iter()
                    .filter(|chunk| chunk.max_time_ms >= min && chunk.min_time_ms <= max)
                    .map(|chunk| chunk.location.clone())
                    .collect();
                if let Some(open) = &series.open {
                    if open.sample_count() > 0 && open.max_time_ms() >= min && open.min_time_ms() <= max {
                        chunks.push(ChunkLocation::Memory(Arc::from(open.bytes())));
                    }
                }
                chunks
            })
            .unwrap_or_default();
        located
            .into_iter()
            .map(|location| match location {
                ChunkLocation::Memory(bytes) => Ok(bytes),
                ChunkLocation::Disk(disk_ref) => match self.head.chunk_reader() {
                    Some(reader) => reader
                        .read(disk_ref)
                        .map(Arc::from)
                        .map_err(|error| StorageError::Read { context: "read head chunk file", source: error.into() }),
                    None => unreachable!("a chunk is on disk only when the head has a chunk reader"),
                },
            })
            .collect()
    }

    fn read_series(&self, labels: Labels, series_ref: u32) -> Result<Option<Series>, StorageError> {
        let mut samples = Vec::new();
        for bytes in self.chunks(series_ref)? {
            let decoded = chunk::decode(&bytes)
                .map_err(|error| StorageError::Read { context: "decode head chunk", source: error.into() })?;
            samples.extend(
                decoded
                    .into_iter()
                    .filter(|(timestamp_ms, _)| (self.min_time_ms..=self.max_time_ms).contains(timestamp_ms))
                    .map(|(timestamp_ms, value)| Sample { timestamp_ms, value }),
            );
        }
        Ok((!samples.is_empty()).then_some(Series { labels, samples }))
    }

    /// Series matching `matchers` (every series when empty).
    fn matching_refs(&self, matchers: &[Matcher]) -> Vec<u32> {
        self.head.select_refs(matchers)
    }
}

impl Querier for HeadQuerier {
    fn select(&self, _hints: Option<&SelectHints>, matchers: &[Matcher]) -> SeriesSet<'_> {
        let (min, max) = (self.min_time_ms, self.max_time_ms);
        let mut candidates: Vec<(Labels, u32)> = self
            .matching_refs(matchers)
            .into_iter()
            .filter_map(|series_ref| {
                self.head
                    .with_series(series_ref, |series| {
                        series.overlaps(min, max).then(|| series.labels(&self.head.symbols().read()))
                    })
                    .flatten()
                    .map(|labels| (labels, series_ref))
            })
            .collect();
        candidates.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Box::new(
            candidates
                .into_iter()
                .filter_map(move |(labels, series_ref)| self.read_series(labels, series_ref).transpose()),
        )
    }

    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        let mut names: Vec<String> = if matchers.is_empty() {
            self.head.with_postings(|postings, symbols| {
                postings.name_ids().map(|name_id| symbols.get(name_id).to_string()).collect()
            })
        } else {
            let mut names = Vec::new();
            for series_ref in self.matching_refs(matchers) {
                if let Some(labels) = self.head.labels(series_ref) {
                    names.extend(labels.iter().map(|label| label.name.clone()));
                }
            }
            names
        };
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        let mut values: Vec<String> = if matchers.is_empty() {
            self.head.with_postings(|postings, symbols| match symbols.id(name) {
                Some(name_id) => {
                    postings.values(name_id).map(|(value_id, _)| symbols.get(value_id).to_string()).collect()
                }
                None => Vec::new(),
            })
        } else {
            self.matching_refs(matchers)
                .into_iter()
                .filter_map(|series_ref| self.head.labels(series_ref))
                .filter_map(|labels| labels.get(name).map(str::to_string))
                .collect()
        };
        values.sort();
        values.dedup();
        Ok(values)
    }
}
