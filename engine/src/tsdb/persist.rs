//! Head persistence: the compactor task that writes the head's oldest block range into a block,
//! then truncates the head, the WAL (through a checkpoint) and the head-chunk files behind it
//! (Prometheus tsdb/db.go `Compact` → `compactHead`, head.go `truncateMemory`, `truncateWAL`).
//!
//! One round, while the head spans more than 1.5 block ranges (`Head::compactable_range`):
//! 1. raise the head's `min_valid_ms` to the range's end, then pass a barrier through the WAL
//!    writer's queue: every commit applied after it sees the new bound, so nothing more lands in
//!    the range (appenders refuse such samples as out of bounds);
//! 2. write the range's chunks, as they are, into a block (`block::write_block`: atomic) and add
//!    it to the served blocks; queries now see the range twice and the merge keeps one copy;
//! 3. wait until every querier opened before step 2 is gone (reader tokens), then drop the
//!    range from the head and remove series left empty;
//! 4. roll the WAL to a new segment and checkpoint the older two thirds of its segments
//!    (keeping series still in the head and samples at or after the range's end);
//! 5. remove head-chunk files that ended before the previous round's range (one round late, so
//!    a query that located a chunk there just before step 3 can still read it).
//!
//! Then, in the same round, blocks are compacted by level (`compact::plan` over
//! `compact::block_ranges`: 2 h, 6 h, 18 h, ... up to the maximum block duration) and retention
//! removes whole blocks past `retention.time` or beyond `retention.size` (blocks, WAL and head
//! chunks counted). Replaced and expired blocks leave the served list at once; their
//! directories go when the last querier reading them is dropped (`Block::delete_when_unused`).
//!
//! A failure stops the round and is counted; the next trigger retries. A crash anywhere leaves a
//! directory that opens: a `.tmp` block or checkpoint is removed, a written block raises the
//! replay's lower bound so its samples are not loaded twice.
//!
//! Concurrency: one round at a time (`PersistState::round`); the task holds only a weak handle
//! to the database and ends when the database is dropped. Block and checkpoint writing are
//! synchronous filesystem work on this task, never on the commit path.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{oneshot, Notify};

use super::block::{self, Block, BlockMeta, Ulid};
use super::commit::WriterRequest;
use super::compact;
use super::head::truncate::TruncateStats;
use super::wal::checkpoint::checkpoint;
use super::{Inner, TsdbError};
use crate::model::{Labels, Matcher, SeriesRef};
use crate::storage::{Querier, SelectHints, SeriesSet, StorageError};

/// How long head truncation waits for queriers older than the new block before going ahead;
/// past it, such a querier may miss the range (it is logged). Above the default query timeout.
const READER_WAIT_MS_MAX: u64 = 5 * 60 * 1000;
/// Poll interval of that wait.
const READER_POLL_MS: u64 = 10;

/// Counters of head persistence, for `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionCounts {
    /// Blocks written from the head (`prometheus_tsdb_compactions_total` counts these too).
    pub head_compactions_total: u64,
    /// Rounds that failed.
    pub compactions_failed_total: u64,
    /// Head truncations (`prometheus_tsdb_head_truncations_total`).
    pub head_truncations_total: u64,
    /// Checkpoints written (`prometheus_tsdb_checkpoint_creations_total`).
    pub checkpoint_creations_total: u64,
    /// Checkpoints that failed (`prometheus_tsdb_checkpoint_creations_failed_total`).
    pub checkpoint_creations_failed_total: u64,
    /// WAL segments deleted after a checkpoint.
    pub wal_segments_deleted_total: u64,
    /// Head-chunk files deleted.
    pub chunk_files_deleted_total: u64,
    /// Blocks written by compacting blocks.
    pub block_compactions_total: u64,
    /// Retention passes that removed blocks by time (`prometheus_tsdb_time_retentions_total`).
    pub time_retentions_total: u64,
    /// Retention passes that removed blocks by size (`prometheus_tsdb_size_retentions_total`).
    pub size_retentions_total: u64,
    /// Blocks removed by retention or replaced by compaction.
    pub blocks_removed_total: u64,
}

