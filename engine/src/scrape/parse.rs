//! Parser for the Prometheus text exposition format 0.0.4 (the format of expfmt's
//! `TextParser` and Prometheus' model/textparse/promparse.go).
//!
//! Lines are separated by `\n`. `# HELP name text` and `# TYPE name type` carry metadata; other
//! `#` lines are comments. A sample line is `name[{label="value",...}] value [timestamp_ms]`.
//! Invariants of the output: every sample's labels include `__name__`; label values are
//! unescaped (`\\`, `\"`, `\n`); errors carry the 1-based line and character column where the
//! problem starts and never panic, whatever the bytes.

use std::collections::HashSet;

use crate::model::{Labels, METRIC_NAME_LABEL};

/// One sample as scraped.
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

/// A parsed body.
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

/// Parses a whole body.
pub fn parse(body: &[u8]) -> Result<Exposition, ParseError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(pairs: &[(&str, &str)], value: f64, timestamp_ms: Option<i64>) -> ScrapedSample {
        ScrapedSample { labels: Labels::from_pairs(pairs.iter().copied()), value, timestamp_ms }
    }

    #[track_caller]
    fn check(body: &str, expected: &[ScrapedSample]) {
        let exposition = parse(body.as_bytes()).unwrap_or_else(|error| panic!("{body:?}: {error}"));
        assert_eq!(exposition.samples.len(), expected.len(), "{body:?}");
        for (got, want) in exposition.samples.iter().zip(expected) {
            assert_eq!(got.labels, want.labels);
            assert_eq!(got.value.to_bits(), want.value.to_bits(), "{body:?}");
            assert_eq!(got.timestamp_ms, want.timestamp_ms);
        }
    }

    #[track_caller]
    fn check_error(body: &str, line: usize, column: usize, message_part: &str) {
        let error = parse(body.as_bytes()).expect_err(body);
        assert_eq!((error.line, error.column), (line, column), "{body:?}: {error}");
        assert!(error.message.contains(message_part), "{body:?}: {error}");
    }

    #[test]
    fn good_lines() {
        check("up 1\n", &[sample(&[("__name__", "up")], 1.0, None)]);
        check("up 1 1700000000000", &[sample(&[("__name__", "up")], 1.0, Some(1_700_000_000_000))]);
        check("  up\t-2.5e3  -5  ", &[sample(&[("__name__", "up")], -2500.0, Some(-5))]);
        check("a:b_c{x=\"1\",y=\"2\",} 3", &[sample(&[("__name__", "a:b_c"), ("x", "1"), ("y", "2")], 3.0, None)]);
        check("m { x = \"a\\\"b\\\\c\\nd\" } 1", &[sample(&[("__name__", "m"), ("x", "a\"b\\c\nd")], 1.0, None)]);
        check(
            "m{} NaN\nm2 +Inf\nm3 -Inf\nm4 inf",
            &[
                sample(&[("__name__", "m")], f64::NAN, None),
                sample(&[("__name__", "m2")], f64::INFINITY, None),
                sample(&[("__name__", "m3")], f64::NEG_INFINITY, None),
                sample(&[("__name__", "m4")], f64::INFINITY, None),
            ],
        );
        check("m{x=\"\"} 1", &[sample(&[("__name__", "m")], 1.0, None)]);
        check("m{x=\"ünïcödé ✓\"} 1", &[sample(&[("__name__", "m"), ("x", "ünïcödé ✓")], 1.0, None)]);
        check("\n\n# just a comment\n#nospace\n", &[]);
    }

    #[test]
    fn metadata() {
        let body = "# HELP h_seconds A \\\\ help\\ntext.\n# TYPE h_seconds histogram\nh_seconds_bucket{le=\"1\"} 1\nh_seconds_bucket{le=\"+Inf\"} 2\nh_seconds_sum 3\nh_seconds_count 2\n# TYPE c counter\nc 1\n";
        let exposition = parse(body.as_bytes()).unwrap();
        assert_eq!(exposition.samples.len(), 5);
        assert_eq!(
            exposition.metadata,
            vec![
                MetricMetadata {
                    name: "h_seconds".into(),
                    metric_type: MetricType::Histogram,
                    help: Some("A \\ help\ntext.".into())
                },
                MetricMetadata { name: "c".into(), metric_type: MetricType::Counter, help: None },
            ]
        );
    }

    #[test]
    fn bad_lines_name_line_and_column() {
        check_error("up 1\nup{a=\"1\" 1\n", 2, 10, "expected ',' or '}'");
        check_error("up", 1, 3, "expected value");
        check_error("up x", 1, 4, "expected a float value, found \"x\"");
        check_error("up 1 2.5", 1, 6, "integer timestamp");
        check_error("up 1 2 3", 1, 8, "end of line");
        check_error("up{a=1} 1", 1, 6, "double quotes");
        check_error("up{a=\"1} 1", 1, 11, "closing double quote");
        check_error("up{a=\"\\x\"} 1", 1, 7, "invalid escape");
        check_error("up{a=\"1\",a=\"2\"} 1", 1, 10, "duplicate label name");
        check_error("up{__name__=\"x\"} 1", 1, 4, "reserved");
        check_error("up{1a=\"1\"} 1", 1, 4, "label name");
        // Past the linear-scan threshold, duplicates are found through the set.
        let many: String = (0..40).map(|index| format!("l{index}=\"v\",")).collect();
        let line = format!("m{{{many}l3=\"again\"}} 1");
        check_error(&line, 1, line.find("l3=\"again").unwrap() + 1, "duplicate label name \"l3\"");
        let unique = parse(format!("m{{{many}}} 1").as_bytes()).unwrap();
        assert_eq!(unique.samples[0].labels.len(), 41);
        check_error("1up 1", 1, 1, "metric name");
        check_error("# TYPE up foo", 1, 11, "unknown metric type");
        check_error("# TYPE up gauge\n# TYPE up gauge", 2, 3, "second TYPE");
        check_error("up 1\n# TYPE up gauge", 2, 8, "after its samples");
        check_error("h_count 1\n# TYPE h summary", 2, 8, "after its samples");
        check_error("# TYPE up gauge extra", 1, 17, "after metric type");
        check_error("ok 1\nup{a=\"é\" 1", 2, 10, "expected ','");
        let mut invalid = b"up 1\nup{a=\"".to_vec();
        invalid.extend_from_slice(&[0xff, b'"', b'}']);
        let error = parse(&invalid).unwrap_err();
        assert_eq!((error.line, error.column, error.message.as_str()), (2, 7, "invalid UTF-8"));
    }

    /// Prometheus' own text-format test data (model/textparse/testdata), run from shared/.
    #[test]
    fn conformance_prometheus_textparse_testdata() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/conformance/exposition/prometheus-textparse");
        for (file, type_count) in [("alltypes.237mfs.prom.txt", 237), ("alltypes.237mfs.nometa.prom.txt", 0)] {
            let path = format!("{dir}/{file}");
            let body = crate::io::FileSystem::read(&crate::io::RealFileSystem, std::path::Path::new(&path))
                .unwrap_or_else(|error| panic!("conformance file {path} missing: {error}"));
            let exposition = parse(&body).unwrap_or_else(|error| panic!("{file}: {error}"));
            let text = String::from_utf8(body).unwrap();
            let sample_lines = text.lines().filter(|line| !line.trim().is_empty() && !line.starts_with('#')).count();
            assert_eq!(exposition.samples.len(), sample_lines, "{file}");
            assert_eq!(sample_lines, 1857, "{file}: the suite's sample count");
            let typed =
                exposition.metadata.iter().filter(|metadata| metadata.metric_type != MetricType::Untyped).count();
            assert!(typed <= type_count && (type_count == 0 || typed > 200), "{file}: {typed} typed families");
            let quantile_zero = exposition
                .samples
                .iter()
                .find(|s| {
                    s.labels.metric_name() == Some("go_gc_duration_seconds") && s.labels.get("quantile") == Some("0")
                })
                .unwrap_or_else(|| panic!("{file}: go_gc_duration_seconds{{quantile=\"0\"}} missing"));
            assert_eq!(quantile_zero.value, 7.6238e-05);
            let inf_bucket = exposition
                .samples
                .iter()
                .find(|s| {
                    s.labels.metric_name() == Some("go_gc_pauses_seconds_bucket") && s.labels.get("le") == Some("+Inf")
                })
                .unwrap_or_else(|| panic!("{file}: go_gc_pauses_seconds_bucket{{le=\"+Inf\"}} missing"));
            assert_eq!(inf_bucket.value, 381_864.0);
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn arbitrary_text_never_panics(text in "[a-z{}=\",# \\\\\n0-9.+-]{0,200}") {
            let _ = parse(text.as_bytes());
        }

        #[test]
        fn rendered_samples_parse_back(
            name in "[a-zA-Z_:][a-zA-Z0-9_:]{0,10}",
            label_value in "[^\\\\\"\n]{0,10}|[a\\\\\"\n]{0,6}",
            value_bits in any::<u64>(),
            timestamp_ms in proptest::option::of(any::<i64>()),
        ) {
            let value = f64::from_bits(value_bits);
            let escaped = label_value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
            let rendered_value = if value.is_nan() { "NaN".to_string() } else if value.is_infinite() { if value > 0.0 { "+Inf".into() } else { "-Inf".into() } } else { format!("{value:?}") };
            let mut line = format!("{name}{{l=\"{escaped}\"}} {rendered_value}");
            if let Some(timestamp_ms) = timestamp_ms { line.push_str(&format!(" {timestamp_ms}")); }
            let exposition = parse(line.as_bytes()).unwrap();
            let got = &exposition.samples[0];
            prop_assert_eq!(got.labels.metric_name(), Some(name.as_str()));
            prop_assert_eq!(got.labels.get("l").unwrap_or(""), label_value.as_str());
            prop_assert!(got.value.to_bits() == value.to_bits() || (value.is_nan() && got.value.is_nan()));
            prop_assert_eq!(got.timestamp_ms, timestamp_ms);
        }
    }
}
