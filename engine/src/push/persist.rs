//! The push store on disk: one file, `<data dir>/pushgateway/groups`, rewritten whole after
//! every change through [`crate::io::FileSystem`] (temporary file, sync, rename, directory
//! sync), so a crash leaves the old or the new store, never a mix.
//!
//! ```text
//! file    := magic "EPGS" | version u8 (1) | payload_size u64 | payload | crc32c(payload) u32
//! payload := group_count u32 | group*
//! group   := pairs | push_time_ms i64 | push_failure_time_ms i64 | family_count u32 | family*
//! family  := str name | type u8 | has_help u8 | [str help] | metric_count u32 | metric*
//! metric  := pairs | value
//! value   := type counter, gauge, untyped: f64
//!          | histogram: bucket_count u32 | (f64 upper_bound, u64 count)* | f64 sum | u64 count
//!          | summary:   quantile_count u32 | (f64 quantile, f64 value)* | f64 sum | u64 count
//! pairs   := pair_count u32 | (str name, str value)*
//! str     := size u32 | UTF-8 bytes
//! ```
//!
//! Integers little-endian, f64 as its IEEE bits. type: 0 counter, 1 gauge, 2 histogram,
//! 3 summary, 4 untyped. Decoding checks every size against the bytes left, so a corrupt file
//! is an error, never a panic or a huge allocation. Pure functions; the gateway does the I/O.

use std::collections::BTreeMap;

use super::store::{Family, Group, LabelPairs, Metric, Value};
use crate::scrape::parse::MetricType;

const MAGIC: &[u8; 4] = b"EPGS";
const VERSION: u8 = 1;
const HEADER_SIZE: usize = 4 + 1 + 8;

/// Why a store file does not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Wrong magic or version.
    #[error("not a push store file of version {VERSION}")]
    Header,
    /// The payload's checksum does not match.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// In the file.
        stored: u32,
        /// Over the payload.
        computed: u32,
    },
    /// The payload ends early or holds an impossible value.
    #[error("corrupt payload at byte {offset}: {what}")]
    Corrupt {
        /// Offset in the payload.
        offset: usize,
        /// What was wrong.
        what: &'static str,
    },
}

/// The file's bytes for `groups`.
pub fn encode<'a>(groups: impl Iterator<Item = &'a Group>) -> Vec<u8> {
    let groups: Vec<&Group> = groups.collect();
    let mut payload = Vec::new();
    put_u32(&mut payload, groups.len());
    for group in groups {
        put_pairs(&mut payload, &group.labels);
        payload.extend_from_slice(&group.push_time_ms.to_le_bytes());
        payload.extend_from_slice(&group.push_failure_time_ms.to_le_bytes());
        put_u32(&mut payload, group.families.len());
        for family in group.families.values() {
            put_str(&mut payload, &family.name);
            payload.push(type_code(family.metric_type));
            match &family.help {
                Some(help) => {
                    payload.push(1);
                    put_str(&mut payload, help);
                }
                None => payload.push(0),
            }
            put_u32(&mut payload, family.metrics.len());
            for metric in &family.metrics {
                put_pairs(&mut payload, &metric.labels);
                match &metric.value {
                    Value::Scalar(value) => put_f64(&mut payload, *value),
                    Value::Histogram { buckets, sum, count } => {
                        put_u32(&mut payload, buckets.len());
                        for (bound, bucket_count) in buckets {
                            put_f64(&mut payload, *bound);
                            payload.extend_from_slice(&bucket_count.to_le_bytes());
                        }
                        put_f64(&mut payload, *sum);
                        payload.extend_from_slice(&count.to_le_bytes());
                    }
                    Value::Summary { quantiles, sum, count } => {
                        put_u32(&mut payload, quantiles.len());
                        for (quantile, value) in quantiles {
                            put_f64(&mut payload, *quantile);
                            put_f64(&mut payload, *value);
                        }
                        put_f64(&mut payload, *sum);
                        payload.extend_from_slice(&count.to_le_bytes());
                    }
                }
            }
        }
    }
    let mut file = Vec::with_capacity(HEADER_SIZE + payload.len() + 4);
    file.extend_from_slice(MAGIC);
    file.push(VERSION);
    file.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    file.extend_from_slice(&payload);
    file.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    file
}

