//! Parser for the Prometheus text exposition format 0.0.4 (the format of expfmt's
//! `TextParser` and Prometheus' model/textparse/promparse.go), as a pull parser that borrows
//! from the body: [`TextParser::next`] yields one [`Entry`] per non-blank line and allocates
//! nothing per sample.
//!
//! Lines are separated by `\n`. `# HELP name text` and `# TYPE name type` carry metadata; other
//! `#` lines are comments. A sample line is `name[{label="value",...}] value [timestamp_ms]`.
//!
//! The scrape fast path (Prometheus scrape/scrape.go `scrapeLoop.append`): a sample's
//! `series` is the raw text `name{labels}` exactly as it appears in the body. `next` validates
//! the name, finds the end of the label block (quotes and escapes respected) and parses value
//! and timestamp, but does not parse the labels inside the braces: that happens only when the
//! caller asks for them with [`TextParser::labels`], i.e. on a scrape-cache miss. A caller
//! that skips `labels` must therefore know that the same bytes parsed before (the scrape cache
//! only holds series texts whose labels parsed); [`parse`] always asks.
//!
//! Invariants: errors carry the 1-based line and character column where the problem starts,
//! the first problem of a line wins (a bad label is reported before a bad value after it, as
//! a left-to-right parser would), and nothing panics whatever the bytes. After an error the
//! parser is exhausted. Checks that span lines (a second HELP or TYPE for one name, a TYPE
//! after its family's samples) use sets of names borrowed from the body, bounded by it.
//!
//! Concurrency: a parser is a plain value used by one task.

#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};

use crate::model::{Labels, METRIC_NAME_LABEL};

/// One sample as scraped, with owned labels (the output of [`parse`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ScrapedSample {
    /// Labels including `__name__`.
    pub labels: Labels,
    /// Value, possibly NaN or ±Inf.
    pub value: f64,
    /// Explicit timestamp, Unix ms, when the line has one.
    pub timestamp_ms: Option<i64>,
}

/// Metric family types of the `# TYPE` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    /// `counter`
    Counter,
    /// `gauge`
    Gauge,
    /// `histogram`
    Histogram,
    /// `summary`
    Summary,
    /// `untyped`
    Untyped,
}

/// HELP and TYPE of one metric family.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricMetadata {
    /// Family name.
    pub name: String,
    /// Type (untyped when no TYPE line).
    pub metric_type: MetricType,
    /// Help text, unescaped.
    pub help: Option<String>,
}

/// A parsed body with owned samples (for callers off the scrape path: tests, tools).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exposition {
    /// Samples in body order.
    pub samples: Vec<ScrapedSample>,
    /// Metadata in order of first appearance.
    pub metadata: Vec<MetricMetadata>,
}

/// Where and why a body is malformed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What was expected and what was found.
    pub message: String,
}

/// One non-blank line of a body, borrowing from it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Entry<'a> {
    /// `# HELP name text`; `text` is still escaped (see [`unescape_help`]).
    Help {
        /// Family name.
        name: &'a str,
        /// Help text as written, `\\` and `\n` escaped.
        text: &'a str,
    },
    /// `# TYPE name type`.
    Type {
        /// Family name.
        name: &'a str,
        /// The type.
        metric_type: MetricType,
    },
    /// Any other `#` line; `text` follows the `#`.
    Comment {
        /// The rest of the line.
        text: &'a str,
    },
    /// A sample line.
    Sample {
        /// `name{labels}` exactly as in the body (the scrape cache's key); labels unparsed.
        series: &'a str,
        /// Value, possibly NaN or ±Inf.
        value: f64,
        /// Explicit timestamp, Unix ms, when the line has one.
        timestamp_ms: Option<i64>,
    },
}

/// A sample's metric name and its label pairs in body order (see [`TextParser::label_pairs`]).
pub type NamedPairs<'a> = (&'a str, Vec<(&'a str, String)>);

/// Pull parser over one body. See the module doc for what `next` validates.
pub struct TextParser<'a> {
    body: &'a [u8],
    /// The body as text when it is all valid UTF-8 (checked once, in one pass); otherwise each
    /// line is checked on its own, so the error names the line.
    body_text: Option<&'a str>,
    /// Byte offset of the next unread line.
    position: usize,
    /// 1-based number of the line last read.
    line_number: usize,
    /// The line of the last sample, and the byte offset of its series in it, for `labels`.
    sample_line: &'a str,
    sample_series_start: usize,
    exhausted: bool,
    // Lookup only; never iterated.
    helped_names: HashSet<&'a str>,
    typed_names: HashSet<&'a str>,
    sample_names: HashSet<&'a str>,
    /// The previous sample's metric name: consecutive samples of a family skip the set.
    last_sample_name: &'a str,
    /// Scratch for the TYPE-after-samples check.
    name_buffer: String,
}

