//! Head chunk files: full head chunks written to disk so memory holds only their references,
//! in Prometheus' format (tsdb/docs/format/head_chunks.md, tsdb/chunks/head_chunks.go).
//!
//! Directory `<data>/chunks_head/` holds files named by six zero-padded decimal digits
//! (`000001`, `000002`, ...). All integers big-endian:
//! ```text
//! file:  ┌────────────────────────┬──────────────┬──────────────┬─────────┬─────┬─────────┐
//!        │ magic 0x0130BC91: u32  │ version 1: u8│ padding: 3 B │ chunk 1 │ ... │ chunk N │
//!        └────────────────────────┴──────────────┴──────────────┴─────────┴─────┴─────────┘
//! chunk: ┌──────────────────┬──────────────┬──────────────┬──────────────┬───────────────┬──────┬──────────────┐
//!        │ series ref: u64  │ min time: i64│ max time: i64│ encoding: u8 │ len: uvarint  │ data │ CRC32C: u32  │
//!        └──────────────────┴──────────────┴──────────────┴──────────────┴───────────────┴──────┴──────────────┘
//! ```
//! The CRC32C (Castagnoli) covers everything from the series ref to the end of the data. The
//! encoding is 1 (XOR); upstream sets its top bit for out-of-order chunks, which this engine does
//! not write. A chunk is addressed by [`ChunkDiskRef`]: file index << 32 | byte offset of its
//! series ref, as upstream's `ChunkDiskMapperRef`. A file never exceeds
//! [`HEAD_CHUNK_FILE_SIZE_MAX`] (128 MiB), so offsets fit in 32 bits.
//!
//! Writing (as upstream's `ChunkDiskMapper.WriteChunk`): the writer always starts a new file
//! after the highest one on disk, cuts a new file when a chunk would not fit, and syncs the old
//! file when cutting. [`HeadChunkWriter::sync`] makes every chunk written so far durable. A
//! failed write is truncated away; if that fails too, the next chunk goes to a new file.
//!
//! Replay and repair ([`replay`], run before the writer opens): files are read in index order.
//! A chunk that is cut short by the end of its file (a write torn by a crash or a failed
//! write), or a file shorter than its header, is cut off and replay goes on with the next file,
//! as upstream's `repairLastChunkFile` drops a torn last file. Any other damage (bad magic or
//! version, bad length, CRC mismatch) stops replay: the file is truncated at the damaged chunk
//! and every later file removed, as upstream's `DeleteCorrupted`, except that the good prefix
//! of the damaged file is kept. Every chunk replay visited stays readable afterwards. Zeros
//! where a chunk would start end a file's chunks, as upstream (it preallocates files).
//!
//! Concurrency: the writer is owned by the head and used under its lock; readers are
//! independent values and only read files, through the [`FileSystem`] seam.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::io::{AppendFile, FileSystem};
use crate::model::SeriesRef;

/// First four bytes of a head chunk file (upstream's `MagicHeadChunks`).
pub const HEAD_CHUNK_FILE_MAGIC: u32 = 0x0130_BC91;
/// Format version after the magic.
pub const HEAD_CHUNK_FILE_VERSION: u8 = 1;
/// Magic, version and padding.
pub const HEAD_CHUNK_FILE_HEADER_SIZE: u64 = 8;
/// Upstream's `MaxHeadChunkFileSize`: files are cut before they exceed it.
pub const HEAD_CHUNK_FILE_SIZE_MAX: u64 = 128 * 1024 * 1024;
/// Chunk encoding byte of an XOR chunk (upstream's `chunkenc.EncXOR`).
pub const ENCODING_XOR: u8 = 1;
/// Series ref, min time, max time, encoding.
const CHUNK_META_SIZE: usize = 8 + 8 + 8 + 1;
/// Upstream's `MaxChunkLengthFieldSize` (a uvarint of a u32).
const CHUNK_LENGTH_FIELD_SIZE_MAX: usize = 5;
const CRC_SIZE: usize = 4;

const _: () = assert!(HEAD_CHUNK_FILE_SIZE_MAX <= u32::MAX as u64, "offsets must fit the ref's low 32 bits");

/// Where a chunk is on disk: file index << 32 | offset (upstream's `ChunkDiskMapperRef`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChunkDiskRef(pub u64);

impl ChunkDiskRef {
    /// The ref of the chunk at `offset` in file `file_index`.
    pub fn new(file_index: u32, offset: u32) -> Self {
        ChunkDiskRef(u64::from(file_index) << 32 | u64::from(offset))
    }

    /// Index of the file (its name as a number).
    pub fn file_index(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// Byte offset of the chunk's series ref in the file.
    pub fn offset(self) -> u32 {
        self.0 as u32
    }
}

/// What is wrong with damaged head chunk data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorruptionKind {
    /// The file is shorter than its header, or the header's magic or version is wrong.
    BadFileHeader,
    /// The chunk extends past the end of its file.
    Torn {
        /// Bytes the chunk needs from its offset.
        required_size: u64,
        /// Bytes the file has from that offset.
        available_size: u64,
    },
    /// The length field is not a valid uvarint or announces more than a file can hold.
    BadLength,
    /// The stored checksum does not match the bytes.
    CrcMismatch {
        /// Checksum in the file.
        stored_crc: u32,
        /// Checksum of the bytes read.
        computed_crc: u32,
    },
    /// The ref points into the file header or at a file that does not exist.
    BadRef,
}

