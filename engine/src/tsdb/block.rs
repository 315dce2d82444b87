//! Persistent blocks in Prometheus' on-disk layout (tsdb/docs/format/README.md, tsdb/block.go):
//! a directory named by a [`Ulid`] holding `meta.json`, `index` ([`super::index`], format v2),
//! `chunks/000001…` ([`super::chunks`]) and `tombstones`. Blocks this module writes open in
//! `promtool` and Prometheus 2.42; blocks they write open here.
//!
//! Writing ([`write_block`]): series arrive sorted by labels with their encoded XOR chunks;
//! chunks stream into the segment files, the index is built from the series' labels and chunk
//! metas (kept in memory, about a hundred bytes a series) once all have arrived. Everything goes
//! into `<ULID>.tmp/` (removed first if a crash left one), every file is synced, then the
//! directory is renamed to `<ULID>` and the parent synced: a crash leaves either no block or a
//! whole one (plus a `.tmp` directory to delete).
//!
//! Reading ([`Block::open`]): `meta.json` is parsed and checked, the index is read whole and its
//! header, TOC and tables checked, every segment header checked; series and chunks are read and
//! CRC-checked only when a query reaches them, chunks by position ([`FileSystem::read_at`]).
//! Damage is [`BlockError::Corruption`] naming the file and offset, never a panic. A block with
//! tombstones (deletions) is refused as [`BlockError::Unsupported`] rather than served whole.
//!
//! Querying ([`Block::querier`]): matchers resolve through the postings: `=` and regex sets by
//! direct lookups, regex prefixes by a range of the sorted values, other regexes by testing each
//! value of the label; matchers that accept the empty string subtract the series they reject.
//! Series come out in id order, which is label order in a valid block (checked as they stream).
//!
//! Lineage ([`write_block_compacted`], used by [`super::compact`]): a compacted block's
//! `meta.json` names its level, its level-1 `sources` and its `parents` (ULID and range of each
//! block merged into it), as upstream's `BlockMetaCompaction`; `failed` marks blocks whose
//! compaction failed on their data, so the planner leaves them alone.
//!
//! Deletion ([`Block::delete_when_unused`]): a replaced or expired block is only marked; its
//! directory goes when the last clone drops (queriers hold clones), so a query running across a
//! compaction or a retention pass still reads whole files. Removal renames `<ULID>` to
//! `<ULID>.tmp-for-deletion`, syncs the parent, then removes the renamed directory (upstream's
//! `DB.deleteBlocks`): a crash leaves either the whole block or a leftover that never opens as a
//! block and is removed at the next start.
//!
//! Concurrency: a [`Block`] is immutable and cheap to clone (shared `Arc`); queriers read files
//! through the [`FileSystem`] seam without locks. The deletion and compaction-failed marks are
//! atomics, set from any task.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::chunk::{iter_bytes, XorChunk};
use super::chunks::{BlockChunkRef, ChunkReader, ChunkSegmentWriter, SEGMENT_SIZE_MAX_DEFAULT};
use super::index::{encode_index, ChunkMeta, IndexError, IndexReader};
use super::postings::{intersect, subtract, union};
use crate::io::fs::child;
use crate::io::FileSystem;
use crate::model::{Labels, MatchKind, Matcher, RegexShape, Sample};
use crate::storage::{Querier, Queryable, SelectHints, Series, SeriesSet, StorageError};

/// `meta.json` format version.
pub const META_VERSION: u32 = 1;
/// Magic number of the tombstones file.
pub const TOMBSTONES_MAGIC: u32 = 0x0130_BA30;
/// Tombstones format version.
pub const TOMBSTONES_VERSION: u8 = 1;
/// Largest `meta.json` read; a real one is a few hundred bytes plus 27 per source block.
const META_SIZE_MAX: u64 = 16 * 1024 * 1024;
/// Largest index read into memory (Prometheus maps it; this engine reads it whole).
const INDEX_SIZE_MAX: u64 = 4 * 1024 * 1024 * 1024;
/// Samples a block may hold in one XOR chunk (its header is a u16).
const CHUNK_SAMPLE_COUNT_MAX: usize = u16::MAX as usize;
/// Suffix of a block directory being removed (upstream's `tmpForDeletionBlockDirSuffix`).
pub const TMP_FOR_DELETION_SUFFIX: &str = ".tmp-for-deletion";

/// Errors writing or reading a block.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// A filesystem operation failed.
    #[error("{context} {path}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// Damaged block data.
    #[error("block file {path} corrupt at offset {offset}: {reason}")]
    Corruption {
        /// The damaged file.
        path: PathBuf,
        /// Offset of the damaged structure (0 for a whole-file problem).
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A valid block using a feature this engine does not read.
    #[error("block file {path}: unsupported: {reason}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// The feature.
        reason: String,
    },
    /// The writer's input was not sorted by labels.
    #[error("series out of order: {next} after {previous}")]
    UnsortedSeries {
        /// The earlier series.
        previous: String,
        /// The series that should have come first.
        next: String,
    },
    /// A series or chunk handed to the writer breaks the block's contract.
    #[error("invalid series {labels}: {reason}")]
    InvalidSeries {
        /// The series (empty when the index found the problem).
        labels: String,
        /// What is wrong.
        reason: String,
    },
    /// A compaction was asked for something it cannot do (no sources, say).
    #[error("invalid compaction: {reason}")]
    InvalidCompaction {
        /// What is wrong.
        reason: String,
    },
    /// A structure exceeds a format or engine bound.
    #[error("{what} of {size} exceeds {size_max}")]
    TooLarge {
        /// What.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The bound.
        size_max: u64,
    },
}

