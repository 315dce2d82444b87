//! Bit streams under the XOR chunk, most significant bit first, as upstream's
//! tsdb/chunkenc/bstream.go.
//!
//! [`BitWriter`] appends to a byte vector that always holds the whole encoded image (the last
//! byte's unused low bits are zero), so a chunk's bytes can be borrowed between appends; each
//! write moves up to 56 bits through one u64 instead of looping bit by bit.
//! [`BitReader`] keeps a u64 buffer refilled 8 bytes at a time (as upstream's
//! `bstreamReader.loadNextBuffer`), so most reads are a shift and a mask.
//!
//! Upstream's `bstream.writeByte` always appends a fresh byte after the one it fills, so after
//! a whole number of bytes written on a byte boundary the stream ends with an empty byte that
//! the next write fills. Prometheus stores that byte; [`BitWriter::push_empty_byte`] reproduces
//! it where the caller knows upstream's write sequence produced it.
//!
//! Invariants: the writer's `last_byte_bit_count` is in 0..8 and 0 means "no partial byte"
//! (with `empty_tail_byte`, the last byte is that empty byte and the next write starts in it);
//! the reader's `buffer_bit_count` low bits of `buffer` are the next unread bits. Readers never
//! panic: a read past the end returns `None`. Single-threaded values, no shared state.

/// Appends bits to a byte vector.
#[derive(Clone, Debug)]
pub(super) struct BitWriter {
    /// Every byte written so far; the last one may be partial.
    pub(super) bytes: Vec<u8>,
    /// Bits used in the last byte: 0 when it is full (or there is none), else 1..8.
    pub(super) last_byte_bit_count: u8,
    /// The last byte is upstream's empty trailing byte, not yet written to.
    empty_tail_byte: bool,
}

impl BitWriter {
    /// A writer continuing after `bytes`, whose last byte holds `last_byte_bit_count` bits.
    pub(super) fn new(bytes: Vec<u8>, last_byte_bit_count: u8) -> Self {
        assert!(last_byte_bit_count < 8, "last byte bit count {last_byte_bit_count} out of 0..8");
        BitWriter { bytes, last_byte_bit_count, empty_tail_byte: false }
    }

    /// Ends the stream with an empty byte, as upstream's `writeByte` leaves it; the next write
    /// starts there.
    pub(super) fn push_empty_byte(&mut self) {
        assert!(
            self.last_byte_bit_count == 0 && !self.empty_tail_byte,
            "empty byte pushed at bit {} of the last byte",
            self.last_byte_bit_count
        );
        self.bytes.push(0);
        self.empty_tail_byte = true;
    }

    #[inline]
    fn take_empty_tail_byte(&mut self) {
        if self.empty_tail_byte {
            self.bytes.pop();
            self.empty_tail_byte = false;
        }
    }

    /// Writes one bit.
    #[inline]
    pub(super) fn write_bit(&mut self, bit: bool) {
        self.take_empty_tail_byte();
        if self.last_byte_bit_count == 0 {
            self.bytes.push(0);
        }
        if bit {
            let last = self.bytes.len() - 1;
            self.bytes[last] |= 0x80 >> self.last_byte_bit_count;
        }
        self.last_byte_bit_count = (self.last_byte_bit_count + 1) % 8;
    }

    /// Writes the low `bit_count` (at most 64) bits of `value`, most significant first.
    #[inline(always)]
    pub(super) fn write_bits(&mut self, value: u64, bit_count: u8) {
        assert!(bit_count <= 64, "write of {bit_count} bits, at most 64");
        if bit_count > 56 {
            // With up to 7 bits pending in the last byte, more than 56 do not fit one u64.
            self.write_short_bits(value >> 32, bit_count - 32);
            self.write_short_bits(value, 32);
        } else {
            self.write_short_bits(value, bit_count);
        }
    }

    /// [`BitWriter::write_bits`] of at most 56 bits.
    #[inline(always)]
    fn write_short_bits(&mut self, value: u64, bit_count: u8) {
        if bit_count == 0 {
            return;
        }
        self.take_empty_tail_byte();
        let value = value & (u64::MAX >> (64 - u32::from(bit_count)));
        let used_bit_count = u32::from(self.last_byte_bit_count);
        let total_bit_count = used_bit_count + u32::from(bit_count); // At most 63.
        let mut word = value << (64 - total_bit_count);
        if used_bit_count > 0 {
            // The partial last byte joins the word (its unused low bits are zero).
            word |= u64::from(self.bytes.pop().unwrap_or(0)) << 56;
        }
        // A fixed 8-byte append compiles to one store; the length is then cut back.
        let length = self.bytes.len() + total_bit_count.div_ceil(8) as usize;
        self.bytes.extend_from_slice(&word.to_be_bytes());
        self.bytes.truncate(length);
        self.last_byte_bit_count = (total_bit_count % 8) as u8;
    }

