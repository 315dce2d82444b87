//! Compaction planning (upstream's `TestLeveledCompactor` plan cases, `TestSplitByRange`,
//! `TestRangeWithFailedCompactionWontGetSelected`), merging blocks on the in-memory disk,
//! retention, and the settings' defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::*;
use crate::io::MemFileSystem;
use crate::model::{MatchKind, Matcher};
use crate::storage::{collect_series, Querier};
use crate::tsdb::block::{write_block, BlockStats};

const PARENT: &str = "/data";
const HOUR_MS: i64 = 3_600_000;

fn meta(ulid: &str, min_time_ms: i64, max_time_ms: i64) -> BlockMeta {
    BlockMeta {
        ulid: ulid.to_string(),
        min_time_ms,
        max_time_ms,
        stats: BlockStats::default(),
        compaction: BlockCompaction { level: 1, sources: vec![ulid.to_string()], ..Default::default() },
        version: 1,
    }
}

fn metas(ranges: &[(&str, i64, i64)]) -> Vec<BlockMeta> {
    ranges.iter().map(|(ulid, min_ms, max_ms)| meta(ulid, *min_ms, *max_ms)).collect()
}

#[test]
fn block_ranges_are_exponential_and_cut_at_the_maximum() {
    #[track_caller]
    fn check(min_ms: i64, max_ms: i64, expected: &[i64]) {
        assert_eq!(block_ranges(min_ms, max_ms), expected, "block_ranges({min_ms}, {max_ms})");
    }
    let h = HOUR_MS;
    // The default 15 d retention gives a 36 h maximum: 2 h, 6 h, 18 h.
    check(2 * h, 36 * h, &[2 * h, 6 * h, 18 * h]);
    check(2 * h, 54 * h, &[2 * h, 6 * h, 18 * h, 54 * h]);
    check(2 * h, 31 * 24 * h, &[2 * h, 6 * h, 18 * h, 54 * h, 162 * h, 486 * h]);
    check(2 * h, 2 * h, &[2 * h]);
    check(2 * h, h, &[2 * h]); // Upstream raises a smaller maximum to the minimum.
    check(20, i64::MAX, &[20, 60, 180, 540, 1620, 4860, 14580, 43740, 131_220, 393_660]);
    check(i64::MAX / 2, i64::MAX, &[i64::MAX / 2]); // The next level would overflow.
    check(0, 100, &[]);
    check(-5, 100, &[]);
}

#[test]
fn split_by_range_matches_upstream() {
    #[track_caller]
    fn check(range_ms: i64, ranges: &[(i64, i64)], expected: &[&[(i64, i64)]]) {
        let input: Vec<BlockMeta> = ranges.iter().map(|(min_ms, max_ms)| meta("x", *min_ms, *max_ms)).collect();
        let sorted: Vec<&BlockMeta> = input.iter().collect();
        let got: Vec<Vec<(i64, i64)>> = split_by_range(&sorted, range_ms)
            .iter()
            .map(|group| group.iter().map(|meta| (meta.min_time_ms, meta.max_time_ms)).collect())
            .collect();
        let expected: Vec<Vec<(i64, i64)>> = expected.iter().map(|group| group.to_vec()).collect();
        assert_eq!(got, expected, "split by {range_ms}: {ranges:?}");
    }
    check(60, &[(0, 10)], &[&[(0, 10)]]);
    check(60, &[(0, 60)], &[&[(0, 60)]]);
    check(60, &[(0, 10), (9, 15), (30, 60)], &[&[(0, 10), (9, 15), (30, 60)]]);
    check(
        60,
        &[(70, 90), (125, 130), (130, 180), (1000, 1001)],
        &[&[(70, 90)], &[(125, 130), (130, 180)], &[(1000, 1001)]],
    );
    // Misaligned or too large blocks are left out.
    check(60, &[(50, 70), (70, 80)], &[&[(70, 80)]]);
    check(72, &[(0, 144), (144, 216), (216, 288)], &[&[(144, 216)], &[(216, 288)]]);
    // Negative times align downwards.
    check(60, &[(-10, -5)], &[&[(-10, -5)]]);
    check(60, &[(-60, -50), (-10, -5)], &[&[(-60, -50), (-10, -5)]]);
    check(60, &[(-60, -50), (-10, -5), (0, 15)], &[&[(-60, -50), (-10, -5)], &[(0, 15)]]);
}

/// Upstream's ranges for its plan tests: the default exponential ranges with a minimum of 20.
const RANGES: [i64; 5] = [20, 60, 180, 540, 1620];

#[track_caller]
fn check_plan(blocks: &[(&str, i64, i64)], expected: &[&str]) {
    assert_eq!(plan(&metas(blocks), &RANGES), expected, "plan of {blocks:?}");
    // Input order never matters.
    let mut reversed = metas(blocks);
    reversed.reverse();
    assert_eq!(plan(&reversed, &RANGES), expected, "plan of reversed {blocks:?}");
}

