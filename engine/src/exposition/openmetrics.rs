//! OpenMetrics 1.0 text format (prometheus/OpenMetrics `specification/OpenMetrics.md`): a pull
//! parser that borrows from the body and validates it as the specification requires.
//!
//! Shape: [`Parser::next`] yields one [`Entry`] per line: `# HELP`, `# TYPE`, `# UNIT`, a sample
//! (its series text `name{labels}` borrowed as it appears in the body, the value, the timestamp
//! converted from seconds to milliseconds, and an optional [`Exemplar`]), and `# EOF`. Labels
//! are materialised only on request ([`series_labels`], [`Exemplar::labels`]), so a caller that
//! caches by series text pays for them only on a miss.
//!
//! Validation (the specification's MUSTs, checked as the OpenMetrics parser suite and its
//! reference parser, client_python's `openmetrics/parser.py`, check them):
//! - syntax per the ABNF: names, labels with `\\`, `\n`, `\"` escapes (another escaped character
//!   stands for itself), numbers (`realnumber`, case-insensitive `[+-]inf[inity]` and `nan`, no hex,
//!   no underscores), timestamps (`realnumber`), exemplars `# {labels} value [timestamp]` whose
//!   label names and values hold at most 128 code points; one space between fields; no blank line;
//!   `# EOF` last, with nothing after it but one optional line feed;
//! - metadata: known keywords and types (`untyped` is not one), at most one of each per family and
//!   none after the family's samples, a non-empty unit a `_unit` suffix of the name and absent on
//!   info and stateset;
//! - families: samples take the family's suffixes (`_total`/`_created` for counters, `_bucket`,
//!   `_count`, `_sum`, `_created` for histograms, ...); any other name starts a new, untyped family;
//!   no two families may produce the same sample name (`a_created` gauge then `a` counter);
//! - metrics: a metric (label set without `le`, `quantile` or the stateset label) is never
//!   interleaved with another of its family, its timestamps never go backwards (info excepted) and
//!   are present on all its samples or on none;
//! - values: counters, sums, counts and buckets neither NaN nor negative (a gauge histogram's sum
//!   may be negative if it has negative buckets), counts and buckets integers, info 1, stateset 0
//!   or 1, quantiles in 0..=1 with non-negative values, `le` a number (`+Inf` spelt so), buckets
//!   increasing in `le` and in value, ending with `+Inf`, `_count` equal to it and present if and
//!   only if the sum is; exemplars only on counter totals and buckets.
//!
//! One relaxation is an option ([`ParseOptions::negative_observations`]): the specification treats
//! histogram and summary sums and quantiles as non-negative (no `_sum` beside negative buckets, no
//! negative quantile), yet client_golang exposes distributions of negative observations with both
//! (Prometheus' own `alltypes.5mfs.om.txt`). With the option, a histogram with negative buckets
//! may have a `_sum`, negative too, as a gauge histogram's may, and a summary's `_sum` and
//! quantiles may be negative.
//!
//! Where Prometheus (model/textparse/openmetricsparse.go) is laxer, this parser follows the
//! specification: Prometheus checks syntax, the type keyword, the unit suffix and `# EOF`, but not
//! values, grouping or histogram consistency. Timestamps convert as Prometheus does,
//! `(seconds * 1000) as i64` (truncated toward zero, saturating), so backfilled blocks equal
//! promtool's.
//!
//! A check that needs a whole metric point (histogram consistency) or family (name clashes) fails
//! when the next point or family begins, so earlier samples may already have been yielded: as the
//! specification says, an exposition with an error is erroneous in its entirety, and a caller
//! must discard (roll back) everything it took from it. Group identity is a 64-bit hash of the
//! label pairs (order-insensitive); a collision could at worst misreport interleaving.
//!
//! Bounds: memory is the body plus per-family sets of group hashes and one set of family names,
//! both bounded by the body's size. Never panics on any input (proptest below).
//!
//! Concurrency: a [`Parser`] is a plain value owned by one task.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::hash::{Hash, Hasher};

use crate::model::{Labels, METRIC_NAME_LABEL};

/// Most code points an exemplar's label names and values may hold together (the specification).
pub const EXEMPLAR_LABELS_CHARACTER_COUNT_MAX: usize = 128;

/// Labels on one line above which duplicate names are found by sorting instead of pairwise.
const LABEL_COUNT_PAIRWISE_MAX: usize = 16;

/// A metric family's type (`# TYPE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    /// `counter`: `_total`, `_created`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram`: `_bucket`, `_count`, `_sum`, `_created`.
    Histogram,
    /// `gaugehistogram`: `_bucket`, `_gcount`, `_gsum`.
    GaugeHistogram,
    /// `stateset`: one sample per state, labelled with the family's name.
    StateSet,
    /// `info`: `_info`, value 1.
    Info,
    /// `summary`: quantiles, `_count`, `_sum`, `_created`.
    Summary,
    /// `unknown`, and families without a `# TYPE`.
    Unknown,
}

impl MetricType {
    /// The keyword as written after `# TYPE name`.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::StateSet => "stateset",
            MetricType::Info => "info",
            MetricType::Summary => "summary",
            MetricType::Unknown => "unknown",
        }
    }

    fn parse(text: &str) -> Option<MetricType> {
        Some(match text {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "gaugehistogram" => MetricType::GaugeHistogram,
            "stateset" => MetricType::StateSet,
            "info" => MetricType::Info,
            "summary" => MetricType::Summary,
            "unknown" => MetricType::Unknown,
            _ => return None,
        })
    }

    /// Sample name suffixes a family of this type uses (the specification's "Suffixes").
    pub fn suffixes(self) -> &'static [&'static str] {
        match self {
            MetricType::Counter => &["_total", "_created"],
            MetricType::Summary => &["", "_count", "_sum", "_created"],
            MetricType::Histogram => &["_bucket", "_count", "_sum", "_created"],
            MetricType::GaugeHistogram => &["_bucket", "_gcount", "_gsum"],
            MetricType::Info => &["_info"],
            MetricType::Gauge | MetricType::StateSet | MetricType::Unknown => &[""],
        }
    }

    fn is_histogram(self) -> bool {
        matches!(self, MetricType::Histogram | MetricType::GaugeHistogram)
    }
}

