//! Silences: time-bounded matchers that mute alerts, as Alertmanager 0.25 keeps them
//! (`silence/silence.go`) and as its API v2 shows and accepts them (`api/v2/compat.go`,
//! `postSilencesHandler`).
//!
//! Semantics:
//! - State at `now_ms`: pending before `startsAt`, active from `startsAt` until before `endsAt`,
//!   expired from `endsAt` on (`types.CalcSilenceState`, the state the API reports). With
//!   millisecond times this makes an expired silence expired at the very instant it was expired.
//! - [`Silences::set`] validates (start before end, end not in the past, at least one matcher,
//!   not every matcher matching the empty string, valid label names), then either updates the
//!   silence in place when that does not rewrite history (same matchers; an active silence keeps
//!   its start second and may only move its end; a pending one may not start in the past), or
//!   expires the old silence (if not yet expired) and creates a new one with a new id, its start
//!   clamped to `now_ms` (`Silences.Set`, `canUpdate`).
//! - [`Silences::expire`] ends an active silence now and turns a pending one into an expired
//!   one (start = end = now); expiring an expired silence is a no-op (`Silences.expire`).
//! - A silence mutes an alert while active and all its matchers match (`Silencer.Mutes`).
//! - Garbage collection drops a silence [`Silences::retention_ms`] after it ended (`GC`).
//!
//! Invariants: at most [`SILENCE_COUNT_MAX`] silences (expired ones included; creating one
//! more is refused, updates are not); ids are unique; every stored silence passed validation;
//! iteration is in id order, so listings and snapshots are deterministic. No clock and no OS
//! randomness: times are arguments, new ids derive from a caller-supplied random `u64`.
//!
//! Snapshot format (what [`Silences::snapshot`] writes and [`Silences::from_snapshot`] reads;
//! the caller stores the bytes through the engine's filesystem seam): one JSON document,
//! silences in id order, times as Unix ms:
//!
//! ```text
//! {"format":"engine-silences","version":1,"silences":[
//!   {"id":"…","matchers":[{"name":"job","value":"api","isRegex":false,"isEqual":true}],
//!    "starts_at_ms":…,"ends_at_ms":…,"updated_at_ms":…,"expires_at_ms":…,
//!    "created_by":"…","comment":"…"}]}
//! ```
//!
//! Concurrency: plain value; the owner serialises access (`&mut self` to change).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::alert::config::is_valid_label_name;
use crate::alert::matcher::{MatchType, Matcher, Matchers};
use crate::limits::{SILENCE_COUNT_MAX, SILENCE_ID_ATTEMPT_COUNT_MAX, SILENCE_RETENTION_MS_DEFAULT};
use crate::model::Labels;

/// A silence id: a UUID-shaped string (`8-4-4-4-12` lowercase hex, version 4 bits set).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SilenceId(pub String);

impl SilenceId {
    /// Derives a UUID-v4-shaped id from one random `u64` (SplitMix64 widens it to 128 bits).
    /// The same input always gives the same id.
    pub fn from_random(random: u64) -> SilenceId {
        let mut state = random;
        let high = split_mix_64(&mut state);
        let low = split_mix_64(&mut state);
        // Version 4 in the 13th hex digit, variant 10xx in the 17th, as uuid.NewV4 sets them.
        let high = (high & !0xF000) | 0x4000;
        let low = (low & !(0xC000 << 48)) | (0x8000 << 48);
        SilenceId(format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            high >> 32,
            (high >> 16) & 0xFFFF,
            high & 0xFFFF,
            low >> 48,
            low & 0xFFFF_FFFF_FFFF
        ))
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SilenceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn split_mix_64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A silence's state at some instant (API v2 `status.state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SilenceState {
    /// Starts in the future.
    Pending,
    /// Mutes matching alerts now.
    Active,
    /// Ended.
    Expired,
}

impl SilenceState {
    /// The API text: `pending`, `active` or `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceState::Pending => "pending",
            SilenceState::Active => "active",
            SilenceState::Expired => "expired",
        }
    }

    /// Listing order (`SortSilences`): active, then pending, then expired.
    fn order_index(self) -> u8 {
        match self {
            SilenceState::Active => 0,
            SilenceState::Pending => 1,
            SilenceState::Expired => 2,
        }
    }
}

/// A stored silence.
#[derive(Clone, Debug, PartialEq)]
pub struct Silence {
    /// Unique id.
    pub id: SilenceId,
    /// All must match for the silence to apply, in the order given.
    pub matchers: Matchers,
    /// When it starts muting, Unix ms.
    pub starts_at_ms: i64,
    /// When it stops muting, Unix ms (exclusive).
    pub ends_at_ms: i64,
    /// Last change, Unix ms.
    pub updated_at_ms: i64,
    /// Author.
    pub created_by: String,
    /// Why.
    pub comment: String,
}

