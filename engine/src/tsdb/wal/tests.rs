//! WAL tests over the in-memory filesystem: a corruption table over a log of many records across
//! pages and segments (which records survive, by identity, and what the reports say), failed
//! writes, rollover, frozen segments (this engine's and one Prometheus 2.42 wrote), and a replay
//! speed measurement.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;

use super::page::{scan_segment, ScanItem, FRAGMENT_HEADER_SIZE, PAGE_SIZE};
use super::*;
use crate::io::MemFileSystem;
use crate::model::{Labels, SeriesRef};

const DIR: &str = "/data/wal";
const SEGMENT_SIZE: u64 = 4 * PAGE_SIZE as u64;
const RECORD_COUNT: u64 = 400;

fn segment_path(index: u32) -> PathBuf {
    Path::new(DIR).join(segment_name(index))
}

fn options(compression: Compression) -> WalOptions {
    WalOptions { segment_size_max: SEGMENT_SIZE, compression }
}

/// Record `id`: a series record whose reference is its identity, 30 B to 6 KiB long, half
/// pseudo-random and half repetitive so that every codec compresses it somewhat.
fn test_record(id: u64) -> Vec<u8> {
    let size = ((id * 2_654_435_761) % 6000) as usize + 30;
    let mut state = id.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut pad = String::with_capacity(size);
    while pad.len() < size {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        pad.push(char::from(b'a' + (state >> 59) as u8));
        pad.push_str("xyxy");
    }
    let labels = Labels::from_pairs([("__name__", "r".to_string()), ("id", id.to_string()), ("pad", pad)]);
    let mut out = Vec::new();
    encode_series(&[(SeriesRef(id), &labels)], &mut out);
    out
}

fn id_of(record: &Record) -> u64 {
    match record {
        Record::Series(series) if series.len() == 1 => series[0].0 .0,
        other => panic!("unexpected record {other:?}"),
    }
}

struct Opened {
    ids: Vec<u64>,
    corruptions: Vec<CorruptionReport>,
    report: ReplayReport,
    wal: Wal,
}

fn open(fs: &MemFileSystem, compression: Compression) -> Opened {
    let mut ids = Vec::new();
    let mut corruptions = Vec::new();
    let mut visit = |item: ReplayItem| match item {
        ReplayItem::Record(record) => ids.push(id_of(&record)),
        ReplayItem::Corruption(corruption) => corruptions.push(corruption),
    };
    let (wal, report) = Wal::open(Arc::new(fs.clone()), Path::new(DIR), options(compression), &mut visit).unwrap();
    assert_eq!(report.corruptions, corruptions, "the report lists what the visitor saw");
    assert_eq!(report.record_count, ids.len() as u64);
    Opened { ids, corruptions, report, wal }
}

/// Where a record lies: segment, first byte, end.
#[derive(Clone, Copy, Debug)]
struct Placement {
    id: u64,
    segment_index: u32,
    offset: u64,
    end: u64,
}

/// Writes the fixture: records 0..RECORD_COUNT, some one per call and some in pairs, across
/// several segments; returns where each landed.
fn fixture(compression: Compression) -> (MemFileSystem, Vec<Placement>) {
    let fs = MemFileSystem::default();
    let mut wal = open(&fs, compression).wal;
    let mut id = 0;
    while id < RECORD_COUNT {
        let (first, second) = (test_record(id), test_record(id + 1));
        if id % 3 == 0 && id + 1 < RECORD_COUNT {
            wal.log(&[&first, &second], true).unwrap();
            id += 2;
        } else {
            wal.log(&[&first], id % 2 == 0).unwrap();
            id += 1;
        }
    }
    wal.sync().unwrap();
    assert!(wal.segment_index() >= 3, "the fixture must span several segments");
    let mut placements = Vec::new();
    for segment_index in 0..=wal.segment_index() {
        let bytes = fs.read(&segment_path(segment_index)).unwrap();
        let records = decode_segment(segment_index, &bytes).unwrap();
        let scanned = scan_segment(&bytes);
        assert_eq!(records.len(), scanned.len());
        for (record, item) in records.iter().zip(&scanned) {
            let ScanItem::Record(scanned) = item else { panic!("a fresh segment has no loss") };
            placements.push(Placement { id: id_of(record), segment_index, offset: scanned.offset, end: scanned.end });
        }
    }
    assert_eq!(placements.iter().map(|p| p.id).collect::<Vec<_>>(), (0..RECORD_COUNT).collect::<Vec<_>>());
    (fs, placements)
}

