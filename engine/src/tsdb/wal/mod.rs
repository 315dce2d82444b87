//! Write-ahead log in Prometheus' on-disk format (tsdb/docs/format/wal.md, tsdb/wlog): every
//! commit is written here before it becomes visible, and the head is rebuilt from it at start.
//!
//! Layout: `<data>/wal/` holds segments named by 8 zero-padded decimal digits (`00000000`,
//! `00000001`, ...), each at most [`WalOptions::segment_size_max`] bytes, rounded down to whole
//! 32 KiB pages. A segment is a sequence of pages holding record fragments ([`page`]):
//! ```text
//! segment = page*            page = fragment* zero padding?        (32 KiB; the last may be partial)
//! fragment = type: u8 | length: u16 BE | CRC32C(data): u32 BE | data
//! type     = reserved: 2 bits | lz4: 1 | zstd: 1 | snappy: 1 | kind: 3 (0 pad, 1 full, 2 first, 3 middle, 4 last)
//! record   = data of its fragments, concatenated, then decompressed      (codec: [`record`])
//! ```
//! Records in Prometheus' encoding: series (1), samples (2), tombstones (3). Compression per
//! record ([`compression`]): snappy is what Prometheus 2.42 reads; zstd only newer Prometheus
//! versions read; lz4 is this engine's extension that no Prometheus reads.
//!
//! Invariants:
//! - A record never spans segments; a record (after compression) larger than a segment is
//!   [`WalError::RecordTooLarge`]. A batch given to [`Wal::log`] goes into one segment unless it
//!   is larger than a whole segment (then it is split at record boundaries).
//! - On open the writer starts a new segment after the last one, as upstream's `NewSize` does.
//!   Rolling to a new segment zero-pads and syncs the old one first, so syncing only at rollover
//!   is a valid durability policy for the caller.
//! - A failed [`Wal::log`] leaves nothing of its records on disk: the segment is truncated back
//!   to its size before the call (or, if truncating fails, its good prefix is rewritten through a
//!   temporary file and a rename); only if both fail does the next call move to a new segment.
//!
//! Repair (better than upstream's `wlog.Repair`, which truncates at the first bad record and
//! deletes every later segment): replay scans each segment, skips a bad fragment (CRC mismatch,
//! bad type, bad sequence, bad length, zeroed range) to the next place it can trust (the
//! fragment's declared end if a valid fragment starts there, else the next page) and keeps every
//! valid record before and after it; a torn tail is cut off; a gap in the segment numbering is
//! reported and later segments are renumbered down to close it (Prometheus refuses gaps). Each
//! loss is a [`CorruptionReport`] and a `tracing::warn!`. A damaged segment is rewritten with only
//! its valid records (temporary file, fsync, rename, directory fsync), so a second open reports
//! nothing and Prometheus 2.42 starts on the directory without its own destructive repair.
//!
//! Concurrency: a [`Wal`] is owned by the database state and used under its lock; replay holds
//! one segment in memory at a time.

pub mod checkpoint;
pub mod compression;
pub mod page;
pub mod record;
mod repair;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use compression::{Compression, CompressionParseError};
pub use record::{
    decode_record, encode_samples, encode_series, encode_tombstones, Record, RecordError, RefSample, Stone,
};

use crate::io::{AppendFile, FileSystem};
use crate::limits::{WAL_RECORD_SIZE_MAX, WAL_SEGMENT_SIZE_MAX_DEFAULT};
use page::{frame_record, pad_page, position_after, space_left, PAGE_SIZE};

/// How the log is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalOptions {
    /// Largest segment, bytes; rounded down to whole 32 KiB pages, at least one page.
    pub segment_size_max: u64,
    /// Compression of new records (every kind is read back regardless).
    pub compression: Compression,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions { segment_size_max: WAL_SEGMENT_SIZE_MAX_DEFAULT, compression: Compression::Snappy }
    }
}

