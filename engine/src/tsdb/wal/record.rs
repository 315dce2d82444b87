//! WAL record codec in Prometheus' format (tsdb/record/record.go: `Encoder.Series`,
//! `Encoder.Samples` (the V1 layout), `Encoder.Tombstones` and the matching `Decoder` methods).
//!
//! A record is one opaque byte string inside the fragment framing of [`super::page`]; its first
//! byte names its type. Integers marked BE are big-endian; varints are Go's zig-zag `Varint`,
//! uvarints Go's `Uvarint` (LEB128).
//! ```text
//! series (1):     { ref: u64 BE, label count: uvarint, { len: uvarint, name, len: uvarint, value }* }*
//! samples (2):    [ first ref: u64 BE, first timestamp ms: i64 BE,
//!                   { ref - first ref: varint, timestamp - first timestamp: varint, value bits: u64 BE }* ]
//!                 (an empty samples record is the type byte alone)
//! tombstones (3): { ref: u64 BE, min time ms: varint, max time ms: varint }*
//! ```
//! Invariants: `decode_record(encode_*(x)) == x`; the decoder never panics and never allocates
//! more than the input justifies (every element needs at least one input byte), so garbage is a
//! typed [`RecordError`]. Other Prometheus record types (exemplars, metadata, histograms, mmap
//! markers) are [`RecordError::UnknownType`]: replay keeps them on disk and skips them.
//!
//! Concurrency: pure functions.

use crate::model::{Labels, SeriesRef};

/// Prometheus' `record.Series`.
pub const RECORD_TYPE_SERIES: u8 = 1;
/// Prometheus' `record.Samples` (the V1 layout Prometheus 2.42 writes).
pub const RECORD_TYPE_SAMPLES: u8 = 2;
/// Prometheus' `record.Tombstones`.
pub const RECORD_TYPE_TOMBSTONES: u8 = 3;

/// One sample of a samples record, by series reference.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RefSample {
    /// Series the sample belongs to.
    pub series_ref: SeriesRef,
    /// Sample time, Unix ms.
    pub timestamp_ms: i64,
    /// Sample value (any bit pattern, NaNs included).
    pub value: f64,
}

/// A deletion interval of one series (Prometheus `tombstones.Stone` with one interval).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stone {
    /// Series whose samples are deleted.
    pub series_ref: SeriesRef,
    /// First deleted timestamp, Unix ms, inclusive.
    pub min_time_ms: i64,
    /// Last deleted timestamp, Unix ms, inclusive.
    pub max_time_ms: i64,
}

/// A decoded WAL record.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// New series and their references.
    Series(Vec<(SeriesRef, Labels)>),
    /// Samples by series reference.
    Samples(Vec<RefSample>),
    /// Deleted intervals.
    Tombstones(Vec<Stone>),
}

/// Why a record's bytes do not decode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Zero bytes: not even a type.
    #[error("empty record")]
    Empty,
    /// A type this engine does not decode (exemplars, metadata, histograms, or garbage).
    #[error("unknown record type {record_type}")]
    UnknownType {
        /// The type byte.
        record_type: u8,
    },
    /// The record ends inside a field.
    #[error("record type {record_type} ends inside a field at byte {offset}")]
    Truncated {
        /// The type byte.
        record_type: u8,
        /// Where the missing field starts.
        offset: usize,
    },
    /// A varint runs over 10 bytes or overflows 64 bits.
    #[error("record type {record_type} has a bad varint at byte {offset}")]
    BadVarint {
        /// The type byte.
        record_type: u8,
        /// Where the varint starts.
        offset: usize,
    },
    /// A label name or value is not UTF-8.
    #[error("record type {record_type} has a label that is not UTF-8 at byte {offset}")]
    BadUtf8 {
        /// The type byte.
        record_type: u8,
        /// Where the string starts.
        offset: usize,
    },
    /// A reference or timestamp delta leaves the 64-bit range.
    #[error("record type {record_type} has a delta out of range at byte {offset}")]
    DeltaOverflow {
        /// The type byte.
        record_type: u8,
        /// Where the entry starts.
        offset: usize,
    },
}