/// A record spanning pages (first fragment in the middle of a page) in `segment_index`.
fn spanning(placements: &[Placement], segment_index: u32) -> Placement {
    *placements
        .iter()
        .find(|p| {
            p.segment_index == segment_index
                && p.offset / PAGE_SIZE as u64 != (p.end - 1) / PAGE_SIZE as u64
                && p.offset % PAGE_SIZE as u64 != 0
        })
        .expect("a record across a page boundary")
}

/// A single-fragment record in the middle of a page of `segment_index`, followed by another
/// record of the same segment.
fn inner(placements: &[Placement], segment_index: u32) -> Placement {
    let page = PAGE_SIZE as u64;
    placements
        .windows(2)
        .map(|pair| (pair[0], pair[1]))
        .find(|(p, next)| {
            p.segment_index == segment_index
                && next.segment_index == segment_index
                && p.offset / page == (p.end - 1) / page
                && p.offset % page != 0
                && (7_000..page - 100).contains(&(p.end % page))
        })
        .expect("a record inside a page")
        .0
}

fn page_end(offset: u64) -> u64 {
    (offset / PAGE_SIZE as u64 + 1) * PAGE_SIZE as u64
}

/// Ids of the records in `segment_index` that have a byte in `from..to`.
fn intersecting(placements: &[Placement], segment_index: u32, from: u64, to: u64) -> BTreeSet<u64> {
    placements
        .iter()
        .filter(|p| p.segment_index == segment_index && p.offset < to && p.end > from)
        .map(|p| p.id)
        .collect()
}

/// What a row expects to lose.
struct Expected {
    lost: BTreeSet<u64>,
    /// (segment index, offset) of each report, in order.
    reports: Vec<(u32, u64)>,
    /// A word the first report's reason contains.
    reason: &'static str,
}

#[track_caller]
fn check(compression: Compression, corrupt: impl Fn(&MemFileSystem, &[Placement]) -> Expected) {
    let (fs, placements) = fixture(compression);
    let expected = corrupt(&fs, &placements);
    let opened = open(&fs, compression);
    let want: Vec<u64> = (0..RECORD_COUNT).filter(|id| !expected.lost.contains(id)).collect();
    assert_eq!(opened.ids, want, "{compression:?}: survivors ({} lost)", expected.lost.len());
    let where_: Vec<(u32, u64)> = opened.corruptions.iter().map(|c| (c.segment_index, c.offset)).collect();
    assert_eq!(where_, expected.reports, "{compression:?}: reports {:?}", opened.corruptions);
    assert!(
        opened.corruptions[0].reason.contains(expected.reason),
        "{compression:?}: reason {:?} lacks {:?}",
        opened.corruptions[0].reason,
        expected.reason
    );
    for corruption in &opened.corruptions {
        let whole_segment = corruption.reason.contains("missing");
        assert_eq!(corruption.fragments_lost_count == 0, whole_segment, "{compression:?}: {corruption:?}");
        assert_eq!(corruption.size == 0, whole_segment, "{compression:?}: {corruption:?}");
    }
    let dropped: u64 = opened.corruptions.iter().map(|c| c.size).sum();
    assert_eq!(opened.report.bytes_dropped, dropped);
    // The directory is clean now: every segment decodes strictly, numbering has no gap, and a
    // second open reports nothing and yields the same records.
    let next_index = opened.wal.segment_index();
    drop(opened);
    for index in 0..next_index {
        let bytes = fs.read(&segment_path(index)).unwrap();
        decode_segment(index, &bytes).unwrap();
    }
    let again = open(&fs, compression);
    assert_eq!(again.ids, want, "{compression:?}: second open");
    assert_eq!(again.corruptions, vec![], "{compression:?}: second open");
    assert_eq!(again.wal.segment_index(), next_index + 1);
}

