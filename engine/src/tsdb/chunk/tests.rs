//! Tests of the XOR chunk: bucket-boundary corpus, round-trip proptests, the lazy iterator, the
//! frozen form, and compatibility with chunks Prometheus (promtool 2.42) wrote.

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
fn check_same_samples(got: &[(i64, f64)], want: &[(i64, f64)]) {
    assert_eq!(got.len(), want.len(), "sample count");
    for (index, ((got_t, got_v), (want_t, want_v))) in got.iter().zip(want).enumerate() {
        assert_eq!(got_t, want_t, "timestamp of sample {index}");
        assert_eq!(got_v.to_bits(), want_v.to_bits(), "value of sample {index} at {want_t}");
    }
}

#[track_caller]
fn check_round_trip(samples: &[(i64, f64)]) {
    let chunk = encode(samples);
    check_same_samples(&chunk.samples().unwrap(), samples);
    let lazily: Vec<(i64, f64)> = chunk.iter().map(Result::unwrap).collect();
    check_same_samples(&lazily, samples);
}

/// Bits, most significant first, packed into zero-padded bytes.
fn pack(bits: &[bool]) -> Vec<u8> {
    bits.chunks(8)
        .map(|byte| byte.iter().enumerate().fold(0_u8, |acc, (index, bit)| acc | (u8::from(*bit) << (7 - index))))
        .collect()
}

fn push_bits(bits: &mut Vec<bool>, value: u64, bit_count: u32) {
    for shift in (0..bit_count).rev() {
        bits.push((value >> shift) & 1 == 1);
    }
}

/// The first delta of the corpus chunks: large enough that every negative dod keeps time moving.
const CORPUS_FIRST_DELTA_MS: i64 = 1 << 21;

/// Encodes (0, 0.0), (2^21, 0.0), (2^21 + 2^21 + dod, 0.0) and checks the exact bits: the dod
/// must land in `expected_prefix` (`"0"`, `"10"`, `"110"`, `"1110"`, `"1111"`) with its low
/// `n` bits, and decode back to the same timestamps.
#[track_caller]
fn check_delta_of_delta(delta_of_delta: i64, expected_prefix: &str) {
    let samples = [(0, 0.0), (CORPUS_FIRST_DELTA_MS, 0.0), (2 * CORPUS_FIRST_DELTA_MS + delta_of_delta, 0.0)];
    let mut bits = Vec::new();
    push_bits(&mut bits, 3, 16); // Sample count.
    push_bits(&mut bits, 0, 8); // Varint 0.
    push_bits(&mut bits, 0, 64); // 0.0.
    for byte in [0x80, 0x80, 0x80, 0x01] {
        push_bits(&mut bits, byte, 8); // Uvarint 2^21.
    }
    bits.push(false); // Same value.
    bits.extend(expected_prefix.chars().map(|bit| bit == '1'));
    let field_bit_count = match expected_prefix {
        "0" => 0,
        "10" => 14,
        "110" => 17,
        "1110" => 20,
        "1111" => 64,
        other => panic!("bad prefix {other}"),
    };
    push_bits(&mut bits, delta_of_delta as u64, field_bit_count);
    bits.push(false); // Same value.
    let chunk = encode(&samples);
    assert_eq!(chunk.bytes(), pack(&bits), "encoding of dod {delta_of_delta}");
    check_same_samples(&decode(&pack(&bits)).unwrap(), &samples);
}

#[test]
fn delta_of_delta_bucket_boundaries() {
    // Each n-bit bucket holds -(2^(n-1) - 1) ..= 2^(n-1) (upstream's bitRange).
    let table: &[(i64, &str)] = &[
        (0, "0"),
        (1, "10"),
        (-1, "10"),
        (-(1 << 13) + 1, "10"),
        (1 << 13, "10"),
        ((1 << 13) + 1, "110"),
        (-(1 << 13), "110"),
        (-(1 << 16) + 1, "110"),
        (1 << 16, "110"),
        ((1 << 16) + 1, "1110"),
        (-(1 << 16), "1110"),
        (-(1 << 19) + 1, "1110"),
        (1 << 19, "1110"),
        ((1 << 19) + 1, "1111"),
        (-(1 << 19), "1111"),
        (1 << 40, "1111"),
        (-CORPUS_FIRST_DELTA_MS + 1, "1111"),
    ];
    for (delta_of_delta, prefix) in table {
        check_delta_of_delta(*delta_of_delta, prefix);
    }
}

