//! Page and fragment framing of WAL segments, exactly as Prometheus 2.42 writes and reads it
//! (tsdb/wlog/wlog.go `WL.log`, `flushPage`; reader.go `Reader.next`), and a resynchronising
//! segment scanner.
//!
//! A segment is a sequence of 32 KiB pages; only the last page of a segment may be partial. A
//! record is cut into fragments, each inside one page:
//! ```text
//! ┌──────────────┬──────────────────┬───────────────────────────┬──────────────────┐
//! │ type: u8     │ length: u16 BE   │ CRC32C of data: u32 BE    │ data: length B   │
//! └──────────────┴──────────────────┴───────────────────────────┴──────────────────┘
//! type = flags (bits 7..3, see `compression`) | kind (bits 2..0):
//!   0 page term (the rest of the page is zeros)   1 full   2 first   3 middle   4 last
//! ```
//! Writer rules (as upstream): a fragment takes as much of the record as fits in the page; when
//! fewer than 7 bytes (a header) remain, the page is padded with zeros; every fragment of a
//! record carries the record's compression flag; a closed segment's last page is zero-padded.
//!
//! Scanner invariants: every byte of a segment ends up either in a returned record or in a
//! [`Loss`]; a fragment is trusted only when its CRC matches. After a bad fragment the scanner
//! resynchronises at the fragment's declared end when a valid fragment (or padding) starts
//! there, else at the next page boundary; fragments that continue a lost record are part of the
//! same loss. Concurrency: pure functions.

use std::borrow::Cow;

use super::compression::{FLAG_LZ4, FLAG_MASK, FLAG_SNAPPY, FLAG_ZSTD};

/// Page size (Prometheus `pageSize`).
pub const PAGE_SIZE: usize = 32 * 1024;
/// Fragment header size (Prometheus `recordHeaderSize`).
pub const FRAGMENT_HEADER_SIZE: usize = 7;
/// Largest fragment data in one page.
pub const FRAGMENT_DATA_SIZE_MAX: usize = PAGE_SIZE - FRAGMENT_HEADER_SIZE;

const KIND_PAGE_TERM: u8 = 0;
const KIND_FULL: u8 = 1;
const KIND_FIRST: u8 = 2;
const KIND_MIDDLE: u8 = 3;
const KIND_LAST: u8 = 4;
const KIND_MASK: u8 = 0b111;

/// Record bytes that fit in a segment of `page_count` pages from byte `position` on (Prometheus'
/// `left` in `WL.log`). `position` is never inside a page's last 6 bytes: the writer pads those.
pub fn space_left(position: u64, page_count: u64) -> u64 {
    let page = PAGE_SIZE as u64;
    let done_page_count = position / page;
    if done_page_count >= page_count {
        return 0;
    }
    let in_page = page - position % page - FRAGMENT_HEADER_SIZE as u64;
    in_page + FRAGMENT_DATA_SIZE_MAX as u64 * (page_count - done_page_count - 1)
}

/// Segment byte position after framing a stored record of `stored_size` bytes at `position`
/// (what [`frame_record`] will do, without the bytes).
pub fn position_after(stored_size: usize, position: u64) -> u64 {
    let mut position = position;
    let mut rest = stored_size;
    loop {
        let room = PAGE_SIZE - (position % PAGE_SIZE as u64) as usize - FRAGMENT_HEADER_SIZE;
        let part = rest.min(room);
        position += (FRAGMENT_HEADER_SIZE + part) as u64;
        let page_offset = (position % PAGE_SIZE as u64) as usize;
        if page_offset != 0 && PAGE_SIZE - page_offset < FRAGMENT_HEADER_SIZE {
            position += (PAGE_SIZE - page_offset) as u64;
        }
        rest -= part;
        if rest == 0 {
            return position;
        }
    }
}

