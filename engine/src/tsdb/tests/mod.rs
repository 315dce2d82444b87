//! Storage tests over the in-memory filesystem, which models what matters for durability:
//! unsynced bytes are lost on a crash, and writes can be made to fail.

use std::path::Path;
use std::sync::{Arc, Mutex};

use super::*;
use crate::io::MemFileSystem as MemFs;
use crate::io::TokioSpawner;
use crate::model::{MatchKind, Matcher};
use crate::storage::{AppendError, StorageError};

/// Path of WAL segment `index` of the database at `/db`.
fn segment(index: u32) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/db/wal/{index:08}"))
}

fn open(fs: &MemFs, options: DbOptions) -> Db {
    Db::open(Arc::new(fs.clone()), &TokioSpawner, Path::new("/db"), options).unwrap()
}

/// WAL settings with small segments, so tests roll over.
#[allow(clippy::field_reassign_with_default)] // WalOptions grows fields; the rest stay default.
fn wal_options(segment_size_max: u64) -> wal::WalOptions {
    let mut options = wal::WalOptions::default();
    options.segment_size_max = segment_size_max;
    options
}

fn series(name: &str, instance: &str) -> Labels {
    Labels::from_pairs([("__name__", name), ("instance", instance)])
}

async fn commit(db: &Db, samples: &[(&Labels, i64, f64)]) -> Result<usize, StorageError> {
    let mut appender = db.appender();
    for (labels, timestamp_ms, value) in samples {
        appender.append(None, labels, *timestamp_ms, *value).unwrap();
    }
    appender.commit().await.map(|stats| stats.sample_count)
}

fn everything(db: &Db) -> Vec<(String, Vec<(i64, u64)>)> {
    let matcher = Matcher::new(MatchKind::Regex, "__name__", ".+").unwrap();
    db.querier(i64::MIN, i64::MAX)
        .unwrap()
        .select(None, &[matcher])
        .map(|series| {
            let series = series.unwrap();
            (series.labels.to_string(), series.samples.iter().map(|s| (s.timestamp_ms, s.value.to_bits())).collect())
        })
        .collect()
}

async fn fill(db: &Db, from_ms: i64, scrape_count: i64) {
    let (a, b) = (series("up", "a"), series("temp", "b"));
    for index in 0..scrape_count {
        let timestamp_ms = from_ms + index * 1000;
        commit(db, &[(&a, timestamp_ms, 1.0), (&b, timestamp_ms, index as f64 * 0.5)]).await.unwrap();
    }
}

#[tokio::test]
async fn committed_samples_survive_a_crash() {
    let fs = MemFs::default();
    let db = open(&fs, DbOptions::default());
    fill(&db, 0, 300).await;
    let before = everything(&db);
    assert_eq!(before.iter().map(|(_, samples)| samples.len()).sum::<usize>(), 600);
    drop(db);
    fs.crash();
    let db = open(&fs, DbOptions::default());
    assert_eq!(everything(&db), before);
    assert_eq!(db.stats().wal_samples_replayed, 600);
    assert_eq!(db.stats().series_count, 2);
    // Refs continue after replay: a new series does not collide with replayed ones.
    commit(&db, &[(&series("new", "c"), 0, 1.0)]).await.unwrap();
    drop(db);
    let db = open(&fs, DbOptions::default());
    assert_eq!(db.stats().series_count, 3);
}

#[tokio::test]
async fn torn_tail_is_truncated_and_appends_continue() {
    let fs = MemFs::default();
    let db = open(&fs, DbOptions::default());
    fill(&db, 0, 10).await;
    let before = everything(&db);
    drop(db);
    fs.mutate(&segment(0), |data| data.extend_from_slice(&[40, 0, 0, 0, 1, 2]));
    let db = open(&fs, DbOptions::default());
    assert_eq!(everything(&db), before);
    assert_eq!(db.stats().wal_corruptions_repaired_total, 1);
    assert_eq!(db.stats().wal_bytes_truncated_total, 6);
    fill(&db, 100_000, 5).await;
    let after = everything(&db);
    drop(db);
    let db = open(&fs, DbOptions::default());
    assert_eq!(everything(&db), after, "records written after the repair must replay");
    assert_eq!(db.stats().wal_corruptions_repaired_total, 0);
}

