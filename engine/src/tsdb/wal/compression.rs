//! Per-record compression and the fragment-type flag bits that announce it.
//!
//! ```text
//! fragment type byte:  bit 7..6 reserved (0) | bit 5 lz4 | bit 4 zstd | bit 3 snappy | bits 2..0 type
//! ```
//! - snappy (bit 3): the raw (block) snappy format, as Prometheus 2.42 writes and reads
//!   (tsdb/wlog/wlog.go `snappyMask`).
//! - zstd (bit 4): one zstd frame, the flag newer Prometheus versions use (`zstdMask`). Prometheus
//!   2.42 masks the type with `recTypeMask` and ignores the bit, so it cannot read such records.
//! - lz4 (bit 5): this engine's extension: `uncompressed size: u32 LE | lz4 block`. No Prometheus
//!   version reads it.
//!
//! As upstream, a record is stored compressed only when that makes it smaller; otherwise it is
//! stored plain with no flag. At most one flag may be set. Decompression is bounded by
//! [`WAL_RECORD_SIZE_MAX`]: a size claim above it is corruption, not an allocation.
//!
//! Crates: `snap` (Rust's snappy, byte-compatible with Go's), `ruzstd` and `lz4_flex` (pure
//! Rust, no C toolchain). Measured by `tests::replay_speed` on 1M samples in 1000-sample
//! records: none 10.96 B/sample, snappy 7.26, lz4 7.22, zstd 5.41; writing snappy 27 M samples/s,
//! lz4 22 M, zstd 3 M (ruzstd's encoder is its slow side); replay 38-44 M samples/s for none,
//! snappy and lz4, 9 M for zstd. Snappy stays the default.
//!
//! Concurrency: pure functions; the codecs keep no state between calls.

use std::io::Read;
use std::str::FromStr;

use crate::limits::WAL_RECORD_SIZE_MAX;

/// Fragment-type bit of a snappy-compressed record (Prometheus `snappyMask`).
pub const FLAG_SNAPPY: u8 = 1 << 3;
/// Fragment-type bit of a zstd-compressed record (newer Prometheus' `zstdMask`).
pub const FLAG_ZSTD: u8 = 1 << 4;
/// Fragment-type bit of an lz4-compressed record (this engine's extension).
pub const FLAG_LZ4: u8 = 1 << 5;
/// Every flag bit this engine understands.
pub const FLAG_MASK: u8 = FLAG_SNAPPY | FLAG_ZSTD | FLAG_LZ4;

/// How records are compressed when written; any of them is read back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// Stored as is.
    None,
    /// Snappy block format; Prometheus 2.42's `--storage.tsdb.wal-compression`.
    #[default]
    Snappy,
    /// Zstandard; newer Prometheus versions read it, 2.42 does not.
    Zstd,
    /// LZ4 block; an engine extension no Prometheus reads.
    Lz4,
}

/// An unknown compression name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown wal compression {name:?}: expected none, snappy, zstd or lz4")]
pub struct CompressionParseError {
    /// The name given.
    pub name: String,
}

impl FromStr for Compression {
    type Err = CompressionParseError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "none" => Ok(Compression::None),
            "snappy" => Ok(Compression::Snappy),
            "zstd" => Ok(Compression::Zstd),
            "lz4" => Ok(Compression::Lz4),
            _ => Err(CompressionParseError { name: name.to_string() }),
        }
    }
}

/// Why a compressed record does not decompress.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecompressError {
    /// More than one compression flag, or a reserved bit, is set.
    #[error("fragment flags {flags:#04x} name no single known compression")]
    BadFlags {
        /// The flag bits of the type byte.
        flags: u8,
    },
    /// The record claims to expand beyond the record size limit.
    #[error("record claims {size} bytes uncompressed, limit {size_max}")]
    TooLarge {
        /// Claimed size.
        size: usize,
        /// Limit.
        size_max: usize,
    },
    /// The codec rejected the bytes.
    #[error("{codec} decompression failed: {reason}")]
    Codec {
        /// Codec name.
        codec: &'static str,
        /// The codec's message.
        reason: String,
    },
}

/// Compresses `record` into `scratch` and returns the bytes to store with their flag bits:
/// the compressed form when it is smaller, else `record` itself with no flag.
pub fn compress<'a>(compression: Compression, record: &'a [u8], scratch: &'a mut Vec<u8>) -> (&'a [u8], u8) {
    scratch.clear();
    let flag = match compression {
        Compression::None => return (record, 0),
        _ if record.is_empty() => return (record, 0),
        Compression::Snappy => {
            scratch.resize(snap::raw::max_compress_len(record.len()), 0);
            match snap::raw::Encoder::new().compress(record, scratch) {
                Ok(size) => scratch.truncate(size),
                Err(_) => return (record, 0), // Too large for snappy: store plain.
            }
            FLAG_SNAPPY
        }
        Compression::Zstd => {
            *scratch = ruzstd::encoding::compress_to_vec(record, ruzstd::encoding::CompressionLevel::Fastest);
            FLAG_ZSTD
        }
        Compression::Lz4 => {
            let size = u32::try_from(record.len()).unwrap_or(u32::MAX);
            scratch.extend_from_slice(&size.to_le_bytes());
            scratch.resize(4 + lz4_flex::block::get_maximum_output_size(record.len()), 0);
            match lz4_flex::block::compress_into(record, &mut scratch[4..]) {
                Ok(compressed_size) => scratch.truncate(4 + compressed_size),
                Err(_) => return (record, 0),
            }
            FLAG_LZ4
        }
    };
    if scratch.len() < record.len() {
        (scratch.as_slice(), flag)
    } else {
        (record, 0)
    }
}

