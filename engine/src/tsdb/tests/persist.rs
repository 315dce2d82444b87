//! Head persistence: blocks cut from the head, head and WAL truncation, restart after them.

use super::*;

const HOUR_MS: i64 = 3_600_000;

fn persist_options() -> DbOptions {
    // Small segments so the WAL has several to checkpoint; the compactor's timer out of the way.
    DbOptions { wal: wal_options(32 * 1024), background_compaction: false, ..DbOptions::default() }
}

/// Commits one sample per series every `step_ms` over `[from_ms, to_ms)`.
async fn fill_range(db: &Db, series: &[&Labels], from_ms: i64, to_ms: i64, step_ms: i64) {
    let mut timestamp_ms = from_ms;
    while timestamp_ms < to_ms {
        let batch: Vec<(&Labels, i64, f64)> =
            series.iter().map(|labels| (*labels, timestamp_ms, (timestamp_ms / step_ms) as f64)).collect();
        commit(db, &batch).await.unwrap();
        timestamp_ms += step_ms;
    }
}

fn wal_files(fs: &MemFs) -> Vec<String> {
    let mut names = fs.list_dir(Path::new("/db/wal")).unwrap();
    names.sort();
    names
}

#[tokio::test]
async fn head_range_is_persisted_into_a_block_and_the_wal_truncated() {
    let fs = MemFs::default();
    let db = open(&fs, persist_options());
    let (up, temp) = (series("up", "a"), series("temp", "b"));
    fill_range(&db, &[&up, &temp], 0, 5 * HOUR_MS, 5_000).await;
    let before = everything(&db);
    let segments_before = wal_files(&fs).len();

    let written = db.compact_head().await.unwrap();
    assert_eq!(written.len(), 1, "5 h of head: one 2 h block leaves 3 h, no longer compactable");
    let meta = &written[0];
    assert_eq!((meta.min_time_ms, meta.max_time_ms), (0, 2 * HOUR_MS));
    assert_eq!(meta.stats.series_count, 2);
    assert_eq!(meta.stats.sample_count, 2 * 1440);
    let stats = db.stats();
    assert_eq!(stats.block_count, 1);
    assert_eq!(stats.time_range_ms, Some((2 * HOUR_MS, 5 * HOUR_MS - 5_000)));
    assert_eq!(stats.compaction.head_compactions_total, 1);
    assert_eq!(stats.compaction.checkpoint_creations_total, 1);
    assert_eq!(everything(&db), before, "queries see the same samples, now from block and head");

    let files = wal_files(&fs);
    let checkpoint = files.iter().find(|name| name.starts_with("checkpoint.")).expect("a checkpoint");
    let covered: u32 = checkpoint["checkpoint.".len()..].parse().unwrap();
    assert!(
        files.iter().filter_map(|name| name.parse::<u32>().ok()).all(|index| index > covered),
        "segments up to the checkpoint are deleted: {files:?}"
    );
    assert!(files.len() < segments_before, "the wal shrank: {segments_before} segments before, now {files:?}");

    // The persisted range is closed to appends.
    let mut appender = db.appender();
    let refused = appender.append(None, &up, HOUR_MS, 1.0).unwrap_err();
    assert!(
        matches!(refused, AppendError::OutOfBounds { min_valid_ms, .. } if min_valid_ms == 2 * HOUR_MS),
        "{refused}"
    );

    drop(appender);
    drop(db);
    let db = open(&fs, persist_options());
    assert_eq!(everything(&db), before, "restart: block, checkpoint and later segments give the same data");
    let stats = db.stats();
    assert_eq!(stats.block_count, 1);
    assert_eq!(stats.wal_samples_replayed, 2 * (3600 - 1440), "the head's samples, from checkpoint and segments");
}