/// Appends a series record (Prometheus `Encoder.Series`) to `out`.
pub fn encode_series(series: &[(SeriesRef, &Labels)], out: &mut Vec<u8>) {
    out.push(RECORD_TYPE_SERIES);
    for (series_ref, labels) in series {
        out.extend_from_slice(&series_ref.0.to_be_bytes());
        put_uvarint(out, labels.len() as u64);
        for label in labels.iter() {
            put_uvarint(out, label.name.len() as u64);
            out.extend_from_slice(label.name.as_bytes());
            put_uvarint(out, label.value.len() as u64);
            out.extend_from_slice(label.value.as_bytes());
        }
    }
}

/// Appends a samples record (Prometheus `Encoder.Samples`, V1 layout) to `out`.
pub fn encode_samples(samples: &[RefSample], out: &mut Vec<u8>) {
    out.push(RECORD_TYPE_SAMPLES);
    let Some(first) = samples.first() else { return };
    out.reserve(16 + samples.len() * 11);
    out.extend_from_slice(&first.series_ref.0.to_be_bytes());
    out.extend_from_slice(&first.timestamp_ms.to_be_bytes());
    for sample in samples {
        // Wrapping as Go's int64 arithmetic does; the decoder adds back with the same wrap.
        put_varint(out, (sample.series_ref.0 as i64).wrapping_sub(first.series_ref.0 as i64));
        put_varint(out, sample.timestamp_ms.wrapping_sub(first.timestamp_ms));
        out.extend_from_slice(&sample.value.to_bits().to_be_bytes());
    }
}

/// Appends a tombstones record (Prometheus `Encoder.Tombstones`) to `out`.
pub fn encode_tombstones(stones: &[Stone], out: &mut Vec<u8>) {
    out.push(RECORD_TYPE_TOMBSTONES);
    for stone in stones {
        out.extend_from_slice(&stone.series_ref.0.to_be_bytes());
        put_varint(out, stone.min_time_ms);
        put_varint(out, stone.max_time_ms);
    }
}

/// Decodes one record; garbage is an error, never a panic.
pub fn decode_record(bytes: &[u8]) -> Result<Record, RecordError> {
    let (&record_type, _) = bytes.split_first().ok_or(RecordError::Empty)?;
    let mut reader = Reader { bytes, offset: 1, record_type };
    match record_type {
        RECORD_TYPE_SERIES => {
            let mut series = Vec::new();
            while !reader.done() {
                let series_ref = SeriesRef(reader.be_u64()?);
                let label_count = reader.uvarint()?;
                let mut pairs = Vec::new();
                for _ in 0..label_count {
                    // Each label needs at least two bytes, so a huge count fails before it allocates.
                    let name = reader.text()?;
                    let value = reader.text()?;
                    pairs.push((name, value));
                }
                series.push((series_ref, Labels::from_pairs(pairs)));
            }
            Ok(Record::Series(series))
        }
        RECORD_TYPE_SAMPLES => {
            let mut samples = Vec::new();
            if reader.done() {
                return Ok(Record::Samples(samples));
            }
            let first_ref = reader.be_u64()? as i64;
            let first_timestamp_ms = reader.be_u64()? as i64;
            samples.reserve(reader.remaining() / 10);
            while !reader.done() {
                let ref_delta = reader.varint()?;
                let timestamp_delta_ms = reader.varint()?;
                let value = f64::from_bits(reader.be_u64()?);
                samples.push(RefSample {
                    series_ref: SeriesRef(first_ref.wrapping_add(ref_delta) as u64),
                    timestamp_ms: first_timestamp_ms.wrapping_add(timestamp_delta_ms),
                    value,
                });
            }
            Ok(Record::Samples(samples))
        }
        RECORD_TYPE_TOMBSTONES => {
            let mut stones = Vec::new();
            while !reader.done() {
                let series_ref = SeriesRef(reader.be_u64()?);
                let min_time_ms = reader.varint()?;
                let max_time_ms = reader.varint()?;
                stones.push(Stone { series_ref, min_time_ms, max_time_ms });
            }
            Ok(Record::Tombstones(stones))
        }
        other => Err(RecordError::UnknownType { record_type: other }),
    }
}