/// Appends the fragments of one stored (possibly compressed) record to `out`, as they land at
/// segment byte `position`, and advances `position`.
pub fn frame_record(stored: &[u8], flags: u8, position: &mut u64, out: &mut Vec<u8>) {
    let mut rest = stored;
    let mut first = true;
    loop {
        let page_offset = (*position % PAGE_SIZE as u64) as usize;
        let room = PAGE_SIZE - page_offset - FRAGMENT_HEADER_SIZE;
        let (part, tail) = rest.split_at(rest.len().min(room));
        let kind = match (first, tail.is_empty()) {
            (true, true) => KIND_FULL,
            (true, false) => KIND_FIRST,
            (false, true) => KIND_LAST,
            (false, false) => KIND_MIDDLE,
        };
        out.push(kind | flags);
        out.extend_from_slice(&(part.len() as u16).to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(part).to_be_bytes());
        out.extend_from_slice(part);
        *position += (FRAGMENT_HEADER_SIZE + part.len()) as u64;
        let page_remaining = PAGE_SIZE - (*position % PAGE_SIZE as u64) as usize;
        if page_remaining < FRAGMENT_HEADER_SIZE {
            pad_page(position, out);
        }
        rest = tail;
        first = false;
        if rest.is_empty() {
            return;
        }
    }
}

/// Appends zeros up to the next page boundary (nothing at a boundary), as upstream's
/// `flushPage(true)` does when a page is full or a segment closes.
pub fn pad_page(position: &mut u64, out: &mut Vec<u8>) {
    let page_offset = (*position % PAGE_SIZE as u64) as usize;
    if page_offset != 0 {
        out.resize(out.len() + PAGE_SIZE - page_offset, 0);
        *position += (PAGE_SIZE - page_offset) as u64;
    }
}

/// A whole record found in a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedRecord<'a> {
    /// Offset of its first fragment.
    pub offset: u64,
    /// Offset just past its last fragment.
    pub end: u64,
    /// Compression flag bits (all its fragments agree).
    pub flags: u8,
    /// Fragment data, concatenated, still compressed.
    pub stored: Cow<'a, [u8]>,
    /// Fragments it was made of.
    pub fragment_count: u64,
}

/// A damaged byte range of a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loss {
    /// First byte lost.
    pub offset: u64,
    /// Bytes lost.
    pub size: u64,
    /// Fragments (or fragment-sized unreadable regions) lost.
    pub fragments_lost_count: u64,
    /// The first problem found in the range.
    pub reason: String,
    /// The range runs to the end of the segment and is an interrupted write, not damage.
    pub torn: bool,
}

/// What a segment holds, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanItem<'a> {
    /// A complete, checksummed record.
    Record(ScannedRecord<'a>),
    /// A damaged range.
    Loss(Loss),
}

struct Pending {
    offset: u64,
    flags: u8,
    stored: Vec<u8>,
    fragment_count: u64,
}

struct Scanner<'a> {
    bytes: &'a [u8],
    items: Vec<ScanItem<'a>>,
    loss: Option<Loss>,
    pending: Option<Pending>,
}

/// A parsed fragment header whose data lies inside the segment and the page.
struct Fragment<'a> {
    kind: u8,
    flags: u8,
    data: &'a [u8],
    crc_ok: bool,
}

enum HeaderProblem {
    /// The segment ends inside the header or the data.
    Torn(String),
    /// The header is unusable; its length cannot be trusted.
    Bad(String),
}