impl<'a> TextParser<'a> {
    /// A parser at the start of `body`.
    pub fn new(body: &'a [u8]) -> Self {
        TextParser {
            body,
            body_text: std::str::from_utf8(body).ok(),
            position: 0,
            line_number: 0,
            sample_line: "",
            sample_series_start: 0,
            exhausted: false,
            helped_names: HashSet::new(),
            typed_names: HashSet::new(),
            sample_names: HashSet::new(),
            last_sample_name: "",
            name_buffer: String::new(),
        }
    }

    /// The next entry, `None` at the end of the body or after an error.
    #[allow(clippy::should_implement_trait)] // Borrowing items with their own error: not an Iterator.
    pub fn next(&mut self) -> Option<Result<Entry<'a>, ParseError>> {
        if self.exhausted {
            return None;
        }
        while self.position < self.body.len() {
            let rest = &self.body[self.position..];
            let line_size = find_byte(rest, b'\n').unwrap_or(rest.len());
            let raw_line = &rest[..line_size];
            let line_start = self.position;
            self.position += line_size + 1;
            self.line_number += 1;
            // `\n` is ASCII, so a line of valid text is valid text.
            let line_text = self.body_text.and_then(|text| text.get(line_start..line_start + line_size));
            let result = match line_text.map(Ok).unwrap_or_else(|| std::str::from_utf8(raw_line)) {
                Ok(text) => self.line(text),
                Err(error) => {
                    let valid = std::str::from_utf8(&raw_line[..error.valid_up_to()]).unwrap_or("");
                    Err(ParseError {
                        line: self.line_number,
                        column: valid.chars().count() + 1,
                        message: "invalid UTF-8".to_string(),
                    })
                }
            };
            match result {
                Ok(None) => continue,
                Ok(Some(entry)) => return Some(Ok(entry)),
                Err(error) => {
                    self.exhausted = true;
                    return Some(Err(error));
                }
            }
        }
        self.exhausted = true;
        None
    }

    /// Labels of the last [`Entry::Sample`], `__name__` included, values unescaped; errors carry
    /// that sample's line and column. Call it only right after `next` returned the sample.
    pub fn labels(&self) -> Result<Labels, ParseError> {
        let mut line = Line { text: self.sample_line, position: self.sample_series_start, number: self.line_number };
        line.series()
    }

    /// The last [`Entry::Sample`]'s metric name and labels in body order, values unescaped and
    /// empty values kept (expfmt's `TextParser` keeps them; the push gateway serves them back);
    /// errors as [`TextParser::labels`]. Call it only right after `next` returned the sample.
    pub fn label_pairs(&self) -> Result<NamedPairs<'a>, ParseError> {
        let mut line = Line { text: self.sample_line, position: self.sample_series_start, number: self.line_number };
        line.series_pairs()
    }

    /// 1-based number of the line `next` read last (for errors a caller finds in an entry).
    pub fn line_number(&self) -> usize {
        self.line_number
    }

    /// One line: `Ok(None)` for a blank one.
    fn line(&mut self, text: &'a str) -> Result<Option<Entry<'a>>, ParseError> {
        let mut line = Line { text, position: 0, number: self.line_number };
        line.skip_blanks();
        match line.peek() {
            None => Ok(None),
            Some(b'#') => self.comment(&mut line).map(Some),
            Some(_) => self.sample(&mut line).map(Some),
        }
    }

    fn comment(&mut self, line: &mut Line<'a>) -> Result<Entry<'a>, ParseError> {
        line.position += 1;
        let text = &line.text[line.position..];
        if !line.skip_blanks() {
            return Ok(Entry::Comment { text }); // "#foo": a plain comment.
        }
        let keyword_start = line.position;
        let keyword = line.token();
        if keyword != "HELP" && keyword != "TYPE" {
            return Ok(Entry::Comment { text });
        }
        if !line.skip_blanks() {
            return Err(line.error(format!("expected metric name after {keyword}, found {}", line.found())));
        }
        let name_start = line.position;
        let name = line.name("metric name", true)?;
        if !line.at_end() && !line.skip_blanks() {
            return Err(line.error(format!("expected blank after metric name, found {}", line.found())));
        }
        if keyword == "HELP" {
            if !self.helped_names.insert(name) {
                line.position = keyword_start;
                return Err(line.error(format!("second HELP line for metric name {name:?}")));
            }
            return Ok(Entry::Help { name, text: &line.text[line.position..] });
        }
        let type_start = line.position;
        let type_text = line.token();
        let metric_type = match type_text {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "summary" => MetricType::Summary,
            "untyped" => MetricType::Untyped,
            other => {
                line.position = type_start;
                return Err(line.error(format!(
                    "unknown metric type {other:?}, expected counter, gauge, histogram, summary or untyped"
                )));
            }
        };
        line.skip_blanks();
        if !line.at_end() {
            return Err(line.error(format!("unexpected text after metric type: {}", line.found())));
        }
        if !self.typed_names.insert(name) {
            line.position = keyword_start;
            return Err(line.error(format!("second TYPE line for metric name {name:?}")));
        }
        let mut has_samples = false;
        for suffix in ["", "_bucket", "_sum", "_count"] {
            self.name_buffer.clear();
            self.name_buffer.push_str(name);
            self.name_buffer.push_str(suffix);
            has_samples |= self.sample_names.contains(self.name_buffer.as_str());
        }
        if has_samples {
            line.position = name_start;
            return Err(line.error(format!("TYPE line for metric name {name:?} after its samples")));
        }
        Ok(Entry::Type { name, metric_type })
    }

    fn sample(&mut self, line: &mut Line<'a>) -> Result<Entry<'a>, ParseError> {
        let series_start = line.position;
        self.sample_line = line.text;
        self.sample_series_start = series_start;
        let name = line.name("metric name", true)?;
        let result = self.sample_rest(line, series_start);
        if result.is_err() {
            // The first problem of the line wins: one inside the braces comes before any later.
            self.labels()?;
        }
        let (series, value, timestamp_ms) = result?;
        if name != self.last_sample_name {
            self.sample_names.insert(name);
            self.last_sample_name = name;
        }
        Ok(Entry::Sample { series, value, timestamp_ms })
    }

    /// Everything after the metric name: the label block (skimmed), value and timestamp.
    fn sample_rest(
        &mut self,
        line: &mut Line<'a>,
        series_start: usize,
    ) -> Result<(&'a str, f64, Option<i64>), ParseError> {
        let mut series_end = line.position;
        line.skip_blanks();
        if line.peek() == Some(b'{') {
            line.position += 1;
            line.skip_label_block()?;
            series_end = line.position;
            line.skip_blanks();
        }
        let series = &line.text[series_start..series_end];
        if line.at_end() {
            return Err(line.error("expected value after metric, found end of line".to_string()));
        }
        if !matches!(line.text.as_bytes()[line.position - 1], b' ' | b'\t' | b'}') {
            return Err(line.error(format!("expected blank or '{{' after metric name, found {}", line.found())));
        }
        let value_start = line.position;
        let value_text = line.token();
        let value = parse_float(value_text).ok_or_else(|| {
            line.position = value_start;
            line.error(format!("expected a float value, found {value_text:?}"))
        })?;
        line.skip_blanks();
        let mut timestamp_ms = None;
        if !line.at_end() {
            let timestamp_start = line.position;
            let timestamp_text = line.token();
            timestamp_ms = Some(timestamp_text.parse::<i64>().map_err(|_| {
                line.position = timestamp_start;
                line.error(format!("expected an integer timestamp in ms, found {timestamp_text:?}"))
            })?);
            line.skip_blanks();
            if !line.at_end() {
                return Err(line.error(format!("expected end of line after timestamp, found {}", line.found())));
            }
        }
        Ok((series, value, timestamp_ms))
    }
}

/// Labels of a series text as [`Entry::Sample`] gives it (`name{labels}`), for a caller that
/// kept the text and needs its labels again (the scrape cache after the store dropped a
/// series). Errors count lines and columns from the start of `series`.
pub fn series_labels(series: &str) -> Result<Labels, ParseError> {
    let mut line = Line { text: series, position: 0, number: 1 };
    let labels = line.series()?;
    line.skip_blanks();
    if !line.at_end() {
        return Err(line.error(format!("unexpected text after series: {}", line.found())));
    }
    Ok(labels)
}

/// Parses a whole body into owned samples and metadata. Off the scrape path only: the scrape
/// loop pulls entries from a [`TextParser`] and keeps nothing per line.
pub fn parse(body: &[u8]) -> Result<Exposition, ParseError> {
    let mut parser = TextParser::new(body);
    let mut exposition = Exposition::default();
    // Family name -> index in `metadata`; lookup only, never iterated.
    let mut metadata_index: HashMap<&str, usize> = HashMap::new();
    while let Some(entry) = parser.next() {
        match entry? {
            Entry::Sample { value, timestamp_ms, .. } => {
                let labels = parser.labels()?;
                exposition.samples.push(ScrapedSample { labels, value, timestamp_ms });
            }
            Entry::Help { name, text } => {
                let index = family_index(&mut metadata_index, &mut exposition.metadata, name);
                exposition.metadata[index].help = Some(unescape_help(text));
            }
            Entry::Type { name, metric_type } => {
                let index = family_index(&mut metadata_index, &mut exposition.metadata, name);
                exposition.metadata[index].metric_type = metric_type;
            }
            Entry::Comment { .. } => {}
        }
    }
    Ok(exposition)
}

/// Index of family `name` in `metadata`, added untyped on first sight: a map lookup, so a body
/// with many families stays linear.
fn family_index<'a>(index: &mut HashMap<&'a str, usize>, metadata: &mut Vec<MetricMetadata>, name: &'a str) -> usize {
    *index.entry(name).or_insert_with(|| {
        metadata.push(MetricMetadata { name: name.to_string(), metric_type: MetricType::Untyped, help: None });
        metadata.len() - 1
    })
}

struct Line<'a> {
    text: &'a str,
    /// Byte offset of the next unread character.
    position: usize,
    number: usize,
}