/// Errors of the head chunk files.
#[derive(Debug, thiserror::Error)]
pub enum ChunksHeadError {
    /// A filesystem operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Cause.
        source: io::Error,
    },
    /// Damaged data in a head chunk file.
    #[error("head chunk file {file_index} corrupt at offset {offset}: {kind:?}")]
    Corruption {
        /// The file.
        file_index: u32,
        /// Offset of the damaged chunk (0 for the file header).
        offset: u64,
        /// What is wrong.
        kind: CorruptionKind,
    },
    /// A chunk whose encoding this engine does not read (a histogram or out-of-order chunk).
    #[error("head chunk file {file_index} offset {offset}: unsupported chunk encoding {encoding}")]
    UnsupportedEncoding {
        /// The file.
        file_index: u32,
        /// Offset of the chunk.
        offset: u64,
        /// The encoding byte.
        encoding: u8,
    },
    /// A chunk too large for one file.
    #[error("chunk of {chunk_size} bytes does not fit a head chunk file of at most {file_size_max} bytes")]
    ChunkTooLarge {
        /// Encoded chunk size.
        chunk_size: usize,
        /// The file size limit.
        file_size_max: u64,
    },
    /// The file index would pass `u32::MAX`.
    #[error("head chunk file index {file_index} is the last one")]
    FileIndexExhausted {
        /// The highest index in use.
        file_index: u32,
    },
}

fn io_error(context: String) -> impl FnOnce(io::Error) -> ChunksHeadError {
    move |source| ChunksHeadError::Io { context, source }
}

/// File name of file `file_index` (upstream's `segmentFile`: six digits, zero-padded).
pub fn file_name(file_index: u32) -> String {
    format!("{file_index:06}")
}

fn file_path(dir: &Path, file_index: u32) -> PathBuf {
    dir.join(file_name(file_index))
}

/// Indices of the head chunk files in `dir`, ascending; other names are ignored (as upstream's
/// `listChunkFiles`); a missing directory has none.
fn list_file_indices(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<u32>, ChunksHeadError> {
    let names = match fs.list_dir(dir) {
        Ok(names) => names,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(io_error(format!("list head chunk directory {}", dir.display()))(err)),
    };
    let mut indices: Vec<u32> = names
        .iter()
        .filter(|name| !name.is_empty() && name.bytes().all(|byte| byte.is_ascii_digit()))
        .filter_map(|name| name.parse().ok())
        .collect();
    indices.sort_unstable();
    Ok(indices)
}

fn file_header() -> [u8; HEAD_CHUNK_FILE_HEADER_SIZE as usize] {
    let mut header = [0_u8; HEAD_CHUNK_FILE_HEADER_SIZE as usize];
    header[..4].copy_from_slice(&HEAD_CHUNK_FILE_MAGIC.to_be_bytes());
    header[4] = HEAD_CHUNK_FILE_VERSION;
    header
}

fn put_uvarint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Decodes a uvarint of at most [`CHUNK_LENGTH_FIELD_SIZE_MAX`] bytes: (value, size).
fn get_uvarint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0_u64;
    for (index, byte) in bytes.iter().take(CHUNK_LENGTH_FIELD_SIZE_MAX).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * index);
        if *byte < 0x80 {
            return Some((value, index + 1));
        }
    }
    None
}

/// Encoded size of a chunk record with `data_size` bytes of data.
fn record_size(data_size: usize) -> u64 {
    let mut length_field = Vec::with_capacity(CHUNK_LENGTH_FIELD_SIZE_MAX);
    put_uvarint(&mut length_field, data_size as u64);
    (CHUNK_META_SIZE + length_field.len() + data_size + CRC_SIZE) as u64
}

/// Appends head chunks to the files in one directory.
pub struct HeadChunkWriter {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    file_size_max: u64,
    /// Index of the open file, or the highest index on disk before the first write.
    file_index: u32,
    /// Bytes in the open file.
    file_size: u64,
    file: Option<Box<dyn AppendFile>>,
    /// A file was created since the directory was last synced.
    dir_sync_pending: bool,
    /// Reused encoding buffer.
    record: Vec<u8>,
    /// Newest chunk end written to each file, so whole files can go once the head is truncated
    /// past them (bounded by the files on disk).
    file_max_time_ms: std::collections::BTreeMap<u32, i64>,
}

impl HeadChunkWriter {
    /// Opens `dir` (created if missing) for writing; the first chunk goes to a new file after
    /// the highest one there. Run [`replay`] first: the writer does not read old files.
    pub fn open(fs: Arc<dyn FileSystem>, dir: &Path) -> Result<Self, ChunksHeadError> {
        Self::open_with_file_size_max(fs, dir, HEAD_CHUNK_FILE_SIZE_MAX)
    }

    /// As [`HeadChunkWriter::open`], cutting files at `file_size_max` bytes (at most
    /// [`HEAD_CHUNK_FILE_SIZE_MAX`]; smaller in tests).
    pub fn open_with_file_size_max(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        file_size_max: u64,
    ) -> Result<Self, ChunksHeadError> {
        assert!(
            file_size_max > HEAD_CHUNK_FILE_HEADER_SIZE && file_size_max <= HEAD_CHUNK_FILE_SIZE_MAX,
            "head chunk file size limit {file_size_max} outside 9..={HEAD_CHUNK_FILE_SIZE_MAX}"
        );
        fs.create_dir_all(dir).map_err(io_error(format!("create head chunk directory {}", dir.display())))?;
        let file_index = list_file_indices(fs.as_ref(), dir)?.last().copied().unwrap_or(0);
        Ok(HeadChunkWriter {
            fs,
            dir: dir.to_path_buf(),
            file_size_max,
            file_index,
            file_size: 0,
            file: None,
            dir_sync_pending: false,
            record: Vec::new(),
            file_max_time_ms: std::collections::BTreeMap::new(),
        })
    }