impl Silence {
    /// The state at `now_ms` (`types.CalcSilenceState`).
    pub fn state_at(&self, now_ms: i64) -> SilenceState {
        if now_ms < self.starts_at_ms {
            SilenceState::Pending
        } else if now_ms < self.ends_at_ms {
            SilenceState::Active
        } else {
            SilenceState::Expired
        }
    }

    /// True when every matcher accepts `labels` (whatever the state).
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matchers.matches(labels)
    }

    /// The API v2 view at `now_ms` (serialises as `GettableSilence`).
    pub fn to_gettable(&self, now_ms: i64) -> GettableSilence {
        GettableSilence {
            id: self.id.clone(),
            matchers: self.matchers.clone(),
            starts_at_ms: self.starts_at_ms,
            ends_at_ms: self.ends_at_ms,
            updated_at_ms: self.updated_at_ms,
            created_by: self.created_by.clone(),
            comment: self.comment.clone(),
            status: SilenceStatus { state: self.state_at(now_ms) },
        }
    }
}

/// API v2 `silenceStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SilenceStatus {
    /// The state when the view was taken.
    pub state: SilenceState,
}

/// A silence as API v2 returns it: `{"id","matchers","startsAt","endsAt","updatedAt",
/// "createdBy","comment","status":{"state"}}`, times in RFC 3339 with milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GettableSilence {
    /// Unique id.
    pub id: SilenceId,
    /// Matchers in the order given.
    pub matchers: Matchers,
    /// Start, Unix ms.
    #[serde(rename = "startsAt", with = "rfc3339_ms")]
    pub starts_at_ms: i64,
    /// End, Unix ms.
    #[serde(rename = "endsAt", with = "rfc3339_ms")]
    pub ends_at_ms: i64,
    /// Last change, Unix ms.
    #[serde(rename = "updatedAt", with = "rfc3339_ms")]
    pub updated_at_ms: i64,
    /// Author.
    #[serde(rename = "createdBy")]
    pub created_by: String,
    /// Why.
    pub comment: String,
    /// State at the time of the view.
    pub status: SilenceStatus,
}

/// A silence as API v2 accepts it (`postableSilence`): without `id` it creates a silence, with
/// one it updates that silence. Unknown fields are ignored, as go-swagger does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PostableSilence {
    /// The silence to update; absent or empty to create one.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "deserialize_optional_id")]
    pub id: Option<SilenceId>,
    /// Matchers (`isEqual` defaults to true, `isRegex` to false).
    pub matchers: Matchers,
    /// Start, Unix ms.
    #[serde(rename = "startsAt", with = "rfc3339_ms")]
    pub starts_at_ms: i64,
    /// End, Unix ms.
    #[serde(rename = "endsAt", with = "rfc3339_ms")]
    pub ends_at_ms: i64,
    /// Author.
    #[serde(rename = "createdBy")]
    pub created_by: String,
    /// Why.
    pub comment: String,
}

fn deserialize_optional_id<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<SilenceId>, D::Error> {
    let id: Option<String> = Option::deserialize(deserializer)?;
    Ok(id.filter(|id| !id.is_empty()).map(SilenceId))
}

/// RFC 3339 text <-> Unix ms for serde (`strfmt.DateTime`: millisecond precision, UTC).
mod rfc3339_ms {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(unix_ms: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&crate::calendar::format_rfc3339_millis(*unix_ms))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        let text = String::deserialize(deserializer)?;
        crate::calendar::parse_rfc3339_ms(&text).map_err(serde::de::Error::custom)
    }
}

/// Why a silence operation was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    /// No silence has this id (Alertmanager: "silence not found"; API 404).
    #[error("silence not found: {id}")]
    NotFound {
        /// The id asked for.
        id: SilenceId,
    },
    /// The silence is not valid (API 400); the message follows Alertmanager's wording.
    #[error("{message}")]
    Invalid {
        /// What is wrong.
        message: String,
    },
    /// Creating one more silence would pass the limit.
    #[error("exceeded maximum number of silences: {silence_count} (limit: {silence_count_max})")]
    LimitExceeded {
        /// Silences stored, expired ones included.
        silence_count: usize,
        /// The limit ([`SILENCE_COUNT_MAX`]).
        silence_count_max: usize,
    },
    /// Every id drawn from the random value was taken.
    #[error("generate silence id: {attempt_count} ids drawn, all taken")]
    IdExhausted {
        /// Ids tried.
        attempt_count: u32,
    },
    /// A snapshot that does not decode or holds invalid silences.
    #[error("decode silence snapshot: {message}")]
    Snapshot {
        /// What is wrong.
        message: String,
    },
}

fn invalid(message: impl Into<String>) -> SilenceError {
    SilenceError::Invalid { message: message.into() }
}

/// A stored silence and when garbage collection may drop it.
#[derive(Clone, Debug, PartialEq)]
struct Entry {
    silence: Silence,
    expires_at_ms: i64,
}