#[tokio::test]
async fn flipped_byte_loses_only_its_record_and_keeps_later_segments() {
    let fs = MemFs::default();
    let options = DbOptions { wal: wal_options(32 * 1024), ..DbOptions::default() };
    let db = open(&fs, options.clone());
    fill(&db, 0, 4000).await;
    let segment_count = db.stats().wal_segment_index;
    assert!(segment_count >= 3, "small segments must roll over");
    drop(db);
    // Corrupt the data of segment 1's first record (a samples record of one commit).
    fs.mutate(&segment(1), |data| data[10] ^= 0xff);
    let db = open(&fs, options);
    let stats = db.stats();
    assert_eq!(stats.wal_corruptions_repaired_total, 1);
    assert_eq!(stats.wal_segment_index, segment_count + 1, "later segments kept");
    let kept: usize = everything(&db).iter().map(|(_, samples)| samples.len()).sum();
    assert_eq!(kept, 8000 - 2, "only the damaged commit is lost");
}

#[tokio::test]
async fn segments_roll_over_and_replay_in_order() {
    let fs = MemFs::default();
    let options = DbOptions { wal: wal_options(32 * 1024), chunk_sample_count_max: 7, ..DbOptions::default() };
    let db = open(&fs, options.clone());
    fill(&db, 0, 2000).await;
    assert!(db.stats().wal_segment_index >= 2, "small segments must roll over");
    let before = everything(&db);
    drop(db);
    let db = open(&fs, options);
    assert_eq!(everything(&db), before);
    assert!(db.stats().chunk_count >= 14);
}

#[tokio::test]
async fn failed_write_commits_nothing_and_later_commits_survive() {
    let fs = MemFs::default();
    let db = open(&fs, DbOptions::default());
    fill(&db, 0, 3).await;
    let before = everything(&db);
    fs.fail_next_write();
    let result = commit(&db, &[(&series("up", "a"), 10_000, 1.0), (&series("lost", "x"), 10_000, 1.0)]).await;
    assert!(matches!(result, Err(StorageError::Write { .. })), "{result:?}");
    assert_eq!(everything(&db), before, "a failed commit must leave nothing visible");
    commit(&db, &[(&series("up", "a"), 20_000, 1.0)]).await.unwrap();
    let after = everything(&db);
    drop(db);
    fs.crash();
    let db = open(&fs, DbOptions::default());
    assert_eq!(everything(&db), after);
    assert_eq!(db.stats().wal_corruptions_repaired_total, 0, "the torn write was cut before the next record");
}

#[tokio::test]
async fn out_of_order_and_duplicates() {
    let fs = MemFs::default();
    let db = open(&fs, DbOptions::default());
    let labels = series("up", "a");
    commit(&db, &[(&labels, 2000, 1.0)]).await.unwrap();
    let mut appender = db.appender();
    assert!(matches!(
        appender.append(None, &labels, 1000, 1.0),
        Err(AppendError::OutOfOrder { last_timestamp_ms: 2000, .. })
    ));
    assert_eq!(
        appender.append(None, &labels, 2000, 1.0),
        Ok(crate::model::SeriesRef(1)),
        "same timestamp and value is accepted"
    );
    assert!(matches!(appender.append(None, &labels, 2000, 5.0), Err(AppendError::DuplicateTimestamp { .. })));
    appender.append(None, &labels, 3000, 2.0).unwrap();
    assert!(
        matches!(appender.append(None, &labels, 2500, 2.0), Err(AppendError::OutOfOrder { .. })),
        "checked against the batch"
    );
    assert_eq!(appender.commit().await.unwrap().sample_count, 1);
    assert_eq!(appender_error(&db, Labels::empty()), AppendError::EmptyLabels);
    assert!(matches!(appender_error(&db, Labels::from_pairs([("job", "x")])), AppendError::MissingMetricName { .. }));
    assert_eq!(everything(&db)[0].1, vec![(2000, 1.0_f64.to_bits()), (3000, 2.0_f64.to_bits())]);
}

fn appender_error(db: &Db, labels: Labels) -> AppendError {
    db.appender().append(None, &labels, 0, 0.0).unwrap_err()
}

