//! Prometheus' XOR chunk (tsdb/chunkenc/xor.go): Gorilla-style compression of (timestamp ms,
//! float) samples, bit-compatible with Prometheus so chunks can later be written into and read
//! from Prometheus blocks.
//!
//! Layout:
//! ```text
//! ┌──────────────────────┬───────────────────────────────────────────────────────────────┐
//! │ sample count: u16 BE │ bit stream, most significant bit first                        │
//! └──────────────────────┴───────────────────────────────────────────────────────────────┘
//! sample 0: timestamp as signed varint, value as 64 raw bits
//! sample 1: timestamp delta as unsigned varint, value XOR-encoded
//! sample n: delta-of-delta: `0` | `10`+14 bits | `110`+17 bits | `1110`+20 bits | `1111`+64 bits,
//!           value XOR-encoded: `0` (same value) | `10` + meaningful bits in the previous window
//!           | `11` + 5 bits leading zeros + 6 bits length (64 as 0) + meaningful bits
//! ```
//! Invariants: samples are appended in strictly increasing timestamp order (the head checks);
//! decoding never panics on garbage, it returns [`ChunkError`].

/// Why a chunk could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    /// The bit stream ended before the header's sample count was reached.
    #[error("chunk truncated: decoded {decoded_count} of {expected_count} samples")]
    Truncated {
        /// Samples decoded before the end.
        decoded_count: usize,
        /// Samples the header announces.
        expected_count: usize,
    },
    /// A varint was longer than 10 bytes.
    #[error("chunk varint overflow at sample {sample_index}")]
    VarintOverflow {
        /// Sample being decoded.
        sample_index: usize,
    },
}

/// An XOR chunk that can be appended to and decoded.
#[derive(Clone, Debug)]
pub struct XorChunk {
    /// Header and bit stream.
    bytes: Vec<u8>,
    /// Bits used in the last byte (0 means the last byte is full or there is none).
    last_byte_bit_count: u8,
    // Appender state.
    count: u16,
    timestamp_ms: i64,
    timestamp_delta_ms: i64,
    value_bits: u64,
    leading_zero_count: u8,
    trailing_zero_count: u8,
    min_time_ms: i64,
}

/// Marks "no previous XOR window" (as upstream's 0xff).
const NO_WINDOW: u8 = 0xff;

impl Default for XorChunk {
    fn default() -> Self {
        Self::new()
    }
}

impl XorChunk {
    /// An empty chunk.
    pub fn new() -> Self {
        XorChunk {
            bytes: vec![0, 0],
            last_byte_bit_count: 0,
            count: 0,
            timestamp_ms: 0,
            timestamp_delta_ms: 0,
            value_bits: 0,
            leading_zero_count: NO_WINDOW,
            trailing_zero_count: 0,
            min_time_ms: 0,
        }
    }

    /// Samples in the chunk.
    pub fn sample_count(&self) -> usize {
        usize::from(self.count)
    }

    /// Timestamp of the first sample (meaningless when empty).
    pub fn min_time_ms(&self) -> i64 {
        self.min_time_ms
    }

    /// Timestamp of the last sample (meaningless when empty).
    pub fn max_time_ms(&self) -> i64 {
        self.timestamp_ms
    }

    /// Encoded size in bytes.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    /// The encoded bytes (header and stream), as Prometheus stores them.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Appends a sample; `timestamp_ms` must be greater than the previous one.
    pub fn append(&mut self, timestamp_ms: i64, value: f64) {
        assert!(self.count < u16::MAX, "chunk full: {} samples", self.count);
        assert!(
            self.count == 0 || timestamp_ms > self.timestamp_ms,
            "chunk append out of order: {timestamp_ms} after {}",
            self.timestamp_ms
        );
        let value_bits = value.to_bits();
        match self.count {
            0 => {
                let mut buffer = [0_u8; 10];
                let length = put_varint(&mut buffer, timestamp_ms);
                for byte in &buffer[..length] {
                    self.write_bits(u64::from(*byte), 8);
                }
                self.write_bits(value_bits, 64);
                self.min_time_ms = timestamp_ms;
            }
            1 => {
                let delta_ms = timestamp_ms.wrapping_sub(self.timestamp_ms);
                let mut buffer = [0_u8; 10];
                let length = put_uvarint(&mut buffer, delta_ms as u64);
                for byte in &buffer[..length] {
                    self.write_bits(u64::from(*byte), 8);
                }
                self.timestamp_delta_ms = delta_ms;
                self.write_value(value_bits);
            }
            _ => {
                let delta_ms = timestamp_ms.wrapping_sub(self.timestamp_ms);
                let delta_of_delta = delta_ms.wrapping_sub(self.timestamp_delta_ms);
                if delta_of_delta == 0 {
                    self.write_bits(0, 1);
                } else if fits_in_bits(delta_of_delta, 14) {
                    self.write_bits(0b10, 2);
                    self.write_bits(delta_of_delta as u64, 14);
                } else if fits_in_bits(delta_of_delta, 17) {
                    self.write_bits(0b110, 3);
                    self.write_bits(delta_of_delta as u64, 17);
                } else if fits_in_bits(delta_of_delta, 20) {
                    self.write_bits(0b1110, 4);
                    self.write_bits(delta_of_delta as u64, 20);
                } else {
                    self.write_bits(0b1111, 4);
                    self.write_bits(delta_of_delta as u64, 64);
                }
                self.timestamp_delta_ms = delta_ms;
                self.write_value(value_bits);
            }
        }
        self.timestamp_ms = timestamp_ms;
        self.value_bits = value_bits;
        self.count += 1;
        self.bytes[..2].copy_from_slice(&self.count.to_be_bytes());
    }

