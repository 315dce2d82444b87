//! Follows the WAL as the writer appends to it (Prometheus storage/remote `WALWatcher`): the
//! remote write sender reads committed samples back from disk, so an outage of the receiver or a
//! restart of the engine loses nothing the WAL still holds.
//!
//! A position is (segment, byte offset just past the last record read). Reading resumes at the
//! page holding that offset (records are framed in 32 KiB pages) and takes whole records only:
//! - a torn record at the end of the newest segment is a write in progress, read again later;
//! - a torn record at the end of a closed segment, or a damaged range anywhere, is skipped and
//!   counted (replay repaired what was there at start; anything found now is new damage);
//! - a segment is closed once a newer one exists; the listing is taken before the read, so a
//!   closed segment's bytes are final when they are read.
//!
//! Series: every series record read is kept as the labels the sender will send (the queue's
//! transform: external labels and `write_relabel_configs`; `None` for a dropped series), keyed
//! by WAL reference. When a checkpoint appears, the map is rebuilt from the checkpoint's series
//! plus those read from later segments, so series the head dropped are dropped here too. If the
//! segments at the position were truncated away before they were read, reading continues at the
//! oldest remaining segment and the skip is counted (`segments_skipped_total`).
//!
//! Memory: one read of at most [`REMOTE_WRITE_WAL_READ_SIZE_BYTES`] (doubled while a single
//! record does not fit), the series map, and the samples the caller asked for (at most its
//! budget plus one record). Concurrency: owned by one queue task; it only reads files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::io::FileSystem;
use crate::limits::REMOTE_WRITE_WAL_READ_SIZE_BYTES;
use crate::model::Labels;
use crate::tsdb::wal::checkpoint::{checkpoint_name, parse_checkpoint_name};
use crate::tsdb::wal::compression::decompress;
use crate::tsdb::wal::page::{scan_segment, ScanItem, PAGE_SIZE};
use crate::tsdb::wal::record::{decode_record, Record, RecordError, RefSample};
use crate::tsdb::wal::segment_name;

/// Where the follower is: the next record to read starts at or after `offset` in `segment`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct WalPosition {
    /// Segment index.
    pub segment: u32,
    /// Byte offset just past the last record read.
    pub offset: u64,
}

impl WalPosition {
    /// `segment offset`, the progress marker's text.
    pub fn encode(&self) -> String {
        format!("{} {}\n", self.segment, self.offset)
    }

    /// Parses [`WalPosition::encode`]'s text.
    pub fn decode(text: &str) -> Option<WalPosition> {
        let mut fields = text.split_whitespace();
        let segment = fields.next()?.parse().ok()?;
        let offset = fields.next()?.parse().ok()?;
        fields.next().is_none().then_some(WalPosition { segment, offset })
    }
}

/// Where the WAL's written end is now: the newest segment and its size (no segment yet: the
/// start of segment 0). A follower started there reads only what is written later.
pub fn wal_end(fs: &dyn FileSystem, dir: &Path) -> std::io::Result<WalPosition> {
    let names = match fs.list_dir(dir) {
        Ok(names) => names,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(error),
    };
    let newest = names
        .iter()
        .filter(|name| name.bytes().all(|byte| byte.is_ascii_digit()))
        .filter_map(|name| name.parse::<u32>().ok())
        .max();
    match newest {
        Some(segment) => Ok(WalPosition { segment, offset: fs.file_size(&dir.join(segment_name(segment)))? }),
        None => Ok(WalPosition::default()),
    }
}

/// Turns a series' WAL labels into what is sent; `None` drops the series.
pub type SeriesTransform<T> = Box<dyn Fn(&Labels) -> Option<T> + Send + Sync>;

/// Counters of what the follower met.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FollowerStats {
    /// Records decoded.
    pub records_read_total: u64,
    /// Damaged ranges and undecodable records skipped.
    pub corruptions_total: u64,
    /// Segments truncated away (or missing) before they were read.
    pub segments_skipped_total: u64,
    /// Samples whose series record was never seen.
    pub unknown_series_samples_total: u64,
}

struct SeriesEntry<T> {
    /// What the transform made of the labels.
    outgoing: Option<Arc<T>>,
    /// The segment (or checkpoint number) the series record was read from.
    segment: u32,
}

/// What one look at a directory found.
struct Listing {
    segments: Vec<u32>,
    checkpoint: Option<u32>,
}