/// Character classes of name bytes, one table lookup per byte.
const METRIC_NAME_START: u8 = 1;
const METRIC_NAME_CHAR: u8 = 2;
const LABEL_NAME_START: u8 = 4;
const LABEL_NAME_CHAR: u8 = 8;

const NAME_CLASSES: [u8; 256] = {
    let mut classes = [0_u8; 256];
    let mut byte = 0;
    while byte < 256 {
        let character = byte as u8;
        let letter = character.is_ascii_alphabetic() || character == b'_';
        let digit = character.is_ascii_digit();
        let colon = character == b':';
        let mut class = 0;
        if letter || colon {
            class |= METRIC_NAME_START | METRIC_NAME_CHAR;
        }
        if digit {
            class |= METRIC_NAME_CHAR | LABEL_NAME_CHAR;
        }
        if letter {
            class |= LABEL_NAME_START | LABEL_NAME_CHAR;
        }
        classes[byte] = class;
        byte += 1;
    }
    classes
};

/// Bytes of a word with `byte` in every lane.
const fn lanes(byte: u8) -> u64 {
    u64::from_ne_bytes([byte; 8])
}

/// Bit 7 of each lane of `word` that is zero (exact for the lowest such lane, the one used).
fn zero_lanes(word: u64) -> u64 {
    word.wrapping_sub(lanes(1)) & !word & lanes(0x80)
}

