//! Persisting the head's oldest range into a block and dropping it from memory (Prometheus
//! tsdb/head.go `compactable`, `truncateMemory`, `gc`).
//!
//! The head is compactable once it spans more than 1.5 block ranges; the range persisted is the
//! block range holding the head's oldest sample. Chunks never span a block boundary, so every
//! chunk lies wholly inside or outside the range and is copied into the block as it is, without
//! re-encoding. Before reading, the caller raises the head's `min_valid_ms` to the range's end
//! and waits for the WAL writer to finish its group in progress: from then on no sample can land
//! in the range, so what the block holds is exactly what the head held.
//!
//! Truncation drops the chunks that end before the persisted range's end, then removes series
//! left without chunks and without holds (no appender has a commit in flight for them). Lock
//! order as the rest of the head: a removal takes the hash shard, then the series shard, then
//! the postings. Symbols of removed series stay interned (bounded by the series ever created).

use std::cmp::Ordering as CmpOrdering;
use std::sync::atomic::Ordering;

use super::{hash_labels, read, resolve, write, ChunkLocation, Head, MemSeries};
use crate::model::Labels;
use crate::storage::StorageError;
use crate::tsdb::block::BlockChunk;
use crate::tsdb::symbols::Symbols;

/// What one truncation removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TruncateStats {
    /// Chunks dropped (now in a block).
    pub chunk_count: u64,
    /// Series removed (no samples left, no commit in flight).
    pub series_count: u64,
}

/// Compares two packed label sets by their strings, as [`Labels`]' order does.
fn compare_label_ids(a: &[u32], b: &[u32], symbols: &Symbols) -> CmpOrdering {
    for (pair_a, pair_b) in a.chunks_exact(2).zip(b.chunks_exact(2)) {
        let by_name = symbols.get(pair_a[0]).cmp(symbols.get(pair_b[0]));
        let by_value = || symbols.get(pair_a[1]).cmp(symbols.get(pair_b[1]));
        match by_name.then_with(by_value) {
            CmpOrdering::Equal => continue,
            other => return other,
        }
    }
    a.len().cmp(&b.len())
}

impl MemSeries {
    fn has_chunks(&self) -> bool {
        !self.closed.is_empty() || self.open.as_ref().is_some_and(|open| open.sample_count() > 0)
    }
}

impl Head {
    /// The block range `[min_time_ms, max_time_ms)` to persist next, when the head spans more
    /// than 1.5 block ranges (Prometheus' `compactable` and `rangeForTimestamp`).
    pub fn compactable_range(&self) -> Option<(i64, i64)> {
        let range_ms = self.options.chunk_range_ms;
        let (min_ms, max_ms) = self.time_range_ms()?;
        if max_ms.saturating_sub(min_ms) <= range_ms / 2 * 3 {
            return None;
        }
        let start_ms = min_ms.div_euclid(range_ms) * range_ms;
        Some((start_ms, start_ms + range_ms))
    }

    /// Series with samples in `[min_time_ms, max_time_ms)`, sorted by labels, with their labels.
    /// The symbol table is read-locked only while sorting.
    pub(crate) fn series_in_range(&self, min_time_ms: i64, max_time_ms: i64) -> Vec<(Labels, u32)> {
        let mut found: Vec<(Box<[u32]>, u32)> = Vec::new();
        for (shard_index, shard) in self.series.iter().enumerate() {
            let guard = read(shard);
            for (slot, series) in guard.slots.iter().enumerate() {
                let Some(series) = series else { continue };
                if series.overlaps(min_time_ms, max_time_ms - 1) {
                    let series_ref = (slot * self.series.len() + shard_index) as u32;
                    found.push((series.label_ids.clone(), series_ref));
                }
            }
        }
        let symbols = self.symbols.read();
        found.sort_unstable_by(|a, b| compare_label_ids(&a.0, &b.0, &symbols));
        found.into_iter().map(|(label_ids, series_ref)| (resolve(&label_ids, &symbols), series_ref)).collect()
    }