fn flip(fs: &MemFileSystem, segment_index: u32, offset: u64, mask: u8) {
    fs.mutate(&segment_path(segment_index), |data| data[offset as usize] ^= mask);
}

fn only(placement: Placement, reason: &'static str) -> Expected {
    Expected {
        lost: BTreeSet::from([placement.id]),
        reports: vec![(placement.segment_index, placement.offset)],
        reason,
    }
}

const COMPRESSIONS: [Compression; 4] = [Compression::None, Compression::Snappy, Compression::Zstd, Compression::Lz4];

#[test]
fn corruption_table() {
    for compression in COMPRESSIONS {
        // Torn last record: the log ends inside the last record, which spans pages.
        check(compression, |fs, placements| {
            let last = *placements.last().unwrap();
            let cut = last.end - 3;
            fs.mutate(&segment_path(last.segment_index), |data| data.truncate(cut as usize));
            only(last, "torn")
        });
        // Torn header: the log ends 3 bytes into a new fragment header.
        check(compression, |fs, placements| {
            let last = *placements.last().unwrap();
            let size = fs.read(&segment_path(last.segment_index)).unwrap().len() as u64;
            fs.mutate(&segment_path(last.segment_index), |data| data.extend_from_slice(&[1, 0, 9]));
            Expected { lost: BTreeSet::new(), reports: vec![(last.segment_index, size)], reason: "torn" }
        });
        // Bad fragment header: a length running past the page; the rest of the page is lost.
        check(compression, |fs, placements| {
            let victim = inner(placements, 1);
            fs.mutate(&segment_path(1), |data| data[victim.offset as usize + 1] = 0xff);
            let lost = intersecting(placements, 1, victim.offset, page_end(victim.offset));
            Expected { lost, reports: vec![(1, victim.offset)], reason: "crosses the page boundary" }
        });
        // Bad fragment sequence: a first fragment relabelled as middle; its record alone is lost.
        check(compression, |fs, placements| {
            let victim = spanning(placements, 1);
            fs.mutate(&segment_path(1), |data| data[victim.offset as usize] += 1);
            only(victim, "without a first")
        });
        // Bad fragment sequence: a full fragment relabelled as first; the next record interrupts it.
        check(compression, |fs, placements| {
            let victim = inner(placements, 2);
            fs.mutate(&segment_path(2), |data| data[victim.offset as usize] += 1);
            only(victim, "interrupted")
        });
        // Invalid type (kind 5); the checksum still holds, so only its record is lost.
        check(compression, |fs, placements| {
            let victim = inner(placements, 1);
            fs.mutate(&segment_path(1), |data| data[victim.offset as usize] = (data[victim.offset as usize] & !7) | 5);
            only(victim, "invalid fragment type")
        });
        // Bad checksum: a flipped data byte; the scan resumes at the fragment's declared end.
        check(compression, |fs, placements| {
            let victim = inner(placements, 2);
            flip(fs, 2, victim.offset + FRAGMENT_HEADER_SIZE as u64 + 5, 0x10);
            only(victim, "checksum")
        });
        // Bad checksum in the first fragment of a record spanning pages: the later fragments
        // are orphans of the same loss.
        check(compression, |fs, placements| {
            let victim = spanning(placements, 0);
            flip(fs, 0, victim.offset + FRAGMENT_HEADER_SIZE as u64, 0x01);
            only(victim, "checksum")
        });
        // Bad length: shorter than the data; the declared end is mid-data, so the page is lost.
        check(compression, |fs, placements| {
            let victim = inner(placements, 1);
            fs.mutate(&segment_path(1), |data| data[victim.offset as usize + 2] ^= 0x04);
            let lost = intersecting(placements, 1, victim.offset, page_end(victim.offset));
            Expected { lost, reports: vec![(1, victim.offset)], reason: "checksum" }
        });
        // Zeroed range across a fragment boundary in the middle of a page.
        check(compression, |fs, placements| {
            let victim = inner(placements, 2);
            let (from, to) = (victim.end - 20, victim.end + 20);
            fs.mutate(&segment_path(2), |data| data[from as usize..to as usize].fill(0));
            let lost = intersecting(placements, 2, victim.offset, page_end(victim.offset));
            Expected { lost, reports: vec![(2, victim.offset)], reason: "checksum" }
        });
        // A zeroed fragment header: looks like padding, but the page is not all zeros.
        check(compression, |fs, placements| {
            let victim = inner(placements, 1);
            let from = victim.offset as usize;
            fs.mutate(&segment_path(1), |data| data[from..from + FRAGMENT_HEADER_SIZE].fill(0));
            let lost = intersecting(placements, 1, victim.offset, page_end(victim.offset));
            Expected { lost, reports: vec![(1, victim.offset)], reason: "padding" }
        });
        // Single bit flips: in the type (to a middle fragment, and a reserved flag), in the CRC.
        check(compression, |fs, placements| {
            let victim = inner(placements, 1);
            flip(fs, 1, victim.offset, 0x02);
            only(victim, "without a first")
        });
        check(compression, |fs, placements| {
            let victim = inner(placements, 1);
            flip(fs, 1, victim.offset, 0x80);
            only(victim, "invalid fragment type")
        });
        check(compression, |fs, placements| {
            let victim = inner(placements, 2);
            flip(fs, 2, victim.offset + 4, 0x08);
            only(victim, "checksum")
        });
        // Two damaged places in different segments: two reports, in stream order.
        check(compression, |fs, placements| {
            let (a, b) = (inner(placements, 0), inner(placements, 2));
            flip(fs, 0, a.offset + 8, 0x20);
            flip(fs, 2, b.offset + 9, 0x20);
            Expected {
                lost: BTreeSet::from([a.id, b.id]),
                reports: vec![(0, a.offset), (2, b.offset)],
                reason: "checksum",
            }
        });
        // A lost middle segment: reported; every other segment replays and is renumbered.
        check(compression, |fs, placements| {
            fs.remove_file(&segment_path(1)).unwrap();
            let lost = placements.iter().filter(|p| p.segment_index == 1).map(|p| p.id).collect();
            Expected { lost, reports: vec![(1, 0)], reason: "missing" }
        });
    }
}