/// Index of the first `byte` in `bytes`, eight bytes a step (SWAR).
fn find_byte(bytes: &[u8], byte: u8) -> Option<usize> {
    let mut index = 0;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let word = <[u8; 8]>::try_from(word).map(u64::from_le_bytes).unwrap_or(0);
        let found = zero_lanes(word ^ lanes(byte));
        if found != 0 {
            return Some(index + found.trailing_zeros() as usize / 8);
        }
        index += 8;
    }
    words.remainder().iter().position(|candidate| *candidate == byte).map(|offset| index + offset)
}

/// Index of the first of `first` or `second` in `bytes`, eight bytes a step (SWAR).
fn find_either(bytes: &[u8], first: u8, second: u8) -> Option<usize> {
    let mut index = 0;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let word = <[u8; 8]>::try_from(word).map(u64::from_le_bytes).unwrap_or(0);
        let found = zero_lanes(word ^ lanes(first)) | zero_lanes(word ^ lanes(second));
        if found != 0 {
            return Some(index + found.trailing_zeros() as usize / 8);
        }
        index += 8;
    }
    let rest = words.remainder();
    rest.iter().position(|candidate| *candidate == first || *candidate == second).map(|offset| index + offset)
}

impl<'a> Line<'a> {
    fn error(&self, message: String) -> ParseError {
        let prefix = self.text.get(..self.position).unwrap_or(self.text);
        ParseError { line: self.number, column: prefix.chars().count() + 1, message }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.position).copied()
    }

    /// Describes the next character for error messages.
    fn found(&self) -> String {
        match self.text.get(self.position..).and_then(|rest| rest.chars().next()) {
            None => "end of line".to_string(),
            Some(character) => format!("{character:?}"),
        }
    }

    fn skip_blanks(&mut self) -> bool {
        let start = self.position;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.position += 1;
        }
        self.position > start
    }

    fn at_end(&self) -> bool {
        self.position >= self.text.len()
    }

    /// A token up to the next blank or the end of the line.
    fn token(&mut self) -> &'a str {
        let start = self.position;
        while self.peek().is_some_and(|byte| byte != b' ' && byte != b'\t') {
            self.position += 1;
        }
        &self.text[start..self.position]
    }

    /// A metric name (`allow_colon`) or label name.
    fn name(&mut self, what: &str, allow_colon: bool) -> Result<&'a str, ParseError> {
        let (start_class, char_class) =
            if allow_colon { (METRIC_NAME_START, METRIC_NAME_CHAR) } else { (LABEL_NAME_START, LABEL_NAME_CHAR) };
        let bytes = self.text.as_bytes();
        let start = self.position;
        if bytes.get(start).is_none_or(|byte| NAME_CLASSES[usize::from(*byte)] & start_class == 0) {
            return Err(self.error(format!("expected {what}, found {}", self.found())));
        }
        let mut end = start + 1;
        while bytes.get(end).is_some_and(|byte| NAME_CLASSES[usize::from(*byte)] & char_class != 0) {
            end += 1;
        }
        self.position = end;
        Ok(&self.text[start..end])
    }

    /// Moves past the `}` that closes a label block (after its `{`) without parsing the labels:
    /// `"` opens a quoted value in which `\` escapes the next byte. `"`, `\` and `}` are ASCII,
    /// so a byte scan never splits a UTF-8 character. On a block that never closes, the full
    /// label parse finds the precise error.
    fn skip_label_block(&mut self) -> Result<(), ParseError> {
        let bytes = self.text.as_bytes();
        let block_start = self.position;
        let mut index = block_start;
        let mut quoted = false;
        loop {
            // Outside quotes only `"` and `}` matter, inside only `"` and `\`.
            let rest = bytes.get(index..).unwrap_or_default();
            let found = if quoted { find_either(rest, b'"', b'\\') } else { find_either(rest, b'"', b'}') };
            let Some(offset) = found else { break };
            index += offset;
            match bytes[index] {
                b'}' => {
                    self.position = index + 1;
                    return Ok(());
                }
                b'"' => quoted = !quoted,
                _ => index += 1, // `\` escapes the next byte.
            }
            index += 1;
        }
        self.position = block_start;
        let mut pairs = Vec::new();
        self.labels(&mut pairs)?;
        // Unreachable for well-formed UTF-8: a block the scan cannot close does not parse.
        Err(self.error("label block is missing its closing '}'".to_string()))
    }

    /// A full series: metric name, then the label block if any.
    fn series(&mut self) -> Result<Labels, ParseError> {
        let name = self.name("metric name", true)?;
        let mut pairs: Vec<(&str, String)> = vec![(METRIC_NAME_LABEL, name.to_string())];
        self.skip_blanks();
        if self.peek() == Some(b'{') {
            self.position += 1;
            self.labels(&mut pairs)?;
        }
        Ok(Labels::from_pairs(pairs))
    }

    /// A full series as the metric name and its label pairs, empty values kept.
    fn series_pairs(&mut self) -> Result<NamedPairs<'a>, ParseError> {
        let name = self.name("metric name", true)?;
        let mut pairs: Vec<(&str, String)> = Vec::new();
        self.skip_blanks();
        if self.peek() == Some(b'{') {
            self.position += 1;
            self.labels(&mut pairs)?;
        }
        Ok((name, pairs))
    }

    /// Parses `name="value",...}` after the opening brace.
    fn labels(&mut self, pairs: &mut Vec<(&'a str, String)>) -> Result<(), ParseError> {
        let mut seen_names: HashSet<&'a str> = HashSet::new();
        loop {
            self.skip_blanks();
            if self.peek() == Some(b'}') {
                self.position += 1;
                return Ok(());
            }
            let name_start = self.position;
            let name = self.name("label name or '}'", false)?;
            if name == METRIC_NAME_LABEL {
                self.position = name_start;
                return Err(self.error("label name \"__name__\" is reserved for the metric name".to_string()));
            }
            if is_duplicate(pairs, &mut seen_names, name) {
                self.position = name_start;
                return Err(self.error(format!("duplicate label name {name:?}")));
            }
            self.skip_blanks();
            if self.peek() != Some(b'=') {
                return Err(self.error(format!("expected '=' after label name, found {}", self.found())));
            }
            self.position += 1;
            self.skip_blanks();
            if self.peek() != Some(b'"') {
                return Err(self.error(format!("expected label value in double quotes, found {}", self.found())));
            }
            self.position += 1;
            let value = self.quoted()?;
            pairs.push((name, value));
            self.skip_blanks();
            match self.peek() {
                Some(b',') => self.position += 1,
                Some(b'}') => {}
                _ => return Err(self.error(format!("expected ',' or '}}' after label value, found {}", self.found()))),
            }
        }
    }

    /// Reads a label value up to the closing quote, unescaping `\\`, `\"` and `\n`.
    fn quoted(&mut self) -> Result<String, ParseError> {
        let mut value = String::new();
        let mut chars = self.text[self.position..].char_indices();
        while let Some((offset, character)) = chars.next() {
            match character {
                '"' => {
                    self.position += offset + 1;
                    return Ok(value);
                }
                '\\' => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => {
                        self.position += offset;
                        return Err(self.error(format!("invalid escape sequence '\\{other}' in label value")));
                    }
                    None => break,
                },
                other => value.push(other),
            }
        }
        self.position = self.text.len();
        Err(self.error("label value is missing its closing double quote".to_string()))
    }
}

