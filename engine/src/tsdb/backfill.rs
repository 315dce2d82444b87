//! Backfill: blocks from an OpenMetrics file, as `promtool tsdb create-blocks-from openmetrics`
//! makes them (cmd/promtool/backfill.go).
//!
//! Every sample must carry a timestamp. Samples are grouped into blocks aligned to the block
//! duration ([`compatible_block_duration_ms`]: 2 h, or the largest of promtool's ranges 2 h x 3^i
//! not above `--max-block-duration`); a block's range in `meta.json` is its samples' own range
//! (first sample, last sample + 1 ms), as promtool's `BlockWriter.Flush` sets it. Series are
//! sorted by labels and cut into XOR chunks of 120 samples ([`CHUNK_SAMPLE_COUNT_MAX_DEFAULT`]),
//! then written with [`write_block`] (atomic: `<ULID>.tmp`, sync, rename).
//!
//! Order: the OpenMetrics parser already refuses timestamps going backwards inside a metric
//! (outside info families); after the conversion to milliseconds this module refuses any
//! sample older than its series' previous one, or at the same millisecond with a different
//! value, naming the line ([`BackfillError::OutOfOrder`], [`BackfillError::DuplicateTimestamp`]);
//! an exact duplicate is skipped, as Prometheus' head skips it.
//!
//! Differences from promtool: negative timestamps are placed with floor division (promtool's
//! truncating division aligns the first block toward zero and silently drops the samples before
//! it); out-of-order samples always fail (promtool drops those that share an appender batch and
//! fails on the others).
//!
//! Memory: one pass over the input, which the caller holds (promtool maps the whole file too, and
//! parses it again for every block range); samples go straight into compressed chunks per block
//! and series (about 1.3 bytes a sample plus 128 bytes per open chunk), and each series' labels
//! are kept once. So memory is the input plus about a twentieth of it, not one copy of every
//! sample; bounded by the input size.
//!
//! Concurrency: a plain function; it writes only under `output_dir`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use super::block::{write_block, BlockChunk, BlockError, BlockMeta};
use super::chunk::XorChunk;
use crate::exposition::openmetrics::{series_labels, Entry, ParseError, ParseOptions, Parser};
use crate::io::FileSystem;
use crate::limits::{BLOCK_RANGE_MS_DEFAULT, CHUNK_SAMPLE_COUNT_MAX_DEFAULT};
use crate::model::Labels;

/// Block ranges promtool may choose: 2 h x 3^i for i in 0..10 (`tsdb.ExponentialBlockRanges`).
const BLOCK_RANGE_COUNT: u32 = 10;

/// Backfill settings.
#[derive(Clone, Debug)]
pub struct BackfillOptions {
    /// promtool's `--max-block-duration` (default 2 h).
    pub max_block_duration_ms: i64,
    /// Time part of the blocks' ULIDs, Unix ms.
    pub ulid_time_ms: u64,
    /// Randomness of the first block's ULID; later blocks add their index.
    pub ulid_random: u128,
    /// Parser relaxations.
    pub parse: ParseOptions,
}

impl Default for BackfillOptions {
    fn default() -> Self {
        BackfillOptions {
            max_block_duration_ms: BLOCK_RANGE_MS_DEFAULT,
            ulid_time_ms: 0,
            ulid_random: 0,
            parse: ParseOptions::default(),
        }
    }
}