    /// Writes one chunk of `series_ref` covering `[min_time_ms, max_time_ms]` and returns where
    /// it is. It is durable after the next successful [`HeadChunkWriter::sync`].
    pub fn write(
        &mut self,
        series_ref: SeriesRef,
        min_time_ms: i64,
        max_time_ms: i64,
        chunk_bytes: &[u8],
    ) -> Result<ChunkDiskRef, ChunksHeadError> {
        let size = record_size(chunk_bytes.len());
        if HEAD_CHUNK_FILE_HEADER_SIZE + size > self.file_size_max {
            return Err(ChunksHeadError::ChunkTooLarge {
                chunk_size: chunk_bytes.len(),
                file_size_max: self.file_size_max,
            });
        }
        if self.file.is_none() || self.file_size + size > self.file_size_max {
            self.cut()?;
        }
        self.record.clear();
        self.record.extend_from_slice(&series_ref.0.to_be_bytes());
        self.record.extend_from_slice(&min_time_ms.to_be_bytes());
        self.record.extend_from_slice(&max_time_ms.to_be_bytes());
        self.record.push(ENCODING_XOR);
        put_uvarint(&mut self.record, chunk_bytes.len() as u64);
        self.record.extend_from_slice(chunk_bytes);
        let crc = crc32c::crc32c(&self.record);
        self.record.extend_from_slice(&crc.to_be_bytes());
        let path = file_path(&self.dir, self.file_index);
        let offset = self.file_size;
        let written = match self.file.as_mut() {
            Some(file) => file.write_all(&self.record),
            None => Err(io::Error::other("no open head chunk file after cut")),
        };
        if let Err(source) = written {
            // Cut the torn bytes off so the file stays a sequence of whole chunks; if that fails
            // too, leave them for replay to cut and move on to a new file.
            if self.fs.truncate(&path, offset).is_err() {
                self.file = None;
            }
            return Err(ChunksHeadError::Io { context: format!("write head chunk to {}", path.display()), source });
        }
        self.file_size += size;
        let file_max_ms = self.file_max_time_ms.entry(self.file_index).or_insert(max_time_ms);
        *file_max_ms = (*file_max_ms).max(max_time_ms);
        Ok(ChunkDiskRef::new(self.file_index, offset as u32))
    }

    /// Removes the files written by this writer, other than the open one, whose chunks all end
    /// before `before_ms`; returns their indices. A file that cannot be removed is kept and
    /// retried next time.
    pub fn remove_files_before(&mut self, before_ms: i64) -> Vec<u32> {
        let open_index = self.file.as_ref().map(|_| self.file_index);
        let candidates: Vec<u32> = self
            .file_max_time_ms
            .iter()
            .filter(|&(&index, &max_ms)| max_ms < before_ms && Some(index) != open_index)
            .map(|(&index, _)| index)
            .collect();
        let mut removed = Vec::new();
        for index in candidates {
            let path = file_path(&self.dir, index);
            match self.fs.remove_file(&path) {
                Ok(()) => {
                    self.file_max_time_ms.remove(&index);
                    removed.push(index);
                }
                Err(error) => tracing::warn!(%error, file = %path.display(), "remove head chunk file; retrying later"),
            }
        }
        removed
    }

    /// Makes every chunk written so far durable.
    pub fn sync(&mut self) -> Result<(), ChunksHeadError> {
        if let Some(file) = self.file.as_mut() {
            let path = file_path(&self.dir, self.file_index);
            file.sync().map_err(io_error(format!("sync head chunk file {}", path.display())))?;
        }
        if self.dir_sync_pending {
            self.fs
                .sync_dir(&self.dir)
                .map_err(io_error(format!("sync head chunk directory {}", self.dir.display())))?;
            self.dir_sync_pending = false;
        }
        Ok(())
    }

    /// Index of the file being written (0 before the first write).
    pub fn file_index(&self) -> u32 {
        if self.file.is_some() {
            self.file_index
        } else {
            0
        }
    }

    /// Closes the current file (synced) and starts the next one with its header.
    fn cut(&mut self) -> Result<(), ChunksHeadError> {
        if let Some(mut file) = self.file.take() {
            let path = file_path(&self.dir, self.file_index);
            file.sync().map_err(io_error(format!("sync head chunk file {}", path.display())))?;
        }
        let file_index = self
            .file_index
            .checked_add(1)
            .ok_or(ChunksHeadError::FileIndexExhausted { file_index: self.file_index })?;
        let path = file_path(&self.dir, file_index);
        let mut file =
            self.fs.open_append(&path).map_err(io_error(format!("create head chunk file {}", path.display())))?;
        // A previous attempt at this index may have left a torn header behind.
        self.fs.truncate(&path, 0).map_err(io_error(format!("reset head chunk file {}", path.display())))?;
        file.write_all(&file_header()).map_err(io_error(format!("write head chunk file header {}", path.display())))?;
        self.dir_sync_pending = true;
        self.file_index = file_index;
        self.file_size = HEAD_CHUNK_FILE_HEADER_SIZE;
        self.file = Some(file);
        Ok(())
    }
}

/// Reads head chunks by position.
pub struct HeadChunkReader {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    /// Open files by index: one open per file, not per chunk read. Bounded by the file count
    /// (128 MiB each); entries go when their file is removed ([`HeadChunkReader::forget`]).
    files: std::sync::Mutex<std::collections::BTreeMap<u32, Arc<dyn crate::io::fs::RandomAccessFile>>>,
}

impl HeadChunkReader {
    /// A reader of the files in `dir`.
    pub fn open(fs: Arc<dyn FileSystem>, dir: &Path) -> Result<Self, ChunksHeadError> {
        Ok(HeadChunkReader { fs, dir: dir.to_path_buf(), files: Default::default() })
    }

