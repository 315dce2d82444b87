//! The alerts an alert manager holds (Alertmanager provider/mem and types.Alert): keyed by
//! their label fingerprint, merged when the same alert arrives again (from a resend, or from
//! the other replica of an HA pair), and dropped once resolved for longer than the retention.
//!
//! Invariants: at most `capacity` alerts (new alerts beyond it are refused and counted, never
//! evicting firing ones); every alert has `starts_at_ms` and `ends_at_ms` set (an alert that
//! arrives without `endsAt` gets `now + resolve_timeout`, as the v2 API does).

use std::collections::BTreeMap;

use crate::model::Labels;
use crate::notifier::Alert;

/// Alertmanager's label-set fingerprint (common/model `labelSetToFingerprint`): FNV-1a 64 over
/// each name and value in name order, each followed by the separator byte 255.
pub fn fingerprint(labels: &Labels) -> u64 {
    const OFFSET: u64 = 14_695_981_039_346_656_037;
    const PRIME: u64 = 1_099_511_628_211;
    let mut hash = OFFSET;
    let mut add = |bytes: &[u8]| {
        for &byte in bytes {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    for label in labels.iter() {
        add(label.name.as_bytes());
        add(&[255]);
        add(label.value.as_bytes());
        add(&[255]);
    }
    hash
}

/// An alert as the alert manager keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredAlert {
    /// The alert.
    pub alert: Alert,
    /// `fingerprint(alert.labels)`.
    pub fingerprint: u64,
    /// When it was last received, Unix ms.
    pub updated_at_ms: i64,
    /// `endsAt` was not given: it resolves by timeout unless re-sent.
    pub timeout: bool,
}

impl StoredAlert {
    /// Resolved at `now_ms`.
    pub fn is_resolved_at(&self, now_ms: i64) -> bool {
        self.alert.ends_at_ms <= now_ms
    }
}

/// Why an alert was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertError {
    /// No labels.
    #[error("at least one label pair required")]
    NoLabels,
    /// `endsAt` before `startsAt`.
    #[error("start time must be before end time")]
    EndsBeforeStart,
    /// The store is full.
    #[error("too many alerts held ({0})")]
    Full(usize),
}

/// The alerts, by fingerprint.
#[derive(Debug)]
pub struct AlertStore {
    alerts: BTreeMap<u64, StoredAlert>,
    capacity: usize,
}

impl AlertStore {
    /// An empty store holding at most `capacity` alerts.
    pub fn new(capacity: usize) -> AlertStore {
        AlertStore { alerts: BTreeMap::new(), capacity: capacity.max(1) }
    }

    /// Completes and validates an incoming alert as the v2 API does (`postAlertsHandler`):
    /// a missing `startsAt` becomes now (or `endsAt` if given), a missing `endsAt` becomes
    /// `now + resolve_timeout_ms` with the timeout flag.
    pub fn prepare(mut alert: Alert, now_ms: i64, resolve_timeout_ms: i64) -> Result<StoredAlert, AlertError> {
        if alert.labels.is_empty() {
            return Err(AlertError::NoLabels);
        }
        if alert.starts_at_ms == 0 {
            alert.starts_at_ms = if alert.ends_at_ms == 0 { now_ms } else { alert.ends_at_ms };
        }
        let timeout = alert.ends_at_ms == 0;
        if timeout {
            alert.ends_at_ms = now_ms + resolve_timeout_ms;
        }
        if alert.ends_at_ms < alert.starts_at_ms {
            return Err(AlertError::EndsBeforeStart);
        }
        Ok(StoredAlert { fingerprint: fingerprint(&alert.labels), alert, updated_at_ms: now_ms, timeout })
    }

    /// Stores `incoming`, merged with the alert of the same labels if their intervals overlap
    /// (types.Alert `Merge`: the earliest start; the end of the most recently updated copy,
    /// unless that one only timed out and the other resolved explicitly). Returns the merged alert.
    pub fn put(&mut self, incoming: StoredAlert) -> Result<StoredAlert, AlertError> {
        let merged = match self.alerts.get(&incoming.fingerprint) {
            Some(existing) if overlaps(existing, &incoming) => merge(existing, incoming),
            Some(_) => incoming,
            None if self.alerts.len() >= self.capacity => return Err(AlertError::Full(self.capacity)),
            None => incoming,
        };
        self.alerts.insert(merged.fingerprint, merged.clone());
        Ok(merged)
    }

    /// The alert with `fingerprint`.
    pub fn get(&self, fingerprint: u64) -> Option<&StoredAlert> {
        self.alerts.get(&fingerprint)
    }

    /// Every alert, by fingerprint.
    pub fn iter(&self) -> impl Iterator<Item = &StoredAlert> {
        self.alerts.values()
    }

    /// Alerts held.
    pub fn len(&self) -> usize {
        self.alerts.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.alerts.is_empty()
    }

    /// Removes the alert with `fingerprint`.
    pub fn remove(&mut self, fingerprint: u64) -> Option<StoredAlert> {
        self.alerts.remove(&fingerprint)
    }