#[derive(Default)]
struct Counters {
    block_compactions_total: AtomicU64,
    time_retentions_total: AtomicU64,
    size_retentions_total: AtomicU64,
    blocks_removed_total: AtomicU64,
    head_compactions_total: AtomicU64,
    compactions_failed_total: AtomicU64,
    head_truncations_total: AtomicU64,
    checkpoint_creations_total: AtomicU64,
    checkpoint_creations_failed_total: AtomicU64,
    wal_segments_deleted_total: AtomicU64,
    chunk_files_deleted_total: AtomicU64,
}

/// Shared state of head persistence.
pub(super) struct PersistState {
    trigger: Arc<Notify>,
    /// Held by every querier; swapped for a new one when a block is added.
    reader_token: Mutex<Arc<()>>,
    /// One round at a time (the task and [`super::Db::compact_head`]).
    round: tokio::sync::Mutex<()>,
    /// End of the previous round's range: head-chunk files before it go in the next round.
    previous_range_end_ms: AtomicI64,
    /// Block ids drawn so far (the random part's stream position).
    ids_drawn: AtomicU64,
    counters: Counters,
}

impl PersistState {
    pub(super) fn new(trigger: Arc<Notify>) -> Self {
        PersistState {
            trigger,
            reader_token: Mutex::new(Arc::new(())),
            round: tokio::sync::Mutex::new(()),
            previous_range_end_ms: AtomicI64::new(i64::MIN),
            ids_drawn: AtomicU64::new(0),
            counters: Counters::default(),
        }
    }

    /// A token the caller keeps for as long as it reads.
    pub(super) fn reader_token(&self) -> Arc<()> {
        self.reader_token.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Replaces the token; the old one, returned, is free once its count is 1.
    fn renew_reader_token(&self) -> Arc<()> {
        std::mem::replace(&mut *self.reader_token.lock().unwrap_or_else(|poisoned| poisoned.into_inner()), Arc::new(()))
    }

    pub(super) fn counts(&self) -> CompactionCounts {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let counters = &self.counters;
        CompactionCounts {
            head_compactions_total: load(&counters.head_compactions_total),
            compactions_failed_total: load(&counters.compactions_failed_total),
            head_truncations_total: load(&counters.head_truncations_total),
            checkpoint_creations_total: load(&counters.checkpoint_creations_total),
            checkpoint_creations_failed_total: load(&counters.checkpoint_creations_failed_total),
            wal_segments_deleted_total: load(&counters.wal_segments_deleted_total),
            chunk_files_deleted_total: load(&counters.chunk_files_deleted_total),
            block_compactions_total: load(&counters.block_compactions_total),
            time_retentions_total: load(&counters.time_retentions_total),
            size_retentions_total: load(&counters.size_retentions_total),
            blocks_removed_total: load(&counters.blocks_removed_total),
        }
    }
}

/// A querier that keeps its reader token for its life.
pub(super) struct TrackedQuerier {
    pub(super) inner: Box<dyn Querier>,
    pub(super) _token: Arc<()>,
}

impl Querier for TrackedQuerier {
    fn select(&self, hints: Option<&SelectHints>, matchers: &[Matcher]) -> SeriesSet<'_> {
        self.inner.select(hints, matchers)
    }

    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        self.inner.label_names(matchers)
    }

    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        self.inner.label_values(name, matchers)
    }
}

/// The compactor task: a round whenever the WAL writer finds the head compactable, and every
/// `compaction_interval_ms` regardless; ends when the database is dropped.
pub(super) async fn run_compactor(db: Weak<Inner>) {
    loop {
        let (trigger, interval_ms) = match db.upgrade() {
            Some(inner) => (inner.persist.trigger.clone(), inner.options.compaction_interval_ms),
            None => return,
        };
        tokio::select! {
            biased;
            _ = trigger.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(interval_ms.max(1))) => {}
        }
        let Some(inner) = db.upgrade() else { return };
        if let Err(error) = compact_head(&inner).await {
            tracing::error!(%error, "head compaction failed; retrying at the next trigger");
        }
    }
}

fn block_error(error: block::BlockError) -> TsdbError {
    TsdbError::Io { context: "write block from the head".to_string(), source: std::io::Error::other(error.to_string()) }
}

fn closed() -> TsdbError {
    TsdbError::Io {
        context: "head compaction".to_string(),
        source: std::io::Error::other("the wal writer has stopped"),
    }
}

