//! Head unit tests: series creation and lookup, chunk cutting, appendability, concurrency.

use std::sync::Arc;

use super::*;
use crate::model::MatchKind;
use crate::storage::Querier;

fn options(chunk_sample_count_max: usize) -> HeadOptions {
    HeadOptions { chunk_sample_count_max, chunk_range_ms: 7_200_000, series_count_max: 1_000 }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

fn head() -> Arc<Head> {
    let head = Head::new(options(3));
    let series: [&[(&str, &str)]; 3] = [
        &[("__name__", "up"), ("job", "node"), ("env", "prod")],
        &[("__name__", "up"), ("job", "api")],
        &[("__name__", "requests"), ("job", "api"), ("env", "dev")],
    ];
    for (index, pairs) in series.iter().enumerate() {
        let (series_ref, created) = head.get_or_create(&labels(pairs)).unwrap();
        assert!(created);
        assert_eq!(series_ref as usize, index + 1, "references are handed out in order from 1");
        for step in 0..5 {
            head.append(series_ref, step * 1000, (series_ref as i64 * 10 + step) as f64);
        }
    }
    Arc::new(head)
}

fn select(head: &Arc<Head>, matchers: &[(MatchKind, &str, &str)], min_ms: i64, max_ms: i64) -> Vec<(String, Vec<i64>)> {
    let matchers: Vec<Matcher> =
        matchers.iter().map(|(kind, name, value)| Matcher::new(*kind, name, value).unwrap()).collect();
    read::HeadQuerier::new(head.clone(), min_ms, max_ms)
        .select(None, &matchers)
        .map(|series| {
            let series = series.unwrap();
            (series.labels.to_string(), series.samples.iter().map(|s| s.timestamp_ms).collect())
        })
        .collect()
}

#[test]
fn lookup_finds_exactly_the_created_series() {
    let head = head();
    assert_eq!(head.lookup(&labels(&[("__name__", "up"), ("job", "api")])), Some(2));
    assert_eq!(head.lookup(&labels(&[("__name__", "up"), ("job", "web")])), None);
    assert_eq!(head.get_or_create(&labels(&[("job", "api"), ("__name__", "up")])).unwrap(), (2, false));
    assert_eq!(head.labels(3).unwrap().to_string(), "requests{env=\"dev\", job=\"api\"}");
    assert_eq!(head.series_count(), 3);
}

#[test]
fn select_sorts_by_labels_and_filters_time() {
    let head = head();
    let got = select(&head, &[(MatchKind::Equal, "job", "api")], 1000, 3000);
    assert_eq!(
        got,
        vec![
            ("requests{env=\"dev\", job=\"api\"}".to_string(), vec![1000, 2000, 3000]),
            ("up{job=\"api\"}".to_string(), vec![1000, 2000, 3000]),
        ]
    );
    assert!(select(&head, &[(MatchKind::Equal, "job", "api")], 5000, 9000).is_empty());
}

#[test]
fn chunks_are_cut_by_count_and_at_block_boundaries() {
    let head = head();
    assert_eq!(head.chunk_count(), 6, "5 samples in chunks of 3: two chunks per series");
    let (series_ref, _) = head.get_or_create(&labels(&[("__name__", "boundary")])).unwrap();
    // 7,199,000 and 7,200,000 lie on either side of the 2 h block boundary.
    for timestamp_ms in [7_198_000, 7_199_000, 7_200_000] {
        head.append(series_ref, timestamp_ms, 1.0);
    }
    let chunks = head.with_series(series_ref, |series| series.closed.len() + usize::from(series.open.is_some()));
    assert_eq!(chunks, Some(2), "a chunk never spans a block boundary");
    let got = select(&head, &[(MatchKind::Equal, "__name__", "boundary")], 0, i64::MAX);
    assert_eq!(got[0].1, vec![7_198_000, 7_199_000, 7_200_000]);
}

#[test]
fn appendability_rules() {
    assert_eq!(appendability(None, 5, 1.0), Appendability::Append);
    assert_eq!(appendability(Some((5, 1.0_f64.to_bits())), 5, 1.0), Appendability::Duplicate);
    assert_eq!(appendability(Some((5, 1.0_f64.to_bits())), 5, 2.0), Appendability::DuplicateTimestamp);
    assert_eq!(appendability(Some((5, 0)), 4, 2.0), Appendability::OutOfOrder { last_timestamp_ms: 5 });
    let head = head();
    assert_eq!(head.append(1, 4000, 0.0), Some(Appendability::DuplicateTimestamp));
    assert_eq!(head.append(1, 100, 0.0), Some(Appendability::OutOfOrder { last_timestamp_ms: 4000 }));
    assert_eq!(head.append(99, 100, 0.0), None);
}

#[test]
fn series_limit_refuses_new_series_only() {
    let head = Head::new(HeadOptions { series_count_max: 2, ..options(120) });
    head.get_or_create(&labels(&[("__name__", "a")])).unwrap();
    head.get_or_create(&labels(&[("__name__", "b")])).unwrap();
    let refused = head.get_or_create(&labels(&[("__name__", "c")]));
    assert_eq!(
        refused,
        Err(AppendError::SeriesLimit { limit_count: 2, labels: "c{}".to_string() }),
        "the error names the limit"
    );
    assert_eq!(head.get_or_create(&labels(&[("__name__", "a")])).unwrap(), (1, false), "existing series still work");
    assert_eq!(head.append(1, 1, 1.0), Some(Appendability::Append));
    assert_eq!(head.counters.series_limit_refusals_total.load(Ordering::Relaxed), 1);
}

#[test]
fn replayed_series_keep_their_references_and_alias_duplicates() {
    let head = Head::new(options(120));
    let up = labels(&[("__name__", "up")]);
    assert_eq!(head.replay_series(7, &up), Replayed::Created);
    assert_eq!(head.replay_series(7, &up), Replayed::AlreadyKnown);
    assert_eq!(head.replay_series(9, &up), Replayed::Alias { from: 9, to: 7 });
    assert_eq!(head.replay_series(7, &labels(&[("__name__", "other")])), Replayed::Conflict);
    let (fresh, created) = head.get_or_create(&labels(&[("__name__", "new")])).unwrap();
    assert!(created);
    assert_eq!(fresh, 10, "new references continue after every replayed one");
}

#[test]
fn concurrent_creation_and_appends_lose_nothing() {
    let head = Arc::new(Head::new(HeadOptions { series_count_max: 100_000, ..options(120) }));
    let threads: Vec<_> = (0..4)
        .map(|thread_index| {
            let head = head.clone();
            // Tests may use threads: they exercise the head's locks, not engine scheduling.
            #[allow(clippy::disallowed_methods)]
            std::thread::spawn(move || {
                for series_index in 0..500 {
                    // Every thread creates the same 500 series, racing on each.
                    let series = labels(&[("__name__", "m"), ("i", &series_index.to_string())]);
                    let (series_ref, _) = head.get_or_create(&series).unwrap();
                    head.append(series_ref, 1000 * (thread_index + 1), thread_index as f64);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(head.series_count(), 500, "racing creators make one series per label set");
    assert_eq!(head.select_refs(&[]).len(), 500);
    let got = select(&head, &[(MatchKind::Equal, "__name__", "m")], 0, i64::MAX);
    assert_eq!(got.len(), 500);
    assert!(got.iter().all(|(_, times)| !times.is_empty()));
}
