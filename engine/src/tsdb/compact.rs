//! Leveled block compaction and retention, as Prometheus' `LeveledCompactor` (tsdb/compact.go)
//! and `DB.reloadBlocks` retention (tsdb/db.go): pure planning functions and one block writer,
//! which the `Db` background task calls; nothing here runs on its own.
//!
//! - [`block_ranges`]: the compaction levels, `min, 3·min, 9·min, …` (upstream's
//!   `ExponentialBlockRanges(min, 10, 3)`), cut at the maximum block duration.
//! - [`plan`]: which blocks to merge next (upstream's `LeveledCompactor.plan`): overlapping blocks
//!   first (vertical compaction); otherwise, leaving out the newest block, the first group of
//!   blocks that fills an aligned range of the next level, or that lies wholly before the newest
//!   block. Blocks marked `failed` are not chosen.
//! - [`compact`]: merges the chosen blocks into one new block (upstream's `Compact` with the
//!   compacting chunk-series merger): series merged by labels, streaming, one series at a time;
//!   a chunk that overlaps no other chunk of its series is copied byte for byte; overlapping
//!   chunks are decoded, merged by time (on equal timestamps the sample of the block with the
//!   earliest `minTime`, then smallest ULID, wins) and re-encoded into 120-sample chunks. The new
//!   meta has level `max + 1`, the sorted union of the sources' sources and the sources as
//!   parents. A merge without samples writes nothing (`Ok(None)`).
//! - [`retention_outcome`] / [`retention_excess`]: which whole blocks retention removes
//!   (upstream's `BeyondTimeRetention`, `BeyondSizeRetention`).
//! - [`RetentionSettings`]: the flags and config keys behind it, with Prometheus' defaults
//!   (15 d when neither time nor size is set; the maximum block duration a tenth of the
//!   retention time, at most 31 d).
//!
//! Invariants: planning is a function of the metas alone (sorted by `minTime`, then ULID, so
//! the result never depends on input order); a compaction writes through the block writer's
//! `.tmp` + rename path, so a crash leaves the sources and at most a `.tmp` directory.
//! Memory: the writer's per-series index entries, plus one series' chunks and one run of
//! overlapping chunks decoded.
//!
//! Concurrency: everything here is synchronous and reads blocks through their immutable
//! handles; deleting the sources afterwards is the caller's ([`Block::delete_when_unused`]).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use super::block::{
    encode_chunks, write_block_compacted, Block, BlockChunk, BlockCompaction, BlockDesc, BlockError, BlockMeta, Ulid,
};
use super::chunk::iter_bytes;
use super::index::ChunkMeta;
use crate::io::fs::child;
use crate::io::FileSystem;
use crate::limits::{BLOCK_RANGE_MS_DEFAULT, CHUNK_SAMPLE_COUNT_MAX_DEFAULT};
use crate::model::{Labels, Sample};

const DAY_MS: i64 = 24 * 3_600_000;
/// Prometheus' retention when neither time nor size is set (`defaultRetentionString`).
pub const RETENTION_DURATION_MS_DEFAULT: i64 = 15 * DAY_MS;
/// Longest default maximum block duration (`cmd/prometheus/main.go`: 31d).
pub const BLOCK_DURATION_MAX_MS_DEFAULT_CAP: i64 = 31 * DAY_MS;
/// Compaction levels upstream generates before cutting at the maximum duration.
const RANGE_STEP_COUNT: usize = 10;
/// Each level spans this many blocks of the one below.
const RANGE_STEP_FACTOR: i64 = 3;

/// How long and how much the database keeps; `None` (or zero) disables that limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Blocks whose end is this far behind the newest block's end go
    /// (`--storage.tsdb.retention.time`).
    pub duration_ms: Option<i64>,
    /// Blocks beyond this many bytes, counted newest first after the WAL and head chunks, go
    /// (`--storage.tsdb.retention.size`).
    pub size_bytes: Option<u64>,
}

/// The retention and block-duration settings as one source gave them (flags or config file);
/// [`RetentionSettings::or`] layers sources, [`RetentionSettings::resolve`] applies defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionSettings {
    /// Retention time.
    pub duration_ms: Option<i64>,
    /// Retention size.
    pub size_bytes: Option<u64>,
    /// Minimum block duration (the head's block range).
    pub block_duration_min_ms: Option<i64>,
    /// Maximum block duration.
    pub block_duration_max_ms: Option<i64>,
}

