//! Time-series storage: an in-memory head behind a write-ahead log, served through the
//! [`crate::storage`] seams.
//!
//! Write path: an appender checks samples against the head and creates new series at once
//! (`head::append`); its commit encodes the WAL records on the caller's task and queues them for
//! the WAL writer task (`commit`), which groups waiting commits into one write and one fsync and
//! then applies them to the head in order. Read path: a querier plans postings for the matchers
//! and streams series sorted by labels (`head::read`), merged with the persistent blocks in the
//! data directory (`block`: Prometheus' format, written by promtool, Prometheus or this engine).
//! Open: the directory is locked, blocks are opened, the WAL (after Prometheus' checkpoint, if
//! any) is replayed segment by segment into the head, repairing damage (`wal`), before the
//! writer starts.
//!
//! Concurrency: [`Db`] is a cheap handle shared by scrape loops, the API and the writer; the head
//! is sharded (see `head`), the WAL belongs to the writer task alone.

pub mod backfill;
pub mod block;
pub mod chunk;
pub mod chunks;
pub mod chunks_head;
pub mod commit;
pub mod compact;
pub mod head;
pub mod index;
mod persist;
pub use persist::CompactionCounts;
pub mod postings;
pub mod symbols;
pub mod wal;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;

use crate::io::{Clock, FileSystem, Spawner};
use crate::limits::{
    BLOCK_RANGE_MS_DEFAULT, CHUNK_SAMPLE_COUNT_MAX_DEFAULT, COMMIT_QUEUE_CAPACITY, SERIES_COUNT_MAX_DEFAULT,
};
use crate::model::{Labels, Sample};
use crate::storage::{Appendable, Appender, Querier, Queryable, StorageError};
use commit::{CommitCounters, SyncPolicy, Writer, WriterRequest};
use head::{Appendability, Head, HeadOptions, Replayed};
use wal::{Record, ReplayItem, Wal, WalOptions};

/// Called after each successful commit with the committed samples (the simulator's durability
/// checker); runs on the WAL writer task, after the samples are durable and visible.
pub type CommitObserver = Arc<dyn Fn(&[(Labels, Sample)]) + Send + Sync>;

/// Storage settings.
#[derive(Clone)]
pub struct DbOptions {
    /// WAL settings.
    pub wal: WalOptions,
    /// When commits are synced.
    pub sync_policy: SyncPolicy,
    /// Samples per chunk before a new one is cut.
    pub chunk_sample_count_max: usize,
    /// Block range, the minimum block duration (`--storage.tsdb.min-block-duration`); head
    /// chunks never span a multiple of it.
    pub block_range_ms: i64,
    /// Longest a compacted block may span (`--storage.tsdb.max-block-duration`).
    pub block_duration_max_ms: i64,
    /// Which blocks retention removes (`--storage.tsdb.retention.time`, `.retention.size`).
    pub retention: compact::Retention,
    /// Most series the head holds (`storage.tsdb.max_series`).
    pub series_count_max: u64,
    /// Skip the data directory's lock file (`--storage.tsdb.no-lockfile`).
    pub no_lockfile: bool,
    /// Optional commit hook.
    pub commit_observer: Option<CommitObserver>,
    /// Wall clock for the time part of new block ids; without one, a block's id carries its
    /// own end time (deterministic, still sortable).
    pub clock: Option<Arc<dyn Clock>>,
    /// Seed of the random part of new block ids.
    pub seed: u64,
    /// How often the compactor checks the head even when no commit woke it, ms (Prometheus: 1 m).
    pub compaction_interval_ms: u64,
    /// Run the compactor task (Prometheus' compactions can be disabled the same way); without
    /// it only [`Db::compact_head`] persists the head.
    pub background_compaction: bool,
}

impl Default for DbOptions {
    /// Prometheus' defaults: 15 d retention, 2 h blocks compacted up to 36 h (a tenth of it).
    fn default() -> Self {
        let settings = compact::RetentionSettings::default().resolve();
        DbOptions {
            wal: WalOptions::default(),
            sync_policy: SyncPolicy::Commit,
            chunk_sample_count_max: CHUNK_SAMPLE_COUNT_MAX_DEFAULT,
            block_range_ms: BLOCK_RANGE_MS_DEFAULT,
            block_duration_max_ms: settings.block_duration_max_ms,
            retention: settings.retention,
            series_count_max: SERIES_COUNT_MAX_DEFAULT,
            no_lockfile: false,
            commit_observer: None,
            clock: None,
            seed: 0,
            compaction_interval_ms: 60_000,
            background_compaction: true,
        }
    }
}

