//! Write-ahead log: every commit is written here and synced before it becomes visible, and the
//! head is rebuilt from it at start.
//!
//! Directory `<data>/wal/` holds segments named by 8 zero-padded decimal digits (`00000000`,
//! `00000001`, ...). A record never spans segments; a new segment starts when the current one
//! would exceed the size limit. Record framing (all integers little-endian):
//! ```text
//! ┌─────────────────────┬─────────────────────────┬──────────────────────────────┐
//! │ payload length: u32 │ CRC32C of payload: u32  │ payload                      │
//! └─────────────────────┴─────────────────────────┴──────────────────────────────┘
//! payload = type: u8, then
//!   type 1 (series):  repeated { ref: u64, label count: u16,
//!                                { name length: u16, name, value length: u16, value }* }
//!   type 2 (samples): repeated { ref: u64, timestamp ms: i64, value bits: u64 }
//! ```
//! Repair (as Prometheus tsdb/wlog `Repair`): replay stops at the first record that fails its CRC,
//! has an unknown type or cannot be decoded; the segment is truncated there and every later
//! segment removed, so appends continue after the good prefix. A torn record (short header or
//! payload) at the end of a segment is cut off too, but later segments are kept: the writer
//! leaves a torn tail behind only when a write failed and could not be truncated away, and then
//! it moves on to a new segment whose commits succeeded.
//!
//! Concurrency: a [`Wal`] is owned by the commit writer task (`tsdb::commit`); nothing else writes it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::TsdbError;
use crate::io::{AppendFile, FileSystem};
use crate::limits::WAL_RECORD_SIZE_MAX;
use crate::model::{Labels, SeriesRef};

const HEADER_SIZE: usize = 8;
const RECORD_TYPE_SERIES: u8 = 1;
const RECORD_TYPE_SAMPLES: u8 = 2;
const SAMPLE_ENTRY_SIZE: usize = 24;

/// One sample of a samples record.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RefSample {
    /// Series.
    pub series_ref: SeriesRef,
    /// Unix ms.
    pub timestamp_ms: i64,
    /// Value.
    pub value: f64,
}

/// A decoded WAL record.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// New series and their references.
    Series(Vec<(SeriesRef, Labels)>),
    /// Samples by series reference.
    Samples(Vec<RefSample>),
}

/// WAL settings.
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// Largest segment, bytes.
    pub segment_size_max: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions { segment_size_max: crate::limits::WAL_SEGMENT_SIZE_MAX_DEFAULT }
    }
}

/// A damaged region replay skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorruptionReport {
    /// Segment.
    pub segment_index: u32,
    /// Byte offset of the damage.
    pub offset: u64,
    /// Bytes dropped.
    pub size: u64,
    /// Fragments (records) lost, where known.
    pub fragments_lost_count: u64,
    /// What was wrong.
    pub reason: String,
}

/// Items replay hands to its visitor, in log order.
#[derive(Debug)]
pub enum ReplayItem {
    /// A valid record.
    Record(Record),
    /// A damaged region.
    Corruption(CorruptionReport),
}

/// What replay found.
#[derive(Debug, Default)]
pub struct ReplayReport {
    /// Segments read.
    pub segment_count: u32,
    /// Records replayed.
    pub record_count: u64,
    /// Damage found and repaired.
    pub corruptions: Vec<CorruptionReport>,
    /// Bytes cut off by repair, including removed segments.
    pub bytes_dropped: u64,
}

/// The open log.
pub struct Wal {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    segment_size_max: u64,
    segment_index: u32,
    segment_size: u64,
    file: Option<Box<dyn AppendFile>>,
}

fn segment_name(index: u32) -> String {
    format!("{index:08}")
}

fn io_error(context: String) -> impl FnOnce(std::io::Error) -> TsdbError {
    move |source| TsdbError::Io { context, source }
}