/// Settings with every default applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResolvedSettings {
    /// What retention removes.
    pub retention: Retention,
    /// The head's block range, the first compaction level.
    pub block_duration_min_ms: i64,
    /// The longest compacted block.
    pub block_duration_max_ms: i64,
}

impl RetentionSettings {
    /// These settings, with `fallback`'s values where these are unset.
    pub fn or(self, fallback: RetentionSettings) -> RetentionSettings {
        RetentionSettings {
            duration_ms: self.duration_ms.or(fallback.duration_ms),
            size_bytes: self.size_bytes.or(fallback.size_bytes),
            block_duration_min_ms: self.block_duration_min_ms.or(fallback.block_duration_min_ms),
            block_duration_max_ms: self.block_duration_max_ms.or(fallback.block_duration_max_ms),
        }
    }

    /// Refuses values upstream would silently bend: negative or zero block durations, and a
    /// maximum block duration below the minimum (explicit or the 2 h default).
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in
            [("min block duration", self.block_duration_min_ms), ("max block duration", self.block_duration_max_ms)]
        {
            if value.is_some_and(|duration_ms| duration_ms <= 0) {
                return Err(format!("{name} must be greater than zero"));
            }
        }
        if self.duration_ms.is_some_and(|duration_ms| duration_ms < 0) {
            return Err("retention time must not be negative".to_string());
        }
        let min_ms = self.block_duration_min_ms.unwrap_or(BLOCK_RANGE_MS_DEFAULT);
        if let Some(max_ms) = self.block_duration_max_ms {
            if max_ms < min_ms {
                return Err(format!(
                    "max block duration {} is shorter than min block duration {}",
                    crate::config::format_duration_ms(max_ms),
                    crate::config::format_duration_ms(min_ms)
                ));
            }
        }
        Ok(())
    }

    /// Applies Prometheus' defaults (cmd/prometheus/main.go, tsdb `validateOpts`): retention
    /// 15 d when neither time nor size is set (a zero counts as unset); min block duration 2 h;
    /// max block duration a tenth of the retention time, at most 31 d (31 d with size retention
    /// only), and never below the minimum.
    pub fn resolve(self) -> ResolvedSettings {
        let duration_ms = self.duration_ms.filter(|duration_ms| *duration_ms > 0);
        let size_bytes = self.size_bytes.filter(|size| *size > 0);
        let duration_ms = match (duration_ms, size_bytes) {
            (None, None) => Some(RETENTION_DURATION_MS_DEFAULT),
            (duration_ms, _) => duration_ms,
        };
        let min_ms = self.block_duration_min_ms.filter(|min_ms| *min_ms > 0).unwrap_or(BLOCK_RANGE_MS_DEFAULT);
        let max_ms = self.block_duration_max_ms.filter(|max_ms| *max_ms > 0).unwrap_or_else(|| {
            duration_ms.map_or(BLOCK_DURATION_MAX_MS_DEFAULT_CAP, |duration_ms| {
                (duration_ms / 10).min(BLOCK_DURATION_MAX_MS_DEFAULT_CAP)
            })
        });
        ResolvedSettings {
            retention: Retention { duration_ms, size_bytes },
            block_duration_min_ms: min_ms,
            block_duration_max_ms: max_ms.max(min_ms),
        }
    }
}

/// The compaction levels: `min_ms · 3^k` for k in 0..10, keeping those up to `max_ms` (and
/// always `min_ms` itself, as upstream raises a smaller maximum to the minimum). Empty for a
/// non-positive `min_ms`.
pub fn block_ranges(min_ms: i64, max_ms: i64) -> Vec<i64> {
    let mut ranges = Vec::with_capacity(RANGE_STEP_COUNT);
    if min_ms <= 0 {
        return ranges;
    }
    let max_ms = max_ms.max(min_ms);
    let mut range_ms = Some(min_ms);
    while let Some(current_ms) = range_ms.filter(|current_ms| *current_ms <= max_ms) {
        if ranges.len() == RANGE_STEP_COUNT {
            break;
        }
        ranges.push(current_ms);
        range_ms = current_ms.checked_mul(RANGE_STEP_FACTOR);
    }
    ranges
}