/// One thing replay found, in stream order.
#[derive(Clone, Debug, PartialEq)]
pub enum ReplayItem {
    /// A valid record.
    Record(Record),
    /// A damaged range, dropped by repair.
    Corruption(CorruptionReport),
}

/// A loss found (and repaired) at open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorruptionReport {
    /// Segment (as named on disk before repair) that held the damage, or the first missing one.
    pub segment_index: u32,
    /// Byte offset of the first lost byte in that segment.
    pub offset: u64,
    /// Bytes dropped (0 for a missing segment: its size is unknown).
    pub size: u64,
    /// Fragments dropped (0 for a missing segment or torn padding).
    pub fragments_lost_count: u64,
    /// What was wrong.
    pub reason: String,
}

/// Summary of replay and repair.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Segments read.
    pub segment_count: u32,
    /// Records handed to the visitor.
    pub record_count: u64,
    /// Every loss, in stream order.
    pub corruptions: Vec<CorruptionReport>,
    /// Bytes dropped by repair.
    pub bytes_dropped: u64,
}

/// WAL failures.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A filesystem operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A segment holds a bad fragment or record (from the strict [`decode_segment`]; replay
    /// repairs instead).
    #[error("wal corruption in segment {segment_index} at byte {offset}: {reason}")]
    Corruption {
        /// Segment.
        segment_index: u32,
        /// Byte offset in the segment.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// A record does not fit the record size limit or, compressed, a whole segment.
    #[error("wal record of {size} bytes exceeds the limit of {size_max} bytes")]
    RecordTooLarge {
        /// Size (uncompressed for the record limit, stored for the segment limit).
        size: usize,
        /// Limit.
        size_max: usize,
    },
    /// The segment size cannot hold one page.
    #[error("wal segment size {segment_size_max} is smaller than one page of {page_size} bytes")]
    SegmentSizeTooSmall {
        /// Configured size.
        segment_size_max: u64,
        /// Page size.
        page_size: usize,
    },
}

fn io_error(context: String) -> impl FnOnce(std::io::Error) -> WalError {
    move |source| WalError::Io { context, source }
}

/// File name of segment `index` (Prometheus `SegmentName`: `%08d`).
pub fn segment_name(index: u32) -> String {
    format!("{index:08}")
}

/// Decodes a whole segment strictly: every fragment must be valid and every record decodable
/// (tests, tools, compatibility checks). Replay uses the repairing path instead.
pub fn decode_segment(segment_index: u32, bytes: &[u8]) -> Result<Vec<Record>, WalError> {
    let mut records = Vec::new();
    let mut decompressed = Vec::new();
    for item in page::scan_segment(bytes) {
        match item {
            page::ScanItem::Loss(loss) => {
                return Err(WalError::Corruption { segment_index, offset: loss.offset, reason: loss.reason })
            }
            page::ScanItem::Record(scanned) => {
                let corruption =
                    |reason: String| WalError::Corruption { segment_index, offset: scanned.offset, reason };
                compression::decompress(scanned.flags, &scanned.stored, &mut decompressed)
                    .map_err(|error| corruption(error.to_string()))?;
                records.push(decode_record(&decompressed).map_err(|error| corruption(error.to_string()))?);
            }
        }
    }
    Ok(records)
}

/// The open log.
pub struct Wal {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    compression: Compression,
    page_count: u64,
    segment_index: u32,
    /// Bytes in the current segment; also the page state (offset in the current page).
    segment_size: u64,
    /// `None` after a failure that left the current segment unusable: the next call starts a
    /// new one.
    file: Option<Box<dyn AppendFile>>,
}