#[tokio::test]
async fn rollback_discards_and_observer_sees_commits() {
    let fs = MemFs::default();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let observer: CommitObserver =
        Arc::new(move |batch: &[(Labels, Sample)]| sink.lock().unwrap().extend_from_slice(batch));
    let db = open(&fs, DbOptions { commit_observer: Some(observer), ..DbOptions::default() });
    let mut appender = db.appender();
    appender.append(None, &series("up", "a"), 1, 1.0).unwrap();
    appender.rollback();
    assert!(everything(&db).is_empty());
    commit(&db, &[(&series("up", "a"), 2, 1.0)]).await.unwrap();
    assert_eq!(seen.lock().unwrap().len(), 1);
}

// The frozen-segment format tests live with the WAL (wal/tests.rs, testdata/wal-v2-00000000).

/// A write that tears and then cannot be truncated away: the writer moves to a new segment. The
/// torn batch's complete series record must neither lend its reference to a later series nor
/// make replay drop the later segment, and labels logged twice must replay as one series.
#[tokio::test]
async fn torn_write_that_cannot_be_truncated_loses_no_later_commit() {
    let fs = MemFs::default();
    let db = open(&fs, DbOptions::default());
    commit(&db, &[(&series("up", "a"), 1000, 1.0)]).await.unwrap();
    fs.fail_next_write();
    fs.fail_next_truncate();
    let lost = series("lost", "x");
    // Many samples, so the torn half holds the whole series record.
    let batch: Vec<(&Labels, i64, f64)> = (0..50).map(|index| (&lost, 2000 + index, 1.0)).collect();
    assert!(commit(&db, &batch).await.is_err());
    commit(&db, &[(&series("other", "y"), 3000, 7.0), (&lost, 3000, 9.0)]).await.unwrap();
    commit(&db, &[(&series("up", "a"), 4000, 1.0)]).await.unwrap();
    let before = everything(&db);
    assert_eq!(before.len(), 3, "{before:?}");
    drop(db);
    // No crash: the torn bytes stay on disk, as after a kill once the write reached the page cache.
    let db = open(&fs, DbOptions::default());
    assert_eq!(everything(&db), before);
    assert_eq!(db.stats().series_count, 3, "labels logged under two refs replay as one series");
    // Appends continue and survive another restart.
    commit(&db, &[(&lost, 5000, 2.0)]).await.unwrap();
    let after = everything(&db);
    drop(db);
    let db = open(&fs, DbOptions::default());
    assert_eq!(everything(&db), after);
}

/// When opening a new segment fails after a failed write, the next commit tries again rather
/// than failing forever.
#[tokio::test]
async fn commits_recover_after_the_segment_cannot_be_replaced() {
    let fs = MemFs::default();
    let db = open(&fs, DbOptions::default());
    commit(&db, &[(&series("up", "a"), 1000, 1.0)]).await.unwrap();
    fs.fail_next_write();
    fs.fail_next_truncate();
    assert!(commit(&db, &[(&series("up", "a"), 2000, 1.0)]).await.is_err());
    commit(&db, &[(&series("up", "a"), 3000, 1.0)]).await.unwrap();
    commit(&db, &[(&series("up", "a"), 4000, 1.0)]).await.unwrap();
    let before = everything(&db);
    drop(db);
    let db = open(&fs, DbOptions::default());
    assert_eq!(everything(&db), before);
}

