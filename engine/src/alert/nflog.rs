//! The notification log (Alertmanager nflog/): what each receiver was last told about each
//! alert group, so a group that did not change is not notified again before its repeat
//! interval, and a restart (the log is persisted) does not notify again either.
//!
//! Invariants: at most [`ENTRY_COUNT_MAX`] entries (the least recently written go first);
//! entries expire `retention_ms` after they were written; a snapshot is a pure function of the
//! entries (sorted JSON), so the same log always writes the same bytes.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Most entries kept (groups x receivers).
pub const ENTRY_COUNT_MAX: usize = 100_000;
/// Alertmanager's `--data.retention` default: how long entries and expired silences are kept.
pub const RETENTION_MS_DEFAULT: i64 = 120 * 3_600_000;

/// What one receiver was last told about one group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Fingerprints of the firing alerts notified.
    pub firing: BTreeSet<u64>,
    /// Fingerprints of the resolved alerts notified.
    pub resolved: BTreeSet<u64>,
    /// When the notification went out, Unix ms.
    pub timestamp_ms: i64,
    /// When the entry is forgotten, Unix ms.
    pub expires_at_ms: i64,
}

impl Entry {
    /// Every alert in `firing` was already notified as firing (`IsFiringSubset`).
    pub fn is_firing_subset(&self, firing: &BTreeSet<u64>) -> bool {
        firing.is_subset(&self.firing)
    }

    /// Every alert in `resolved` was already notified as resolved (`IsResolvedSubset`).
    pub fn is_resolved_subset(&self, resolved: &BTreeSet<u64>) -> bool {
        resolved.is_subset(&self.resolved)
    }
}

/// Decides whether a group must be notified (notify.go `DedupStage.needsUpdate`).
pub fn needs_update(
    entry: Option<&Entry>,
    firing: &BTreeSet<u64>,
    resolved: &BTreeSet<u64>,
    send_resolved: bool,
    repeat_interval_ms: i64,
    now_ms: i64,
) -> bool {
    let Some(entry) = entry else {
        // Never notified: only if something fires.
        return !firing.is_empty();
    };
    if !entry.is_firing_subset(firing) {
        return true;
    }
    if firing.is_empty() {
        // Everything resolved: notify (even without send_resolved, to clear the log) only if
        // the receiver was told about firing alerts.
        return !entry.firing.is_empty();
    }
    if send_resolved && !entry.is_resolved_subset(resolved) {
        return true;
    }
    entry.timestamp_ms <= now_ms - repeat_interval_ms
}

/// The log: entries keyed by (group key, receiver and integration).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationLog {
    entries: BTreeMap<String, Entry>,
}

/// The key of a group's entry for one integration of a receiver.
pub fn entry_key(group_key: &str, receiver: &str, integration: &str, index: usize) -> String {
    format!("{group_key}\u{0}{receiver}/{integration}/{index}")
}

impl NotificationLog {
    /// The entry under `key`, if it has not expired.
    pub fn get(&self, key: &str, now_ms: i64) -> Option<&Entry> {
        self.entries.get(key).filter(|entry| entry.expires_at_ms > now_ms)
    }

    /// Records a notification.
    pub fn log(&mut self, key: &str, firing: BTreeSet<u64>, resolved: BTreeSet<u64>, now_ms: i64, retention_ms: i64) {
        self.entries.insert(
            key.to_string(),
            Entry { firing, resolved, timestamp_ms: now_ms, expires_at_ms: now_ms.saturating_add(retention_ms) },
        );
        if self.entries.len() > ENTRY_COUNT_MAX {
            let oldest = self.entries.iter().min_by_key(|(_, entry)| entry.timestamp_ms).map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
    }

    /// Drops expired entries; returns how many.
    pub fn gc(&mut self, now_ms: i64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, entry| entry.expires_at_ms > now_ms);
        before - self.entries.len()
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The bytes to persist.
    pub fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// A log read back from [`NotificationLog::snapshot`] bytes.
    pub fn from_snapshot(bytes: &[u8]) -> Result<NotificationLog, String> {
        serde_json::from_slice(bytes).map_err(|error| format!("notification log snapshot: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[u64]) -> BTreeSet<u64> {
        items.iter().copied().collect()
    }

    #[test]
    fn needs_update_follows_alertmanager_dedup() {
        let none = set(&[]);
        assert!(needs_update(None, &set(&[1]), &none, true, 1000, 0));
        assert!(!needs_update(None, &none, &set(&[1]), true, 1000, 0));
        let entry = Entry { firing: set(&[1, 2]), resolved: none.clone(), timestamp_ms: 0, expires_at_ms: i64::MAX };
        // A new firing alert.
        assert!(needs_update(Some(&entry), &set(&[1, 3]), &none, true, 1000, 10));
        // Unchanged: only after the repeat interval.
        assert!(!needs_update(Some(&entry), &set(&[1, 2]), &none, true, 1000, 999));
        assert!(needs_update(Some(&entry), &set(&[1, 2]), &none, true, 1000, 1000));
        // One resolved: with send_resolved only.
        assert!(needs_update(Some(&entry), &set(&[1]), &set(&[2]), true, 1000, 10));
        assert!(!needs_update(Some(&entry), &set(&[1]), &set(&[2]), false, 1000, 10));
        // All resolved: always, to clear the receiver's state.
        assert!(needs_update(Some(&entry), &none, &set(&[1, 2]), false, 1000, 10));
        let cleared = Entry { firing: none.clone(), resolved: set(&[1]), timestamp_ms: 0, expires_at_ms: i64::MAX };
        assert!(!needs_update(Some(&cleared), &none, &set(&[1, 5]), true, 1000, 10));
    }

    #[test]
    fn entries_expire_and_survive_a_snapshot() {
        let mut log = NotificationLog::default();
        let key = entry_key("{}:{alertname=\"A\"}", "team", "webhook", 0);
        log.log(&key, set(&[7]), set(&[]), 1_000, 5_000);
        assert_eq!(log.get(&key, 5_999).unwrap().firing, set(&[7]));
        assert!(log.get(&key, 6_000).is_none());
        let restored = NotificationLog::from_snapshot(&log.snapshot()).unwrap();
        assert_eq!(restored, log);
        assert_eq!(log.gc(6_000), 1);
        assert!(log.is_empty());
        assert!(NotificationLog::from_snapshot(b"{not json").is_err());
    }
}