impl fmt::Display for MetricType {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// An exemplar attached to a sample: `# {labels} value [timestamp]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Exemplar<'a> {
    /// The label set as written, braces included (`{trace_id="abc"}`).
    pub labels: &'a str,
    /// The exemplar's value.
    pub value: f64,
    /// Its timestamp, Unix ms, if given.
    pub timestamp_ms: Option<i64>,
}

impl Exemplar<'_> {
    /// The exemplar's labels, unescaped (empty values dropped, as [`Labels`] holds none).
    pub fn labels(&self) -> Labels {
        let mut pairs = Vec::new();
        let inner = self.labels.strip_prefix('{').and_then(|rest| rest.strip_suffix('}')).unwrap_or("");
        let _ =
            for_each_label(inner, |name, raw_value| pairs.push((name.to_string(), unescape(raw_value).into_owned())));
        Labels::from_pairs(pairs)
    }
}

/// One line of an exposition.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry<'a> {
    /// `# HELP name text`, the text unescaped (empty means no help).
    Help {
        /// The family.
        name: &'a str,
        /// The help text.
        help: Cow<'a, str>,
    },
    /// `# TYPE name type`.
    Type {
        /// The family.
        name: &'a str,
        /// Its type.
        metric_type: MetricType,
    },
    /// `# UNIT name unit` (empty means no unit).
    Unit {
        /// The family.
        name: &'a str,
        /// The unit, a suffix of the name.
        unit: &'a str,
    },
    /// A sample line.
    Sample {
        /// The series as written: the metric name and the label set, if any (`a_total{b="c"}`).
        series: &'a str,
        /// The sample's metric name (`a_total`).
        name: &'a str,
        /// The value.
        value: f64,
        /// The timestamp, Unix ms (seconds * 1000, truncated), if given.
        timestamp_ms: Option<i64>,
        /// The exemplar, if any.
        exemplar: Option<Exemplar<'a>>,
    },
    /// `# EOF`, the last line.
    Eof,
}

/// What is wrong with an exposition.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ParseErrorKind {
    /// A line is not UTF-8.
    #[error("invalid UTF-8")]
    InvalidUtf8,
    /// An empty line.
    #[error("blank line")]
    BlankLine,
    /// A token is missing or malformed.
    #[error("expected {expected}, found {found:?}")]
    Unexpected {
        /// What the grammar wants here.
        expected: &'static str,
        /// The rest of the line from here (cut to a few characters).
        found: String,
    },
    /// A value that is not an OpenMetrics number.
    #[error("invalid number {text:?}")]
    InvalidNumber {
        /// The text.
        text: String,
    },
    /// A timestamp that is not a real number.
    #[error("invalid timestamp {text:?}")]
    InvalidTimestamp {
        /// The text.
        text: String,
    },
    /// A label name appears twice in one label set.
    #[error("duplicate label name {name:?}")]
    DuplicateLabel {
        /// The name.
        name: String,
    },
    /// `# TYPE` with an unknown type.
    #[error("unknown metric type {text:?}")]
    UnknownType {
        /// The text.
        text: String,
    },
    /// A second `# HELP`, `# TYPE` or `# UNIT` for one family.
    #[error("second {keyword} line for {name}")]
    RepeatedMetadata {
        /// `HELP`, `TYPE` or `UNIT`.
        keyword: &'static str,
        /// The family.
        name: String,
    },
    /// Metadata after the family's samples.
    #[error("{keyword} line for {name} after its samples")]
    MetadataAfterSamples {
        /// `HELP`, `TYPE` or `UNIT`.
        keyword: &'static str,
        /// The family.
        name: String,
    },
    /// A unit that is not a suffix of the family's name.
    #[error("unit {unit:?} is not the suffix of {name}")]
    UnitNotSuffix {
        /// The family.
        name: String,
        /// The unit.
        unit: String,
    },
    /// A unit on an info or stateset family.
    #[error("{name}: a {metric_type} cannot have a unit")]
    UnitNotAllowed {
        /// The family.
        name: String,
        /// Its type.
        metric_type: MetricType,
    },
    /// Two families that produce the same sample name, or one family given twice.
    #[error("metric name {name} clashes with an earlier family")]
    NameClash {
        /// The clashing sample name.
        name: String,
    },
    /// A sample lacks a label its type requires (`le`, `quantile`, the stateset's name).
    #[error("{name} has no {label:?} label")]
    MissingLabel {
        /// The sample's metric name.
        name: String,
        /// The label.
        label: String,
    },
    /// An `le` or `quantile` label that is not a valid number for it.
    #[error("{name}: invalid {label} value {value:?}")]
    InvalidLabelValue {
        /// The sample's metric name.
        name: String,
        /// `le` or `quantile`.
        label: &'static str,
        /// The value.
        value: String,
    },
    /// A value its type forbids.
    #[error("{name}: {reason}")]
    InvalidValue {
        /// The sample's metric name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// An exemplar on a sample that may not have one.
    #[error("{name} cannot have an exemplar")]
    ExemplarNotAllowed {
        /// The sample's metric name.
        name: String,
    },
    /// Exemplar labels longer than [`EXEMPLAR_LABELS_CHARACTER_COUNT_MAX`].
    #[error("exemplar labels hold {character_count} characters, more than {character_count_max}")]
    ExemplarTooLong {
        /// Code points in the names and values.
        character_count: usize,
        /// The limit.
        character_count_max: usize,
    },
    /// An inconsistent histogram metric point.
    #[error("histogram {name}: {reason}")]
    InvalidHistogram {
        /// The family.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// A metric continues after another metric of its family began.
    #[error("{name}: metric interleaved with another metric of its family")]
    Interleaved {
        /// The sample's metric name.
        name: String,
    },
    /// Timestamps out of order or given on some samples of a metric only.
    #[error("{name}: {reason}")]
    TimestampOrder {
        /// The sample's metric name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// The body ends without `# EOF`.
    #[error("missing # EOF at the end")]
    MissingEof,
    /// Something follows `# EOF`.
    #[error("text after # EOF")]
    TextAfterEof,
}

/// An error with its 1-based line and column (in characters).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("openmetrics line {line}, column {column}: {kind}")]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong.
    pub kind: ParseErrorKind,
}

/// Choices where the specification and real exposers disagree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParseOptions {
    /// Accept distributions of negative observations as client_golang exposes them: a `_sum`
    /// (negative too) on a histogram with negative buckets, negative summary sums and quantile
    /// values. The specification forbids them; off by default.
    pub negative_observations: bool,
}