/// Silence counts by state, e.g. for `alertmanager_silences{state}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SilenceCounts {
    /// Active now.
    pub active_count: usize,
    /// Starting later.
    pub pending_count: usize,
    /// Ended, not yet collected.
    pub expired_count: usize,
}

/// The silence store.
#[derive(Clone, Debug, PartialEq)]
pub struct Silences {
    entries: BTreeMap<SilenceId, Entry>,
    retention_ms: i64,
    version: u64,
}

impl Default for Silences {
    fn default() -> Self {
        Silences::new(SILENCE_RETENTION_MS_DEFAULT)
    }
}

impl Silences {
    /// An empty store keeping silences `retention_ms` after they end.
    pub fn new(retention_ms: i64) -> Silences {
        assert!(retention_ms >= 0, "retention_ms: expected >= 0, got {retention_ms}");
        Silences { entries: BTreeMap::new(), retention_ms, version: 0 }
    }

    /// How long silences are kept after they end.
    pub fn retention_ms(&self) -> i64 {
        self.retention_ms
    }

    /// Increases with every change, so a caller may cache mute decisions per version (as
    /// Alertmanager's marker does).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Silences stored, expired ones included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when none are stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The silence with this id.
    pub fn get(&self, id: &SilenceId) -> Option<&Silence> {
        self.entries.get(id).map(|entry| &entry.silence)
    }

    /// Creates or updates a silence as `POST /api/v2/silences` does; returns its id (the same
    /// id for an in-place update, a new one otherwise). `random` seeds a new id.
    pub fn set(&mut self, posted: PostableSilence, now_ms: i64, random: u64) -> Result<SilenceId, SilenceError> {
        // postSilencesHandler's checks, then validateSilence's.
        if posted.starts_at_ms >= posted.ends_at_ms {
            return Err(invalid("Failed to create silence: start time must be before end time"));
        }
        if posted.ends_at_ms < now_ms {
            return Err(invalid("Failed to create silence: end time can't be in the past"));
        }
        validate_matchers(&posted.matchers)?;
        let mut silence = Silence {
            id: posted.id.clone().unwrap_or_else(|| SilenceId(String::new())),
            matchers: posted.matchers,
            starts_at_ms: posted.starts_at_ms,
            ends_at_ms: posted.ends_at_ms,
            updated_at_ms: now_ms,
            created_by: posted.created_by,
            comment: posted.comment,
        };
        let previous_state = match &posted.id {
            None => None,
            Some(id) => {
                let previous = self.get(id).ok_or_else(|| SilenceError::NotFound { id: id.clone() })?;
                if can_update(previous, &silence, now_ms) {
                    self.store(silence.clone());
                    return Ok(silence.id);
                }
                Some((id.clone(), previous.state_at(now_ms)))
            }
        };
        // A new silence, possibly replacing the previous one: check capacity before changing
        // anything, so a refusal leaves the store as it was.
        if self.entries.len() + 1 > SILENCE_COUNT_MAX {
            return Err(SilenceError::LimitExceeded {
                silence_count: self.entries.len(),
                silence_count_max: SILENCE_COUNT_MAX,
            });
        }
        let id = self.new_id(random)?;
        if let Some((previous_id, state)) = previous_state {
            if state != SilenceState::Expired {
                self.expire(&previous_id, now_ms)?;
            }
        }
        silence.id = id.clone();
        silence.starts_at_ms = silence.starts_at_ms.max(now_ms);
        self.store(silence);
        Ok(id)
    }

    /// Expires a silence now (`DELETE /api/v2/silence/{id}`); a no-op for an expired one.
    pub fn expire(&mut self, id: &SilenceId, now_ms: i64) -> Result<(), SilenceError> {
        let mut silence = self.get(id).ok_or_else(|| SilenceError::NotFound { id: id.clone() })?.clone();
        match silence.state_at(now_ms) {
            SilenceState::Expired => return Ok(()),
            SilenceState::Active => silence.ends_at_ms = now_ms,
            SilenceState::Pending => {
                silence.starts_at_ms = now_ms;
                silence.ends_at_ms = now_ms;
            }
        }
        silence.updated_at_ms = now_ms;
        self.store(silence);
        Ok(())
    }

    /// Silences whose matchers include every filter matcher exactly (same name, type and value;
    /// `CheckSilenceMatchesFilterLabels`), sorted as the API lists them: active by end, pending
    /// by start, expired most recently ended first (`SortSilences`), ties by id.
    pub fn list(&self, filter: &[Matcher], now_ms: i64) -> Vec<&Silence> {
        let mut listed: Vec<&Silence> = self
            .entries
            .values()
            .map(|entry| &entry.silence)
            .filter(|silence| filter.iter().all(|wanted| silence.matchers.iter().any(|m| m == wanted)))
            .collect();
        listed.sort_by(|a, b| compare_for_listing(a, b, now_ms));
        listed
    }