impl BlockError {
    pub(crate) fn io(context: &'static str, path: &Path, source: io::Error) -> Self {
        BlockError::Io { context, path: path.to_path_buf(), source }
    }

    fn from_index(path: &Path, error: IndexError) -> Self {
        match error {
            IndexError::Corruption { offset, reason } => {
                BlockError::Corruption { path: path.to_path_buf(), offset, reason }
            }
            IndexError::InvalidInput { reason } => BlockError::InvalidSeries { labels: String::new(), reason },
        }
    }
}

/// A block id: 48 bits of Unix ms time then 80 random bits, written as 26 characters of
/// Crockford base32 (the ULID spec, upstream's `oklog/ulid`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ulid(pub u128);

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const ULID_LENGTH: usize = 26;

impl Ulid {
    /// The id of time `time_ms` (low 48 bits kept) and randomness `random` (low 80 bits kept).
    pub fn new(time_ms: u64, random: u128) -> Self {
        let time = u128::from(time_ms & ((1 << 48) - 1));
        Ulid((time << 80) | (random & ((1 << 80) - 1)))
    }

    /// The time part, Unix ms.
    pub fn time_ms(self) -> u64 {
        (self.0 >> 80) as u64
    }

    /// Parses the 26-character form (case-insensitive); `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != ULID_LENGTH {
            return None;
        }
        let mut value = 0_u128;
        for (index, byte) in text.bytes().enumerate() {
            let digit = CROCKFORD.iter().position(|candidate| *candidate == byte.to_ascii_uppercase())? as u128;
            if index == 0 && digit > 7 {
                return None; // Would overflow 128 bits.
            }
            value = (value << 5) | digit;
        }
        Some(Ulid(value))
    }
}

impl fmt::Display for Ulid {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = [0_u8; ULID_LENGTH];
        for (index, byte) in text.iter_mut().enumerate() {
            let shift = 5 * (ULID_LENGTH - 1 - index);
            *byte = CROCKFORD[((self.0 >> shift) & 0x1f) as usize];
        }
        formatter.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

/// Counts in `meta.json`'s `stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockStats {
    /// Samples in the block.
    #[serde(rename = "numSamples", default)]
    pub sample_count: u64,
    /// Series in the block.
    #[serde(rename = "numSeries", default)]
    pub series_count: u64,
    /// Chunks in the block.
    #[serde(rename = "numChunks", default)]
    pub chunk_count: u64,
}

/// One parent of a compacted block (upstream's `BlockDesc`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDesc {
    /// The parent's id.
    pub ulid: String,
    /// The parent's first timestamp, ms (inclusive).
    #[serde(rename = "minTime")]
    pub min_time_ms: i64,
    /// The parent's range end, ms (exclusive).
    #[serde(rename = "maxTime")]
    pub max_time_ms: i64,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// `meta.json`'s `compaction` (upstream's `BlockMetaCompaction`; empty fields are omitted as
/// upstream's `omitempty` does, so a level-1 block's meta is unchanged).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockCompaction {
    /// 1 for a block cut from the head, higher for compacted blocks.
    pub level: u32,
    /// Ids of the level-1 blocks this one holds (itself for level 1), sorted.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Set by upstream on blocks whose compaction produced no samples; they may be deleted.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deletable: bool,
    /// The blocks merged into this one, in the order they were merged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<BlockDesc>,
    /// A compaction including this block failed on its data; the planner skips it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub failed: bool,
    /// Upstream's hints (`from-out-of-order`, ...), kept so a rewritten meta loses none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hints: Vec<String>,
}

/// A block's `meta.json` (upstream's `BlockMeta`); unknown fields are ignored on read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockMeta {
    /// The block id, as the directory is named.
    pub ulid: String,
    /// First timestamp the block may hold, ms (inclusive).
    #[serde(rename = "minTime")]
    pub min_time_ms: i64,
    /// End of the block's range, ms (exclusive).
    #[serde(rename = "maxTime")]
    pub max_time_ms: i64,
    /// Counts.
    #[serde(default)]
    pub stats: BlockStats,
    /// Compaction lineage.
    pub compaction: BlockCompaction,
    /// Format version ([`META_VERSION`]).
    pub version: u32,
}

/// One encoded XOR chunk of a series handed to [`write_block`].
#[derive(Clone, Debug, PartialEq)]
pub struct BlockChunk {
    /// First sample's timestamp, ms.
    pub min_time_ms: i64,
    /// Last sample's timestamp (inclusive), ms.
    pub max_time_ms: i64,
    /// The chunk's bytes ([`XorChunk::bytes`]).
    pub bytes: Vec<u8>,
}