#[test]
fn plan_matches_upstream_cases() {
    // Outside range.
    check_plan(&[("1", 0, 20)], &[]);
    // Wait for four blocks of size 20 before compacting.
    check_plan(&[("1", 0, 20), ("2", 20, 40)], &[]);
    // Three, but the fresh one from the WAL is left out.
    check_plan(&[("1", 0, 20), ("2", 20, 40), ("3", 40, 60)], &[]);
    // The block that fills the parent range appeared: compact the first three.
    check_plan(&[("1", 0, 20), ("2", 20, 40), ("3", 40, 60), ("4", 60, 80)], &["1", "2", "3"]);
    // The next parent range began with a gap; the fresh block is still left out.
    check_plan(&[("1", 0, 20), ("2", 20, 40), ("3", 60, 80)], &[]);
    // A gap that will never be filled: compact the two before it.
    check_plan(&[("1", 0, 20), ("2", 20, 40), ("3", 60, 80), ("4", 80, 100)], &["1", "2"]);
    // 20, 20, 20, 60, 60; "5" is the fresh one.
    check_plan(&[("1", 0, 20), ("2", 20, 40), ("3", 40, 60), ("4", 60, 120), ("5", 120, 180)], &["1", "2", "3"]);
    // 20, 60, 60, 240 and a fresh one: 20 + 60 + 60 lie before the newest considered block.
    check_plan(&[("2", 20, 40), ("4", 60, 120), ("5", 960, 980), ("6", 120, 180), ("7", 720, 960)], &["2", "4", "6"]);
    // Upstream's regression: no loop recompacting one large block without tombstones.
    check_plan(&[("1", 0, 540), ("2", 540, 560)], &[]);
    // The fresh block is the one with the largest minTime, not the newest ULID.
    check_plan(&[("5", 0, 360), ("6", 540, 560), ("7", 360, 420), ("8", 420, 540)], &["7", "8"]);
}

#[test]
fn plan_compacts_overlapping_blocks_first() {
    check_plan(&[("1", 0, 20), ("2", 19, 40), ("3", 40, 60)], &["1", "2"]);
    check_plan(&[("1", 0, 20), ("2", 20, 40), ("3", 30, 50)], &["2", "3"]);
    check_plan(&[("1", 0, 20), ("2", 10, 40), ("3", 30, 50)], &["1", "2", "3"]);
    check_plan(&[("5", 0, 360), ("6", 340, 560), ("7", 360, 420), ("8", 420, 540)], &["5", "6", "7", "8"]);
    check_plan(&[("1", 0, 10), ("2", 9, 20), ("3", 30, 40), ("4", 39, 50)], &["1", "2"]);
    // Overlap wins even over the fresh-block rule: the newest block joins a vertical compaction.
    check_plan(&[("1", 0, 20), ("2", 0, 20)], &["1", "2"]);
    // Empty input, and no ranges at all.
    check_plan(&[], &[]);
    assert!(plan(&metas(&[("1", 0, 20), ("2", 20, 40), ("3", 40, 60), ("4", 60, 80)]), &[]).is_empty());
    // A single range never compacts adjacent blocks.
    assert!(plan(&metas(&[("1", 0, 20), ("2", 20, 40), ("3", 40, 60), ("4", 60, 80)]), &[20]).is_empty());
}

#[test]
fn plan_skips_ranges_with_a_failed_block() {
    let cases: [&[(&str, i64, i64)]; 3] = [
        &[("1", 0, 20), ("2", 20, 40), ("3", 40, 60), ("4", 60, 80)],
        &[("1", 0, 20), ("2", 20, 40), ("3", 60, 80), ("4", 80, 100)],
        &[("1", 0, 20), ("2", 20, 40), ("3", 40, 60), ("4", 60, 120), ("5", 120, 180), ("6", 180, 200)],
    ];
    for blocks in cases {
        let mut input = metas(blocks);
        input[1].compaction.failed = true;
        assert_eq!(plan(&input, &[20, 60, 240, 720, 2160]), Vec::<String>::new(), "{blocks:?}");
    }
}

// ---- Compaction on the in-memory disk.

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

/// Samples every `step_ms` in `[from_ms, to_ms)` with values `offset + index`.
fn samples(from_ms: i64, to_ms: i64, step_ms: i64, offset: f64) -> Vec<Sample> {
    (0..)
        .map(|index| from_ms + index * step_ms)
        .take_while(|timestamp_ms| *timestamp_ms < to_ms)
        .enumerate()
        .map(|(index, timestamp_ms)| Sample { timestamp_ms, value: offset + index as f64 })
        .collect()
}

