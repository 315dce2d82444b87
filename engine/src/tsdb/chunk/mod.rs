//! Prometheus' XOR chunk (tsdb/chunkenc/xor.go): Gorilla-style compression of (timestamp ms,
//! float) samples, bit-compatible with Prometheus: the bytes of a chunk appended here equal the
//! bytes Prometheus' `xorAppender` writes for the same samples, and chunks Prometheus wrote
//! decode here (both proven on a block `promtool` wrote, see `tests.rs`).
//!
//! Layout (tsdb/docs/format/chunks.md, "XOR chunk data"):
//! ```text
//! ┌──────────────────────┬───────────────────────────────────────────────────────────────┐
//! │ sample count: u16 BE │ bit stream, most significant bit first, zero-padded to a byte │
//! └──────────────────────┴───────────────────────────────────────────────────────────────┘
//! sample 0: timestamp as signed varint, value as 64 raw bits
//! sample 1: timestamp delta as unsigned varint, value XOR-encoded
//! sample n: delta-of-delta (dod): `0` (dod 0) | `10`+14 bits | `110`+17 bits | `1110`+20 bits
//!           | `1111`+64 bits; an n-bit field holds -(2^(n-1)-1) ..= 2^(n-1) (upstream's
//!           `bitRange`), so a raw field value r > 2^(n-1) means r - 2^n (upstream's
//!           `xorIterator.Next`), and r == 2^(n-1) is positive;
//!           value XOR-encoded (upstream's `xorWrite`/`xorRead`): `0` (same value)
//!           | `10` + meaningful bits in the previous window
//!           | `11` + 5 bits leading zeros (clamped to 31) + 6 bits length (64 as 0) + bits
//! ```
//! Forms: [`XorChunk`] is the open (appendable) chunk; [`XorChunk::freeze`] turns a full one into
//! a [`FrozenChunk`], which costs its bytes plus 32 bytes (boxed slice and time range).
//! [`XorIterator`] decodes lazily without allocating; [`decode`] collects it.
//!
//! Invariants: samples are appended in strictly increasing timestamp order (asserted: the head
//! checks first); at most `u16::MAX` samples; decoding never panics on garbage, it returns
//! [`ChunkError`]. Values are plain data: no interior mutability, no locks.

mod bstream;
#[cfg(test)]
mod tests;

use bstream::{BitReader, BitWriter};

/// Size of the sample-count header.
const HEADER_SIZE: usize = 2;
/// Initial capacity of an open chunk (upstream's `chunkAllocationSize`); a 120-sample chunk of
/// regular scrapes fits without growing.
const OPEN_CHUNK_CAPACITY: usize = 128;

/// Why a chunk could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
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
    /// Timestamps do not increase (only checked where a chunk is rebuilt for appending).
    #[error("chunk timestamps out of order at sample {sample_index}: {timestamp_ms} after {previous_timestamp_ms}")]
    OutOfOrder {
        /// Sample being decoded.
        sample_index: usize,
        /// Its timestamp.
        timestamp_ms: i64,
        /// The previous sample's timestamp.
        previous_timestamp_ms: i64,
    },
}

/// An XOR chunk that can be appended to and decoded.
#[derive(Clone, Debug)]
pub struct XorChunk {
    /// Header and bit stream.
    stream: BitWriter,
    // Appender state, as upstream's xorAppender.
    count: u16,
    timestamp_ms: i64,
    timestamp_delta_ms: i64,
    value_bits: u64,
    leading_zero_count: u8,
    trailing_zero_count: u8,
    min_time_ms: i64,
}