/// The result of reading one segment from an offset.
struct SegmentRead {
    /// Offset just past the last record taken (or the damage skipped).
    next_offset: u64,
    /// Every complete record up to the file's end was read.
    at_end: bool,
    /// The file ends inside a record.
    torn_tail: bool,
    /// The next record starts at or after the stop position.
    stopped: bool,
}

/// Reads the WAL of one database from a position on.
pub struct WalFollower<T> {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    position: WalPosition,
    checkpoint_seen: Option<u32>,
    series: HashMap<u64, SeriesEntry<T>>,
    transform: SeriesTransform<T>,
    decompressed: Vec<u8>,
    stats: FollowerStats,
    /// Set during [`WalFollower::read_to`]: no record starting at or after it is taken.
    stop: Option<WalPosition>,
}

impl<T> WalFollower<T> {
    /// Opens a follower on the WAL in `dir`, starting at `start` (a saved progress marker) or,
    /// with none, at the end of what is written now. Series records before the start (in the
    /// newest checkpoint and the segments after it) are read first, so every sample after the
    /// start finds its series.
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        start: Option<WalPosition>,
        transform: SeriesTransform<T>,
    ) -> std::io::Result<WalFollower<T>> {
        let mut follower = WalFollower {
            fs,
            dir: dir.to_path_buf(),
            position: WalPosition::default(),
            checkpoint_seen: None,
            series: HashMap::new(),
            transform,
            decompressed: Vec::new(),
            stats: FollowerStats::default(),
            stop: None,
        };
        let listing = follower.list()?;
        if let Some(checkpoint) = listing.checkpoint {
            follower.load_checkpoint(checkpoint)?;
        }
        let first_after_checkpoint = listing.checkpoint.map_or(0, |checkpoint| checkpoint.saturating_add(1));
        let mut end =
            WalPosition { segment: listing.segments.last().copied().unwrap_or(first_after_checkpoint), offset: 0 };
        // Series up to the start (or the end, without one); reading a series record twice is
        // harmless, so the start's own segment is read whole.
        let last_to_scan = start.map_or(u32::MAX, |start| start.segment);
        for &segment in listing.segments.iter().filter(|&&segment| segment >= first_after_checkpoint) {
            if segment > last_to_scan {
                break;
            }
            let read = follower.read_segment(segment, 0, usize::MAX, None)?;
            end = WalPosition { segment, offset: read.next_offset };
        }
        follower.position = match start {
            Some(start) => start,
            None => end,
        };
        Ok(follower)
    }

    /// The position after the last record read.
    pub fn position(&self) -> WalPosition {
        self.position
    }

    /// What the follower met so far.
    pub fn stats(&self) -> FollowerStats {
        self.stats
    }

    /// Series known now.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// What the transform made of the series `series_ref`: `None` when the series is unknown,
    /// `Some(None)` when it is dropped.
    pub fn outgoing(&self, series_ref: u64) -> Option<Option<&Arc<T>>> {
        self.series.get(&series_ref).map(|entry| entry.outgoing.as_ref())
    }

    /// Reads every sample of the records that start before `end` (a position an earlier
    /// follower reached), so a round interrupted by a crash is read again exactly; stops early
    /// at the WAL's written end. Returns whether that end was reached.
    pub fn read_to(&mut self, end: WalPosition, out: &mut Vec<RefSample>) -> std::io::Result<bool> {
        self.stop = Some(end);
        let result = self.read(usize::MAX, out);
        self.stop = None;
        result
    }

    /// Reads samples into `out` until it holds at least `sample_budget` more (whole records
    /// only) or the WAL's written end is reached; returns whether the end was reached.
    pub fn read(&mut self, sample_budget: usize, out: &mut Vec<RefSample>) -> std::io::Result<bool> {
        let target_len = out.len().saturating_add(sample_budget);
        loop {
            if self.stop.is_some_and(|stop| self.position >= stop) {
                return Ok(false);
            }
            let listing = self.list()?;
            if let Some(checkpoint) = listing.checkpoint {
                if self.checkpoint_seen.is_none_or(|seen| checkpoint > seen) {
                    self.load_checkpoint(checkpoint)?;
                }
            }
            let Some(&newest) = listing.segments.last() else { return Ok(true) };
            let current = self.position.segment;
            if !listing.segments.contains(&current) {
                match listing.segments.iter().copied().find(|&segment| segment > current) {
                    Some(next) => {
                        let skipped = u64::from(next - current);
                        self.stats.segments_skipped_total += skipped;
                        tracing::warn!(
                            from = current,
                            to = next,
                            "remote write: wal segments were truncated before they were read; their samples are not sent"
                        );
                        self.position = WalPosition { segment: next, offset: 0 };
                        continue;
                    }
                    None => return Ok(true), // Not written yet.
                }
            }
            let closed = current < newest;
            let read = match self.read_segment(current, self.position.offset, target_len, Some(out)) {
                Ok(read) if read.stopped => {
                    self.position = WalPosition { segment: current, offset: read.next_offset };
                    return Ok(false);
                }
                Ok(read) => read,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue, // Truncated meanwhile.
                Err(error) => return Err(error),
            };
            self.position.offset = read.next_offset;
            if out.len() >= target_len {
                return Ok(false);
            }
            if read.at_end {
                if !closed {
                    return Ok(true);
                }
                if read.torn_tail {
                    self.stats.corruptions_total += 1;
                    tracing::warn!(segment = current, "remote write: closed wal segment ends inside a record");
                }
                self.position = WalPosition { segment: current + 1, offset: 0 };
            }
        }
    }

    fn list(&self) -> std::io::Result<Listing> {
        let names = match self.fs.list_dir(&self.dir) {
            Ok(names) => names,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(error) => return Err(error),
        };
        let mut segments: Vec<u32> = names
            .iter()
            .filter(|name| !name.is_empty() && name.bytes().all(|byte| byte.is_ascii_digit()))
            .filter_map(|name| name.parse().ok())
            .collect();
        segments.sort_unstable();
        let checkpoint = names.iter().filter_map(|name| parse_checkpoint_name(name)).max();
        Ok(Listing { segments, checkpoint })
    }

    /// Rebuilds the series map from checkpoint `index` and the series read from later segments.
    fn load_checkpoint(&mut self, index: u32) -> std::io::Result<()> {
        let previous = std::mem::take(&mut self.series);
        let dir = self.dir.join(checkpoint_name(index));
        let mut segments: Vec<u32> = match self.fs.list_dir(&dir) {
            Ok(names) => names.iter().filter_map(|name| name.parse().ok()).collect(),
            // Deleted by a newer checkpoint meanwhile: the next look finds that one.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(error) => return Err(error),
        };
        segments.sort_unstable();
        for segment in segments {
            let bytes = match self.fs.read(&dir.join(segment_name(segment))) {
                Ok(bytes) => bytes,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
            };
            self.take_records(&bytes, 0, 0, index, usize::MAX, None);
        }
        for (series_ref, entry) in previous {
            if entry.segment > index {
                self.series.entry(series_ref).or_insert(entry);
            }
        }
        self.checkpoint_seen = Some(index);
        Ok(())
    }

    /// Reads segment `segment` from `from` on: series records always, samples into `out` (when
    /// given) until it holds `target_len`.
    fn read_segment(
        &mut self,
        segment: u32,
        from: u64,
        target_len: usize,
        mut out: Option<&mut Vec<RefSample>>,
    ) -> std::io::Result<SegmentRead> {
        let path = self.dir.join(segment_name(segment));
        let size = self.fs.file_size(&path)?;
        let page_start = from / PAGE_SIZE as u64 * PAGE_SIZE as u64;
        let mut read_size = REMOTE_WRITE_WAL_READ_SIZE_BYTES;
        loop {
            let available = size.saturating_sub(page_start);
            if available == 0 || from >= size {
                return Ok(SegmentRead { next_offset: from, at_end: true, torn_tail: false, stopped: false });
            }
            let length = available.min(read_size);
            let reached_eof = length == available;
            let mut bytes = vec![0; length as usize];
            self.fs.read_at(&path, page_start, &mut bytes)?;
            let taken = self.take_records(&bytes, page_start, from, segment, target_len, out.as_deref_mut());
            if taken.needs_more && !reached_eof {
                if taken.stopped {
                    return Ok(SegmentRead {
                        next_offset: taken.next_offset,
                        at_end: false,
                        torn_tail: false,
                        stopped: true,
                    });
                }
                if taken.next_offset == from {
                    // One record larger than the read: read more at once.
                    read_size = read_size.saturating_mul(2);
                    continue;
                }
                return Ok(SegmentRead {
                    next_offset: taken.next_offset,
                    at_end: false,
                    torn_tail: false,
                    stopped: false,
                });
            }
            return Ok(SegmentRead {
                next_offset: taken.next_offset,
                at_end: reached_eof && !taken.budget_reached && !taken.stopped,
                torn_tail: reached_eof && taken.needs_more,
                stopped: taken.stopped,
            });
        }
    }

    /// Takes the records of `bytes` (which start at `base` in segment `segment`) that start at
    /// or after `from`.
    fn take_records(
        &mut self,
        bytes: &[u8],
        base: u64,
        from: u64,
        segment: u32,
        target_len: usize,
        mut out: Option<&mut Vec<RefSample>>,
    ) -> Taken {
        let mut taken = Taken { next_offset: from, needs_more: false, budget_reached: false, stopped: false };
        let stop_offset = self.stop.filter(|stop| stop.segment == segment).map(|stop| stop.offset);
        for item in scan_segment(bytes) {
            match item {
                ScanItem::Record(record) => {
                    if base + record.offset < from {
                        continue;
                    }
                    if stop_offset.is_some_and(|stop| base + record.offset >= stop) {
                        taken.stopped = true;
                        return taken;
                    }
                    taken.next_offset = base + record.end;
                    self.take_record(record.flags, &record.stored, segment, out.as_deref_mut());
                    if out.as_ref().is_some_and(|out| out.len() >= target_len) {
                        taken.budget_reached = true;
                        return taken;
                    }
                }
                ScanItem::Loss(loss) => {
                    let loss_end = base + loss.offset + loss.size;
                    if loss_end <= from {
                        continue;
                    }
                    if loss.torn {
                        // A write in progress, or a record cut by the end of this read.
                        taken.needs_more = true;
                        return taken;
                    }
                    self.stats.corruptions_total += 1;
                    tracing::warn!(segment, offset = base + loss.offset, reason = %loss.reason, "remote write: damaged wal range skipped");
                    taken.next_offset = loss_end;
                }
            }
        }
        taken
    }

    fn take_record(&mut self, flags: u8, stored: &[u8], segment: u32, out: Option<&mut Vec<RefSample>>) {
        if decompress(flags, stored, &mut self.decompressed).is_err() {
            self.stats.corruptions_total += 1;
            return;
        }
        self.stats.records_read_total += 1;
        match decode_record(&self.decompressed) {
            Ok(Record::Series(series)) => {
                for (series_ref, labels) in series {
                    let outgoing = (self.transform)(&labels).map(Arc::new);
                    self.series.insert(series_ref.0, SeriesEntry { outgoing, segment });
                }
            }
            Ok(Record::Samples(samples)) => {
                if let Some(out) = out {
                    for sample in samples {
                        if self.series.contains_key(&sample.series_ref.0) {
                            out.push(sample);
                        } else {
                            self.stats.unknown_series_samples_total += 1;
                        }
                    }
                }
            }
            Ok(Record::Tombstones(_)) | Err(RecordError::UnknownType { .. }) => {}
            Err(_) => self.stats.corruptions_total += 1,
        }
    }
}