/// Writes a level-1 block over `[min_ms, max_ms)` named by `random`, and opens it.
fn level1(fs: &MemFileSystem, random: u128, (min_ms, max_ms): (i64, i64), series: &[(Labels, Vec<Sample>)]) -> Block {
    let mut sorted = series.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let chunked = sorted.iter().map(|(labels, samples)| (labels.clone(), encode_chunks(samples, 120)));
    let meta = write_block(Arc::new(fs.clone()), Path::new(PARENT), chunked, 1_000, random, min_ms, max_ms).unwrap();
    Block::open(Arc::new(fs.clone()), &Path::new(PARENT).join(&meta.ulid)).unwrap()
}

fn run(fs: &MemFileSystem, sources: &[Block], random: u128) -> Result<Option<BlockMeta>, BlockError> {
    compact(Arc::new(fs.clone()), Path::new(PARENT), sources, Ulid::new(2_000, random))
}

fn open(fs: &MemFileSystem, meta: &BlockMeta) -> Block {
    Block::open(Arc::new(fs.clone()), &Path::new(PARENT).join(&meta.ulid)).unwrap()
}

/// Every series of the block with its samples (value bits, so NaN compares).
fn contents(block: &Block) -> Vec<(Labels, Vec<(i64, u64)>)> {
    let every = Matcher::new(MatchKind::Regex, "__name__", ".*").unwrap();
    collect_series(block.querier(i64::MIN, i64::MAX).select(None, &[every]))
        .unwrap()
        .into_iter()
        .map(|series| {
            (series.labels, series.samples.iter().map(|sample| (sample.timestamp_ms, sample.value.to_bits())).collect())
        })
        .collect()
}

/// Chunk bytes of every series, in label order.
fn chunk_bytes(block: &Block) -> Vec<(Labels, Vec<Vec<u8>>)> {
    block
        .series_ids()
        .unwrap()
        .into_iter()
        .map(|id| {
            let (labels, metas) = block.series_at(id).unwrap();
            (labels, metas.iter().map(|meta| block.chunk_at(meta.chunk_ref).unwrap()).collect())
        })
        .collect()
}