/// Encodes time-ordered samples into XOR chunks of at most `samples_per_chunk` samples
/// (clamped to 1..=65535), as the head cuts them.
pub fn encode_chunks(samples: &[Sample], samples_per_chunk: usize) -> Vec<BlockChunk> {
    samples
        .chunks(samples_per_chunk.clamp(1, CHUNK_SAMPLE_COUNT_MAX))
        .map(|part| {
            let mut chunk = XorChunk::new();
            for sample in part {
                chunk.append(sample.timestamp_ms, sample.value);
            }
            BlockChunk {
                min_time_ms: chunk.min_time_ms(),
                max_time_ms: chunk.max_time_ms(),
                bytes: chunk.bytes().to_vec(),
            }
        })
        .collect()
}

/// The bytes of an empty tombstones file: header and the CRC32C of no entries.
fn empty_tombstones() -> Vec<u8> {
    let mut bytes = TOMBSTONES_MAGIC.to_be_bytes().to_vec();
    bytes.push(TOMBSTONES_VERSION);
    bytes.extend_from_slice(&crc32c::crc32c(&[]).to_be_bytes());
    bytes
}

fn write_synced(fs: &dyn FileSystem, path: &Path, bytes: &[u8], what: &'static str) -> Result<(), BlockError> {
    let mut file = fs.open_append(path).map_err(|source| BlockError::io(what, path, source))?;
    file.write_all(bytes).map_err(|source| BlockError::io(what, path, source))?;
    file.sync().map_err(|source| BlockError::io(what, path, source))
}

fn meta_json(meta: &BlockMeta) -> Result<Vec<u8>, BlockError> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    meta.serialize(&mut serializer).map_err(|source| BlockError::InvalidSeries {
        labels: String::new(),
        reason: format!("encode meta.json: {source}"),
    })?;
    Ok(out)
}

/// Writes a level-1 block covering `[min_time_ms, max_time_ms)` into `parent_dir/<ULID>`, the
/// ULID made of `ulid_time_ms` and `random`. `series` must be sorted by labels, without
/// duplicates or empty label sets, each with chunks in time order inside the block's range.
/// Atomic: see the module docs. Returns the block's meta.
pub fn write_block(
    fs: Arc<dyn FileSystem>,
    parent_dir: &Path,
    series: impl IntoIterator<Item = (Labels, Vec<BlockChunk>)>,
    ulid_time_ms: u64,
    random: u128,
    min_time_ms: i64,
    max_time_ms: i64,
) -> Result<BlockMeta, BlockError> {
    let range_ms = (min_time_ms, max_time_ms);
    write_block_sized(fs, parent_dir, series, Ulid::new(ulid_time_ms, random), range_ms, SEGMENT_SIZE_MAX_DEFAULT)
}

/// Writes a block with the given lineage (level, sources, parents) instead of level 1, from
/// series that may fail as they are read (a compaction streams them out of other blocks). The
/// same contract and atomicity as [`write_block`]; the first error stops the write and leaves
/// nothing behind. When the series hold no sample at all nothing is written and the result is
/// `Ok(None)` (upstream's `LeveledCompactor.write` does the same).
pub fn write_block_compacted(
    fs: Arc<dyn FileSystem>,
    parent_dir: &Path,
    series: impl IntoIterator<Item = Result<(Labels, Vec<BlockChunk>), BlockError>>,
    ulid: Ulid,
    (min_time_ms, max_time_ms): (i64, i64),
    compaction: BlockCompaction,
) -> Result<Option<BlockMeta>, BlockError> {
    let target = WriteTarget { ulid, range_ms: (min_time_ms, max_time_ms), segment_size_max: SEGMENT_SIZE_MAX_DEFAULT };
    write_atomically(fs, parent_dir, series, target, Some(compaction))
}

/// Where and how a block is written.
struct WriteTarget {
    ulid: Ulid,
    range_ms: (i64, i64),
    segment_size_max: u64,
}

/// [`write_block`] with chunk segment files of at most `segment_size_max` bytes.
pub(crate) fn write_block_sized(
    fs: Arc<dyn FileSystem>,
    parent_dir: &Path,
    series: impl IntoIterator<Item = (Labels, Vec<BlockChunk>)>,
    ulid: Ulid,
    range_ms: (i64, i64),
    segment_size_max: u64,
) -> Result<BlockMeta, BlockError> {
    let target = WriteTarget { ulid, range_ms, segment_size_max };
    let meta = write_atomically(fs, parent_dir, series.into_iter().map(Ok), target, None)?;
    // A level-1 block is written even when empty (the head's range had no samples).
    meta.ok_or_else(|| BlockError::InvalidCompaction { reason: "level-1 block write skipped".to_string() })
}