/// Metas sorted as upstream's planner sorts them: by `minTime`, ties by ULID.
fn sorted_by_min_time(metas: &[BlockMeta]) -> Vec<&BlockMeta> {
    let mut sorted: Vec<&BlockMeta> = metas.iter().collect();
    sorted.sort_by(|a, b| (a.min_time_ms, &a.ulid).cmp(&(b.min_time_ms, &b.ulid)));
    sorted
}

/// The ULIDs of the next blocks to compact together, in `minTime` order, or nothing
/// (upstream's `LeveledCompactor.plan`; see the module docs). Upstream's last rule, compacting a
/// large block with more than 5 % tombstones, has no counterpart: blocks with tombstones are
/// refused at open and never reach the planner.
pub fn plan(metas: &[BlockMeta], ranges: &[i64]) -> Vec<String> {
    if ranges.is_empty() {
        return Vec::new();
    }
    let sorted = sorted_by_min_time(metas);
    let overlapping = select_overlapping(&sorted);
    if !overlapping.is_empty() {
        return overlapping.iter().map(|meta| meta.ulid.clone()).collect();
    }
    // The newest block (largest minTime) stays out: it was just cut from the head, and leaving
    // it gives users a full block range to back it up before it is merged away.
    let Some((_, older)) = sorted.split_last() else {
        return Vec::new();
    };
    select_dirs(older, ranges).iter().map(|meta| meta.ulid.clone()).collect()
}

/// The first run of blocks whose ranges overlap (upstream's `selectOverlappingDirs`).
fn select_overlapping<'a>(sorted: &[&'a BlockMeta]) -> Vec<&'a BlockMeta> {
    let mut overlapping: Vec<&BlockMeta> = Vec::new();
    let Some(first) = sorted.first() else {
        return overlapping;
    };
    let mut max_time_ms = first.max_time_ms;
    for pair in sorted.windows(2) {
        let (previous, meta) = (pair[0], pair[1]);
        if meta.min_time_ms < max_time_ms {
            if overlapping.is_empty() {
                overlapping.push(previous);
            }
            overlapping.push(meta);
        } else if !overlapping.is_empty() {
            break;
        }
        max_time_ms = max_time_ms.max(meta.max_time_ms);
    }
    overlapping
}

/// The first group, level by level, that fills its aligned range or ends before the newest
/// considered block starts (upstream's `selectDirs`).
fn select_dirs<'a>(sorted: &[&'a BlockMeta], ranges: &[i64]) -> Vec<&'a BlockMeta> {
    let Some(last) = sorted.last() else {
        return Vec::new();
    };
    let high_time_ms = last.min_time_ms;
    for &range_ms in ranges.iter().skip(1) {
        for group in split_by_range(sorted, range_ms) {
            if group.iter().any(|meta| meta.compaction.failed) {
                continue;
            }
            let (Some(first), Some(last)) = (group.first(), group.last()) else {
                continue;
            };
            let span_ms = last.max_time_ms.saturating_sub(first.min_time_ms);
            if group.len() > 1 && (span_ms == range_ms || last.max_time_ms <= high_time_ms) {
                return group;
            }
        }
    }
    Vec::new()
}

/// Groups consecutive blocks that fit in one range `[t0, t0 + range_ms]` aligned to multiples
/// of `range_ms`; a block that fits in none (misaligned, or larger) is left out (upstream's
/// `splitByRange`: `[0-10, 10-20, 50-60, 90-100]` by 30 gives `[0-10, 10-20], [50-60], [90-100]`).
fn split_by_range<'a>(sorted: &[&'a BlockMeta], range_ms: i64) -> Vec<Vec<&'a BlockMeta>> {
    let mut groups = Vec::new();
    let mut index = 0;
    while index < sorted.len() {
        let start_ms = sorted[index].min_time_ms.div_euclid(range_ms).saturating_mul(range_ms);
        let end_ms = start_ms.saturating_add(range_ms);
        if sorted[index].max_time_ms > end_ms {
            index += 1;
            continue;
        }
        let mut group = Vec::new();
        while index < sorted.len() && sorted[index].max_time_ms <= end_ms {
            group.push(sorted[index]);
            index += 1;
        }
        groups.push(group);
    }
    groups
}