/// The groups in a file's bytes.
pub fn decode(bytes: &[u8]) -> Result<Vec<Group>, DecodeError> {
    if bytes.len() < HEADER_SIZE + 4 || &bytes[..4] != MAGIC || bytes[4] != VERSION {
        return Err(DecodeError::Header);
    }
    let payload_size = u64::from_le_bytes(bytes[5..13].try_into().map_err(|_| DecodeError::Header)?);
    if payload_size != (bytes.len() - HEADER_SIZE - 4) as u64 {
        return Err(DecodeError::Corrupt { offset: 0, what: "payload size does not match the file size" });
    }
    let payload = &bytes[HEADER_SIZE..bytes.len() - 4];
    let stored = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().map_err(|_| DecodeError::Header)?);
    let computed = crc32c::crc32c(payload);
    if stored != computed {
        return Err(DecodeError::Checksum { stored, computed });
    }
    let mut reader = Reader { bytes: payload, offset: 0 };
    let group_count = reader.count(8)?;
    let mut groups = Vec::with_capacity(group_count);
    for _ in 0..group_count {
        let labels = reader.pairs()?;
        let push_time_ms = reader.u64()? as i64;
        let push_failure_time_ms = reader.u64()? as i64;
        let family_count = reader.count(6)?;
        let mut families = BTreeMap::new();
        for _ in 0..family_count {
            let name = reader.str()?;
            let metric_type = match reader.u8()? {
                0 => MetricType::Counter,
                1 => MetricType::Gauge,
                2 => MetricType::Histogram,
                3 => MetricType::Summary,
                4 => MetricType::Untyped,
                _ => return Err(reader.corrupt("unknown metric type")),
            };
            let help = match reader.u8()? {
                0 => None,
                1 => Some(reader.str()?),
                _ => return Err(reader.corrupt("bad help flag")),
            };
            let metric_count = reader.count(4)?;
            let mut metrics = Vec::with_capacity(metric_count);
            for _ in 0..metric_count {
                let labels = reader.pairs()?;
                let value = match metric_type {
                    MetricType::Histogram => {
                        let bucket_count = reader.count(16)?;
                        let mut buckets = Vec::with_capacity(bucket_count);
                        for _ in 0..bucket_count {
                            buckets.push((reader.f64()?, reader.u64()?));
                        }
                        Value::Histogram { buckets, sum: reader.f64()?, count: reader.u64()? }
                    }
                    MetricType::Summary => {
                        let quantile_count = reader.count(16)?;
                        let mut quantiles = Vec::with_capacity(quantile_count);
                        for _ in 0..quantile_count {
                            quantiles.push((reader.f64()?, reader.f64()?));
                        }
                        Value::Summary { quantiles, sum: reader.f64()?, count: reader.u64()? }
                    }
                    _ => Value::Scalar(reader.f64()?),
                };
                metrics.push(Metric { labels, value });
            }
            if families.insert(name.clone(), Family { name, help, metric_type, metrics }).is_some() {
                return Err(reader.corrupt("family named twice in a group"));
            }
        }
        groups.push(Group { labels, families, push_time_ms, push_failure_time_ms });
    }
    if reader.offset != payload.len() {
        return Err(reader.corrupt("bytes after the last group"));
    }
    Ok(groups)
}

fn type_code(metric_type: MetricType) -> u8 {
    match metric_type {
        MetricType::Counter => 0,
        MetricType::Gauge => 1,
        MetricType::Histogram => 2,
        MetricType::Summary => 3,
        MetricType::Untyped => 4,
    }
}

fn put_u32(out: &mut Vec<u8>, value: usize) {
    // The store's bounds keep every count far below 2^32.
    let value = u32::try_from(value).unwrap_or(u32::MAX);
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_f64(out: &mut Vec<u8>, value: f64) {
    out.extend_from_slice(&value.to_bits().to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    put_u32(out, text.len());
    out.extend_from_slice(text.as_bytes());
}

fn put_pairs(out: &mut Vec<u8>, pairs: &LabelPairs) {
    put_u32(out, pairs.len());
    for (name, value) in pairs {
        put_str(out, name);
        put_str(out, value);
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl Reader<'_> {
    fn corrupt(&self, what: &'static str) -> DecodeError {
        DecodeError::Corrupt { offset: self.offset, what }
    }

    fn take(&mut self, size: usize) -> Result<&[u8], DecodeError> {
        let end = self.offset.checked_add(size).filter(|end| *end <= self.bytes.len());
        let end = end.ok_or_else(|| self.corrupt("ends early"))?;
        let slice = &self.bytes[self.offset..end];
        self.offset = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let bytes = self.take(8)?;
        let mut array = [0u8; 8];
        array.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(array))
    }

    fn f64(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_bits(self.u64()?))
    }

    /// A count of items of at least `item_size_min` bytes each: more than the bytes left can
    /// hold is corruption, so no count allocates beyond the file's size.
    fn count(&mut self, item_size_min: usize) -> Result<usize, DecodeError> {
        let count = self.u32()? as usize;
        if count.saturating_mul(item_size_min) > self.bytes.len() - self.offset {
            return Err(self.corrupt("count larger than the bytes left"));
        }
        Ok(count)
    }

    fn str(&mut self) -> Result<String, DecodeError> {
        let size = self.u32()? as usize;
        let bytes = self.take(size)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.corrupt("string is not UTF-8"))
    }

    fn pairs(&mut self) -> Result<LabelPairs, DecodeError> {
        let count = self.count(8)?;
        let mut pairs = Vec::with_capacity(count);
        for _ in 0..count {
            pairs.push((self.str()?, self.str()?));
        }
        if !pairs.windows(2).all(|pair| pair[0].0 < pair[1].0) {
            return Err(self.corrupt("label names not sorted and distinct"));
        }
        Ok(pairs)
    }
}