    fn write_value(&mut self, value_bits: u64) {
        let delta = value_bits ^ self.value_bits;
        if delta == 0 {
            self.write_bits(0, 1);
            return;
        }
        self.write_bits(1, 1);
        let leading = (delta.leading_zeros() as u8).min(31);
        let trailing = delta.trailing_zeros() as u8;
        if self.leading_zero_count != NO_WINDOW
            && leading >= self.leading_zero_count
            && trailing >= self.trailing_zero_count
        {
            self.write_bits(0, 1);
            let significant = 64 - self.leading_zero_count - self.trailing_zero_count;
            self.write_bits(delta >> self.trailing_zero_count, significant);
            return;
        }
        self.leading_zero_count = leading;
        self.trailing_zero_count = trailing;
        self.write_bits(1, 1);
        self.write_bits(u64::from(leading), 5);
        let significant = 64 - leading - trailing;
        // 64 significant bits do not fit in 6 bits; upstream writes 0 and reads 0 as 64.
        self.write_bits(u64::from(significant % 64), 6);
        self.write_bits(delta >> trailing, significant);
    }

    /// Writes the low `bit_count` bits of `value`, most significant first.
    fn write_bits(&mut self, value: u64, bit_count: u8) {
        for shift in (0..bit_count).rev() {
            if self.last_byte_bit_count == 0 {
                self.bytes.push(0);
            }
            let bit = ((value >> shift) & 1) as u8;
            let last = self.bytes.len() - 1;
            self.bytes[last] |= bit << (7 - self.last_byte_bit_count);
            self.last_byte_bit_count = (self.last_byte_bit_count + 1) % 8;
        }
    }

    /// Decodes every sample.
    pub fn samples(&self) -> Result<Vec<(i64, f64)>, ChunkError> {
        decode(&self.bytes)
    }
}

/// Decodes an encoded chunk (header and stream).
pub fn decode(bytes: &[u8]) -> Result<Vec<(i64, f64)>, ChunkError> {
    let Some(header) = bytes.get(..2) else {
        return Err(ChunkError::Truncated { decoded_count: 0, expected_count: 0 });
    };
    let expected_count = usize::from(u16::from_be_bytes([header[0], header[1]]));
    let mut reader = BitReader { bytes: &bytes[2..], bit_index: 0 };
    let mut samples = Vec::with_capacity(expected_count);
    let truncated = |decoded_count| ChunkError::Truncated { decoded_count, expected_count };
    let (mut timestamp_ms, mut delta_ms, mut value_bits) = (0_i64, 0_i64, 0_u64);
    let (mut leading, mut trailing) = (0_u8, 0_u8);
    for index in 0..expected_count {
        match index {
            0 => {
                timestamp_ms = read_varint(&mut reader, index)?.ok_or(truncated(index))?;
                value_bits = reader.read(64).ok_or(truncated(index))?;
            }
            _ => {
                if index == 1 {
                    delta_ms = read_uvarint(&mut reader, index)?.ok_or(truncated(index))? as i64;
                } else {
                    let mut prefix = 0;
                    while prefix < 4 && reader.read(1).ok_or(truncated(index))? == 1 {
                        prefix += 1;
                    }
                    let width = [0, 14, 17, 20, 64][prefix];
                    if width > 0 {
                        let raw = reader.read(width).ok_or(truncated(index))?;
                        delta_ms = delta_ms.wrapping_add(sign_extend(raw, width));
                    }
                }
                timestamp_ms = timestamp_ms.wrapping_add(delta_ms);
                if reader.read(1).ok_or(truncated(index))? == 1 {
                    if reader.read(1).ok_or(truncated(index))? == 1 {
                        leading = reader.read(5).ok_or(truncated(index))? as u8;
                        let significant = match reader.read(6).ok_or(truncated(index))? as u8 {
                            0 => 64,
                            count => count,
                        };
                        // A garbled stream may announce more bits than a u64 holds.
                        trailing = 64_u8.saturating_sub(leading).saturating_sub(significant);
                    }
                    let significant = 64_u8.saturating_sub(leading).saturating_sub(trailing);
                    let bits = reader.read(significant).ok_or(truncated(index))?;
                    value_bits ^= bits.checked_shl(u32::from(trailing)).unwrap_or(0);
                }
            }
        }
        samples.push((timestamp_ms, f64::from_bits(value_bits)));
    }
    Ok(samples)
}