/// Counters and gauges for `/metrics`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DbStats {
    /// Series in the head.
    pub series_count: u64,
    /// Series created since start (replay included).
    pub series_created_total: u64,
    /// New series refused by the series limit.
    pub series_limit_refusals_total: u64,
    /// Chunks in the head.
    pub chunk_count: u64,
    /// Persistent blocks served.
    pub block_count: u64,
    /// Full chunks written to `chunks_head/` (and dropped from the heap) since start.
    pub chunks_offloaded_total: u64,
    /// Full chunks that could not be written out and stayed in memory.
    pub chunk_offload_failures_total: u64,
    /// Oldest and newest sample in the head.
    pub time_range_ms: Option<(i64, i64)>,
    /// Commits made durable and visible.
    pub commits_total: u64,
    /// Samples appended since start (replay excluded).
    pub samples_appended_total: u64,
    /// Samples dropped at commit as out of order or with a duplicate timestamp.
    pub out_of_order_samples_total: u64,
    /// WAL writes (each one or more grouped commits).
    pub wal_writes_total: u64,
    /// WAL writes that failed.
    pub wal_write_failures_total: u64,
    /// WAL fsyncs.
    pub wal_fsyncs_total: u64,
    /// Time spent in WAL fsyncs, seconds.
    pub wal_fsync_duration_seconds_total: f64,
    /// Segment being written.
    pub wal_segment_index: u32,
    /// WAL records replayed at start.
    pub wal_records_replayed: u64,
    /// Samples replayed at start.
    pub wal_samples_replayed: u64,
    /// WAL corruptions found and repaired at start.
    pub wal_corruptions_repaired_total: u64,
    /// Bytes dropped from the WAL by repair.
    pub wal_bytes_truncated_total: u64,
    /// Samples in the WAL whose series was unknown (skipped at replay).
    pub wal_unknown_series_samples_total: u64,
    /// False after a failed WAL write until one succeeds again.
    pub ready_for_writes: bool,
    /// Samples refused because their range is already persisted in a block (replay's skips
    /// included).
    pub out_of_bounds_samples_total: u64,
    /// Series removed from the head by truncation.
    pub series_removed_total: u64,
    /// Chunks removed from the head by truncation.
    pub chunks_removed_total: u64,
    /// Samples skipped at replay because a block holds their range.
    pub wal_samples_skipped_persisted: u64,
    /// Compaction and truncation counters.
    pub compaction: persist::CompactionCounts,
}

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum TsdbError {
    /// A filesystem operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A record would exceed the WAL's record size limit.
    #[error("wal record of {size} bytes exceeds the limit of {size_max} bytes")]
    RecordTooLarge {
        /// Encoded size.
        size: usize,
        /// Limit.
        size_max: usize,
    },
    /// The head-chunk files could not be set up.
    #[error("head chunks: {source}")]
    ChunksHead {
        /// Cause.
        source: chunks_head::ChunksHeadError,
    },
    /// Another process holds the data directory's lock file.
    #[error(
        "data directory {} is in use by another process (lock file {} is held); stop it, or pass \
         --storage.tsdb.no-lockfile if you are sure it is not",
        dir.display(),
        dir.join("lock").display()
    )]
    Locked {
        /// The data directory.
        dir: std::path::PathBuf,
    },
    /// The write-ahead log failed (other than I/O or record size).
    #[error("wal: {source}")]
    Wal {
        /// Cause.
        source: wal::WalError,
    },
}