/// The meta fields a compaction of `sources` gets (upstream's `CompactBlockMetas`): range
/// over all, level `max + 1`, sorted distinct sources, the sources as parents in order.
fn compacted_lineage(sources: &[&Block]) -> (BlockCompaction, (i64, i64)) {
    let mut level = 0;
    let mut all_sources = BTreeSet::new();
    let mut parents = Vec::with_capacity(sources.len());
    let mut range_ms = (i64::MAX, i64::MIN);
    for source in sources {
        let meta = source.meta();
        level = level.max(meta.compaction.level);
        all_sources.extend(meta.compaction.sources.iter().cloned());
        parents.push(BlockDesc {
            ulid: meta.ulid.clone(),
            min_time_ms: meta.min_time_ms,
            max_time_ms: meta.max_time_ms,
        });
        range_ms = (range_ms.0.min(meta.min_time_ms), range_ms.1.max(meta.max_time_ms));
    }
    // Upstream keeps the out-of-order hint only when every source has it.
    let hint = "from-out-of-order";
    let hints = match sources.iter().all(|source| source.meta().compaction.hints.iter().any(|h| h == hint)) {
        true => vec![hint.to_string()],
        false => Vec::new(),
    };
    let compaction = BlockCompaction {
        level: level.saturating_add(1),
        sources: all_sources.into_iter().collect(),
        parents,
        hints,
        ..BlockCompaction::default()
    };
    (compaction, range_ms)
}

/// Merges `sources` into a new block `parent_dir/<ulid>` (see the module docs) and returns its
/// meta, or `Ok(None)` when they hold no samples (nothing is written; upstream then deletes the
/// sources). The sources stay untouched; deleting them is the caller's. When a source's data
/// breaks the merge (corruption, an invalid chunk), every source is marked `failed` in its
/// `meta.json` so the planner stops choosing them, and the error is returned; I/O errors (a
/// full disk) mark nothing, so the compaction is retried.
pub fn compact(
    fs: Arc<dyn FileSystem>,
    parent_dir: &Path,
    sources: &[Block],
    ulid: Ulid,
) -> Result<Option<BlockMeta>, BlockError> {
    if sources.is_empty() {
        return Err(BlockError::InvalidCompaction { reason: "no source blocks".to_string() });
    }
    let mut ordered: Vec<&Block> = sources.iter().collect();
    ordered.sort_by(|a, b| (a.meta().min_time_ms, &a.meta().ulid).cmp(&(b.meta().min_time_ms, &b.meta().ulid)));
    for pair in ordered.windows(2) {
        if pair[0].meta().ulid == pair[1].meta().ulid {
            return Err(BlockError::InvalidCompaction { reason: format!("block {} given twice", pair[0].meta().ulid) });
        }
    }
    let (compaction, range_ms) = compacted_lineage(&ordered);
    let merged = MergedSeries::new(&ordered);
    let result = merged.and_then(|merged| write_block_compacted(fs, parent_dir, merged, ulid, range_ms, compaction));
    match &result {
        Err(BlockError::Io { .. }) | Ok(_) => {}
        Err(error) => {
            tracing::error!(%error, %ulid, "compaction failed on block data; marking its sources failed");
            for source in &ordered {
                if let Err(mark_error) = source.mark_compaction_failed() {
                    tracing::error!(error = %mark_error, block = %source.meta().ulid, "mark compaction failed");
                }
            }
        }
    }
    result
}

/// One source's position in its series, in label order.
struct Cursor<'a> {
    block: &'a Block,
    ids: std::vec::IntoIter<u32>,
    current: Option<(Labels, Vec<ChunkMeta>)>,
}

impl<'a> Cursor<'a> {
    fn new(block: &'a Block) -> Result<Self, BlockError> {
        let mut cursor = Cursor { block, ids: block.series_ids()?.into_iter(), current: None };
        cursor.advance()?;
        Ok(cursor)
    }