struct Taken {
    next_offset: u64,
    /// The bytes end inside a record.
    needs_more: bool,
    /// `out` reached its target.
    budget_reached: bool,
    /// A record at or after the stop position was met.
    stopped: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::MemFileSystem;
    use crate::model::SeriesRef;
    use crate::tsdb::wal::checkpoint::checkpoint;
    use crate::tsdb::wal::{encode_samples, encode_series, Compression, Wal, WalOptions};

    const DIR: &str = "/data/wal";
    /// Small segments, so a few thousand samples span several.
    const OPTIONS: WalOptions = WalOptions { segment_size_max: PAGE_SIZE as u64, compression: Compression::None };
    const SAMPLES_PER_RECORD: i64 = 10;

    fn open_wal(fs: &Arc<MemFileSystem>) -> Wal {
        Wal::open(fs.clone(), Path::new(DIR), OPTIONS, &mut |_| {}).unwrap().0
    }

    fn log_series(wal: &mut Wal, refs: &[u64]) {
        let labels: Vec<Labels> =
            refs.iter().map(|id| Labels::from_pairs([("__name__", "m".to_string()), ("id", id.to_string())])).collect();
        let series: Vec<(SeriesRef, &Labels)> =
            refs.iter().zip(&labels).map(|(id, labels)| (SeriesRef(*id), labels)).collect();
        let mut record = Vec::new();
        encode_series(&series, &mut record);
        wal.log(&[&record], false).unwrap();
    }

