//! A querier over several queriers (head and blocks today; remote stores later), as Prometheus'
//! `storage.NewMergeQuerier` with the chaining series merger: series with equal labels from
//! different sources become one series whose samples are merged by time, a timestamp present in
//! several sources taken once (from the first source that has it).
//!
//! Invariant: every source yields series sorted by labels, so the merge is a streaming k-way merge
//! holding one series per source. Concurrency: as the sources'.

use std::cmp::Ordering;

use super::{Querier, SelectHints, Series, SeriesSet, StorageError};
use crate::model::{Matcher, Sample};

/// Queries every source and merges the answers.
pub struct MergeQuerier {
    sources: Vec<Box<dyn Querier>>,
}

impl MergeQuerier {
    /// A querier over `sources`; earlier sources win on equal timestamps.
    pub fn new(sources: Vec<Box<dyn Querier>>) -> Self {
        MergeQuerier { sources }
    }
}

impl Querier for MergeQuerier {
    fn select(&self, hints: Option<&SelectHints>, matchers: &[Matcher]) -> SeriesSet<'_> {
        if self.sources.len() == 1 {
            return self.sources[0].select(hints, matchers);
        }
        let sets: Vec<SeriesSet<'_>> = self.sources.iter().map(|source| source.select(hints, matchers)).collect();
        let heads = sets.iter().map(|_| None).collect();
        Box::new(MergedSet { sets, heads, started: false, failed: false, pending_error: None })
    }

    fn label_names(&self, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        let mut names = Vec::new();
        for source in &self.sources {
            names.extend(source.label_names(matchers)?);
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn label_values(&self, name: &str, matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
        let mut values = Vec::new();
        for source in &self.sources {
            values.extend(source.label_values(name, matchers)?);
        }
        values.sort();
        values.dedup();
        Ok(values)
    }
}

struct MergedSet<'a> {
    sets: Vec<SeriesSet<'a>>,
    /// The next series of each source; `None` once the source is exhausted.
    heads: Vec<Option<Series>>,
    started: bool,
    failed: bool,
    /// An error met while reading ahead, reported after the series already merged.
    pending_error: Option<StorageError>,
}

impl MergedSet<'_> {
    fn refill(&mut self, index: usize) -> Result<(), StorageError> {
        self.heads[index] = self.sets[index].next().transpose()?;
        Ok(())
    }
}

impl Iterator for MergedSet<'_> {
    type Item = Result<Series, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(error) = self.pending_error.take() {
            return Some(Err(error));
        }
        if self.failed {
            return None;
        }
        if !self.started {
            self.started = true;
            for index in 0..self.sets.len() {
                if let Err(error) = self.refill(index) {
                    self.failed = true;
                    return Some(Err(error));
                }
            }
        }
        let best = (0..self.heads.len()).filter(|&index| self.heads[index].is_some()).min_by(|&a, &b| {
            match (&self.heads[a], &self.heads[b]) {
                (Some(x), Some(y)) => x.labels.cmp(&y.labels).then(a.cmp(&b)),
                _ => Ordering::Equal,
            }
        })?;
        let mut merged = self.heads[best].take()?;
        let mut to_refill = vec![best];
        for index in best + 1..self.heads.len() {
            if self.heads[index].as_ref().is_some_and(|other| other.labels == merged.labels) {
                if let Some(other) = self.heads[index].take() {
                    merged.samples = merge_samples(&merged.samples, &other.samples);
                }
                to_refill.push(index);
            }
        }
        for index in to_refill {
            if let Err(error) = self.refill(index) {
                self.failed = true;
                self.pending_error = Some(error);
                break;
            }
        }
        Some(Ok(merged))
    }
}