    /// Drops the cached handle of a removed file.
    pub fn forget(&self, file_index: u32) {
        self.files.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&file_index);
    }

    fn file(&self, file_index: u32, path: &Path) -> io::Result<Arc<dyn crate::io::fs::RandomAccessFile>> {
        let mut files = self.files.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(file) = files.get(&file_index) {
            return Ok(file.clone());
        }
        let file: Arc<dyn crate::io::fs::RandomAccessFile> = Arc::from(self.fs.open_read(path)?);
        files.insert(file_index, file.clone());
        Ok(file)
    }

    /// The data (XOR chunk bytes) of the chunk at `chunk_ref`, checked against its CRC.
    pub fn read(&self, chunk_ref: ChunkDiskRef) -> Result<Vec<u8>, ChunksHeadError> {
        let file_index = chunk_ref.file_index();
        let offset = u64::from(chunk_ref.offset());
        let corruption = |kind| ChunksHeadError::Corruption { file_index, offset, kind };
        let path = file_path(&self.dir, file_index);
        let file_size = match self.file(file_index, &path).and_then(|file| file.size()) {
            Ok(file_size) => file_size,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Err(corruption(CorruptionKind::BadRef)),
            Err(err) => return Err(io_error(format!("size of head chunk file {}", path.display()))(err)),
        };
        if offset < HEAD_CHUNK_FILE_HEADER_SIZE || offset >= file_size {
            return Err(corruption(CorruptionKind::BadRef));
        }
        let available_size = file_size - offset;
        let torn = |required_size| CorruptionKind::Torn { required_size, available_size };
        let mut meta = [0_u8; CHUNK_META_SIZE + CHUNK_LENGTH_FIELD_SIZE_MAX];
        let meta_size = (meta.len() as u64).min(available_size) as usize;
        if meta_size <= CHUNK_META_SIZE {
            return Err(corruption(torn(CHUNK_META_SIZE as u64 + 1)));
        }
        let file =
            self.file(file_index, &path).map_err(io_error(format!("open head chunk file {}", path.display())))?;
        file.read_at(offset, &mut meta[..meta_size])
            .map_err(io_error(format!("read head chunk header in {}", path.display())))?;
        let (data_size, length_field_size) =
            get_uvarint(&meta[CHUNK_META_SIZE..meta_size]).ok_or(corruption(CorruptionKind::BadLength))?;
        if data_size > HEAD_CHUNK_FILE_SIZE_MAX {
            return Err(corruption(CorruptionKind::BadLength));
        }
        let head_size = CHUNK_META_SIZE + length_field_size;
        let required_size = head_size as u64 + data_size + CRC_SIZE as u64;
        if required_size > available_size {
            return Err(corruption(torn(required_size)));
        }
        let mut data = vec![0_u8; data_size as usize + CRC_SIZE];
        file.read_at(offset + head_size as u64, &mut data)
            .map_err(io_error(format!("read head chunk in {}", path.display())))?;
        let crc_bytes = data.split_off(data_size as usize);
        let stored_crc = u32::from_be_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
        let computed_crc = crc32c::crc32c_append(crc32c::crc32c(&meta[..head_size]), &data);
        if stored_crc != computed_crc {
            return Err(corruption(CorruptionKind::CrcMismatch { stored_crc, computed_crc }));
        }
        let encoding = meta[CHUNK_META_SIZE - 1];
        if encoding != ENCODING_XOR {
            return Err(ChunksHeadError::UnsupportedEncoding { file_index, offset, encoding });
        }
        Ok(data)
    }
}

/// What [`replay`] found and repaired.
#[derive(Debug, Default)]
pub struct ReplayReport {
    /// Chunks visited.
    pub chunk_count: u64,
    /// Files read (including repaired ones).
    pub file_count: u64,
    /// Damage found and cut, at most one per file, in file order: each a
    /// [`ChunksHeadError::Corruption`].
    pub repairs: Vec<ChunksHeadError>,
    /// Bytes cut off, including removed files.
    pub cut_size: u64,
}

/// One chunk as replay parses it.
struct ParsedChunk {
    series_ref: SeriesRef,
    min_time_ms: i64,
    max_time_ms: i64,
    encoding: u8,
    size: u64,
}

/// Parses the chunk at the start of `bytes` (the rest of a file from a chunk's offset).
fn parse_chunk(bytes: &[u8]) -> Result<ParsedChunk, CorruptionKind> {
    let available_size = bytes.len() as u64;
    let torn = |required_size| CorruptionKind::Torn { required_size, available_size };
    let Some((meta, rest)) = bytes.split_first_chunk::<CHUNK_META_SIZE>() else {
        return Err(torn(CHUNK_META_SIZE as u64 + 1));
    };
    let Some((data_size, length_field_size)) = get_uvarint(rest) else {
        // Running out of bytes inside the length field is a torn write, not a bad length.
        if rest.len() < CHUNK_LENGTH_FIELD_SIZE_MAX && rest.iter().all(|byte| *byte >= 0x80) {
            return Err(torn(bytes.len() as u64 + 1));
        }
        return Err(CorruptionKind::BadLength);
    };
    if data_size > HEAD_CHUNK_FILE_SIZE_MAX {
        return Err(CorruptionKind::BadLength);
    }
    let head_size = CHUNK_META_SIZE + length_field_size;
    let size = head_size as u64 + data_size + CRC_SIZE as u64;
    if size > available_size {
        return Err(torn(size));
    }
    let crc_offset = head_size + data_size as usize;
    let stored_crc =
        u32::from_be_bytes([bytes[crc_offset], bytes[crc_offset + 1], bytes[crc_offset + 2], bytes[crc_offset + 3]]);
    let computed_crc = crc32c::crc32c(&bytes[..crc_offset]);
    if stored_crc != computed_crc {
        return Err(CorruptionKind::CrcMismatch { stored_crc, computed_crc });
    }
    let field = |index: usize| u64::from_be_bytes(meta[index * 8..index * 8 + 8].try_into().unwrap_or([0; 8]));
    Ok(ParsedChunk {
        series_ref: SeriesRef(field(0)),
        min_time_ms: field(1) as i64,
        max_time_ms: field(2) as i64,
        encoding: meta[CHUNK_META_SIZE - 1],
        size,
    })
}

/// Upstream's end-of-data marks in `IterateAllChunks`: files it preallocated are zero past the
/// data, so a zero series ref, min time and max time (series refs start at 1), or a zero tail
/// too short for a chunk, ends the file's chunks.
fn is_end_of_data(rest: &[u8]) -> bool {
    let marker = if rest.len() < CHUNK_META_SIZE + CHUNK_LENGTH_FIELD_SIZE_MAX + CRC_SIZE {
        rest
    } else {
        &rest[..CHUNK_META_SIZE - 1]
    };
    marker.iter().all(|byte| *byte == 0)
}