    /// Sample `t` belongs to series `t % refs + 1`; records of [`SAMPLES_PER_RECORD`].
    fn log_samples(wal: &mut Wal, times: std::ops::Range<i64>, refs: u64) {
        let mut start = times.start;
        while start < times.end {
            let end = (start + SAMPLES_PER_RECORD).min(times.end);
            let samples: Vec<RefSample> = (start..end)
                .map(|t| RefSample {
                    series_ref: SeriesRef(t as u64 % refs + 1),
                    timestamp_ms: t,
                    value: (t * 7919 % 1000) as f64,
                })
                .collect();
            let mut record = Vec::new();
            encode_samples(&samples, &mut record);
            wal.log(&[&record], false).unwrap();
            start = end;
        }
    }

    /// Series id 2 is dropped by the transform; the others are sent as their `id` label.
    fn follower(fs: &Arc<MemFileSystem>, start: Option<WalPosition>) -> WalFollower<String> {
        let transform: SeriesTransform<String> = Box::new(|labels: &Labels| {
            let id = labels.get("id").unwrap_or_default().to_string();
            (id != "2").then_some(id)
        });
        WalFollower::open(fs.clone(), Path::new(DIR), start, transform).unwrap()
    }

    /// Reads in `budget`s until caught up; every read that is not the last yields at least its
    /// budget. Returns the timestamps read.
    fn drain(follower: &mut WalFollower<String>, budget: usize) -> Vec<i64> {
        let mut read = Vec::new();
        loop {
            let mut out = Vec::new();
            let caught_up = follower.read(budget, &mut out).unwrap();
            if !caught_up {
                assert!(out.len() >= budget, "a read short of its budget must be caught up");
            }
            for sample in &out {
                assert!(follower.outgoing(sample.series_ref.0).is_some(), "sample of an unknown series returned");
            }
            read.extend(out.iter().map(|sample| sample.timestamp_ms));
            if caught_up {
                return read;
            }
        }
    }