impl Wal {
    /// Opens `dir` (created if missing), replays and repairs it, and prepares for appends.
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        options: WalOptions,
        visit: &mut dyn FnMut(ReplayItem),
    ) -> Result<(Wal, ReplayReport), TsdbError> {
        let segment_size_max = options.segment_size_max;
        fs.create_dir_all(dir).map_err(io_error(format!("create wal directory {}", dir.display())))?;
        let mut segments: Vec<u32> = Vec::new();
        for name in fs.list_dir(dir).map_err(io_error(format!("list wal directory {}", dir.display())))? {
            match name.parse::<u32>() {
                Ok(index) if name.len() == 8 => segments.push(index),
                _ => tracing::warn!(file = %name, "ignoring unexpected file in wal directory"),
            }
        }
        segments.sort_unstable();
        let mut replay = ReplayReport::default();
        let mut last_good: Option<(u32, u64)> = None;
        for (position, &index) in segments.iter().enumerate() {
            let path = dir.join(segment_name(index));
            let bytes = fs.read(&path).map_err(io_error(format!("read wal segment {}", path.display())))?;
            // One segment's records at a time: replay memory is bounded by the segment size.
            let mut records = Vec::new();
            let (good_size, failure) = decode_segment(&bytes, &mut records);
            replay.segment_count += 1;
            replay.record_count += records.len() as u64;
            for record in records {
                visit(ReplayItem::Record(record));
            }
            last_good = Some((index, good_size as u64));
            if let Some(SegmentEnd { reason, torn }) = failure {
                tracing::warn!(segment_index = index, offset = good_size, %reason, "wal corruption, truncating");
                let report = CorruptionReport {
                    segment_index: index,
                    offset: good_size as u64,
                    size: (bytes.len() - good_size) as u64,
                    fragments_lost_count: 0,
                    reason,
                };
                replay.bytes_dropped += report.size;
                replay.corruptions.push(report.clone());
                visit(ReplayItem::Corruption(report));
                fs.truncate(&path, good_size as u64)
                    .map_err(io_error(format!("truncate wal segment {}", path.display())))?;
                if torn {
                    continue; // Later segments hold commits made after the failed write.
                }
                for &later in &segments[position + 1..] {
                    let later_path = dir.join(segment_name(later));
                    let later_size = fs.read(&later_path).map(|bytes| bytes.len() as u64).unwrap_or(0);
                    replay.bytes_dropped += later_size;
                    fs.remove_file(&later_path)
                        .map_err(io_error(format!("remove wal segment {}", later_path.display())))?;
                }
                fs.sync_dir(dir).map_err(io_error(format!("sync wal directory {}", dir.display())))?;
                break;
            }
        }
        let mut wal =
            Wal { fs, dir: dir.to_path_buf(), segment_size_max, segment_index: 0, segment_size: 0, file: None };
        match last_good {
            Some((index, size)) => wal.open_segment(index, size)?,
            None => wal.open_segment(0, 0)?,
        }
        Ok((wal, replay))
    }

    /// Index of the segment being appended to.
    pub fn segment_index(&self) -> u32 {
        self.segment_index
    }

    fn open_segment(&mut self, index: u32, size: u64) -> Result<(), TsdbError> {
        let path = self.dir.join(segment_name(index));
        let file = self.fs.open_append(&path).map_err(io_error(format!("open wal segment {}", path.display())))?;
        self.fs.sync_dir(&self.dir).map_err(io_error(format!("sync wal directory {}", self.dir.display())))?;
        self.file = Some(file);
        self.segment_index = index;
        self.segment_size = size;
        Ok(())
    }

    /// Syncs everything written so far.
    pub fn sync(&mut self) -> Result<(), TsdbError> {
        match self.file.as_mut() {
            Some(file) => file.sync().map_err(io_error(format!("sync wal segment {}", self.segment_index))),
            None => Ok(()),
        }
    }

    /// Appends encoded records in one write, synced when `sync`. On failure, makes sure no later
    /// record can land behind a torn one: truncate back to the last good size, or move to a new
    /// segment.
    pub fn log(&mut self, records: &[&[u8]], sync: bool) -> Result<(), TsdbError> {
        let encoded: Vec<u8> = records.concat();
        let encoded = encoded.as_slice();
        if self.file.is_none() {
            // An earlier failure left no usable segment: start a new one (retried every commit).
            self.open_segment(self.segment_index + 1, 0)?;
        } else if self.segment_size > 0 && self.segment_size + encoded.len() as u64 > self.segment_size_max {
            if let Some(file) = self.file.as_mut() {
                // Rolling over makes the finished segment durable (the `segment` sync policy).
                file.sync().map_err(io_error(format!("sync wal segment {}", self.segment_index)))?;
            }
            self.open_segment(self.segment_index + 1, 0)?;
        }
        let path = self.dir.join(segment_name(self.segment_index));
        let result = match self.file.as_mut() {
            Some(file) => file.write_all(encoded).and_then(|()| if sync { file.sync() } else { Ok(()) }),
            None => unreachable!("a wal segment was opened above"),
        };
        match result {
            Ok(()) => {
                self.segment_size += encoded.len() as u64;
                Ok(())
            }
            Err(source) => {
                self.file = None;
                let recovered = self
                    .fs
                    .truncate(&path, self.segment_size)
                    .and_then(|()| self.fs.open_append(&path))
                    .map(|file| self.file = Some(file));
                if recovered.is_err() {
                    // Leave `file` empty: the next commit starts a new segment.
                    tracing::error!(segment_index = self.segment_index, "wal: cannot truncate a failed write away");
                }
                Err(TsdbError::Io { context: format!("write wal segment {}", path.display()), source })
            }
        }
    }
}

