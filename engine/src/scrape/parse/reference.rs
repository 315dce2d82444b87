//! The owned parser this module had before the borrowing [`super::TextParser`]: one
//! `ScrapedSample` with owned `Labels` per line. Kept only as the oracle of the agreement
//! proptests (`tests.rs`): the borrowing parser must give the same samples, metadata and errors
//! (line, column, message) on every body. Test-only; not compiled into the engine.

use std::collections::HashSet;

use super::{Exposition, MetricMetadata, MetricType, ParseError, ScrapedSample};
use crate::model::{Labels, METRIC_NAME_LABEL};

/// Parses a whole body the old way.
pub fn parse_reference(body: &[u8]) -> Result<Exposition, ParseError> {
    let mut state = State::default();
    for (line_index, raw_line) in body.split(|byte| *byte == b'\n').enumerate() {
        let line_number = line_index + 1;
        let text = std::str::from_utf8(raw_line).map_err(|error| {
            let valid = std::str::from_utf8(&raw_line[..error.valid_up_to()]).unwrap_or("");
            ParseError { line: line_number, column: valid.chars().count() + 1, message: "invalid UTF-8".to_string() }
        })?;
        let mut line = Line { text, position: 0, number: line_number };
        line.parse_into(&mut state)?;
    }
    Ok(Exposition { samples: state.samples, metadata: state.metadata })
}

#[derive(Default)]
struct State {
    samples: Vec<ScrapedSample>,
    metadata: Vec<MetricMetadata>,
    // Lookup only; never iterated.
    typed_names: HashSet<String>,
    sample_names: HashSet<String>,
}

impl State {
    fn metadata_mut(&mut self, name: &str) -> &mut MetricMetadata {
        if let Some(index) = self.metadata.iter().rposition(|metadata| metadata.name == name) {
            return &mut self.metadata[index];
        }
        self.metadata.push(MetricMetadata { name: name.to_string(), metric_type: MetricType::Untyped, help: None });
        let last = self.metadata.len() - 1;
        &mut self.metadata[last]
    }
}

struct Line<'a> {
    text: &'a str,
    /// Byte offset of the next unread character.
    position: usize,
    number: usize,
}

fn is_name_start(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || byte == b'_' || byte == b':'
}

fn is_name_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b':'
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
        match self.text[self.position..].chars().next() {
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
        let start = self.position;
        let valid_start =
            |byte: u8| if allow_colon { is_name_start(byte) } else { byte.is_ascii_alphabetic() || byte == b'_' };
        let valid_char =
            |byte: u8| if allow_colon { is_name_char(byte) } else { byte.is_ascii_alphanumeric() || byte == b'_' };
        if !self.peek().is_some_and(valid_start) {
            return Err(self.error(format!("expected {what}, found {}", self.found())));
        }
        while self.peek().is_some_and(valid_char) {
            self.position += 1;
        }
        Ok(&self.text[start..self.position])
    }

    fn parse_into(&mut self, state: &mut State) -> Result<(), ParseError> {
        self.skip_blanks();
        match self.peek() {
            None => Ok(()),
            Some(b'#') => self.comment(state),
            Some(_) => {
                let sample = self.sample()?;
                let name = sample.labels.metric_name().unwrap_or("").to_string();
                state.sample_names.insert(name);
                state.samples.push(sample);
                Ok(())
            }
        }
    }

    fn comment(&mut self, state: &mut State) -> Result<(), ParseError> {
        self.position += 1;
        if !self.skip_blanks() {
            return Ok(()); // "#foo": a plain comment.
        }
        let keyword_start = self.position;
        let keyword = self.token();
        if keyword != "HELP" && keyword != "TYPE" {
            return Ok(());
        }
        if !self.skip_blanks() {
            return Err(self.error(format!("expected metric name after {keyword}, found {}", self.found())));
        }
        let name_start = self.position;
        let name = self.name("metric name", true)?;
        if !self.at_end() && !self.skip_blanks() {
            return Err(self.error(format!("expected blank after metric name, found {}", self.found())));
        }
        if keyword == "HELP" {
            let help = unescape_help(&self.text[self.position..]);
            let metadata = state.metadata_mut(name);
            if metadata.help.is_some() {
                self.position = keyword_start;
                return Err(self.error(format!("second HELP line for metric name {name:?}")));
            }
            metadata.help = Some(help);
            return Ok(());
        }
        let type_start = self.position;
        let type_text = self.token();
        let metric_type = match type_text {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "summary" => MetricType::Summary,
            "untyped" => MetricType::Untyped,
            other => {
                self.position = type_start;
                return Err(self.error(format!(
                    "unknown metric type {other:?}, expected counter, gauge, histogram, summary or untyped"
                )));
            }
        };
        self.skip_blanks();
        if !self.at_end() {
            return Err(self.error(format!("unexpected text after metric type: {}", self.found())));
        }
        if !state.typed_names.insert(name.to_string()) {
            self.position = keyword_start;
            return Err(self.error(format!("second TYPE line for metric name {name:?}")));
        }
        let has_samples = ["", "_bucket", "_sum", "_count"]
            .iter()
            .any(|suffix| state.sample_names.contains(&format!("{name}{suffix}")));
        if has_samples {
            self.position = name_start;
            return Err(self.error(format!("TYPE line for metric name {name:?} after its samples")));
        }
        state.metadata_mut(name).metric_type = metric_type;
        Ok(())
    }

    fn sample(&mut self) -> Result<ScrapedSample, ParseError> {
        let name = self.name("metric name", true)?;
        let mut pairs: Vec<(&str, String)> = vec![(METRIC_NAME_LABEL, name.to_string())];
        self.skip_blanks();
        if self.peek() == Some(b'{') {
            self.position += 1;
            self.labels(&mut pairs)?;
            self.skip_blanks();
        }
        if self.at_end() {
            return Err(self.error("expected value after metric, found end of line".to_string()));
        }
        if self.position > 0 && !matches!(self.text.as_bytes()[self.position - 1], b' ' | b'\t' | b'}') {
            return Err(self.error(format!("expected blank or '{{' after metric name, found {}", self.found())));
        }
        let value_start = self.position;
        let value_text = self.token();
        let value = parse_float(value_text).ok_or_else(|| {
            self.position = value_start;
            self.error(format!("expected a float value, found {value_text:?}"))
        })?;
        self.skip_blanks();
        let mut timestamp_ms = None;
        if !self.at_end() {
            let timestamp_start = self.position;
            let timestamp_text = self.token();
            timestamp_ms = Some(timestamp_text.parse::<i64>().map_err(|_| {
                self.position = timestamp_start;
                self.error(format!("expected an integer timestamp in ms, found {timestamp_text:?}"))
            })?);
            self.skip_blanks();
            if !self.at_end() {
                return Err(self.error(format!("expected end of line after timestamp, found {}", self.found())));
            }
        }
        Ok(ScrapedSample { labels: Labels::from_pairs(pairs), value, timestamp_ms })
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

/// Go's `strconv.ParseFloat` for the spellings expositions use.
fn parse_float(text: &str) -> Option<f64> {
    match text.to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "+inf" | "inf" | "+infinity" | "infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        // Rust also accepts "infinity"/"nan" spellings handled above and nothing Go rejects.
        _ if text.bytes().all(|byte| byte.is_ascii_digit() || matches!(byte, b'.' | b'e' | b'E' | b'+' | b'-')) => {
            text.parse().ok()
        }
        _ => None,
    }
}

fn unescape_help(text: &str) -> String {
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