    fn segment_count(fs: &MemFileSystem) -> usize {
        crate::tsdb::wal::checkpoint::list_segments(fs, Path::new(DIR)).unwrap().len()
    }

    #[test]
    fn follows_appends_across_segments_in_budgets_from_the_end_at_open() {
        let fs = Arc::new(MemFileSystem::default());
        let mut wal = open_wal(&fs);
        log_series(&mut wal, &[1, 2, 3]);
        log_samples(&mut wal, 0..100, 3);
        let mut follower = follower(&fs, None);
        assert_eq!(drain(&mut follower, 7), Vec::<i64>::new(), "opened without a marker: starts at the end");
        assert_eq!(follower.outgoing(1).map(|outgoing| outgoing.map(|id| id.as_str())), Some(Some("1")));
        assert_eq!(follower.outgoing(2), Some(None), "dropped by the transform");
        assert_eq!(follower.outgoing(9), None);
        log_samples(&mut wal, 100..8000, 3);
        assert!(segment_count(&fs) >= 3, "the log must span segments");
        assert_eq!(drain(&mut follower, 7), (100..8000).collect::<Vec<_>>());
        assert_eq!(follower.stats().corruptions_total, 0);
        assert_eq!(follower.stats().segments_skipped_total, 0);
        log_series(&mut wal, &[4]);
        log_samples(&mut wal, 4000..4010, 4);
        assert_eq!(drain(&mut follower, 1000), (4000..4010).collect::<Vec<_>>(), "a new series is followed");
        assert_eq!(follower.series_count(), 4);
    }