/// Encodes a series record into `out`.
pub fn encode_series(series: &[(SeriesRef, &Labels)], out: &mut Vec<u8>) -> Result<(), TsdbError> {
    let mut payload = vec![RECORD_TYPE_SERIES];
    for (series_ref, labels) in series {
        payload.extend_from_slice(&series_ref.0.to_le_bytes());
        payload.extend_from_slice(&(labels.len() as u16).to_le_bytes());
        for label in labels.iter() {
            for text in [&label.name, &label.value] {
                let length = u16::try_from(text.len()).map_err(|_| TsdbError::LabelTooLong { length: text.len() })?;
                payload.extend_from_slice(&length.to_le_bytes());
                payload.extend_from_slice(text.as_bytes());
            }
        }
    }
    frame(out, &payload)
}

/// Encodes a samples record into `out`.
pub fn encode_samples(samples: &[RefSample], out: &mut Vec<u8>) -> Result<(), TsdbError> {
    let mut payload = Vec::with_capacity(1 + samples.len() * SAMPLE_ENTRY_SIZE);
    payload.push(RECORD_TYPE_SAMPLES);
    for sample in samples {
        payload.extend_from_slice(&sample.series_ref.0.to_le_bytes());
        payload.extend_from_slice(&sample.timestamp_ms.to_le_bytes());
        payload.extend_from_slice(&sample.value.to_bits().to_le_bytes());
    }
    frame(out, &payload)
}

fn frame(out: &mut Vec<u8>, payload: &[u8]) -> Result<(), TsdbError> {
    if payload.len() > WAL_RECORD_SIZE_MAX {
        return Err(TsdbError::RecordTooLarge { size: payload.len(), size_max: WAL_RECORD_SIZE_MAX });
    }
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// Why decoding a segment stopped before its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentEnd {
    /// What was wrong.
    pub reason: String,
    /// The last record is merely incomplete (a torn write), not corrupt.
    pub torn: bool,
}

fn torn(reason: String) -> Option<SegmentEnd> {
    Some(SegmentEnd { reason, torn: true })
}

fn corrupt(reason: String) -> Option<SegmentEnd> {
    Some(SegmentEnd { reason, torn: false })
}

/// Decodes records from a segment into `records`; returns the size of the good prefix and, if
/// decoding stopped early, why.
pub fn decode_segment(bytes: &[u8], records: &mut Vec<Record>) -> (usize, Option<SegmentEnd>) {
    let mut offset = 0;
    while offset < bytes.len() {
        let Some(header) = bytes.get(offset..offset + HEADER_SIZE) else {
            return (offset, torn(format!("torn record header: {} bytes left", bytes.len() - offset)));
        };
        let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if length > WAL_RECORD_SIZE_MAX {
            return (offset, corrupt(format!("record length {length} exceeds {WAL_RECORD_SIZE_MAX}")));
        }
        let Some(payload) = bytes.get(offset + HEADER_SIZE..offset + HEADER_SIZE + length) else {
            return (
                offset,
                torn(format!("torn record: length {length}, {} bytes left", bytes.len() - offset - HEADER_SIZE)),
            );
        };
        if crc32c::crc32c(payload) != crc {
            return (offset, corrupt("checksum mismatch".to_string()));
        }
        match decode_payload(payload) {
            Ok(record) => records.push(record),
            Err(reason) => return (offset, corrupt(reason)),
        }
        offset += HEADER_SIZE + length;
    }
    (offset, None)
}