/// Many appenders committing at once share WAL writes and fsyncs (group commit), and every
/// commit is still durable.
#[tokio::test]
async fn concurrent_commits_are_grouped_into_fewer_writes() {
    let fs = MemFs::default();
    let db = open(&fs, DbOptions::default());
    let tasks: Vec<_> = (0..50)
        .map(|index| {
            let db = db.clone();
            tokio::spawn(async move {
                let labels = series("up", &format!("target-{index}"));
                commit(&db, &[(&labels, 1000, index as f64)]).await.unwrap()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 1);
    }
    let stats = db.stats();
    assert_eq!(stats.commits_total, 50);
    assert!(stats.wal_writes_total < 50, "group commit: {} writes for 50 commits", stats.wal_writes_total);
    assert_eq!(stats.wal_fsyncs_total, stats.wal_writes_total, "one fsync per write under the commit policy");
    let before = everything(&db);
    drop(db);
    fs.crash();
    assert_eq!(everything(&open(&fs, DbOptions::default())), before);
}

/// References returned by append stay valid; an unknown one is refused, so callers fall back to
/// labels.
#[tokio::test]
async fn append_by_ref_uses_the_returned_reference() {
    let fs = MemFs::default();
    let db = open(&fs, DbOptions::default());
    let labels = series("up", "a");
    let mut appender = db.appender();
    let series_ref = appender.append(None, &labels, 1000, 1.0).unwrap();
    appender.append_by_ref(series_ref, 2000, 2.0).unwrap();
    assert_eq!(
        appender.append_by_ref(crate::model::SeriesRef(999), 2000, 2.0),
        Err(AppendError::UnknownSeriesRef { series_ref: 999 })
    );
    // A stale hint falls back to the labels.
    assert_eq!(appender.append(Some(crate::model::SeriesRef(999)), &labels, 3000, 3.0), Ok(series_ref));
    appender.commit().await.unwrap();
    let mut next = db.appender();
    next.append_by_ref(series_ref, 4000, 4.0).unwrap();
    next.commit().await.unwrap();
    assert_eq!(everything(&db)[0].1.len(), 4);
}

/// The series cap refuses new series with an error naming the limit; existing series keep
/// ingesting, and the refusals are counted.
#[tokio::test]
async fn series_cap_refuses_only_new_series() {
    let fs = MemFs::default();
    let db = open(&fs, DbOptions { series_count_max: 2, ..DbOptions::default() });
    commit(&db, &[(&series("a", "1"), 1000, 1.0), (&series("b", "1"), 1000, 1.0)]).await.unwrap();
    let mut appender = db.appender();
    let refused = appender.append(None, &series("c", "1"), 2000, 1.0).unwrap_err();
    assert!(refused.to_string().contains("series limit of 2"), "{refused}");
    appender.append(None, &series("a", "1"), 2000, 2.0).unwrap();
    assert_eq!(appender.commit().await.unwrap().sample_count, 1);
    assert_eq!(db.stats().series_limit_refusals_total, 1);
    assert_eq!(db.stats().series_count, 2);
}

/// A failed WAL write marks the storage not ready for writes until a write succeeds again.
#[tokio::test]
async fn failed_write_clears_readiness_until_writes_resume() {
    let fs = MemFs::default();
    let db = open(&fs, DbOptions::default());
    assert!(db.stats().ready_for_writes);
    fs.fail_next_write();
    assert!(commit(&db, &[(&series("up", "a"), 1000, 1.0)]).await.is_err());
    let stats = db.stats();
    assert!(!stats.ready_for_writes);
    assert_eq!(stats.wal_write_failures_total, 1);
    commit(&db, &[(&series("up", "a"), 2000, 1.0)]).await.unwrap();
    assert!(db.stats().ready_for_writes);
}

/// Deterministic random workload: commits (some failing mid-write), then a power loss with
/// one commit still queued. Under the default policy every commit that returned Ok is read back
/// and nothing of a failed or unfinished commit is visible.
async fn crash_run(seed: u64) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let fs = MemFs::default();
    let segment_size_max = 32 * 1024 * rng.random_range(1..4);
    let options = || DbOptions { wal: wal_options(segment_size_max), ..DbOptions::default() };
    let db = open(&fs, options());
    let mut expected: std::collections::BTreeMap<String, Vec<(i64, u64)>> = Default::default();
    let commit_count = rng.random_range(1..15);
    for commit_index in 0..commit_count {
        let timestamp_ms = 1000 * (commit_index + 1);
        let batch: Vec<(Labels, i64, f64)> = (0..rng.random_range(1..6))
            .map(|index| (series("m", &format!("s{}", (index * 7 + commit_index) % 9)), timestamp_ms, rng.random()))
            .collect();
        let mut unique = batch.clone();
        unique.sort_by(|a, b| a.0.cmp(&b.0));
        unique.dedup_by(|a, b| a.0 == b.0);
        if rng.random_bool(0.15) {
            fs.fail_next_write();
        }
        let refs: Vec<(&Labels, i64, f64)> = unique.iter().map(|(l, t, v)| (l, *t, *v)).collect();
        if commit(&db, &refs).await.is_ok() {
            for (labels, timestamp_ms, value) in &unique {
                expected.entry(labels.to_string()).or_default().push((*timestamp_ms, value.to_bits()));
            }
        }
    }
    // One more commit queued but never written: the power fails first.
    let mut pending = db.appender();
    pending.append(None, &series("m", "pending"), 1_000_000, 1.0).unwrap();
    let unfinished = pending.commit();
    fs.crash();
    drop(unfinished);
    drop(db);
    let db = open(&fs, options());
    let got: std::collections::BTreeMap<String, Vec<(i64, u64)>> = everything(&db).into_iter().collect();
    assert_eq!(got, expected, "SEED={seed}: committed samples after a crash");
}

#[tokio::test]
async fn no_committed_sample_is_lost_across_1000_crash_seeds() {
    for seed in 0..1000 {
        crash_run(seed).await;
    }
}

/// The check above can fail: with `segment` sync (Prometheus' behaviour), a power loss drops the
/// commits of the unsynced segment.
#[tokio::test]
async fn segment_sync_policy_loses_unsynced_commits_on_power_loss() {
    let fs = MemFs::default();
    let options = || DbOptions { sync_policy: commit::SyncPolicy::Segment, ..DbOptions::default() };
    let db = open(&fs, options());
    fill(&db, 0, 20).await;
    assert_eq!(db.stats().wal_fsyncs_total, 0);
    drop(db);
    fs.crash();
    let db = open(&fs, options());
    assert!(everything(&db).is_empty(), "nothing was synced, so nothing survives");
}

/// Two databases on one directory would write the same WAL segments: the second is refused
/// while the first is open, and may open once the first is gone.
#[tokio::test]
async fn lock_file_refuses_a_second_database_on_the_same_directory() {
    let fs = MemFs::default();
    let first = open(&fs, DbOptions::default());
    let second = Db::open(Arc::new(fs.clone()), &TokioSpawner, Path::new("/db"), DbOptions::default());
    let error = second.err().expect("a second database on /db must be refused").to_string();
    assert!(error.contains("in use by another process") && error.contains("/db/lock"), "{error}");
    let unlocked = DbOptions { no_lockfile: true, ..DbOptions::default() };
    assert!(Db::open(Arc::new(fs.clone()), &TokioSpawner, Path::new("/db"), unlocked).is_ok());
    drop(first);
    open(&fs, DbOptions::default());
}

/// Full chunks leave the heap for `chunks_head/` files and are read back by position; replay
/// rebuilds them from the WAL, so a restart (or a crash that tore a chunk file) answers the same.
#[tokio::test]
async fn full_chunks_move_to_chunk_files_and_read_back() {
    let fs = MemFs::default();
    let options = || DbOptions { chunk_sample_count_max: 4, ..DbOptions::default() };
    let db = open(&fs, options());
    fill(&db, 0, 30).await;
    let stats = db.stats();
    // 30 samples in chunks of 4: 7 full chunks per series, 2 series.
    assert_eq!(stats.chunks_offloaded_total, 14, "{stats:?}");
    assert_eq!(stats.chunk_offload_failures_total, 0);
    assert!(fs.paths().iter().any(|path| path.starts_with("/db/chunks_head")), "{:?}", fs.paths());
    let before = everything(&db);
    assert_eq!(before.iter().map(|(_, samples)| samples.len()).sum::<usize>(), 60);
    let expected: Vec<(i64, u64)> = (0..30).map(|index| (index * 1000, (index as f64 * 0.5).to_bits())).collect();
    assert_eq!(before.iter().find(|(labels, _)| labels.starts_with("temp")).unwrap().1, expected);
    drop(db);
    fs.crash();
    let db = open(&fs, options());
    assert_eq!(everything(&db), before);
    assert_eq!(db.stats().chunks_offloaded_total, 14, "replay writes the chunks out again");
}

/// A full disk: commits fail with nothing visible and the storage reports itself not ready for
/// writes while queries keep answering; once space returns, writes resume; after a power loss
/// no torn record breaks the start and every committed sample is there.
#[tokio::test]
async fn full_disk_refuses_commits_then_resumes_without_loss() {
    let fs = MemFs::default();
    let db = open(&fs, DbOptions::default());
    fill(&db, 0, 10).await;
    let before = everything(&db);
    fs.set_capacity(Some(fs.used_size() + 10));
    let big: Vec<(Labels, i64, f64)> = (0..50).map(|index| (series("big", &index.to_string()), 20_000, 1.0)).collect();
    let refs: Vec<(&Labels, i64, f64)> = big.iter().map(|(l, t, v)| (l, *t, *v)).collect();
    let error = commit(&db, &refs).await.unwrap_err();
    assert!(error.to_string().contains("write wal"), "{error}");
    assert!(!db.stats().ready_for_writes, "not ready for writes while the disk is full");
    assert_eq!(everything(&db), before, "queries answer, and nothing of the failed commit is visible");
    fs.set_capacity(None);
    commit(&db, &refs).await.unwrap();
    assert!(db.stats().ready_for_writes);
    let after = everything(&db);
    assert_eq!(after.len(), before.len() + 50);
    drop(db);
    fs.crash();
    let db = open(&fs, DbOptions::default());
    assert_eq!(db.stats().wal_corruptions_repaired_total, 0, "no torn record survived");
    assert_eq!(everything(&db), after);
}

/// Blocks in the data directory (written by this engine or by Prometheus) are served beside the
/// head: one series' older samples from a block and newer ones from the head come back as one
/// series; an interrupted block write is removed; a block that does not open is not served and
/// stays on disk.
#[tokio::test]
async fn blocks_in_the_data_directory_are_served_with_the_head() {
    let fs = MemFs::default();
    let up = series("up", "a");
    let old: Vec<Sample> = (0..10).map(|index| Sample { timestamp_ms: index * 1000, value: index as f64 }).collect();
    let shared: Arc<dyn FileSystem> = Arc::new(fs.clone());
    block::write_block(
        shared.clone(),
        Path::new("/db"),
        [(up.clone(), block::encode_chunks(&old, 120))],
        1,
        7,
        0,
        10_000,
    )
    .unwrap();
    fs.create_dir_all(Path::new("/db/01ARZ3NDEKTSV4RRFFQ69G5FAV.tmp")).unwrap();
    let mut leftover = fs.open_append(Path::new("/db/01ARZ3NDEKTSV4RRFFQ69G5FAV.tmp/index")).unwrap();
    leftover.write_all(b"partial").unwrap();
    let mut broken = fs.open_append(Path::new("/db/01BX5ZZKBKACTAV9WEVGEMMVRZ/meta.json")).unwrap();
    broken.write_all(b"{not json").unwrap();
    let db = open(&fs, DbOptions::default());
    assert_eq!(db.stats().block_count, 1);
    commit(&db, &[(&up, 20_000, 20.0)]).await.unwrap();
    let got = everything(&db);
    let mut expected: Vec<(i64, u64)> = old.iter().map(|s| (s.timestamp_ms, s.value.to_bits())).collect();
    expected.push((20_000, 20.0_f64.to_bits()));
    assert_eq!(got, vec![(up.to_string(), expected)]);
    assert!(fs.paths().iter().all(|path| !path.starts_with("/db/01ARZ3NDEKTSV4RRFFQ69G5FAV.tmp")), "leftover removed");
    assert!(fs.paths().iter().any(|path| path.starts_with("/db/01BX5ZZKBKACTAV9WEVGEMMVRZ")), "broken block kept");
}

/// `interval:<dur>`: a commit returns before its fsync; the timer syncs it, after which a power
/// loss keeps it.
#[tokio::test]
async fn interval_sync_policy_syncs_on_its_timer() {
    let fs = MemFs::default();
    let options =
        || DbOptions { sync_policy: commit::SyncPolicy::Interval { interval_ms: 20 }, ..DbOptions::default() };
    let db = open(&fs, options());
    fill(&db, 0, 5).await;
    let fsyncs_at_commit = db.stats().wal_fsyncs_total;
    assert!(fsyncs_at_commit <= 1, "commits do not wait for an fsync each: {fsyncs_at_commit}");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while db.stats().wal_fsyncs_total == fsyncs_at_commit {
        assert!(tokio::time::Instant::now() < deadline, "the timer never synced");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let before = everything(&db);
    drop(db);
    fs.crash();
    assert_eq!(everything(&open(&fs, options())), before, "synced by the timer, so it survives");
}

mod persist;
