//! The in-memory head: series with interned, packed labels, an inverted index, and each series'
//! samples in XOR chunks (Prometheus tsdb/head.go, with its striped series map).
//!
//! Layout: series live in [`HEAD_SHARD_COUNT`] shards by reference (`ref % shards`, slot
//! `ref / shards`), each behind its own `RwLock`; a second set of shards maps a hash of the label
//! set to references (collisions kept in a side map, as upstream's `seriesHashmap`). Labels are
//! `(name id, value id)` pairs of the head's symbol table, sorted by name string. A series' chunk
//! being appended to is mutable; a full chunk is frozen into an immutable, exactly sized
//! `Arc<[u8]>` that queries share without copying.
//!
//! Invariants: references are handed out in increasing order, never reused, and stay below 2^32;
//! each series' samples are strictly increasing in time; a chunk never spans a block boundary
//! (`chunk_range_ms`) and holds at most `chunk_sample_count_max` samples.
//!
//! Concurrency and lock order: a creator holds its hash shard's write lock while it interns symbols
//! (symbol lock, released), fills the series shard (released) and adds postings (released); a reader
//! takes the postings lock (released) before series shard read locks, and the symbol read lock
//! only inside a series shard lock. No path takes two locks in another order, and no lock is held
//! across an `.await`. Appends to different shards never contend; a query holds a shard's read
//! lock only while it copies one series' chunk handles.

pub mod append;
pub mod read;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::chunk::XorChunk;
use super::chunks_head::{ChunkDiskRef, HeadChunkReader, HeadChunkWriter};
use super::postings::Postings;
use super::symbols::{SymbolTable, Symbols};
use crate::limits::HEAD_SHARD_COUNT;
use crate::model::{Label, Labels, Matcher, SeriesRef};
use crate::storage::AppendError;

/// Result of checking a sample against a series' newest sample (Prometheus
/// tsdb/head_append.go `appendable`).
#[derive(Debug, PartialEq, Eq)]
pub enum Appendability {
    /// Newer than anything stored.
    Append,
    /// Same timestamp and bit-identical value: accepted, stored once.
    Duplicate,
    /// Older than the newest sample.
    OutOfOrder {
        /// Newest stored timestamp.
        last_timestamp_ms: i64,
    },
    /// Same timestamp, different value.
    DuplicateTimestamp,
    /// Older than the head's lower bound: that range is persisted in a block already.
    OutOfBounds {
        /// The oldest timestamp the head accepts.
        min_valid_ms: i64,
    },
}

/// Checks `(timestamp_ms, value)` against the newest sample `last`.
pub fn appendability(last: Option<(i64, u64)>, timestamp_ms: i64, value: f64) -> Appendability {
    match last {
        None => Appendability::Append,
        Some((last_ms, _)) if timestamp_ms > last_ms => Appendability::Append,
        Some((last_ms, last_bits)) if timestamp_ms == last_ms => {
            if last_bits == value.to_bits() {
                Appendability::Duplicate
            } else {
                Appendability::DuplicateTimestamp
            }
        }
        Some((last_ms, _)) => Appendability::OutOfOrder { last_timestamp_ms: last_ms },
    }
}

/// Head settings.
#[derive(Clone, Debug)]
pub struct HeadOptions {
    /// Samples per chunk before a new one is cut (Prometheus: 120).
    pub chunk_sample_count_max: usize,
    /// Block range: a chunk never spans a multiple of it (Prometheus: 2 h).
    pub chunk_range_ms: i64,
    /// Most series the head holds; creating one more is refused.
    pub series_count_max: u64,
}

/// Where a full chunk's bytes are.
#[derive(Clone)]
pub(crate) enum ChunkLocation {
    /// On the heap, shared by queries; until it is written to `chunks_head/` (or for good when
    /// the head has no chunk files, as in unit tests).
    Memory(Arc<[u8]>),
    /// In a head-chunk file, read back by position.
    Disk(ChunkDiskRef),
}

/// A full chunk: immutable.
#[derive(Clone)]
pub(crate) struct ClosedChunk {
    pub(crate) min_time_ms: i64,
    pub(crate) max_time_ms: i64,
    pub(crate) location: ChunkLocation,
}