/// Parses `{inner}` (without braces) label by label, calling `each(name, raw_value)`; the
/// error is the byte offset in `inner` and the kind. Shared by the line parser (through its own
/// tokenizer) and [`series_labels`].
fn for_each_label<'s>(inner: &'s str, mut each: impl FnMut(&'s str, &'s str)) -> Result<(), (usize, ParseErrorKind)> {
    let mut cursor = Cursor { text: inner, position: 0 };
    if cursor.at_end() {
        return Ok(());
    }
    loop {
        let (name, raw_value) = cursor.label()?;
        each(name, raw_value);
        if cursor.at_end() {
            return Ok(());
        }
        cursor.expect(b',', "',' or '}'")?;
    }
}

/// The labels of a sample's series text (`name{a="b"}`), unescaped, with `__name__`; the text
/// must be one a [`Parser`] yielded (anything else is an error, never a panic).
pub fn series_labels(series: &str) -> Result<Labels, ParseError> {
    let error = |position: usize, kind| ParseError { line: 1, column: column_of(series, position), kind };
    let mut cursor = Cursor { text: series, position: 0 };
    let name = cursor.metric_name().map_err(|(position, kind)| error(position, kind))?;
    let mut pairs = vec![(METRIC_NAME_LABEL.to_string(), name.to_string())];
    if cursor.at_end() {
        return Ok(Labels::from_pairs(pairs));
    }
    let labels_start = cursor.position;
    let inner = series
        .get(labels_start + 1..series.len().saturating_sub(1))
        .filter(|_| series.ends_with('}') && series.as_bytes()[labels_start] == b'{' && series.len() > labels_start + 1)
        .ok_or_else(|| error(labels_start, unexpected("a label set", &series[labels_start..])))?;
    for_each_label(inner, |label_name, raw_value| {
        pairs.push((label_name.to_string(), unescape(raw_value).into_owned()))
    })
    .map_err(|(position, kind)| error(labels_start + 1 + position, kind))?;
    Ok(Labels::from_pairs(pairs))
}