fn open_chunk_bytes() -> Vec<u8> {
    let mut bytes = Vec::with_capacity(OPEN_CHUNK_CAPACITY);
    bytes.extend_from_slice(&[0; HEADER_SIZE]);
    bytes
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
            stream: BitWriter::new(open_chunk_bytes(), 0),
            count: 0,
            timestamp_ms: 0,
            timestamp_delta_ms: 0,
            value_bits: 0,
            leading_zero_count: NO_WINDOW,
            trailing_zero_count: 0,
            min_time_ms: 0,
        }
    }

    /// Reopens an encoded chunk for appending by re-encoding its samples, so that appending
    /// to the result gives the bytes a chunk appended from scratch has (which is what
    /// Prometheus' head writes). Fails on a chunk that does not decode or whose timestamps do
    /// not increase.
    pub fn from_bytes(bytes: &[u8]) -> Result<XorChunk, ChunkError> {
        let mut chunk = XorChunk::new();
        for (sample_index, item) in iter_bytes(bytes).enumerate() {
            let (timestamp_ms, value) = item?;
            if sample_index > 0 && timestamp_ms <= chunk.timestamp_ms {
                return Err(ChunkError::OutOfOrder {
                    sample_index,
                    timestamp_ms,
                    previous_timestamp_ms: chunk.timestamp_ms,
                });
            }
            chunk.append(timestamp_ms, value);
        }
        Ok(chunk)
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
        self.stream.bytes.len()
    }

    /// The encoded bytes (header and stream), as Prometheus stores them.
    pub fn bytes(&self) -> &[u8] {
        &self.stream.bytes
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
                self.stream.write_bytes(&buffer[..length]);
                self.stream.write_bits(value_bits, 64);
                self.end_upstream_write(64);
                self.min_time_ms = timestamp_ms;
            }
            1 => {
                let delta_ms = timestamp_ms.wrapping_sub(self.timestamp_ms);
                let mut buffer = [0_u8; 10];
                let length = put_uvarint(&mut buffer, delta_ms as u64);
                self.stream.write_bytes(&buffer[..length]);
                self.timestamp_delta_ms = delta_ms;
                self.write_value(value_bits);
            }
            _ => {
                let delta_ms = timestamp_ms.wrapping_sub(self.timestamp_ms);
                let delta_of_delta = delta_ms.wrapping_sub(self.timestamp_delta_ms);
                // Prefix and field in one write: the prefix's bits sit above the field's.
                if delta_of_delta == 0 {
                    self.stream.write_bit(false);
                } else if fits_in_bits(delta_of_delta, 14) {
                    self.stream.write_bits((0b10 << 14) | (delta_of_delta as u64 & 0x3fff), 16);
                } else if fits_in_bits(delta_of_delta, 17) {
                    self.stream.write_bits((0b110 << 17) | (delta_of_delta as u64 & 0x1_ffff), 20);
                } else if fits_in_bits(delta_of_delta, 20) {
                    self.stream.write_bits((0b1110 << 20) | (delta_of_delta as u64 & 0xf_ffff), 24);
                } else {
                    self.stream.write_bits(0b1111, 4);
                    self.stream.write_bits(delta_of_delta as u64, 64);
                }
                self.timestamp_delta_ms = delta_ms;
                self.write_value(value_bits);
            }
        }
        self.timestamp_ms = timestamp_ms;
        self.value_bits = value_bits;
        self.count += 1;
        self.stream.bytes[..HEADER_SIZE].copy_from_slice(&self.count.to_be_bytes());
    }

    /// Upstream's `xorWrite`.
    #[inline]
    fn write_value(&mut self, value_bits: u64) {
        let delta = value_bits ^ self.value_bits;
        if delta == 0 {
            self.stream.write_bit(false);
            return;
        }
        let leading = (delta.leading_zeros() as u8).min(31);
        let trailing = delta.trailing_zeros() as u8;
        if self.leading_zero_count != NO_WINDOW
            && leading >= self.leading_zero_count
            && trailing >= self.trailing_zero_count
        {
            self.stream.write_bits(0b10, 2);
            let significant = 64 - self.leading_zero_count - self.trailing_zero_count;
            self.stream.write_bits(delta >> self.trailing_zero_count, significant);
            self.end_upstream_write(significant);
            return;
        }
        self.leading_zero_count = leading;
        self.trailing_zero_count = trailing;
        let significant = 64 - leading - trailing;
        // `11`, 5 bits leading, 6 bits length in one write. 64 significant bits do not fit in
        // 6 bits; upstream writes 0 and reads 0 as 64.
        let control = (0b11 << 11) | (u64::from(leading) << 6) | u64::from(significant % 64);
        self.stream.write_bits(control, 13);
        self.stream.write_bits(delta >> trailing, significant);
        self.end_upstream_write(significant);
    }

    /// After upstream's last `writeBits(_, bit_count)` of an append: a whole number of bytes
    /// ending on a byte boundary leaves upstream's empty trailing byte (see `bstream`).
    #[inline]
    fn end_upstream_write(&mut self, bit_count: u8) {
        if bit_count.is_multiple_of(8) && self.stream.last_byte_bit_count == 0 {
            self.stream.push_empty_byte();
        }
    }

    /// Decodes every sample.
    pub fn samples(&self) -> Result<Vec<(i64, f64)>, ChunkError> {
        decode(self.bytes())
    }

    /// A lazy decoder over the chunk as it is now.
    pub fn iter(&self) -> XorIterator<'_> {
        iter_bytes(self.bytes())
    }

    /// Drops spare capacity, for a chunk that will not grow again soon.
    pub fn shrink_to_fit(&mut self) {
        self.stream.bytes.shrink_to_fit();
    }

    /// The read-only form of a full chunk: its bytes and time range, nothing else.
    pub fn freeze(self) -> FrozenChunk {
        FrozenChunk {
            min_time_ms: self.min_time_ms,
            max_time_ms: self.timestamp_ms,
            bytes: self.stream.bytes.into_boxed_slice(),
        }
    }
}