/// A chunk just cut, waiting to be written to `chunks_head/`.
pub(crate) struct CutChunk {
    pub(crate) series_ref: u32,
    pub(crate) min_time_ms: i64,
    pub(crate) max_time_ms: i64,
    pub(crate) bytes: Arc<[u8]>,
}

/// One series.
pub(crate) struct MemSeries {
    /// `(name id, value id)` pairs, sorted by name.
    pub(crate) label_ids: Box<[u32]>,
    pub(crate) closed: Vec<ClosedChunk>,
    pub(crate) open: Option<XorChunk>,
    /// Newest sample: timestamp and value bits.
    pub(crate) last: Option<(i64, u64)>,
    /// The series record is durable in the WAL.
    pub(crate) logged: bool,
    /// Appenders holding this series for a commit in progress; garbage collection skips a series
    /// while it is non-zero (Prometheus' `pendingCommit`), so no commit applies to a removed series.
    pub(crate) holds: AtomicU32,
}

impl MemSeries {
    fn min_time_ms(&self) -> Option<i64> {
        match (self.closed.first(), &self.open) {
            (Some(first), _) => Some(first.min_time_ms),
            (None, Some(open)) if open.sample_count() > 0 => Some(open.min_time_ms()),
            _ => None,
        }
    }

    /// True when some sample may fall in `[min_time_ms, max_time_ms]`.
    pub(crate) fn overlaps(&self, min_time_ms: i64, max_time_ms: i64) -> bool {
        match (self.min_time_ms(), self.last) {
            (Some(first_ms), Some((last_ms, _))) => first_ms <= max_time_ms && last_ms >= min_time_ms,
            _ => false,
        }
    }

    /// Resolves the labels.
    pub(crate) fn labels(&self, symbols: &Symbols) -> Labels {
        resolve(&self.label_ids, symbols)
    }
}

/// Labels from `(name id, value id)` pairs.
pub(crate) fn resolve(label_ids: &[u32], symbols: &Symbols) -> Labels {
    Labels::from_sorted_unchecked(
        label_ids
            .chunks_exact(2)
            .map(|pair| Label { name: symbols.get(pair[0]).to_string(), value: symbols.get(pair[1]).to_string() })
            .collect(),
    )
}

fn same_labels(label_ids: &[u32], symbols: &Symbols, labels: &Labels) -> bool {
    label_ids.len() == labels.len() * 2
        && label_ids
            .chunks_exact(2)
            .zip(labels.iter())
            .all(|(pair, label)| symbols.get(pair[0]) == label.name && symbols.get(pair[1]) == label.value)
}

/// Stable hash of a label set (std's SipHash with fixed keys: the same in every process).
pub(crate) fn hash_labels(labels: &Labels) -> u64 {
    #[allow(deprecated)] // SipHasher's fixed keys are the point: no per-process seed.
    let mut hasher = std::hash::SipHasher::new();
    for label in labels.iter() {
        label.name.hash(&mut hasher);
        label.value.hash(&mut hasher);
    }
    hasher.finish()
}

#[derive(Default)]
struct SeriesShard {
    slots: Vec<Option<Box<MemSeries>>>,
}

// Lookup only; never iterated.
#[derive(Default)]
struct HashShard {
    unique: HashMap<u64, u32>,
    conflicts: HashMap<u64, Vec<u32>>,
}

impl HashShard {
    fn candidates(&self, hash: u64) -> impl Iterator<Item = u32> + '_ {
        self.unique.get(&hash).copied().into_iter().chain(self.conflicts.get(&hash).into_iter().flatten().copied())
    }

    fn remove(&mut self, hash: u64, series_ref: u32) {
        if self.unique.get(&hash) == Some(&series_ref) {
            self.unique.remove(&hash);
            // Promote a colliding series, if any, so `unique` stays the first place looked.
            if let Some(others) = self.conflicts.get_mut(&hash) {
                if let Some(promoted) = others.pop() {
                    self.unique.insert(hash, promoted);
                }
                if others.is_empty() {
                    self.conflicts.remove(&hash);
                }
            }
        } else if let Some(others) = self.conflicts.get_mut(&hash) {
            others.retain(|&other| other != series_ref);
            if others.is_empty() {
                self.conflicts.remove(&hash);
            }
        }
    }

    fn insert(&mut self, hash: u64, series_ref: u32) {
        match self.unique.entry(hash) {
            std::collections::hash_map::Entry::Occupied(_) => self.conflicts.entry(hash).or_default().push(series_ref),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(series_ref);
            }
        }
    }
}