fn dirs(fs: &MemFileSystem) -> BTreeSet<String> {
    fs.paths()
        .iter()
        .filter_map(|path| path.strip_prefix(PARENT).ok()?.components().next())
        .map(|component| component.as_os_str().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn adjacent_blocks_merge_with_chunks_copied_and_lineage() {
    let fs = MemFileSystem::default();
    let (a, b, c) = (
        labels(&[("__name__", "up"), ("job", "a")]),
        labels(&[("__name__", "up"), ("job", "b")]),
        labels(&[("__name__", "x")]),
    );
    let blocks: Vec<Block> = (0..3)
        .map(|index| {
            let (from_ms, to_ms) = (index * 2 * HOUR_MS, (index + 1) * 2 * HOUR_MS);
            let mut series = vec![(a.clone(), samples(from_ms, to_ms, 15_000, index as f64 * 1000.0))];
            if index != 1 {
                series.push((b.clone(), samples(from_ms + 7, to_ms, 60_000, -1.5)));
            }
            if index == 2 {
                series.push((c.clone(), vec![Sample { timestamp_ms: from_ms, value: f64::NAN }]));
            }
            level1(&fs, 10 + index as u128, (from_ms, to_ms), &series)
        })
        .collect();
    // Sources given out of order: the merge orders them by minTime.
    let shuffled = vec![blocks[2].clone(), blocks[0].clone(), blocks[1].clone()];
    let meta = run(&fs, &shuffled, 99).unwrap().expect("samples were merged");
    assert_eq!((meta.min_time_ms, meta.max_time_ms), (0, 6 * HOUR_MS));
    assert_eq!(meta.compaction.level, 2);
    let mut source_ulids: Vec<String> = blocks.iter().map(|block| block.meta().ulid.clone()).collect();
    source_ulids.sort();
    assert_eq!(meta.compaction.sources, source_ulids);
    let parents: Vec<(String, i64, i64)> = meta
        .compaction
        .parents
        .iter()
        .map(|parent| (parent.ulid.clone(), parent.min_time_ms, parent.max_time_ms))
        .collect();
    let expected_parents: Vec<(String, i64, i64)> = blocks
        .iter()
        .map(|block| (block.meta().ulid.clone(), block.meta().min_time_ms, block.meta().max_time_ms))
        .collect();
    assert_eq!(parents, expected_parents);
    let source_stats = blocks.iter().map(|block| block.meta().stats.clone());
    let expected_samples: u64 = source_stats.clone().map(|stats| stats.sample_count).sum();
    let expected_chunks: u64 = source_stats.map(|stats| stats.chunk_count).sum();
    assert_eq!(
        meta.stats,
        BlockStats { sample_count: expected_samples, series_count: 3, chunk_count: expected_chunks }
    );

    let merged = open(&fs, &meta);
    assert_eq!(merged.meta(), &meta, "meta.json holds what compact returned");
    // Every chunk is the source's, byte for byte, in time order.
    let mut expected_bytes: BTreeMap<Labels, Vec<Vec<u8>>> = BTreeMap::new();
    for block in &blocks {
        for (series_labels, chunks) in chunk_bytes(block) {
            expected_bytes.entry(series_labels).or_default().extend(chunks);
        }
    }
    assert_eq!(chunk_bytes(&merged), expected_bytes.into_iter().collect::<Vec<_>>());
    let mut expected_samples: BTreeMap<Labels, Vec<(i64, u64)>> = BTreeMap::new();
    for block in &blocks {
        for (series_labels, found) in contents(block) {
            expected_samples.entry(series_labels).or_default().extend(found);
        }
    }
    assert_eq!(contents(&merged), expected_samples.into_iter().collect::<Vec<_>>());
    // The sources are untouched; only the new block was added, no .tmp left.
    let mut expected_dirs: BTreeSet<String> = source_ulids.into_iter().collect();
    expected_dirs.insert(meta.ulid.clone());
    assert_eq!(dirs(&fs), expected_dirs);
}

#[test]
fn overlapping_blocks_merge_by_time_first_block_wins() {
    let fs = MemFileSystem::default();
    let (a, b, only_late) =
        (labels(&[("__name__", "a")]), labels(&[("__name__", "b")]), labels(&[("__name__", "late")]));
    // Early block: a every 10 s over [0, 2h), b every 30 s.
    let early = level1(
        &fs,
        1,
        (0, 2 * HOUR_MS),
        &[(a.clone(), samples(0, 2 * HOUR_MS, 10_000, 0.0)), (b.clone(), samples(0, HOUR_MS, 30_000, 0.0))],
    );
    // Late block over [1h, 3h): a every 5 s from 1h (every other timestamp equal to early's,
    // with other values), and a series only it has.
    let late = level1(
        &fs,
        2,
        (HOUR_MS, 3 * HOUR_MS),
        &[
            (a.clone(), samples(HOUR_MS, 3 * HOUR_MS, 5_000, 1e6)),
            (only_late.clone(), samples(HOUR_MS, 2 * HOUR_MS, 60_000, 7.0)),
        ],
    );
    let meta = run(&fs, &[late.clone(), early.clone()], 5).unwrap().unwrap();
    assert_eq!((meta.min_time_ms, meta.max_time_ms), (0, 3 * HOUR_MS));
    let merged = open(&fs, &meta);
    // Expected: union by timestamp, the early block's value on equal timestamps.
    let mut expected_a: BTreeMap<i64, f64> = BTreeMap::new();
    for sample in samples(HOUR_MS, 3 * HOUR_MS, 5_000, 1e6) {
        expected_a.insert(sample.timestamp_ms, sample.value);
    }
    for sample in samples(0, 2 * HOUR_MS, 10_000, 0.0) {
        expected_a.insert(sample.timestamp_ms, sample.value);
    }
    let got = contents(&merged);
    let got_a: Vec<(i64, u64)> = got.iter().find(|(series_labels, _)| *series_labels == a).unwrap().1.clone();
    let expected_a: Vec<(i64, u64)> = expected_a.into_iter().map(|(t, v)| (t, v.to_bits())).collect();
    assert_eq!(got_a, expected_a);
    assert_eq!(
        got.iter().map(|(series_labels, _)| series_labels.clone()).collect::<Vec<_>>(),
        vec![a.clone(), b, only_late]
    );
    // The overlapping run of `a` was re-encoded into chunks of at most 120 samples, in order.
    let id = merged.series_ids().unwrap()[0];
    let (_, chunk_metas) = merged.series_at(id).unwrap();
    let mut previous_max_ms = i64::MIN;
    for chunk_meta in &chunk_metas {
        let bytes = merged.chunk_at(chunk_meta.chunk_ref).unwrap();
        let count = u16::from_be_bytes([bytes[0], bytes[1]]);
        assert!(count > 0 && count <= 120, "chunk of {count} samples");
        assert!(chunk_meta.min_time_ms > previous_max_ms);
        previous_max_ms = chunk_meta.max_time_ms;
    }
    assert_eq!(meta.stats.sample_count, got.iter().map(|(_, found)| found.len() as u64).sum::<u64>());
}

#[test]
fn lineage_is_in_meta_json_and_grows_with_levels() {
    let fs = MemFileSystem::default();
    let series =
        |from_ms: i64| vec![(labels(&[("__name__", "up")]), samples(from_ms, from_ms + 2 * HOUR_MS, 60_000, 1.0))];
    let first: Vec<Block> = (0..3)
        .map(|i| level1(&fs, 20 + i as u128, (i * 2 * HOUR_MS, (i + 1) * 2 * HOUR_MS), &series(i * 2 * HOUR_MS)))
        .collect();
    let level2 = open(&fs, &run(&fs, &first, 1).unwrap().unwrap());
    let text = String::from_utf8(fs.read(&level2.dir().join("meta.json")).unwrap()).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let parents = &json["compaction"]["parents"];
    assert_eq!(parents.as_array().map(Vec::len), Some(3), "{text}");
    assert_eq!(parents[0]["ulid"], first[0].meta().ulid.as_str());
    assert_eq!(parents[1]["minTime"], 2 * HOUR_MS);
    assert_eq!(parents[2]["maxTime"], 6 * HOUR_MS);
    assert_eq!(json["compaction"]["level"], 2);
    assert!(json["compaction"].get("failed").is_none() && json["compaction"].get("deletable").is_none(), "{text}");
    // A level-1 meta has no parents key at all, as upstream's omitempty.
    let level1_text = String::from_utf8(fs.read(&first[0].dir().join("meta.json")).unwrap()).unwrap();
    assert!(!level1_text.contains("parents"), "{level1_text}");

    let next: Vec<Block> = (3..5)
        .map(|i| level1(&fs, 20 + i as u128, (i * 2 * HOUR_MS, (i + 1) * 2 * HOUR_MS), &series(i * 2 * HOUR_MS)))
        .collect();
    let level2b = open(&fs, &run(&fs, &next, 2).unwrap().unwrap());
    let level3 = run(&fs, &[level2.clone(), level2b.clone()], 3).unwrap().unwrap();
    assert_eq!(level3.compaction.level, 3);
    let mut all: Vec<String> = first.iter().chain(&next).map(|block| block.meta().ulid.clone()).collect();
    all.sort();
    assert_eq!(level3.compaction.sources, all, "sources are the level-1 blocks");
    let parents: Vec<&str> = level3.compaction.parents.iter().map(|parent| parent.ulid.as_str()).collect();
    assert_eq!(parents, [level2.meta().ulid.as_str(), level2b.meta().ulid.as_str()]);
    // After a crash between compactions and deletions, every block that is a parent of a
    // present block is found superseded; a block nothing replaced is not.
    let mut unrelated = meta(&Ulid::new(9, 9).to_string(), 100 * HOUR_MS, 102 * HOUR_MS);
    unrelated.compaction.parents = vec![BlockDesc { ulid: "gone".to_string(), min_time_ms: 0, max_time_ms: 1 }];
    let present =
        vec![level2.meta().clone(), level2b.meta().clone(), level3.clone(), first[0].meta().clone(), unrelated];
    let mut expected = vec![level2.meta().ulid.clone(), level2b.meta().ulid.clone(), first[0].meta().ulid.clone()];
    expected.sort();
    assert_eq!(superseded(&present), expected);
    let mut deletable = meta("d", 0, 1);
    deletable.compaction.deletable = true;
    assert_eq!(superseded(&[deletable]), ["d"]);
}

#[test]
fn blocks_without_samples_compact_to_nothing() {
    let fs = MemFileSystem::default();
    let first = level1(&fs, 1, (0, 2 * HOUR_MS), &[]);
    let second = level1(&fs, 2, (2 * HOUR_MS, 4 * HOUR_MS), &[]);
    let before = dirs(&fs);
    assert_eq!(run(&fs, &[first, second], 3).unwrap(), None);
    assert_eq!(dirs(&fs), before, "no block and no .tmp directory was left");
}

#[test]
fn bad_requests_are_errors() {
    let fs = MemFileSystem::default();
    let block = level1(&fs, 1, (0, 2 * HOUR_MS), &[(labels(&[("__name__", "a")]), samples(0, 1000, 10, 0.0))]);
    let error = run(&fs, &[], 1).unwrap_err();
    assert!(matches!(error, BlockError::InvalidCompaction { .. }), "{error}");
    let error = run(&fs, &[block.clone(), block.clone()], 1).unwrap_err();
    assert!(error.to_string().contains("given twice"), "{error}");
    assert!(!block.compaction_failed(), "a bad request blames no block");
}

#[test]
fn corrupt_source_fails_and_is_marked_failed() {
    let fs = MemFileSystem::default();
    let series = |from_ms: i64| vec![(labels(&[("__name__", "a")]), samples(from_ms, from_ms + HOUR_MS, 1000, 0.0))];
    let first = level1(&fs, 1, (0, 2 * HOUR_MS), &series(0));
    let second = level1(&fs, 2, (2 * HOUR_MS, 4 * HOUR_MS), &series(2 * HOUR_MS));
    // Flip a byte inside the second block's first chunk: its CRC no longer matches.
    fs.mutate(&second.dir().join("chunks/000001"), |bytes| bytes[20] ^= 0xff);
    let before = dirs(&fs);
    let error = run(&fs, &[first.clone(), second.clone()], 3).unwrap_err();
    assert!(matches!(error, BlockError::Corruption { .. }), "{error}");
    assert_eq!(dirs(&fs), before, "the failed write left nothing behind");
    assert!(first.compaction_failed() && second.compaction_failed());
    // The mark is in meta.json: a reopened block has it and the planner leaves the range alone.
    let reopened = open(&fs, first.meta());
    assert!(reopened.meta().compaction.failed);
    let third = meta("3", 4 * HOUR_MS, 6 * HOUR_MS);
    let fourth = meta("4", 6 * HOUR_MS, 8 * HOUR_MS);
    let planning = vec![first.planning_meta(), second.planning_meta(), third, fourth];
    assert!(plan(&planning, &block_ranges(2 * HOUR_MS, 54 * HOUR_MS)).is_empty());
}

#[test]
fn full_disk_fails_without_marking() {
    let fs = MemFileSystem::default();
    let series = |from_ms: i64| vec![(labels(&[("__name__", "a")]), samples(from_ms, from_ms + HOUR_MS, 1000, 0.0))];
    let first = level1(&fs, 1, (0, 2 * HOUR_MS), &series(0));
    let second = level1(&fs, 2, (2 * HOUR_MS, 4 * HOUR_MS), &series(2 * HOUR_MS));
    fs.set_capacity(Some(fs.used_size() + 100));
    let error = run(&fs, &[first.clone(), second.clone()], 3).unwrap_err();
    assert!(matches!(error, BlockError::Io { .. }), "{error}");
    assert!(!first.compaction_failed() && !second.compaction_failed(), "a full disk is retried");
    fs.set_capacity(None);
    assert!(run(&fs, &[first, second], 3).unwrap().is_some(), "the retry succeeds");
}

#[test]
fn deleted_sources_leave_only_the_compacted_block() {
    let fs = MemFileSystem::default();
    let series = |from_ms: i64| vec![(labels(&[("__name__", "a")]), samples(from_ms, from_ms + HOUR_MS, 1000, 0.0))];
    let sources = vec![
        level1(&fs, 1, (0, 2 * HOUR_MS), &series(0)),
        level1(&fs, 2, (2 * HOUR_MS, 4 * HOUR_MS), &series(2 * HOUR_MS)),
    ];
    let querier = sources[0].querier(0, HOUR_MS);
    let meta = run(&fs, &sources, 3).unwrap().unwrap();
    for source in &sources {
        source.delete_when_unused();
    }
    drop(sources);
    // A querier opened before the deletion still reads its block.
    assert_eq!(collect_series(querier.select(None, &[])).unwrap()[0].samples.len(), 3600);
    assert_eq!(dirs(&fs).len(), 2, "the block the querier holds is still there");
    drop(querier);
    assert_eq!(dirs(&fs), BTreeSet::from([meta.ulid.clone()]));
}

// ---- Retention.

#[track_caller]
fn check_retention(
    blocks: &[(&str, i64, i64, u64)],
    retention: Retention,
    extra_size_bytes: u64,
    expected: &[&str],
    counts: (u64, u64),
) {
    let input: Vec<BlockMeta> = blocks.iter().map(|(ulid, min_ms, max_ms, _)| meta(ulid, *min_ms, *max_ms)).collect();
    let sizes: Vec<u64> = blocks.iter().map(|(_, _, _, size)| *size).collect();
    let outcome = retention_outcome(&input, &sizes, &retention, extra_size_bytes);
    assert_eq!(outcome.ulids, expected, "{blocks:?} {retention:?}");
    assert_eq!((outcome.time_retentions_count, outcome.size_retentions_count), counts, "{blocks:?} {retention:?}");
    assert_eq!(retention_excess(&input, &sizes, &retention, extra_size_bytes), expected);
}

#[test]
fn time_retention_removes_whole_blocks_behind_the_newest() {
    let time = |duration_ms: i64| Retention { duration_ms: Some(duration_ms), size_bytes: None };
    let blocks = [("a", 0, 100, 1), ("b", 100, 200, 1), ("c", 200, 300, 1), ("d", 300, 400, 1)];
    check_retention(&blocks, time(1000), 0, &[], (0, 0));
    // d ends at 400: c (100 behind) stays with 150, b (200 behind) goes with every older block.
    check_retention(&blocks, time(150), 0, &["a", "b"], (1, 0));
    // Exactly the retention behind goes (upstream's `>=`).
    check_retention(&blocks, time(200), 0, &["a", "b"], (1, 0));
    check_retention(&blocks, time(201), 0, &["a"], (1, 0));
    // The newest block is never removed by time, however short the retention.
    check_retention(&blocks, time(1), 0, &["a", "b", "c"], (1, 0));
    check_retention(&[("a", 0, 100, 1)], time(1), 0, &[], (0, 0));
    // Input order does not matter; a block's end, not its start, counts.
    check_retention(&[("d", 300, 400, 1), ("big", 0, 350, 1), ("a", 0, 100, 1)], time(100), 0, &["a"], (1, 0));
    // Disabled.
    check_retention(&blocks, Retention::default(), 0, &[], (0, 0));
    check_retention(&blocks, time(0), 0, &[], (0, 0));
    check_retention(&[], time(10), 0, &[], (0, 0));
}

#[test]
fn size_retention_counts_newest_first_after_the_head() {
    let size = |size_bytes: u64| Retention { duration_ms: None, size_bytes: Some(size_bytes) };
    let blocks = [("a", 0, 100, 40), ("b", 100, 200, 30), ("c", 200, 300, 20), ("d", 300, 400, 10)];
    check_retention(&blocks, size(100), 0, &[], (0, 0));
    check_retention(&blocks, size(99), 0, &["a"], (0, 1));
    // The WAL and head chunks count first: 25 + 10 + 20 + 30 = 85 > 80.
    check_retention(&blocks, size(80), 25, &["a", "b"], (0, 1));
    // Even the newest block goes when the head alone fills the limit.
    check_retention(&blocks, size(50), 50, &["a", "b", "c", "d"], (0, 1));
    // Both limits: the union, each counted.
    let both = Retention { duration_ms: Some(200), size_bytes: Some(65) };
    check_retention(&blocks, both, 0, &["a", "b"], (1, 1));
    check_retention(&blocks, Retention { size_bytes: Some(0), ..Retention::default() }, 1000, &[], (0, 0));
}

// ---- Settings.

#[test]
fn settings_resolve_with_prometheus_defaults() {
    #[track_caller]
    fn check(settings: RetentionSettings, expected: (Option<i64>, Option<u64>, i64, i64)) {
        let resolved = settings.resolve();
        let got = (
            resolved.retention.duration_ms,
            resolved.retention.size_bytes,
            resolved.block_duration_min_ms,
            resolved.block_duration_max_ms,
        );
        assert_eq!(got, expected, "{settings:?}");
    }
    let h = HOUR_MS;
    let d = 24 * h;
    let unset = RetentionSettings::default();
    check(unset, (Some(15 * d), None, 2 * h, 36 * h));
    check(RetentionSettings { duration_ms: Some(30 * d), ..unset }, (Some(30 * d), None, 2 * h, 72 * h));
    check(RetentionSettings { duration_ms: Some(365 * d), ..unset }, (Some(365 * d), None, 2 * h, 31 * d));
    // Size alone: no time retention, blocks up to 31 d.
    check(RetentionSettings { size_bytes: Some(512 << 20), ..unset }, (None, Some(512 << 20), 2 * h, 31 * d));
    // Zero counts as unset, as upstream's flags.
    check(
        RetentionSettings { duration_ms: Some(0), size_bytes: Some(0), ..unset },
        (Some(15 * d), None, 2 * h, 36 * h),
    );
    // A short retention cannot push the maximum below the minimum.
    check(RetentionSettings { duration_ms: Some(h), ..unset }, (Some(h), None, 2 * h, 2 * h));
    check(
        RetentionSettings { block_duration_min_ms: Some(h), block_duration_max_ms: Some(9 * h), ..unset },
        (Some(15 * d), None, h, 9 * h),
    );
    // Layers: the first's values win where set.
    let flags = RetentionSettings { duration_ms: Some(d), ..unset };
    let file = RetentionSettings { duration_ms: Some(2 * d), size_bytes: Some(7), ..unset };
    assert_eq!(flags.or(file), RetentionSettings { duration_ms: Some(d), size_bytes: Some(7), ..unset });
}

#[test]
fn settings_validation_names_the_problem() {
    #[track_caller]
    fn check(settings: RetentionSettings, expected_error: Option<&str>) {
        match (settings.validate(), expected_error) {
            (Ok(()), None) => {}
            (Err(error), Some(part)) => assert!(error.contains(part), "{error:?} lacks {part:?}"),
            (got, _) => panic!("{settings:?}: got {got:?}, expected {expected_error:?}"),
        }
    }
    let unset = RetentionSettings::default();
    check(unset, None);
    check(
        RetentionSettings { block_duration_max_ms: Some(HOUR_MS), ..unset },
        Some("max block duration 1h is shorter than min block duration 2h"),
    );
    check(
        RetentionSettings { block_duration_min_ms: Some(0), ..unset },
        Some("min block duration must be greater than zero"),
    );
    check(
        RetentionSettings { block_duration_max_ms: Some(-1), ..unset },
        Some("max block duration must be greater than zero"),
    );
    check(RetentionSettings { duration_ms: Some(-1), ..unset }, Some("retention time must not be negative"));
    check(
        RetentionSettings { block_duration_min_ms: Some(HOUR_MS), block_duration_max_ms: Some(HOUR_MS), ..unset },
        None,
    );
}

#[tokio::test]
async fn db_open_removes_interrupted_deletions() {
    let fs = MemFileSystem::default();
    let block = level1(&fs, 1, (0, 2 * HOUR_MS), &[(labels(&[("__name__", "a")]), samples(0, 1000, 10, 0.0))]);
    let leftover =
        PathBuf::from(format!("{PARENT}/{}{}", Ulid::new(5, 5), crate::tsdb::block::TMP_FOR_DELETION_SUFFIX));
    let mut file = fs.open_append(&leftover.join("index")).unwrap();
    file.write_all(b"half").unwrap();
    let db = crate::tsdb::Db::open(
        Arc::new(fs.clone()),
        &crate::io::TokioSpawner,
        Path::new(PARENT),
        crate::tsdb::DbOptions::default(),
    )
    .unwrap();
    assert_eq!(db.stats().block_count, 1);
    assert!(fs.paths().iter().all(|path| !path.starts_with(&leftover)), "the leftover is gone");
    assert!(fs.paths().iter().any(|path| path.starts_with(block.dir())), "the block stays");
}

/// One generated source block: its range and, per series name, sorted distinct timestamps.
type GeneratedBlock = ((i64, i64), Vec<(usize, Vec<i64>)>);

fn generated_block() -> impl proptest::strategy::Strategy<Value = GeneratedBlock> {
    use proptest::prelude::*;
    (0_i64..5_000, 1_i64..5_000).prop_flat_map(|(min_ms, length_ms)| {
        let max_ms = min_ms + length_ms;
        let series =
            proptest::collection::btree_map(0_usize..4, proptest::collection::btree_set(min_ms..max_ms, 0..300), 0..4);
        (
            Just((min_ms, max_ms)),
            series.prop_map(|map| map.into_iter().map(|(name, set)| (name, set.into_iter().collect())).collect()),
        )
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Any blocks, overlapping or not, merge into the union of their samples by timestamp,
    /// the earliest block (by minTime, then ULID) winning a tie, in chunks of at most 120.
    #[test]
    fn compaction_is_the_ordered_union(blocks in proptest::collection::vec(generated_block(), 1..4)) {
        let fs = MemFileSystem::default();
        let names = ["a", "b", "c", "d"];
        let mut opened = Vec::new();
        for (index, ((min_ms, max_ms), series)) in blocks.iter().enumerate() {
            let input: Vec<(Labels, Vec<Sample>)> = series
                .iter()
                .map(|(name, timestamps)| {
                    let samples = timestamps
                        .iter()
                        .map(|t| Sample { timestamp_ms: *t, value: (index * 100_000) as f64 + *t as f64 })
                        .collect();
                    (labels(&[("__name__", names[*name])]), samples)
                })
                .collect();
            opened.push(level1(&fs, index as u128 + 1, (*min_ms, *max_ms), &input));
        }
        let mut expected: BTreeMap<Labels, BTreeMap<i64, u64>> = BTreeMap::new();
        let mut by_start: Vec<&Block> = opened.iter().collect();
        by_start.sort_by(|a, b| (a.meta().min_time_ms, &a.meta().ulid).cmp(&(b.meta().min_time_ms, &b.meta().ulid)));
        for block in by_start {
            for (series_labels, found) in contents(block) {
                let entry = expected.entry(series_labels).or_default();
                for (timestamp_ms, value_bits) in found {
                    entry.entry(timestamp_ms).or_insert(value_bits);
                }
            }
        }
        let expected: Vec<(Labels, Vec<(i64, u64)>)> =
            expected.into_iter().map(|(series_labels, samples)| (series_labels, samples.into_iter().collect())).collect();
        let result = run(&fs, &opened, 77).unwrap();
        let sample_count: usize = expected.iter().map(|(_, samples)| samples.len()).sum();
        match result {
            None => proptest::prop_assert_eq!(sample_count, 0),
            Some(meta) => {
                let merged = open(&fs, &meta);
                proptest::prop_assert_eq!(contents(&merged), expected);
                proptest::prop_assert_eq!(meta.stats.sample_count, sample_count as u64);
                for (_, chunks) in chunk_bytes(&merged) {
                    for bytes in chunks {
                        let count = u16::from_be_bytes([bytes[0], bytes[1]]);
                        proptest::prop_assert!(count > 0 && count <= 120, "chunk of {} samples", count);
                    }
                }
            }
        }
    }
}