fn parse_fragment(bytes: &[u8], position: usize) -> Result<Fragment<'_>, HeaderProblem> {
    let page_end = (position / PAGE_SIZE + 1) * PAGE_SIZE;
    let Some(header) = bytes.get(position..position + FRAGMENT_HEADER_SIZE) else {
        return Err(HeaderProblem::Torn(format!("torn fragment header: {} bytes left", bytes.len() - position)));
    };
    if position + FRAGMENT_HEADER_SIZE > page_end {
        return Err(HeaderProblem::Bad("fragment header crosses a page boundary".to_string()));
    }
    let length = usize::from(u16::from_be_bytes([header[1], header[2]]));
    let crc = u32::from_be_bytes([header[3], header[4], header[5], header[6]]);
    let data_start = position + FRAGMENT_HEADER_SIZE;
    if data_start + length > page_end {
        return Err(HeaderProblem::Bad(format!("fragment length {length} crosses the page boundary")));
    }
    let Some(data) = bytes.get(data_start..data_start + length) else {
        return Err(HeaderProblem::Torn(format!(
            "torn fragment: length {length}, {} bytes present",
            bytes.len() - data_start
        )));
    };
    Ok(Fragment {
        kind: header[0] & KIND_MASK,
        flags: header[0] & !KIND_MASK,
        data,
        crc_ok: crc32c::crc32c(data) == crc,
    })
}

fn flags_valid(flags: u8) -> bool {
    matches!(flags, 0 | FLAG_SNAPPY | FLAG_ZSTD | FLAG_LZ4) && flags & !FLAG_MASK == 0
}

impl<'a> Scanner<'a> {
    fn lose(&mut self, offset: u64, end: u64, fragments_lost_count: u64, reason: String, torn: bool) {
        if let Some(loss) = &mut self.loss {
            if loss.offset + loss.size == offset {
                loss.size = end - loss.offset;
                loss.fragments_lost_count += fragments_lost_count;
                loss.torn = torn;
                return;
            }
        }
        self.flush_loss();
        self.loss = Some(Loss { offset, size: end - offset, fragments_lost_count, reason, torn });
    }

    fn flush_loss(&mut self) {
        if let Some(loss) = self.loss.take() {
            self.items.push(ScanItem::Loss(loss));
        }
    }

    fn emit(&mut self, record: ScannedRecord<'a>) {
        self.flush_loss();
        self.items.push(ScanItem::Record(record));
    }

    /// Loses the pending record (if any) together with `offset..end`.
    fn lose_with_pending(&mut self, offset: u64, end: u64, fragments: u64, reason: String, torn: bool) {
        match self.pending.take() {
            Some(pending) => self.lose(pending.offset, end, pending.fragment_count + fragments, reason, torn),
            None => self.lose(offset, end, fragments, reason, torn),
        }
    }

    /// Whether a scan may resume at `position` after a fragment whose CRC failed: the page ends
    /// there, or padding or a checksummed fragment starts there.
    fn resumable_at(&self, position: usize) -> bool {
        if position.is_multiple_of(PAGE_SIZE) || position >= self.bytes.len() {
            return true;
        }
        if self.bytes[position] == KIND_PAGE_TERM {
            let page_end = ((position / PAGE_SIZE + 1) * PAGE_SIZE).min(self.bytes.len());
            return self.bytes[position..page_end].iter().all(|&byte| byte == 0);
        }
        match parse_fragment(self.bytes, position) {
            Ok(fragment) => {
                fragment.crc_ok && (KIND_FULL..=KIND_LAST).contains(&fragment.kind) && flags_valid(fragment.flags)
            }
            Err(_) => false,
        }
    }