/// Writes into `<ULID>.tmp`, then renames it into place; `compaction: None` is level 1 (and
/// always written), `Some` skips a block without samples (`Ok(None)`).
fn write_atomically(
    fs: Arc<dyn FileSystem>,
    parent_dir: &Path,
    series: impl IntoIterator<Item = Result<(Labels, Vec<BlockChunk>), BlockError>>,
    target: WriteTarget,
    compaction: Option<BlockCompaction>,
) -> Result<Option<BlockMeta>, BlockError> {
    let ulid = target.ulid.to_string();
    let tmp_dir = child(parent_dir, &format!("{ulid}.tmp"));
    match fs.remove_dir_all(&tmp_dir) {
        Err(source) if source.kind() != io::ErrorKind::NotFound => {
            return Err(BlockError::io("remove stale block directory", &tmp_dir, source));
        }
        _ => {}
    }
    let result = write_block_files(&fs, &tmp_dir, &ulid, series, &target, compaction);
    let meta = match result {
        Ok(Some(meta)) => meta,
        Ok(None) => match fs.remove_dir_all(&tmp_dir) {
            Err(source) if source.kind() != io::ErrorKind::NotFound => {
                return Err(BlockError::io("remove empty block", &tmp_dir, source));
            }
            _ => return Ok(None),
        },
        Err(error) => {
            let _ = fs.remove_dir_all(&tmp_dir); // Best effort; a leftover .tmp is removed next time.
            return Err(error);
        }
    };
    let final_dir = child(parent_dir, &ulid);
    fs.rename(&tmp_dir, &final_dir).map_err(|source| BlockError::io("rename block directory", &tmp_dir, source))?;
    fs.sync_dir(parent_dir).map_err(|source| BlockError::io("sync block parent directory", parent_dir, source))?;
    Ok(Some(meta))
}

fn write_block_files(
    fs: &Arc<dyn FileSystem>,
    dir: &Path,
    ulid: &str,
    series: impl IntoIterator<Item = Result<(Labels, Vec<BlockChunk>), BlockError>>,
    target: &WriteTarget,
    compaction: Option<BlockCompaction>,
) -> Result<Option<BlockMeta>, BlockError> {
    let (min_time_ms, max_time_ms) = target.range_ms;
    if min_time_ms >= max_time_ms {
        return Err(BlockError::InvalidSeries {
            labels: String::new(),
            reason: format!("empty block range {min_time_ms}..{max_time_ms}"),
        });
    }
    fs.create_dir_all(dir).map_err(|source| BlockError::io("create block directory", dir, source))?;
    let mut chunk_writer = ChunkSegmentWriter::new(fs.clone(), &child(dir, "chunks"), target.segment_size_max)?;
    let mut indexed: Vec<(Labels, Vec<ChunkMeta>)> = Vec::new();
    let mut stats = BlockStats::default();
    for item in series {
        let (labels, chunks) = item?;
        let invalid = |reason: String| BlockError::InvalidSeries { labels: labels.to_string(), reason };
        if labels.is_empty() {
            return Err(invalid("empty label set".to_string()));
        }
        if let Some((previous, _)) = indexed.last() {
            if *previous >= labels {
                return Err(BlockError::UnsortedSeries { previous: previous.to_string(), next: labels.to_string() });
            }
        }
        let mut metas = Vec::with_capacity(chunks.len());
        let mut previous_max_time_ms: Option<i64> = None;
        for chunk in &chunks {
            let Some(header) = chunk.bytes.first_chunk::<2>() else {
                return Err(invalid(format!("chunk of {} bytes has no header", chunk.bytes.len())));
            };
            let sample_count = u16::from_be_bytes(*header);
            let in_range = min_time_ms <= chunk.min_time_ms
                && chunk.min_time_ms <= chunk.max_time_ms
                && chunk.max_time_ms < max_time_ms;
            if !in_range || sample_count == 0 {
                return Err(invalid(format!(
                    "chunk {}..={} of {sample_count} samples outside block {min_time_ms}..{max_time_ms}",
                    chunk.min_time_ms, chunk.max_time_ms
                )));
            }
            if previous_max_time_ms.is_some_and(|previous_ms| chunk.min_time_ms <= previous_ms) {
                return Err(invalid(format!("chunk at {} overlaps the previous one", chunk.min_time_ms)));
            }
            previous_max_time_ms = Some(chunk.max_time_ms);
            let chunk_ref = chunk_writer.write_chunk(&chunk.bytes)?;
            metas.push(ChunkMeta { min_time_ms: chunk.min_time_ms, max_time_ms: chunk.max_time_ms, chunk_ref });
            stats.sample_count += u64::from(sample_count);
            stats.chunk_count += 1;
        }
        stats.series_count += 1;
        indexed.push((labels, metas));
    }
    chunk_writer.finish()?;
    if compaction.is_some() && stats.sample_count == 0 {
        return Ok(None);
    }
    let index_path = child(dir, "index");
    let index_bytes = encode_index(&indexed).map_err(|error| BlockError::from_index(&index_path, error))?;
    drop(indexed);
    write_synced(&**fs, &index_path, &index_bytes, "write block index")?;
    write_synced(&**fs, &child(dir, "tombstones"), &empty_tombstones(), "write block tombstones")?;
    let meta = BlockMeta {
        ulid: ulid.to_string(),
        min_time_ms,
        max_time_ms,
        stats,
        compaction: compaction.unwrap_or_else(|| BlockCompaction {
            level: 1,
            sources: vec![ulid.to_string()],
            ..Default::default()
        }),
        version: META_VERSION,
    };
    write_synced(&**fs, &child(dir, "meta.json"), &meta_json(&meta)?, "write block meta")?;
    fs.sync_dir(dir).map_err(|source| BlockError::io("sync block directory", dir, source))?;
    Ok(Some(meta))
}