/// Label value or help text with `\\`, `\n` and `\"` resolved; any other escaped character stands
/// for the backslash and itself (client_python's reading of `BS normal-char`).
pub fn unescape(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut characters = raw.chars();
    while let Some(character) = characters.next() {
        if character != '\\' {
            out.push(character);
            continue;
        }
        match characters.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

fn column_of(line: &str, byte_offset: usize) -> usize {
    let mut end = byte_offset.min(line.len());
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line[..end].chars().count() + 1
}

fn unexpected(expected: &'static str, rest: &str) -> ParseErrorKind {
    let found: String = rest.chars().take(16).collect();
    ParseErrorKind::Unexpected { expected, found }
}

fn is_metric_name_start(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || byte == b'_' || byte == b':'
}

fn is_metric_name_byte(byte: u8) -> bool {
    is_metric_name_start(byte) || byte.is_ascii_digit()
}

fn is_label_name_start(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || byte == b'_'
}

fn is_label_name_byte(byte: u8) -> bool {
    is_label_name_start(byte) || byte.is_ascii_digit()
}

/// `realnumber` of the ABNF: `[sign] digits [. digits] [e [sign] digits]` with at least one
/// mantissa digit (`1.`, `.5`, `007` allowed).
fn is_real_number(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut index = usize::from(matches!(bytes.first(), Some(b'+' | b'-')));
    let digits = |index: &mut usize| {
        let start = *index;
        while bytes.get(*index).is_some_and(u8::is_ascii_digit) {
            *index += 1;
        }
        *index - start
    };
    let mut mantissa_digit_count = digits(&mut index);
    if bytes.get(index) == Some(&b'.') {
        index += 1;
        mantissa_digit_count += digits(&mut index);
    }
    if mantissa_digit_count == 0 {
        return false;
    }
    if matches!(bytes.get(index), Some(b'e' | b'E')) {
        index += 1;
        if matches!(bytes.get(index), Some(b'+' | b'-')) {
            index += 1;
        }
        if digits(&mut index) == 0 {
            return false;
        }
    }
    index == bytes.len()
}

/// An OpenMetrics `number`: a real number, `[+-]inf`/`infinity` or `nan`, case-insensitive.
fn parse_number(text: &str) -> Option<f64> {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    if unsigned.eq_ignore_ascii_case("inf") || unsigned.eq_ignore_ascii_case("infinity") {
        return Some(if text.starts_with('-') { f64::NEG_INFINITY } else { f64::INFINITY });
    }
    if text.eq_ignore_ascii_case("nan") {
        return Some(f64::NAN);
    }
    if !is_real_number(text) {
        return None;
    }
    text.parse().ok()
}

/// A timestamp in seconds (a real number), as seconds and as Unix ms the way Prometheus converts.
fn parse_timestamp(text: &str) -> Option<(f64, i64)> {
    if !is_real_number(text) {
        return None;
    }
    let seconds: f64 = text.parse().ok()?;
    // Saturating, as `as` is; Prometheus' int64(ts*1000) is undefined out of range.
    Some((seconds, (seconds * 1000.0) as i64))
}

/// A position in one line.
struct Cursor<'s> {
    text: &'s str,
    position: usize,
}

type TokenResult<T> = Result<T, (usize, ParseErrorKind)>;

impl<'s> Cursor<'s> {
    fn at_end(&self) -> bool {
        self.position >= self.text.len()
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.position).copied()
    }

    fn rest(&self) -> &'s str {
        self.text.get(self.position..).unwrap_or("")
    }

    fn fail<T>(&self, expected: &'static str) -> TokenResult<T> {
        Err((self.position, unexpected(expected, self.rest())))
    }

    fn expect(&mut self, byte: u8, expected: &'static str) -> TokenResult<()> {
        if self.peek() == Some(byte) {
            self.position += 1;
            Ok(())
        } else {
            self.fail(expected)
        }
    }

    fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> &'s str {
        let start = self.position;
        while self.peek().is_some_and(&keep) {
            self.position += 1;
        }
        &self.text[start..self.position]
    }

    fn metric_name(&mut self) -> TokenResult<&'s str> {
        if !self.peek().is_some_and(is_metric_name_start) {
            return self.fail("a metric name");
        }
        Ok(self.take_while(is_metric_name_byte))
    }

    /// `name="value"`: the name and the raw (escaped) value.
    fn label(&mut self) -> TokenResult<(&'s str, &'s str)> {
        if !self.peek().is_some_and(is_label_name_start) {
            return self.fail("a label name");
        }
        let name = self.take_while(is_label_name_byte);
        self.expect(b'=', "'='")?;
        self.expect(b'"', "'\"'")?;
        let bytes = self.text.as_bytes();
        let start = self.position;
        loop {
            match bytes.get(self.position) {
                None => return Err((start - 1, unexpected("a closing '\"'", &self.text[start - 1..]))),
                Some(b'"') => break,
                // Continuation bytes of UTF-8 are never '"' or '\\', so skipping one byte is safe.
                Some(b'\\') => self.position += 2,
                Some(_) => self.position += 1,
            }
        }
        let value = &self.text[start..self.position];
        self.position += 1;
        Ok((name, value))
    }

    /// A token up to the next space or the end of the line.
    fn token(&mut self) -> &'s str {
        self.take_while(|byte| byte != b' ')
    }
}

/// One parsed label of the current line.
#[derive(Clone, Copy)]
struct RawLabel<'a> {
    name: &'a str,
    raw_value: &'a str,
}

/// A family name with one of its suffixes, compared and hashed as the concatenated sample name.
#[derive(Clone, Copy)]
struct SampleName<'a> {
    name: &'a str,
    suffix: &'static str,
}

impl PartialEq for SampleName<'_> {
    fn eq(&self, other: &Self) -> bool {
        let length = self.name.len() + self.suffix.len();
        length == other.name.len() + other.suffix.len()
            && self.name.bytes().chain(self.suffix.bytes()).eq(other.name.bytes().chain(other.suffix.bytes()))
    }
}

impl Eq for SampleName<'_> {}

impl Hash for SampleName<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Byte-wise, so that `a` + `_created` and `a_created` + `` hash alike.
        for byte in self.name.bytes().chain(self.suffix.bytes()) {
            state.write_u8(byte);
        }
    }
}

/// FNV-1a then a finaliser (splitmix64): a fixed, fast hash of one label pair.
fn hash_pair(name: &str, value: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes().chain(std::iter::once(0xff)).chain(value.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// The state of one histogram metric point (client_python's `_check_histogram`).
#[derive(Clone, Copy, Default)]
struct HistogramPoint {
    /// (group hash, timestamp bits) of the point.
    key: (u64, Option<u64>),
    last_bucket_le: Option<f64>,
    last_bucket_value: f64,
    count: Option<f64>,
    has_sum: bool,
    has_negative_sum: bool,
    has_gsum: bool,
    has_negative_buckets: bool,
}

/// The family being parsed.
struct Family<'a> {
    name: &'a str,
    metric_type: MetricType,
    type_seen: bool,
    help_seen: bool,
    unit: Option<&'a str>,
    has_samples: bool,
    /// Group hash and timestamp (seconds) of the previous sample.
    group: Option<(u64, Option<f64>)>,
    point: Option<HistogramPoint>,
}

impl<'a> Family<'a> {
    fn new(name: &'a str, metric_type: MetricType) -> Self {
        Family {
            name,
            metric_type,
            type_seen: false,
            help_seen: false,
            unit: None,
            has_samples: false,
            group: None,
            point: None,
        }
    }
}

/// What a sample line holds, before the family checks.
struct SampleLine<'a> {
    series: &'a str,
    name: &'a str,
    value: f64,
    timestamp: Option<(f64, i64)>,
    exemplar: Option<Exemplar<'a>>,
}