/// Opens every block directory in `dir` (named by a ULID, with a `meta.json`), oldest first. A
/// block that does not open is logged, left on disk untouched and not served; leftovers of an
/// interrupted block write (`<ULID>.tmp`) or deletion (`<ULID>.tmp-for-deletion`) are removed,
/// as Prometheus does.
fn open_blocks(fs: &Arc<dyn FileSystem>, dir: &Path) -> Result<Vec<block::Block>, TsdbError> {
    let names = fs
        .list_dir(dir)
        .map_err(|source| TsdbError::Io { context: format!("list data directory {}", dir.display()), source })?;
    let mut blocks = Vec::new();
    for name in names {
        let path = dir.join(&name);
        if let Some(stem) = name.strip_suffix(block::TMP_FOR_DELETION_SUFFIX) {
            if block::Ulid::parse(stem).is_some() {
                tracing::warn!(dir = %path.display(), "removing the rest of an interrupted block deletion");
                fs.remove_dir_all(&path)
                    .map_err(|source| TsdbError::Io { context: format!("remove {}", path.display()), source })?;
            }
            continue;
        }
        if let Some(stem) = name.strip_suffix(".tmp") {
            if block::Ulid::parse(stem).is_some() {
                tracing::warn!(dir = %path.display(), "removing an interrupted block write");
                fs.remove_dir_all(&path)
                    .map_err(|source| TsdbError::Io { context: format!("remove {}", path.display()), source })?;
            }
            continue;
        }
        if block::Ulid::parse(&name).is_none() {
            continue;
        }
        match block::Block::open(fs.clone(), &path) {
            Ok(opened) => blocks.push(opened),
            Err(error) => tracing::error!(%error, dir = %path.display(), "block does not open; not served"),
        }
    }
    blocks.sort_by_key(|opened| (opened.meta().min_time_ms, opened.meta().ulid.clone()));
    Ok(blocks)
}

/// What replay tallied.
#[derive(Default)]
struct ReplayTally {
    // Lookup only; never iterated.
    aliases: HashMap<u32, u32>,
    samples_replayed: u64,
    unknown_series_samples: u64,
    /// Newest sample timestamp replayed before the most recent damage, to report the gap.
    newest_before_damage_ms: Option<i64>,
    damage_pending: bool,
    newest_ms: Option<i64>,
    /// Samples whose range a block already holds.
    skipped_persisted: u64,
}

impl ReplayTally {
    fn apply(&mut self, head: &Head, item: ReplayItem) {
        match item {
            ReplayItem::Record(Record::Series(series)) => {
                for (series_ref, labels) in series {
                    let Ok(head_ref) = u32::try_from(series_ref.0) else {
                        tracing::warn!(series_ref = series_ref.0, "wal series reference beyond 2^32; ignoring");
                        continue;
                    };
                    match head.replay_series(head_ref, &labels) {
                        Replayed::Created | Replayed::AlreadyKnown => {}
                        Replayed::Alias { from, to } => {
                            self.aliases.insert(from, to);
                        }
                        Replayed::Conflict => {
                            tracing::warn!(series_ref = head_ref, %labels, "wal reuses a series reference; ignoring");
                        }
                    }
                }
            }
            ReplayItem::Record(Record::Samples(samples)) => {
                for sample in samples {
                    let Ok(head_ref) = u32::try_from(sample.series_ref.0) else {
                        self.unknown_series_samples += 1;
                        continue;
                    };
                    // Aliases exist only after a failed commit was retried: skip the lookup otherwise.
                    let head_ref = match self.aliases.is_empty() {
                        true => head_ref,
                        false => self.aliases.get(&head_ref).copied().unwrap_or(head_ref),
                    };
                    if self.damage_pending {
                        self.damage_pending = false;
                        tracing::warn!(
                            newest_before_ms = self.newest_before_damage_ms,
                            first_after_ms = sample.timestamp_ms,
                            "wal damage: samples between these times may be missing"
                        );
                    }
                    match head.append(head_ref, sample.timestamp_ms, sample.value) {
                        // Prometheus counts and skips these too (head_wal.go).
                        None => self.unknown_series_samples += 1,
                        Some(Appendability::Append) => {
                            self.samples_replayed += 1;
                            self.newest_ms = self.newest_ms.max(Some(sample.timestamp_ms));
                        }
                        Some(Appendability::OutOfBounds { .. }) => self.skipped_persisted += 1,
                        Some(_) => {}
                    }
                }
            }
            ReplayItem::Record(Record::Tombstones(stones)) => {
                // Deletions (Prometheus' admin API) are not applied yet; say so rather than hide it.
                tracing::warn!(
                    count = stones.len(),
                    "wal tombstones are not applied yet; deleted samples stay visible"
                );
            }
            ReplayItem::Corruption(_) => {
                self.newest_before_damage_ms = self.newest_ms;
                self.damage_pending = true;
            }
        }
    }
}