#[test]
fn delta_of_delta_at_positive_bucket_edge_decodes() {
    // Regression: dod +8192 was decoded as -8192, shifting every later timestamp.
    check_round_trip(&[(0, 1.0), (15_000, 1.0), (38_192, 1.0), (53_192, 1.0)]);
    check_round_trip(&[(0, 1.0), (15_000, 2.0), (95_536, 3.0), (176_072, 4.0)]);
    check_round_trip(&[(0, 1.0), (15_000, 2.0), (554_288, 3.0), (1_093_576, 4.0)]);
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
    // Upstream's writeByte leaves an empty byte after the first sample's 64 value bits.
    assert_eq!(encode(&[(1, 1.0)]).bytes(), &[0, 1, 2, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn truncated_chunk_is_an_error() {
    let chunk = encode(&[(1, 1.0), (2, 2.5), (4, 7.0)]);
    let bytes = chunk.bytes();
    assert_eq!(decode(&bytes[..bytes.len() - 2]), Err(ChunkError::Truncated { decoded_count: 2, expected_count: 3 }));
    assert_eq!(decode(&[]), Err(ChunkError::Truncated { decoded_count: 0, expected_count: 0 }));
    assert_eq!(decode(&[0, 0]), Ok(Vec::new()));
}

#[test]
fn iterator_stops_after_an_error_and_seeks() {
    let samples: Vec<(i64, f64)> = (0..50).map(|index| (index * 1000, index as f64)).collect();
    let chunk = encode(&samples);
    let bytes = chunk.bytes();
    let mut iterator = iter_bytes(&bytes[..bytes.len() / 2]);
    assert_eq!(iterator.sample_count(), 50);
    let mut ok_count = 0;
    let mut error = None;
    for item in iterator.by_ref() {
        match item {
            Ok(_) => ok_count += 1,
            Err(err) => error = Some(err),
        }
    }
    assert_eq!(error, Some(ChunkError::Truncated { decoded_count: ok_count, expected_count: 50 }));
    assert!(iterator.next().is_none());

    let mut iterator = chunk.iter();
    assert_eq!(iterator.seek(20_500), Some(Ok((21_000, 21.0))));
    assert_eq!(iterator.next(), Some(Ok((22_000, 22.0))));
    assert_eq!(iterator.seek(22_000), Some(Ok((23_000, 23.0))), "seek never goes back");
    assert_eq!(iterator.seek(1_000_000), None);
    assert_eq!(iterator.size_hint(), (0, Some(0)));
}

#[test]
fn reopened_chunk_appends_as_from_scratch() {
    let samples = [(0, 1.0), (10, 1.0), (20, 2.0), (35, 2.5)];
    let mut reopened = XorChunk::from_bytes(encode(&samples[..2]).bytes()).unwrap();
    reopened.append(20, 2.0);
    reopened.append(35, 2.5);
    assert_eq!(reopened.bytes(), encode(&samples).bytes());
    assert_eq!((reopened.min_time_ms(), reopened.max_time_ms(), reopened.sample_count()), (0, 35, 4));

    assert!(matches!(XorChunk::from_bytes(&[0, 1]), Err(ChunkError::Truncated { .. })));
    // A hostile stream whose dod runs time backwards decodes, but reopening it refuses.
    let mut bits = Vec::new();
    push_bits(&mut bits, 3, 16);
    push_bits(&mut bits, 0, 8);
    push_bits(&mut bits, 0, 64);
    push_bits(&mut bits, 10, 8);
    bits.push(false);
    bits.extend([true, false]);
    push_bits(&mut bits, -20_i64 as u64, 14);
    bits.push(false);
    let backwards = pack(&bits);
    check_same_samples(&decode(&backwards).unwrap(), &[(0, 0.0), (10, 0.0), (0, 0.0)]);
    assert_eq!(
        XorChunk::from_bytes(&backwards).unwrap_err(),
        ChunkError::OutOfOrder { sample_index: 2, timestamp_ms: 0, previous_timestamp_ms: 10 }
    );
}

#[test]
fn frozen_chunk_is_its_bytes_plus_32_bytes() {
    assert_eq!(std::mem::size_of::<FrozenChunk>(), 32);
    let samples: Vec<(i64, f64)> = (0..120).map(|index| (5_000 + index * 15_000, (index % 7) as f64)).collect();
    let chunk = encode(&samples);
    let bytes = chunk.bytes().to_vec();
    let frozen = chunk.freeze();
    assert_eq!(frozen.bytes(), &bytes[..]);
    assert_eq!((frozen.min_time_ms(), frozen.max_time_ms(), frozen.sample_count()), (5_000, 5_000 + 119 * 15_000, 120));
    let lazily: Vec<(i64, f64)> = frozen.iter().map(Result::unwrap).collect();
    check_same_samples(&lazily, &samples);
    assert_eq!(FrozenChunk::from_bytes(bytes.clone().into_boxed_slice()), Ok(frozen.clone()));
    assert!(FrozenChunk::from_bytes(bytes[..bytes.len() - 3].into()).is_err());
    let mut thawed = frozen.thaw();
    thawed.append(10_000_000, 1.5);
    assert_eq!(thawed.sample_count(), 121);
    let mut shrunk = encode(&samples);
    shrunk.shrink_to_fit();
    assert_eq!(shrunk.bytes(), &bytes[..]);
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
    fn scrape_like_series_round_trip(
        interval_ms in 1_i64..100_000,
        steps in proptest::collection::vec((-1_000_i64..1_000, 0_u8..4, any::<u32>()), 0..300),
    ) {
        // Jittered intervals (dods near every bucket edge) and counter/gauge-like values.
        let mut timestamp_ms = 1_700_000_000_000_i64;
        let mut value = 0.0_f64;
        let mut samples = Vec::new();
        for (jitter_ms, kind, random) in steps {
            timestamp_ms += (interval_ms + jitter_ms * (1 << (random % 11))).max(1);
            value = match kind {
                0 => value,
                1 => value + f64::from(random % 100),
                2 => f64::from(random) / 7.0,
                _ => f64::from_bits(u64::from(random) << 32 | u64::from(random)),
            };
            samples.push((timestamp_ms, value));
        }
        check_round_trip(&samples);
    }

    #[test]
    fn reopening_anywhere_keeps_every_sample(
        steps in proptest::collection::vec((1_i64..100_000, any::<u64>(), any::<bool>()), 1..150),
        split_index in 0_usize..150,
    ) {
        let mut timestamp_ms = 0;
        let mut samples = Vec::new();
        for (step_ms, value_bits, repeat) in steps {
            timestamp_ms += step_ms;
            let value = match (repeat, samples.last()) {
                (true, Some((_, previous))) => *previous,
                _ => f64::from_bits(value_bits),
            };
            samples.push((timestamp_ms, value));
        }
        let split_index = split_index.min(samples.len());
        let mut chunk = XorChunk::from_bytes(encode(&samples[..split_index]).bytes()).unwrap();
        for (timestamp_ms, value) in &samples[split_index..] {
            chunk.append(*timestamp_ms, *value);
        }
        check_same_samples(&chunk.samples().unwrap(), &samples);
        let from_scratch = encode(&samples);
        prop_assert_eq!(chunk.bytes(), from_scratch.bytes());
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode(&bytes);
        let _ = XorChunk::from_bytes(&bytes).map(|mut chunk| {
            let next_ms = chunk.max_time_ms().saturating_add(1);
            if chunk.sample_count() < usize::from(u16::MAX) && next_ms > chunk.max_time_ms() {
                chunk.append(next_ms, 1.0);
            }
        });
    }
}

/// Go's `math.NaN()` (strconv.ParseFloat's NaN): 0x7FF8000000000001.
const GO_NAN_BITS: u64 = 0x7ff8_0000_0000_0001;

/// Parses the compatibility input: `chunk_compat{series="NAME"} VALUE SECONDS.MILLIS` lines,
/// in file order (which is label order), timestamps converted as Prometheus' OpenMetrics parser
/// does (`int64(seconds * 1000)`).
fn parse_openmetrics(text: &str) -> Vec<(String, i64, f64)> {
    let mut samples = Vec::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let mut fields = line.split(' ');
        let (Some(series), Some(value), Some(seconds)) = (fields.next(), fields.next(), fields.next()) else {
            panic!("bad line {line:?}");
        };
        let value = if value == "NaN" { f64::from_bits(GO_NAN_BITS) } else { value.parse().unwrap() };
        let seconds: f64 = seconds.parse().unwrap();
        samples.push((series.to_string(), (seconds * 1000.0) as i64, value));
    }
    samples
}

/// Chunks of a block's chunk segment file (tsdb/docs/format/chunks.md): magic 0x85BD40DD,
/// version 1, 3 bytes padding, then `len uvarint | encoding u8 | data | CRC32C(encoding, data) BE`.
fn parse_segment(bytes: &[u8]) -> Vec<(u8, &[u8])> {
    assert_eq!(&bytes[..8], &[0x85, 0xbd, 0x40, 0xdd, 1, 0, 0, 0]);
    let mut chunks = Vec::new();
    let mut offset = 8;
    while offset < bytes.len() {
        let (mut length, mut shift) = (0_usize, 0);
        loop {
            let byte = bytes[offset];
            offset += 1;
            length |= usize::from(byte & 0x7f) << shift;
            shift += 7;
            if byte < 0x80 {
                break;
            }
        }
        let encoding = bytes[offset];
        let data = &bytes[offset + 1..offset + 1 + length];
        let crc_offset = offset + 1 + length;
        let crc = u32::from_be_bytes(bytes[crc_offset..crc_offset + 4].try_into().unwrap());
        assert_eq!(crc, crc32c::crc32c(&bytes[offset..crc_offset]), "crc of chunk at {offset}");
        chunks.push((encoding, data));
        offset = crc_offset + 4;
    }
    chunks
}

/// Prometheus' own chunks. Input `testdata/promtool-compat.om` (written by
/// `testdata/promtool-compat-gen.py`: regular and jittered intervals, constant, integer,
/// random, NaN and ±Inf values, every dod bucket edge including exactly +8192 ms), block made by
///
/// ```text
/// promtool tsdb create-blocks-from openmetrics promtool-compat.om out   # promtool 2.42.0
/// cp out/<ULID>/chunks/000001 promtool-2.42-chunks-000001
/// ```
///
/// A block stores series in label order and each series' chunks in time order, so the chunks
/// of the segment, in file order, hold the input samples in file order.
#[test]
fn prometheus_written_chunks_decode_and_reencode_identically() {
    let input = parse_openmetrics(include_str!("../testdata/promtool-compat.om"));
    let chunks = parse_segment(include_bytes!("../testdata/promtool-2.42-chunks-000001"));
    assert_eq!(input.len(), 758);
    assert_eq!(chunks.len(), 10);
    let mut input_index = 0;
    for (chunk_index, (encoding, data)) in chunks.iter().enumerate() {
        assert_eq!(*encoding, 1, "XOR encoding of chunk {chunk_index}");
        let decoded = decode(data).unwrap();
        let expected = &input[input_index..input_index + decoded.len()];
        assert!(expected.iter().all(|(series, ..)| *series == expected[0].0), "chunk {chunk_index} spans series");
        let expected: Vec<(i64, f64)> =
            expected.iter().map(|(_, timestamp_ms, value)| (*timestamp_ms, *value)).collect();
        // (a) Prometheus' bytes decode to the input.
        check_same_samples(&decoded, &expected);
        // (b) The input encodes to Prometheus' bytes.
        assert_eq!(encode(&expected).bytes(), *data, "bytes of chunk {chunk_index}");
        input_index += decoded.len();
    }
    assert_eq!(input_index, input.len(), "every input sample is in a chunk");
}