    /// Ids of the active silences muting an alert with `labels` at `now_ms`, sorted; empty
    /// when it is not silenced (`Silencer.Mutes`).
    pub fn mutes(&self, labels: &Labels, now_ms: i64) -> Vec<SilenceId> {
        // Ids come out of the BTreeMap in order.
        self.entries
            .values()
            .map(|entry| &entry.silence)
            .filter(|silence| silence.state_at(now_ms) == SilenceState::Active && silence.matches(labels))
            .map(|silence| silence.id.clone())
            .collect()
    }

    /// Counts by state at `now_ms`.
    pub fn counts(&self, now_ms: i64) -> SilenceCounts {
        let mut counts = SilenceCounts::default();
        for entry in self.entries.values() {
            match entry.silence.state_at(now_ms) {
                SilenceState::Active => counts.active_count += 1,
                SilenceState::Pending => counts.pending_count += 1,
                SilenceState::Expired => counts.expired_count += 1,
            }
        }
        counts
    }

    /// Drops silences that ended at least the retention ago; returns how many.
    pub fn gc(&mut self, now_ms: i64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, entry| entry.expires_at_ms > now_ms);
        let removed_count = before - self.entries.len();
        if removed_count > 0 {
            self.version += 1;
        }
        removed_count
    }

    /// The whole store as snapshot bytes (see the module doc for the format).
    pub fn snapshot(&self) -> Vec<u8> {
        let file = SnapshotFile {
            format: SNAPSHOT_FORMAT.to_string(),
            version: SNAPSHOT_VERSION,
            silences: self
                .entries
                .values()
                .map(|entry| SnapshotSilence {
                    id: entry.silence.id.clone(),
                    matchers: entry.silence.matchers.clone(),
                    starts_at_ms: entry.silence.starts_at_ms,
                    ends_at_ms: entry.silence.ends_at_ms,
                    updated_at_ms: entry.silence.updated_at_ms,
                    expires_at_ms: entry.expires_at_ms,
                    created_by: entry.silence.created_by.clone(),
                    comment: entry.silence.comment.clone(),
                })
                .collect(),
        };
        serde_json::to_vec(&file).expect("a snapshot always serialises")
    }

    /// A store read back from [`Silences::snapshot`] bytes, keeping `retention_ms` for silences
    /// changed from now on (loaded ones keep their collection time, as Alertmanager's
    /// `loadSnapshot`). Expired silences are kept until the next [`Silences::gc`].
    pub fn from_snapshot(bytes: &[u8], retention_ms: i64) -> Result<Silences, SilenceError> {
        let snapshot_error = |message: String| SilenceError::Snapshot { message };
        let file: SnapshotFile = serde_json::from_slice(bytes).map_err(|error| snapshot_error(error.to_string()))?;
        if file.format != SNAPSHOT_FORMAT || file.version != SNAPSHOT_VERSION {
            return Err(snapshot_error(format!(
                "format {:?} version {}: expected {SNAPSHOT_FORMAT:?} version {SNAPSHOT_VERSION}",
                file.format, file.version
            )));
        }
        if file.silences.len() > SILENCE_COUNT_MAX {
            return Err(snapshot_error(format!(
                "{} silences: more than the limit of {SILENCE_COUNT_MAX}",
                file.silences.len()
            )));
        }
        let mut silences = Silences::new(retention_ms);
        for stored in file.silences {
            if stored.id.0.is_empty() || stored.ends_at_ms < stored.starts_at_ms {
                return Err(snapshot_error(format!("silence {:?}: empty id or end before start", stored.id.0)));
            }
            validate_matchers(&stored.matchers)
                .map_err(|error| snapshot_error(format!("silence {}: {error}", stored.id)))?;
            let silence = Silence {
                id: stored.id.clone(),
                matchers: stored.matchers,
                starts_at_ms: stored.starts_at_ms,
                ends_at_ms: stored.ends_at_ms,
                updated_at_ms: stored.updated_at_ms,
                created_by: stored.created_by,
                comment: stored.comment,
            };
            let entry = Entry { silence, expires_at_ms: stored.expires_at_ms };
            if silences.entries.insert(stored.id.clone(), entry).is_some() {
                return Err(snapshot_error(format!("silence {} appears twice", stored.id)));
            }
        }
        silences.version = 1;
        Ok(silences)
    }

    /// Inserts or replaces, recomputing the collection time (`setSilence`).
    fn store(&mut self, silence: Silence) {
        let expires_at_ms = silence.ends_at_ms.saturating_add(self.retention_ms);
        self.entries.insert(silence.id.clone(), Entry { silence, expires_at_ms });
        self.version += 1;
    }

    /// Draws ids from `random` until one is free.
    fn new_id(&self, random: u64) -> Result<SilenceId, SilenceError> {
        let mut seed = random;
        for _ in 0..SILENCE_ID_ATTEMPT_COUNT_MAX {
            let id = SilenceId::from_random(seed);
            if !self.entries.contains_key(&id) {
                return Ok(id);
            }
            seed = split_mix_64(&mut seed);
        }
        Err(SilenceError::IdExhausted { attempt_count: SILENCE_ID_ATTEMPT_COUNT_MAX })
    }
}

