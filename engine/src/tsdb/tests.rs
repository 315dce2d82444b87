//! Storage tests over the in-memory filesystem, which models what matters for durability:
//! unsynced bytes are lost on a crash, and writes can be made to fail.

use std::path::Path;
use std::sync::{Arc, Mutex};

use super::*;
use crate::io::MemFileSystem as MemFs;
use crate::model::MatchKind;

/// Path of WAL segment `index` of the database at `/db`.
fn segment(index: u32) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/db/wal/{index:08}"))
}

fn open(fs: &MemFs, options: DbOptions) -> Db {
    Db::open(Arc::new(fs.clone()), Path::new("/db"), options).unwrap()
}

fn series(name: &str, instance: &str) -> Labels {
    Labels::from_pairs([("__name__", name), ("instance", instance)])
}

fn commit(db: &Db, samples: &[(&Labels, i64, f64)]) -> Result<usize, TsdbError> {
    let mut appender = db.appender();
    for (labels, timestamp_ms, value) in samples {
        appender.append(labels, *timestamp_ms, *value).unwrap();
    }
    appender.commit()
}

fn everything(db: &Db) -> Vec<(String, Vec<(i64, u64)>)> {
    let matcher = Matcher::new(MatchKind::Regex, "__name__", ".+").unwrap();
    db.querier(i64::MIN, i64::MAX)
        .select(&[matcher])
        .into_iter()
        .map(|series| {
            (series.labels.to_string(), series.samples.iter().map(|s| (s.timestamp_ms, s.value.to_bits())).collect())
        })
        .collect()
}

fn fill(db: &Db, from_ms: i64, scrape_count: i64) {
    let (a, b) = (series("up", "a"), series("temp", "b"));
    for index in 0..scrape_count {
        let timestamp_ms = from_ms + index * 1000;
        commit(db, &[(&a, timestamp_ms, 1.0), (&b, timestamp_ms, index as f64 * 0.5)]).unwrap();
    }
}

#[test]
fn committed_samples_survive_a_crash() {
    let fs = MemFs::default();
    let db = open(&fs, DbOptions::default());
    fill(&db, 0, 300);
    let before = everything(&db);
    assert_eq!(before.iter().map(|(_, samples)| samples.len()).sum::<usize>(), 600);
    drop(db);
    fs.crash();
    let db = open(&fs, DbOptions::default());
    assert_eq!(everything(&db), before);
    assert_eq!(db.stats().wal_samples_replayed, 600);
    assert_eq!(db.stats().series_count, 2);
    // Refs continue after replay: a new series does not collide with replayed ones.
    commit(&db, &[(&series("new", "c"), 0, 1.0)]).unwrap();
    drop(db);
    let db = open(&fs, DbOptions::default());
    assert_eq!(db.stats().series_count, 3);
}

#[test]
fn torn_tail_is_truncated_and_appends_continue() {
    let fs = MemFs::default();
    let db = open(&fs, DbOptions::default());
    fill(&db, 0, 10);
    let before = everything(&db);
    drop(db);
    fs.mutate(&segment(0), |data| data.extend_from_slice(&[40, 0, 0, 0, 1, 2]));
    let db = open(&fs, DbOptions::default());
    assert_eq!(everything(&db), before);
    assert_eq!(db.stats().wal_corruptions_repaired_total, 1);
    assert_eq!(db.stats().wal_bytes_truncated_total, 6);
    fill(&db, 100_000, 5);
    let after = everything(&db);
    drop(db);
    let db = open(&fs, DbOptions::default());
    assert_eq!(everything(&db), after, "records written after the repair must replay");
    assert_eq!(db.stats().wal_corruptions_repaired_total, 0);
}

