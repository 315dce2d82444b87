//! Compacted blocks in Prometheus 2.42's tools: three level-1 blocks (two adjacent, one
//! overlapping both) are merged by `tsdb::compact`, the sources deleted through
//! `Block::delete_when_unused`, and `promtool tsdb dump` over the directory prints exactly the
//! lines `enginectl tsdb dump` prints, which are the merged samples (on equal timestamps the
//! earlier block's value). `promtool tsdb list` reads the lineage in `meta.json`. Runs when
//! `promtool` is installed, and must run when `ENGINE_PEER_TESTS=1`.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // Tests drive real processes and files.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::io::RealFileSystem;
use engine::model::{Labels, Sample};
use engine::tsdb::block::{encode_chunks, write_block, Block, Ulid};
use engine::tsdb::compact::{compact, plan};

/// Longest a peer tool may run.
const RUN_S_MAX: u64 = 40;
const HOUR_MS: i64 = 3_600_000;
/// A 2 h boundary in 2023.
const START_MS: i64 = 1_699_999_200_000;

/// Runs a command with a time limit; its stdout, panicking with stderr on failure. The pipes are
/// drained by threads as the tool writes, so a long dump never blocks on a full pipe.
fn run(command: &mut Command) -> String {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start tool");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            pipe.read_to_string(&mut text).map(|_| text)
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(RUN_S_MAX);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{command:?} did not finish in {RUN_S_MAX} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (stdout.join().unwrap().unwrap(), stderr.join().unwrap().unwrap());
    assert!(status.success(), "{command:?} failed ({status}):\n{stderr}");
    stdout
}

fn series(name: &str, job: &str) -> Labels {
    Labels::from_pairs([("__name__", name), ("job", job)])
}

/// Samples every `step_ms` over `[from_ms, to_ms)`, values `offset + index / 8`.
fn samples(from_ms: i64, to_ms: i64, step_ms: i64, offset: f64) -> Vec<Sample> {
    (0..)
        .map(|index| (index, from_ms + index * step_ms))
        .take_while(|(_, timestamp_ms)| *timestamp_ms < to_ms)
        .map(|(index, timestamp_ms)| Sample { timestamp_ms, value: offset + index as f64 / 8.0 })
        .collect()
}

type Input = Vec<(Labels, Vec<Sample>)>;

fn write(dir: &Path, random: u128, (min_ms, max_ms): (i64, i64), mut input: Input) -> Block {
    input.sort_by(|a, b| a.0.cmp(&b.0));
    let chunked = input.iter().map(|(labels, samples)| (labels.clone(), encode_chunks(samples, 120)));
    let meta = write_block(Arc::new(RealFileSystem), dir, chunked, 1_700_000_000_000, random, min_ms, max_ms).unwrap();
    Block::open(Arc::new(RealFileSystem), &dir.join(&meta.ulid)).unwrap()
}

#[test]
fn promtool_dumps_a_compacted_block_as_enginectl_does() {
    let Some(promtool) = common::peer("/usr/bin/promtool") else { return };
    let dir = common::temp_dir("engine-compact-promtool", "dump");
    let (up, temp, late) = (series("up", "node"), series("temperature", "lab"), series("late_only", "x"));
    let first = (START_MS, START_MS + 2 * HOUR_MS);
    let second = (START_MS + 2 * HOUR_MS, START_MS + 4 * HOUR_MS);
    let middle = (START_MS + HOUR_MS, START_MS + 3 * HOUR_MS);
    let blocks = vec![
        write(
            &dir,
            1,
            first,
            vec![
                (up.clone(), samples(first.0, first.1, 15_000, 0.0)),
                (temp.clone(), samples(first.0, first.1, 60_000, -20.0)),
            ],
        ),
        write(&dir, 2, second, vec![(up.clone(), samples(second.0, second.1, 15_000, 1000.0))]),
        // Overlaps both: `up` every 10 s (every 30 s equal to the others' timestamps).
        write(
            &dir,
            3,
            middle,
            vec![
                (up.clone(), samples(middle.0, middle.1, 10_000, 5e6)),
                (late.clone(), samples(middle.0, middle.1, 300_000, 3.0)),
            ],
        ),
    ];
    // Expected: the union by timestamp; the block with the earliest minTime wins a tie.
    let mut expected: BTreeMap<(Labels, i64), u64> = BTreeMap::new();
    let mut by_start: Vec<&Block> = blocks.iter().collect();
    by_start.sort_by_key(|block| block.meta().min_time_ms);
    for block in by_start.iter().rev() {
        let querier = block.querier(i64::MIN, i64::MAX);
        for found in engine::storage::collect_series(engine::storage::Querier::select(&querier, None, &[])).unwrap() {
            for sample in found.samples {
                expected.insert((found.labels.clone(), sample.timestamp_ms), sample.value.to_bits());
            }
        }
    }
    let metas: Vec<_> = blocks.iter().map(|block| block.meta().clone()).collect();
    let planned = plan(&metas, &engine::tsdb::compact::block_ranges(2 * HOUR_MS, 36 * HOUR_MS));
    assert_eq!(planned.len(), 3, "overlapping blocks are planned together: {planned:?}");
    let meta = compact(Arc::new(RealFileSystem), &dir, &blocks, Ulid::new(1_700_000_100_000, 9)).unwrap().unwrap();
    assert_eq!(meta.compaction.level, 2);
    assert_eq!(meta.stats.sample_count, expected.len() as u64);
    for block in &blocks {
        block.delete_when_unused();
    }
    drop(by_start);
    drop(blocks);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, std::slice::from_ref(&meta.ulid), "only the compacted block is left");

    std::fs::create_dir_all(dir.join("wal")).unwrap(); // promtool's dump opens the directory as a database.
    let sorted = |text: String| {
        let mut lines: Vec<String> = text.lines().filter(|line| !line.is_empty()).map(str::to_string).collect();
        lines.sort();
        lines
    };
    let theirs = sorted(run(Command::new(&promtool).args(["tsdb", "dump"]).arg(&dir)));
    let ours = sorted(run(Command::new(env!("CARGO_BIN_EXE_enginectl")).args(["tsdb", "dump"]).arg(&dir)));
    assert_eq!(theirs.len(), expected.len(), "promtool sees every merged sample once");
    assert_eq!(ours, theirs, "the same samples in the same notation");
    // The first-wins rule, seen through promtool: at the first block's 1 h mark, up is 240/8 = 30.
    let tie = format!("{{__name__=\"up\", job=\"node\"}} 30 {}", START_MS + HOUR_MS);
    assert!(theirs.contains(&tie), "{tie} missing");
    let list = run(Command::new(&promtool).args(["tsdb", "list"]).arg(&dir));
    assert!(list.contains(&meta.ulid), "{list}");
    let _ = std::fs::remove_dir_all(&dir);
}