/// `validateSilence`'s matcher rules.
fn validate_matchers(matchers: &Matchers) -> Result<(), SilenceError> {
    if matchers.is_empty() {
        return Err(invalid("silence invalid: at least one matcher required"));
    }
    for (index, matcher) in matchers.iter().enumerate() {
        if !is_valid_label_name(&matcher.name) {
            return Err(invalid(format!(
                "silence invalid: invalid label matcher {index}: invalid label name {:?}",
                matcher.name
            )));
        }
    }
    // Alertmanager counts only `=` and `=~` as able to match the empty string here.
    let all_match_empty = matchers
        .iter()
        .all(|matcher| matches!(matcher.match_type, MatchType::Equal | MatchType::Regex) && matcher.matches_value(""));
    if all_match_empty {
        return Err(invalid("silence invalid: at least one matcher must not match the empty string"));
    }
    Ok(())
}

/// `canUpdate`: whether `previous` can become `next` without rewriting what was silenced when.
fn can_update(previous: &Silence, next: &Silence, now_ms: i64) -> bool {
    if previous.matchers != next.matchers {
        return false;
    }
    match previous.state_at(now_ms) {
        // Alertmanager compares the starts in whole seconds (`Time.Unix`).
        SilenceState::Active => {
            previous.starts_at_ms.div_euclid(1000) == next.starts_at_ms.div_euclid(1000) && next.ends_at_ms >= now_ms
        }
        SilenceState::Pending => next.starts_at_ms >= now_ms,
        SilenceState::Expired => false,
    }
}

fn compare_for_listing(a: &Silence, b: &Silence, now_ms: i64) -> Ordering {
    let (state_a, state_b) = (a.state_at(now_ms), b.state_at(now_ms));
    let by_state = state_a.order_index().cmp(&state_b.order_index());
    let by_time = match state_a {
        SilenceState::Active => a.ends_at_ms.cmp(&b.ends_at_ms),
        SilenceState::Pending => a.starts_at_ms.cmp(&b.starts_at_ms),
        SilenceState::Expired => b.ends_at_ms.cmp(&a.ends_at_ms),
    };
    by_state.then(by_time).then_with(|| a.id.cmp(&b.id))
}

