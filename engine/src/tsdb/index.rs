//! A block's `index` file in Prometheus' index format v2 (tsdb/docs/format/index.md,
//! tsdb/index/index.go): what [`super::block`] writes, `promtool` reads, and back.
//!
//! Layout (integers big-endian unless uvarint/varint; every section's CRC32C (Castagnoli)
//! covers its bytes after the length field):
//! ```text
//! ┌────────────────────────────┬─────────────────────┐
//! │ magic 0xBAAAD700: u32      │ version 2: u8       │
//! ├────────────────────────────┴─────────────────────┤
//! │ symbols:  len u32 │ count u32 │ (uvarint len, bytes)… sorted │ CRC32C │
//! │ series:   per series, padded to a 16-byte boundary; its id is offset / 16:
//! │           len uvarint │ label count uvarint │ (name ref, value ref) uvarint… │
//! │           chunk count uvarint │ first: min varint, max−min uvarint, ref uvarint │
//! │           next: min−prev max uvarint, max−min uvarint, ref−prev ref varint │ CRC32C │
//! │ label indices (4-aligned, one per name): len u32 │ 1 u32 │ count u32 │ value refs u32… │ CRC32C │
//! │ postings (4-aligned; first the all-series list): len u32 │ count u32 │ ids u32… │ CRC32C │
//! │ label index table: len u32 │ count u32 │ (1 uvarint, name, offset uvarint)… │ CRC32C │
//! │ postings table:    len u32 │ count u32 │ (2 uvarint, name, value, offset uvarint)… │ CRC32C │
//! │ TOC: symbols, series, label indices, label index table, postings, postings table: u64 each │ CRC32C │
//! └──────────────────────────────────────────────────┘
//! ```
//! Symbol references are positions in the sorted symbol table. The postings table is sorted by
//! (name, value) and starts with the all-series list under the empty name and value, as
//! upstream's `AllPostingsKey`. Prometheus 2.x still writes label indices (promtool 2.42 does)
//! but reads label values from the postings table; this writer writes both, this reader uses
//! only the postings table.
//!
//! Invariants: [`encode_index`] takes series sorted by labels and writes ids increasing in that
//! order, so postings order is label order. [`IndexReader`] holds the whole file and checks the
//! magic, version, TOC CRC, the symbol and postings-table CRCs on open, and each series' and
//! postings list's length and CRC when it is read: every length is checked against the bytes
//! present, so garbage yields [`IndexError::Corruption`], never a panic or a large allocation.
//!
//! Concurrency: the reader is immutable after open, `Send + Sync`.

use std::collections::BTreeMap;

use super::chunks::{get_uvarint, put_uvarint, BlockChunkRef};
use crate::model::{Label, Labels};

/// Magic number opening an index file.
pub const INDEX_MAGIC: u32 = 0xBAAA_D700;
/// Index format version written and read.
pub const INDEX_VERSION_2: u8 = 2;
const HEADER_SIZE: usize = 5;
/// Six u64 offsets and a CRC32C.
const TOC_SIZE: usize = 6 * 8 + 4;
/// Series entries start at multiples of this; a series' id is its offset divided by it.
const SERIES_ALIGNMENT: usize = 16;
/// Label index and postings lists start at multiples of this (upstream aligns them for scans).
const LIST_ALIGNMENT: usize = 4;

/// One chunk of a series, as the index records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkMeta {
    /// First sample's timestamp, ms.
    pub min_time_ms: i64,
    /// Last sample's timestamp (inclusive), ms.
    pub max_time_ms: i64,
    /// Where the chunk lives in the segment files.
    pub chunk_ref: BlockChunkRef,
}

/// Why an index could not be written or read.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum IndexError {
    /// The bytes do not form a valid index.
    #[error("index corrupt at offset {offset}: {reason}")]
    Corruption {
        /// Offset of the damaged structure.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The series handed to the writer break its contract (order, chunk times, size).
    #[error("cannot index series: {reason}")]
    InvalidInput {
        /// What is wrong.
        reason: String,
    },
}

fn invalid(reason: String) -> IndexError {
    IndexError::InvalidInput { reason }
}