    #[test]
    fn resumes_at_a_saved_position_without_loss_or_repeats() {
        let fs = Arc::new(MemFileSystem::default());
        let mut wal = open_wal(&fs);
        log_series(&mut wal, &[1, 2, 3]);
        let mut first = follower(&fs, None);
        let origin = first.position();
        log_samples(&mut wal, 0..2000, 3);
        log_series(&mut wal, &[4]);
        log_samples(&mut wal, 2000..4000, 4);
        let mut out = Vec::new();
        assert!(!first.read(1500, &mut out).unwrap());
        let mut read: Vec<i64> = out.iter().map(|sample| sample.timestamp_ms).collect();
        let marker = first.position().encode();
        drop(first);
        let position = WalPosition::decode(&marker).unwrap();
        assert_eq!(position, WalPosition::decode(&position.encode()).unwrap());
        assert_eq!(WalPosition::decode("1 2 3"), None);
        assert_eq!(WalPosition::decode("x 2"), None);
        // A round interrupted by a crash is read again exactly: the same records, no more.
        let mut again = follower(&fs, Some(origin));
        let round_start = again.position();
        let mut round = Vec::new();
        assert!(!again.read(500, &mut round).unwrap());
        let round_end = again.position();
        let mut replayed = follower(&fs, Some(round_start));
        let mut out_again = Vec::new();
        assert!(!replayed.read_to(round_end, &mut out_again).unwrap());
        assert_eq!(out_again, round);
        assert_eq!(replayed.position(), round_end);
        let mut second = follower(&fs, Some(position));
        read.extend(drain(&mut second, 333));
        assert_eq!(read, (0..4000).collect::<Vec<_>>());
        assert_eq!(second.stats().unknown_series_samples_total, 0, "series before and after the marker are known");
    }

    #[test]
    fn a_checkpoint_keeps_the_series_and_truncated_segments_are_counted() {
        let fs = Arc::new(MemFileSystem::default());
        let mut wal = open_wal(&fs);
        log_series(&mut wal, &[1, 2, 3]);
        let mut follower = follower(&fs, None);
        log_samples(&mut wal, 0..12000, 3);
        let segments = segment_count(&fs);
        assert!(segments >= 5, "{segments} segments");
        let newest = wal.roll_segment().unwrap();
        let stats = checkpoint(fs.clone(), Path::new(DIR), 2, &|_| true, 0, WalOptions::default()).unwrap();
        assert!(stats.is_some(), "segments 0..=2 condensed");
        let read = drain(&mut follower, 500);
        assert_eq!(follower.stats().segments_skipped_total, 3, "segments 0, 1, 2 went before they were read");
        assert_eq!(follower.stats().unknown_series_samples_total, 0, "the checkpoint's series are known");
        assert!(!read.is_empty());
        let first = read[0];
        assert_eq!(read, (first..12000).collect::<Vec<_>>(), "everything after the truncated segments");
        log_samples(&mut wal, 12000..12010, 3);
        assert_eq!(drain(&mut follower, 500), (12000..12010).collect::<Vec<_>>());
        assert_eq!(follower.position().segment, newest);
    }

    #[test]
    fn damage_in_a_closed_segment_is_skipped_and_a_torn_tail_waits() {
        let fs = Arc::new(MemFileSystem::default());
        let mut wal = open_wal(&fs);
        log_series(&mut wal, &[1, 2, 3]);
        let mut follower = follower(&fs, None);
        log_samples(&mut wal, 0..4000, 3);
        let damaged = Path::new(DIR).join(segment_name(0));
        fs.mutate(&damaged, |bytes| {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x55;
        });
        let read = drain(&mut follower, 100);
        assert!(follower.stats().corruptions_total >= 1);
        assert!(read.len() < 4000 && read.len() >= 3000, "one damaged range costs a few records: {}", read.len());
        assert!(read.windows(2).all(|pair| pair[0] < pair[1]), "nothing repeated or reordered");
        assert_eq!(read.last(), Some(&3999), "reading went on past the damage");

        // A write in progress: the newest segment ends inside its last record.
        log_samples(&mut wal, 4000..4010, 3);
        let newest = Path::new(DIR).join(segment_name(wal.segment_index()));
        let mut cut = Vec::new();
        fs.mutate(&newest, |bytes| cut = bytes.split_off(bytes.len() - 5));
        let corruptions = follower.stats().corruptions_total;
        assert_eq!(drain(&mut follower, 100), Vec::<i64>::new());
        assert_eq!(follower.stats().corruptions_total, corruptions, "a torn tail of the newest segment is not damage");
        fs.mutate(&newest, |bytes| bytes.extend_from_slice(&cut));
        assert_eq!(drain(&mut follower, 100), (4000..4010).collect::<Vec<_>>());
    }
}