/// Replaces `dir/meta.json` atomically (`meta.json.tmp`, fsync, rename, directory fsync), as
/// upstream's `writeMetaFile`.
fn rewrite_meta(fs: &dyn FileSystem, dir: &Path, meta: &BlockMeta) -> Result<(), BlockError> {
    let tmp_path = child(dir, "meta.json.tmp");
    match fs.remove_file(&tmp_path) {
        Err(source) if source.kind() != io::ErrorKind::NotFound => {
            return Err(BlockError::io("remove stale block meta", &tmp_path, source));
        }
        _ => {}
    }
    write_synced(fs, &tmp_path, &meta_json(meta)?, "write block meta")?;
    let path = child(dir, "meta.json");
    fs.rename(&tmp_path, &path).map_err(|source| BlockError::io("rename block meta", &tmp_path, source))?;
    fs.sync_dir(dir).map_err(|source| BlockError::io("sync block directory", dir, source))
}

/// Removes a block directory so that no crash leaves part of it under its own name: rename to
/// `<ULID>.tmp-for-deletion`, sync the parent, remove, sync again.
pub(crate) fn delete_block_dir(fs: &dyn FileSystem, dir: &Path) -> Result<(), BlockError> {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name().and_then(|name| name.to_str())) else {
        return Err(BlockError::InvalidCompaction { reason: format!("cannot delete block at {}", dir.display()) });
    };
    let doomed = child(parent, &format!("{name}{TMP_FOR_DELETION_SUFFIX}"));
    match fs.remove_dir_all(&doomed) {
        Err(source) if source.kind() != io::ErrorKind::NotFound => {
            return Err(BlockError::io("remove leftover deleted block", &doomed, source));
        }
        _ => {}
    }
    fs.rename(dir, &doomed).map_err(|source| BlockError::io("rename block for deletion", dir, source))?;
    fs.sync_dir(parent).map_err(|source| BlockError::io("sync block parent directory", parent, source))?;
    fs.remove_dir_all(&doomed).map_err(|source| BlockError::io("remove deleted block", &doomed, source))?;
    fs.sync_dir(parent).map_err(|source| BlockError::io("sync block parent directory", parent, source))
}

/// Bytes of every file in `dir` (not recursive); 0 when it does not exist.
fn directory_size(fs: &dyn FileSystem, dir: &Path) -> Result<u64, BlockError> {
    let names = match fs.list_dir(dir) {
        Err(source) if source.kind() == io::ErrorKind::NotFound => return Ok(0),
        other => other.map_err(|source| BlockError::io("list block directory", dir, source))?,
    };
    let mut total_size = 0_u64;
    for name in names {
        let path = child(dir, &name);
        match fs.file_size(&path) {
            Ok(size) => total_size = total_size.saturating_add(size),
            Err(source) if source.kind() == io::ErrorKind::NotFound => {} // A subdirectory.
            Err(source) => return Err(BlockError::io("stat block file", &path, source)),
        }
    }
    Ok(total_size)
}

fn read_bounded(fs: &dyn FileSystem, path: &Path, size_max: u64, what: &'static str) -> Result<Vec<u8>, BlockError> {
    let size = fs.file_size(path).map_err(|source| BlockError::io(what, path, source))?;
    if size > size_max {
        return Err(BlockError::TooLarge { what, size, size_max });
    }
    fs.read(path).map_err(|source| BlockError::io(what, path, source))
}