fn put_varint(out: &mut Vec<u8>, value: i64) {
    put_uvarint(out, ((value << 1) ^ (value >> 63)) as u64);
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    put_uvarint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

fn pad_to(out: &mut Vec<u8>, alignment: usize) {
    let padding = (alignment - out.len() % alignment) % alignment;
    out.resize(out.len() + padding, 0);
}

/// Appends `len u32 | body | CRC32C(body)`.
fn put_section(out: &mut Vec<u8>, body: &[u8]) -> Result<(), IndexError> {
    let size = u32::try_from(body.len()).map_err(|_| invalid(format!("index section of {} bytes", body.len())))?;
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&crc32c::crc32c(body).to_be_bytes());
    Ok(())
}

fn checked_u32(value: usize, what: &str) -> Result<u32, IndexError> {
    u32::try_from(value).map_err(|_| invalid(format!("{what} {value} exceeds u32")))
}

/// Encodes an index over `series`, which must be sorted by labels without duplicates, each
/// with chunks in time order (`min ≤ max`, each starting at or after the previous one's max).
/// Series ids are `offset / 16` in the returned bytes, in input order.
pub fn encode_index(series: &[(Labels, Vec<ChunkMeta>)]) -> Result<Vec<u8>, IndexError> {
    for pair in series.windows(2) {
        if pair[0].0 >= pair[1].0 {
            return Err(invalid(format!("series not sorted: {} before {}", pair[0].0, pair[1].0)));
        }
    }
    // Symbols, with the empty string as promtool writes it.
    let mut symbol_refs: BTreeMap<&str, u32> = BTreeMap::new();
    symbol_refs.insert("", 0);
    for (labels, _) in series {
        for label in labels.iter() {
            symbol_refs.insert(&label.name, 0);
            symbol_refs.insert(&label.value, 0);
        }
    }
    for (position, symbol_ref) in symbol_refs.values_mut().enumerate() {
        *symbol_ref = checked_u32(position, "symbol count")?;
    }
    let mut out = Vec::new();
    out.extend_from_slice(&INDEX_MAGIC.to_be_bytes());
    out.push(INDEX_VERSION_2);

    let symbols_offset = out.len();
    let mut body = Vec::new();
    body.extend_from_slice(&checked_u32(symbol_refs.len(), "symbol count")?.to_be_bytes());
    for symbol in symbol_refs.keys() {
        put_str(&mut body, symbol);
    }
    put_section(&mut out, &body)?;

    let series_offset = out.len();
    let mut postings: BTreeMap<(&str, &str), Vec<u32>> = BTreeMap::new();
    let mut all_ids = Vec::with_capacity(series.len());
    for (labels, chunk_metas) in series {
        pad_to(&mut out, SERIES_ALIGNMENT);
        let id = checked_u32(out.len() / SERIES_ALIGNMENT, "series id")?;
        all_ids.push(id);
        body.clear();
        put_uvarint(&mut body, labels.len() as u64);
        for label in labels.iter() {
            put_uvarint(&mut body, u64::from(symbol_refs[label.name.as_str()]));
            put_uvarint(&mut body, u64::from(symbol_refs[label.value.as_str()]));
            postings.entry((&label.name, &label.value)).or_default().push(id);
        }
        put_uvarint(&mut body, chunk_metas.len() as u64);
        let mut previous: Option<&ChunkMeta> = None;
        for meta in chunk_metas {
            let span_ms = meta.max_time_ms.checked_sub(meta.min_time_ms).filter(|span_ms| *span_ms >= 0);
            let span_ms = span_ms.ok_or_else(|| {
                invalid(format!("chunk of {labels} spans {}..{}", meta.min_time_ms, meta.max_time_ms))
            })?;
            match previous {
                None => {
                    put_varint(&mut body, meta.min_time_ms);
                    put_uvarint(&mut body, span_ms as u64);
                    put_uvarint(&mut body, meta.chunk_ref.0);
                }
                Some(previous) => {
                    let gap_ms = meta
                        .min_time_ms
                        .checked_sub(previous.max_time_ms)
                        .filter(|gap_ms| *gap_ms >= 0)
                        .ok_or_else(|| invalid(format!("chunks of {labels} overlap at {}", meta.min_time_ms)))?;
                    put_uvarint(&mut body, gap_ms as u64);
                    put_uvarint(&mut body, span_ms as u64);
                    put_varint(&mut body, meta.chunk_ref.0.wrapping_sub(previous.chunk_ref.0) as i64);
                }
            }
            previous = Some(meta);
        }
        put_uvarint(&mut out, body.len() as u64);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    }

    let label_indices_offset = out.len();
    let mut names: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (name, value) in postings.keys() {
        names.entry(name).or_default().push(symbol_refs[value]);
    }
    let mut label_index_offsets = Vec::with_capacity(names.len());
    for (name, value_refs) in &names {
        pad_to(&mut out, LIST_ALIGNMENT);
        label_index_offsets.push((*name, out.len()));
        body.clear();
        body.extend_from_slice(&1_u32.to_be_bytes());
        body.extend_from_slice(&checked_u32(value_refs.len(), "label value count")?.to_be_bytes());
        for value_ref in value_refs {
            body.extend_from_slice(&value_ref.to_be_bytes());
        }
        put_section(&mut out, &body)?;
    }

    let postings_offset = out.len();
    let mut postings_offsets = Vec::with_capacity(postings.len() + 1);
    for ((name, value), ids) in std::iter::once((("", ""), &all_ids)).chain(postings.iter().map(|(k, v)| (*k, v))) {
        pad_to(&mut out, LIST_ALIGNMENT);
        postings_offsets.push((name, value, out.len()));
        body.clear();
        body.extend_from_slice(&checked_u32(ids.len(), "postings length")?.to_be_bytes());
        for id in ids {
            body.extend_from_slice(&id.to_be_bytes());
        }
        put_section(&mut out, &body)?;
    }

    let label_index_table_offset = out.len();
    body.clear();
    body.extend_from_slice(&checked_u32(label_index_offsets.len(), "label name count")?.to_be_bytes());
    for (name, offset) in &label_index_offsets {
        put_uvarint(&mut body, 1);
        put_str(&mut body, name);
        put_uvarint(&mut body, *offset as u64);
    }
    put_section(&mut out, &body)?;

    let postings_table_offset = out.len();
    body.clear();
    body.extend_from_slice(&checked_u32(postings_offsets.len(), "postings count")?.to_be_bytes());
    for (name, value, offset) in &postings_offsets {
        put_uvarint(&mut body, 2);
        put_str(&mut body, name);
        put_str(&mut body, value);
        put_uvarint(&mut body, *offset as u64);
    }
    put_section(&mut out, &body)?;

    let toc_start = out.len();
    for offset in [
        symbols_offset,
        series_offset,
        label_indices_offset,
        label_index_table_offset,
        postings_offset,
        postings_table_offset,
    ] {
        out.extend_from_slice(&(offset as u64).to_be_bytes());
    }
    let crc = crc32c::crc32c(&out[toc_start..]);
    out.extend_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// A bounds-checked cursor over part of the index (upstream's `encoding.Decbuf`).
struct Decoder<'a> {
    bytes: &'a [u8],
    position: usize,
    /// Offset of `bytes[0]` in the file, for error messages.
    base_offset: usize,
}

