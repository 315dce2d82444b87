//! WAL checkpoints (Prometheus tsdb/wlog/checkpoint.go): once the head's oldest range is in a
//! block, the segments that hold it are condensed into `checkpoint.NNNNNNNN/` (N = the last
//! segment covered) and deleted, so the WAL stays about one block range long.
//!
//! A checkpoint is itself a WAL directory (segments `00000000`, ...) holding, from the previous
//! checkpoint and the segments after it up to N: the series records of series the head still
//! holds, their samples at or after the head's new lower bound, and their tombstones. Record
//! types this engine does not decode (exemplars, metadata, histograms) are dropped, as upstream
//! drops whatever its keep rules reject.
//!
//! Crash safety: written to `checkpoint.N.tmp/`, synced, renamed, the WAL directory synced; only
//! then are segments up to N and older checkpoints deleted. A crash at any point leaves either
//! the old state (a `.tmp` leftover is removed next time) or the new checkpoint plus segments it
//! covers, which replay skips. Memory: one segment is read at a time and records are written as
//! they are filtered.
//!
//! Concurrency: runs on the compactor task while the WAL writer appends to a later segment;
//! it touches only closed segments (the caller rolls the writer to a new segment first).

use std::path::Path;
use std::sync::Arc;

use super::compression::decompress;
use super::page::{scan_segment, ScanItem};
use super::record::{decode_record, encode_samples, encode_series, encode_tombstones, Record, RefSample, Stone};
use super::{io_error, segment_name, Wal, WalError, WalOptions};
use crate::io::FileSystem;
use crate::limits::WAL_RECORD_SAMPLE_COUNT_MAX;
use crate::model::{Labels, SeriesRef};

/// Series per series record in a checkpoint.
const CHECKPOINT_SERIES_PER_RECORD: usize = 10_000;

/// What a checkpoint kept and dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    /// Last segment covered (the checkpoint's number).
    pub segment_last: u32,
    /// Segment files deleted.
    pub segments_deleted_count: u32,
    /// Series records kept / dropped.
    pub series_kept_count: u64,
    /// Series dropped (no longer in the head).
    pub series_dropped_count: u64,
    /// Samples kept (at or after the lower bound, of kept series).
    pub samples_kept_count: u64,
    /// Samples dropped.
    pub samples_dropped_count: u64,
}

/// Name of checkpoint `index`.
pub fn checkpoint_name(index: u32) -> String {
    format!("checkpoint.{index:08}")
}

/// `N` of a finished checkpoint directory name.
pub fn parse_checkpoint_name(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("checkpoint.")?;
    (digits.len() >= 8 && digits.bytes().all(|byte| byte.is_ascii_digit())).then(|| digits.parse().ok()).flatten()
}

/// The numbered files (segments) of a WAL-format directory, sorted.
pub fn list_segments(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<u32>, WalError> {
    let mut indices: Vec<u32> = fs
        .list_dir(dir)
        .map_err(io_error(format!("list {}", dir.display())))?
        .into_iter()
        .filter(|name| !name.is_empty() && name.bytes().all(|byte| byte.is_ascii_digit()))
        .filter_map(|name| name.parse().ok())
        .collect();
    indices.sort_unstable();
    Ok(indices)
}

/// Reads every valid record of one segment (damage was repaired at open; anything found now is
/// skipped and logged, never fatal).
fn read_segment(fs: &dyn FileSystem, path: &Path, visit: &mut dyn FnMut(Record)) -> Result<(), WalError> {
    let bytes = fs.read(path).map_err(io_error(format!("read wal segment {}", path.display())))?;
    let mut decompressed = Vec::new();
    for item in scan_segment(&bytes) {
        match item {
            ScanItem::Record(scanned) => {
                if decompress(scanned.flags, &scanned.stored, &mut decompressed).is_err() {
                    tracing::warn!(file = %path.display(), offset = scanned.offset, "checkpoint: undecodable record skipped");
                    continue;
                }
                if let Ok(record) = decode_record(&decompressed) {
                    visit(record);
                }
            }
            ScanItem::Loss(loss) => {
                tracing::warn!(file = %path.display(), offset = loss.offset, reason = %loss.reason, "checkpoint: damaged range skipped");
            }
        }
    }
    Ok(())
}

/// Filters records into the checkpoint being written.
struct Filter<'a> {
    keep: &'a dyn Fn(SeriesRef) -> bool,
    min_time_ms: i64,
    out: Wal,
    series: Vec<(SeriesRef, Labels)>,
    samples: Vec<RefSample>,
    stones: Vec<Stone>,
    stats: CheckpointStats,
    error: Option<WalError>,
}