/// Checks a tombstones file: header, CRC, and no entries (deletions are not applied here).
fn check_tombstones(fs: &dyn FileSystem, path: &Path) -> Result<(), BlockError> {
    let bytes = match read_bounded(fs, path, META_SIZE_MAX, "read block tombstones") {
        Err(BlockError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    let corruption = |offset: u64, reason: String| BlockError::Corruption { path: path.to_path_buf(), offset, reason };
    if bytes.len() < 9 {
        return Err(corruption(0, format!("tombstones of {} bytes", bytes.len())));
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if magic != TOMBSTONES_MAGIC || bytes[4] != TOMBSTONES_VERSION {
        return Err(corruption(0, format!("bad tombstones header: magic {magic:#010x}, version {}", bytes[4])));
    }
    let crc_start = bytes.len() - 4;
    let stored_crc =
        u32::from_be_bytes([bytes[crc_start], bytes[crc_start + 1], bytes[crc_start + 2], bytes[crc_start + 3]]);
    let computed_crc = crc32c::crc32c(&bytes[5..crc_start]);
    if stored_crc != computed_crc {
        return Err(corruption(
            crc_start as u64,
            format!("tombstones CRC {stored_crc:#010x}, computed {computed_crc:#010x}"),
        ));
    }
    if crc_start > 5 {
        return Err(BlockError::Unsupported { path: path.to_path_buf(), reason: "block has tombstones".to_string() });
    }
    Ok(())
}

struct BlockInner {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    meta: BlockMeta,
    index_path: PathBuf,
    index: IndexReader,
    chunks: ChunkReader,
    /// Index, chunk segments, tombstones and meta, bytes, at open.
    size_bytes: u64,
    /// Remove the directory when the last handle drops.
    delete_when_unused: AtomicBool,
    /// A compaction including this block failed on its data (also set in `meta.json`).
    compaction_failed: AtomicBool,
}

impl Drop for BlockInner {
    fn drop(&mut self) {
        if !self.delete_when_unused.load(Ordering::Acquire) {
            return;
        }
        match delete_block_dir(&*self.fs, &self.dir) {
            Ok(()) => tracing::info!(block = %self.meta.ulid, "deleted block"),
            // Left on disk: it opens again at the next start and is dealt with then.
            Err(error) => tracing::error!(%error, block = %self.meta.ulid, "delete block"),
        }
    }
}

/// An open, immutable block.
#[derive(Clone)]
pub struct Block(Arc<BlockInner>);

impl fmt::Debug for Block {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("Block").field("dir", &self.0.dir).field("meta", &self.0.meta).finish()
    }
}

impl Block {
    /// Opens the block in `dir`, checking its meta, index tables and segment headers.
    pub fn open(fs: Arc<dyn FileSystem>, dir: &Path) -> Result<Block, BlockError> {
        let meta_path = child(dir, "meta.json");
        let meta_bytes = read_bounded(&*fs, &meta_path, META_SIZE_MAX, "read block meta")?;
        let meta: BlockMeta = serde_json::from_slice(&meta_bytes).map_err(|source| BlockError::Corruption {
            path: meta_path.clone(),
            offset: 0,
            reason: format!("bad meta.json: {source}"),
        })?;
        let corrupt_meta = |reason: String| BlockError::Corruption { path: meta_path.clone(), offset: 0, reason };
        if meta.version != META_VERSION {
            return Err(BlockError::Unsupported {
                path: meta_path.clone(),
                reason: format!("meta.json version {}", meta.version),
            });
        }
        if Ulid::parse(&meta.ulid).is_none() {
            return Err(corrupt_meta(format!("bad ulid {:?}", meta.ulid)));
        }
        if meta.min_time_ms > meta.max_time_ms {
            return Err(corrupt_meta(format!("range {}..{}", meta.min_time_ms, meta.max_time_ms)));
        }
        check_tombstones(&*fs, &child(dir, "tombstones"))?;
        let index_path = child(dir, "index");
        let index_bytes = read_bounded(&*fs, &index_path, INDEX_SIZE_MAX, "read block index")?;
        let index = IndexReader::new(index_bytes).map_err(|error| BlockError::from_index(&index_path, error))?;
        let chunks = ChunkReader::open(fs.clone(), &child(dir, "chunks"))?;
        // As upstream's `Block.Size`: index, chunks, tombstones and meta.
        let tombstones_size = match fs.file_size(&child(dir, "tombstones")) {
            Err(source) if source.kind() == io::ErrorKind::NotFound => 0,
            other => other.map_err(|source| BlockError::io("stat block tombstones", dir, source))?,
        };
        let index_size = fs.file_size(&index_path).map_err(|source| BlockError::io("stat block index", dir, source))?;
        let size_bytes = directory_size(&*fs, &child(dir, "chunks"))?
            .saturating_add(index_size)
            .saturating_add(tombstones_size)
            .saturating_add(meta_bytes.len() as u64);
        let compaction_failed = AtomicBool::new(meta.compaction.failed);
        Ok(Block(Arc::new(BlockInner {
            fs,
            dir: dir.to_path_buf(),
            meta,
            index_path,
            index,
            chunks,
            size_bytes,
            delete_when_unused: AtomicBool::new(false),
            compaction_failed,
        })))
    }

    /// Bytes the block takes on disk (index, chunk segments, tombstones and `meta.json`, as
    /// upstream's `Block.Size`, which size retention sums).
    pub fn size_bytes(&self) -> u64 {
        self.0.size_bytes
    }

    /// Marks the block for deletion: its directory is removed (see the module docs) when the
    /// last clone of this handle, including those inside queriers, drops. Idempotent.
    pub fn delete_when_unused(&self) {
        self.0.delete_when_unused.store(true, Ordering::Release);
    }

    /// Whether [`Block::delete_when_unused`] was called.
    pub fn is_marked_for_deletion(&self) -> bool {
        self.0.delete_when_unused.load(Ordering::Acquire)
    }

    /// Whether a compaction including this block failed on its data (from `meta.json` or
    /// [`Block::mark_compaction_failed`]).
    pub fn compaction_failed(&self) -> bool {
        self.0.compaction_failed.load(Ordering::Acquire)
    }

    /// The meta the compaction planner should see: [`Block::meta`] with the failed mark as it
    /// is now.
    pub fn planning_meta(&self) -> BlockMeta {
        let mut meta = self.0.meta.clone();
        meta.compaction.failed = self.compaction_failed();
        meta
    }

    /// Records in `meta.json` (atomically) and in memory that a compaction including this
    /// block failed on its data, so the planner stops choosing it (upstream's
    /// `Block.setCompactionFailed`).
    pub fn mark_compaction_failed(&self) -> Result<(), BlockError> {
        let meta = self.planning_meta();
        if !meta.compaction.failed {
            let mut marked = meta;
            marked.compaction.failed = true;
            rewrite_meta(&*self.0.fs, &self.0.dir, &marked)?;
        }
        self.0.compaction_failed.store(true, Ordering::Release);
        Ok(())
    }

    /// Ids of every series, in label order (the compactor's cursor).
    pub(crate) fn series_ids(&self) -> Result<Vec<u32>, BlockError> {
        self.0.index.all_postings().map_err(|error| self.0.index_error(error))
    }

    /// Labels and chunk metas of the series with `id`.
    pub(crate) fn series_at(&self, id: u32) -> Result<(Labels, Vec<ChunkMeta>), BlockError> {
        self.0.index.series(id).map_err(|error| self.0.index_error(error))
    }

    /// The bytes of one chunk, CRC-checked.
    pub(crate) fn chunk_at(&self, chunk_ref: BlockChunkRef) -> Result<Vec<u8>, BlockError> {
        self.0.chunks.chunk(chunk_ref)
    }

    /// The index file's path, for errors.
    pub(crate) fn index_path(&self) -> &Path {
        &self.0.index_path
    }

    /// The block's `meta.json`.
    pub fn meta(&self) -> &BlockMeta {
        &self.0.meta
    }

    /// The block's directory.
    pub fn dir(&self) -> &Path {
        &self.0.dir
    }

    /// A querier over samples in `[min_time_ms, max_time_ms]` (both inclusive).
    pub fn querier(&self, min_time_ms: i64, max_time_ms: i64) -> BlockQuerier {
        BlockQuerier { block: self.0.clone(), min_time_ms, max_time_ms }
    }
}

impl Queryable for Block {
    fn querier(&self, min_time_ms: i64, max_time_ms: i64) -> Result<Box<dyn Querier>, StorageError> {
        Ok(Box::new(Block::querier(self, min_time_ms, max_time_ms)))
    }
}

/// Reads one block over a fixed time range (upstream's `blockQuerier`).
pub struct BlockQuerier {
    block: Arc<BlockInner>,
    min_time_ms: i64,
    max_time_ms: i64,
}

fn read_error(context: &'static str, error: BlockError) -> StorageError {
    StorageError::Read { context, source: Box::new(error) }
}

impl BlockInner {
    fn index_error(&self, error: IndexError) -> BlockError {
        BlockError::from_index(&self.index_path, error)
    }

    /// Series ids matching every matcher, sorted.
    fn resolve(&self, matchers: &[Matcher]) -> Result<Vec<u32>, BlockError> {
        let index = &self.index;
        let mut positives: Vec<Vec<u32>> = Vec::new();
        let mut negatives: Vec<Vec<u32>> = Vec::new();
        for matcher in matchers {
            let values = index.label_values(&matcher.name);
            if values.is_empty() {
                // No series has the label: it matches only if the matcher accepts "".
                if matcher.matches_empty() {
                    continue;
                }
                return Ok(Vec::new());
            }
            if matcher.matches_empty() {
                negatives.push(self.rejected_by(values, matcher)?);
            } else {
                let list = self.accepted_by(values, matcher)?;
                if list.is_empty() {
                    return Ok(Vec::new());
                }
                positives.push(list);
            }
        }
        positives.sort_by_key(Vec::len);
        let mut result = match positives.split_first() {
            Some((first, rest)) => rest.iter().fold(first.clone(), |acc, list| intersect(&acc, list)),
            None => index.all_postings().map_err(|error| self.index_error(error))?,
        };
        for list in &negatives {
            if result.is_empty() {
                break;
            }
            result = subtract(&result, list);
        }
        Ok(result)
    }

    fn union_of<'a>(&self, values: impl Iterator<Item = &'a (String, u64)>) -> Result<Vec<u32>, BlockError> {
        let lists = values
            .map(|(_, offset)| self.index.postings_at(*offset))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| self.index_error(error))?;
        let slices: Vec<&[u32]> = lists.iter().map(Vec::as_slice).collect();
        Ok(union(&slices))
    }

    fn members<'a>(values: &'a [(String, u64)], set: &'a [String]) -> impl Iterator<Item = &'a (String, u64)> + 'a {
        set.iter().filter_map(|member| {
            values.binary_search_by(|(value, _)| value.as_str().cmp(member)).ok().map(|position| &values[position])
        })
    }

    fn with_prefix<'a>(values: &'a [(String, u64)], prefix: &str) -> &'a [(String, u64)] {
        let start = values.partition_point(|(value, _)| value.as_str() < prefix);
        let length = values[start..].iter().take_while(|(value, _)| value.starts_with(prefix)).count();
        &values[start..start + length]
    }

    /// Series whose value the (non-empty-matching) matcher accepts.
    fn accepted_by(&self, values: &[(String, u64)], matcher: &Matcher) -> Result<Vec<u32>, BlockError> {
        match (matcher.kind, matcher.regex_shape()) {
            (MatchKind::Equal, _) => self.union_of(Self::members(values, std::slice::from_ref(&matcher.value))),
            (MatchKind::Regex, RegexShape::Set(set)) => self.union_of(Self::members(values, set)),
            (MatchKind::Regex, RegexShape::Prefix(prefix)) => self.union_of(Self::with_prefix(values, prefix).iter()),
            _ => self.union_of(values.iter().filter(|(value, _)| matcher.matches(value))),
        }
    }

    /// Series that have the label with a value the (empty-matching) matcher rejects.
    fn rejected_by(&self, values: &[(String, u64)], matcher: &Matcher) -> Result<Vec<u32>, BlockError> {
        match (matcher.kind, matcher.regex_shape()) {
            (MatchKind::NotEqual, _) => self.union_of(Self::members(values, std::slice::from_ref(&matcher.value))),
            (MatchKind::Regex, RegexShape::Any) => Ok(Vec::new()),
            (MatchKind::NotRegex, RegexShape::Set(set)) if !set.iter().any(String::is_empty) => {
                self.union_of(Self::members(values, set))
            }
            (MatchKind::NotRegex, RegexShape::Prefix(prefix)) if !prefix.is_empty() => {
                self.union_of(Self::with_prefix(values, prefix).iter())
            }
            _ => self.union_of(values.iter().filter(|(value, _)| !matcher.matches(value))),
        }
    }

    fn series_labels(&self, id: u32) -> Result<Labels, BlockError> {
        self.index.series(id).map(|(labels, _)| labels).map_err(|error| self.index_error(error))
    }

    /// The series' samples in `[min_time_ms, max_time_ms]`.
    fn samples(&self, metas: &[ChunkMeta], min_time_ms: i64, max_time_ms: i64) -> Result<Vec<Sample>, BlockError> {
        let mut samples = Vec::new();
        for meta in metas.iter().filter(|meta| meta.max_time_ms >= min_time_ms && meta.min_time_ms <= max_time_ms) {
            let bytes = self.chunks.chunk(meta.chunk_ref)?;
            for item in iter_bytes(&bytes) {
                let (timestamp_ms, value) = item.map_err(|error| BlockError::Corruption {
                    path: child(&self.dir, "chunks"),
                    offset: u64::from(meta.chunk_ref.offset()),
                    reason: format!(
                        "chunk {:#x} of segment {}: {error}",
                        meta.chunk_ref.0,
                        meta.chunk_ref.segment_index()
                    ),
                })?;
                if timestamp_ms > max_time_ms {
                    break;
                }
                if timestamp_ms >= min_time_ms {
                    if samples.last().is_some_and(|last: &Sample| last.timestamp_ms >= timestamp_ms) {
                        return Err(BlockError::Corruption {
                            path: child(&self.dir, "chunks"),
                            offset: u64::from(meta.chunk_ref.offset()),
                            reason: format!("sample at {timestamp_ms} out of order"),
                        });
                    }
                    samples.push(Sample { timestamp_ms, value });
                }
            }
        }
        Ok(samples)
    }
}

