//! Block chunk segment files: the `chunks/` directory of a persistent block, in Prometheus'
//! format (tsdb/docs/format/chunks.md, tsdb/chunks/chunks.go).
//!
//! Files are named by six zero-padded decimal digits starting at `000001`. All integers
//! big-endian:
//! ```text
//! file:  ┌────────────────────────┬──────────────┬──────────────┬─────────┬─────┬─────────┐
//!        │ magic 0x85BD40DD: u32  │ version 1: u8│ padding: 3 B │ chunk 1 │ ... │ chunk N │
//!        └────────────────────────┴──────────────┴──────────────┴─────────┴─────┴─────────┘
//! chunk: ┌───────────────┬──────────────┬──────┬─────────────────────────────────┐
//!        │ len: uvarint  │ encoding: u8 │ data │ CRC32C(encoding ‖ data): u32    │
//!        └───────────────┴──────────────┴──────┴─────────────────────────────────┘
//! ```
//! `len` counts the data only. A chunk is referenced by [`BlockChunkRef`]: the 0-based position
//! of its file among the segment files (file `000001` is 0) << 32 | the byte offset of its
//! length field, as upstream's `BlockChunkRef`. A file holds at most
//! [`SEGMENT_SIZE_MAX_DEFAULT`] bytes (512 MiB) unless a single chunk is larger, so offsets fit
//! in 32 bits.
//!
//! Invariants: the writer never reopens a file it did not create in this run (a block is written
//! once, into a fresh directory); the reader checks every reference, length and CRC against the
//! file's size before trusting it, and reads chunks by position ([`FileSystem::read_at`]).
//!
//! Concurrency: the writer is owned by one block write; the reader holds only the file sizes and
//! is shared freely (`Send + Sync`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::block::BlockError;
use crate::io::fs::child;
use crate::io::{AppendFile, FileSystem};

/// Magic number opening every segment file.
pub const SEGMENT_MAGIC: u32 = 0x85BD_40DD;
/// Segment format version.
pub const SEGMENT_VERSION: u8 = 1;
/// Header size: magic, version, 3 bytes of padding.
pub const SEGMENT_HEADER_SIZE: u64 = 8;
/// Upstream's `DefaultChunkSegmentSize`: a file is cut before it grows past this.
pub const SEGMENT_SIZE_MAX_DEFAULT: u64 = 512 * 1024 * 1024;
/// Chunk encoding byte of an XOR float chunk (upstream's `EncXOR`).
pub const ENCODING_XOR: u8 = 1;
/// Largest chunk data this engine writes or reads: XOR chunks of at most `u16::MAX` samples
/// stay far below it; a larger length on disk is corruption, not an allocation.
pub const CHUNK_DATA_SIZE_MAX: u64 = 16 * 1024 * 1024;
/// A uvarint of a 64-bit value takes at most 10 bytes.
const UVARINT_SIZE_MAX: usize = 10;
/// Bytes read at a chunk's offset before its length is known.
const FIRST_READ_SIZE: u64 = 512;
/// Largest number of segment files a block may have (offsets and file positions are u32).
const SEGMENT_COUNT_MAX: usize = u32::MAX as usize;

const _: () = assert!(SEGMENT_SIZE_MAX_DEFAULT <= u32::MAX as u64);
const _: () = assert!(CHUNK_DATA_SIZE_MAX < SEGMENT_SIZE_MAX_DEFAULT);

/// Where a chunk lives: segment position << 32 | byte offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockChunkRef(pub u64);

impl BlockChunkRef {
    /// The reference of the chunk at `offset` in the segment at position `segment_index`.
    pub fn new(segment_index: u32, offset: u32) -> Self {
        BlockChunkRef((u64::from(segment_index) << 32) | u64::from(offset))
    }