    /// The chunks of a series inside `[min_time_ms, max_time_ms)`, as encoded, oldest first;
    /// chunks on disk are read back. Call only once no sample can be appended in the range.
    pub(crate) fn chunks_in_range(
        &self,
        series_ref: u32,
        min_time_ms: i64,
        max_time_ms: i64,
    ) -> Result<Vec<BlockChunk>, StorageError> {
        let inside = |chunk_min_ms: i64, chunk_max_ms: i64| chunk_min_ms >= min_time_ms && chunk_max_ms < max_time_ms;
        let located: Vec<(i64, i64, ChunkLocation)> = self
            .with_series(series_ref, |series| {
                let mut chunks: Vec<(i64, i64, ChunkLocation)> = series
                    .closed
                    .iter()
                    .filter(|chunk| inside(chunk.min_time_ms, chunk.max_time_ms))
                    .map(|chunk| (chunk.min_time_ms, chunk.max_time_ms, chunk.location.clone()))
                    .collect();
                if let Some(open) = series.open.as_ref().filter(|open| open.sample_count() > 0) {
                    if inside(open.min_time_ms(), open.max_time_ms()) {
                        chunks.push((
                            open.min_time_ms(),
                            open.max_time_ms(),
                            ChunkLocation::Memory(open.bytes().into()),
                        ));
                    }
                }
                chunks
            })
            .unwrap_or_default();
        located
            .into_iter()
            .map(|(chunk_min_ms, chunk_max_ms, location)| {
                let bytes = match location {
                    ChunkLocation::Memory(bytes) => bytes.to_vec(),
                    ChunkLocation::Disk(disk_ref) => {
                        let reader = self.chunk_reader().ok_or_else(|| StorageError::Read {
                            context: "read head chunk file",
                            source: "a chunk is on disk but the head has no chunk reader".into(),
                        })?;
                        reader.read(disk_ref).map_err(|error| StorageError::Read {
                            context: "read head chunk file",
                            source: error.into(),
                        })?
                    }
                };
                Ok(BlockChunk { min_time_ms: chunk_min_ms, max_time_ms: chunk_max_ms, bytes })
            })
            .collect()
    }

    /// Drops every chunk ending before `max_time_ms` (persisted in a block by now), then removes
    /// the series left empty and unheld; recomputes the head's oldest sample.
    pub fn truncate_before(&self, max_time_ms: i64) -> TruncateStats {
        let mut stats = TruncateStats::default();
        let mut empty: Vec<u32> = Vec::new();
        let mut min_time_ms = i64::MAX;
        let shard_count = self.series.len();
        for (shard_index, shard) in self.series.iter().enumerate() {
            let mut guard = write(shard);
            for (slot, series) in guard.slots.iter_mut().enumerate() {
                let Some(series) = series.as_deref_mut() else { continue };
                let keep_from = series.closed.partition_point(|chunk| chunk.max_time_ms < max_time_ms);
                stats.chunk_count += keep_from as u64;
                series.closed.drain(..keep_from);
                if series.open.as_ref().is_some_and(|open| open.sample_count() > 0 && open.max_time_ms() < max_time_ms)
                {
                    series.open = None;
                    stats.chunk_count += 1;
                }
                match series.min_time_ms() {
                    Some(first_ms) => min_time_ms = min_time_ms.min(first_ms),
                    None => empty.push((slot * shard_count + shard_index) as u32),
                }
            }
        }
        self.counters.chunk_count.fetch_sub(stats.chunk_count, Ordering::Relaxed);
        self.counters.chunks_removed_total.fetch_add(stats.chunk_count, Ordering::Relaxed);
        stats.series_count = self.remove_empty_series(&empty);
        // The oldest sample left (or, for an empty head, the range end) bounds the head.
        let oldest_ms = match min_time_ms {
            i64::MAX => max_time_ms,
            oldest_ms => oldest_ms,
        };
        self.min_time_ms.store(oldest_ms, Ordering::Relaxed);
        stats
    }

    /// Removes each candidate that is still without chunks and without holds; returns how many.
    fn remove_empty_series(&self, candidates: &[u32]) -> u64 {
        let mut removed: Vec<(u32, Box<[u32]>)> = Vec::new();
        for &series_ref in candidates {
            let Some(labels) = self.labels(series_ref) else { continue };
            let hash = hash_labels(&labels);
            let mut hash_shard = write(&self.hashes[hash as usize % self.hashes.len()]);
            let (shard, slot) = super::locate(series_ref);
            let mut guard = write(&self.series[shard]);
            let Some(entry) = guard.slots.get_mut(slot) else { continue };
            let removable = entry
                .as_deref()
                .is_some_and(|series| !series.has_chunks() && series.holds.load(Ordering::Relaxed) == 0);
            if !removable {
                continue;
            }
            let Some(series) = entry.take() else { continue };
            hash_shard.remove(hash, series_ref);
            removed.push((series_ref, series.label_ids));
        }
        if removed.is_empty() {
            return 0;
        }
        write(&self.postings).remove_many(&removed);
        let count = removed.len() as u64;
        self.counters.series_count.fetch_sub(count, Ordering::Relaxed);
        self.counters.series_removed_total.fetch_add(count, Ordering::Relaxed);
        count
    }
}