/// A chunk that is no longer appended to: 16 bytes of slice, two timestamps, and the encoded
/// bytes on the heap (no appender state, no spare capacity).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrozenChunk {
    bytes: Box<[u8]>,
    min_time_ms: i64,
    max_time_ms: i64,
}

impl FrozenChunk {
    /// Validates `bytes` (they must decode, timestamps increasing) and keeps them.
    pub fn from_bytes(bytes: Box<[u8]>) -> Result<FrozenChunk, ChunkError> {
        let chunk = XorChunk::from_bytes(&bytes)?;
        Ok(FrozenChunk { min_time_ms: chunk.min_time_ms(), max_time_ms: chunk.max_time_ms(), bytes })
    }

    /// Samples in the chunk (from the header).
    pub fn sample_count(&self) -> usize {
        self.bytes.first_chunk::<HEADER_SIZE>().map_or(0, |header| usize::from(u16::from_be_bytes(*header)))
    }

    /// Timestamp of the first sample (meaningless when empty).
    pub fn min_time_ms(&self) -> i64 {
        self.min_time_ms
    }

    /// Timestamp of the last sample (meaningless when empty).
    pub fn max_time_ms(&self) -> i64 {
        self.max_time_ms
    }

    /// The encoded bytes, as Prometheus stores them.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// A lazy decoder.
    pub fn iter(&self) -> XorIterator<'_> {
        iter_bytes(&self.bytes)
    }

    /// Back to an appendable chunk (see [`XorChunk::from_bytes`]).
    pub fn thaw(&self) -> XorChunk {
        // The bytes were validated when frozen, so this cannot fail; fall back to empty anyway.
        XorChunk::from_bytes(&self.bytes).unwrap_or_default()
    }
}

/// Decodes an encoded chunk (header and stream).
pub fn decode(bytes: &[u8]) -> Result<Vec<(i64, f64)>, ChunkError> {
    let iterator = iter_bytes(bytes);
    let mut samples = Vec::with_capacity(iterator.sample_count());
    for item in iterator {
        samples.push(item?);
    }
    Ok(samples)
}

/// A lazy decoder over an encoded chunk (header and stream); no allocation.
pub fn iter_bytes(bytes: &[u8]) -> XorIterator<'_> {
    let (sample_count, stream, header_missing) = match bytes.split_first_chunk::<HEADER_SIZE>() {
        Some((header, stream)) => (u16::from_be_bytes(*header), stream, false),
        None => (0, &[][..], true),
    };
    XorIterator {
        reader: BitReader::new(stream),
        sample_count,
        read_count: 0,
        timestamp_ms: 0,
        timestamp_delta_ms: 0,
        value_bits: 0,
        leading_zero_count: 0,
        trailing_zero_count: 0,
        state: if header_missing { IteratorState::HeaderMissing } else { IteratorState::Decoding },
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IteratorState {
    HeaderMissing,
    Decoding,
    Done,
}

/// Decodes a chunk sample by sample (upstream's `xorIterator`). Yields `Ok((timestamp_ms,
/// value))` in order; after an `Err` it yields nothing more.
#[derive(Clone, Debug)]
pub struct XorIterator<'a> {
    reader: BitReader<'a>,
    sample_count: u16,
    read_count: u16,
    timestamp_ms: i64,
    timestamp_delta_ms: i64,
    value_bits: u64,
    leading_zero_count: u8,
    trailing_zero_count: u8,
    state: IteratorState,
}