struct Inner {
    fs: Arc<dyn FileSystem>,
    dir: std::path::PathBuf,
    options: DbOptions,
    /// Persistent blocks, oldest first; queries take the current list.
    blocks: RwLock<Arc<Vec<block::Block>>>,
    /// Held for the database's life; `None` with `no_lockfile`.
    _lock: Option<Box<dyn crate::io::FileLock>>,
    head: Arc<Head>,
    queue: mpsc::Sender<WriterRequest>,
    counters: Arc<CommitCounters>,
    replay: DbStats,
    /// Head persistence, truncation and their counters.
    persist: persist::PersistState,
    /// Changes after every WAL write and segment roll ([`Db::wal_written`]).
    wal_written: tokio::sync::watch::Receiver<u64>,
}

/// The database: a cheap, cloneable handle.
#[derive(Clone)]
pub struct Db(Arc<Inner>);

impl Db {
    /// Opens (or creates) the database in `dir`, replaying and repairing its WAL, and starts the
    /// WAL writer task on `spawner` (so it must be called inside the runtime that will serve it).
    pub fn open(
        fs: Arc<dyn FileSystem>,
        spawner: &dyn Spawner,
        dir: &Path,
        options: DbOptions,
    ) -> Result<Db, TsdbError> {
        fs.create_dir_all(dir)
            .map_err(|source| TsdbError::Io { context: format!("create data directory {}", dir.display()), source })?;
        // As Prometheus' `lock` file: two servers on one directory would both write the same WAL
        // segments and lose samples without a warning.
        let lock = match options.no_lockfile {
            true => None,
            false => Some(fs.lock(&dir.join("lock")).map_err(|source| match source.kind() {
                std::io::ErrorKind::WouldBlock => TsdbError::Locked { dir: dir.to_path_buf() },
                _ => TsdbError::Io { context: format!("lock data directory {}", dir.display()), source },
            })?),
        };
        let mut blocks = open_blocks(&fs, dir)?;
        // A crash between a compaction and the deletion of its sources leaves both: serve the
        // successor only (upstream's `reloadBlocks`).
        let metas: Vec<block::BlockMeta> = blocks.iter().map(|opened| opened.meta().clone()).collect();
        let superseded = compact::superseded(&metas);
        if !superseded.is_empty() {
            tracing::info!(ulids = ?superseded, "removing blocks that a compacted block replaced");
            blocks.retain(|opened| {
                let replaced = superseded.contains(&opened.meta().ulid);
                if replaced {
                    opened.delete_when_unused();
                }
                !replaced
            });
        }
        // Full chunks live in `chunks_head/`. The WAL is never truncated yet (no blocks), so it
        // alone is the source of truth: old chunk files are removed and rewritten by replay.
        let chunks_dir = dir.join("chunks_head");
        match fs.remove_dir_all(&chunks_dir) {
            Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
                return Err(TsdbError::Io { context: format!("remove {}", chunks_dir.display()), source });
            }
            _ => {}
        }
        let chunk_io = |source: chunks_head::ChunksHeadError| TsdbError::ChunksHead { source };
        let mut chunk_writer = chunks_head::HeadChunkWriter::open(fs.clone(), &chunks_dir).map_err(chunk_io)?;
        let chunk_reader = chunks_head::HeadChunkReader::open(fs.clone(), &chunks_dir).map_err(chunk_io)?;
        let head = Arc::new(
            Head::new(HeadOptions {
                chunk_sample_count_max: options.chunk_sample_count_max,
                chunk_range_ms: options.block_range_ms,
                series_count_max: options.series_count_max,
            })
            .with_chunk_reader(chunk_reader),
        );
        // Samples older than the newest block's end are in that block already (Prometheus'
        // `minValidTime`): replay skips them and appends refuse them.
        if let Some(newest_end_ms) = blocks.iter().map(|opened| opened.meta().max_time_ms).max() {
            head.raise_min_valid_ms(newest_end_ms);
        }
        let mut tally = ReplayTally::default();
        let (wal, report) = Wal::open(fs.clone(), &dir.join("wal"), options.wal, &mut |item| {
            tally.apply(&head, item);
            // Replay writes full chunks out as it goes: its memory stays that of the open chunks.
            head.offload(&mut chunk_writer);
        })?;
        if tally.unknown_series_samples > 0 {
            tracing::warn!(count = tally.unknown_series_samples, "wal samples for unknown series skipped");
        }
        let replay = DbStats {
            wal_records_replayed: report.record_count,
            wal_samples_replayed: tally.samples_replayed,
            wal_corruptions_repaired_total: report.corruptions.len() as u64,
            wal_bytes_truncated_total: report.bytes_dropped,
            wal_unknown_series_samples_total: tally.unknown_series_samples,
            wal_samples_skipped_persisted: tally.skipped_persisted,
            ..DbStats::default()
        };
        let counters = Arc::new(CommitCounters::default());
        counters.ready_for_writes.store(true, Ordering::Relaxed);
        counters.wal_segment_index.store(u64::from(wal.segment_index()), Ordering::Relaxed);
        let (queue, receiver) = mpsc::channel(COMMIT_QUEUE_CAPACITY);
        let compact_trigger = Arc::new(tokio::sync::Notify::new());
        let (wal_written, wal_written_receiver) = tokio::sync::watch::channel(0_u64);
        let writer = Writer {
            wal,
            head: head.clone(),
            receiver,
            policy: options.sync_policy,
            observer: options.commit_observer.clone(),
            counters: counters.clone(),
            chunk_writer,
            compact_trigger: compact_trigger.clone(),
            wal_written,
        };
        spawner.spawn("tsdb-wal-writer", Box::pin(writer.run()));
        if head.compactable_range().is_some() {
            compact_trigger.notify_one();
        }
        let inner = Arc::new(Inner {
            fs,
            dir: dir.to_path_buf(),
            options,
            blocks: RwLock::new(Arc::new(blocks)),
            _lock: lock,
            head,
            queue,
            counters,
            replay,
            persist: persist::PersistState::new(compact_trigger),
            wal_written: wal_written_receiver,
        });
        if inner.options.background_compaction {
            spawner.spawn("tsdb-compactor", Box::pin(persist::run_compactor(Arc::downgrade(&inner))));
        }
        Ok(Db(inner))
    }

    /// The WAL directory (`<data>/wal`), for readers that follow the log (remote write).
    pub fn wal_dir(&self) -> std::path::PathBuf {
        self.0.dir.join("wal")
    }

    /// The oldest time the database holds, Unix ms: the first block's start, else the head's
    /// oldest sample; `None` when empty (Prometheus' `DB.StartTime`, which remote read's
    /// `read_recent: false` compares against).
    pub fn start_time_ms(&self) -> Option<i64> {
        let blocks = self.blocks();
        let first_block = blocks.iter().map(|opened| opened.meta().min_time_ms).min();
        first_block.or_else(|| self.0.head.time_range_ms().map(|(min_time_ms, _)| min_time_ms))
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.0.dir
    }

    /// A receiver whose value changes after every WAL write and segment roll: WAL readers wait
    /// on it instead of polling.
    pub fn wal_written(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.wal_written.clone()
    }

    /// The blocks served now, oldest first.
    fn blocks(&self) -> Arc<Vec<block::Block>> {
        self.0.blocks.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Persists the head's oldest ranges into blocks while it spans more than 1.5 block ranges,
    /// truncates the head and the WAL behind them; returns the blocks written. The compactor task
    /// does this on its own; this is for tests and tools.
    pub async fn compact_head(&self) -> Result<Vec<block::BlockMeta>, TsdbError> {
        persist::compact_head(&self.0).await
    }

    /// Current statistics.
    pub fn stats(&self) -> DbStats {
        let Inner { head, counters, replay, .. } = &*self.0;
        let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        let head_counters = &head.counters;
        DbStats {
            series_count: head.series_count(),
            series_created_total: load(&head_counters.series_created_total),
            series_limit_refusals_total: load(&head_counters.series_limit_refusals_total),
            chunk_count: head.chunk_count(),
            block_count: self.blocks().len() as u64,
            chunks_offloaded_total: load(&head_counters.chunks_offloaded_total),
            chunk_offload_failures_total: load(&head_counters.chunk_offload_failures_total),
            time_range_ms: head.time_range_ms(),
            commits_total: load(&counters.commits_total),
            samples_appended_total: load(&counters.samples_appended_total),
            out_of_order_samples_total: load(&counters.out_of_order_samples_total),
            wal_writes_total: load(&counters.wal_writes_total),
            wal_write_failures_total: load(&counters.wal_write_failures_total),
            wal_fsyncs_total: load(&counters.wal_fsyncs_total),
            wal_fsync_duration_seconds_total: load(&counters.wal_fsync_duration_ns_total) as f64 / 1e9,
            wal_segment_index: load(&counters.wal_segment_index) as u32,
            ready_for_writes: counters.ready_for_writes.load(Ordering::Relaxed),
            out_of_bounds_samples_total: load(&head_counters.out_of_bounds_samples_total),
            series_removed_total: load(&head_counters.series_removed_total),
            chunks_removed_total: load(&head_counters.chunks_removed_total),
            compaction: self.0.persist.counts(),
            ..replay.clone()
        }
    }
}