/// Why a backfill failed. Blocks already written stay (each is whole); none is written after
/// an input error, since the input is read completely first.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    /// The input is not valid OpenMetrics.
    #[error("parse: {source}")]
    Parse {
        /// Cause.
        source: ParseError,
    },
    /// A sample without a timestamp.
    #[error("line {line}: expected a timestamp for series {series}, got none")]
    MissingTimestamp {
        /// 1-based line.
        line: usize,
        /// The series as written.
        series: String,
    },
    /// A sample older than its series' previous one.
    #[error(
        "line {line}: out of order sample for series {series}: {timestamp_ms} ms after {previous_timestamp_ms} ms"
    )]
    OutOfOrder {
        /// 1-based line.
        line: usize,
        /// The series.
        series: String,
        /// The sample's timestamp, Unix ms.
        timestamp_ms: i64,
        /// The previous sample's.
        previous_timestamp_ms: i64,
    },
    /// A second, different value at the same millisecond.
    #[error("line {line}: duplicate sample for timestamp {timestamp_ms} ms of series {series} with a different value")]
    DuplicateTimestamp {
        /// 1-based line.
        line: usize,
        /// The series.
        series: String,
        /// The timestamp, Unix ms.
        timestamp_ms: i64,
    },
    /// Writing a block failed.
    #[error("write block: {source}")]
    Block {
        /// Cause.
        source: BlockError,
    },
    /// The output directory could not be created.
    #[error("create output directory {path}: {source}")]
    Io {
        /// The directory.
        path: std::path::PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// promtool's `getCompatibleBlockDuration`: 2 h, or for a larger maximum the largest range
/// 2 h x 3^i (i < 10) not above it (the largest when the maximum exceeds them all).
pub fn compatible_block_duration_ms(max_block_duration_ms: i64) -> i64 {
    let ranges = (0..BLOCK_RANGE_COUNT).map(|exponent| BLOCK_RANGE_MS_DEFAULT * 3_i64.pow(exponent));
    ranges.take_while(|range_ms| *range_ms <= max_block_duration_ms).last().unwrap_or(BLOCK_RANGE_MS_DEFAULT)
}

struct SeriesState {
    labels: Labels,
    last: Option<(i64, u64)>,
}

/// Chunks of one series in one block.
#[derive(Default)]
struct SeriesChunks {
    closed: Vec<BlockChunk>,
    open: XorChunk,
}

fn close(chunk: &XorChunk) -> BlockChunk {
    BlockChunk { min_time_ms: chunk.min_time_ms(), max_time_ms: chunk.max_time_ms(), bytes: chunk.bytes().to_vec() }
}

/// Writes the samples of the OpenMetrics exposition `input` as blocks under `output_dir`
/// (created if missing), oldest block first; returns their metas. See the module docs.
pub fn create_blocks_from_openmetrics(
    fs: Arc<dyn FileSystem>,
    input: &[u8],
    output_dir: &Path,
    options: &BackfillOptions,
) -> Result<Vec<BlockMeta>, BackfillError> {
    let block_duration_ms = compatible_block_duration_ms(options.max_block_duration_ms);
    let mut parser = Parser::with_options(input, options.parse);
    // Raw series text -> series index; lookup only, never iterated.
    let mut by_text: HashMap<&str, u32> = HashMap::new();
    let mut by_labels: HashMap<Labels, u32> = HashMap::new();
    let mut series: Vec<SeriesState> = Vec::new();
    // (block start, series index) -> chunks; drained in sorted order below.
    let mut chunks: HashMap<(i64, u32), SeriesChunks> = HashMap::new();
    while let Some(entry) = parser.next() {
        let entry = entry.map_err(|source| BackfillError::Parse { source })?;
        let Entry::Sample { series: text, value, timestamp_ms, .. } = entry else { continue };
        let line = parser.line_number();
        let Some(timestamp_ms) = timestamp_ms else {
            return Err(BackfillError::MissingTimestamp { line, series: text.to_string() });
        };
        let index = match by_text.get(text) {
            Some(index) => *index,
            None => {
                let labels = series_labels(text).map_err(|source| BackfillError::Parse { source })?;
                let next_index = series.len() as u32;
                let index = *by_labels.entry(labels.clone()).or_insert(next_index);
                if index == next_index {
                    series.push(SeriesState { labels, last: None });
                }
                by_text.insert(text, index);
                index
            }
        };
        let state = &mut series[index as usize];
        let value_bits = value.to_bits();
        match state.last {
            Some((previous_ms, _)) if timestamp_ms < previous_ms => {
                return Err(BackfillError::OutOfOrder {
                    line,
                    series: state.labels.to_string(),
                    timestamp_ms,
                    previous_timestamp_ms: previous_ms,
                });
            }
            Some((previous_ms, previous_bits)) if timestamp_ms == previous_ms => {
                if previous_bits == value_bits {
                    continue;
                }
                return Err(BackfillError::DuplicateTimestamp { line, series: state.labels.to_string(), timestamp_ms });
            }
            _ => {}
        }
        state.last = Some((timestamp_ms, value_bits));
        let block_start_ms = timestamp_ms.div_euclid(block_duration_ms) * block_duration_ms;
        let entry = chunks.entry((block_start_ms, index)).or_default();
        if entry.open.sample_count() >= CHUNK_SAMPLE_COUNT_MAX_DEFAULT {
            entry.closed.push(close(&entry.open));
            entry.open = XorChunk::new();
        }
        entry.open.append(timestamp_ms, value);
    }
    drop(by_text);
    drop(by_labels);
    let mut blocks: BTreeMap<i64, Vec<(u32, SeriesChunks)>> = BTreeMap::new();
    for ((block_start_ms, index), series_chunks) in chunks {
        blocks.entry(block_start_ms).or_default().push((index, series_chunks));
    }
    fs.create_dir_all(output_dir).map_err(|source| BackfillError::Io { path: output_dir.to_path_buf(), source })?;
    let mut metas = Vec::with_capacity(blocks.len());
    for (block_index, (_, members)) in blocks.into_iter().enumerate() {
        let mut block_series: Vec<(Labels, Vec<BlockChunk>)> = members
            .into_iter()
            .map(|(index, mut series_chunks)| {
                series_chunks.closed.push(close(&series_chunks.open));
                (series[index as usize].labels.clone(), series_chunks.closed)
            })
            .collect();
        block_series.sort_by(|a, b| a.0.cmp(&b.0));
        let min_time_ms = block_series.iter().filter_map(|(_, chunks)| chunks.first()).map(|c| c.min_time_ms).min();
        let max_time_ms = block_series.iter().filter_map(|(_, chunks)| chunks.last()).map(|c| c.max_time_ms).max();
        let (Some(min_time_ms), Some(max_time_ms)) = (min_time_ms, max_time_ms) else { continue };
        let meta = write_block(
            fs.clone(),
            output_dir,
            block_series,
            options.ulid_time_ms,
            options.ulid_random.wrapping_add(block_index as u128),
            min_time_ms,
            max_time_ms.saturating_add(1),
        )
        .map_err(|source| BackfillError::Block { source })?;
        metas.push(meta);
    }
    Ok(metas)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::MemFileSystem;
    use crate::storage::{collect_series, Querier};
    use crate::tsdb::block::Block;

    const HOUR_MS: i64 = 3_600_000;

    #[test]
    fn block_durations_as_promtool_chooses_them() {
        #[track_caller]
        fn check(max_block_duration_ms: i64, expected_ms: i64) {
            assert_eq!(compatible_block_duration_ms(max_block_duration_ms), expected_ms, "{max_block_duration_ms}");
        }
        check(0, 2 * HOUR_MS);
        check(HOUR_MS, 2 * HOUR_MS);
        check(2 * HOUR_MS, 2 * HOUR_MS);
        check(5 * HOUR_MS, 2 * HOUR_MS);
        check(6 * HOUR_MS, 6 * HOUR_MS);
        check(24 * HOUR_MS, 18 * HOUR_MS);
        check(i64::MAX, 2 * HOUR_MS * 3_i64.pow(9));
    }

    fn backfill(
        input: &str,
        options: &BackfillOptions,
    ) -> (Arc<dyn FileSystem>, Result<Vec<BlockMeta>, BackfillError>) {
        let fs: Arc<dyn FileSystem> = Arc::new(MemFileSystem::default());
        let result = create_blocks_from_openmetrics(fs.clone(), input.as_bytes(), Path::new("/out"), options);
        (fs, result)
    }

    /// A block's range and its series with their samples.
    type ReadBlock = (i64, i64, Vec<(String, Vec<(i64, f64)>)>);

    /// Every block's series and samples.
    fn read_back(fs: &Arc<dyn FileSystem>, metas: &[BlockMeta]) -> Vec<ReadBlock> {
        metas
            .iter()
            .map(|meta| {
                let block = Block::open(fs.clone(), &Path::new("/out").join(&meta.ulid)).unwrap();
                let all = collect_series(block.querier(i64::MIN, i64::MAX).select(None, &[])).unwrap();
                let series = all
                    .into_iter()
                    .map(|found| {
                        (found.labels.to_string(), found.samples.iter().map(|s| (s.timestamp_ms, s.value)).collect())
                    })
                    .collect();
                (meta.min_time_ms, meta.max_time_ms, series)
            })
            .collect()
    }

    #[test]
    fn samples_split_into_aligned_blocks_with_sorted_series() {
        let mut text = String::from("# TYPE b counter\n");
        // 3 hours at 10 min, starting 30 min before a 2 h boundary, plus an earlier series.
        for step in 0..19_i64 {
            let seconds = 7_200 - 1_800 + step * 600;
            text.push_str(&format!("b_total{{x=\"1\"}} {step} {seconds}\n"));
        }
        text.push_str("# TYPE a gauge\na{y=\"2\"} 1.5 7000\na{y=\"2\"} 2.5 7000.5\n# EOF\n");
        let (fs, result) = backfill(&text, &BackfillOptions::default());
        let metas = result.unwrap();
        assert_eq!(metas.len(), 3, "{metas:?}");
        let blocks = read_back(&fs, &metas);
        assert_eq!((blocks[0].0, blocks[0].1), (5_400_000, 7_000_500 + 1));
        assert_eq!(blocks[0].2[0], ("a{y=\"2\"}".to_string(), vec![(7_000_000, 1.5), (7_000_500, 2.5)]));
        assert_eq!(blocks[0].2[1].0, "b_total{x=\"1\"}");
        assert_eq!(blocks[0].2[1].1.len(), 3);
        assert_eq!((blocks[1].0, blocks[1].1), (7_200_000, 14_400_000 - 600_000 + 1));
        assert_eq!(blocks[1].2[0].1.len(), 12);
        assert_eq!((blocks[2].0, blocks[2].1), (14_400_000, 16_200_000 + 1));
        assert_eq!(metas.iter().map(|meta| meta.stats.sample_count).sum::<u64>(), 21);
        let mut ulids: Vec<&str> = metas.iter().map(|meta| meta.ulid.as_str()).collect();
        ulids.dedup();
        assert_eq!(ulids.len(), 3);
    }

    #[test]
    fn long_series_are_cut_into_120_sample_chunks() {
        let mut text = String::from("# TYPE g gauge\n");
        for step in 0..300 {
            text.push_str(&format!("g {step} {}\n", step * 15));
        }
        text.push_str("# EOF\n");
        let (fs, result) = backfill(&text, &BackfillOptions::default());
        let metas = result.unwrap();
        assert_eq!(metas.len(), 1);
        assert_eq!(metas[0].stats.chunk_count, 3);
        assert_eq!(metas[0].stats.sample_count, 300);
        let blocks = read_back(&fs, &metas);
        let samples = &blocks[0].2[0].1;
        assert_eq!(samples.len(), 300);
        assert!(samples.iter().enumerate().all(|(step, sample)| *sample == (step as i64 * 15_000, step as f64)));
    }

    #[test]
    fn larger_block_durations_hold_more() {
        let text = "# TYPE g gauge\ng 1 0\ng 2 10000\ng 3 20000\n# EOF\n";
        let options = BackfillOptions { max_block_duration_ms: 6 * HOUR_MS, ..BackfillOptions::default() };
        let (_, result) = backfill(text, &options);
        assert_eq!(result.unwrap().len(), 1);
        let (_, result) = backfill(text, &BackfillOptions::default());
        assert_eq!(result.unwrap().len(), 3, "0 s, 2.8 h and 5.6 h fall in three 2 h blocks");
    }

    #[test]
    fn negative_timestamps_floor_into_their_block() {
        let (fs, result) = backfill("g 1 -1\ng 2 1\n# EOF\n", &BackfillOptions::default());
        let metas = result.unwrap();
        assert_eq!(metas.len(), 2);
        let blocks = read_back(&fs, &metas);
        assert_eq!(blocks[0].2[0].1, vec![(-1000, 1.0)]);
        assert_eq!(blocks[1].2[0].1, vec![(1000, 2.0)]);
    }

    #[test]
    fn bad_input_names_the_line() {
        #[track_caller]
        fn check(input: &str, expected: &str) {
            let (fs, result) = backfill(input, &BackfillOptions::default());
            let message = result.expect_err(input).to_string();
            assert!(message.contains(expected), "{input:?}: {message}");
            assert!(fs.list_dir(Path::new("/out")).map(|names| names.is_empty()).unwrap_or(true), "{input:?}");
        }
        check("g 1 1\ng 2\n# EOF\n", "parse: openmetrics line 2");
        check("g 1\n# EOF\n", "line 1: expected a timestamp for series g");
        // Info families may go back in time for the parser, not for a series.
        check(
            "# TYPE i info\ni_info{v=\"1\"} 1 5\ni_info{v=\"1\"} 1 4\n# EOF\n",
            "line 3: out of order sample for series i_info{v=\"1\"}: 4000 ms after 5000 ms",
        );
        // The same millisecond after truncation, with another value.
        check("g 1 1.0001\ng 2 1.0002\n# EOF\n", "line 2: duplicate sample for timestamp 1000 ms");
        check("g 1 1\n", "missing # EOF");
    }

    #[test]
    fn exact_duplicates_and_spellings_of_one_series_merge() {
        let text = "# TYPE g gauge\ng{a=\"1\",b=\"2\"} 1 1\ng{a=\"1\",b=\"2\"} 1 1\ng{a=\"1\",b=\"2\"} 2 2\n# EOF\n";
        let (fs, result) = backfill(text, &BackfillOptions::default());
        let metas = result.unwrap();
        assert_eq!(
            read_back(&fs, &metas)[0].2,
            vec![("g{a=\"1\", b=\"2\"}".to_string(), vec![(1000, 1.0), (2000, 2.0)])]
        );
        // `g` and `g{}` are one series; its second spelling continues it.
        let (fs, result) = backfill("g 1 1\ng{} 2 2\n# EOF\n", &BackfillOptions::default());
        let metas = result.unwrap();
        assert_eq!(read_back(&fs, &metas)[0].2, vec![("g{}".to_string(), vec![(1000, 1.0), (2000, 2.0)])]);
    }

    #[test]
    fn empty_expositions_write_nothing() {
        let (fs, result) = backfill("# TYPE g gauge\n# EOF\n", &BackfillOptions::default());
        assert!(result.unwrap().is_empty());
        assert_eq!(fs.list_dir(Path::new("/out")).unwrap(), Vec::<String>::new());
    }
}