    fn advance(&mut self) -> Result<(), BlockError> {
        let previous = self.current.take();
        let Some(id) = self.ids.next() else {
            return Ok(());
        };
        let (labels, metas) = self.block.series_at(id)?;
        if let Some((previous, _)) = &previous {
            if *previous >= labels {
                return Err(BlockError::Corruption {
                    path: self.block.index_path().to_path_buf(),
                    offset: u64::from(id) * 16,
                    reason: format!("series {labels} not after {previous}"),
                });
            }
        }
        self.current = Some((labels, metas));
        Ok(())
    }
}

/// The sources' series merged by labels, each with its merged chunks; stops at the first error.
struct MergedSeries<'a> {
    cursors: Vec<Cursor<'a>>,
    failed: bool,
}

impl<'a> MergedSeries<'a> {
    fn new(sources: &[&'a Block]) -> Result<Self, BlockError> {
        let cursors = sources.iter().map(|block| Cursor::new(block)).collect::<Result<Vec<_>, _>>()?;
        Ok(MergedSeries { cursors, failed: false })
    }

    fn next_series(&mut self) -> Result<Option<(Labels, Vec<BlockChunk>)>, BlockError> {
        loop {
            let Some(labels) = self
                .cursors
                .iter()
                .filter_map(|cursor| cursor.current.as_ref().map(|(labels, _)| labels))
                .min()
                .cloned()
            else {
                return Ok(None);
            };
            // (source position, chunk meta) of every source holding the series.
            let mut parts: Vec<(usize, ChunkMeta)> = Vec::new();
            for (position, cursor) in self.cursors.iter_mut().enumerate() {
                if cursor.current.as_ref().is_some_and(|(current, _)| *current == labels) {
                    if let Some((_, metas)) = &cursor.current {
                        parts.extend(metas.iter().map(|meta| (position, *meta)));
                    }
                    cursor.advance()?;
                }
            }
            let chunks = self.merge_chunks(parts)?;
            if !chunks.is_empty() {
                return Ok(Some((labels, chunks)));
            }
        }
    }

    /// Copies chunks that overlap no other, merges and re-encodes each run that does.
    fn merge_chunks(&self, mut parts: Vec<(usize, ChunkMeta)>) -> Result<Vec<BlockChunk>, BlockError> {
        parts.sort_by_key(|(position, meta)| (meta.min_time_ms, meta.max_time_ms, *position));
        let mut chunks = Vec::with_capacity(parts.len());
        let mut start = 0;
        while start < parts.len() {
            let mut end = start + 1;
            let mut run_max_time_ms = parts[start].1.max_time_ms;
            while end < parts.len() && parts[end].1.min_time_ms <= run_max_time_ms {
                run_max_time_ms = run_max_time_ms.max(parts[end].1.max_time_ms);
                end += 1;
            }
            let run = &parts[start..end];
            if let [(position, meta)] = run {
                let bytes = self.cursors[*position].block.chunk_at(meta.chunk_ref)?;
                chunks.push(BlockChunk { min_time_ms: meta.min_time_ms, max_time_ms: meta.max_time_ms, bytes });
            } else {
                chunks.extend(encode_chunks(&self.merge_run(run)?, CHUNK_SAMPLE_COUNT_MAX_DEFAULT));
            }
            start = end;
        }
        Ok(chunks)
    }

    /// The samples of overlapping chunks in time order; on equal timestamps the earliest
    /// source's sample wins.
    fn merge_run(&self, run: &[(usize, ChunkMeta)]) -> Result<Vec<Sample>, BlockError> {
        let mut samples: Vec<(i64, usize, f64)> = Vec::new();
        for (position, meta) in run {
            let block = self.cursors[*position].block;
            let bytes = block.chunk_at(meta.chunk_ref)?;
            for item in iter_bytes(&bytes) {
                let (timestamp_ms, value) = item.map_err(|error| BlockError::Corruption {
                    path: child(block.dir(), "chunks"),
                    offset: u64::from(meta.chunk_ref.offset()),
                    reason: format!(
                        "chunk {:#x} of segment {}: {error}",
                        meta.chunk_ref.0,
                        meta.chunk_ref.segment_index()
                    ),
                })?;
                samples.push((timestamp_ms, *position, value));
            }
        }
        samples.sort_by_key(|(timestamp_ms, position, _)| (*timestamp_ms, *position));
        samples.dedup_by_key(|(timestamp_ms, _, _)| *timestamp_ms);
        Ok(samples.into_iter().map(|(timestamp_ms, _, value)| Sample { timestamp_ms, value }).collect())
    }
}

impl Iterator for MergedSeries<'_> {
    type Item = Result<(Labels, Vec<BlockChunk>), BlockError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_series() {
            Ok(series) => series.map(Ok),
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }
}