    fn scan(mut self) -> Vec<ScanItem<'a>> {
        let length = self.bytes.len();
        let mut position = 0_usize;
        while position < length {
            let page_end = (position / PAGE_SIZE + 1) * PAGE_SIZE;
            let offset = position as u64;
            if self.bytes[position] == KIND_PAGE_TERM {
                let end = page_end.min(length);
                if self.bytes[position..end].iter().any(|&byte| byte != 0) {
                    let reason = format!("non-zero byte in page padding starting at {position}");
                    self.lose_with_pending(offset, end as u64, 1, reason, false);
                } else if end < page_end {
                    // Padding cut short by the end of the file: a torn write of a closing page.
                    let reason = "torn page padding at the end of the segment".to_string();
                    self.lose_with_pending(offset, end as u64, 0, reason, true);
                } else if let Some(loss) = self.loss.as_mut().filter(|loss| loss.offset + loss.size == offset) {
                    // Padding right after a loss joins it, so that the lost record's fragments on
                    // the next page are reported as the same loss.
                    loss.size = end as u64 - loss.offset;
                }
                position = end;
                continue;
            }
            let fragment = match parse_fragment(self.bytes, position) {
                Ok(fragment) => fragment,
                Err(HeaderProblem::Torn(reason)) => {
                    self.lose_with_pending(offset, length as u64, 1, reason, true);
                    position = length;
                    continue;
                }
                Err(HeaderProblem::Bad(reason)) => {
                    let end = page_end.min(length);
                    self.lose_with_pending(offset, end as u64, 1, reason, false);
                    position = end;
                    continue;
                }
            };
            let end = position + FRAGMENT_HEADER_SIZE + fragment.data.len();
            if !fragment.crc_ok {
                let resume = if self.resumable_at(end) { end } else { page_end.min(length) };
                self.lose_with_pending(offset, resume as u64, 1, "fragment checksum mismatch".to_string(), false);
                position = resume;
                continue;
            }
            position = end;
            let end = end as u64;
            if !(KIND_FULL..=KIND_LAST).contains(&fragment.kind) || !flags_valid(fragment.flags) {
                let reason = format!("invalid fragment type {:#04x}", fragment.kind | fragment.flags);
                self.lose_with_pending(offset, end, 1, reason, false);
                continue;
            }
            match fragment.kind {
                KIND_FULL | KIND_FIRST => {
                    if let Some(pending) = self.pending.take() {
                        let reason = "record interrupted by the start of another".to_string();
                        self.lose(pending.offset, offset, pending.fragment_count, reason, false);
                    }
                    if fragment.kind == KIND_FULL {
                        let stored = Cow::Borrowed(fragment.data);
                        self.emit(ScannedRecord { offset, end, flags: fragment.flags, stored, fragment_count: 1 });
                    } else {
                        let stored = fragment.data.to_vec();
                        self.pending = Some(Pending { offset, flags: fragment.flags, stored, fragment_count: 1 });
                    }
                }
                _ => match self.pending.take() {
                    None => {
                        let reason = "middle or last fragment without a first".to_string();
                        self.lose(offset, end, 1, reason, false);
                    }
                    Some(pending) if pending.flags != fragment.flags => {
                        let reason = "compression flags change within a record".to_string();
                        self.lose(pending.offset, end, pending.fragment_count + 1, reason, false);
                    }
                    Some(mut pending) => {
                        pending.stored.extend_from_slice(fragment.data);
                        pending.fragment_count += 1;
                        if fragment.kind == KIND_LAST {
                            self.emit(ScannedRecord {
                                offset: pending.offset,
                                end,
                                flags: pending.flags,
                                stored: Cow::Owned(pending.stored),
                                fragment_count: pending.fragment_count,
                            });
                        } else {
                            self.pending = Some(pending);
                        }
                    }
                },
            }
        }
        if let Some(pending) = self.pending.take() {
            let reason = "torn record: the segment ends before its last fragment".to_string();
            self.lose(pending.offset, length as u64, pending.fragment_count, reason, true);
        }
        self.flush_loss();
        self.items
    }
}

