//! Block round trips: write with [`write_block`], open with [`Block::open`], query with every
//! matcher kind; atomicity and corruption handling; a block promtool 2.42 wrote.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::io::MemFileSystem;
use crate::model::STALE_NAN_BITS;
use crate::storage::collect_series;

const PARENT: &str = "/data";
const ULID_TIME_MS: u64 = 1_700_000_000_000;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

/// Samples every 15 s from `start_ms`, with a NaN and a stale marker in the middle.
fn samples(start_ms: i64, count: usize, offset: f64) -> Vec<Sample> {
    (0..count)
        .map(|index| {
            let value = match index {
                7 => f64::NAN,
                11 => f64::from_bits(STALE_NAN_BITS),
                _ => offset + index as f64 * 0.5,
            };
            Sample { timestamp_ms: start_ms + index as i64 * 15_000, value }
        })
        .collect()
}

/// Four series sorted by labels, 300 samples each (three chunks of 120, 120, 60).
fn input() -> Vec<(Labels, Vec<Sample>)> {
    let mut series = vec![
        (labels(&[("__name__", "up"), ("instance", "a:9100"), ("job", "node")]), samples(0, 300, 1.0)),
        (labels(&[("__name__", "up"), ("instance", "b:9100"), ("job", "node")]), samples(5, 300, 2.0)),
        (labels(&[("__name__", "http_requests_total"), ("code", "200"), ("job", "api")]), samples(0, 300, 3.0)),
        (labels(&[("__name__", "http_requests_total"), ("code", "500"), ("job", "api")]), samples(1, 300, 4.0)),
    ];
    series.sort_by(|a, b| a.0.cmp(&b.0));
    series
}

fn write(fs: &MemFileSystem, series: &[(Labels, Vec<Sample>)]) -> Result<BlockMeta, BlockError> {
    let chunked = series.iter().map(|(labels, samples)| (labels.clone(), encode_chunks(samples, 120)));
    write_block(Arc::new(fs.clone()), Path::new(PARENT), chunked, ULID_TIME_MS, 42, 0, 10_000_000)
}

fn open(fs: &MemFileSystem, meta: &BlockMeta) -> Block {
    Block::open(Arc::new(fs.clone()), &Path::new(PARENT).join(&meta.ulid)).unwrap()
}

/// Sample values compared by bits, so NaN and stale markers count.
fn bits(series: &[Series]) -> Vec<(Labels, Vec<(i64, u64)>)> {
    series
        .iter()
        .map(|s| {
            (s.labels.clone(), s.samples.iter().map(|sample| (sample.timestamp_ms, value_bits(sample.value))).collect())
        })
        .collect()
}

/// A value's bits, every NaN but the stale marker made one (parsers differ in NaN payloads).
fn value_bits(value: f64) -> u64 {
    if value.is_nan() && value.to_bits() != STALE_NAN_BITS {
        f64::NAN.to_bits()
    } else {
        value.to_bits()
    }
}

fn expected_bits(series: &[(Labels, Vec<Sample>)], min_ms: i64, max_ms: i64) -> Vec<(Labels, Vec<(i64, u64)>)> {
    series
        .iter()
        .map(|(labels, samples)| Series {
            labels: labels.clone(),
            samples: samples.iter().copied().filter(|s| s.timestamp_ms >= min_ms && s.timestamp_ms <= max_ms).collect(),
        })
        .filter(|s| !s.samples.is_empty())
        .collect::<Vec<_>>()
        .pipe(|series| bits(&series))
}

trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl<T> Pipe for T {}

fn matcher(kind: MatchKind, name: &str, value: &str) -> Matcher {
    Matcher::new(kind, name, value).unwrap()
}