/// The pull parser; see the module docs.
pub struct Parser<'a> {
    input: &'a [u8],
    position: usize,
    line_number: usize,
    options: ParseOptions,
    finished: bool,
    eof_seen: bool,
    family: Option<Family<'a>>,
    /// Sample names of finished families.
    sample_names: HashSet<SampleName<'a>>,
    /// Groups (metrics) seen in the current family.
    groups: HashSet<u64>,
    labels: Vec<RawLabel<'a>>,
    scratch: String,
}

/// An error at a byte offset of the current line, resolved to a column later.
struct LineError {
    offset: usize,
    kind: ParseErrorKind,
}

impl From<(usize, ParseErrorKind)> for LineError {
    fn from((offset, kind): (usize, ParseErrorKind)) -> Self {
        LineError { offset, kind }
    }
}

fn at(offset: usize, kind: ParseErrorKind) -> LineError {
    LineError { offset, kind }
}

impl<'a> Parser<'a> {
    /// A parser over a whole exposition, validating as the specification says.
    pub fn new(input: &'a [u8]) -> Self {
        Self::with_options(input, ParseOptions::default())
    }

    /// A parser with the given relaxations.
    pub fn with_options(input: &'a [u8], options: ParseOptions) -> Self {
        Parser {
            input,
            position: 0,
            line_number: 0,
            options,
            finished: false,
            eof_seen: false,
            family: None,
            sample_names: HashSet::new(),
            groups: HashSet::new(),
            labels: Vec::new(),
            scratch: String::new(),
        }
    }