/// Go's `binary.PutUvarint`.
pub(super) fn put_uvarint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Go's `binary.PutVarint` (zig-zag).
fn put_varint(out: &mut Vec<u8>, value: i64) {
    put_uvarint(out, ((value << 1) ^ (value >> 63)) as u64);
}

struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
    record_type: u8,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.offset >= self.bytes.len()
    }

    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.offset)
    }

    fn take(&mut self, size: usize) -> Result<&'a [u8], RecordError> {
        let end = self.offset.checked_add(size);
        let slice = end
            .and_then(|end| self.bytes.get(self.offset..end))
            .ok_or(RecordError::Truncated { record_type: self.record_type, offset: self.offset })?;
        self.offset += size;
        Ok(slice)
    }

    fn be_u64(&mut self) -> Result<u64, RecordError> {
        let bytes = self.take(8)?;
        let mut array = [0_u8; 8];
        array.copy_from_slice(bytes);
        Ok(u64::from_be_bytes(array))
    }

    /// Go's `binary.Uvarint`: at most 10 bytes, the 10th at most 1.
    fn uvarint(&mut self) -> Result<u64, RecordError> {
        let start = self.offset;
        let mut value = 0_u64;
        for index in 0..10 {
            let byte = *self
                .bytes
                .get(self.offset)
                .ok_or(RecordError::Truncated { record_type: self.record_type, offset: start })?;
            self.offset += 1;
            if index == 9 && byte > 1 {
                break;
            }
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(RecordError::BadVarint { record_type: self.record_type, offset: start })
    }

    fn varint(&mut self) -> Result<i64, RecordError> {
        let zigzag = self.uvarint()?;
        Ok(((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64))
    }

    fn text(&mut self) -> Result<String, RecordError> {
        let length = self.uvarint()?;
        let start = self.offset;
        let length = usize::try_from(length)
            .map_err(|_| RecordError::Truncated { record_type: self.record_type, offset: start })?;
        let bytes = self.take(length)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| RecordError::BadUtf8 { record_type: self.record_type, offset: start })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// NaN-aware equality: compares value bits.
    fn same(a: &Record, b: &Record) -> bool {
        match (a, b) {
            (Record::Samples(a), Record::Samples(b)) => {
                a.len() == b.len()
                    && a.iter().zip(b).all(|(x, y)| {
                        x.series_ref == y.series_ref
                            && x.timestamp_ms == y.timestamp_ms
                            && x.value.to_bits() == y.value.to_bits()
                    })
            }
            _ => a == b,
        }
    }

    #[track_caller]
    fn check(bytes: &[u8], expected: Result<Record, RecordError>) {
        let got = decode_record(bytes);
        match (&got, &expected) {
            (Ok(got), Ok(expected)) => assert!(same(got, expected), "got {got:?}, expected {expected:?}"),
            _ => assert_eq!(got, expected),
        }
    }

    #[test]
    fn known_bytes_decode() {
        // Bytes as Prometheus' encoder lays them out: BE refs, zig-zag varint deltas, BE value bits.
        let mut samples = vec![RECORD_TYPE_SAMPLES];
        samples.extend_from_slice(&7_u64.to_be_bytes());
        samples.extend_from_slice(&1000_i64.to_be_bytes());
        samples.extend_from_slice(&[0, 0]);
        samples.extend_from_slice(&1.0_f64.to_bits().to_be_bytes());
        samples.extend_from_slice(&[1, 0xd0, 0x0f]); // ref -1, timestamp +1000
        samples.extend_from_slice(&2.5_f64.to_bits().to_be_bytes());
        let mut series = vec![RECORD_TYPE_SERIES];
        series.extend_from_slice(&3_u64.to_be_bytes());
        series.extend_from_slice(&[1, 3, b'j', b'o', b'b', 1, b'a']);
        let mut stones = vec![RECORD_TYPE_TOMBSTONES];
        stones.extend_from_slice(&3_u64.to_be_bytes());
        stones.extend_from_slice(&[3, 4]); // -2, 2
        let sample =
            |series_ref, timestamp_ms, value| RefSample { series_ref: SeriesRef(series_ref), timestamp_ms, value };
        check(&samples, Ok(Record::Samples(vec![sample(7, 1000, 1.0), sample(6, 2000, 2.5)])));
        check(&[RECORD_TYPE_SAMPLES], Ok(Record::Samples(vec![])));
        check(&series, Ok(Record::Series(vec![(SeriesRef(3), Labels::from_pairs([("job", "a")]))])));
        check(
            &stones,
            Ok(Record::Tombstones(vec![Stone { series_ref: SeriesRef(3), min_time_ms: -2, max_time_ms: 2 }])),
        );
        check(&[], Err(RecordError::Empty));
        check(&[4, 1, 2], Err(RecordError::UnknownType { record_type: 4 }));
        check(&samples[..20], Err(RecordError::Truncated { record_type: 2, offset: 19 }));
        check(&series[..12], Err(RecordError::Truncated { record_type: 1, offset: 11 }));
        let mut bad_varint = vec![RECORD_TYPE_TOMBSTONES];
        bad_varint.extend_from_slice(&[0; 8]);
        bad_varint.extend_from_slice(&[0xff; 11]);
        check(&bad_varint, Err(RecordError::BadVarint { record_type: 3, offset: 9 }));
        let mut bad_utf8 = series[..10].to_vec();
        bad_utf8.extend_from_slice(&[1, 0xff, 1, b'a']);
        check(&bad_utf8, Err(RecordError::BadUtf8 { record_type: 1, offset: 11 }));
    }

    #[test]
    fn encoders_match_known_bytes() {
        let mut out = Vec::new();
        encode_samples(&[], &mut out);
        assert_eq!(out, [RECORD_TYPE_SAMPLES]);
        out.clear();
        let labels = Labels::from_pairs([("job", "a")]);
        encode_series(&[(SeriesRef(3), &labels)], &mut out);
        assert_eq!(out, [1, 0, 0, 0, 0, 0, 0, 0, 3, 1, 3, b'j', b'o', b'b', 1, b'a']);
    }

    fn labels_strategy() -> impl Strategy<Value = Labels> {
        proptest::collection::vec(("[a-z_]{1,8}", "\\PC{0,12}"), 0..6).prop_map(Labels::from_pairs)
    }

    proptest! {
        #[test]
        fn series_round_trip(series in proptest::collection::vec((any::<u64>(), labels_strategy()), 0..8)) {
            let borrowed: Vec<(SeriesRef, &Labels)> = series.iter().map(|(r, l)| (SeriesRef(*r), l)).collect();
            let mut out = Vec::new();
            encode_series(&borrowed, &mut out);
            let expected = Record::Series(series.iter().map(|(r, l)| (SeriesRef(*r), l.clone())).collect());
            prop_assert_eq!(decode_record(&out), Ok(expected));
        }

        #[test]
        fn samples_round_trip(samples in proptest::collection::vec((any::<u64>(), any::<i64>(), any::<u64>()), 0..64)) {
            let samples: Vec<RefSample> = samples
                .iter()
                .map(|(r, t, v)| RefSample { series_ref: SeriesRef(*r), timestamp_ms: *t, value: f64::from_bits(*v) })
                .collect();
            let mut out = Vec::new();
            encode_samples(&samples, &mut out);
            let decoded = decode_record(&out).unwrap();
            prop_assert!(same(&decoded, &Record::Samples(samples)));
        }

        #[test]
        fn tombstones_round_trip(stones in proptest::collection::vec((any::<u64>(), any::<i64>(), any::<i64>()), 0..32)) {
            let stones: Vec<Stone> = stones
                .iter()
                .map(|(r, min, max)| Stone { series_ref: SeriesRef(*r), min_time_ms: *min, max_time_ms: *max })
                .collect();
            let mut out = Vec::new();
            encode_tombstones(&stones, &mut out);
            prop_assert_eq!(decode_record(&out), Ok(Record::Tombstones(stones)));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256), record_type in 0_u8..5) {
            let mut bytes = bytes;
            if let Some(first) = bytes.first_mut() {
                *first = record_type;
            }
            let _ = decode_record(&bytes);
        }
    }
}