    /// Writes whole bytes (the varints at the start of a chunk).
    pub(super) fn write_bytes(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.write_bits(u64::from(*byte), 8);
        }
    }
}

/// Reads bits from a byte slice.
#[derive(Clone, Debug)]
pub(super) struct BitReader<'a> {
    bytes: &'a [u8],
    /// Next byte to load into `buffer`.
    next_byte_index: usize,
    /// The low `buffer_bit_count` bits are the next unread bits.
    buffer: u64,
    buffer_bit_count: u32,
}

#[inline]
fn low_mask(bit_count: u32) -> u64 {
    if bit_count == 0 {
        0
    } else {
        u64::MAX >> (64 - bit_count)
    }
}

impl<'a> BitReader<'a> {
    /// A reader at the first bit of `bytes`.
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        BitReader { bytes, next_byte_index: 0, buffer: 0, buffer_bit_count: 0 }
    }

    /// Bits consumed so far.
    #[cfg(test)]
    pub(super) fn bit_position(&self) -> usize {
        self.next_byte_index * 8 - self.buffer_bit_count as usize
    }

    /// Loads the next (up to) 8 bytes; `false` at the end of the slice.
    #[inline(never)]
    fn refill(&mut self) -> bool {
        let rest = &self.bytes[self.next_byte_index..];
        if let Some(word) = rest.first_chunk::<8>() {
            self.buffer = u64::from_be_bytes(*word);
            self.buffer_bit_count = 64;
            self.next_byte_index += 8;
            return true;
        }
        if rest.is_empty() {
            return false;
        }
        self.buffer = rest.iter().fold(0_u64, |word, byte| (word << 8) | u64::from(*byte));
        self.buffer_bit_count = 8 * rest.len() as u32;
        self.next_byte_index = self.bytes.len();
        true
    }

    /// Reads one bit; `None` at the end of the stream.
    #[inline(always)]
    pub(super) fn read_bit(&mut self) -> Option<bool> {
        if self.buffer_bit_count == 0 && !self.refill() {
            return None;
        }
        self.buffer_bit_count -= 1;
        Some((self.buffer >> self.buffer_bit_count) & 1 == 1)
    }

    /// Reads one bits up to and including the first zero bit, or `max_count` (at most 64) ones;
    /// returns the number of ones (the delta-of-delta and XOR control prefixes).
    #[inline(always)]
    pub(super) fn read_ones(&mut self, max_count: u32) -> Option<u32> {
        if max_count <= self.buffer_bit_count && max_count > 0 {
            // The unread bits, top-aligned; consumed bits above them shift out.
            let window = self.buffer << (64 - self.buffer_bit_count);
            let one_count = window.leading_ones().min(max_count);
            self.buffer_bit_count -= if one_count < max_count { one_count + 1 } else { max_count };
            return Some(one_count);
        }
        let mut one_count = 0;
        while one_count < max_count && self.read_bit()? {
            one_count += 1;
        }
        Some(one_count)
    }

    /// Reads `bit_count` (at most 64) bits, most significant first; `None` when the stream
    /// ends first (the reader's position is then unspecified).
    #[inline(always)]
    pub(super) fn read_bits(&mut self, bit_count: u8) -> Option<u64> {
        let bit_count = u32::from(bit_count);
        if bit_count <= self.buffer_bit_count && bit_count > 0 {
            self.buffer_bit_count -= bit_count;
            return Some((self.buffer >> self.buffer_bit_count) & (u64::MAX >> (64 - bit_count)));
        }
        self.read_bits_refilling(bit_count)
    }

    /// [`BitReader::read_bits`] when the buffer runs out (every 64 bits) or for zero bits.
    #[inline(never)]
    fn read_bits_refilling(&mut self, bit_count: u32) -> Option<u64> {
        let bit_count = bit_count.min(64);
        if bit_count == 0 {
            return Some(0);
        }
        if bit_count <= self.buffer_bit_count {
            self.buffer_bit_count -= bit_count;
            return Some((self.buffer >> self.buffer_bit_count) & low_mask(bit_count));
        }
        // Straddles a refill: the buffer's rest is the high part.
        let high_bit_count = self.buffer_bit_count;
        let high = self.buffer & low_mask(high_bit_count);
        if !self.refill() {
            return None;
        }
        let low_bit_count = bit_count - high_bit_count;
        if low_bit_count > self.buffer_bit_count {
            return None;
        }
        self.buffer_bit_count -= low_bit_count;
        let low = (self.buffer >> self.buffer_bit_count) & low_mask(low_bit_count);
        Some(if high_bit_count == 0 { low } else { (high << low_bit_count) | low })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obvious bit-at-a-time writer, as the reference.
    fn reference_bits(writes: &[(u64, u8)]) -> Vec<u8> {
        let mut bits = Vec::new();
        for (value, bit_count) in writes {
            for shift in (0..*bit_count).rev() {
                bits.push((value >> shift) & 1 == 1);
            }
        }
        bits.chunks(8)
            .map(|byte| byte.iter().enumerate().fold(0_u8, |acc, (index, bit)| acc | (u8::from(*bit) << (7 - index))))
            .collect()
    }

    #[track_caller]
    fn check(writes: &[(u64, u8)]) {
        let mut writer = BitWriter::new(Vec::new(), 0);
        for (value, bit_count) in writes {
            if *bit_count == 1 {
                writer.write_bit(value & 1 == 1);
            } else {
                writer.write_bits(*value, *bit_count);
            }
        }
        assert_eq!(writer.bytes, reference_bits(writes), "writes {writes:?}");
        let total_bit_count: usize = writes.iter().map(|(_, bit_count)| usize::from(*bit_count)).sum();
        assert_eq!(usize::from(writer.last_byte_bit_count), total_bit_count % 8);
        let mut reader = BitReader::new(&writer.bytes);
        for (value, bit_count) in writes {
            let expected = value & low_mask(u32::from(*bit_count));
            let got = if *bit_count == 1 { reader.read_bit().map(u64::from) } else { reader.read_bits(*bit_count) };
            assert_eq!(got, Some(expected), "read of {bit_count} bits");
        }
        assert_eq!(reader.bit_position(), total_bit_count);
        // Only the zero padding of the last byte is left.
        assert_eq!(reader.read_bits(8), None);
    }

    #[test]
    fn writes_match_the_bit_at_a_time_reference() {
        check(&[]);
        check(&[(1, 1)]);
        check(&[(u64::MAX, 64)]);
        check(&[(1, 1), (u64::MAX, 64), (0, 64), (0x1234_5678_9abc_def0, 64)]);
        check(&[(0b101, 3), (0x3fff, 14), (0x1_ffff, 17), (0xf_ffff, 20), (0xdead_beef_dead_beef, 64)]);
        check(&[(7, 3), (u64::MAX, 57), (1, 1), (0, 63), (u64::MAX, 56)]);
    }

    #[test]
    fn empty_tail_byte_is_filled_by_the_next_write() {
        let mut writer = BitWriter::new(vec![0xab], 0);
        writer.push_empty_byte();
        assert_eq!(writer.bytes, [0xab, 0]);
        writer.write_bit(true);
        assert_eq!((&writer.bytes[..], writer.last_byte_bit_count), (&[0xab, 0x80][..], 1));
        let mut writer = BitWriter::new(vec![0xab], 0);
        writer.push_empty_byte();
        writer.write_bits(0xcdef, 16);
        assert_eq!((&writer.bytes[..], writer.last_byte_bit_count), (&[0xab, 0xcd, 0xef][..], 0));
    }

    #[test]
    fn prefixes_of_ones_are_counted_across_refills() {
        // 1110 10 0 1111 | 0 ..., then a prefix straddling the 8-byte boundary.
        let bytes = [0b1110_1001, 0b1110_0000, 0, 0, 0, 0, 0, 0b0000_0001, 0b1100_0000];
        let mut reader = BitReader::new(&bytes);
        assert_eq!(reader.read_ones(4), Some(3));
        assert_eq!(reader.read_ones(4), Some(1));
        assert_eq!(reader.read_ones(4), Some(0));
        assert_eq!(reader.read_ones(4), Some(4));
        assert_eq!(reader.read_bits(52), Some(0));
        assert_eq!(reader.bit_position(), 63);
        assert_eq!(reader.read_ones(4), Some(3));
        assert_eq!(reader.read_ones(2), Some(0));
        assert_eq!(reader.read_ones(4), Some(0));
        assert_eq!(reader.read_ones(4), Some(0));
        assert_eq!(reader.read_ones(4), Some(0));
        assert_eq!(reader.read_ones(4), Some(0));
        assert_eq!(reader.read_ones(1), None);
    }

    #[test]
    fn reads_past_the_end_are_none() {
        let mut reader = BitReader::new(&[0xff, 0x00]);
        assert_eq!(reader.read_bits(12), Some(0xff0));
        assert_eq!(reader.read_bits(5), None);
        let mut empty = BitReader::new(&[]);
        assert_eq!(empty.read_bit(), None);
        assert_eq!(empty.read_bits(0), Some(0));
        assert_eq!(empty.read_bits(1), None);
    }

    proptest! {
        #[test]
        fn read_after_write_round_trips(writes in proptest::collection::vec((any::<u64>(), 1_u8..=64), 0..100)) {
            check(&writes);
        }
    }
}