    /// 0-based position of the segment file (file `000001` is 0).
    pub fn segment_index(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// Byte offset of the chunk's length field in its file.
    pub fn offset(self) -> u32 {
        self.0 as u32
    }
}

/// Name of the segment file at 0-based position `segment_index`.
pub fn segment_file_name(segment_index: u32) -> String {
    format!("{:06}", u64::from(segment_index) + 1)
}

/// Appends `value` as an unsigned LEB128 varint.
pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Decodes an unsigned varint at the start of `bytes`: (value, size), `None` when it is cut
/// short or longer than 10 bytes.
pub(crate) fn get_uvarint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0_u64;
    for (index, byte) in bytes.iter().take(UVARINT_SIZE_MAX).enumerate() {
        let bits = u64::from(byte & 0x7f);
        if index == UVARINT_SIZE_MAX - 1 && *byte > 1 {
            return None; // More than 64 bits.
        }
        value |= bits << (7 * index);
        if byte & 0x80 == 0 {
            return Some((value, index + 1));
        }
    }
    None
}

fn crc32c(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

fn segment_header() -> [u8; SEGMENT_HEADER_SIZE as usize] {
    let mut header = [0_u8; SEGMENT_HEADER_SIZE as usize];
    header[..4].copy_from_slice(&SEGMENT_MAGIC.to_be_bytes());
    header[4] = SEGMENT_VERSION;
    header
}

/// Writes the chunk segment files of one block into a fresh directory.
pub struct ChunkSegmentWriter {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    segment_size_max: u64,
    /// Open file, its position and the bytes written to it.
    current: Option<(Box<dyn AppendFile>, u32, u64)>,
    next_segment_index: u32,
    record: Vec<u8>,
}

impl ChunkSegmentWriter {
    /// A writer creating segment files in `dir` (created if missing), each at most
    /// `segment_size_max` bytes unless one chunk alone is larger. `segment_size_max` is clamped
    /// to `SEGMENT_HEADER_SIZE + 1 ..= u32::MAX`.
    pub fn new(fs: Arc<dyn FileSystem>, dir: &Path, segment_size_max: u64) -> Result<Self, BlockError> {
        fs.create_dir_all(dir).map_err(|source| BlockError::io("create chunks directory", dir, source))?;
        Ok(ChunkSegmentWriter {
            fs,
            dir: dir.to_path_buf(),
            segment_size_max: segment_size_max.clamp(SEGMENT_HEADER_SIZE + 1, u64::from(u32::MAX)),
            current: None,
            next_segment_index: 0,
            record: Vec::new(),
        })
    }

    /// Appends one XOR chunk's bytes and returns its reference.
    pub fn write_chunk(&mut self, data: &[u8]) -> Result<BlockChunkRef, BlockError> {
        let data_size = data.len() as u64;
        if data_size > CHUNK_DATA_SIZE_MAX {
            return Err(BlockError::TooLarge { what: "chunk", size: data_size, size_max: CHUNK_DATA_SIZE_MAX });
        }
        self.record.clear();
        put_uvarint(&mut self.record, data_size);
        let crc_start = self.record.len();
        self.record.push(ENCODING_XOR);
        self.record.extend_from_slice(data);
        let crc = crc32c(&self.record[crc_start..]);
        self.record.extend_from_slice(&crc.to_be_bytes());
        let record_size = self.record.len() as u64;
        let must_cut = match &self.current {
            None => true,
            Some((_, _, written_size)) => {
                *written_size > SEGMENT_HEADER_SIZE && written_size + record_size > self.segment_size_max
            }
        };
        if must_cut {
            self.cut()?;
        }
        let Some((file, segment_index, written_size)) = self.current.as_mut() else {
            unreachable!("cut leaves a file open");
        };
        let offset = u32::try_from(*written_size).map_err(|_| BlockError::TooLarge {
            what: "chunk segment",
            size: *written_size,
            size_max: u32::MAX.into(),
        })?;
        let path = child(&self.dir, &segment_file_name(*segment_index));
        file.write_all(&self.record).map_err(|source| BlockError::io("write chunk", &path, source))?;
        *written_size += record_size;
        Ok(BlockChunkRef::new(*segment_index, offset))
    }

    /// Syncs and closes the current file, then opens the next one with its header.
    fn cut(&mut self) -> Result<(), BlockError> {
        self.finish_current()?;
        if self.next_segment_index as usize >= SEGMENT_COUNT_MAX {
            return Err(BlockError::TooLarge {
                what: "chunk segment count",
                size: u64::from(self.next_segment_index),
                size_max: SEGMENT_COUNT_MAX as u64,
            });
        }
        let segment_index = self.next_segment_index;
        let path = child(&self.dir, &segment_file_name(segment_index));
        let mut file =
            self.fs.open_append(&path).map_err(|source| BlockError::io("create chunk segment", &path, source))?;
        file.write_all(&segment_header())
            .map_err(|source| BlockError::io("write chunk segment header", &path, source))?;
        self.current = Some((file, segment_index, SEGMENT_HEADER_SIZE));
        self.next_segment_index += 1;
        Ok(())
    }

    fn finish_current(&mut self) -> Result<(), BlockError> {
        if let Some((mut file, segment_index, _)) = self.current.take() {
            let path = child(&self.dir, &segment_file_name(segment_index));
            file.sync().map_err(|source| BlockError::io("sync chunk segment", &path, source))?;
        }
        Ok(())
    }

    /// Syncs the last file and the directory; returns the number of segment files written.
    pub fn finish(mut self) -> Result<u32, BlockError> {
        self.finish_current()?;
        self.fs.sync_dir(&self.dir).map_err(|source| BlockError::io("sync chunks directory", &self.dir, source))?;
        Ok(self.next_segment_index)
    }
}

/// Reads chunks of a block's segment files by reference.
pub struct ChunkReader {
    fs: Arc<dyn FileSystem>,
    /// Path and size of each segment file, by position.
    segments: Vec<(PathBuf, u64)>,
}

impl std::fmt::Debug for ChunkReader {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("ChunkReader").field("segments", &self.segments).finish()
    }
}

