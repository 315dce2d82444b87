//! Replay and repair of a WAL directory: read each segment once, in order, hand its valid
//! records to the caller, and leave the directory as a clean Prometheus WAL.
//!
//! Upstream (tsdb/wlog/wlog.go `Repair`) truncates the segment at the first corruption and
//! deletes every later segment. Here every valid record is kept: [`page::scan_segment`] skips
//! only the damaged ranges; a segment with damage is rewritten with its valid records (the
//! stored bytes and compression flags unchanged); a torn tail alone is cut off by truncation; a
//! gap in the numbering is reported and closed by renaming later segments down, because
//! Prometheus (`listSegments`) refuses to open a directory with a gap.
//!
//! Crash safety: a rewrite goes to `<segment>.repair`, is synced, renamed over the segment, and
//! the directory is synced; a leftover `.repair` file is an interrupted rewrite and is removed
//! (the original segment is still whole). Renames happen in ascending order, so a crash in the
//! middle leaves a directory whose remaining gap the next open closes.
//!
//! Concurrency: runs inside `Wal::open`, before the log is shared.

use std::borrow::Cow;
use std::path::Path;

use super::compression::decompress;
use super::page::{self, frame_record, ScanItem};
use super::record::{decode_record, RecordError};
use super::{io_error, segment_name, CorruptionReport, ReplayItem, ReplayReport, WalError};
use crate::io::FileSystem;

/// Suffix of a segment rewrite in progress.
const REPAIR_SUFFIX: &str = ".repair";

/// Replays and repairs `dir`; returns the index the writer's new segment gets and the report.
pub(super) fn replay(
    fs: &dyn FileSystem,
    dir: &Path,
    visit: &mut dyn FnMut(ReplayItem),
) -> Result<(u32, ReplayReport), WalError> {
    let mut indices: Vec<(u32, String)> = Vec::new();
    // Prometheus' checkpoint (tsdb/wlog/checkpoint.go): `checkpoint.NNNNNNNN/` holds the live
    // series (and samples) of every segment up to N, whose files it then deletes. Replay reads
    // the newest checkpoint first and skips segments up to N, as upstream's head replay does.
    let mut checkpoint: Option<(u32, String)> = None;
    for name in fs.list_dir(dir).map_err(io_error(format!("list wal directory {}", dir.display())))? {
        if let Some(index) = super::checkpoint::parse_checkpoint_name(&name) {
            if checkpoint.as_ref().is_none_or(|(newest, _)| index > *newest) {
                checkpoint = Some((index, name));
            }
            continue;
        }
        if name.ends_with(REPAIR_SUFFIX) {
            let path = dir.join(&name);
            tracing::warn!(file = %name, "removing an interrupted wal segment rewrite");
            fs.remove_file(&path).map_err(io_error(format!("remove {}", path.display())))?;
            continue;
        }
        match name.parse::<u32>() {
            Ok(index) if name.bytes().all(|byte| byte.is_ascii_digit()) => indices.push((index, name)),
            _ => tracing::warn!(file = %name, "ignoring unexpected file in wal directory"),
        }
    }
    indices.sort();
    let mut report = ReplayReport::default();
    if let Some((checkpoint_index, checkpoint_name)) = &checkpoint {
        let checkpoint_dir = dir.join(checkpoint_name);
        let mut segments: Vec<(u32, String)> = fs
            .list_dir(&checkpoint_dir)
            .map_err(io_error(format!("list wal checkpoint {}", checkpoint_dir.display())))?
            .into_iter()
            .filter_map(|name| {
                name.parse::<u32>().ok().filter(|_| name.bytes().all(|b| b.is_ascii_digit())).map(|index| (index, name))
            })
            .collect();
        segments.sort();
        for (index, name) in segments {
            replay_segment(fs, &checkpoint_dir, index, &name, &mut report, visit)?;
        }
        let skipped: Vec<String> =
            indices.iter().filter(|(index, _)| index <= checkpoint_index).map(|(_, name)| name.clone()).collect();
        if !skipped.is_empty() {
            tracing::info!(count = skipped.len(), "wal segments covered by the checkpoint are not replayed");
        }
        indices.retain(|(index, _)| index > checkpoint_index);
    }
    let mut renamed = false;
    // `previous`: the last segment read, by its name on disk; `next_index`: where the next one
    // goes once gaps are closed.
    let mut previous: Option<u32> = None;
    let mut next_index: Option<u32> = None;
    for (index, name) in indices {
        let expected = next_index.unwrap_or(index);
        match previous {
            Some(previous) if index == previous => {
                tracing::warn!(file = %name, "ignoring a second wal segment with the same index");
                continue;
            }
            Some(previous) if index > previous + 1 => {
                let missing = CorruptionReport {
                    segment_index: previous + 1,
                    offset: 0,
                    size: 0,
                    fragments_lost_count: 0,
                    reason: format!("segments {} to {} are missing", previous + 1, index - 1),
                };
                lose(&mut report, visit, missing);
            }
            _ => {}
        }
        previous = Some(index);
        replay_segment(fs, dir, index, &name, &mut report, visit)?;
        if index != expected || name != segment_name(expected) {
            let (from, to) = (dir.join(&name), dir.join(segment_name(expected)));
            fs.rename(&from, &to).map_err(io_error(format!(
                "rename wal segment {} to {}",
                from.display(),
                to.display()
            )))?;
            renamed = true;
        }
        next_index = Some(expected + 1);
    }
    if renamed {
        fs.sync_dir(dir).map_err(io_error(format!("sync wal directory {}", dir.display())))?;
    }
    if report.record_count > 0 || !report.corruptions.is_empty() {
        tracing::info!(
            segment_count = report.segment_count,
            record_count = report.record_count,
            corruption_count = report.corruptions.len(),
            bytes_dropped = report.bytes_dropped,
            "wal replayed"
        );
    }
    // New segments always come after the checkpoint, or a later replay would skip them.
    let after_checkpoint = checkpoint.map_or(0, |(index, _)| index + 1);
    Ok((next_index.unwrap_or(0).max(after_checkpoint), report))
}