#[test]
fn flipped_byte_loses_only_its_record_and_keeps_later_segments() {
    let fs = MemFs::default();
    let options = DbOptions { wal_segment_size_max: 32 * 1024, ..DbOptions::default() };
    let db = open(&fs, options.clone());
    fill(&db, 0, 4000);
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

#[test]
fn segments_roll_over_and_replay_in_order() {
    let fs = MemFs::default();
    let options = DbOptions { wal_segment_size_max: 32 * 1024, chunk_sample_count_max: 7, ..DbOptions::default() };
    let db = open(&fs, options.clone());
    fill(&db, 0, 2000);
    assert!(db.stats().wal_segment_index >= 2, "small segments must roll over");
    let before = everything(&db);
    drop(db);
    let db = open(&fs, options);
    assert_eq!(everything(&db), before);
    assert!(db.stats().chunk_count >= 14);
}

#[test]
fn failed_write_commits_nothing_and_later_commits_survive() {
    let fs = MemFs::default();
    let db = open(&fs, DbOptions::default());
    fill(&db, 0, 3);
    let before = everything(&db);
    fs.fail_next_write();
    let result = commit(&db, &[(&series("up", "a"), 10_000, 1.0), (&series("lost", "x"), 10_000, 1.0)]);
    assert!(matches!(result, Err(TsdbError::Io { .. })), "{result:?}");
    assert_eq!(everything(&db), before, "a failed commit must leave nothing visible");
    commit(&db, &[(&series("up", "a"), 20_000, 1.0)]).unwrap();
    let after = everything(&db);
    drop(db);
    fs.crash();
    let db = open(&fs, DbOptions::default());
    assert_eq!(everything(&db), after);
    assert_eq!(db.stats().wal_corruptions_repaired_total, 0, "the torn write was cut before the next record");
}

#[test]
fn out_of_order_and_duplicates() {
    let fs = MemFs::default();
    let db = open(&fs, DbOptions::default());
    let labels = series("up", "a");
    commit(&db, &[(&labels, 2000, 1.0)]).unwrap();
    let mut appender = db.appender();
    assert!(matches!(
        appender.append(&labels, 1000, 1.0),
        Err(AppendError::OutOfOrder { last_timestamp_ms: 2000, .. })
    ));
    assert_eq!(appender.append(&labels, 2000, 1.0), Ok(()), "same timestamp and value is accepted");
    assert!(matches!(appender.append(&labels, 2000, 5.0), Err(AppendError::DuplicateTimestamp { .. })));
    appender.append(&labels, 3000, 2.0).unwrap();
    assert!(
        matches!(appender.append(&labels, 2500, 2.0), Err(AppendError::OutOfOrder { .. })),
        "checked against the batch"
    );
    assert_eq!(appender.commit().unwrap(), 1);
    assert_eq!(appender_error(&db, Labels::empty()), AppendError::EmptyLabels);
    assert!(matches!(appender_error(&db, Labels::from_pairs([("job", "x")])), AppendError::MissingMetricName { .. }));
    assert_eq!(everything(&db)[0].1, vec![(2000, 1.0_f64.to_bits()), (3000, 2.0_f64.to_bits())]);
}

fn appender_error(db: &Db, labels: Labels) -> AppendError {
    db.appender().append(&labels, 0, 0.0).unwrap_err()
}

#[test]
fn rollback_discards_and_observer_sees_commits() {
    let fs = MemFs::default();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let observer: CommitObserver =
        Arc::new(move |batch: &[(Labels, Sample)]| sink.lock().unwrap().extend_from_slice(batch));
    let db = open(&fs, DbOptions { commit_observer: Some(observer), ..DbOptions::default() });
    let mut appender = db.appender();
    appender.append(&series("up", "a"), 1, 1.0).unwrap();
    appender.rollback();
    assert!(everything(&db).is_empty());
    commit(&db, &[(&series("up", "a"), 2, 1.0)]).unwrap();
    assert_eq!(seen.lock().unwrap().len(), 1);
}

// The frozen-segment format tests live with the WAL (wal/tests.rs, testdata/wal-v2-00000000).

/// A write that tears and then cannot be truncated away: the writer moves to a new segment. The
/// torn batch's complete series record must neither lend its reference to a later series nor
/// make replay drop the later segment, and labels logged twice must replay as one series.
#[test]
fn torn_write_that_cannot_be_truncated_loses_no_later_commit() {
    let fs = MemFs::default();
    let db = open(&fs, DbOptions::default());
    commit(&db, &[(&series("up", "a"), 1000, 1.0)]).unwrap();
    fs.fail_next_write();
    fs.fail_next_truncate();
    let lost = series("lost", "x");
    // Many samples, so the torn half holds the whole series record.
    let batch: Vec<(&Labels, i64, f64)> = (0..50).map(|index| (&lost, 2000 + index, 1.0)).collect();
    assert!(commit(&db, &batch).is_err());
    commit(&db, &[(&series("other", "y"), 3000, 7.0), (&lost, 3000, 9.0)]).unwrap();
    commit(&db, &[(&series("up", "a"), 4000, 1.0)]).unwrap();
    let before = everything(&db);
    assert_eq!(before.len(), 3, "{before:?}");
    drop(db);
    // No crash: the torn bytes stay on disk, as after a kill once the write reached the page cache.
    let db = open(&fs, DbOptions::default());
    assert_eq!(everything(&db), before);
    assert_eq!(db.stats().series_count, 3, "labels logged under two refs replay as one series");
    // Appends continue and survive another restart.
    commit(&db, &[(&lost, 5000, 2.0)]).unwrap();
    let after = everything(&db);
    drop(db);
    let db = open(&fs, DbOptions::default());
    assert_eq!(everything(&db), after);
}

/// When opening a new segment fails after a failed write, the next commit tries again rather
/// than failing forever.
#[test]
fn commits_recover_after_the_segment_cannot_be_replaced() {
    let fs = MemFs::default();
    let db = open(&fs, DbOptions::default());
    commit(&db, &[(&series("up", "a"), 1000, 1.0)]).unwrap();
    fs.fail_next_write();
    fs.fail_next_truncate();
    assert!(commit(&db, &[(&series("up", "a"), 2000, 1.0)]).is_err());
    commit(&db, &[(&series("up", "a"), 3000, 1.0)]).unwrap();
    commit(&db, &[(&series("up", "a"), 4000, 1.0)]).unwrap();
    let before = everything(&db);
    drop(db);
    let db = open(&fs, DbOptions::default());
    assert_eq!(everything(&db), before);
}