/// One round: head ranges into blocks while the head is compactable, then block compaction and
/// retention; returns the blocks written (from the head and by compaction).
pub(super) async fn compact_head(inner: &Inner) -> Result<Vec<BlockMeta>, TsdbError> {
    let _round = inner.persist.round.lock().await;
    let mut written = Vec::new();
    let result = run_round(inner, &mut written).await;
    if result.is_err() {
        inner.persist.counters.compactions_failed_total.fetch_add(1, Ordering::Relaxed);
    }
    result.map(|()| written)
}

async fn run_round(inner: &Inner, written: &mut Vec<BlockMeta>) -> Result<(), TsdbError> {
    while let Some((min_time_ms, max_time_ms)) = inner.head.compactable_range() {
        written.extend(persist_range(inner, min_time_ms, max_time_ms).await?);
    }
    compact_blocks(inner, written)?;
    apply_retention(inner)
}

/// Replaces the served block list by `next` (sorted here).
fn set_blocks(inner: &Inner, mut next: Vec<Block>) {
    next.sort_by_key(|opened| (opened.meta().min_time_ms, opened.meta().ulid.clone()));
    *inner.blocks.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(next);
}

fn current_blocks(inner: &Inner) -> Arc<Vec<Block>> {
    inner.blocks.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
}

/// Takes `ulids` out of the served list and deletes them once unused; returns how many.
fn remove_blocks(inner: &Inner, ulids: &[String]) -> usize {
    let blocks = current_blocks(inner);
    let (gone, kept): (Vec<Block>, Vec<Block>) =
        blocks.iter().cloned().partition(|opened| ulids.contains(&opened.meta().ulid));
    set_blocks(inner, kept);
    for opened in &gone {
        opened.delete_when_unused();
    }
    inner.persist.counters.blocks_removed_total.fetch_add(gone.len() as u64, Ordering::Relaxed);
    gone.len()
}

/// Compacts blocks by level until the planner finds nothing (Prometheus' `compactBlocks`).
fn compact_blocks(inner: &Inner, written: &mut Vec<BlockMeta>) -> Result<(), TsdbError> {
    let ranges = compact::block_ranges(inner.options.block_range_ms, inner.options.block_duration_max_ms);
    if ranges.len() < 2 {
        return Ok(());
    }
    loop {
        let blocks = current_blocks(inner);
        let metas: Vec<BlockMeta> = blocks.iter().map(Block::planning_meta).collect();
        let chosen = compact::plan(&metas, &ranges);
        if chosen.is_empty() {
            return Ok(());
        }
        let sources: Vec<Block> =
            blocks.iter().filter(|opened| chosen.contains(&opened.meta().ulid)).cloned().collect();
        let max_time_ms = sources.iter().map(|opened| opened.meta().max_time_ms).max().unwrap_or(0);
        let (ulid_time_ms, random) = block_id(inner, max_time_ms);
        let result = compact::compact(inner.fs.clone(), &inner.dir, &sources, Ulid::new(ulid_time_ms, random));
        match result.map_err(block_error)? {
            Some(meta) => {
                let opened = Block::open(inner.fs.clone(), &inner.dir.join(&meta.ulid)).map_err(block_error)?;
                let mut next: Vec<Block> = current_blocks(inner)
                    .iter()
                    .filter(|opened| !chosen.contains(&opened.meta().ulid))
                    .cloned()
                    .collect();
                next.push(opened);
                set_blocks(inner, next);
                for source in &sources {
                    source.delete_when_unused();
                }
                let counters = &inner.persist.counters;
                counters.block_compactions_total.fetch_add(1, Ordering::Relaxed);
                counters.blocks_removed_total.fetch_add(sources.len() as u64, Ordering::Relaxed);
                tracing::info!(ulid = %meta.ulid, sources = ?chosen, level = meta.compaction.level, "blocks compacted");
                written.push(meta);
            }
            None => {
                // No samples at all in the sources: they go without a successor, as upstream.
                remove_blocks(inner, &chosen);
            }
        }
    }
}

/// Bytes of the files directly in `dir` (the WAL's segments, the head-chunk files); checkpoint
/// directories count through their segments.
fn directory_size_bytes(inner: &Inner, dir: &std::path::Path) -> u64 {
    let Ok(names) = inner.fs.list_dir(dir) else { return 0 };
    names
        .iter()
        .map(|name| {
            let path = dir.join(name);
            match inner.fs.file_size(&path) {
                Ok(size) => size,
                Err(_) => directory_size_bytes(inner, &path),
            }
        })
        .sum()
}