/// A valid record of a type this engine does not decode (a Prometheus exemplar record) is kept
/// on disk and skipped, not reported; the strict decoder names it.
#[test]
fn unknown_record_types_are_kept() {
    let fs = MemFileSystem::default();
    let mut wal = open(&fs, Compression::Snappy).wal;
    wal.log(&[&test_record(1), &[4, 0, 0, 0, 0, 0, 0, 0, 1], &test_record(2)], true).unwrap();
    drop(wal);
    let opened = open(&fs, Compression::Snappy);
    assert_eq!((opened.ids, opened.corruptions), (vec![1, 2], vec![]));
    match decode_segment(0, &fs.read(&segment_path(0)).unwrap()) {
        Err(WalError::Corruption { segment_index: 0, reason, .. }) => assert_eq!(reason, "unknown record type 4"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn failed_write_leaves_nothing_and_later_writes_survive() {
    // (fail the write, fail the truncate, fail the rename): each fallback in turn.
    for (fail_truncate, fail_rename) in [(false, false), (true, false), (true, true)] {
        let fs = MemFileSystem::default();
        let mut wal = open(&fs, Compression::None).wal;
        wal.log(&[&test_record(0)], true).unwrap();
        fs.fail_next_write();
        if fail_truncate {
            fs.fail_next_truncate();
        }
        if fail_rename {
            fs.fail_next_rename();
        }
        // A small record then a large one: the torn half holds the first whole.
        let failed = wal.log(&[&test_record(25), &test_record(26)], true);
        assert!(matches!(failed, Err(WalError::Io { .. })), "{failed:?}");
        wal.log(&[&test_record(2)], true).unwrap();
        assert_eq!(wal.segment_index(), u32::from(fail_rename), "a new segment only when no repair worked");
        // No crash: the torn bytes stay on disk, as after a kill once the write reached the page
        // cache (a crash would drop them, unsynced, and hide the case).
        drop(wal);
        let opened = open(&fs, Compression::None);
        if fail_rename {
            // The torn write stayed in segment 0; its whole first record cannot be told apart
            // from a committed one (the storage layer tolerates that), the torn rest is cut off.
            assert_eq!(opened.ids, vec![0, 25, 2]);
            assert_eq!(opened.corruptions.len(), 1, "{:?}", opened.corruptions);
            assert!(opened.corruptions[0].reason.contains("torn"), "{:?}", opened.corruptions);
        } else {
            assert_eq!(opened.ids, vec![0, 2], "truncate {fail_truncate}");
            assert_eq!(opened.corruptions, vec![]);
        }
    }
}

#[test]
fn batches_roll_over_whole_and_closed_segments_are_padded() {
    let fs = MemFileSystem::default();
    let mut wal = open(&fs, Compression::None).wal;
    let big = vec![b'x'; 3 * PAGE_SIZE]; // A record type byte 'x' is unknown: kept, not replayed.
    wal.log(&[&big], true).unwrap();
    assert_eq!(wal.segment_index(), 0);
    // The pair does not fit in the one page left, so both go to segment 1.
    wal.log(&[&test_record(1), &big[..PAGE_SIZE]], true).unwrap();
    assert_eq!(wal.segment_index(), 1);
    assert_eq!(fs.read(&segment_path(0)).unwrap().len(), 4 * PAGE_SIZE, "closed segment padded to a page");
    let too_large = vec![b'x'; 4 * PAGE_SIZE];
    match wal.log(&[&too_large], true) {
        Err(WalError::RecordTooLarge { size, size_max }) => {
            assert_eq!((size, size_max), (4 * PAGE_SIZE, 4 * (PAGE_SIZE - FRAGMENT_HEADER_SIZE)));
        }
        other => panic!("{other:?}"),
    }
    wal.log(&[&test_record(2)], false).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let opened = open(&fs, Compression::None);
    assert_eq!((opened.ids, opened.corruptions), (vec![1, 2], vec![]));
    assert_eq!(opened.wal.segment_index(), 2, "a new segment after the last one");
    let small = WalOptions { segment_size_max: 100, compression: Compression::None };
    let result = Wal::open(Arc::new(fs.clone()), Path::new(DIR), small, &mut |_| {});
    assert!(matches!(result, Err(WalError::SegmentSizeTooSmall { segment_size_max: 100, .. })));
}

#[test]
fn interrupted_repair_leftovers_are_removed() {
    let (fs, _) = fixture(Compression::Snappy);
    let leftover = Path::new(DIR).join("00000001.repair");
    let mut file = fs.open_append(&leftover).unwrap();
    file.write_all(b"half a rewrite").unwrap();
    file.sync().unwrap();
    let opened = open(&fs, Compression::Snappy);
    assert_eq!(opened.ids, (0..RECORD_COUNT).collect::<Vec<_>>());
    assert!(!fs.paths().contains(&leftover));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Records from 0 bytes to several pages, logged alone or in batches, come back byte for
    /// byte from the segments, for every compression, and a replay over them reports nothing.
    #[test]
    fn records_round_trip_through_segments(
        sizes in proptest::collection::vec(0_usize..(3 * PAGE_SIZE), 1..12),
        compression_index in 0_usize..4,
        batch_size in 1_usize..4,
    ) {
        let compression = COMPRESSIONS[compression_index];
        let records: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(index, size)| (0..*size).map(|byte| ((byte / 3) as u8).wrapping_mul(index as u8 + 1)).collect())
            .collect();
        let fs = MemFileSystem::default();
        let mut wal = open(&fs, compression).wal;
        for batch in records.chunks(batch_size) {
            let batch: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
            wal.log(&batch, true).unwrap();
        }
        let mut read_back = Vec::new();
        for index in 0..=wal.segment_index() {
            for item in scan_segment(&fs.read(&segment_path(index)).unwrap()) {
                let ScanItem::Record(record) = item else { panic!("loss in a fresh segment: {item:?}") };
                let mut out = Vec::new();
                compression::decompress(record.flags, &record.stored, &mut out).unwrap();
                read_back.push(out);
            }
        }
        prop_assert_eq!(read_back, records);
        drop(wal);
        prop_assert_eq!(open(&fs, compression).corruptions, vec![]);
    }

    /// Any single bit flip loses at most the records touching the flipped page, and repairs to a
    /// directory that reopens clean with the same records.
    #[test]
    fn any_bit_flip_is_contained(segment_pick in 0_u32..3, offset_pick in any::<u64>(), bit in 0_u8..8) {
        let (fs, placements) = fixture(Compression::Snappy);
        let size = fs.read(&segment_path(segment_pick)).unwrap().len() as u64;
        let offset = offset_pick % size;
        flip(&fs, segment_pick, offset, 1 << bit);
        let page_start = offset / PAGE_SIZE as u64 * PAGE_SIZE as u64;
        let at_risk = intersecting(&placements, segment_pick, page_start, page_start + PAGE_SIZE as u64);
        let opened = open(&fs, Compression::Snappy);
        let survivors: BTreeSet<u64> = opened.ids.iter().copied().collect();
        for placement in &placements {
            prop_assert!(survivors.contains(&placement.id) || at_risk.contains(&placement.id), "lost {}", placement.id);
        }
        drop(opened);
        let again = open(&fs, Compression::Snappy);
        prop_assert_eq!(again.corruptions, vec![]);
        prop_assert_eq!(again.ids.iter().copied().collect::<BTreeSet<u64>>(), survivors);
    }
}

/// The frozen segment's records: series, samples (NaN, staleness marker, negative deltas) and
/// tombstones, snappy-compressed where that helps.
fn frozen_records() -> Vec<Record> {
    let up = Labels::from_pairs([("__name__", "up"), ("instance", "localhost:9090"), ("job", "engine")]);
    let temperature = Labels::from_pairs([("__name__", "temperature_celsius"), ("room", "b\"1\"\n")]);
    let sample = |series_ref, timestamp_ms, value| RefSample { series_ref: SeriesRef(series_ref), timestamp_ms, value };
    vec![
        Record::Series(vec![(SeriesRef(1), up), (SeriesRef(2), temperature)]),
        Record::Samples(vec![sample(1, 1_700_000_000_000, 1.0), sample(2, 1_700_000_000_000, -3.25)]),
        Record::Samples(vec![sample(2, 1_700_000_015_000, f64::NAN), sample(1, 1_699_999_999_000, 0.0)]),
        Record::Samples(vec![
            sample(1, 1_700_000_030_000, 1.0),
            sample(2, 1_700_000_030_000, f64::from_bits(crate::model::STALE_NAN_BITS)),
        ]),
        Record::Tombstones(vec![Stone {
            series_ref: SeriesRef(2),
            min_time_ms: 1_700_000_000_000,
            max_time_ms: 1_700_000_015_000,
        }]),
    ]
}

fn encode(record: &Record) -> Vec<u8> {
    let mut out = Vec::new();
    match record {
        Record::Series(series) => {
            let borrowed: Vec<(SeriesRef, &Labels)> = series.iter().map(|(r, l)| (*r, l)).collect();
            encode_series(&borrowed, &mut out);
        }
        Record::Samples(samples) => encode_samples(samples, &mut out),
        Record::Tombstones(stones) => encode_tombstones(stones, &mut out),
    }
    out
}

/// NaN-aware comparison, through the encoding.
fn same_records(a: &[Record], b: &[Record]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| encode(x) == encode(y))
}

/// A segment this engine wrote with the first version of the Prometheus format must decode to
/// exactly these records forever.
#[test]
fn frozen_segment_decodes() {
    let frozen = include_bytes!("../testdata/wal-v2-00000000");
    let decoded = decode_segment(0, frozen).unwrap();
    assert!(same_records(&decoded, &frozen_records()), "{decoded:?}");
}

/// Writes the frozen segment; run once per format version with
/// `cargo test --release -p engine --lib write_frozen_wal_segment -- --ignored`.
#[test]
#[ignore = "regenerates test data"]
fn write_frozen_wal_segment() {
    let fs = MemFileSystem::default();
    let mut wal = open(&fs, Compression::Snappy).wal;
    let encoded: Vec<Vec<u8>> = frozen_records().iter().map(encode).collect();
    wal.log(&[&encoded[0], &encoded[1]], true).unwrap();
    wal.log(&[&encoded[2]], true).unwrap();
    wal.log(&[&encoded[3], &encoded[4]], true).unwrap();
    let bytes = fs.read(&segment_path(0)).unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/tsdb/testdata/wal-v2-00000000");
    let _ = crate::io::RealFileSystem.remove_file(&path);
    let mut file = crate::io::RealFileSystem.open_append(&path).unwrap();
    file.write_all(&bytes).unwrap();
    file.sync().unwrap();
}

/// Replay speed per compression: samples decoded per second through `Wal::open`, and the
/// bytes on disk (printed, not asserted: `cargo test --release -p engine --lib replay_speed --
/// --nocapture`).
#[test]
fn replay_speed() {
    let series_count = 1000_u64;
    let scrape_count = 1000_i64;
    for compression in COMPRESSIONS {
        let fs = MemFileSystem::default();
        let options = WalOptions { compression, ..WalOptions::default() };
        let mut wal = Wal::open(Arc::new(fs.clone()), Path::new(DIR), options, &mut |_| {}).unwrap().0;
        let mut record = Vec::new();
        let write_started = tokio::time::Instant::now();
        for scrape in 0..scrape_count {
            let samples: Vec<RefSample> = (0..series_count)
                .map(|series| RefSample {
                    series_ref: SeriesRef(series),
                    timestamp_ms: 1_700_000_000_000 + scrape * 15_000 + (series % 7) as i64,
                    value: ((scrape as u64 * series) % 1000) as f64,
                })
                .collect();
            record.clear();
            encode_samples(&samples, &mut record);
            wal.log(&[&record], false).unwrap();
        }
        wal.sync().unwrap();
        let write_elapsed = write_started.elapsed();
        drop(wal);
        let disk_size: usize = fs.paths().iter().map(|path| fs.read(path).unwrap().len()).sum();
        let mut sample_count = 0_u64;
        let started = tokio::time::Instant::now();
        let mut visit = |item: ReplayItem| {
            if let ReplayItem::Record(Record::Samples(samples)) = item {
                sample_count += samples.len() as u64;
            }
        };
        Wal::open(Arc::new(fs), Path::new(DIR), options, &mut visit).unwrap();
        let elapsed = started.elapsed();
        assert_eq!(sample_count, scrape_count as u64 * series_count);
        println!(
            "wal {compression:?}: {sample_count} samples, {:.2} bytes/sample on disk, write {:.1} M samples/s, replay {:.1} M samples/s",
            disk_size as f64 / sample_count as f64,
            sample_count as f64 / write_elapsed.as_secs_f64() / 1e6,
            sample_count as f64 / elapsed.as_secs_f64() / 1e6
        );
    }
}

/// The first segment of a 22 s run of Prometheus 2.42 (Debian's build, scraping itself every
/// second, killed with SIGKILL): every fragment and record decodes (snappy, one record spanning
/// pages), the series include `up{job="prometheus"}`, samples reference known series, and
/// replay over it reports no corruption.
#[test]
fn prometheus_2_42_segment_decodes() {
    let bytes = include_bytes!("../testdata/prometheus-2.42-wal-00000000");
    let records = decode_segment(0, bytes).unwrap();
    let flags: BTreeSet<u8> = scan_segment(bytes)
        .iter()
        .filter_map(|item| match item {
            ScanItem::Record(record) => Some(record.flags),
            ScanItem::Loss(_) => None,
        })
        .collect();
    assert_eq!(flags, BTreeSet::from([compression::FLAG_SNAPPY]));
    let mut series_refs = BTreeSet::new();
    let mut up_found = false;
    let mut sample_count = 0;
    for record in &records {
        match record {
            Record::Series(series) => {
                for (series_ref, labels) in series {
                    series_refs.insert(*series_ref);
                    up_found |= labels.get("__name__") == Some("up") && labels.get("job") == Some("prometheus");
                }
            }
            Record::Samples(samples) => {
                for sample in samples {
                    assert!(series_refs.contains(&sample.series_ref), "sample for unknown {:?}", sample.series_ref);
                    sample_count += 1;
                }
            }
            Record::Tombstones(_) => panic!("no deletions in that run"),
        }
    }
    assert!(up_found, "up{{job=\"prometheus\"}} among {} series", series_refs.len());
    assert!(series_refs.len() > 100 && sample_count > 1000, "{} series, {sample_count} samples", series_refs.len());
    let fs = MemFileSystem::default();
    let mut file = fs.open_append(&segment_path(0)).unwrap();
    file.write_all(bytes).unwrap();
    file.sync().unwrap();
    let mut replayed = 0;
    let mut visit = |item: ReplayItem| match item {
        ReplayItem::Record(_) => replayed += 1,
        ReplayItem::Corruption(corruption) => panic!("{corruption:?}"),
    };
    Wal::open(Arc::new(fs), Path::new(DIR), WalOptions::default(), &mut visit).unwrap();
    assert_eq!(replayed, records.len());
}

/// Prometheus' checkpoint: the newest `checkpoint.N/` is replayed first, segments up to N are
/// skipped, an unfinished `.tmp` checkpoint is ignored, and new segments come after N.
#[test]
fn checkpoint_replays_first_and_covers_its_segments() {
    let fs = MemFileSystem::default();
    for id in [1_u64, 3, 4] {
        let mut opened = open(&fs, Compression::Snappy);
        opened.wal.log(&[&test_record(id)], true).unwrap();
    }
    // Segments 0, 1, 2 hold records 1, 3, 4. A checkpoint through segment 1 holds record 10.
    let scratch = Path::new("/scratch");
    let (mut writer, _) = Wal::open(Arc::new(fs.clone()), scratch, options(Compression::Snappy), &mut |_| {}).unwrap();
    writer.log(&[&test_record(10)], true).unwrap();
    drop(writer);
    let checkpoint_bytes = fs.read(&scratch.join(segment_name(0))).unwrap();
    write_to(&fs, &Path::new(DIR).join("checkpoint.00000001").join(segment_name(0)), &checkpoint_bytes);
    write_to(&fs, &Path::new(DIR).join("checkpoint.00000002.tmp").join(segment_name(0)), &test_record(99));
    let opened = open(&fs, Compression::Snappy);
    assert_eq!(opened.ids, vec![10, 4], "checkpoint first, then the segments after it");
    assert!(opened.corruptions.is_empty(), "{:?}", opened.corruptions);
    drop(opened);
    // Prometheus deletes the covered segments; with none left, new ones still follow N.
    let fs = MemFileSystem::default();
    write_to(&fs, &Path::new(DIR).join("checkpoint.00000005").join(segment_name(0)), &checkpoint_bytes);
    let opened = open(&fs, Compression::Snappy);
    assert_eq!(opened.ids, vec![10]);
    assert_eq!(opened.wal.segment_index(), 6, "the first new segment comes after the checkpoint");
}

fn write_to(fs: &MemFileSystem, path: &Path, bytes: &[u8]) {
    let mut file = fs.open_append(path).unwrap();
    file.write_all(bytes).unwrap();
    file.sync().unwrap();
}