/// Streams the series of a resolved id list.
struct BlockSeriesIter {
    block: Arc<BlockInner>,
    ids: std::vec::IntoIter<u32>,
    min_time_ms: i64,
    max_time_ms: i64,
    previous: Option<Labels>,
    failed: bool,
}

impl BlockSeriesIter {
    fn next_series(&mut self) -> Result<Option<Series>, BlockError> {
        for id in self.ids.by_ref() {
            let (labels, metas) = self.block.index.series(id).map_err(|error| self.block.index_error(error))?;
            if let Some(previous) = &self.previous {
                if *previous >= labels {
                    return Err(BlockError::Corruption {
                        path: self.block.index_path.clone(),
                        offset: u64::from(id) * 16,
                        reason: format!("series {labels} not after {previous}"),
                    });
                }
            }
            self.previous = Some(labels.clone());
            let samples = self.block.samples(&metas, self.min_time_ms, self.max_time_ms)?;
            if !samples.is_empty() {
                return Ok(Some(Series { labels, samples }));
            }
        }
        Ok(None)
    }
}

impl Iterator for BlockSeriesIter {
    type Item = Result<Series, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_series() {
            Ok(series) => series.map(Ok),
            Err(error) => {
                self.failed = true;
                Some(Err(read_error("read block series", error)))
            }
        }
    }
}