impl Appendable for Db {
    fn appender(&self) -> Box<dyn Appender> {
        Box::new(head::append::HeadAppender::new(self.0.head.clone(), self.0.queue.clone()))
    }
}

impl Queryable for Db {
    /// The head and every block overlapping the range, merged (the head first).
    fn querier(&self, min_time_ms: i64, max_time_ms: i64) -> Result<Box<dyn Querier>, StorageError> {
        // The reader token first, then the blocks: head truncation waits for every querier that
        // may predate the block it just added, so no querier misses a range.
        let token = self.0.persist.reader_token();
        let head: Box<dyn Querier> =
            Box::new(head::read::HeadQuerier::new(self.0.head.clone(), min_time_ms, max_time_ms));
        let blocks = self.blocks();
        let overlapping: Vec<&block::Block> = blocks
            .iter()
            .filter(|opened| opened.meta().min_time_ms <= max_time_ms && opened.meta().max_time_ms > min_time_ms)
            .collect();
        let merged: Box<dyn Querier> = if overlapping.is_empty() {
            head
        } else {
            let mut sources = vec![head];
            for opened in overlapping {
                sources.push(Box::new(opened.querier(min_time_ms, max_time_ms)));
            }
            Box::new(crate::storage::merge::MergeQuerier::new(sources))
        };
        Ok(Box::new(persist::TrackedQuerier { inner: merged, _token: token }))
    }
}