/// Removes whole blocks past the retention time or beyond the retention size.
fn apply_retention(inner: &Inner) -> Result<(), TsdbError> {
    let retention = &inner.options.retention;
    if retention.duration_ms.is_none() && retention.size_bytes.is_none() {
        return Ok(());
    }
    let blocks = current_blocks(inner);
    if blocks.is_empty() {
        return Ok(());
    }
    let metas: Vec<BlockMeta> = blocks.iter().map(|opened| opened.meta().clone()).collect();
    let sizes: Vec<u64> = blocks.iter().map(Block::size_bytes).collect();
    let extra_size_bytes = match retention.size_bytes {
        Some(_) => {
            directory_size_bytes(inner, &inner.dir.join("wal"))
                + directory_size_bytes(inner, &inner.dir.join("chunks_head"))
        }
        None => 0,
    };
    let outcome = compact::retention_outcome(&metas, &sizes, retention, extra_size_bytes);
    if outcome.ulids.is_empty() {
        return Ok(());
    }
    let removed = remove_blocks(inner, &outcome.ulids);
    let counters = &inner.persist.counters;
    counters.time_retentions_total.fetch_add(outcome.time_retentions_count, Ordering::Relaxed);
    counters.size_retentions_total.fetch_add(outcome.size_retentions_count, Ordering::Relaxed);
    tracing::info!(removed, ulids = ?outcome.ulids, "blocks removed by retention");
    Ok(())
}

/// One round over `[min_time_ms, max_time_ms)`; `None` when the range held no samples.
async fn persist_range(inner: &Inner, min_time_ms: i64, max_time_ms: i64) -> Result<Option<BlockMeta>, TsdbError> {
    let head = &inner.head;
    head.raise_min_valid_ms(max_time_ms);
    let (reply, barrier) = oneshot::channel();
    inner.queue.send(WriterRequest::Barrier(reply)).await.map_err(|_| closed())?;
    barrier.await.map_err(|_| closed())?;

    let meta = write_head_block(inner, min_time_ms, max_time_ms)?;
    if let Some(meta) = &meta {
        let opened = Block::open(inner.fs.clone(), &inner.dir.join(&meta.ulid)).map_err(block_error)?;
        let mut next: Vec<Block> = current_blocks(inner).iter().cloned().collect();
        next.push(opened);
        set_blocks(inner, next);
        inner.persist.counters.head_compactions_total.fetch_add(1, Ordering::Relaxed);
        tracing::info!(ulid = %meta.ulid, min_time_ms, max_time_ms, series = meta.stats.series_count,
            samples = meta.stats.sample_count, "head range persisted into a block");
    }

    wait_for_older_readers(inner).await;
    let TruncateStats { chunk_count, series_count } = head.truncate_before(max_time_ms);
    inner.persist.counters.head_truncations_total.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(chunk_count, series_count, max_time_ms, "head truncated");

    truncate_wal(inner, max_time_ms).await?;

    let previous_end_ms = inner.persist.previous_range_end_ms.swap(max_time_ms, Ordering::Relaxed);
    if previous_end_ms != i64::MIN {
        let (reply, removed) = oneshot::channel();
        let request = WriterRequest::RemoveChunkFiles { before_ms: previous_end_ms, reply };
        inner.queue.send(request).await.map_err(|_| closed())?;
        let removed = removed.await.map_err(|_| closed())?;
        inner.persist.counters.chunk_files_deleted_total.fetch_add(removed as u64, Ordering::Relaxed);
    }
    Ok(meta)
}