/// Decompresses a record stored with `flags` (the type byte's flag bits) into `out` (cleared).
pub fn decompress(flags: u8, stored: &[u8], out: &mut Vec<u8>) -> Result<(), DecompressError> {
    out.clear();
    let codec = |codec: &'static str| move |error: String| DecompressError::Codec { codec, reason: error };
    match flags {
        0 => {
            out.extend_from_slice(stored);
            Ok(())
        }
        FLAG_SNAPPY => {
            let size = snap::raw::decompress_len(stored).map_err(|error| codec("snappy")(error.to_string()))?;
            check_size(size)?;
            out.resize(size, 0);
            let written = snap::raw::Decoder::new()
                .decompress(stored, out)
                .map_err(|error| codec("snappy")(error.to_string()))?;
            out.truncate(written);
            Ok(())
        }
        FLAG_ZSTD => {
            let decoder =
                ruzstd::decoding::StreamingDecoder::new(stored).map_err(|error| codec("zstd")(error.to_string()))?;
            let limit = WAL_RECORD_SIZE_MAX as u64 + 1;
            decoder.take(limit).read_to_end(out).map_err(|error| codec("zstd")(error.to_string()))?;
            check_size(out.len())
        }
        FLAG_LZ4 => {
            let Some((size_bytes, block)) = stored.split_first_chunk::<4>() else {
                return Err(codec("lz4")("missing size prefix".to_string()));
            };
            let size = u32::from_le_bytes(*size_bytes) as usize;
            check_size(size)?;
            out.resize(size, 0);
            let written =
                lz4_flex::block::decompress_into(block, out).map_err(|error| codec("lz4")(error.to_string()))?;
            if written != size {
                return Err(codec("lz4")(format!("expanded to {written} bytes, header says {size}")));
            }
            Ok(())
        }
        flags => Err(DecompressError::BadFlags { flags }),
    }
}

fn check_size(size: usize) -> Result<(), DecompressError> {
    if size > WAL_RECORD_SIZE_MAX {
        return Err(DecompressError::TooLarge { size, size_max: WAL_RECORD_SIZE_MAX });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [Compression; 4] = [Compression::None, Compression::Snappy, Compression::Zstd, Compression::Lz4];

    #[track_caller]
    fn check_name(name: &str, expected: Result<Compression, CompressionParseError>) {
        assert_eq!(name.parse::<Compression>(), expected);
    }

    #[test]
    fn names_parse() {
        check_name("none", Ok(Compression::None));
        check_name("snappy", Ok(Compression::Snappy));
        check_name("zstd", Ok(Compression::Zstd));
        check_name("lz4", Ok(Compression::Lz4));
        check_name("gzip", Err(CompressionParseError { name: "gzip".to_string() }));
    }

    #[test]
    fn compressible_records_shrink_and_carry_their_flag() {
        let record = b"up{job=\"prometheus\"} ".repeat(100);
        for (compression, flag) in [
            (Compression::None, 0),
            (Compression::Snappy, FLAG_SNAPPY),
            (Compression::Zstd, FLAG_ZSTD),
            (Compression::Lz4, FLAG_LZ4),
        ] {
            let mut scratch = Vec::new();
            let (stored, got_flag) = compress(compression, &record, &mut scratch);
            assert_eq!(got_flag, flag, "{compression:?}");
            assert!(flag == 0 || stored.len() < record.len() / 4, "{compression:?}: {} bytes", stored.len());
            let mut out = Vec::new();
            decompress(got_flag, stored, &mut out).unwrap();
            assert_eq!(out, record);
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        let mut out = Vec::new();
        assert_eq!(decompress(FLAG_SNAPPY | FLAG_ZSTD, b"x", &mut out), Err(DecompressError::BadFlags { flags: 0x18 }));
        assert_eq!(decompress(0x40, b"x", &mut out), Err(DecompressError::BadFlags { flags: 0x40 }));
        let huge = [0xff, 0xff, 0xff, 0x7f];
        assert!(matches!(decompress(FLAG_LZ4, &huge, &mut out), Err(DecompressError::TooLarge { .. })));
        assert!(matches!(
            decompress(FLAG_SNAPPY, &[0xff, 0xff, 0xff, 0x7f], &mut out),
            Err(DecompressError::TooLarge { .. })
        ));
        assert!(matches!(
            decompress(FLAG_ZSTD, b"not zstd", &mut out),
            Err(DecompressError::Codec { codec: "zstd", .. })
        ));
    }

    proptest! {
        #[test]
        fn round_trip(record in proptest::collection::vec(0_u8..4, 0..3000), index in 0_usize..4) {
            let mut scratch = Vec::new();
            let (stored, flag) = compress(ALL[index], &record, &mut scratch);
            let mut out = Vec::new();
            decompress(flag, stored, &mut out).unwrap();
            prop_assert_eq!(out, record);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512), flag_index in 0_usize..4) {
            let flags = [0, FLAG_SNAPPY, FLAG_ZSTD, FLAG_LZ4][flag_index];
            let mut out = Vec::new();
            let _ = decompress(flags, &bytes, &mut out);
            prop_assert!(out.len() <= WAL_RECORD_SIZE_MAX);
        }
    }
}