/// Splits a segment into records and damaged ranges, in order.
pub fn scan_segment(bytes: &[u8]) -> Vec<ScanItem<'_>> {
    Scanner { bytes, items: Vec::new(), loss: None, pending: None }.scan()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame_all(records: &[Vec<u8>], flags: u8) -> Vec<u8> {
        let mut out = Vec::new();
        let mut position = 0;
        for record in records {
            let expected = position_after(record.len(), position);
            frame_record(record, flags, &mut position, &mut out);
            assert_eq!(position, out.len() as u64);
            assert_eq!(position, expected);
        }
        out
    }

    fn records_of(items: &[ScanItem<'_>]) -> Vec<Vec<u8>> {
        items
            .iter()
            .filter_map(|item| match item {
                ScanItem::Record(record) => Some(record.stored.to_vec()),
                ScanItem::Loss(_) => None,
            })
            .collect()
    }

    #[track_caller]
    fn check_space_left(position: u64, page_count: u64, expected: u64) {
        assert_eq!(space_left(position, page_count), expected, "position {position}, {page_count} pages");
    }

    #[test]
    fn space_left_matches_upstream() {
        let data = FRAGMENT_DATA_SIZE_MAX as u64;
        check_space_left(0, 1, data);
        check_space_left(0, 4, 4 * data);
        check_space_left(100, 2, data - 100 + data);
        check_space_left(PAGE_SIZE as u64, 2, data);
        check_space_left(2 * PAGE_SIZE as u64, 2, 0);
    }

    #[test]
    fn fragments_follow_upstream_layout() {
        // A record of exactly one page of data fills the page: first fragment, then a last one.
        let record = vec![7_u8; FRAGMENT_DATA_SIZE_MAX + 10];
        let bytes = frame_all(std::slice::from_ref(&record), FLAG_SNAPPY);
        assert_eq!(bytes[0], KIND_FIRST | FLAG_SNAPPY);
        assert_eq!(u16::from_be_bytes([bytes[1], bytes[2]]) as usize, FRAGMENT_DATA_SIZE_MAX);
        assert_eq!(bytes[PAGE_SIZE], KIND_LAST | FLAG_SNAPPY);
        assert_eq!(bytes.len(), PAGE_SIZE + FRAGMENT_HEADER_SIZE + 10);
        // A fragment leaving fewer than 7 bytes pads the page with zeros.
        let record = vec![1_u8; FRAGMENT_DATA_SIZE_MAX - 3];
        let bytes = frame_all(&[record.clone(), vec![2]], 0);
        assert_eq!(&bytes[PAGE_SIZE - 3..PAGE_SIZE], &[0, 0, 0]);
        assert_eq!(bytes[PAGE_SIZE], KIND_FULL);
        let items = scan_segment(&bytes);
        assert_eq!(records_of(&items), vec![record, vec![2]]);
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn empty_records_and_full_padding_round_trip() {
        let records = vec![vec![], vec![1, 2, 3], vec![]];
        let mut bytes = frame_all(&records, 0);
        let mut position = bytes.len() as u64;
        pad_page(&mut position, &mut bytes);
        assert_eq!(bytes.len(), PAGE_SIZE);
        let items = scan_segment(&bytes);
        assert_eq!(records_of(&items), records);
        assert_eq!(items.len(), 3);
    }

    proptest! {
        #[test]
        fn frames_round_trip(sizes in proptest::collection::vec(0_usize..(3 * PAGE_SIZE), 0..8), flag_index in 0_usize..4) {
            let flags = [0, FLAG_SNAPPY, FLAG_ZSTD, FLAG_LZ4][flag_index];
            let records: Vec<Vec<u8>> =
                sizes.iter().enumerate().map(|(index, size)| vec![index as u8 + 1; *size]).collect();
            let bytes = frame_all(&records, flags);
            let items = scan_segment(&bytes);
            prop_assert_eq!(items.len(), records.len());
            for item in &items {
                let is_record_with_flags = matches!(item, ScanItem::Record(record) if record.flags == flags);
                prop_assert!(is_record_with_flags);
            }
            prop_assert_eq!(records_of(&items), records);
        }

        #[test]
        fn garbage_never_panics_and_items_are_ordered(bytes in proptest::collection::vec(any::<u8>(), 0..(PAGE_SIZE + 100))) {
            let items = scan_segment(&bytes);
            let mut position = 0;
            for item in &items {
                let (offset, end) = match item {
                    ScanItem::Record(record) => (record.offset, record.end),
                    ScanItem::Loss(loss) => (loss.offset, loss.offset + loss.size),
                };
                prop_assert!(offset >= position && end <= bytes.len() as u64);
                position = end;
            }
        }
    }
}