    /// The next entry; `None` after `# EOF` (and the end of input) or after the first error.
    #[allow(clippy::should_implement_trait)] // Entries borrow the input; an Iterator impl follows.
    pub fn next(&mut self) -> Option<Result<Entry<'a>, ParseError>> {
        if self.finished {
            return None;
        }
        match self.next_entry() {
            Ok(Some(entry)) => Some(Ok(entry)),
            Ok(None) => {
                self.finished = true;
                None
            }
            Err(error) => {
                self.finished = true;
                Some(Err(error))
            }
        }
    }

    /// 1-based number of the line last read.
    pub fn line_number(&self) -> usize {
        self.line_number
    }

    fn next_entry(&mut self) -> Result<Option<Entry<'a>>, ParseError> {
        let input = self.input;
        if self.position >= input.len() {
            if self.eof_seen {
                return Ok(None);
            }
            return Err(ParseError { line: self.line_number + 1, column: 1, kind: ParseErrorKind::MissingEof });
        }
        let rest = &input[self.position..];
        let (line_bytes, consumed) = match rest.iter().position(|byte| *byte == b'\n') {
            Some(end) => (&rest[..end], end + 1),
            None => (rest, rest.len()),
        };
        self.position += consumed;
        self.line_number += 1;
        let line_number = self.line_number;
        let error_at = |line: &str, error: LineError| ParseError {
            line: line_number,
            column: column_of(line, error.offset),
            kind: error.kind,
        };
        if self.eof_seen {
            return Err(ParseError { line: line_number, column: 1, kind: ParseErrorKind::TextAfterEof });
        }
        let line = match std::str::from_utf8(line_bytes) {
            Ok(line) => line,
            Err(error) => {
                let valid = std::str::from_utf8(&line_bytes[..error.valid_up_to()]).unwrap_or("");
                return Err(error_at(valid, at(valid.len(), ParseErrorKind::InvalidUtf8)));
            }
        };
        if line.is_empty() {
            return Err(error_at(line, at(0, ParseErrorKind::BlankLine)));
        }
        if line == "# EOF" {
            self.eof_seen = true;
            self.finish_family().map_err(|error| error_at(line, error))?;
            return Ok(Some(Entry::Eof));
        }
        let entry = if line.starts_with('#') { self.metadata(line) } else { self.sample(line) };
        entry.map(Some).map_err(|error| error_at(line, error))
    }

    /// Ends the current family: the last histogram point's checks, then the name clash check.
    fn finish_family(&mut self) -> Result<(), LineError> {
        let Some(family) = self.family.take() else { return Ok(()) };
        self.groups.clear();
        if let Some(point) = family.point {
            self.check_point(family.name, &point)?;
        }
        let suffixes = family.metric_type.suffixes();
        for suffix in suffixes.iter().copied().chain((!suffixes.contains(&"")).then_some("")) {
            let sample_name = SampleName { name: family.name, suffix };
            if !self.sample_names.insert(sample_name) {
                return Err(at(0, ParseErrorKind::NameClash { name: format!("{}{suffix}", family.name) }));
            }
        }
        Ok(())
    }

    fn check_point(&self, name: &str, point: &HistogramPoint) -> Result<(), LineError> {
        let fail = |reason| Err(at(0, ParseErrorKind::InvalidHistogram { name: name.to_string(), reason }));
        if point.last_bucket_le != Some(f64::INFINITY) {
            return fail("the +Inf bucket is missing");
        }
        if point.count.is_some_and(|count| count != point.last_bucket_value) {
            return fail("the count differs from the +Inf bucket");
        }
        if point.has_sum && point.count.is_none() {
            return fail("_sum without _count");
        }
        if point.has_gsum && point.count.is_none() {
            return fail("_gsum without _gcount");
        }
        if !(point.has_sum || point.has_gsum) && point.count.is_some() {
            return fail("a count without a sum");
        }
        if point.has_negative_buckets && point.has_sum && !self.options.negative_observations {
            return fail("_sum with negative buckets");
        }
        if !point.has_negative_buckets && point.has_negative_sum {
            return fail("a negative sum without negative buckets");
        }
        Ok(())
    }

    fn metadata(&mut self, line: &'a str) -> Result<Entry<'a>, LineError> {
        let mut cursor = Cursor { text: line, position: 0 };
        if !line.starts_with("# ") {
            return Err(at(0, unexpected("'# TYPE', '# HELP', '# UNIT' or '# EOF'", line)));
        }
        cursor.position = 2;
        let keyword_start = cursor.position;
        let keyword: &'static str = match cursor.token() {
            "TYPE" => "TYPE",
            "HELP" => "HELP",
            "UNIT" => "UNIT",
            _ => return Err(at(keyword_start, unexpected("TYPE, HELP, UNIT or EOF", &line[keyword_start..]))),
        };
        cursor.expect(b' ', "' ' and a metric name")?;
        let name = cursor.metric_name()?;
        cursor.expect(b' ', "' '")?;
        let value_start = cursor.position;
        let value = cursor.rest();
        match &self.family {
            Some(family) if family.name == name => {
                if family.has_samples {
                    return Err(at(0, ParseErrorKind::MetadataAfterSamples { keyword, name: name.to_string() }));
                }
            }
            _ => {
                self.finish_family()?;
                self.family = Some(Family::new(name, MetricType::Unknown));
            }
        }
        let Some(family) = self.family.as_mut() else { unreachable!("a family was just set") };
        let repeated = || at(0, ParseErrorKind::RepeatedMetadata { keyword, name: name.to_string() });
        match keyword {
            "HELP" => {
                if std::mem::replace(&mut family.help_seen, true) {
                    return Err(repeated());
                }
                Ok(Entry::Help { name, help: unescape(value) })
            }
            "TYPE" => {
                if std::mem::replace(&mut family.type_seen, true) {
                    return Err(repeated());
                }
                let metric_type = MetricType::parse(value)
                    .ok_or_else(|| at(value_start, ParseErrorKind::UnknownType { text: value.to_string() }))?;
                family.metric_type = metric_type;
                check_unit_type(family)?;
                Ok(Entry::Type { name, metric_type })
            }
            _ => {
                if family.unit.is_some() {
                    return Err(repeated());
                }
                if let Some(offset) = value.bytes().position(|byte| !is_metric_name_byte(byte)) {
                    return Err(at(
                        value_start + offset,
                        unexpected("a unit (metric name characters)", &value[offset..]),
                    ));
                }
                if !value.is_empty() && !name.strip_suffix(value).is_some_and(|stem| stem.ends_with('_')) {
                    return Err(at(
                        value_start,
                        ParseErrorKind::UnitNotSuffix { name: name.to_string(), unit: value.to_string() },
                    ));
                }
                family.unit = Some(value);
                check_unit_type(family)?;
                Ok(Entry::Unit { name, unit: value })
            }
        }
    }

    /// Tokenizes a sample line into `self.labels` and the returned parts.
    fn sample_line(&mut self, line: &'a str) -> Result<SampleLine<'a>, LineError> {
        let mut cursor = Cursor { text: line, position: 0 };
        let name = cursor.metric_name()?;
        self.labels.clear();
        if cursor.peek() == Some(b'{') {
            cursor.position += 1;
            if cursor.peek() != Some(b'}') {
                loop {
                    let (label_name, raw_value) = cursor.label()?;
                    self.labels.push(RawLabel { name: label_name, raw_value });
                    if cursor.peek() == Some(b'}') {
                        break;
                    }
                    cursor.expect(b',', "',' or '}'")?;
                }
            }
            cursor.position += 1;
        }
        let series = &line[..cursor.position];
        check_label_names(&self.labels).map_err(|kind| at(name.len(), kind))?;
        cursor.expect(b' ', "' ' and a value")?;
        let value_start = cursor.position;
        let value_text = cursor.token();
        let value = parse_number(value_text)
            .ok_or_else(|| at(value_start, ParseErrorKind::InvalidNumber { text: value_text.to_string() }))?;
        let mut timestamp = None;
        let mut exemplar = None;
        if !cursor.at_end() {
            cursor.position += 1; // The space `token` stopped at.
            if cursor.peek() != Some(b'#') {
                let timestamp_start = cursor.position;
                let text = cursor.token();
                timestamp =
                    Some(parse_timestamp(text).ok_or_else(|| {
                        at(timestamp_start, ParseErrorKind::InvalidTimestamp { text: text.to_string() })
                    })?);
                if !cursor.at_end() {
                    cursor.position += 1;
                    if cursor.peek() != Some(b'#') {
                        return cursor.fail("'#' and an exemplar, or the end of the line").map_err(LineError::from);
                    }
                }
            }
            if cursor.peek() == Some(b'#') {
                exemplar = Some(self.exemplar(&mut cursor)?);
            }
        }
        Ok(SampleLine { series, name, value, timestamp, exemplar })
    }

    /// `# {labels} value [timestamp]` up to the end of the line.
    fn exemplar(&mut self, cursor: &mut Cursor<'a>) -> Result<Exemplar<'a>, LineError> {
        cursor.expect(b'#', "'#'")?;
        cursor.expect(b' ', "' ' and an exemplar label set")?;
        let labels_start = cursor.position;
        cursor.expect(b'{', "'{'")?;
        let mut character_count = 0;
        let mut names: Vec<&str> = Vec::new();
        if cursor.peek() != Some(b'}') {
            loop {
                let (name, raw_value) = cursor.label()?;
                character_count += name.chars().count() + unescape(raw_value).chars().count();
                names.push(name);
                if cursor.peek() == Some(b'}') {
                    break;
                }
                cursor.expect(b',', "',' or '}'")?;
            }
        }
        cursor.position += 1;
        let labels = &cursor.text[labels_start..cursor.position];
        let raw: Vec<RawLabel<'_>> = names.iter().map(|name| RawLabel { name, raw_value: "" }).collect();
        check_label_names(&raw).map_err(|kind| at(labels_start, kind))?;
        if character_count > EXEMPLAR_LABELS_CHARACTER_COUNT_MAX {
            return Err(at(
                labels_start,
                ParseErrorKind::ExemplarTooLong {
                    character_count,
                    character_count_max: EXEMPLAR_LABELS_CHARACTER_COUNT_MAX,
                },
            ));
        }
        cursor.expect(b' ', "' ' and an exemplar value")?;
        let value_start = cursor.position;
        let value_text = cursor.token();
        let value = parse_number(value_text)
            .ok_or_else(|| at(value_start, ParseErrorKind::InvalidNumber { text: value_text.to_string() }))?;
        let mut timestamp_ms = None;
        if !cursor.at_end() {
            cursor.position += 1;
            let timestamp_start = cursor.position;
            let text = cursor.token();
            let (_, ms) = parse_timestamp(text)
                .ok_or_else(|| at(timestamp_start, ParseErrorKind::InvalidTimestamp { text: text.to_string() }))?;
            timestamp_ms = Some(ms);
            if !cursor.at_end() {
                return cursor.fail("the end of the line").map_err(LineError::from);
            }
        }
        Ok(Exemplar { labels, value, timestamp_ms })
    }

    fn label_value(&self, name: &str) -> Option<&'a str> {
        self.labels.iter().find(|label| label.name == name).map(|label| label.raw_value)
    }

    /// Order-insensitive hash of the line's labels except `excluded` (all of them for `None`
    /// meaning "no group": info families).
    fn group_hash(&mut self, excluded: Option<&str>, all: bool) -> u64 {
        if all {
            return 0;
        }
        let mut sum: u64 = 0;
        for label in &self.labels {
            if Some(label.name) == excluded {
                continue;
            }
            let hash = if label.raw_value.contains('\\') {
                self.scratch.clear();
                self.scratch.push_str(&unescape(label.raw_value));
                hash_pair(label.name, &self.scratch)
            } else {
                hash_pair(label.name, label.raw_value)
            };
            sum = sum.wrapping_add(hash);
        }
        sum
    }

    fn sample(&mut self, line: &'a str) -> Result<Entry<'a>, LineError> {
        let parsed = self.sample_line(line)?;
        let name = parsed.name;
        let allowed = self.family.as_ref().is_some_and(|family| {
            name.strip_prefix(family.name).is_some_and(|suffix| family.metric_type.suffixes().contains(&suffix))
        });
        if !allowed {
            self.finish_family()?;
            self.family = Some(Family::new(name, MetricType::Unknown));
        }
        let Some(family) = self.family.as_ref() else { unreachable!("a family was just set") };
        let (family_name, metric_type) = (family.name, family.metric_type);
        let suffix = &name[family_name.len()..];
        let value = parsed.value;
        let invalid_value = |reason| at(0, ParseErrorKind::InvalidValue { name: name.to_string(), reason });
        let missing =
            |label: &str| at(0, ParseErrorKind::MissingLabel { name: name.to_string(), label: label.to_string() });

        // Labels a type requires, and the label the type excludes from the metric's identity.
        let mut excluded = None;
        let mut bucket_le = None;
        match metric_type {
            MetricType::StateSet => {
                if self.label_value(family_name).is_none() {
                    return Err(missing(family_name));
                }
                excluded = Some(family_name);
            }
            MetricType::Summary if suffix.is_empty() => {
                let raw = self.label_value("quantile").ok_or_else(|| missing("quantile"))?;
                let quantile = parse_number(raw).filter(|quantile| (0.0..=1.0).contains(quantile));
                if quantile.is_none() {
                    return Err(at(
                        0,
                        ParseErrorKind::InvalidLabelValue {
                            name: name.to_string(),
                            label: "quantile",
                            value: raw.to_string(),
                        },
                    ));
                }
                excluded = Some("quantile");
            }
            MetricType::Histogram | MetricType::GaugeHistogram if suffix == "_bucket" => {
                let raw = self.label_value("le").ok_or_else(|| missing("le"))?;
                let le = parse_number(raw).filter(|le| !le.is_nan() && (*le != f64::INFINITY || raw == "+Inf"));
                let Some(le) = le else {
                    return Err(at(
                        0,
                        ParseErrorKind::InvalidLabelValue {
                            name: name.to_string(),
                            label: "le",
                            value: raw.to_string(),
                        },
                    ));
                };
                bucket_le = Some(le);
                excluded = Some("le");
            }
            _ => {}
        }

        // Values.
        let integer = value.is_finite() && value.fract() == 0.0;
        match (metric_type, suffix) {
            (MetricType::StateSet, _) if value != 0.0 && value != 1.0 => {
                return Err(invalid_value("a state is 0 or 1"))
            }
            (MetricType::Info, _) if value != 1.0 => return Err(invalid_value("an info value is 1")),
            (MetricType::Summary, "") if value < 0.0 && !self.options.negative_observations => {
                return Err(invalid_value("a quantile value is not negative"))
            }
            _ => {}
        }
        // With the option, a histogram's negative sum is checked against its buckets at the end of
        // the point; a summary's is accepted.
        let negative_sum_allowed =
            matches!(metric_type, MetricType::Histogram | MetricType::Summary) && self.options.negative_observations;
        match suffix {
            "_total" | "_sum" | "_count" | "_bucket" | "_gcount" | "_gsum" if value.is_nan() => {
                return Err(invalid_value("a counter-like value is not NaN"));
            }
            "_sum" if value < 0.0 && !negative_sum_allowed => {
                return Err(invalid_value("a counter-like value is not negative"));
            }
            "_total" | "_count" | "_bucket" | "_gcount" if value < 0.0 => {
                return Err(invalid_value("a counter-like value is not negative"));
            }
            "_bucket" | "_count" | "_gcount" if !integer => return Err(invalid_value("a count is an integer")),
            _ => {}
        }
        if parsed.exemplar.is_some() {
            let allowed = (metric_type.is_histogram() && suffix == "_bucket")
                || (metric_type == MetricType::Counter && suffix == "_total");
            if !allowed {
                return Err(at(0, ParseErrorKind::ExemplarNotAllowed { name: name.to_string() }));
            }
        }

        // Grouping and timestamps.
        let group = self.group_hash(excluded, metric_type == MetricType::Info);
        let timestamp_seconds = parsed.timestamp.map(|(seconds, _)| seconds);
        let Some(family) = self.family.as_mut() else { unreachable!("a family was just set") };
        match family.group {
            Some((previous, _)) if previous != group && self.groups.contains(&group) => {
                return Err(at(0, ParseErrorKind::Interleaved { name: name.to_string() }));
            }
            Some((previous, previous_seconds)) if previous == group => {
                if previous_seconds.is_some() != timestamp_seconds.is_some() {
                    return Err(at(
                        0,
                        ParseErrorKind::TimestampOrder {
                            name: name.to_string(),
                            reason: "timestamps on some samples of a metric only",
                        },
                    ));
                }
                if metric_type != MetricType::Info
                    && previous_seconds.zip(timestamp_seconds).is_some_and(|(before, now)| now < before)
                {
                    return Err(at(
                        0,
                        ParseErrorKind::TimestampOrder { name: name.to_string(), reason: "timestamps went backwards" },
                    ));
                }
            }
            _ => {}
        }
        if family.group.is_none_or(|(previous, _)| previous != group) {
            self.groups.insert(group); // Consecutive samples of one metric insert it once.
        }
        family.group = Some((group, timestamp_seconds));
        family.has_samples = true;

        // Histogram metric points.
        if metric_type.is_histogram() && !suffix.is_empty() {
            let key = (group, timestamp_seconds.map(f64::to_bits));
            let finished = family.point.filter(|point| point.key != key);
            let mut point = match family.point {
                Some(point) if point.key == key => point,
                _ => HistogramPoint { key, ..HistogramPoint::default() },
            };
            let failure = match suffix {
                "_bucket" => {
                    let le = bucket_le.unwrap_or(f64::NAN);
                    if le < 0.0 {
                        point.has_negative_buckets = true;
                    }
                    let out_of_order = point.last_bucket_le.is_some_and(|previous| le <= previous);
                    let decreasing = value < point.last_bucket_value;
                    point.last_bucket_le = Some(le);
                    point.last_bucket_value = value;
                    match (out_of_order, decreasing) {
                        (true, _) => Some("buckets out of order"),
                        (_, true) => Some("bucket values decrease"),
                        _ => None,
                    }
                }
                "_count" | "_gcount" => {
                    point.count = Some(value);
                    None
                }
                "_sum" => {
                    point.has_sum = true;
                    point.has_negative_sum |= value < 0.0;
                    None
                }
                "_gsum" => {
                    point.has_gsum = true;
                    point.has_negative_sum |= value < 0.0;
                    None
                }
                _ => None,
            };
            family.point = Some(point);
            if let Some(previous) = finished {
                self.check_point(family_name, &previous)?;
            }
            if let Some(reason) = failure {
                return Err(at(0, ParseErrorKind::InvalidHistogram { name: family_name.to_string(), reason }));
            }
        }
        Ok(Entry::Sample {
            series: parsed.series,
            name,
            value,
            timestamp_ms: parsed.timestamp.map(|(_, ms)| ms),
            exemplar: parsed.exemplar,
        })
    }
}

fn check_unit_type(family: &Family<'_>) -> Result<(), LineError> {
    let has_unit = family.unit.is_some_and(|unit| !unit.is_empty());
    if has_unit && matches!(family.metric_type, MetricType::Info | MetricType::StateSet) {
        return Err(at(
            0,
            ParseErrorKind::UnitNotAllowed { name: family.name.to_string(), metric_type: family.metric_type },
        ));
    }
    Ok(())
}

fn check_label_names(labels: &[RawLabel<'_>]) -> Result<(), ParseErrorKind> {
    let duplicate = |name: &str| ParseErrorKind::DuplicateLabel { name: name.to_string() };
    if labels.len() <= LABEL_COUNT_PAIRWISE_MAX {
        for (index, label) in labels.iter().enumerate() {
            if labels[..index].iter().any(|earlier| earlier.name == label.name) {
                return Err(duplicate(label.name));
            }
        }
    } else {
        let mut names: Vec<&str> = labels.iter().map(|label| label.name).collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(duplicate(pair[0]));
        }
    }
    if let Some(label) = labels.iter().find(|label| label.name == METRIC_NAME_LABEL) {
        return Err(duplicate(label.name));
    }
    Ok(())
}

impl<'a> Iterator for Parser<'a> {
    type Item = Result<Entry<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        Parser::next(self)
    }
}

#[cfg(test)]
mod tests;