struct BitReader<'a> {
    bytes: &'a [u8],
    bit_index: usize,
}

impl BitReader<'_> {
    /// Reads `bit_count` (at most 64) bits, most significant first; `None` at end of stream.
    fn read(&mut self, bit_count: u8) -> Option<u64> {
        if self.bit_index + usize::from(bit_count) > self.bytes.len() * 8 {
            return None;
        }
        let mut value = 0_u64;
        for _ in 0..bit_count {
            let byte = self.bytes[self.bit_index / 8];
            let bit = (byte >> (7 - self.bit_index % 8)) & 1;
            value = (value << 1) | u64::from(bit);
            self.bit_index += 1;
        }
        Some(value)
    }
}

fn fits_in_bits(value: i64, bit_count: u32) -> bool {
    // Upstream's bitRange: -(2^(n-1) - 1) <= x <= 2^(n-1).
    let bound = 1_i64 << (bit_count - 1);
    -(bound - 1) <= value && value <= bound
}

fn sign_extend(raw: u64, bit_count: u8) -> i64 {
    if bit_count == 64 {
        return raw as i64;
    }
    let shift = 64 - u32::from(bit_count);
    ((raw << shift) as i64) >> shift
}

fn put_uvarint(buffer: &mut [u8; 10], mut value: u64) -> usize {
    let mut index = 0;
    while value >= 0x80 {
        buffer[index] = (value as u8) | 0x80;
        value >>= 7;
        index += 1;
    }
    buffer[index] = value as u8;
    index + 1
}

fn put_varint(buffer: &mut [u8; 10], value: i64) -> usize {
    put_uvarint(buffer, ((value << 1) ^ (value >> 63)) as u64)
}

fn read_uvarint(reader: &mut BitReader<'_>, sample_index: usize) -> Result<Option<u64>, ChunkError> {
    let mut value = 0_u64;
    for byte_index in 0..10 {
        let Some(byte) = reader.read(8) else {
            return Ok(None);
        };
        value |= (byte & 0x7f) << (7 * byte_index);
        if byte < 0x80 {
            return Ok(Some(value));
        }
    }
    Err(ChunkError::VarintOverflow { sample_index })
}

fn read_varint(reader: &mut BitReader<'_>, sample_index: usize) -> Result<Option<i64>, ChunkError> {
    Ok(read_uvarint(reader, sample_index)?.map(|raw| ((raw >> 1) as i64) ^ -((raw & 1) as i64)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(samples: &[(i64, f64)]) -> XorChunk {
        let mut chunk = XorChunk::new();
        for (timestamp_ms, value) in samples {
            chunk.append(*timestamp_ms, *value);
        }
        chunk
    }

    #[track_caller]
    fn check_round_trip(samples: &[(i64, f64)]) {
        let decoded = encode(samples).samples().unwrap();
        assert_eq!(decoded.len(), samples.len());
        for ((got_t, got_v), (want_t, want_v)) in decoded.iter().zip(samples) {
            assert_eq!(got_t, want_t);
            assert_eq!(got_v.to_bits(), want_v.to_bits(), "value at {want_t}");
        }
    }

    #[test]
    fn regular_scrapes_compress_well() {
        let samples: Vec<(i64, f64)> = (0..120).map(|index| (1_700_000_000_000 + index * 15_000, 42.0)).collect();
        let chunk = encode(&samples);
        check_round_trip(&samples);
        // Constant value and interval: about two bits per sample after the first two.
        assert!(chunk.size() < 60, "size {}", chunk.size());
    }

    #[test]
    fn special_values_and_large_gaps() {
        check_round_trip(&[
            (-5, f64::NAN),
            (0, f64::INFINITY),
            (1, f64::NEG_INFINITY),
            (1_000_000_000, f64::from_bits(crate::model::STALE_NAN_BITS)),
            (1_000_000_001, -0.0),
            (i64::MAX / 2, 1e300),
        ]);
    }

    #[test]
    fn header_is_big_endian_count_as_upstream() {
        let chunk = encode(&[(1, 1.0), (2, 2.0), (3, 3.0)]);
        assert_eq!(&chunk.bytes()[..2], &[0, 3]);
    }

    #[test]
    fn truncated_chunk_is_an_error() {
        let chunk = encode(&[(1, 1.0), (2, 2.5), (4, 7.0)]);
        let bytes = chunk.bytes();
        assert!(matches!(decode(&bytes[..bytes.len() - 2]), Err(ChunkError::Truncated { .. })));
        assert!(decode(&[]).is_err());
    }

    proptest! {
        #[test]
        fn decode_encode_round_trips(
            start in -1_000_000_000_000_i64..1_000_000_000_000,
            steps in proptest::collection::vec((1_i64..10_000_000_000, any::<u64>()), 0..200),
        ) {
            let mut timestamp_ms = start;
            let mut samples = Vec::new();
            for (step_ms, value_bits) in steps {
                timestamp_ms += step_ms;
                samples.push((timestamp_ms, f64::from_bits(value_bits)));
            }
            check_round_trip(&samples);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
        }
    }
}