const SNAPSHOT_FORMAT: &str = "engine-silences";
const SNAPSHOT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotFile {
    format: String,
    version: u32,
    silences: Vec<SnapshotSilence>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotSilence {
    id: SilenceId,
    matchers: Matchers,
    starts_at_ms: i64,
    ends_at_ms: i64,
    updated_at_ms: i64,
    expires_at_ms: i64,
    created_by: String,
    comment: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::matcher::parse_matchers;

    const MINUTE_MS: i64 = 60_000;
    const T0: i64 = 1_700_000_000_000;

    fn posted(matchers: &str, starts_at_ms: i64, ends_at_ms: i64) -> PostableSilence {
        PostableSilence {
            id: None,
            matchers: Matchers::new(parse_matchers(matchers).expect("matchers")),
            starts_at_ms,
            ends_at_ms,
            created_by: "alice".to_string(),
            comment: "maintenance".to_string(),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn ids_are_uuid_shaped_and_deterministic() {
        let id = SilenceId::from_random(42);
        assert_eq!(id, SilenceId::from_random(42));
        assert_ne!(id, SilenceId::from_random(43));
        let text = id.as_str();
        let groups: Vec<usize> = text.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{text}");
        assert!(text.chars().all(|c| c == '-' || (c.is_ascii_hexdigit() && !c.is_ascii_uppercase())));
        assert_eq!(&text[14..15], "4", "version nibble: {text}");
        assert!("89ab".contains(&text[19..20]), "variant nibble: {text}");
    }

    #[test]
    fn state_follows_start_and_end() {
        let mut silences = Silences::default();
        let id = silences.set(posted("job=api", T0 + MINUTE_MS, T0 + 2 * MINUTE_MS), T0, 1).expect("set");
        let silence = silences.get(&id).expect("stored");
        #[track_caller]
        fn check(silence: &Silence, now_ms: i64, expected: SilenceState) {
            assert_eq!(silence.state_at(now_ms), expected, "at {now_ms}");
        }
        check(silence, T0, SilenceState::Pending);
        check(silence, T0 + MINUTE_MS - 1, SilenceState::Pending);
        check(silence, T0 + MINUTE_MS, SilenceState::Active);
        check(silence, T0 + 2 * MINUTE_MS - 1, SilenceState::Active);
        check(silence, T0 + 2 * MINUTE_MS, SilenceState::Expired);
        assert_eq!(silence.updated_at_ms, T0);
    }

    #[test]
    fn set_validates_as_alertmanager() {
        #[track_caller]
        fn check(silence: PostableSilence, fragment: &str) {
            let error = Silences::default().set(silence, T0, 1).expect_err(fragment).to_string();
            assert!(error.contains(fragment), "got {error:?}, want {fragment:?}");
        }
        check(posted("job=api", T0, T0), "start time must be before end time");
        check(posted("job=api", T0 - 2 * MINUTE_MS, T0 - MINUTE_MS), "end time can't be in the past");
        check(posted("", T0, T0 + MINUTE_MS), "at least one matcher required");
        check(posted("job=", T0, T0 + MINUTE_MS), "must not match the empty string");
        check(posted("job=~.*,env=", T0, T0 + MINUTE_MS), "must not match the empty string");
        check(posted("a:b=c", T0, T0 + MINUTE_MS), "invalid label name \"a:b\"");
        // `!=` counts as not matching the empty string, as upstream.
        assert!(Silences::default().set(posted("job!=api", T0, T0 + MINUTE_MS), T0, 1).is_ok());
        let mut silences = Silences::default();
        let mut update = posted("job=api", T0, T0 + MINUTE_MS);
        update.id = Some(SilenceId("nope".to_string()));
        assert_eq!(silences.set(update, T0, 1), Err(SilenceError::NotFound { id: SilenceId("nope".to_string()) }));
    }

    #[test]
    fn new_silence_start_is_clamped_to_now() {
        let mut silences = Silences::default();
        let id = silences.set(posted("job=api", T0 - MINUTE_MS, T0 + MINUTE_MS), T0, 1).expect("set");
        assert_eq!(silences.get(&id).expect("stored").starts_at_ms, T0);
    }

    #[test]
    fn update_in_place_or_replace() {
        let mut silences = Silences::default();
        let id = silences.set(posted("job=api", T0, T0 + 10 * MINUTE_MS), T0, 1).expect("set");
        let now_ms = T0 + MINUTE_MS;

        // Active, same matchers, same start, new end and comment: updated in place.
        let mut extend = posted("job=api", T0 + 500, T0 + 20 * MINUTE_MS);
        extend.id = Some(id.clone());
        extend.comment = "longer".to_string();
        assert_eq!(silences.set(extend, now_ms, 2).expect("update"), id);
        let updated = silences.get(&id).expect("stored");
        assert_eq!(
            (updated.ends_at_ms, updated.updated_at_ms, updated.comment.as_str()),
            (T0 + 20 * MINUTE_MS, now_ms, "longer")
        );
        assert_eq!(silences.len(), 1);

        // Active, new matchers: the old one expires now and a new one starts now.
        let mut change = posted("job=web", T0, T0 + 20 * MINUTE_MS);
        change.id = Some(id.clone());
        let new_id = silences.set(change, now_ms, 3).expect("replace");
        assert_ne!(new_id, id);
        assert_eq!(silences.len(), 2);
        let old = silences.get(&id).expect("kept");
        assert_eq!((old.ends_at_ms, old.state_at(now_ms)), (now_ms, SilenceState::Expired));
        let new = silences.get(&new_id).expect("created");
        assert_eq!((new.starts_at_ms, new.state_at(now_ms)), (now_ms, SilenceState::Active));

        // Active, moved start: replaced too.
        let mut moved = posted("job=web", T0 + 5 * MINUTE_MS, T0 + 20 * MINUTE_MS);
        moved.id = Some(new_id.clone());
        let moved_id = silences.set(moved, now_ms + 1, 4).expect("replace");
        assert_ne!(moved_id, new_id);

        // Pending, same matchers, start still in the future: in place.
        let pending_id =
            silences.set(posted("job=db", T0 + 30 * MINUTE_MS, T0 + 40 * MINUTE_MS), now_ms, 5).expect("set");
        let mut later = posted("job=db", T0 + 35 * MINUTE_MS, T0 + 40 * MINUTE_MS);
        later.id = Some(pending_id.clone());
        assert_eq!(silences.set(later, now_ms, 6).expect("update"), pending_id);
        assert_eq!(silences.get(&pending_id).expect("stored").starts_at_ms, T0 + 35 * MINUTE_MS);

        // Expired: an update always creates a new silence and leaves the old alone.
        silences.expire(&pending_id, now_ms).expect("expire");
        let expired_before = silences.get(&pending_id).expect("kept").clone();
        let mut revive = posted("job=db", now_ms, T0 + 40 * MINUTE_MS);
        revive.id = Some(pending_id.clone());
        let revived = silences.set(revive, now_ms + 1, 7).expect("new");
        assert_ne!(revived, pending_id);
        assert_eq!(silences.get(&pending_id), Some(&expired_before));
    }

    #[test]
    fn expire_active_pending_and_expired() {
        let mut silences = Silences::default();
        let active = silences.set(posted("job=api", T0, T0 + 10 * MINUTE_MS), T0, 1).expect("set");
        let pending = silences.set(posted("job=web", T0 + MINUTE_MS, T0 + 10 * MINUTE_MS), T0, 2).expect("set");
        let now_ms = T0 + 1000;
        silences.expire(&active, now_ms).expect("expire");
        silences.expire(&pending, now_ms).expect("expire");
        for id in [&active, &pending] {
            let silence = silences.get(id).expect("kept");
            assert_eq!(
                (silence.ends_at_ms, silence.state_at(now_ms), silence.updated_at_ms),
                (now_ms, SilenceState::Expired, now_ms)
            );
        }
        assert_eq!(silences.get(&pending).expect("kept").starts_at_ms, now_ms);
        let version = silences.version();
        silences.expire(&active, now_ms + 5).expect("idempotent");
        assert_eq!(silences.version(), version, "expiring an expired silence changes nothing");
        assert!(matches!(silences.expire(&SilenceId("x".to_string()), now_ms), Err(SilenceError::NotFound { .. })));
    }

    #[test]
    fn mutes_only_while_active_and_matching() {
        let mut silences = Silences::default();
        let first = silences.set(posted("job=api,severity=~warn.*", T0, T0 + MINUTE_MS), T0, 1).expect("set");
        let second = silences.set(posted("job=~api|web", T0, T0 + 2 * MINUTE_MS), T0, 2).expect("set");
        silences.set(posted("job=api", T0 + MINUTE_MS, T0 + 2 * MINUTE_MS), T0, 3).expect("set");
        let alert = labels(&[("job", "api"), ("severity", "warning")]);
        let mut both = vec![first.clone(), second.clone()];
        both.sort();
        assert_eq!(silences.mutes(&alert, T0), both);
        assert_eq!(silences.mutes(&labels(&[("job", "web")]), T0), vec![second.clone()]);
        assert!(silences.mutes(&labels(&[("job", "db")]), T0).is_empty());
        assert_eq!(silences.mutes(&alert, T0 + MINUTE_MS).len(), 2, "the first expired, the third started");
        assert!(silences.mutes(&alert, T0 + 2 * MINUTE_MS).is_empty());
    }

    #[test]
    fn list_filters_exactly_and_sorts_as_the_api() {
        let mut silences = Silences::default();
        let ends_late = silences.set(posted("job=api", T0, T0 + 5 * MINUTE_MS), T0, 1).expect("set");
        let ends_soon = silences.set(posted("job=api,env=prod", T0, T0 + 2 * MINUTE_MS), T0, 2).expect("set");
        let pending = silences.set(posted("job=api", T0 + MINUTE_MS, T0 + 5 * MINUTE_MS), T0, 3).expect("set");
        let expired_early = silences.set(posted("job=api", T0, T0 + 10 * MINUTE_MS), T0, 4).expect("set");
        let expired_late = silences.set(posted("job=web", T0, T0 + 10 * MINUTE_MS), T0, 5).expect("set");
        silences.expire(&expired_early, T0 + 1).expect("expire");
        silences.expire(&expired_late, T0 + 2).expect("expire");
        let now_ms = T0 + 3;
        let ids = |listed: Vec<&Silence>| listed.into_iter().map(|silence| silence.id.clone()).collect::<Vec<_>>();
        assert_eq!(
            ids(silences.list(&[], now_ms)),
            [ends_soon.clone(), ends_late.clone(), pending.clone(), expired_late.clone(), expired_early.clone()]
        );
        let filter = parse_matchers("env=prod").expect("filter");
        assert_eq!(ids(silences.list(&filter, now_ms)), [ends_soon]);
        // The filter compares matchers, it does not evaluate them.
        let filter = parse_matchers("job=~api").expect("filter");
        assert!(silences.list(&filter, now_ms).is_empty());
        assert_eq!(silences.counts(now_ms), SilenceCounts { active_count: 2, pending_count: 1, expired_count: 2 });
    }

    #[test]
    fn bounded_and_collected_after_retention() {
        let mut silences = Silences::new(60 * MINUTE_MS);
        for index in 0..SILENCE_COUNT_MAX as u64 {
            silences.set(posted("job=api", T0, T0 + MINUTE_MS), T0, index).expect("below the limit");
        }
        let refused = silences.set(posted("job=api", T0, T0 + MINUTE_MS), T0, u64::MAX);
        assert_eq!(
            refused,
            Err(SilenceError::LimitExceeded { silence_count: SILENCE_COUNT_MAX, silence_count_max: SILENCE_COUNT_MAX })
        );
        // Updating in place still works at the limit.
        let id = silences.list(&[], T0)[0].id.clone();
        let mut update = posted("job=api", T0, T0 + 2 * MINUTE_MS);
        update.id = Some(id.clone());
        assert_eq!(silences.set(update, T0, 0), Ok(id.clone()));
        assert_eq!(silences.gc(T0 + 61 * MINUTE_MS - 1), 0);
        assert_eq!(silences.gc(T0 + 61 * MINUTE_MS), SILENCE_COUNT_MAX - 1);
        assert_eq!(silences.gc(T0 + 62 * MINUTE_MS), 1);
        assert!(silences.is_empty());
        assert!(silences
            .set(posted("job=api", T0 + 62 * MINUTE_MS, T0 + 63 * MINUTE_MS), T0 + 62 * MINUTE_MS, 9)
            .is_ok());
    }

    #[test]
    fn id_collisions_draw_again() {
        let mut silences = Silences::default();
        let first = silences.set(posted("job=api", T0, T0 + MINUTE_MS), T0, 7).expect("set");
        let second = silences.set(posted("job=api", T0, T0 + MINUTE_MS), T0, 7).expect("set");
        assert_ne!(first, second);
    }

    #[test]
    fn snapshot_round_trips() {
        let mut silences = Silences::new(MINUTE_MS);
        let active =
            silences.set(posted(r#"job=~"api|web",msg="a \"q\"""#, T0, T0 + 5 * MINUTE_MS), T0, 1).expect("set");
        let expired = silences.set(posted("env!=dev", T0, T0 + 5 * MINUTE_MS), T0, 2).expect("set");
        silences.expire(&expired, T0 + 1).expect("expire");
        let bytes = silences.snapshot();
        let loaded = Silences::from_snapshot(&bytes, MINUTE_MS).expect("loads");
        assert_eq!(loaded.get(&active), silences.get(&active));
        assert_eq!(loaded.get(&expired), silences.get(&expired));
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded.snapshot(), bytes, "deterministic bytes");
        let mut loaded = loaded;
        assert_eq!(loaded.gc(T0 + 1 + MINUTE_MS), 1, "collection times survive the round trip");

        #[track_caller]
        fn check_rejected(bytes: &[u8]) {
            assert!(
                matches!(Silences::from_snapshot(bytes, MINUTE_MS), Err(SilenceError::Snapshot { .. })),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        check_rejected(b"");
        check_rejected(b"{\"format\":\"other\",\"version\":1,\"silences\":[]}");
        check_rejected(&bytes[..bytes.len() - 2]);
        let text = String::from_utf8(bytes.clone()).expect("utf-8");
        check_rejected(text.replace("\"job\"", "\"a-b\"").as_bytes());
    }

    #[test]
    fn api_v2_json_shape() {
        let mut silences = Silences::default();
        let body = r#"{"matchers":[{"name":"job","value":"api","isRegex":false},{"name":"env","value":"prod|stage","isRegex":true,"isEqual":false}],
                       "startsAt":"2023-11-14T22:13:20.000Z","endsAt":"2023-11-14T23:13:20+01:00",
                       "createdBy":"alice","comment":"deploy","unknownField":1}"#;
        let postable: PostableSilence = serde_json::from_str(body).expect("postable");
        assert_eq!(postable.id, None);
        assert_eq!((postable.starts_at_ms, postable.ends_at_ms), (T0, T0));
        let mut postable = postable;
        postable.ends_at_ms = T0 + 90 * MINUTE_MS + 500;
        let id = silences.set(postable, T0, 1).expect("set");
        let json = serde_json::to_value(silences.get(&id).expect("stored").to_gettable(T0)).expect("serialises");
        let expected = serde_json::json!({
            "id": id.as_str(),
            "matchers": [
                {"name": "job", "value": "api", "isRegex": false, "isEqual": true},
                {"name": "env", "value": "prod|stage", "isRegex": true, "isEqual": false},
            ],
            "startsAt": "2023-11-14T22:13:20.000Z",
            "endsAt": "2023-11-14T23:43:20.500Z",
            "updatedAt": "2023-11-14T22:13:20.000Z",
            "createdBy": "alice",
            "comment": "deploy",
            "status": {"state": "active"},
        });
        assert_eq!(json, expected);
        let back: GettableSilence = serde_json::from_value(json).expect("round trip");
        assert_eq!(back, silences.get(&id).expect("stored").to_gettable(T0));
        let with_empty_id: PostableSilence =
            serde_json::from_str(&body.replace("{\"matchers\"", "{\"id\":\"\",\"matchers\"")).expect("postable");
        assert_eq!(with_empty_id.id, None);
        assert!(
            serde_json::from_str::<PostableSilence>(&body.replace("2023-11-14T22:13:20.000Z", "yesterday")).is_err()
        );
    }
}