/// Writes the head's chunks inside the range into a block; `None` if it has none.
fn write_head_block(inner: &Inner, min_time_ms: i64, max_time_ms: i64) -> Result<Option<BlockMeta>, TsdbError> {
    let head = &inner.head;
    let series = head.series_in_range(min_time_ms, max_time_ms);
    if series.is_empty() {
        return Ok(None);
    }
    let mut read_error: Option<StorageError> = None;
    let chunks = series.into_iter().filter_map(|(labels, series_ref): (Labels, u32)| {
        if read_error.is_some() {
            return None;
        }
        match head.chunks_in_range(series_ref, min_time_ms, max_time_ms) {
            Ok(chunks) if chunks.is_empty() => None,
            Ok(chunks) => Some((labels, chunks)),
            Err(error) => {
                read_error = Some(error);
                None
            }
        }
    });
    let (ulid_time_ms, random) = block_id(inner, max_time_ms);
    let written =
        block::write_block(inner.fs.clone(), &inner.dir, chunks, ulid_time_ms, random, min_time_ms, max_time_ms);
    let meta = written.map_err(block_error)?;
    if let Some(error) = read_error {
        // The block lacks series whose chunks could not be read: do not serve it.
        let _ = inner.fs.remove_dir_all(&inner.dir.join(&meta.ulid));
        return Err(TsdbError::Io {
            context: "read head chunks for a block".to_string(),
            source: std::io::Error::other(error.to_string()),
        });
    }
    if meta.stats.series_count == 0 {
        let _ = inner.fs.remove_dir_all(&inner.dir.join(&meta.ulid));
        return Ok(None);
    }
    Ok(Some(meta))
}

/// The time and random parts of a new block id.
fn block_id(inner: &Inner, max_time_ms: i64) -> (u64, u128) {
    let time_ms = match &inner.options.clock {
        Some(clock) => clock.now_ms(),
        None => max_time_ms,
    };
    let drawn = inner.persist.ids_drawn.fetch_add(1, Ordering::Relaxed);
    let mut rng = crate::io::RandomStreams::new(inner.options.seed).stream(&format!("tsdb-block-id-{drawn}"));
    (u64::try_from(time_ms).unwrap_or(0), rng.random::<u128>())
}

/// Waits until every querier that took the previous reader token has finished (bounded).
async fn wait_for_older_readers(inner: &Inner) {
    let old = inner.persist.renew_reader_token();
    let mut waited_ms = 0;
    while Arc::strong_count(&old) > 1 {
        if waited_ms >= READER_WAIT_MS_MAX {
            tracing::warn!(waited_ms, "queriers older than the new block are still open; truncating the head anyway");
            return;
        }
        tokio::time::sleep(Duration::from_millis(READER_POLL_MS)).await;
        waited_ms += READER_POLL_MS;
    }
}

/// Rolls the WAL and checkpoints the older two thirds of its segments (Prometheus'
/// `truncateWAL`: "the lower two thirds of segments should contain mostly obsolete samples").
async fn truncate_wal(inner: &Inner, min_time_ms: i64) -> Result<(), TsdbError> {
    let (reply, rolled) = oneshot::channel();
    inner.queue.send(WriterRequest::RollSegment(reply)).await.map_err(|_| closed())?;
    let current = rolled.await.map_err(|_| closed())??;
    let wal_dir = inner.dir.join("wal");
    let names = inner
        .fs
        .list_dir(&wal_dir)
        .map_err(|source| TsdbError::Io { context: format!("list {}", wal_dir.display()), source })?;
    let Some(first) = names
        .iter()
        .filter(|name| !name.is_empty() && name.bytes().all(|byte| byte.is_ascii_digit()))
        .filter_map(|name| name.parse::<u32>().ok())
        .min()
    else {
        return Ok(());
    };
    let Some(last_closed) = current.checked_sub(1) else { return Ok(()) };
    let last = first + last_closed.saturating_sub(first) * 2 / 3;
    if last <= first {
        return Ok(());
    }
    let head = inner.head.clone();
    let keep =
        move |series_ref: SeriesRef| u32::try_from(series_ref.0).is_ok_and(|series_ref| head.contains(series_ref));
    match checkpoint(inner.fs.clone(), &wal_dir, last, &keep, min_time_ms, inner.options.wal) {
        Ok(Some(stats)) => {
            let counters = &inner.persist.counters;
            counters.checkpoint_creations_total.fetch_add(1, Ordering::Relaxed);
            counters.wal_segments_deleted_total.fetch_add(u64::from(stats.segments_deleted_count), Ordering::Relaxed);
            tracing::info!(
                segment_last = last,
                series_kept = stats.series_kept_count,
                samples_kept = stats.samples_kept_count,
                "wal checkpoint written"
            );
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(error) => {
            inner.persist.counters.checkpoint_creations_failed_total.fetch_add(1, Ordering::Relaxed);
            Err(error.into())
        }
    }
}