impl ChunkReader {
    /// Opens the segment files in `dir`, checking each header. Files whose names are not six
    /// digits are ignored; the numbered files must run `000001, 000002, ...` without gaps.
    pub fn open(fs: Arc<dyn FileSystem>, dir: &Path) -> Result<Self, BlockError> {
        let names = fs.list_dir(dir).map_err(|source| BlockError::io("list chunks directory", dir, source))?;
        let mut segments = Vec::new();
        for name in names.iter().filter(|name| name.len() == 6 && name.bytes().all(|byte| byte.is_ascii_digit())) {
            let path = child(dir, name);
            let expected = segment_file_name(segments.len() as u32);
            if *name != expected {
                return Err(BlockError::Corruption {
                    path,
                    offset: 0,
                    reason: format!("chunk segment sequence broken: expected {expected}"),
                });
            }
            let size = fs.file_size(&path).map_err(|source| BlockError::io("stat chunk segment", &path, source))?;
            if size < SEGMENT_HEADER_SIZE {
                return Err(BlockError::Corruption { path, offset: 0, reason: format!("segment of {size} bytes") });
            }
            let mut header = [0_u8; SEGMENT_HEADER_SIZE as usize];
            fs.read_at(&path, 0, &mut header)
                .map_err(|source| BlockError::io("read chunk segment header", &path, source))?;
            let magic = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
            if magic != SEGMENT_MAGIC || header[4] != SEGMENT_VERSION {
                return Err(BlockError::Corruption {
                    path,
                    offset: 0,
                    reason: format!("bad segment header: magic {magic:#010x}, version {}", header[4]),
                });
            }
            segments.push((path, size));
        }
        Ok(ChunkReader { fs, segments })
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The XOR chunk bytes (sample count header and bit stream) at `chunk_ref`, CRC-checked.
    pub fn chunk(&self, chunk_ref: BlockChunkRef) -> Result<Vec<u8>, BlockError> {
        let segment_index = chunk_ref.segment_index() as usize;
        let offset = u64::from(chunk_ref.offset());
        let Some((path, size)) = self.segments.get(segment_index) else {
            return Err(BlockError::Corruption {
                path: PathBuf::from(segment_file_name(chunk_ref.segment_index())),
                offset,
                reason: format!("chunk reference {:#x} names a missing segment", chunk_ref.0),
            });
        };
        let corruption = |reason: String| BlockError::Corruption { path: path.clone(), offset, reason };
        if offset < SEGMENT_HEADER_SIZE || offset >= *size {
            return Err(corruption(format!("chunk offset outside the segment of {size} bytes")));
        }
        let available_size = size - offset;
        // One read serves most chunks (a 120-sample chunk is a few hundred bytes); a larger
        // one needs a second read for the rest.
        let mut record = vec![0_u8; FIRST_READ_SIZE.min(available_size) as usize];
        self.fs.read_at(path, offset, &mut record).map_err(|source| BlockError::io("read chunk", path, source))?;
        let (data_size, varint_size) =
            get_uvarint(&record).ok_or_else(|| corruption("bad chunk length field".to_string()))?;
        if data_size > CHUNK_DATA_SIZE_MAX {
            return Err(corruption(format!("chunk length {data_size} over {CHUNK_DATA_SIZE_MAX}")));
        }
        let record_size = varint_size as u64 + 1 + data_size + 4;
        if record_size > available_size {
            return Err(corruption(format!("chunk of {record_size} bytes runs past the end ({available_size} left)")));
        }
        let read_size = record.len();
        record.resize(record_size as usize, 0);
        if read_size < record.len() {
            self.fs
                .read_at(path, offset + read_size as u64, &mut record[read_size..])
                .map_err(|source| BlockError::io("read chunk", path, source))?;
        }
        record.drain(..varint_size);
        let crc_start = record.len() - 4;
        let stored_crc = u32::from_be_bytes([
            record[crc_start],
            record[crc_start + 1],
            record[crc_start + 2],
            record[crc_start + 3],
        ]);
        let computed_crc = crc32c(&record[..crc_start]);
        if stored_crc != computed_crc {
            return Err(corruption(format!("chunk CRC {stored_crc:#010x}, computed {computed_crc:#010x}")));
        }
        if record[0] != ENCODING_XOR {
            return Err(corruption(format!("unsupported chunk encoding {}", record[0])));
        }
        record.truncate(crc_start);
        record.remove(0);
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::MemFileSystem;
    use proptest::prelude::*;

    fn writer(fs: &MemFileSystem, segment_size_max: u64) -> ChunkSegmentWriter {
        ChunkSegmentWriter::new(Arc::new(fs.clone()), Path::new("/b/chunks"), segment_size_max).unwrap()
    }

    #[test]
    fn uvarints_round_trip_and_reject_overlong() {
        #[track_caller]
        fn check(value: u64, expected_size: usize) {
            let mut out = Vec::new();
            put_uvarint(&mut out, value);
            assert_eq!(out.len(), expected_size);
            assert_eq!(get_uvarint(&out), Some((value, expected_size)));
            assert_eq!(get_uvarint(&out[..expected_size - 1]), None);
        }
        check(0, 1);
        check(127, 1);
        check(128, 2);
        check(u64::from(u32::MAX), 5);
        check(u64::MAX, 10);
        assert_eq!(get_uvarint(&[0xff; 11]), None);
        assert_eq!(get_uvarint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]), None);
    }