/// Labels up to which a linear duplicate scan beats hashing.
const LINEAR_DUPLICATE_SCAN_COUNT_MAX: usize = 16;

/// True when `name` is already among the sample's labels. Linear for the usual handful of labels;
/// past that a set keeps a hostile line with many labels linear in its length.
fn is_duplicate<'a>(pairs: &[(&'a str, String)], seen: &mut HashSet<&'a str>, name: &'a str) -> bool {
    if pairs.len() <= LINEAR_DUPLICATE_SCAN_COUNT_MAX {
        return pairs.iter().any(|(existing, _)| *existing == name);
    }
    if seen.is_empty() {
        seen.extend(pairs.iter().map(|(existing, _)| *existing));
    }
    !seen.insert(name)
}

/// Go's `strconv.ParseFloat` for the spellings expositions use, without allocating.
pub(crate) fn parse_float(text: &str) -> Option<f64> {
    // Rust's parser accepts nothing Go rejects among these characters.
    if !text.is_empty()
        && text.bytes().all(|byte| byte.is_ascii_digit() || matches!(byte, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return text.parse().ok();
    }
    let is = |spelling: &str| text.eq_ignore_ascii_case(spelling);
    if is("nan") {
        Some(f64::NAN)
    } else if is("+inf") || is("inf") || is("+infinity") || is("infinity") {
        Some(f64::INFINITY)
    } else if is("-inf") || is("-infinity") {
        Some(f64::NEG_INFINITY)
    } else {
        None
    }
}

/// Unescapes a HELP text as [`Entry::Help`] gives it (`\\` and `\n`; other backslashes stay).
pub fn unescape_help(text: &str) -> String {
    let mut help = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(character) = chars.next() {
        match (character, chars.clone().next()) {
            ('\\', Some('\\')) => {
                help.push('\\');
                chars.next();
            }
            ('\\', Some('n')) => {
                help.push('\n');
                chars.next();
            }
            (other, _) => help.push(other),
        }
    }
    help
}