/// Merges two time-ordered sample lists; a timestamp in both is taken from `first`.
pub fn merge_samples(first: &[Sample], second: &[Sample]) -> Vec<Sample> {
    let mut out = Vec::with_capacity(first.len() + second.len());
    let (mut i, mut j) = (0, 0);
    while i < first.len() && j < second.len() {
        match first[i].timestamp_ms.cmp(&second[j].timestamp_ms) {
            Ordering::Less => {
                out.push(first[i]);
                i += 1;
            }
            Ordering::Greater => {
                out.push(second[j]);
                j += 1;
            }
            Ordering::Equal => {
                out.push(first[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&first[i..]);
    out.extend_from_slice(&second[j..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;

    /// A source answering a fixed, sorted list (matchers ignored).
    struct Fixed(Vec<Series>, Option<&'static str>);

    impl Querier for Fixed {
        fn select(&self, _hints: Option<&SelectHints>, _matchers: &[Matcher]) -> SeriesSet<'_> {
            let mut items: Vec<Result<Series, StorageError>> = self.0.iter().cloned().map(Ok).collect();
            if let Some(message) = self.1 {
                items.push(Err(StorageError::Read { context: "read chunk", source: message.into() }));
            }
            Box::new(items.into_iter())
        }
        fn label_names(&self, _matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
            let mut names: Vec<String> = self.0.iter().flat_map(|s| s.labels.iter().map(|l| l.name.clone())).collect();
            names.sort();
            names.dedup();
            Ok(names)
        }
        fn label_values(&self, name: &str, _matchers: &[Matcher]) -> Result<Vec<String>, StorageError> {
            Ok(self.0.iter().filter_map(|s| s.labels.get(name).map(str::to_string)).collect())
        }
    }

    fn series(job: &str, points: &[(i64, f64)]) -> Series {
        Series {
            labels: Labels::from_pairs([("__name__", "up"), ("job", job)]),
            samples: points.iter().map(|&(timestamp_ms, value)| Sample { timestamp_ms, value }).collect(),
        }
    }

    type Answer = Result<(String, Vec<(i64, f64)>), String>;

    fn run(sources: Vec<Fixed>) -> Vec<Answer> {
        let querier = MergeQuerier::new(sources.into_iter().map(|s| Box::new(s) as Box<dyn Querier>).collect());
        querier
            .select(None, &[])
            .map(|item| {
                item.map(|s| {
                    (
                        s.labels.get("job").unwrap_or("").to_string(),
                        s.samples.iter().map(|p| (p.timestamp_ms, p.value)).collect(),
                    )
                })
                .map_err(|error| error.to_string())
            })
            .collect()
    }

    #[test]
    fn merges_by_labels_and_time_first_source_wins() {
        let head = Fixed(vec![series("a", &[(3, 30.0), (4, 40.0)]), series("c", &[(1, 1.0)])], None);
        let block = Fixed(vec![series("a", &[(1, 10.0), (3, 99.0)]), series("b", &[(2, 2.0)])], None);
        let got = run(vec![head, block]);
        assert_eq!(
            got,
            vec![
                Ok(("a".to_string(), vec![(1, 10.0), (3, 30.0), (4, 40.0)])),
                Ok(("b".to_string(), vec![(2, 2.0)])),
                Ok(("c".to_string(), vec![(1, 1.0)])),
            ]
        );
    }

    #[test]
    fn an_error_in_a_source_ends_the_set() {
        let good = Fixed(vec![series("a", &[(1, 1.0)]), series("z", &[(1, 1.0)])], None);
        let bad = Fixed(vec![series("b", &[(1, 1.0)])], Some("bad crc"));
        let got = run(vec![good, bad]);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[2], Err("read chunk: bad crc".to_string()));
    }

    #[test]
    fn label_names_and_values_are_unions() {
        let one = Fixed(vec![series("a", &[(1, 1.0)])], None);
        let two = Fixed(vec![series("b", &[(1, 1.0)]), series("a", &[(2, 1.0)])], None);
        let querier = MergeQuerier::new(vec![Box::new(one), Box::new(two)]);
        assert_eq!(querier.label_names(&[]).unwrap(), vec!["__name__", "job"]);
        assert_eq!(querier.label_values("job", &[]).unwrap(), vec!["a", "b"]);
    }
}
