//! The `corrupt_wal` fault and its checker. While an engine host is down, the harness queues a
//! damage for it; the host applies it to its own simulated disk just before the engine starts
//! again (turmoil's filesystem belongs to the host, so only code running on the host reaches it).
//!
//! Applying it also works out what the damage must cost: the newest non-empty segment is
//! scanned before and after with the engine's own segment scanner (`tsdb::wal::page`), and every
//! record that was whole before and is gone or undecodable after is lost, together with the
//! later samples of any series whose series record was lost (replay skips samples of unknown
//! series). The checker then holds the engine to exactly that: each committed sample it lost
//! must be in the expected set (no loss beyond the damage: Prometheus' repair drops everything
//! after the first corruption), each committed sample in the set must be gone, and the engine's
//! reported corruption count must equal the damaged ranges found.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use engine::model::{is_stale_nan, Labels, SeriesRef};
use engine::tsdb::wal::page::{scan_segment, ScanItem};
use engine::tsdb::wal::{compression::decompress, decode_record, Record};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use turmoil::fs::shim::std::fs as sim_fs;

/// The engine's WAL directory on every engine host.
pub const WAL_DIR: &str = "/data/wal";

/// How the bytes are damaged.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DamageKind {
    /// `bytes` single bytes, each at its own seeded offset, XORed with a nonzero mask.
    BitFlip,
    /// `bytes` consecutive bytes from a seeded offset set to zero.
    Zero,
    /// The segment cut at a seeded offset (a torn tail, or a lost end of file).
    Truncate,
}

/// A damage waiting for its host's next start.
#[derive(Debug, Clone)]
pub struct PendingDamage {
    /// How.
    pub kind: DamageKind,
    /// Bytes flipped or zeroed.
    pub bytes: u64,
    /// Seed for the offsets.
    pub seed: u64,
}

/// What one damage did and must cost.
#[derive(Debug, Clone, Default)]
pub struct DamageOutcome {
    /// Host damaged.
    pub host: String,
    /// Which start of the host it preceded (1 = the first).
    pub start_number: u64,
    /// A line on the damage (kind, segment, offsets).
    pub description: String,
    /// Whole records before the damage.
    pub record_count_before: u64,
    /// Of those, lost.
    pub records_lost_count: u64,
    /// Damaged ranges the scanner finds afterwards (what the engine must report).
    pub damaged_range_count: u64,
    /// Samples (non-stale) that must be lost, by series and timestamp.
    pub samples_lost: BTreeSet<(Labels, i64)>,
    /// The applying failed (a file could not be read or written): the checker fails the run.
    pub error: Option<String>,
}

/// Damages queued per host, and what each applied damage did.
#[derive(Debug, Default)]
pub struct DamageBook {
    /// Host -> damages for its next start.
    pub pending: BTreeMap<String, Vec<PendingDamage>>,
    /// Damages applied, in order.
    pub applied: Vec<DamageOutcome>,
    /// Host -> how many times it started.
    pub starts: BTreeMap<String, u64>,
}

/// Shared between the harness (queues) and the engine hosts (apply).
pub type SharedDamageBook = Arc<Mutex<DamageBook>>;

/// Applies `host`'s queued damages to the current host's disk (call from inside the host,
/// before the engine opens its directory).
pub fn apply_pending(book: &SharedDamageBook, host: &str) {
    let (pending, start_number) = {
        let mut book = book.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let starts = book.starts.entry(host.to_string()).or_default();
        *starts += 1;
        let start_number = *starts;
        (book.pending.remove(host), start_number)
    };
    for damage in pending.unwrap_or_default() {
        let mut outcome = apply(host, &damage).unwrap_or_else(|error| DamageOutcome {
            host: host.to_string(),
            description: format!("{:?} of {} bytes", damage.kind, damage.bytes),
            error: Some(error.to_string()),
            ..DamageOutcome::default()
        });
        outcome.start_number = start_number;
        book.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).applied.push(outcome);
    }
}

/// The WAL's segments (checkpoint segments first, then the log's), as (path, index) in replay
/// order.
fn wal_segments() -> std::io::Result<Vec<PathBuf>> {
    let mut segments: Vec<(u32, PathBuf)> = Vec::new();
    let mut checkpoint: Option<(u32, PathBuf)> = None;
    for entry in sim_fs::read_dir(WAL_DIR)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(index) = name.strip_prefix("checkpoint.").and_then(|digits| digits.parse::<u32>().ok()) {
            if checkpoint.as_ref().is_none_or(|(newest, _)| index > *newest) {
                checkpoint = Some((index, entry.path()));
            }
        } else if let Some(index) = name.parse::<u32>().ok().filter(|_| name.bytes().all(|b| b.is_ascii_digit())) {
            segments.push((index, entry.path()));
        }
    }
    segments.sort();
    let mut ordered = Vec::new();
    if let Some((checkpoint_index, dir)) = &checkpoint {
        let mut inner: Vec<(u32, PathBuf)> = Vec::new();
        for entry in sim_fs::read_dir(dir)? {
            let entry = entry?;
            if let Ok(index) = entry.file_name().to_string_lossy().parse::<u32>() {
                inner.push((index, entry.path()));
            }
        }
        inner.sort();
        ordered.extend(inner.into_iter().map(|(_, path)| path));
        segments.retain(|(index, _)| index > checkpoint_index);
    }
    ordered.extend(segments.into_iter().map(|(_, path)| path));
    Ok(ordered)
}