impl Wal {
    /// Replays every segment in order, one segment in memory at a time, calling `visit` for each
    /// record and each corruption; repairs the directory; then opens a new segment for appends.
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        options: WalOptions,
        visit: &mut dyn FnMut(ReplayItem),
    ) -> Result<(Wal, ReplayReport), WalError> {
        let page_count = options.segment_size_max / PAGE_SIZE as u64;
        if page_count == 0 {
            return Err(WalError::SegmentSizeTooSmall {
                segment_size_max: options.segment_size_max,
                page_size: PAGE_SIZE,
            });
        }
        fs.create_dir_all(dir).map_err(io_error(format!("create wal directory {}", dir.display())))?;
        let (next_index, report) = repair::replay(fs.as_ref(), dir, visit)?;
        let mut wal = Wal {
            fs,
            dir: dir.to_path_buf(),
            compression: options.compression,
            page_count,
            segment_index: next_index,
            segment_size: 0,
            file: None,
        };
        wal.open_fresh_segment(next_index)?;
        Ok((wal, report))
    }

    /// Index of the segment being appended to.
    pub fn segment_index(&self) -> u32 {
        self.segment_index
    }

    fn segment_path(&self, index: u32) -> PathBuf {
        self.dir.join(segment_name(index))
    }

    fn open_fresh_segment(&mut self, index: u32) -> Result<(), WalError> {
        let path = self.segment_path(index);
        let file = self.fs.open_append(&path).map_err(io_error(format!("create wal segment {}", path.display())))?;
        self.fs.sync_dir(&self.dir).map_err(io_error(format!("sync wal directory {}", self.dir.display())))?;
        self.file = Some(file);
        self.segment_index = index;
        self.segment_size = 0;
        Ok(())
    }

    fn write_current(&mut self, bytes: &[u8]) -> Result<(), WalError> {
        let path = self.segment_path(self.segment_index);
        let file = self.file.as_mut().ok_or_else(|| WalError::Io {
            context: format!("write wal segment {}", path.display()),
            source: std::io::Error::other("no open segment"),
        })?;
        file.write_all(bytes).map_err(io_error(format!("write wal segment {}", path.display())))
    }

    /// Closes the current segment (padded and synced) and starts the next, unless the current
    /// one is still empty; returns the index now being written. Every segment below it is
    /// closed, so a checkpoint may read it.
    pub fn roll_segment(&mut self) -> Result<u32, WalError> {
        if self.file.is_some() && self.segment_size == 0 {
            return Ok(self.segment_index);
        }
        if self.file.is_none() {
            self.open_fresh_segment(self.segment_index + 1)?;
            return Ok(self.segment_index);
        }
        let mut touched = vec![(self.segment_index, self.segment_size)];
        self.roll(&mut touched)?;
        Ok(self.segment_index)
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes everything logged so far durable (for interval-sync policies).
    pub fn sync(&mut self) -> Result<(), WalError> {
        let path = self.segment_path(self.segment_index);
        match self.file.as_mut() {
            Some(file) => file.sync().map_err(io_error(format!("sync wal segment {}", path.display()))),
            // A failed call could not reopen the segment; earlier unsynced calls still need it.
            None => self
                .fs
                .open_append(&path)
                .and_then(|mut file| file.sync())
                .map_err(io_error(format!("sync wal segment {}", path.display()))),
        }
    }

    /// Appends whole encoded records (one commit or a group of commits) in one write; syncs when
    /// `sync`. On any failure nothing of this call may survive a later replay as a valid record
    /// and later calls must work: truncate back to the size before the call (restoring the
    /// in-memory page state), or, if that fails, move to a new segment.
    pub fn log(&mut self, records: &[&[u8]], sync: bool) -> Result<(), WalError> {
        let capacity = space_left(0, self.page_count);
        let mut stored: Vec<(Vec<u8>, u8)> = Vec::with_capacity(records.len());
        let mut scratch = Vec::new();
        for record in records {
            if record.len() > WAL_RECORD_SIZE_MAX {
                return Err(WalError::RecordTooLarge { size: record.len(), size_max: WAL_RECORD_SIZE_MAX });
            }
            let (bytes, flags) = compression::compress(self.compression, record, &mut scratch);
            if bytes.len() as u64 > capacity {
                return Err(WalError::RecordTooLarge { size: bytes.len(), size_max: capacity as usize });
            }
            stored.push((bytes.to_vec(), flags));
        }
        if self.file.is_none() {
            // An earlier failure left no usable segment: start a new one (retried every call).
            self.open_fresh_segment(self.segment_index + 1)?;
        }
        let mut touched = vec![(self.segment_index, self.segment_size)];
        let result = self.write_batch(&stored, sync, &mut touched);
        if result.is_err() {
            self.roll_back(&touched);
        }
        result
    }

    fn write_batch(
        &mut self,
        stored: &[(Vec<u8>, u8)],
        sync: bool,
        touched: &mut Vec<(u32, u64)>,
    ) -> Result<(), WalError> {
        let mut end = self.segment_size;
        let fits = stored.iter().all(|(bytes, _)| {
            let fits = bytes.len() as u64 <= space_left(end, self.page_count);
            end = position_after(bytes.len(), end);
            fits
        });
        if !fits && self.segment_size > 0 {
            self.roll(touched)?;
        }
        let mut buffer = Vec::new();
        let mut position = self.segment_size;
        for (bytes, flags) in stored {
            if bytes.len() as u64 > space_left(position, self.page_count) {
                // Only a batch larger than a whole segment gets here: split it at a record boundary.
                self.write_current(&buffer)?;
                self.segment_size = position;
                buffer.clear();
                self.roll(touched)?;
                position = 0;
            }
            frame_record(bytes, *flags, &mut position, &mut buffer);
        }
        self.write_current(&buffer)?;
        self.segment_size = position;
        if sync {
            self.sync()?;
        }
        Ok(())
    }

    /// Closes the current segment (zero-padded to a page boundary, synced) and opens the next.
    fn roll(&mut self, touched: &mut Vec<(u32, u64)>) -> Result<(), WalError> {
        let mut padding = Vec::new();
        let mut position = self.segment_size;
        pad_page(&mut position, &mut padding);
        self.write_current(&padding)?;
        self.segment_size = position;
        self.sync()?;
        self.open_fresh_segment(self.segment_index + 1)?;
        touched.push((self.segment_index, 0));
        Ok(())
    }

    /// Removes every byte the failed call wrote. Segments are cut back newest first; one that
    /// cannot be truncated gets its good prefix rewritten through a rename; if that fails too,
    /// the next call starts a new segment.
    fn roll_back(&mut self, touched: &[(u32, u64)]) {
        self.file = None;
        let mut clean = true;
        for &(index, size) in touched.iter().rev() {
            let path = self.segment_path(index);
            if let Err(error) = self.fs.truncate(&path, size) {
                tracing::warn!(segment_index = index, %error, "wal: cannot truncate a failed write away; rewriting");
                if let Err(error) = repair::rewrite_prefix(self.fs.as_ref(), &self.dir, index, size) {
                    tracing::error!(segment_index = index, %error, "wal: cannot remove a failed write");
                    clean = false;
                }
            }
        }
        let &(index, size) = touched.last().unwrap_or(&(self.segment_index, self.segment_size));
        self.segment_index = index;
        self.segment_size = size;
        if clean {
            match self.fs.open_append(&self.segment_path(index)) {
                Ok(file) => self.file = Some(file),
                Err(error) => tracing::error!(segment_index = index, %error, "wal: cannot reopen segment"),
            }
        }
    }
}

impl From<WalError> for super::TsdbError {
    fn from(error: WalError) -> Self {
        match error {
            WalError::Io { context, source } => super::TsdbError::Io { context, source },
            WalError::RecordTooLarge { size, size_max } => super::TsdbError::RecordTooLarge { size, size_max },
            other => super::TsdbError::Wal { source: other },
        }
    }
}