impl<'a> Decoder<'a> {
    fn corruption(&self, reason: impl Into<String>) -> IndexError {
        IndexError::Corruption { offset: (self.base_offset + self.position) as u64, reason: reason.into() }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    fn take(&mut self, size: usize, what: &str) -> Result<&'a [u8], IndexError> {
        if size > self.remaining() {
            return Err(self.corruption(format!("{what} of {size} bytes runs past the end")));
        }
        let slice = &self.bytes[self.position..self.position + size];
        self.position += size;
        Ok(slice)
    }

    fn be_u32(&mut self, what: &str) -> Result<u32, IndexError> {
        let bytes = self.take(4, what)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn uvarint(&mut self, what: &str) -> Result<u64, IndexError> {
        let (value, size) =
            get_uvarint(&self.bytes[self.position..]).ok_or_else(|| self.corruption(format!("bad uvarint {what}")))?;
        self.position += size;
        Ok(value)
    }

    fn varint(&mut self, what: &str) -> Result<i64, IndexError> {
        let raw = self.uvarint(what)?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    fn uvarint_u32(&mut self, what: &str) -> Result<u32, IndexError> {
        let value = self.uvarint(what)?;
        u32::try_from(value).map_err(|_| self.corruption(format!("{what} {value} exceeds u32")))
    }

    fn str(&mut self, what: &str) -> Result<&'a str, IndexError> {
        let size = self.uvarint(what)?;
        let size = usize::try_from(size).map_err(|_| self.corruption(format!("{what} length {size}")))?;
        let start = self.position;
        let bytes = self.take(size, what)?;
        std::str::from_utf8(bytes).map_err(|_| IndexError::Corruption {
            offset: (self.base_offset + start) as u64,
            reason: format!("{what} is not UTF-8"),
        })
    }
}

/// The body of the `len u32 | body | CRC32C` section at `offset`, CRC-checked.
fn section<'a>(bytes: &'a [u8], offset: usize, what: &str) -> Result<Decoder<'a>, IndexError> {
    let corruption = |reason: String| IndexError::Corruption { offset: offset as u64, reason };
    let size_end = offset.checked_add(4).filter(|end| *end <= bytes.len());
    let size_end = size_end.ok_or_else(|| corruption(format!("{what} starts past the end")))?;
    let size = u32::from_be_bytes([bytes[offset], bytes[offset + 1], bytes[offset + 2], bytes[offset + 3]]) as usize;
    let body_end = size_end + size;
    if body_end.checked_add(4).is_none_or(|end| end > bytes.len()) {
        return Err(corruption(format!("{what} of {size} bytes runs past the end")));
    }
    check_crc(bytes, size_end, body_end, offset, what)?;
    Ok(Decoder { bytes: &bytes[size_end..body_end], position: 0, base_offset: size_end })
}