fn decode_payload(payload: &[u8]) -> Result<Record, String> {
    let mut reader = Reader { bytes: payload, offset: 1 };
    match payload.first() {
        Some(&RECORD_TYPE_SERIES) => {
            let mut series = Vec::new();
            while reader.offset < payload.len() {
                let series_ref = SeriesRef(reader.u64()?);
                let label_count = reader.u16()?;
                let mut labels = Vec::with_capacity(usize::from(label_count));
                for _ in 0..label_count {
                    let name = reader.text()?;
                    let value = reader.text()?;
                    labels.push((name, value));
                }
                series.push((series_ref, Labels::from_pairs(labels)));
            }
            Ok(Record::Series(series))
        }
        Some(&RECORD_TYPE_SAMPLES) => {
            if (payload.len() - 1) % SAMPLE_ENTRY_SIZE != 0 {
                return Err(format!("samples record of {} bytes is not whole entries", payload.len()));
            }
            let mut samples = Vec::with_capacity((payload.len() - 1) / SAMPLE_ENTRY_SIZE);
            while reader.offset < payload.len() {
                let series_ref = SeriesRef(reader.u64()?);
                let timestamp_ms = reader.u64()? as i64;
                let value = f64::from_bits(reader.u64()?);
                samples.push(RefSample { series_ref, timestamp_ms, value });
            }
            Ok(Record::Samples(samples))
        }
        Some(other) => Err(format!("unknown record type {other}")),
        None => Err("empty record".to_string()),
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl Reader<'_> {
    fn take(&mut self, size: usize) -> Result<&[u8], String> {
        let slice = self
            .bytes
            .get(self.offset..self.offset + size)
            .ok_or_else(|| format!("record ends inside a field at byte {}", self.offset))?;
        self.offset += size;
        Ok(slice)
    }

    fn u16(&mut self) -> Result<u16, String> {
        let bytes = self.take(2)?;
        Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let bytes = self.take(8)?;
        let mut array = [0_u8; 8];
        array.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(array))
    }

    fn text(&mut self) -> Result<String, String> {
        let length = usize::from(self.u16()?);
        let bytes = self.take(length)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "label is not UTF-8".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_records() -> (Vec<u8>, Vec<Record>) {
        let labels = Labels::from_pairs([("__name__", "up"), ("job", "a")]);
        let mut bytes = Vec::new();
        let sample = |timestamp_ms, value| RefSample { series_ref: SeriesRef(1), timestamp_ms, value };
        encode_series(&[(SeriesRef(1), &labels)], &mut bytes).unwrap();
        encode_samples(&[sample(1000, 1.0), sample(2000, f64::NAN)], &mut bytes).unwrap();
        encode_samples(&[sample(3000, -2.5)], &mut bytes).unwrap();
        let records = vec![
            Record::Series(vec![(SeriesRef(1), labels)]),
            Record::Samples(vec![sample(1000, 1.0), sample(2000, f64::NAN)]),
            Record::Samples(vec![sample(3000, -2.5)]),
        ];
        (bytes, records)
    }

    fn same(a: &[Record], b: &[Record]) -> bool {
        // NaN-aware comparison through the encoded form.
        format!("{a:?}") == format!("{b:?}")
    }

    #[test]
    fn records_round_trip() {
        let (bytes, records) = sample_records();
        let mut decoded = Vec::new();
        assert_eq!(decode_segment(&bytes, &mut decoded), (bytes.len(), None));
        let mut partial = Vec::new();
        let (_, end) = decode_segment(&bytes[..bytes.len() - 3], &mut partial);
        assert!(end.is_some_and(|end| end.torn), "a short final record is torn, not corrupt");
        assert!(same(&decoded, &records));
    }

    #[test]
    fn flipped_byte_stops_at_that_record() {
        let (mut bytes, records) = sample_records();
        let last_record_start = bytes.len() - (HEADER_SIZE + 1 + SAMPLE_ENTRY_SIZE);
        bytes[last_record_start + HEADER_SIZE + 3] ^= 0x40;
        let mut decoded = Vec::new();
        let (good_size, end) = decode_segment(&bytes, &mut decoded);
        assert_eq!(good_size, last_record_start);
        assert_eq!(end, Some(SegmentEnd { reason: "checksum mismatch".to_string(), torn: false }));
        assert!(same(&decoded, &records[..2]));
    }

    proptest! {
        #[test]
        fn truncation_keeps_exactly_the_whole_records_before_it(cut in 0_usize..200) {
            let (bytes, records) = sample_records();
            let cut = cut.min(bytes.len());
            let mut decoded = Vec::new();
            let (good_size, _) = decode_segment(&bytes[..cut], &mut decoded);
            let mut boundaries = vec![0];
            let mut whole = Vec::new();
            decode_segment(&bytes, &mut whole);
            let mut offset = 0;
            for _ in &whole {
                let length = u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
                offset += HEADER_SIZE + length;
                boundaries.push(offset);
            }
            let expected_count = boundaries.iter().filter(|&&boundary| boundary <= cut).count() - 1;
            prop_assert_eq!(decoded.len(), expected_count);
            prop_assert_eq!(good_size, boundaries[expected_count]);
            prop_assert!(same(&decoded, &records[..expected_count]));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut decoded = Vec::new();
            let (good_size, _) = decode_segment(&bytes, &mut decoded);
            prop_assert!(good_size <= bytes.len());
        }
    }
}
