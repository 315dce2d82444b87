//! The durability checker's record: every sample the engine reported as committed (the engine
//! calls the commit observer only after the WAL write is synced). After the run, everything in
//! the ledger must be queryable from the engine, across crashes and restarts.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use engine::model::{Labels, Sample};
use engine::tsdb::CommitObserver;

/// Committed samples by series and timestamp.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    /// Series -> timestamp ms -> value bits.
    pub samples: BTreeMap<Labels, BTreeMap<i64, u64>>,
    /// Samples reported committed, counting repeats.
    pub committed_count: u64,
}

impl Ledger {
    fn record(&mut self, batch: &[(Labels, Sample)]) {
        for (labels, sample) in batch {
            self.committed_count += 1;
            self.samples.entry(labels.clone()).or_default().insert(sample.timestamp_ms, sample.value.to_bits());
        }
    }

    /// Distinct samples recorded.
    pub fn distinct_sample_count(&self) -> u64 {
        self.samples.values().map(|series| series.len() as u64).sum()
    }
}

/// A ledger shared between the engine host (writer) and the client (reader).
pub type SharedLedger = Arc<Mutex<Ledger>>;

/// The observer handed to the engine: appends each committed batch to `ledger`.
pub fn observer(ledger: SharedLedger) -> CommitObserver {
    Arc::new(move |batch: &[(Labels, Sample)]| {
        ledger.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).record(batch);
    })
}