    /// The bytes match the layout promtool 2.42 writes: header, then `len | 1 | data | crc`.
    #[test]
    fn segment_layout_matches_upstream() {
        let fs = MemFileSystem::default();
        let mut chunks = writer(&fs, SEGMENT_SIZE_MAX_DEFAULT);
        assert_eq!(chunks.write_chunk(b"abc").unwrap(), BlockChunkRef::new(0, 8));
        assert_eq!(chunks.write_chunk(b"de").unwrap(), BlockChunkRef::new(0, 8 + 1 + 1 + 3 + 4));
        assert_eq!(chunks.finish().unwrap(), 1);
        let bytes = fs.read(Path::new("/b/chunks/000001")).unwrap();
        let mut expected = vec![0x85, 0xbd, 0x40, 0xdd, 1, 0, 0, 0, 3, 1, b'a', b'b', b'c'];
        expected.extend_from_slice(&crc32c(&[1, b'a', b'b', b'c']).to_be_bytes());
        expected.extend_from_slice(&[2, 1, b'd', b'e']);
        expected.extend_from_slice(&crc32c(&[1, b'd', b'e']).to_be_bytes());
        assert_eq!(bytes, expected);
    }

    #[test]
    fn segments_are_cut_at_the_size_limit() {
        let fs = MemFileSystem::default();
        let mut chunks = writer(&fs, 30);
        let refs: Vec<BlockChunkRef> = (0..4).map(|_| chunks.write_chunk(&[7; 10]).unwrap()).collect();
        assert_eq!(chunks.finish().unwrap(), 4, "8 + 16 + 16 > 30: one chunk a file");
        assert_eq!(refs, (0..4).map(|index| BlockChunkRef::new(index, 8)).collect::<Vec<_>>());
        let reader = ChunkReader::open(Arc::new(fs), Path::new("/b/chunks")).unwrap();
        assert_eq!(reader.segment_count(), 4);
        for chunk_ref in refs {
            assert_eq!(reader.chunk(chunk_ref).unwrap(), vec![7; 10]);
        }
    }