/// Records by (offset, end): stored bytes and the decoded record.
type RecordsByRange = BTreeMap<(u64, u64), (Vec<u8>, Record)>;

/// A segment's whole, decodable records by (offset, end), each with its stored bytes (compared
/// instead of the decoded record: stale markers are NaNs), and the damaged ranges found.
fn decoded_records(bytes: &[u8]) -> (RecordsByRange, u64) {
    let mut records = BTreeMap::new();
    let mut damaged_range_count = 0;
    let mut buffer = Vec::new();
    for item in scan_segment(bytes) {
        match item {
            ScanItem::Record(scanned) => {
                let decoded =
                    decompress(scanned.flags, &scanned.stored, &mut buffer).ok().map(|()| decode_record(&buffer));
                match decoded {
                    Some(Ok(record)) => {
                        records.insert((scanned.offset, scanned.end), (scanned.stored.to_vec(), record));
                    }
                    // Types the engine keeps but does not replay (exemplars, metadata): no loss.
                    Some(Err(engine::tsdb::wal::RecordError::UnknownType { .. }))
                    | Some(Err(engine::tsdb::wal::RecordError::Empty)) => {}
                    _ => damaged_range_count += 1,
                }
            }
            ScanItem::Loss(_) => damaged_range_count += 1,
        }
    }
    (records, damaged_range_count)
}

fn apply(host: &str, damage: &PendingDamage) -> std::io::Result<DamageOutcome> {
    let segments = wal_segments()?;
    let mut contents: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    for path in &segments {
        contents.push((path.clone(), sim_fs::read(path)?));
    }
    let Some(target) =
        contents.iter().rposition(|(path, bytes)| !bytes.is_empty() && path.parent() == Some(Path::new(WAL_DIR)))
    else {
        return Err(std::io::Error::other("no non-empty wal segment to damage"));
    };
    let (path, before) = contents[target].clone();
    let mut after = before.clone();
    let mut rng = ChaCha8Rng::seed_from_u64(damage.seed);
    let size = before.len() as u64;
    let description = match damage.kind {
        DamageKind::BitFlip => {
            let mut offsets = BTreeSet::new();
            for _ in 0..damage.bytes {
                let offset = rng.random_range(0..size);
                after[offset as usize] ^= rng.random_range(1..=255_u8);
                offsets.insert(offset);
            }
            format!("bit_flip of {} bytes at {offsets:?}", damage.bytes)
        }
        DamageKind::Zero => {
            let length = damage.bytes.min(size);
            let start = rng.random_range(0..=size - length);
            after[start as usize..(start + length) as usize].fill(0);
            format!("zero bytes {start}..{}", start + length)
        }
        DamageKind::Truncate => {
            let cut = rng.random_range(0..size);
            after.truncate(cut as usize);
            format!("truncate at {cut}")
        }
    };
    sim_fs::write(&path, &after)?;
    sim_fs::OpenOptions::new().write(true).open(&path)?.sync_all()?;
    sim_fs::sync_dir(WAL_DIR)?;

    // Every series the WAL names, before the damage.
    let mut labels_by_ref: BTreeMap<SeriesRef, Labels> = BTreeMap::new();
    let mut per_segment = Vec::new();
    for (index, (_, bytes)) in contents.iter().enumerate() {
        let (records, _) = decoded_records(bytes);
        for (_, record) in records.values() {
            if let Record::Series(series) = record {
                labels_by_ref.extend(series.iter().cloned());
            }
        }
        per_segment.push((index, records));
    }
    let (records_after, damaged_range_count) = decoded_records(&after);
    let records_before = &per_segment[target].1;
    let mut outcome = DamageOutcome {
        host: host.to_string(),
        description: format!("{description} in {} ({size} bytes)", path.display()),
        record_count_before: records_before.len() as u64,
        damaged_range_count,
        ..DamageOutcome::default()
    };
    let mut lost_series: BTreeSet<SeriesRef> = BTreeSet::new();
    let lose_samples = |record: &Record, only: Option<&BTreeSet<SeriesRef>>, lost: &mut BTreeSet<(Labels, i64)>| {
        if let Record::Samples(samples) = record {
            for sample in samples {
                if only.is_some_and(|refs| !refs.contains(&sample.series_ref)) || is_stale_nan(sample.value) {
                    continue;
                }
                if let Some(labels) = labels_by_ref.get(&sample.series_ref) {
                    lost.insert((labels.clone(), sample.timestamp_ms));
                }
            }
        }
    };
    let mut samples_lost = BTreeSet::new();
    for (range, (stored, record)) in records_before {
        let kept = records_after.get(range).is_some_and(|(stored_after, _)| stored_after == stored);
        if kept {
            // Samples of a series whose record was lost earlier in the segment are skipped.
            lose_samples(record, Some(&lost_series), &mut samples_lost);
            continue;
        }
        outcome.records_lost_count += 1;
        if let Record::Series(series) = record {
            lost_series.extend(series.iter().map(|(series_ref, _)| *series_ref));
        }
        lose_samples(record, None, &mut samples_lost);
    }
    outcome.samples_lost = samples_lost;
    Ok(outcome)
}