impl Filter<'_> {
    fn visit(&mut self, record: Record) {
        match record {
            Record::Series(series) => {
                for (series_ref, labels) in series {
                    if (self.keep)(series_ref) {
                        self.stats.series_kept_count += 1;
                        self.series.push((series_ref, labels));
                    } else {
                        self.stats.series_dropped_count += 1;
                    }
                }
            }
            Record::Samples(samples) => {
                for sample in samples {
                    if sample.timestamp_ms >= self.min_time_ms && (self.keep)(sample.series_ref) {
                        self.stats.samples_kept_count += 1;
                        self.samples.push(sample);
                    } else {
                        self.stats.samples_dropped_count += 1;
                    }
                }
            }
            Record::Tombstones(stones) => {
                self.stones.extend(
                    stones
                        .into_iter()
                        .filter(|stone| stone.max_time_ms >= self.min_time_ms && (self.keep)(stone.series_ref)),
                );
            }
        }
        self.flush(false);
    }

    /// Writes out full batches (all of them when `all`). Series go first so a sample never
    /// precedes its series in the checkpoint.
    fn flush(&mut self, all: bool) {
        if self.series.len() >= CHECKPOINT_SERIES_PER_RECORD || all {
            self.flush_series();
        }
        if self.samples.len() >= WAL_RECORD_SAMPLE_COUNT_MAX || all {
            // Samples may belong to series still buffered: those go first.
            self.flush_series();
            let samples = std::mem::take(&mut self.samples);
            let mut record = Vec::new();
            for batch in samples.chunks(WAL_RECORD_SAMPLE_COUNT_MAX) {
                record.clear();
                encode_samples(batch, &mut record);
                self.write(&record);
            }
        }
        if all && !self.stones.is_empty() {
            let mut record = Vec::new();
            encode_tombstones(&self.stones, &mut record);
            self.write(&record);
            self.stones.clear();
        }
    }

    fn flush_series(&mut self) {
        let batch = std::mem::take(&mut self.series);
        for part in batch.chunks(CHECKPOINT_SERIES_PER_RECORD) {
            let borrowed: Vec<(SeriesRef, &Labels)> =
                part.iter().map(|(series_ref, labels)| (*series_ref, labels)).collect();
            let mut record = Vec::new();
            encode_series(&borrowed, &mut record);
            self.write(&record);
        }
    }

    fn write(&mut self, record: &[u8]) {
        if self.error.is_none() {
            if let Err(error) = self.out.log(&[record], false) {
                self.error = Some(error);
            }
        }
    }
}

/// Condenses the WAL in `dir` up to segment `last` (inclusive) into `checkpoint.<last>`,
/// keeping series for which `keep` is true and their samples at or after `min_time_ms`; then
/// deletes the segments and checkpoints it replaces. Returns `None` when there is nothing to do
/// (a checkpoint at or past `last` exists, or no segment is covered).
pub fn checkpoint(
    fs: Arc<dyn FileSystem>,
    dir: &Path,
    last: u32,
    keep: &dyn Fn(SeriesRef) -> bool,
    min_time_ms: i64,
    options: WalOptions,
) -> Result<Option<CheckpointStats>, WalError> {
    let names = fs.list_dir(dir).map_err(io_error(format!("list wal directory {}", dir.display())))?;
    let mut previous: Option<u32> = None;
    for name in &names {
        if let Some(index) = parse_checkpoint_name(name) {
            previous = previous.max(Some(index));
        } else if name.starts_with("checkpoint.") && name.ends_with(".tmp") {
            let path = dir.join(name);
            tracing::warn!(dir = %path.display(), "removing an interrupted wal checkpoint");
            fs.remove_dir_all(&path).map_err(io_error(format!("remove {}", path.display())))?;
        }
    }
    if previous.is_some_and(|previous| previous >= last) {
        return Ok(None);
    }
    let segments: Vec<u32> = list_segments(fs.as_ref(), dir)?
        .into_iter()
        .filter(|&index| index <= last && previous.is_none_or(|previous| index > previous))
        .collect();
    if segments.is_empty() {
        return Ok(None);
    }
    let tmp_dir = dir.join(format!("{}.tmp", checkpoint_name(last)));
    let (out, _) = Wal::open(fs.clone(), &tmp_dir, options, &mut |_| {})?;
    let mut filter = Filter {
        keep,
        min_time_ms,
        out,
        series: Vec::new(),
        samples: Vec::new(),
        stones: Vec::new(),
        stats: CheckpointStats { segment_last: last, ..CheckpointStats::default() },
        error: None,
    };
    if let Some(previous) = previous {
        let previous_dir = dir.join(checkpoint_name(previous));
        for index in list_segments(fs.as_ref(), &previous_dir)? {
            read_segment(fs.as_ref(), &previous_dir.join(segment_name(index)), &mut |record| filter.visit(record))?;
        }
    }
    for &index in &segments {
        read_segment(fs.as_ref(), &dir.join(segment_name(index)), &mut |record| filter.visit(record))?;
    }
    filter.flush(true);
    if let Some(error) = filter.error.take() {
        let _ = fs.remove_dir_all(&tmp_dir); // Best effort: a leftover is removed next time.
        return Err(error);
    }
    filter.out.sync()?;
    let mut stats = filter.stats.clone();
    drop(filter);
    let final_dir = dir.join(checkpoint_name(last));
    fs.rename(&tmp_dir, &final_dir).map_err(io_error(format!("rename {}", tmp_dir.display())))?;
    fs.sync_dir(dir).map_err(io_error(format!("sync wal directory {}", dir.display())))?;
    // The checkpoint is durable: what it replaces can go. A failure here leaves files replay skips.
    for &index in &segments {
        let path = dir.join(segment_name(index));
        match fs.remove_file(&path) {
            Ok(()) => stats.segments_deleted_count += 1,
            Err(error) => tracing::warn!(%error, file = %path.display(), "remove checkpointed wal segment"),
        }
    }
    if let Some(previous) = previous {
        let path = dir.join(checkpoint_name(previous));
        if let Err(error) = fs.remove_dir_all(&path) {
            tracing::warn!(%error, dir = %path.display(), "remove replaced wal checkpoint");
        }
    }
    Ok(Some(stats))
}