/// `/api/v1/status/tsdb`'s figures (Prometheus `tsdb.Stats` / `index.PostingsStats`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TsdbStatus {
    /// Series in the head.
    pub series_count: u64,
    /// Distinct label pairs.
    pub label_pair_count: u64,
    /// Chunks in the head.
    pub chunk_count: u64,
    /// Oldest and newest sample in the head.
    pub time_range_ms: Option<(i64, i64)>,
    /// Top metric names by series count.
    pub series_count_by_metric_name: Vec<(String, u64)>,
    /// Top label names by distinct value count.
    pub label_value_count_by_label_name: Vec<(String, u64)>,
    /// Top label names by bytes of their values over all series.
    pub memory_in_bytes_by_label_name: Vec<(String, u64)>,
    /// Top `name=value` pairs by series count.
    pub series_count_by_label_value_pair: Vec<(String, u64)>,
}

/// The `limit` largest entries, largest first, ties by name (a stable, deterministic order).
fn top(mut entries: Vec<(String, u64)>, limit: usize) -> Vec<(String, u64)> {
    entries.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    entries.truncate(limit);
    entries
}

impl Db {
    /// Cardinality statistics of the head, each list cut to its `limit` largest entries.
    pub fn tsdb_status(&self, limit: usize) -> TsdbStatus {
        let head = &self.0.head;
        let (pairs, by_metric, value_counts, memory, by_pair) = head.with_postings(|postings, symbols| {
            let mut by_metric = Vec::new();
            let mut value_counts = Vec::new();
            let mut memory = Vec::new();
            let mut by_pair = Vec::new();
            for name_id in postings.name_ids() {
                let name = symbols.get(name_id);
                let mut value_count = 0_u64;
                let mut bytes = 0_u64;
                for (value_id, list) in postings.values(name_id) {
                    let value = symbols.get(value_id);
                    value_count += 1;
                    bytes += (value.len() * list.len()) as u64;
                    by_pair.push((format!("{name}={value}"), list.len() as u64));
                    if name == crate::model::METRIC_NAME_LABEL {
                        by_metric.push((value.to_string(), list.len() as u64));
                    }
                }
                value_counts.push((name.to_string(), value_count));
                memory.push((name.to_string(), bytes));
            }
            (postings.pair_count() as u64, by_metric, value_counts, memory, by_pair)
        });
        TsdbStatus {
            series_count: head.series_count(),
            label_pair_count: pairs,
            chunk_count: head.chunk_count(),
            time_range_ms: head.time_range_ms(),
            series_count_by_metric_name: top(by_metric, limit),
            label_value_count_by_label_name: top(value_counts, limit),
            memory_in_bytes_by_label_name: top(memory, limit),
            series_count_by_label_value_pair: top(by_pair, limit),
        }
    }
}