    #[test]
    fn damaged_chunks_are_corruption_errors() {
        #[track_caller]
        fn check(change: impl FnOnce(&mut Vec<u8>), chunk_ref: BlockChunkRef, reason_part: &str) {
            let fs = MemFileSystem::default();
            let mut chunks = writer(&fs, SEGMENT_SIZE_MAX_DEFAULT);
            chunks.write_chunk(b"abcdef").unwrap();
            chunks.finish().unwrap();
            fs.mutate(Path::new("/b/chunks/000001"), change);
            let result =
                ChunkReader::open(Arc::new(fs), Path::new("/b/chunks")).and_then(|reader| reader.chunk(chunk_ref));
            match result {
                Err(BlockError::Corruption { reason, .. }) => assert!(reason.contains(reason_part), "{reason}"),
                other => panic!("expected corruption with {reason_part:?}, got {other:?}"),
            }
        }
        let first = BlockChunkRef::new(0, 8);
        check(|bytes| bytes[0] ^= 1, first, "bad segment header");
        check(|bytes| bytes[4] = 2, first, "bad segment header");
        check(|bytes| bytes[11] ^= 1, first, "CRC");
        check(|bytes| bytes[9] = 3, first, "CRC");
        check(|bytes| bytes.truncate(15), first, "past the end");
        check(|bytes| bytes[8] = 0xff, first, "past the end");
        check(|_| {}, BlockChunkRef::new(0, 4), "outside");
        check(|_| {}, BlockChunkRef::new(0, 100), "outside");
        check(|_| {}, BlockChunkRef::new(1, 8), "missing segment");
        check(|bytes| bytes.truncate(5), first, "segment of 5 bytes");
    }

    proptest! {
        #[test]
        fn chunks_round_trip(datas in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..20)) {
            let fs = MemFileSystem::default();
            let mut chunks = writer(&fs, 1000);
            let refs: Vec<BlockChunkRef> = datas.iter().map(|data| chunks.write_chunk(data).unwrap()).collect();
            chunks.finish().unwrap();
            let reader = ChunkReader::open(Arc::new(fs), Path::new("/b/chunks")).unwrap();
            for (chunk_ref, data) in refs.into_iter().zip(&datas) {
                prop_assert_eq!(&reader.chunk(chunk_ref).unwrap(), data);
            }
        }

        #[test]
        fn reading_random_refs_of_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), offset in 0_u32..220) {
            let fs = MemFileSystem::default();
            let mut garbage = segment_header().to_vec();
            garbage.extend_from_slice(&bytes);
            let path = Path::new("/b/chunks/000001");
            fs.open_append(path).unwrap().write_all(&garbage).unwrap();
            let reader = ChunkReader::open(Arc::new(fs), Path::new("/b/chunks")).unwrap();
            let _ = reader.chunk(BlockChunkRef::new(0, offset));
        }
    }
}