#[tokio::test]
async fn persisted_series_without_new_samples_leave_the_head() {
    let fs = MemFs::default();
    let db = open(&fs, persist_options());
    let (gone, staying) = (series("gone", "a"), series("staying", "b"));
    fill_range(&db, &[&gone, &staying], 0, HOUR_MS, 60_000).await;
    fill_range(&db, &[&staying], HOUR_MS, 4 * HOUR_MS, 60_000).await;
    let before = everything(&db);
    assert_eq!(db.stats().series_count, 2);
    db.compact_head().await.unwrap();
    let stats = db.stats();
    assert_eq!(stats.series_count, 1, "the idle series left the head");
    assert_eq!(stats.series_removed_total, 1);
    assert_eq!(everything(&db), before, "its samples are served from the block");
    // Scraped again: a new head series, merged with the block's by labels.
    commit(&db, &[(&gone, 4 * HOUR_MS, 7.0)]).await.unwrap();
    let after = everything(&db);
    let gone_samples = &after.iter().find(|(labels, _)| labels.contains("gone")).unwrap().1;
    assert_eq!(gone_samples.len(), 61);
    assert_eq!(gone_samples.last(), Some(&(4 * HOUR_MS, 7.0_f64.to_bits())));
}

#[tokio::test]
async fn a_series_held_by_an_appender_is_not_collected() {
    let fs = MemFs::default();
    let db = open(&fs, persist_options());
    let (idle, busy) = (series("idle", "a"), series("busy", "b"));
    fill_range(&db, &[&idle, &busy], 0, HOUR_MS, 60_000).await;
    fill_range(&db, &[&busy], HOUR_MS, 4 * HOUR_MS, 60_000).await;
    let mut appender = db.appender();
    let idle_ref = appender.append(None, &idle, 4 * HOUR_MS, 1.0).unwrap();
    db.compact_head().await.unwrap();
    assert_eq!(db.stats().series_count, 2, "the held series stays");
    appender.commit().await.unwrap();
    let mut next = db.appender();
    next.append_by_ref(idle_ref, 4 * HOUR_MS + 60_000, 2.0).unwrap();
    next.commit().await.unwrap();
    let got = everything(&db);
    let idle_samples = &got.iter().find(|(labels, _)| labels.contains("idle")).unwrap().1;
    assert_eq!(idle_samples.len(), 62, "60 from the block, 2 from the head");
}

#[tokio::test]
async fn a_querier_opened_before_the_block_keeps_seeing_the_range() {
    let fs = MemFs::default();
    let db = open(&fs, persist_options());
    let up = series("up", "a");
    fill_range(&db, &[&up], 0, 4 * HOUR_MS, 60_000).await;
    let matcher = Matcher::new(MatchKind::Equal, "__name__", "up").unwrap();
    let early = db.querier(i64::MIN, i64::MAX).unwrap();
    let compaction = tokio::spawn({
        let db = db.clone();
        async move { db.compact_head().await }
    });
    // Let the compaction write its block and reach the wait for older readers.
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        if db.stats().block_count == 1 {
            break;
        }
    }
    assert_eq!(db.stats().block_count, 1);
    assert_eq!(db.stats().compaction.head_truncations_total, 0, "truncation waits for the early querier");
    let samples = early.select(None, std::slice::from_ref(&matcher)).next().unwrap().unwrap().samples;
    assert_eq!(samples.len(), 240, "the early querier (head only) still has the persisted range");
    drop(early);
    compaction.await.unwrap().unwrap();
    assert_eq!(db.stats().compaction.head_truncations_total, 1);
    let late = db.querier(i64::MIN, i64::MAX).unwrap();
    assert_eq!(late.select(None, &[matcher]).next().unwrap().unwrap().samples.len(), 240);
}

#[tokio::test]
async fn committed_samples_survive_a_crash_after_persistence() {
    let fs = MemFs::default();
    let db = open(&fs, persist_options());
    let (up, temp) = (series("up", "a"), series("temp", "b"));
    fill_range(&db, &[&up, &temp], 0, 7 * HOUR_MS, 30_000).await;
    db.compact_head().await.unwrap();
    fill_range(&db, &[&up, &temp], 7 * HOUR_MS, 8 * HOUR_MS, 30_000).await;
    db.compact_head().await.unwrap();
    let before = everything(&db);
    assert_eq!(db.stats().block_count, 3);
    drop(db);
    fs.crash();
    let db = open(&fs, persist_options());
    assert_eq!(everything(&db), before);
    assert_eq!(db.stats().block_count, 3);
}