fn lose(report: &mut ReplayReport, visit: &mut dyn FnMut(ReplayItem), corruption: CorruptionReport) {
    tracing::warn!(
        segment_index = corruption.segment_index,
        offset = corruption.offset,
        size = corruption.size,
        fragments_lost_count = corruption.fragments_lost_count,
        reason = %corruption.reason,
        "wal corruption: dropping the damaged range, keeping every valid record"
    );
    report.bytes_dropped += corruption.size;
    report.corruptions.push(corruption.clone());
    visit(ReplayItem::Corruption(corruption));
}

fn replay_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    index: u32,
    name: &str,
    report: &mut ReplayReport,
    visit: &mut dyn FnMut(ReplayItem),
) -> Result<(), WalError> {
    let path = dir.join(name);
    let bytes = fs.read(&path).map_err(io_error(format!("read wal segment {}", path.display())))?;
    report.segment_count += 1;
    let items = page::scan_segment(&bytes);
    let item_count = items.len();
    let mut kept: Vec<(u8, Cow<'_, [u8]>)> = Vec::with_capacity(item_count);
    let mut loss_count = 0_usize;
    let mut torn_tail_offset: Option<u64> = None;
    let mut unknown_count = 0_u64;
    let mut decompressed = Vec::new();
    for (position, item) in items.into_iter().enumerate() {
        let loss = match item {
            ScanItem::Record(scanned) => {
                let decoded = decompress(scanned.flags, &scanned.stored, &mut decompressed)
                    .map_err(|error| error.to_string())
                    .and_then(|()| match decode_record(&decompressed) {
                        Ok(record) => Ok(Some(record)),
                        Err(RecordError::UnknownType { .. } | RecordError::Empty) => Ok(None),
                        Err(error) => Err(error.to_string()),
                    });
                match decoded {
                    Ok(record) => {
                        match record {
                            Some(record) => {
                                report.record_count += 1;
                                visit(ReplayItem::Record(record));
                            }
                            // Exemplars, metadata, histograms, empty records: kept on disk for Prometheus.
                            None => unknown_count += 1,
                        }
                        kept.push((scanned.flags, scanned.stored));
                        continue;
                    }
                    Err(reason) => page::Loss {
                        offset: scanned.offset,
                        size: scanned.end - scanned.offset,
                        fragments_lost_count: scanned.fragment_count,
                        reason: format!("undecodable record: {reason}"),
                        torn: false,
                    },
                }
            }
            ScanItem::Loss(loss) => loss,
        };
        loss_count += 1;
        if loss.torn && position + 1 == item_count {
            torn_tail_offset = Some(loss.offset);
        }
        let corruption = CorruptionReport {
            segment_index: index,
            offset: loss.offset,
            size: loss.size,
            fragments_lost_count: loss.fragments_lost_count,
            reason: loss.reason,
        };
        lose(report, visit, corruption);
    }
    if unknown_count > 0 {
        tracing::debug!(segment_index = index, unknown_count, "wal records of types this engine does not replay");
    }
    match (loss_count, torn_tail_offset) {
        (0, _) => Ok(()),
        (1, Some(offset)) => {
            fs.truncate(&path, offset).map_err(io_error(format!("truncate wal segment {}", path.display())))
        }
        _ => {
            let mut rewritten = Vec::with_capacity(bytes.len());
            let mut position = 0;
            for (flags, stored) in &kept {
                frame_record(stored, *flags, &mut position, &mut rewritten);
            }
            replace_file(fs, dir, name, &rewritten)
        }
    }
}

/// Replaces segment `index` by its first `size` bytes through a rewrite (when truncating failed).
pub(super) fn rewrite_prefix(fs: &dyn FileSystem, dir: &Path, index: u32, size: u64) -> Result<(), WalError> {
    let name = segment_name(index);
    let path = dir.join(&name);
    let bytes = fs.read(&path).map_err(io_error(format!("read wal segment {}", path.display())))?;
    let size = usize::try_from(size).unwrap_or(usize::MAX).min(bytes.len());
    replace_file(fs, dir, &name, &bytes[..size])
}

/// Writes `bytes` to `<name>.repair`, syncs it, renames it over `name` and syncs the directory.
fn replace_file(fs: &dyn FileSystem, dir: &Path, name: &str, bytes: &[u8]) -> Result<(), WalError> {
    let path = dir.join(name);
    let temporary = dir.join(format!("{name}{REPAIR_SUFFIX}"));
    // A leftover from an interrupted attempt would be appended to; it holds nothing needed.
    let _ = fs.remove_file(&temporary);
    let mut file =
        fs.open_append(&temporary).map_err(io_error(format!("create wal rewrite {}", temporary.display())))?;
    file.write_all(bytes).map_err(io_error(format!("write wal rewrite {}", temporary.display())))?;
    file.sync().map_err(io_error(format!("sync wal rewrite {}", temporary.display())))?;
    drop(file);
    fs.rename(&temporary, &path).map_err(io_error(format!(
        "rename {} over {}",
        temporary.display(),
        path.display()
    )))?;
    fs.sync_dir(dir).map_err(io_error(format!("sync wal directory {}", dir.display())))
}