/// Visits every chunk in `dir` in file and offset order with its series, time range and
/// position, repairing damage as the module doc describes. Call it before opening a
/// [`HeadChunkWriter`] on the same directory.
pub fn replay(
    fs: &dyn FileSystem,
    dir: &Path,
    visit: &mut dyn FnMut(SeriesRef, i64, i64, ChunkDiskRef),
) -> Result<ReplayReport, ChunksHeadError> {
    let mut report = ReplayReport::default();
    let indices = list_file_indices(fs, dir)?;
    for (position, file_index) in indices.iter().copied().enumerate() {
        let path = file_path(dir, file_index);
        let bytes = fs.read(&path).map_err(io_error(format!("read head chunk file {}", path.display())))?;
        report.file_count += 1;
        if bytes.len() < HEAD_CHUNK_FILE_HEADER_SIZE as usize {
            // Created, but the header never fully landed: torn, drop the file.
            fs.remove_file(&path).map_err(io_error(format!("remove torn head chunk file {}", path.display())))?;
            report.cut_size += bytes.len() as u64;
            report.repairs.push(ChunksHeadError::Corruption {
                file_index,
                offset: 0,
                kind: CorruptionKind::Torn {
                    required_size: HEAD_CHUNK_FILE_HEADER_SIZE,
                    available_size: bytes.len() as u64,
                },
            });
            continue;
        }
        let mut stop = None;
        if bytes[..HEAD_CHUNK_FILE_HEADER_SIZE as usize] != file_header() {
            stop = Some((0, CorruptionKind::BadFileHeader));
        }
        let mut offset = HEAD_CHUNK_FILE_HEADER_SIZE as usize;
        while stop.is_none() && offset < bytes.len() {
            if is_end_of_data(&bytes[offset..]) {
                break;
            }
            match parse_chunk(&bytes[offset..]) {
                Ok(chunk) => {
                    if chunk.encoding != ENCODING_XOR {
                        return Err(ChunksHeadError::UnsupportedEncoding {
                            file_index,
                            offset: offset as u64,
                            encoding: chunk.encoding,
                        });
                    }
                    visit(
                        chunk.series_ref,
                        chunk.min_time_ms,
                        chunk.max_time_ms,
                        ChunkDiskRef::new(file_index, offset as u32),
                    );
                    report.chunk_count += 1;
                    offset += chunk.size as usize;
                }
                Err(kind @ CorruptionKind::Torn { .. }) => {
                    // Cut the torn tail; later files are intact writes.
                    fs.truncate(&path, offset as u64)
                        .map_err(io_error(format!("truncate torn head chunk file {}", path.display())))?;
                    report.cut_size += (bytes.len() - offset) as u64;
                    report.repairs.push(ChunksHeadError::Corruption { file_index, offset: offset as u64, kind });
                    break;
                }
                Err(kind) => stop = Some((offset, kind)),
            }
        }
        let Some((offset, kind)) = stop else {
            continue;
        };
        // Damage: keep the good prefix of this file (or drop it whole if its header is bad),
        // and remove every later file.
        if offset == 0 {
            fs.remove_file(&path).map_err(io_error(format!("remove corrupt head chunk file {}", path.display())))?;
        } else {
            fs.truncate(&path, offset as u64)
                .map_err(io_error(format!("truncate corrupt head chunk file {}", path.display())))?;
        }
        report.cut_size += (bytes.len() - offset) as u64;
        report.repairs.push(ChunksHeadError::Corruption { file_index, offset: offset as u64, kind });
        for later_index in indices[position + 1..].iter().copied() {
            let later_path = file_path(dir, later_index);
            let later_size = fs.file_size(&later_path).unwrap_or(0);
            fs.remove_file(&later_path)
                .map_err(io_error(format!("remove head chunk file {} after corruption", later_path.display())))?;
            report.cut_size += later_size;
        }
        fs.sync_dir(dir).map_err(io_error(format!("sync head chunk directory {}", dir.display())))?;
        return Ok(report);
    }
    if !report.repairs.is_empty() {
        fs.sync_dir(dir).map_err(io_error(format!("sync head chunk directory {}", dir.display())))?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::MemFileSystem;
    use crate::tsdb::chunk::XorChunk;
    use proptest::prelude::*;

    /// What a test wrote: ref, series, time range, data.
    type Written = Vec<(ChunkDiskRef, SeriesRef, i64, i64, Vec<u8>)>;

    fn dir() -> PathBuf {
        PathBuf::from("/data/chunks_head")
    }

    fn xor_chunk(start_ms: i64, sample_count: i64) -> XorChunk {
        let mut chunk = XorChunk::new();
        for index in 0..sample_count {
            chunk.append(start_ms + index * 15_000, (index * index) as f64);
        }
        chunk
    }

    fn write_chunks(fs: &MemFileSystem, file_size_max: u64, chunks: &[(u64, Vec<u8>)]) -> Written {
        let mut writer = HeadChunkWriter::open_with_file_size_max(Arc::new(fs.clone()), &dir(), file_size_max).unwrap();
        let mut written = Vec::new();
        for (index, (series, data)) in chunks.iter().enumerate() {
            let (min_time_ms, max_time_ms) = (index as i64 * 1000, index as i64 * 1000 + 999);
            let chunk_ref = writer.write(SeriesRef(*series), min_time_ms, max_time_ms, data).unwrap();
            written.push((chunk_ref, SeriesRef(*series), min_time_ms, max_time_ms, data.clone()));
        }
        writer.sync().unwrap();
        written
    }

    fn replay_all(fs: &MemFileSystem) -> (ReplayReport, Vec<(ChunkDiskRef, SeriesRef, i64, i64)>) {
        let mut visited = Vec::new();
        let report = replay(fs, &dir(), &mut |series_ref, min_time_ms, max_time_ms, chunk_ref| {
            visited.push((chunk_ref, series_ref, min_time_ms, max_time_ms));
        })
        .unwrap();
        (report, visited)
    }

    /// Every visited chunk was written with that meta at that ref and reads back intact; a
    /// second replay finds nothing to repair and visits the same chunks.
    #[track_caller]
    fn check_replay_consistent(fs: &MemFileSystem, written: &Written) -> Vec<ChunkDiskRef> {
        let (_, visited) = replay_all(fs);
        let reader = HeadChunkReader::open(Arc::new(fs.clone()), &dir()).unwrap();
        let mut previous = None;
        for (chunk_ref, series_ref, min_time_ms, max_time_ms) in &visited {
            let Some(entry) = written.iter().find(|entry| entry.0 == *chunk_ref) else {
                panic!("visited {chunk_ref:?}, never written");
            };
            assert_eq!((entry.1, entry.2, entry.3), (*series_ref, *min_time_ms, *max_time_ms));
            assert_eq!(reader.read(*chunk_ref).unwrap(), entry.4, "data at {chunk_ref:?}");
            assert!(previous < Some(*chunk_ref), "visits in position order");
            previous = Some(*chunk_ref);
        }
        let (report, again) = replay_all(fs);
        assert!(report.repairs.is_empty(), "second replay repaired {:?}", report.repairs);
        assert_eq!(again, visited);
        visited.iter().map(|entry| entry.0).collect()
    }

    #[test]
    fn layout_matches_prometheus_head_chunk_format() {
        let fs = MemFileSystem::default();
        let data = vec![0, 1, 0xaa];
        let written = write_chunks(&fs, HEAD_CHUNK_FILE_SIZE_MAX, &[(7, data)]);
        assert_eq!(written[0].0, ChunkDiskRef(1 << 32 | 8));
        let bytes = fs.read(&dir().join("000001")).unwrap();
        let mut expected = vec![0x01, 0x30, 0xbc, 0x91, 1, 0, 0, 0];
        expected.extend_from_slice(&7_u64.to_be_bytes());
        expected.extend_from_slice(&0_i64.to_be_bytes());
        expected.extend_from_slice(&999_i64.to_be_bytes());
        expected.extend_from_slice(&[1, 3, 0, 1, 0xaa]);
        let crc = crc32c::crc32c(&expected[8..]);
        expected.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(bytes, expected);
    }

    #[test]
    fn round_trip_through_mem_fs() {
        let fs = MemFileSystem::default();
        let chunks: Vec<(u64, Vec<u8>)> =
            (0..50).map(|index| (index % 7 + 1, xor_chunk(index as i64 * 1_800_000, 120).bytes().to_vec())).collect();
        let written = write_chunks(&fs, HEAD_CHUNK_FILE_SIZE_MAX, &chunks);
        let refs = check_replay_consistent(&fs, &written);
        assert_eq!(refs, written.iter().map(|entry| entry.0).collect::<Vec<_>>());
        let reader = HeadChunkReader::open(Arc::new(fs.clone()), &dir()).unwrap();
        for (chunk_ref, _, _, _, data) in &written {
            let samples = crate::tsdb::chunk::decode(&reader.read(*chunk_ref).unwrap()).unwrap();
            assert_eq!(samples, crate::tsdb::chunk::decode(data).unwrap());
        }
    }

    #[test]
    fn files_are_cut_at_the_size_limit_and_reopening_starts_a_new_file() {
        let fs = MemFileSystem::default();
        let data = vec![7_u8; 100];
        let file_size_max = HEAD_CHUNK_FILE_HEADER_SIZE + 3 * record_size(data.len()) + 10;
        let chunks: Vec<(u64, Vec<u8>)> = (0..7).map(|index| (index, data.clone())).collect();
        let mut written = write_chunks(&fs, file_size_max, &chunks);
        let file_indices: Vec<u32> = written.iter().map(|entry| entry.0.file_index()).collect();
        assert_eq!(file_indices, [1, 1, 1, 2, 2, 2, 3]);
        for path in fs.paths() {
            assert!(fs.file_size(&path).unwrap() <= file_size_max, "{} too big", path.display());
        }
        // A new writer never appends to an old file.
        written.extend(write_chunks(&fs, file_size_max, &[(9, vec![1, 2, 3])]));
        assert_eq!(written[7].0, ChunkDiskRef::new(4, 8));
        assert_eq!(check_replay_consistent(&fs, &written).len(), 8);

        let mut writer = HeadChunkWriter::open_with_file_size_max(Arc::new(fs.clone()), &dir(), file_size_max).unwrap();
        let too_large = vec![0_u8; file_size_max as usize];
        assert!(matches!(
            writer.write(SeriesRef(1), 0, 0, &too_large),
            Err(ChunksHeadError::ChunkTooLarge { chunk_size, .. }) if chunk_size == too_large.len()
        ));
    }

    /// Writes 3 chunks to each of files 1..=3, applies `damage` to one file, replays, and
    /// checks the repair reported and the chunks kept (as indices into what was written).
    #[track_caller]
    fn check_repair(
        file_index: u32,
        damage: impl FnOnce(&mut Vec<u8>),
        expected_offset: u64,
        expected_kind: fn(&CorruptionKind) -> bool,
        expected_kept: &[usize],
    ) {
        let fs = MemFileSystem::default();
        let data = vec![0x5a_u8; 40];
        let file_size_max = HEAD_CHUNK_FILE_HEADER_SIZE + 3 * record_size(data.len());
        let chunks: Vec<(u64, Vec<u8>)> = (0..9).map(|index| (index + 1, data.clone())).collect();
        let written = write_chunks(&fs, file_size_max, &chunks);
        fs.mutate(&dir().join(file_name(file_index)), damage);
        let (report, _) = replay_all(&fs);
        assert_eq!(report.repairs.len(), 1, "repairs {:?}", report.repairs);
        match &report.repairs[0] {
            ChunksHeadError::Corruption { file_index: got_file_index, offset, kind } => {
                assert_eq!((*got_file_index, *offset), (file_index, expected_offset), "{kind:?}");
                assert!(expected_kind(kind), "kind {kind:?}");
            }
            other => panic!("repair {other:?}"),
        }
        let kept = check_replay_consistent(&fs, &written);
        let expected: Vec<ChunkDiskRef> = expected_kept.iter().map(|index| written[*index].0).collect();
        assert_eq!(kept, expected);
        // Appends continue after the repair.
        let mut writer = HeadChunkWriter::open_with_file_size_max(Arc::new(fs.clone()), &dir(), file_size_max).unwrap();
        let chunk_ref = writer.write(SeriesRef(99), 5, 6, &[1, 2]).unwrap();
        let reader = HeadChunkReader::open(Arc::new(fs.clone()), &dir()).unwrap();
        assert_eq!(reader.read(chunk_ref).unwrap(), [1, 2]);
    }

    #[test]
    fn replay_cuts_torn_tails_and_stops_at_corruption() {
        let record = record_size(40);
        let second = HEAD_CHUNK_FILE_HEADER_SIZE + record;
        let torn = |kind: &CorruptionKind| matches!(kind, CorruptionKind::Torn { .. });
        let crc = |kind: &CorruptionKind| matches!(kind, CorruptionKind::CrcMismatch { .. });
        let header = |kind: &CorruptionKind| *kind == CorruptionKind::BadFileHeader;
        // A torn last chunk of file 2: cut, file 3 kept.
        check_repair(2, |bytes| bytes.truncate(bytes.len() - 3), second + record, torn, &[0, 1, 2, 3, 4, 6, 7, 8]);
        // Torn inside the length field and inside the meta.
        check_repair(
            3,
            |bytes| bytes.truncate((second + record + 25) as usize),
            second + record,
            torn,
            &[0, 1, 2, 3, 4, 5, 6, 7],
        );
        check_repair(1, |bytes| bytes.truncate((second + 10) as usize), second, torn, &[0, 3, 4, 5, 6, 7, 8]);
        // A file whose header never landed is dropped, later files kept.
        check_repair(2, |bytes| bytes.truncate(3), 0, torn, &[0, 1, 2, 6, 7, 8]);
        // A flipped bit: the file is cut there and every later file removed.
        check_repair(1, |bytes| bytes[second as usize + 30] ^= 0x10, second, crc, &[0]);
        check_repair(
            2,
            |bytes| bytes[HEAD_CHUNK_FILE_HEADER_SIZE as usize] ^= 1,
            HEAD_CHUNK_FILE_HEADER_SIZE,
            crc,
            &[0, 1, 2],
        );
        // A bad magic: the file and every later one go.
        check_repair(2, |bytes| bytes[0] = 0, 0, header, &[0, 1, 2]);
        // A length field of six continuation bytes is not a torn write.
        check_repair(
            3,
            |bytes| bytes[second as usize + 25..second as usize + 31].fill(0xff),
            second,
            |kind| *kind == CorruptionKind::BadLength,
            &[0, 1, 2, 3, 4, 5, 6],
        );
    }

    #[test]
    fn reader_reports_typed_corruption() {
        let fs = MemFileSystem::default();
        let written = write_chunks(&fs, HEAD_CHUNK_FILE_SIZE_MAX, &[(1, vec![9; 30]), (2, vec![8; 30])]);
        let reader = HeadChunkReader::open(Arc::new(fs.clone()), &dir()).unwrap();
        let second = written[1].0;
        fs.mutate(&dir().join("000001"), |bytes| bytes[second.offset() as usize + 40] ^= 0xff);
        assert!(matches!(
            reader.read(second),
            Err(ChunksHeadError::Corruption { file_index: 1, offset, kind: CorruptionKind::CrcMismatch { .. } })
                if offset == u64::from(second.offset())
        ));
        assert_eq!(reader.read(written[0].0).unwrap(), vec![9; 30]);
        fs.mutate(&dir().join("000001"), |bytes| bytes.truncate(bytes.len() - 1));
        assert!(matches!(
            reader.read(second),
            Err(ChunksHeadError::Corruption { kind: CorruptionKind::Torn { .. }, .. })
        ));
        for bad_ref in [ChunkDiskRef::new(1, 3), ChunkDiskRef::new(1, 1 << 20), ChunkDiskRef::new(5, 8)] {
            assert!(
                matches!(reader.read(bad_ref), Err(ChunksHeadError::Corruption { kind: CorruptionKind::BadRef, .. })),
                "{bad_ref:?}"
            );
        }
    }

    #[test]
    fn failed_writes_leave_whole_chunks() {
        let fs = MemFileSystem::default();
        let mut writer = HeadChunkWriter::open(Arc::new(fs.clone()), &dir()).unwrap();
        let first = writer.write(SeriesRef(1), 0, 1, &[1; 20]).unwrap();
        fs.fail_next_write();
        assert!(matches!(writer.write(SeriesRef(2), 2, 3, &[2; 20]), Err(ChunksHeadError::Io { .. })));
        // The torn bytes were truncated away: the next chunk follows the first.
        let second = writer.write(SeriesRef(3), 4, 5, &[3; 20]).unwrap();
        assert_eq!(second, ChunkDiskRef::new(1, 8 + record_size(20) as u32));
        // Torn and not truncatable: the next chunk goes to a new file, replay cuts the tail.
        fs.fail_next_write();
        fs.fail_next_truncate();
        assert!(writer.write(SeriesRef(4), 6, 7, &[4; 20]).is_err());
        let third = writer.write(SeriesRef(5), 8, 9, &[5; 20]).unwrap();
        assert_eq!(third, ChunkDiskRef::new(2, 8));
        writer.sync().unwrap();
        let (report, visited) = replay_all(&fs);
        assert_eq!(report.repairs.len(), 1);
        let refs: Vec<ChunkDiskRef> = visited.iter().map(|entry| entry.0).collect();
        assert_eq!(refs, [first, second, third]);
    }

    #[test]
    fn zeros_end_a_file_as_upstream_preallocation() {
        for zero_count in [1, 20, 33, 34, 100, 10_000] {
            let fs = MemFileSystem::default();
            let written = write_chunks(&fs, HEAD_CHUNK_FILE_SIZE_MAX, &[(1, vec![1; 10]), (2, vec![2; 10])]);
            fs.mutate(&dir().join("000001"), |bytes| bytes.resize(bytes.len() + zero_count, 0));
            let (report, _) = replay_all(&fs);
            assert!(report.repairs.is_empty(), "{zero_count} zeros: {:?}", report.repairs);
            assert_eq!(check_replay_consistent(&fs, &written).len(), 2, "{zero_count} zeros");
        }
    }

    #[test]
    fn round_trip_through_the_real_filesystem() {
        let fs = crate::io::RealFileSystem;
        let dir = std::env::temp_dir().join(format!("engine-chunks-head-{}", std::process::id()));
        let chunk = xor_chunk(1_700_000_000_000, 120);
        let mut writer = HeadChunkWriter::open(Arc::new(fs), &dir).unwrap();
        let refs: Vec<ChunkDiskRef> =
            (1..=3).map(|series| writer.write(SeriesRef(series), 1, 2, chunk.bytes()).unwrap()).collect();
        writer.sync().unwrap();
        let reader = HeadChunkReader::open(Arc::new(fs), &dir).unwrap();
        for chunk_ref in &refs {
            assert_eq!(reader.read(*chunk_ref).unwrap(), chunk.bytes());
        }
        let mut visited = Vec::new();
        let report = replay(&fs, &dir, &mut |_, _, _, chunk_ref| visited.push(chunk_ref)).unwrap();
        assert!(report.repairs.is_empty());
        assert_eq!(visited, refs);
        fs.remove_file(&dir.join("000001")).unwrap();
    }

    #[test]
    fn unsynced_chunks_are_lost_whole_on_crash() {
        let fs = MemFileSystem::default();
        let mut writer = HeadChunkWriter::open(Arc::new(fs.clone()), &dir()).unwrap();
        let kept = writer.write(SeriesRef(1), 0, 1, &[1; 20]).unwrap();
        writer.sync().unwrap();
        writer.write(SeriesRef(2), 2, 3, &[2; 20]).unwrap();
        fs.crash();
        let (report, visited) = replay_all(&fs);
        assert!(report.repairs.is_empty());
        assert_eq!(visited, [(kept, SeriesRef(1), 0, 1)]);
    }

    /// A head chunk file Prometheus 2.42 wrote: `prometheus
    /// --config.file=testdata/prometheus-2.42-chunks_head.yml` (scraping itself every second,
    /// five metric names kept) for 150 s, stopped with SIGTERM, then `chunks_head/000001` cut
    /// from its preallocated 128 KiB to 4096 bytes (its 11 chunks end at byte 2931, zeros follow).
    #[test]
    fn prometheus_written_head_chunks_replay_read_and_reencode() {
        let fs = MemFileSystem::default();
        let path = dir().join("000001");
        let mut file = fs.open_append(&path).unwrap();
        file.write_all(include_bytes!("testdata/prometheus-2.42-chunks_head-000001")).unwrap();
        let (report, visited) = replay_all(&fs);
        assert!(report.repairs.is_empty(), "{:?}", report.repairs);
        assert_eq!(visited.len(), 11);
        let reader = HeadChunkReader::open(Arc::new(fs.clone()), &dir()).unwrap();
        for (chunk_ref, series_ref, min_time_ms, max_time_ms) in visited {
            assert!(series_ref.0 > 0);
            let bytes = reader.read(chunk_ref).unwrap();
            let samples = crate::tsdb::chunk::decode(&bytes).unwrap();
            assert_eq!(samples.first().map(|sample| sample.0), Some(min_time_ms), "{chunk_ref:?}");
            assert_eq!(samples.last().map(|sample| sample.0), Some(max_time_ms), "{chunk_ref:?}");
            let mut chunk = XorChunk::new();
            for (timestamp_ms, value) in &samples {
                chunk.append(*timestamp_ms, *value);
            }
            assert_eq!(chunk.bytes(), &bytes[..], "re-encoding of {chunk_ref:?}");
        }
    }

    proptest! {
        #[test]
        fn written_chunks_replay_and_read_back(
            sizes in proptest::collection::vec((1_u64..1_000, 0_usize..300), 1..40),
            file_size_extra in 0_u64..2_000,
            damage in proptest::option::of((any::<u32>(), any::<usize>(), any::<u8>(), any::<bool>())),
        ) {
            let fs = MemFileSystem::default();
            let chunks: Vec<(u64, Vec<u8>)> =
                sizes.iter().map(|(series, size)| (*series, (0..*size).map(|byte| byte as u8).collect())).collect();
            let file_size_max = HEAD_CHUNK_FILE_HEADER_SIZE + record_size(300) + file_size_extra;
            let written = write_chunks(&fs, file_size_max, &chunks);
            let Some((file_pick, position, flip, truncate)) = damage else {
                let refs = check_replay_consistent(&fs, &written);
                prop_assert_eq!(refs, written.iter().map(|entry| entry.0).collect::<Vec<_>>());
                return Ok(());
            };
            let paths = fs.paths();
            let path = &paths[file_pick as usize % paths.len()];
            fs.mutate(path, |bytes| {
                let position = position % bytes.len();
                if truncate {
                    bytes.truncate(position);
                } else {
                    bytes[position] ^= flip | 1;
                }
            });
            // Never panics; whatever survives is intact and stable.
            check_replay_consistent(&fs, &written);
        }
    }
}