fn check_crc(bytes: &[u8], start: usize, end: usize, offset: usize, what: &str) -> Result<(), IndexError> {
    let stored_crc = u32::from_be_bytes([bytes[end], bytes[end + 1], bytes[end + 2], bytes[end + 3]]);
    let computed_crc = crc32c::crc32c(&bytes[start..end]);
    if stored_crc != computed_crc {
        return Err(IndexError::Corruption {
            offset: offset as u64,
            reason: format!("{what} CRC {stored_crc:#010x}, computed {computed_crc:#010x}"),
        });
    }
    Ok(())
}

/// Values of one label name with the offsets of their postings lists, sorted by value.
pub type LabelValueOffsets = Vec<(String, u64)>;

/// Reads an index file held in memory.
#[derive(Debug)]
pub struct IndexReader {
    bytes: Vec<u8>,
    symbols: Vec<String>,
    /// Label name → its values and their postings offsets; the all-series list is under "".
    postings_table: BTreeMap<String, LabelValueOffsets>,
}

impl IndexReader {
    /// Checks the header, TOC, symbol table and postings table of `bytes`.
    pub fn new(bytes: Vec<u8>) -> Result<Self, IndexError> {
        let corruption = |offset: usize, reason: String| IndexError::Corruption { offset: offset as u64, reason };
        if bytes.len() < HEADER_SIZE + TOC_SIZE {
            return Err(corruption(0, format!("index of {} bytes is too short", bytes.len())));
        }
        let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        if magic != INDEX_MAGIC {
            return Err(corruption(0, format!("bad index magic {magic:#010x}")));
        }
        if bytes[4] != INDEX_VERSION_2 {
            return Err(corruption(4, format!("unsupported index version {}", bytes[4])));
        }
        let toc_start = bytes.len() - TOC_SIZE;
        check_crc(&bytes, toc_start, bytes.len() - 4, toc_start, "TOC")?;
        let mut toc = [0_usize; 6];
        for (index, entry) in toc.iter_mut().enumerate() {
            let start = toc_start + index * 8;
            let mut word = [0_u8; 8];
            word.copy_from_slice(&bytes[start..start + 8]);
            let offset = u64::from_be_bytes(word);
            *entry = usize::try_from(offset)
                .ok()
                .filter(|offset| *offset <= toc_start)
                .ok_or_else(|| corruption(start, format!("TOC offset {offset} outside the index")))?;
        }
        let [symbols_offset, _, _, _, _, postings_table_offset] = toc;

        let mut decoder = section(&bytes, symbols_offset, "symbol table")?;
        let symbol_count = decoder.be_u32("symbol count")? as usize;
        if symbol_count > decoder.remaining() {
            return Err(decoder.corruption(format!("{symbol_count} symbols in {} bytes", decoder.remaining())));
        }
        let mut symbols = Vec::with_capacity(symbol_count);
        for _ in 0..symbol_count {
            symbols.push(decoder.str("symbol")?.to_string());
        }

        let mut decoder = section(&bytes, postings_table_offset, "postings table")?;
        let entry_count = decoder.be_u32("postings table entry count")? as usize;
        let mut postings_table: BTreeMap<String, LabelValueOffsets> = BTreeMap::new();
        for _ in 0..entry_count {
            let key_count = decoder.uvarint("postings key count")?;
            if key_count != 2 {
                return Err(decoder.corruption(format!("postings table key of {key_count} parts")));
            }
            let name = decoder.str("label name")?;
            let value = decoder.str("label value")?;
            let offset = decoder.uvarint("postings offset")?;
            if offset >= toc_start as u64 {
                return Err(decoder.corruption(format!("postings offset {offset} outside the index")));
            }
            postings_table.entry(name.to_string()).or_default().push((value.to_string(), offset));
        }
        for values in postings_table.values_mut() {
            values.sort();
        }
        Ok(IndexReader { bytes, symbols, postings_table })
    }