/// What one retention pass decided. The counts are what the caller adds to
/// `prometheus_tsdb_time_retentions_total` and `prometheus_tsdb_size_retentions_total` once the
/// blocks are deleted (0 or 1 each per pass, as upstream counts).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Blocks to delete, sorted by ULID.
    pub ulids: Vec<String>,
    /// 1 when time retention removed blocks.
    pub time_retentions_count: u64,
    /// 1 when size retention removed blocks.
    pub size_retentions_count: u64,
}

/// Which blocks retention removes, whole blocks only (upstream's `BeyondTimeRetention` and
/// `BeyondSizeRetention`). Blocks are taken newest first (by `maxTime`, ties by ULID, newest
/// first). Time: every block whose end is at least `duration_ms` behind the newest block's end
/// goes, the newest block never. Size: `extra_size_bytes` (WAL and head chunks) plus each
/// block's size in that order; the first block that takes the sum over the limit goes, with every
/// older one. `sizes_bytes[i]` is the size of `metas[i]` ([`Block::size_bytes`]).
pub fn retention_outcome(
    metas: &[BlockMeta],
    sizes_bytes: &[u64],
    retention: &Retention,
    extra_size_bytes: u64,
) -> Outcome {
    assert_eq!(metas.len(), sizes_bytes.len(), "one size per block meta");
    let mut newest_first: Vec<usize> = (0..metas.len()).collect();
    newest_first.sort_by(|&a, &b| (metas[b].max_time_ms, &metas[b].ulid).cmp(&(metas[a].max_time_ms, &metas[a].ulid)));
    let mut doomed = BTreeSet::new();
    let mut outcome = Outcome::default();
    if let (Some(duration_ms), Some(&newest)) = (retention.duration_ms.filter(|d| *d > 0), newest_first.first()) {
        let newest_max_time_ms = metas[newest].max_time_ms;
        let beyond = newest_first
            .iter()
            .skip(1)
            .position(|&index| newest_max_time_ms.saturating_sub(metas[index].max_time_ms) >= duration_ms);
        if let Some(position) = beyond {
            doomed.extend(newest_first[position + 1..].iter().map(|&index| &metas[index].ulid));
            outcome.time_retentions_count = 1;
        }
    }
    if let Some(size_max) = retention.size_bytes.filter(|size| *size > 0) {
        let mut total_size = extra_size_bytes;
        for (position, &index) in newest_first.iter().enumerate() {
            total_size = total_size.saturating_add(sizes_bytes[index]);
            if total_size > size_max {
                doomed.extend(newest_first[position..].iter().map(|&index| &metas[index].ulid));
                outcome.size_retentions_count = 1;
                break;
            }
        }
    }
    outcome.ulids = doomed.into_iter().cloned().collect();
    outcome
}

/// The ULIDs [`retention_outcome`] removes.
pub fn retention_excess(
    metas: &[BlockMeta],
    sizes_bytes: &[u64],
    retention: &Retention,
    extra_size_bytes: u64,
) -> Vec<String> {
    retention_outcome(metas, sizes_bytes, retention, extra_size_bytes).ulids
}

/// Blocks another present block replaced: those named among its `parents` (a crash after a
/// compaction but before its sources were deleted leaves them; upstream's `reloadBlocks`
/// deletes them), and those upstream marked `deletable`. Sorted by ULID.
pub fn superseded(metas: &[BlockMeta]) -> Vec<String> {
    let present: BTreeSet<&str> = metas.iter().map(|meta| meta.ulid.as_str()).collect();
    let mut doomed: BTreeSet<&str> = metas
        .iter()
        .flat_map(|meta| meta.compaction.parents.iter().map(|parent| parent.ulid.as_str()))
        .filter(|ulid| present.contains(ulid))
        .collect();
    doomed.extend(metas.iter().filter(|meta| meta.compaction.deletable).map(|meta| meta.ulid.as_str()));
    doomed.into_iter().map(str::to_string).collect()
}

#[cfg(test)]
mod tests;