    /// Drops alerts resolved before `now_ms - retention_ms`; returns their fingerprints.
    pub fn gc(&mut self, now_ms: i64, retention_ms: i64) -> Vec<u64> {
        let dropped: Vec<u64> = self
            .alerts
            .values()
            .filter(|stored| stored.alert.ends_at_ms <= now_ms - retention_ms)
            .map(|stored| stored.fingerprint)
            .collect();
        for fingerprint in &dropped {
            self.alerts.remove(fingerprint);
        }
        dropped
    }
}

fn overlaps(existing: &StoredAlert, incoming: &StoredAlert) -> bool {
    // As provider/mem: an existing alert merges unless it resolved before the new one started.
    existing.alert.ends_at_ms >= incoming.alert.starts_at_ms && incoming.alert.ends_at_ms >= existing.alert.starts_at_ms
}

fn merge(existing: &StoredAlert, incoming: StoredAlert) -> StoredAlert {
    let (older, newer) = if incoming.updated_at_ms >= existing.updated_at_ms {
        (existing.clone(), incoming)
    } else {
        (incoming, existing.clone())
    };
    let mut merged = newer.clone();
    merged.alert.starts_at_ms = older.alert.starts_at_ms.min(newer.alert.starts_at_ms);
    // A timed-out end does not override an explicit resolve that came before it.
    if newer.timeout && !older.timeout && older.alert.ends_at_ms < newer.alert.ends_at_ms {
        merged.alert.ends_at_ms = older.alert.ends_at_ms;
        merged.timeout = false;
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(name: &str, starts_at_ms: i64, ends_at_ms: i64) -> Alert {
        Alert {
            labels: Labels::from_pairs([("alertname", name)]),
            annotations: Labels::empty(),
            starts_at_ms,
            ends_at_ms,
            generator_url: String::new(),
        }
    }

    #[test]
    fn fingerprints_match_alertmanager() {
        // common/model's empty label set signature is the FNV-1a offset basis.
        assert_eq!(fingerprint(&Labels::empty()), 14_695_981_039_346_656_037);
        let a = fingerprint(&Labels::from_pairs([("alertname", "A"), ("job", "x")]));
        let b = fingerprint(&Labels::from_pairs([("job", "x"), ("alertname", "A")]));
        assert_eq!(a, b);
        assert_ne!(a, fingerprint(&Labels::from_pairs([("alertname", "A"), ("job", "y")])));
    }

    #[test]
    fn prepare_fills_missing_times_as_the_v2_api() {
        let stored = AlertStore::prepare(alert("A", 0, 0), 10_000, 300_000).unwrap();
        assert_eq!((stored.alert.starts_at_ms, stored.alert.ends_at_ms, stored.timeout), (10_000, 310_000, true));
        let resolved = AlertStore::prepare(alert("A", 0, 5_000), 10_000, 300_000).unwrap();
        assert_eq!((resolved.alert.starts_at_ms, resolved.alert.ends_at_ms), (5_000, 5_000));
        assert_eq!(AlertStore::prepare(alert("A", 9, 5), 10, 1).unwrap_err(), AlertError::EndsBeforeStart);
        let unlabeled = Alert { labels: Labels::empty(), ..alert("A", 1, 2) };
        assert_eq!(AlertStore::prepare(unlabeled, 10, 1).unwrap_err(), AlertError::NoLabels);
    }

    #[test]
    fn the_same_alert_from_two_senders_merges_into_one() {
        let mut store = AlertStore::new(10);
        let first = AlertStore::prepare(alert("A", 1_000, 60_000), 2_000, 300_000).unwrap();
        let second = AlertStore::prepare(alert("A", 1_500, 70_000), 2_500, 300_000).unwrap();
        store.put(first).unwrap();
        let merged = store.put(second).unwrap();
        assert_eq!(store.len(), 1);
        assert_eq!((merged.alert.starts_at_ms, merged.alert.ends_at_ms), (1_000, 70_000));
        // A resolve then a late firing copy without endsAt keeps the resolve.
        let resolve = AlertStore::prepare(alert("A", 1_000, 3_000), 3_000, 300_000).unwrap();
        store.put(resolve).unwrap();
        let late = AlertStore::prepare(alert("A", 1_000, 0), 3_100, 300_000).unwrap();
        assert_eq!(store.put(late).unwrap().alert.ends_at_ms, 3_000);
    }

    #[test]
    fn a_full_store_refuses_new_alerts_and_gc_drops_old_resolved_ones() {
        let mut store = AlertStore::new(1);
        store.put(AlertStore::prepare(alert("A", 1, 100), 1, 1).unwrap()).unwrap();
        assert_eq!(store.put(AlertStore::prepare(alert("B", 1, 100), 1, 1).unwrap()).unwrap_err(), AlertError::Full(1));
        assert_eq!(store.gc(150, 100), Vec::<u64>::new());
        assert_eq!(store.gc(200, 100).len(), 1);
        assert!(store.is_empty());
    }
}