impl BlockQuerier {
    fn matching_labels(&self, matchers: &[Matcher]) -> Result<Vec<Labels>, StorageError> {
        let ids = self.block.resolve(matchers).map_err(|error| read_error("resolve block postings", error))?;
        ids.into_iter()
            .map(|id| self.block.series_labels(id).map_err(|error| read_error("read block series", error)))
            .collect()
    }
}

impl Querier for BlockQuerier {
    fn select(&self, _hints: Option<&SelectHints>, matchers: &[Matcher]) -> SeriesSet<'_> {
        match self.block.resolve(matchers) {
            Ok(ids) => Box::new(BlockSeriesIter {
                block: self.block.clone(),
                ids: ids.into_iter(),
                min_time_ms: self.min_time_ms,
                max_time_ms: self.max_time_ms,
                previous: None,
                failed: false,
            }),
            Err(error) => Box::new(std::iter::once(Err(read_error("resolve block postings", error)))),
        }
    }

    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        if matchers.is_empty() {
            return Ok(self.block.index.label_names().map(str::to_string).collect());
        }
        let mut names = BTreeSet::new();
        for labels in self.matching_labels(matchers)? {
            names.extend(labels.iter().map(|label| label.name.clone()));
        }
        Ok(names.into_iter().collect())
    }

    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        if matchers.is_empty() {
            return Ok(self.block.index.label_values(name).iter().map(|(value, _)| value.clone()).collect());
        }
        let mut values = BTreeSet::new();
        for labels in self.matching_labels(matchers)? {
            if let Some(value) = labels.get(name) {
                values.insert(value.to_string());
            }
        }
        Ok(values.into_iter().collect())
    }
}

#[cfg(test)]
mod tests;