impl XorIterator<'_> {
    /// Samples the header announces.
    pub fn sample_count(&self) -> usize {
        usize::from(self.sample_count)
    }

    /// Skips to the first sample at or after `timestamp_ms` and returns it (`None` when there
    /// is none); a later `next` continues after it.
    pub fn seek(&mut self, timestamp_ms: i64) -> Option<Result<(i64, f64), ChunkError>> {
        self.find(|item| item.as_ref().map_or(true, |(sample_timestamp_ms, _)| *sample_timestamp_ms >= timestamp_ms))
    }

    fn truncated(&self) -> ChunkError {
        ChunkError::Truncated { decoded_count: usize::from(self.read_count), expected_count: self.sample_count() }
    }

    fn decode_next(&mut self) -> Result<(i64, f64), ChunkError> {
        let index = self.read_count;
        match index {
            0 => {
                self.timestamp_ms = read_varint(&mut self.reader, index)?.ok_or_else(|| self.truncated())?;
                self.value_bits = self.reader.read_bits(64).ok_or_else(|| self.truncated())?;
            }
            1 => {
                let delta_ms = read_uvarint(&mut self.reader, index)?.ok_or_else(|| self.truncated())?;
                self.timestamp_delta_ms = delta_ms as i64;
                self.timestamp_ms = self.timestamp_ms.wrapping_add(self.timestamp_delta_ms);
                self.read_value().ok_or_else(|| self.truncated())?;
            }
            _ => {
                self.read_delta_of_delta().ok_or_else(|| self.truncated())?;
                self.timestamp_ms = self.timestamp_ms.wrapping_add(self.timestamp_delta_ms);
                self.read_value().ok_or_else(|| self.truncated())?;
            }
        }
        self.read_count += 1;
        Ok((self.timestamp_ms, f64::from_bits(self.value_bits)))
    }

    /// Upstream's dod decoding in `xorIterator.Next`; `None` at the end of the stream.
    #[inline(always)]
    fn read_delta_of_delta(&mut self) -> Option<()> {
        let prefix_one_count = self.reader.read_ones(4)? as usize;
        let delta_of_delta = match prefix_one_count {
            0 => 0,
            4 => self.reader.read_bits(64)? as i64,
            _ => {
                let bit_count = [14_u8, 17, 20][prefix_one_count - 1];
                let raw = self.reader.read_bits(bit_count)?;
                // -(2^(n-1)-1) ..= 2^(n-1): only values above 2^(n-1) are negative.
                if raw > 1 << (bit_count - 1) {
                    raw as i64 - (1_i64 << bit_count)
                } else {
                    raw as i64
                }
            }
        };
        self.timestamp_delta_ms = self.timestamp_delta_ms.wrapping_add(delta_of_delta);
        Some(())
    }

    /// Upstream's `xorRead`; `None` at the end of the stream.
    #[inline(always)]
    fn read_value(&mut self) -> Option<()> {
        if !self.reader.read_bit()? {
            return Some(());
        }
        if self.reader.read_bit()? {
            let control = self.reader.read_bits(11)?;
            self.leading_zero_count = (control >> 6) as u8;
            let significant = match (control & 0x3f) as u8 {
                0 => 64,
                count => count,
            };
            // A garbled stream may announce more bits than a u64 holds.
            self.trailing_zero_count = 64_u8.saturating_sub(self.leading_zero_count).saturating_sub(significant);
        }
        let significant = 64_u8.saturating_sub(self.leading_zero_count).saturating_sub(self.trailing_zero_count);
        let bits = self.reader.read_bits(significant)?;
        self.value_bits ^= bits.checked_shl(u32::from(self.trailing_zero_count)).unwrap_or(0);
        Some(())
    }
}

impl Iterator for XorIterator<'_> {
    type Item = Result<(i64, f64), ChunkError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match self.state {
            IteratorState::Done => None,
            IteratorState::HeaderMissing => {
                self.state = IteratorState::Done;
                Some(Err(self.truncated()))
            }
            IteratorState::Decoding if self.read_count == self.sample_count => {
                self.state = IteratorState::Done;
                None
            }
            IteratorState::Decoding => {
                let item = self.decode_next();
                if item.is_err() {
                    self.state = IteratorState::Done;
                }
                Some(item)
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self.state {
            IteratorState::Done => (0, Some(0)),
            IteratorState::HeaderMissing => (1, Some(1)),
            IteratorState::Decoding => (0, Some(usize::from(self.sample_count - self.read_count))),
        }
    }
}

fn fits_in_bits(value: i64, bit_count: u32) -> bool {
    // Upstream's bitRange: -(2^(n-1) - 1) <= x <= 2^(n-1).
    let bound = 1_i64 << (bit_count - 1);
    -(bound - 1) <= value && value <= bound
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

fn read_uvarint(reader: &mut BitReader<'_>, sample_index: u16) -> Result<Option<u64>, ChunkError> {
    let mut value = 0_u64;
    for byte_index in 0..10 {
        let Some(byte) = reader.read_bits(8) else {
            return Ok(None);
        };
        value |= (byte & 0x7f) << (7 * byte_index);
        if byte < 0x80 {
            return Ok(Some(value));
        }
    }
    Err(ChunkError::VarintOverflow { sample_index: usize::from(sample_index) })
}

fn read_varint(reader: &mut BitReader<'_>, sample_index: u16) -> Result<Option<i64>, ChunkError> {
    Ok(read_uvarint(reader, sample_index)?.map(|raw| ((raw >> 1) as i64) ^ -((raw & 1) as i64)))
}