#[tokio::test]
async fn the_compactor_task_persists_on_its_own() {
    let fs = MemFs::default();
    let db = open(&fs, DbOptions { background_compaction: true, ..persist_options() });
    let up = series("up", "a");
    fill_range(&db, &[&up], 0, 4 * HOUR_MS, 60_000).await;
    // The writer wakes the compactor once the head spans more than 3 h.
    for _ in 0..200 {
        if db.stats().compaction.head_truncations_total == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(db.stats().block_count, 1);
    assert_eq!(db.stats().compaction.head_truncations_total, 1);
}

fn leveled_options(retention: compact::Retention) -> DbOptions {
    DbOptions { retention, block_duration_max_ms: 54 * HOUR_MS, ..persist_options() }
}

fn block_ranges(db: &Db) -> Vec<(i64, i64, u32)> {
    db.blocks()
        .iter()
        .map(|opened| (opened.meta().min_time_ms, opened.meta().max_time_ms, opened.meta().compaction.level))
        .collect()
}

#[tokio::test]
async fn blocks_are_compacted_by_level_and_replaced_sources_deleted() {
    let fs = MemFs::default();
    let db = open(&fs, leveled_options(compact::Retention::default()));
    let up = series("up", "a");
    fill_range(&db, &[&up], 0, 11 * HOUR_MS, 60_000).await;
    let before = everything(&db);
    db.compact_head().await.unwrap();
    // Head ranges 0-2, 2-4, 4-6, 6-8 became blocks; the first three fill the 6 h range (the
    // newest block is never compacted).
    assert_eq!(block_ranges(&db), vec![(0, 6 * HOUR_MS, 2), (6 * HOUR_MS, 8 * HOUR_MS, 1)]);
    assert_eq!(db.stats().compaction.block_compactions_total, 1);
    assert_eq!(everything(&db), before);
    let block_dirs: Vec<String> =
        fs.list_dir(Path::new("/db")).unwrap().into_iter().filter(|name| block::Ulid::parse(name).is_some()).collect();
    assert_eq!(block_dirs.len(), 2, "the three sources were deleted: {block_dirs:?}");
    drop(db);
    let db = open(&fs, leveled_options(compact::Retention::default()));
    assert_eq!(everything(&db), before, "restart");
}

#[tokio::test]
async fn retention_removes_whole_blocks_by_time_and_by_size() {
    let fs = MemFs::default();
    let by_time = compact::Retention { duration_ms: Some(2 * HOUR_MS), size_bytes: None };
    let db = open(&fs, leveled_options(by_time));
    let up = series("up", "a");
    fill_range(&db, &[&up], 0, 11 * HOUR_MS, 60_000).await;
    db.compact_head().await.unwrap();
    // Blocks 0-6 and 6-8: the first ends 2 h before the newest's end, so it goes.
    assert_eq!(block_ranges(&db), vec![(6 * HOUR_MS, 8 * HOUR_MS, 1)]);
    assert_eq!(db.stats().compaction.time_retentions_total, 1);
    let samples = &everything(&db)[0].1;
    assert_eq!(samples.first().map(|sample| sample.0), Some(6 * HOUR_MS), "data before 6 h is gone");
    drop(db);

    // Size: a limit below the blocks' size keeps none of them, the head's data stays.
    let by_size = compact::Retention { duration_ms: None, size_bytes: Some(1) };
    let db = open(&fs, leveled_options(by_size));
    fill_range(&db, &[&up], 11 * HOUR_MS, 12 * HOUR_MS, 60_000).await;
    db.compact_head().await.unwrap();
    assert!(block_ranges(&db).is_empty());
    assert_eq!(db.stats().compaction.size_retentions_total, 1);
    let samples = &everything(&db)[0].1;
    assert!(samples.first().is_some_and(|sample| sample.0 >= 8 * HOUR_MS), "the head still serves its range");
}