/// Counters the head keeps; read without locks.
#[derive(Default)]
pub(crate) struct HeadCounters {
    pub(crate) series_count: AtomicU64,
    pub(crate) chunk_count: AtomicU64,
    pub(crate) series_created_total: AtomicU64,
    pub(crate) series_limit_refusals_total: AtomicU64,
    pub(crate) chunks_offloaded_total: AtomicU64,
    pub(crate) chunk_offload_failures_total: AtomicU64,
    pub(crate) series_removed_total: AtomicU64,
    pub(crate) chunks_removed_total: AtomicU64,
    pub(crate) out_of_bounds_samples_total: AtomicU64,
}

/// What replay's series record did.
#[derive(Debug, PartialEq, Eq)]
pub enum Replayed {
    /// A new series under the logged reference.
    Created,
    /// The same labels and reference were logged before (a retried commit).
    AlreadyKnown,
    /// The labels are known under another reference; samples of `from` belong to `to`.
    Alias {
        /// Reference the record names.
        from: u32,
        /// Reference the head has.
        to: u32,
    },
    /// The reference names other labels already: the record is ignored.
    Conflict,
}

/// Series storage.
pub struct Head {
    options: HeadOptions,
    symbols: SymbolTable,
    series: Box<[RwLock<SeriesShard>]>,
    hashes: Box<[RwLock<HashShard>]>,
    postings: RwLock<Postings>,
    next_ref: AtomicU64,
    min_time_ms: AtomicI64,
    max_time_ms: AtomicI64,
    /// Oldest timestamp accepted: the end of the newest persisted block (`i64::MIN` before any).
    min_valid_ms: AtomicI64,
    pub(crate) counters: HeadCounters,
    /// Reads full chunks back from `chunks_head/`; `None` keeps every chunk in memory.
    chunk_reader: Option<HeadChunkReader>,
    /// Chunks cut since the offloader last ran (only while `chunk_reader` is set). The WAL writer
    /// drains it after every group and replay after every record, which bounds it.
    cut_chunks: std::sync::Mutex<Vec<CutChunk>>,
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // A panic under a lock is a bug already reported; keep serving.
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn locate(series_ref: u32) -> (usize, usize) {
    let series_ref = series_ref as usize;
    (series_ref % HEAD_SHARD_COUNT, series_ref / HEAD_SHARD_COUNT)
}

impl Head {
    /// An empty head.
    pub fn new(options: HeadOptions) -> Self {
        assert!(
            options.chunk_sample_count_max > 0 && options.chunk_sample_count_max < usize::from(u16::MAX),
            "chunk_sample_count_max {} outside 1..65535",
            options.chunk_sample_count_max
        );
        assert!(options.chunk_range_ms > 0, "chunk_range_ms {} must be positive", options.chunk_range_ms);
        Head {
            options,
            symbols: SymbolTable::default(),
            series: (0..HEAD_SHARD_COUNT).map(|_| RwLock::default()).collect(),
            hashes: (0..HEAD_SHARD_COUNT).map(|_| RwLock::default()).collect(),
            postings: RwLock::default(),
            next_ref: AtomicU64::new(1),
            min_time_ms: AtomicI64::new(i64::MAX),
            max_time_ms: AtomicI64::new(i64::MIN),
            min_valid_ms: AtomicI64::new(i64::MIN),
            counters: HeadCounters::default(),
            chunk_reader: None,
            cut_chunks: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Moves full chunks off the heap: once written by [`Head::offload`], they are read back
    /// through `reader`.
    pub(crate) fn with_chunk_reader(mut self, reader: HeadChunkReader) -> Self {
        self.chunk_reader = Some(reader);
        self
    }

    /// The reader of offloaded chunks.
    pub(crate) fn chunk_reader(&self) -> Option<&HeadChunkReader> {
        self.chunk_reader.as_ref()
    }

    /// Writes the chunks cut since the last call to `writer` and drops their heap copies. A chunk
    /// that cannot be written (a full disk) stays in memory; queries are unaffected.
    pub(crate) fn offload(&self, writer: &mut HeadChunkWriter) {
        let cut = std::mem::take(&mut *self.cut_chunks.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        for chunk in cut {
            let series_ref = SeriesRef(u64::from(chunk.series_ref));
            match writer.write(series_ref, chunk.min_time_ms, chunk.max_time_ms, &chunk.bytes) {
                Ok(disk_ref) => {
                    self.with_series_mut(chunk.series_ref, |series| {
                        if let Some(closed) =
                            series.closed.iter_mut().rev().find(|closed| closed.min_time_ms == chunk.min_time_ms)
                        {
                            closed.location = ChunkLocation::Disk(disk_ref);
                        }
                    });
                    self.counters.chunks_offloaded_total.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    self.counters.chunk_offload_failures_total.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, "write head chunk; keeping it in memory");
                }
            }
        }
    }

    /// Runs `f` on series `series_ref` under its shard's read lock.
    pub(crate) fn with_series<R>(&self, series_ref: u32, f: impl FnOnce(&MemSeries) -> R) -> Option<R> {
        let (shard, slot) = locate(series_ref);
        let guard = read(&self.series[shard]);
        guard.slots.get(slot).and_then(Option::as_deref).map(f)
    }

    fn with_series_mut<R>(&self, series_ref: u32, f: impl FnOnce(&mut MemSeries) -> R) -> Option<R> {
        let (shard, slot) = locate(series_ref);
        let mut guard = write(&self.series[shard]);
        guard.slots.get_mut(slot).and_then(Option::as_deref_mut).map(f)
    }

    /// The symbol table.
    pub(crate) fn symbols(&self) -> &SymbolTable {
        &self.symbols
    }

    /// True while the head holds series `series_ref`.
    pub fn contains(&self, series_ref: u32) -> bool {
        self.with_series(series_ref, |_| ()).is_some()
    }

    /// Reference of the series with exactly `labels`.
    pub fn lookup(&self, labels: &Labels) -> Option<u32> {
        let hash = hash_labels(labels);
        let shard = read(&self.hashes[hash as usize % HEAD_SHARD_COUNT]);
        self.find(&shard, hash, labels)
    }

    fn find(&self, shard: &HashShard, hash: u64, labels: &Labels) -> Option<u32> {
        shard.candidates(hash).find(|&candidate| {
            self.with_series(candidate, |series| same_labels(&series.label_ids, &self.symbols.read(), labels))
                .unwrap_or(false)
        })
    }

    /// The series with `labels`, created when missing. Returns its reference and whether it is new.
    pub fn get_or_create(&self, labels: &Labels) -> Result<(u32, bool), AppendError> {
        self.get_or_create_inner(labels, 0)
    }

    /// [`Head::get_or_create`] for an appender: a series it creates starts with one hold, which the
    /// caller must [`Head::release`], so it cannot be collected before its first commit.
    pub(crate) fn get_or_create_held(&self, labels: &Labels) -> Result<(u32, bool), AppendError> {
        self.get_or_create_inner(labels, 1)
    }

    fn get_or_create_inner(&self, labels: &Labels, holds: u32) -> Result<(u32, bool), AppendError> {
        let hash = hash_labels(labels);
        let shard_lock = &self.hashes[hash as usize % HEAD_SHARD_COUNT];
        if let Some(found) = self.find(&read(shard_lock), hash, labels) {
            return Ok((found, false));
        }
        let mut shard = write(shard_lock);
        if let Some(found) = self.find(&shard, hash, labels) {
            return Ok((found, false));
        }
        let limit_count = self.options.series_count_max;
        if self.counters.series_count.load(Ordering::Relaxed) >= limit_count {
            self.counters.series_limit_refusals_total.fetch_add(1, Ordering::Relaxed);
            return Err(AppendError::SeriesLimit { limit_count, labels: labels.to_string() });
        }
        let series_ref = self.next_ref.fetch_add(1, Ordering::Relaxed);
        let series_ref = u32::try_from(series_ref).map_err(|_| AppendError::SeriesRefsExhausted)?;
        self.insert(series_ref, labels, false, holds);
        shard.insert(hash, series_ref);
        Ok((series_ref, true))
    }

    /// Adds a series whose reference is already chosen; the caller holds or has checked the hash
    /// shard.
    fn insert(&self, series_ref: u32, labels: &Labels, logged: bool, holds: u32) {
        let label_ids: Box<[u32]> = labels
            .iter()
            .flat_map(|label| [self.symbols.intern(&label.name), self.symbols.intern(&label.value)])
            .collect();
        let (shard, slot) = locate(series_ref);
        {
            let mut guard = write(&self.series[shard]);
            if guard.slots.len() <= slot {
                guard.slots.resize_with(slot + 1, || None);
            }
            assert!(guard.slots[slot].is_none(), "series ref {series_ref} reused");
            guard.slots[slot] = Some(Box::new(MemSeries {
                label_ids: label_ids.clone(),
                closed: Vec::new(),
                open: None,
                last: None,
                logged,
                holds: AtomicU32::new(holds),
            }));
        }
        write(&self.postings).add(series_ref, &label_ids);
        self.counters.series_count.fetch_add(1, Ordering::Relaxed);
        self.counters.series_created_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Registers a series from a WAL series record.
    pub fn replay_series(&self, series_ref: u32, labels: &Labels) -> Replayed {
        let hash = hash_labels(labels);
        let mut shard = write(&self.hashes[hash as usize % HEAD_SHARD_COUNT]);
        if let Some(existing) = self.find(&shard, hash, labels) {
            if existing == series_ref {
                return Replayed::AlreadyKnown;
            }
            self.skip_refs_through(series_ref);
            return Replayed::Alias { from: series_ref, to: existing };
        }
        if self.with_series(series_ref, |_| ()).is_some() {
            return Replayed::Conflict;
        }
        self.insert(series_ref, labels, true, 0);
        shard.insert(hash, series_ref);
        self.skip_refs_through(series_ref);
        Replayed::Created
    }

    fn skip_refs_through(&self, series_ref: u32) {
        self.next_ref.fetch_max(u64::from(series_ref) + 1, Ordering::Relaxed);
    }

    /// The newest sample of a series and whether its series record is logged; `None` when the
    /// series is unknown.
    pub(crate) fn append_state(&self, series_ref: u32) -> Option<(Option<(i64, u64)>, bool)> {
        self.with_series(series_ref, |series| (series.last, series.logged))
    }

    /// [`Head::append_state`], also taking a hold on the series (in the same lock, so it cannot
    /// be collected in between); undo with [`Head::release`].
    pub(crate) fn hold(&self, series_ref: u32) -> Option<(Option<(i64, u64)>, bool)> {
        self.with_series(series_ref, |series| {
            series.holds.fetch_add(1, Ordering::Relaxed);
            (series.last, series.logged)
        })
    }

    /// Drops one hold per entry of `refs`.
    pub(crate) fn release(&self, refs: &[u32]) {
        for &series_ref in refs {
            self.with_series(series_ref, |series| series.holds.fetch_sub(1, Ordering::Relaxed));
        }
    }

    /// Oldest timestamp the head accepts.
    pub fn min_valid_ms(&self) -> i64 {
        self.min_valid_ms.load(Ordering::Acquire)
    }

    /// Raises the oldest accepted timestamp to `min_valid_ms` (never lowers it).
    pub(crate) fn raise_min_valid_ms(&self, min_valid_ms: i64) {
        self.min_valid_ms.fetch_max(min_valid_ms, Ordering::AcqRel);
    }

    /// Marks the series records of `refs` durable.
    pub(crate) fn mark_logged(&self, refs: &[u32]) {
        for &series_ref in refs {
            self.with_series_mut(series_ref, |series| series.logged = true);
        }
    }

    /// Labels of a series.
    pub fn labels(&self, series_ref: u32) -> Option<Labels> {
        self.with_series(series_ref, |series| series.labels(&self.symbols.read()))
    }

    /// Appends a sample if [`appendability`] accepts it as new; returns the verdict (`None` when
    /// the series is unknown).
    pub fn append(&self, series_ref: u32, timestamp_ms: i64, value: f64) -> Option<Appendability> {
        let options = &self.options;
        let counters = &self.counters;
        let mut cut_chunk: Option<CutChunk> = None;
        let min_valid_ms = self.min_valid_ms();
        let verdict = self.with_series_mut(series_ref, |series| {
            if timestamp_ms < min_valid_ms {
                return Appendability::OutOfBounds { min_valid_ms };
            }
            let verdict = appendability(series.last, timestamp_ms, value);
            if verdict != Appendability::Append {
                return verdict;
            }
            let cut = match &series.open {
                None => true,
                Some(open) => {
                    open.sample_count() >= options.chunk_sample_count_max
                        || timestamp_ms.div_euclid(options.chunk_range_ms)
                            != open.min_time_ms().div_euclid(options.chunk_range_ms)
                }
            };
            if cut {
                if let Some(full) = series.open.take() {
                    let bytes: Arc<[u8]> = Arc::from(full.bytes());
                    let (min_time_ms, max_time_ms) = (full.min_time_ms(), full.max_time_ms());
                    if self.chunk_reader.is_some() {
                        cut_chunk = Some(CutChunk { series_ref, min_time_ms, max_time_ms, bytes: bytes.clone() });
                    }
                    series.closed.push(ClosedChunk {
                        min_time_ms,
                        max_time_ms,
                        location: ChunkLocation::Memory(bytes),
                    });
                }
                series.open = Some(XorChunk::new());
                counters.chunk_count.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(open) = series.open.as_mut() {
                open.append(timestamp_ms, value);
            }
            series.last = Some((timestamp_ms, value.to_bits()));
            verdict
        })?;
        if let Appendability::OutOfBounds { .. } = verdict {
            counters.out_of_bounds_samples_total.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(cut) = cut_chunk {
            self.cut_chunks.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(cut);
        }
        // Plain loads first: the bounds rarely move, and a read keeps the cache line shared.
        if verdict == Appendability::Append {
            if timestamp_ms < self.min_time_ms.load(Ordering::Relaxed) {
                self.min_time_ms.fetch_min(timestamp_ms, Ordering::Relaxed);
            }
            if timestamp_ms > self.max_time_ms.load(Ordering::Relaxed) {
                self.max_time_ms.fetch_max(timestamp_ms, Ordering::Relaxed);
            }
        }
        Some(verdict)
    }

    /// Series matching every matcher, sorted by reference.
    pub fn select_refs(&self, matchers: &[Matcher]) -> Vec<u32> {
        let postings = read(&self.postings);
        postings.select(&self.symbols.read(), matchers)
    }

    /// Runs `f` over the index (label names, values, postings) under its read lock.
    pub(crate) fn with_postings<R>(&self, f: impl FnOnce(&Postings, &Symbols) -> R) -> R {
        let postings = read(&self.postings);
        let symbols = self.symbols.read();
        f(&postings, &symbols)
    }

    /// Series count.
    pub fn series_count(&self) -> u64 {
        self.counters.series_count.load(Ordering::Relaxed)
    }

    /// Chunk count (full and open).
    pub fn chunk_count(&self) -> u64 {
        self.counters.chunk_count.load(Ordering::Relaxed)
    }

    /// Oldest and newest sample timestamps, `None` while empty.
    pub fn time_range_ms(&self) -> Option<(i64, i64)> {
        let (min, max) = (self.min_time_ms.load(Ordering::Relaxed), self.max_time_ms.load(Ordering::Relaxed));
        (min <= max).then_some((min, max))
    }
}

pub mod truncate;

#[cfg(test)]
mod tests;