    /// Sorted symbol table.
    pub fn symbols(&self) -> &[String] {
        &self.symbols
    }

    /// Sorted label names (the all-series key excluded).
    pub fn label_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.postings_table.keys().map(String::as_str).filter(|name| !name.is_empty())
    }

    /// Values of `name` with their postings offsets, sorted (empty for an unknown name).
    pub fn label_values(&self, name: &str) -> &[(String, u64)] {
        if name.is_empty() {
            return &[];
        }
        self.postings_table.get(name).map_or(&[], Vec::as_slice)
    }

    /// Ids of every series, sorted.
    pub fn all_postings(&self) -> Result<Vec<u32>, IndexError> {
        match self.postings_table.get("").and_then(|values| values.iter().find(|(value, _)| value.is_empty())) {
            Some((_, offset)) => self.postings_at(*offset),
            None => Ok(Vec::new()),
        }
    }

    /// Ids of the series with `name="value"`, sorted (empty when no series has it).
    pub fn postings(&self, name: &str, value: &str) -> Result<Vec<u32>, IndexError> {
        let values = self.label_values(name);
        match values.binary_search_by(|(candidate, _)| candidate.as_str().cmp(value)) {
            Ok(position) => self.postings_at(values[position].1),
            Err(_) => Ok(Vec::new()),
        }
    }

    /// The postings list at `offset` (from [`IndexReader::label_values`]), CRC-checked.
    pub fn postings_at(&self, offset: u64) -> Result<Vec<u32>, IndexError> {
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        let mut decoder = section(&self.bytes, offset, "postings list")?;
        let count = decoder.be_u32("postings count")? as usize;
        if count.checked_mul(4) != Some(decoder.remaining()) {
            return Err(decoder.corruption(format!("{count} postings in {} bytes", decoder.remaining())));
        }
        let mut ids = Vec::with_capacity(count);
        for _ in 0..count {
            ids.push(decoder.be_u32("series id")?);
        }
        if ids.windows(2).any(|pair| pair[0] >= pair[1]) {
            return Err(decoder.corruption("postings list not strictly increasing"));
        }
        Ok(ids)
    }

    fn symbol(&self, decoder: &Decoder<'_>, symbol_ref: u32) -> Result<&str, IndexError> {
        self.symbols
            .get(symbol_ref as usize)
            .map(String::as_str)
            .ok_or_else(|| decoder.corruption(format!("symbol reference {symbol_ref} of {}", self.symbols.len())))
    }

    /// Labels and chunk metas of the series with `id`, CRC-checked.
    pub fn series(&self, id: u32) -> Result<(Labels, Vec<ChunkMeta>), IndexError> {
        let offset = id as usize * SERIES_ALIGNMENT;
        let corruption = |reason: String| IndexError::Corruption { offset: offset as u64, reason };
        if offset >= self.bytes.len() {
            return Err(corruption(format!("series {id} starts past the end")));
        }
        let (size, varint_size) =
            get_uvarint(&self.bytes[offset..]).ok_or_else(|| corruption("bad series length".to_string()))?;
        let start = offset + varint_size;
        let end = usize::try_from(size).ok().and_then(|size| start.checked_add(size));
        let end = end
            .filter(|end| end.checked_add(4).is_some_and(|crc_end| crc_end <= self.bytes.len()))
            .ok_or_else(|| corruption(format!("series of {size} bytes runs past the end")))?;
        check_crc(&self.bytes, start, end, offset, "series")?;
        let mut decoder = Decoder { bytes: &self.bytes[start..end], position: 0, base_offset: start };
        let label_count = decoder.uvarint("label count")?;
        if label_count > decoder.remaining() as u64 {
            return Err(decoder.corruption(format!("{label_count} labels in {} bytes", decoder.remaining())));
        }
        let mut labels = Vec::with_capacity(label_count as usize);
        for _ in 0..label_count {
            let name_ref = decoder.uvarint_u32("label name reference")?;
            let value_ref = decoder.uvarint_u32("label value reference")?;
            let name = self.symbol(&decoder, name_ref)?.to_string();
            let value = self.symbol(&decoder, value_ref)?.to_string();
            labels.push(Label { name, value });
        }
        if labels.windows(2).any(|pair| pair[0].name >= pair[1].name) || labels.iter().any(|l| l.value.is_empty()) {
            return Err(corruption("series labels not sorted, repeated or empty".to_string()));
        }
        let chunk_count = decoder.uvarint("chunk count")?;
        if chunk_count > decoder.remaining() as u64 {
            return Err(decoder.corruption(format!("{chunk_count} chunks in {} bytes", decoder.remaining())));
        }
        let mut metas: Vec<ChunkMeta> = Vec::with_capacity(chunk_count as usize);
        for _ in 0..chunk_count {
            let overflow = |decoder: &Decoder<'_>| decoder.corruption("chunk time or reference overflows");
            let meta = match metas.last() {
                None => {
                    let min_time_ms = decoder.varint("chunk min time")?;
                    let span_ms = decoder.uvarint("chunk span")?;
                    let max_time_ms = i64::try_from(span_ms)
                        .ok()
                        .and_then(|span_ms| min_time_ms.checked_add(span_ms))
                        .ok_or_else(|| overflow(&decoder))?;
                    ChunkMeta { min_time_ms, max_time_ms, chunk_ref: BlockChunkRef(decoder.uvarint("chunk ref")?) }
                }
                Some(previous) => {
                    let gap_ms = decoder.uvarint("chunk gap")?;
                    let span_ms = decoder.uvarint("chunk span")?;
                    let delta = decoder.varint("chunk ref delta")?;
                    let min_time_ms = i64::try_from(gap_ms)
                        .ok()
                        .and_then(|gap_ms| previous.max_time_ms.checked_add(gap_ms))
                        .ok_or_else(|| overflow(&decoder))?;
                    let max_time_ms = i64::try_from(span_ms)
                        .ok()
                        .and_then(|span_ms| min_time_ms.checked_add(span_ms))
                        .ok_or_else(|| overflow(&decoder))?;
                    let chunk_ref = BlockChunkRef(previous.chunk_ref.0.wrapping_add(delta as u64));
                    ChunkMeta { min_time_ms, max_time_ms, chunk_ref }
                }
            };
            metas.push(meta);
        }
        Ok((Labels::from_sorted_unchecked(labels), metas))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn meta(min_time_ms: i64, max_time_ms: i64, chunk_ref: u64) -> ChunkMeta {
        ChunkMeta { min_time_ms, max_time_ms, chunk_ref: BlockChunkRef(chunk_ref) }
    }

    fn sample_series() -> Vec<(Labels, Vec<ChunkMeta>)> {
        vec![
            (
                Labels::from_pairs([("__name__", "m_total"), ("a", "x"), ("b", "y")]),
                vec![meta(1_000_000, 2_000_000, 8)],
            ),
            (Labels::from_pairs([("__name__", "m_total"), ("a", "z")]), vec![meta(1_000_000, 1_000_000, 33)]),
        ]
    }

    /// Byte for byte the index promtool 2.42 wrote for the same two series
    /// (`create-blocks-from openmetrics` of `m_total{a="x",b="y"}` at 1000 s and 2000 s and
    /// `m_total{a="z"}` at 1000 s).
    #[test]
    fn index_matches_promtool_bytes() {
        let expected = include_bytes!("testdata/promtool-2.42-index-small");
        let bytes = encode_index(&sample_series()).unwrap();
        assert_eq!(bytes.as_slice(), expected.as_slice());
    }

    /// Re-encoding every series of the index promtool 2.42 wrote for `promtool-compat.om`
    /// (see `chunk/tests.rs`) reproduces its bytes exactly.
    #[test]
    fn reencoding_promtool_index_reproduces_its_bytes() {
        let expected = include_bytes!("testdata/promtool-2.42-block/index");
        let reader = IndexReader::new(expected.to_vec()).unwrap();
        let series =
            reader.all_postings().unwrap().into_iter().map(|id| reader.series(id).unwrap()).collect::<Vec<_>>();
        assert!(series.len() > 1 && series.iter().any(|(_, metas)| metas.len() > 1), "several series and chunks");
        assert_eq!(encode_index(&series).unwrap().as_slice(), expected.as_slice());
    }

    #[test]
    fn index_round_trips_and_resolves_postings() {
        let series = sample_series();
        let reader = IndexReader::new(encode_index(&series).unwrap()).unwrap();
        assert_eq!(reader.symbols(), ["", "__name__", "a", "b", "m_total", "x", "y", "z"]);
        assert_eq!(reader.label_names().collect::<Vec<_>>(), ["__name__", "a", "b"]);
        let values: Vec<&str> = reader.label_values("a").iter().map(|(value, _)| value.as_str()).collect();
        assert_eq!(values, ["x", "z"]);
        let all = reader.all_postings().unwrap();
        assert_eq!(all, [3, 5]);
        assert_eq!(reader.postings("a", "z").unwrap(), [5]);
        assert_eq!(reader.postings("a", "w").unwrap(), Vec::<u32>::new());
        assert_eq!(reader.postings("c", "x").unwrap(), Vec::<u32>::new());
        let decoded: Vec<_> = all.iter().map(|id| reader.series(*id).unwrap()).collect();
        assert_eq!(decoded, series);
    }

    #[test]
    fn writer_rejects_broken_contracts() {
        #[track_caller]
        fn check(series: Vec<(Labels, Vec<ChunkMeta>)>, reason_part: &str) {
            match encode_index(&series) {
                Err(IndexError::InvalidInput { reason }) => assert!(reason.contains(reason_part), "{reason}"),
                other => panic!("expected invalid input {reason_part:?}, got {other:?}"),
            }
        }
        let a = Labels::from_pairs([("__name__", "a")]);
        let b = Labels::from_pairs([("__name__", "b")]);
        check(vec![(b.clone(), vec![]), (a.clone(), vec![])], "not sorted");
        check(vec![(a.clone(), vec![]), (a.clone(), vec![])], "not sorted");
        check(vec![(a.clone(), vec![meta(5, 4, 8)])], "spans");
        check(vec![(a, vec![meta(1, 5, 8), meta(4, 6, 30)])], "overlap");
    }

    #[test]
    fn damaged_headers_are_corruption() {
        #[track_caller]
        fn check(change: impl FnOnce(&mut Vec<u8>), reason_part: &str) {
            let mut bytes = encode_index(&sample_series()).unwrap();
            change(&mut bytes);
            match IndexReader::new(bytes) {
                Err(IndexError::Corruption { reason, .. }) => assert!(reason.contains(reason_part), "{reason}"),
                other => panic!("expected corruption {reason_part:?}, got {other:?}"),
            }
        }
        check(|bytes| bytes[0] = 0, "magic");
        check(|bytes| bytes[4] = 1, "version");
        check(|bytes| bytes.truncate(20), "too short");
        check(|bytes| *bytes.last_mut().unwrap() ^= 1, "TOC CRC");
        check(|bytes| bytes[12] ^= 1, "symbol table CRC");
    }

    fn arbitrary_series() -> impl Strategy<Value = Vec<(Labels, Vec<ChunkMeta>)>> {
        let labels = proptest::collection::btree_map("[a-c_]{1,3}", "[x-z0-9]{1,4}", 1..4).prop_map(Labels::from_pairs);
        let metas = proptest::collection::vec((-1_000_i64..1_000_000, 0_i64..100_000, 0_u64..1 << 40), 0..5);
        proptest::collection::btree_map(labels, metas, 0..20).prop_map(|map| {
            map.into_iter()
                .map(|(labels, raw)| {
                    let mut time_ms = i64::MIN / 4;
                    let metas = raw
                        .into_iter()
                        .map(|(gap_ms, span_ms, chunk_ref)| {
                            let min_time_ms = time_ms + gap_ms.abs();
                            time_ms = min_time_ms + span_ms;
                            meta(min_time_ms, time_ms, chunk_ref)
                        })
                        .collect();
                    (labels, metas)
                })
                .collect()
        })
    }

    fn decode_all(reader: &IndexReader) -> Result<Vec<(Labels, Vec<ChunkMeta>)>, IndexError> {
        reader.all_postings()?.into_iter().map(|id| reader.series(id)).collect()
    }

    proptest! {
        #[test]
        fn random_indexes_round_trip(series in arbitrary_series()) {
            let reader = IndexReader::new(encode_index(&series).unwrap()).unwrap();
            prop_assert_eq!(decode_all(&reader).unwrap(), series.clone());
            for (labels, _) in &series {
                for label in labels.iter() {
                    let ids = reader.postings(&label.name, &label.value).unwrap();
                    prop_assert!(!ids.is_empty());
                    for id in ids {
                        let (found, _) = reader.series(id).unwrap();
                        prop_assert_eq!(found.get(&label.name), Some(label.value.as_str()));
                    }
                }
            }
        }

        #[test]
        fn truncated_or_flipped_indexes_never_panic(series in arbitrary_series(), cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>(), bit in 0_u8..8) {
            let bytes = encode_index(&series).unwrap();
            let truncated = bytes[..cut.index(bytes.len())].to_vec();
            if let Ok(reader) = IndexReader::new(truncated) {
                let _ = decode_all(&reader);
            }
            let mut flipped = bytes.clone();
            let position = flip.index(flipped.len());
            flipped[position] ^= 1 << bit;
            if let Ok(reader) = IndexReader::new(flipped) {
                // A flip the CRCs cover is caught; one in padding or an unread table is harmless.
                if let Ok(decoded) = decode_all(&reader) {
                    prop_assert_eq!(decoded, series);
                }
            }
        }

        #[test]
        fn random_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..400), ids in proptest::collection::vec(any::<u32>(), 0..8)) {
            if bytes.len() > 5 {
                bytes[..4].copy_from_slice(&INDEX_MAGIC.to_be_bytes());
                bytes[4] = INDEX_VERSION_2;
            }
            if let Ok(reader) = IndexReader::new(bytes) {
                let _ = decode_all(&reader);
                for id in ids {
                    let _ = reader.series(id);
                    let _ = reader.postings_at(u64::from(id));
                }
            }
        }
    }
}