#[test]
fn ulids_encode_as_crockford_base32() {
    #[track_caller]
    fn check(time_ms: u64, random: u128, expected: &str) {
        let ulid = Ulid::new(time_ms, random);
        assert_eq!(ulid.to_string(), expected);
        assert_eq!(Ulid::parse(expected), Some(ulid));
        assert_eq!(Ulid::parse(&expected.to_lowercase()), Some(ulid));
        assert_eq!(ulid.time_ms(), time_ms & ((1 << 48) - 1));
    }
    check(0, 0, "00000000000000000000000000");
    check(1, 0, "00000000010000000000000000");
    check(0, 31, "0000000000000000000000000Z");
    check((1 << 48) - 1, (1 << 80) - 1, "7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
    // The block promtool wrote at 2026-12-01 20:42:15.192 UTC was named 01M8SNG08RVZSAPKKZZ1XSXN7C.
    assert_eq!(Ulid::parse("01M8SNG08RVZSAPKKZZ1XSXN7C").map(Ulid::time_ms), Some(1_796_157_735_192));
    assert_eq!(Ulid::parse("8ZZZZZZZZZZZZZZZZZZZZZZZZZ"), None);
    assert_eq!(Ulid::parse("0000000000000000000000000U"), None);
    assert_eq!(Ulid::parse("000"), None);
}

#[test]
fn written_block_has_upstream_layout_and_meta() {
    let fs = MemFileSystem::default();
    let meta = write(&fs, &input()).unwrap();
    assert_eq!(meta.ulid, Ulid::new(ULID_TIME_MS, 42).to_string());
    assert_eq!(meta.stats, BlockStats { sample_count: 1200, series_count: 4, chunk_count: 12 });
    assert_eq!(meta.compaction, BlockCompaction { level: 1, sources: vec![meta.ulid.clone()], ..Default::default() });
    let dir = Path::new(PARENT).join(&meta.ulid);
    let paths: Vec<PathBuf> = fs.paths();
    let expected: Vec<PathBuf> =
        ["chunks/000001", "index", "meta.json", "tombstones"].iter().map(|name| dir.join(name)).collect();
    assert_eq!(paths, expected, "no .tmp directory is left");
    assert_eq!(fs.read(&dir.join("tombstones")).unwrap(), [0x01, 0x30, 0xba, 0x30, 1, 0, 0, 0, 0]);
    let json: serde_json::Value = serde_json::from_slice(&fs.read(&dir.join("meta.json")).unwrap()).unwrap();
    assert_eq!(json["minTime"], 0);
    assert_eq!(json["maxTime"], 10_000_000);
    assert_eq!(json["stats"]["numSamples"], 1200);
    assert_eq!(json["version"], 1);
    assert_eq!(open(&fs, &meta).meta(), &meta);
}

#[test]
fn block_round_trips_every_sample() {
    let fs = MemFileSystem::default();
    let series = input();
    let meta = write(&fs, &series).unwrap();
    let block = open(&fs, &meta);
    let all =
        collect_series(block.querier(i64::MIN, i64::MAX).select(None, &[matcher(MatchKind::Regex, "__name__", ".+")]))
            .unwrap();
    assert_eq!(bits(&all), expected_bits(&series, i64::MIN, i64::MAX));
    // A range cutting through chunks.
    let (min_ms, max_ms) = (1_000_000, 2_000_000);
    let part = collect_series(block.querier(min_ms, max_ms).select(None, &[matcher(MatchKind::NotEqual, "job", "x")]))
        .unwrap();
    assert_eq!(bits(&part), expected_bits(&series, min_ms, max_ms));
    // Outside every sample.
    let none = collect_series(block.querier(9_000_000, 9_500_000).select(None, &[])).unwrap();
    assert!(none.is_empty());
}

#[test]
fn chunks_spread_over_several_segment_files_read_back() {
    let fs = MemFileSystem::default();
    let series = input();
    let chunked = series.iter().map(|(labels, samples)| (labels.clone(), encode_chunks(samples, 50)));
    let ulid = Ulid::new(ULID_TIME_MS, 3);
    let meta =
        write_block_sized(Arc::new(fs.clone()), Path::new(PARENT), chunked, ulid, (0, 10_000_000), 1000).unwrap();
    let chunks_dir = Path::new(PARENT).join(&meta.ulid).join("chunks");
    let segment_count = fs.list_dir(&chunks_dir).unwrap().len();
    assert!(segment_count > 3, "24 chunks of ~100 bytes in files of 1000 bytes: got {segment_count} files");
    let got = collect_series(open(&fs, &meta).querier(i64::MIN, i64::MAX).select(None, &[])).unwrap();
    assert_eq!(bits(&got), expected_bits(&series, i64::MIN, i64::MAX));
}

#[test]
fn matchers_resolve_through_postings() {
    let fs = MemFileSystem::default();
    let series = input();
    let meta = write(&fs, &series).unwrap();
    let querier = open(&fs, &meta).querier(i64::MIN, i64::MAX);
    #[track_caller]
    fn check(querier: &BlockQuerier, series: &[(Labels, Vec<Sample>)], matchers: &[(MatchKind, &str, &str)]) {
        let matchers: Vec<Matcher> = matchers.iter().map(|(kind, name, value)| matcher(*kind, name, value)).collect();
        let got: Vec<Labels> =
            collect_series(querier.select(None, &matchers)).unwrap().into_iter().map(|s| s.labels).collect();
        let expected: Vec<Labels> = series
            .iter()
            .filter(|(labels, _)| matchers.iter().all(|m| m.matches(labels.get(&m.name).unwrap_or(""))))
            .map(|(labels, _)| labels.clone())
            .collect();
        assert_eq!(got, expected, "{matchers:?}");
    }
    use MatchKind::{Equal, NotEqual, NotRegex, Regex};
    let cases: &[&[(MatchKind, &str, &str)]] = &[
        &[(Equal, "__name__", "up")],
        &[(Equal, "__name__", "up"), (Equal, "instance", "b:9100")],
        &[(Equal, "__name__", "missing")],
        &[(Equal, "missing", "x")],
        &[(Equal, "missing", "")],
        &[(NotEqual, "code", "200")],
        &[(NotEqual, "job", "node"), (Equal, "code", "500")],
        &[(Regex, "code", "200|500")],
        &[(Regex, "code", "2.*")],
        &[(Regex, "instance", "[ab]:9100")],
        &[(Regex, "code", "")],
        &[(Regex, "code", "200|")],
        &[(Regex, "job", ".*")],
        &[(NotRegex, "code", "5.*")],
        &[(NotRegex, "code", "200|500")],
        &[(NotRegex, "job", ".+")],
        &[(NotRegex, "instance", "a.*"), (Equal, "job", "node")],
        &[(NotEqual, "missing", "x")],
        &[],
    ];
    for case in cases {
        check(&querier, &series, case);
    }
}

#[test]
fn label_names_and_values_come_from_the_index() {
    let fs = MemFileSystem::default();
    let meta = write(&fs, &input()).unwrap();
    let querier = open(&fs, &meta).querier(i64::MIN, i64::MAX);
    assert_eq!(querier.label_names(&[]).unwrap(), ["__name__", "code", "instance", "job"]);
    assert_eq!(
        querier.label_names(&[matcher(MatchKind::Equal, "job", "node")]).unwrap(),
        ["__name__", "instance", "job"]
    );
    assert_eq!(querier.label_values("job", &[]).unwrap(), ["api", "node"]);
    assert_eq!(querier.label_values("code", &[matcher(MatchKind::Regex, "code", "5.*")]).unwrap(), ["500"]);
    assert!(querier.label_values("missing", &[]).unwrap().is_empty());
    // Through the storage seam, as PromQL sees it.
    let block = open(&fs, &meta);
    let boxed = Queryable::querier(&block, 0, 15_000).unwrap();
    let series = collect_series(boxed.select(None, &[matcher(MatchKind::Equal, "job", "node")])).unwrap();
    let counts: Vec<usize> = series.iter().map(|s| s.samples.len()).collect();
    assert_eq!(counts, [2, 1], "a:9100 at 0 and 15 s, b:9100 at 5 ms only");
}

#[test]
fn writer_rejects_bad_input_and_leaves_no_block() {
    #[track_caller]
    fn check(series: Vec<(Labels, Vec<BlockChunk>)>, expected: &str) {
        let fs = MemFileSystem::default();
        let result = write_block(Arc::new(fs.clone()), Path::new(PARENT), series, ULID_TIME_MS, 1, 0, 1000);
        let error = result.unwrap_err().to_string();
        assert!(error.contains(expected), "{error}");
        assert!(fs.paths().is_empty(), "{:?}", fs.paths());
    }
    let chunk = |start_ms: i64, end_ms: i64| {
        encode_chunks(
            &[Sample { timestamp_ms: start_ms, value: 1.0 }, Sample { timestamp_ms: end_ms, value: 2.0 }],
            120,
        )
    };
    let a = labels(&[("__name__", "a")]);
    let b = labels(&[("__name__", "b")]);
    check(vec![(b.clone(), chunk(1, 2)), (a.clone(), chunk(1, 2))], "out of order");
    check(vec![(a.clone(), chunk(1, 2)), (a.clone(), chunk(3, 4))], "out of order");
    check(vec![(Labels::empty(), chunk(1, 2))], "empty label set");
    check(vec![(a.clone(), chunk(1, 1000))], "outside block");
    check(vec![(a.clone(), [chunk(1, 5), chunk(5, 6)].concat())], "overlaps");
    check(vec![(a, vec![BlockChunk { min_time_ms: 1, max_time_ms: 1, bytes: vec![0] }])], "no header");
}

#[test]
fn stale_tmp_directory_is_replaced_and_crash_before_rename_leaves_no_block() {
    let fs = MemFileSystem::default();
    let ulid = Ulid::new(ULID_TIME_MS, 42).to_string();
    let tmp = Path::new(PARENT).join(format!("{ulid}.tmp"));
    fs.open_append(&tmp.join("index")).unwrap().write_all(b"garbage from a crash").unwrap();
    let meta = write(&fs, &input()).unwrap();
    assert!(fs.paths().iter().all(|path| !path.starts_with(&tmp)));
    open(&fs, &meta);
    // A failed rename leaves only the .tmp directory, which no reader opens as a block.
    let other = MemFileSystem::default();
    other.fail_next_rename();
    assert!(matches!(write(&other, &input()), Err(BlockError::Io { context: "rename block directory", .. })));
    assert!(other.paths().iter().all(|path| path.starts_with(&tmp)));
}

#[test]
fn damaged_blocks_are_typed_errors() {
    #[track_caller]
    fn check(file: &str, change: fn(&mut Vec<u8>), expected: &str) {
        let fs = MemFileSystem::default();
        let meta = write(&fs, &input()).unwrap();
        let dir = Path::new(PARENT).join(&meta.ulid);
        fs.mutate(&dir.join(file), change);
        let result = Block::open(Arc::new(fs.clone()), &dir).and_then(|block| {
            let querier = block.querier(i64::MIN, i64::MAX);
            match collect_series(querier.select(None, &[])) {
                Ok(_) => Ok(()),
                Err(StorageError::Read { source, .. }) => Err(*source.downcast::<BlockError>().unwrap()),
                Err(other) => panic!("{other}"),
            }
        });
        let error = result.expect_err("damage must be detected").to_string();
        assert!(error.contains(expected), "{error}");
    }
    check("meta.json", |bytes| bytes.truncate(10), "bad meta.json");
    check(
        "meta.json",
        |bytes| *bytes = br#"{"ulid":"x","minTime":0,"maxTime":1,"compaction":{"level":1},"version":1}"#.to_vec(),
        "bad ulid",
    );
    check(
        "meta.json",
        |bytes| {
            *bytes =
                br#"{"ulid":"00000000000000000000000000","minTime":0,"maxTime":1,"compaction":{"level":1},"version":2}"#
                    .to_vec()
        },
        "version 2",
    );
    check("index", |bytes| bytes[0] ^= 0xff, "magic");
    check("index", |bytes| bytes.truncate(bytes.len() - 1), "CRC");
    check("index", |bytes| bytes[40] ^= 1, "CRC"); // Inside the series section.
    check("chunks/000001", |bytes| bytes[20] ^= 1, "chunk CRC");
    check("chunks/000001", |bytes| bytes.truncate(100), "past the end");
    check("tombstones", |bytes| bytes[8] ^= 1, "tombstones CRC");
    check(
        "tombstones",
        |bytes| {
            bytes.truncate(5);
            bytes.extend_from_slice(&[1, 2, 3]);
            let crc = crc32c::crc32c(&[1, 2, 3]);
            bytes.extend_from_slice(&crc.to_be_bytes());
        },
        "has tombstones",
    );
}

/// A block `promtool tsdb create-blocks-from openmetrics` (2.42.0) wrote from
/// `testdata/promtool-compat.om`; every sample of the input comes back.
#[test]
fn reads_a_block_promtool_wrote() {
    let fs = MemFileSystem::default();
    let dir = Path::new("/promtool/01M8SNQY5PC82M62AFRR24VN7X");
    let files: [(&str, &[u8]); 4] = [
        ("meta.json", include_bytes!("../testdata/promtool-2.42-block/meta.json")),
        ("index", include_bytes!("../testdata/promtool-2.42-block/index")),
        ("tombstones", include_bytes!("../testdata/promtool-2.42-block/tombstones")),
        ("chunks/000001", include_bytes!("../testdata/promtool-2.42-chunks-000001")),
    ];
    for (name, bytes) in files {
        fs.open_append(&dir.join(name)).unwrap().write_all(bytes).unwrap();
    }
    let block = Block::open(Arc::new(fs), dir).unwrap();
    let mut expected: BTreeMap<Labels, Vec<(i64, u64)>> = BTreeMap::new();
    for line in include_str!("../testdata/promtool-compat.om").lines().filter(|line| !line.starts_with('#')) {
        let (series, rest) = line.rsplit_once('}').unwrap();
        let (name, pairs) = series.split_once('{').unwrap();
        let mut parsed = vec![("__name__".to_string(), name.to_string())];
        for pair in pairs.split(',').filter(|pair| !pair.is_empty()) {
            let (label, value) = pair.split_once('=').unwrap();
            parsed.push((label.to_string(), value.trim_matches('"').to_string()));
        }
        let mut fields = rest.split_whitespace();
        let value: f64 = fields.next().unwrap().parse().unwrap();
        let timestamp_s: f64 = fields.next().unwrap().parse().unwrap();
        expected
            .entry(Labels::from_pairs(parsed))
            .or_default()
            .push(((timestamp_s * 1000.0).round() as i64, value_bits(value)));
    }
    let got = collect_series(block.querier(i64::MIN, i64::MAX).select(None, &[])).unwrap();
    assert_eq!(bits(&got), expected.into_iter().collect::<Vec<_>>());
    assert_eq!(block.meta().stats.sample_count, got.iter().map(|s| s.samples.len() as u64).sum::<u64>());
}

fn arbitrary_block() -> impl Strategy<Value = Vec<(Labels, Vec<Sample>)>> {
    let labels = proptest::collection::btree_map("[a-c]{1,2}", "[x-z0-9]{1,3}", 0..3).prop_map(|mut pairs| {
        pairs.insert("__name__".to_string(), "m".to_string());
        Labels::from_pairs(pairs)
    });
    let samples = proptest::collection::vec((1_i64..100_000, any::<u64>()), 1..400).prop_map(|raw| {
        let mut timestamp_ms = 0;
        raw.into_iter()
            .map(|(step_ms, value_bits)| {
                timestamp_ms += step_ms;
                Sample { timestamp_ms, value: f64::from_bits(value_bits) }
            })
            .collect::<Vec<_>>()
    });
    proptest::collection::btree_map(labels, samples, 0..12).prop_map(|map| map.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_blocks_round_trip(series in arbitrary_block(), per_chunk in 1_usize..200, range in (0_i64..20_000_000, 0_i64..20_000_000)) {
        let fs = MemFileSystem::default();
        let chunked = series.iter().map(|(labels, samples)| (labels.clone(), encode_chunks(samples, per_chunk)));
        let meta = write_block(Arc::new(fs.clone()), Path::new(PARENT), chunked, ULID_TIME_MS, 7, 0, 50_000_000).unwrap();
        let block = open(&fs, &meta);
        let (min_ms, max_ms) = (range.0.min(range.1), range.0.max(range.1));
        let got = collect_series(block.querier(min_ms, max_ms).select(None, &[])).unwrap();
        prop_assert_eq!(bits(&got), expected_bits(&series, min_ms, max_ms));
    }

    #[test]
    fn random_garbage_in_block_files_never_panics(garbage in proptest::collection::vec(any::<u8>(), 0..300), file_index in 0_usize..4) {
        let fs = MemFileSystem::default();
        let meta = write(&fs, &input()).unwrap();
        let dir = Path::new(PARENT).join(&meta.ulid);
        let file = ["meta.json", "index", "tombstones", "chunks/000001"][file_index];
        fs.mutate(&dir.join(file), |bytes| {
            let keep = bytes.len().min(garbage.len());
            bytes.truncate(bytes.len() - keep);
            bytes.extend_from_slice(&garbage);
        });
        if let Ok(block) = Block::open(Arc::new(fs), &dir) {
            let querier = block.querier(i64::MIN, i64::MAX);
            let _ = collect_series(querier.select(None, &[]));
            let _ = querier.label_values("job", &[matcher(MatchKind::Regex, "job", "n.*")]);
        }
    }
}

#[test]
fn size_is_the_sum_of_the_block_files() {
    let fs = MemFileSystem::default();
    let meta = write(&fs, &input()).unwrap();
    let block = open(&fs, &meta);
    let dir = Path::new(PARENT).join(&meta.ulid);
    let expected: u64 =
        fs.paths().iter().filter(|path| path.starts_with(&dir)).map(|path| fs.file_size(path).unwrap()).sum();
    assert_eq!(block.size_bytes(), expected);
    assert!(block.size_bytes() > 1200, "1200 samples take more than a byte each with the index");
}

#[test]
fn marked_block_is_removed_when_the_last_handle_drops() {
    let fs = MemFileSystem::default();
    let meta = write(&fs, &input()).unwrap();
    let block = open(&fs, &meta);
    let clone = block.clone();
    let querier = block.querier(0, i64::MAX);
    assert!(!block.is_marked_for_deletion());
    block.delete_when_unused();
    assert!(clone.is_marked_for_deletion());
    drop(block);
    drop(clone);
    // The querier keeps the files: it still reads every sample.
    let read = collect_series(querier.select(None, &[])).unwrap();
    assert_eq!(bits(&read), expected_bits(&input(), 0, i64::MAX));
    assert!(!fs.paths().is_empty());
    drop(querier);
    assert_eq!(fs.paths(), Vec::<PathBuf>::new(), "the directory and its .tmp-for-deletion are gone");
    // An unmarked block's drop deletes nothing.
    let meta = write(&fs, &input()).unwrap();
    drop(open(&fs, &meta));
    assert_eq!(fs.paths().len(), 4);
}
