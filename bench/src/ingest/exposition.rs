//! A small reader for the text exposition format 0.0.4, enough to pick counters and gauges out of
//! a monitoring system's own `/metrics` page (and to check the generator's output).
//!
//! Invariants: comment and blank lines are skipped; a sample line is `name{labels} value
//! [timestamp]`; label values are unescaped (`\\`, `\"`, `\n`); a malformed line is an error that
//! names its 1-based line number, never a panic. Stateless; safe from any thread.

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Labels in the order written.
    pub labels: LabelPairs,
    /// The line's text before the value (`name{labels}`), as a series identity.
    pub series: String,
    /// The value.
    pub value: f64,
}

/// Why a body does not parse.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ExpositionError {
    /// A sample line that does not fit the format.
    #[error("line {line_number}: {message}")]
    Malformed {
        /// 1-based line.
        line_number: usize,
        /// What is wrong.
        message: &'static str,
    },
}

/// Label pairs in the order written.
pub type LabelPairs = Vec<(String, String)>;

fn parse_labels(text: &str) -> Result<(LabelPairs, &str), &'static str> {
    // `text` starts just after `{`.
    let mut labels = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let equals = rest.find('=').ok_or("expected '=' in labels")?;
        let name = rest[..equals].trim().to_string();
        if name.is_empty() {
            return Err("empty label name");
        }
        rest = rest[equals + 1..].trim_start().strip_prefix('"').ok_or("label value must be quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value"),
                Some((index, '"')) => break index,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other @ ('\\' | '"'))) => value.push(other),
                    _ => return Err("invalid escape in label value"),
                },
                Some((_, other)) => value.push(other),
            }
        };
        labels.push((name, value));
        rest = &rest[end + 1..];
    }
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

/// Parses every sample line of `body`.
pub fn parse(body: &str) -> Result<Vec<Sample>, ExpositionError> {
    let mut samples = Vec::new();
    for (index, raw_line) in body.lines().enumerate() {
        let line = raw_line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let malformed = |message| ExpositionError::Malformed { line_number: index + 1, message };
        let name_end = line.find(['{', ' ', '\t']).ok_or_else(|| malformed("expected a value after the name"))?;
        let name = &line[..name_end];
        let (labels, rest) = match line[name_end..].strip_prefix('{') {
            Some(after) => parse_labels(after).map_err(malformed)?,
            None => (Vec::new(), &line[name_end..]),
        };
        let series = line[..line.len() - rest.len()].to_string();
        let mut fields = rest.split_whitespace();
        let value_text = fields.next().ok_or_else(|| malformed("expected a value"))?;
        let value = parse_value(value_text).ok_or_else(|| malformed("value is not a float"))?;
        if let Some(timestamp) = fields.next() {
            timestamp.parse::<i64>().map_err(|_| malformed("timestamp is not an integer"))?;
        }
        if fields.next().is_some() {
            return Err(malformed("unexpected text after the timestamp"));
        }
        samples.push(Sample { name: name.to_string(), labels, series, value });
    }
    Ok(samples)
}

/// The sum of every sample named `name` whose labels include all of `label_filter`, or `None`
/// when no sample matches.
pub fn sum(samples: &[Sample], name: &str, label_filter: &[(&str, &str)]) -> Option<f64> {
    let mut matched = samples
        .iter()
        .filter(|sample| {
            sample.name == name
                && label_filter.iter().all(|(key, value)| sample.labels.iter().any(|(k, v)| k == key && v == value))
        })
        .map(|sample| sample.value)
        .peekable();
    matched.peek()?;
    Some(matched.sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(labels: &[(&str, &str)]) -> Vec<(String, String)> {
        labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[track_caller]
    fn check(line: &str, name: &str, labels: &[(&str, &str)], value: f64) {
        let samples = parse(line).expect("parses");
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].name, name);
        assert_eq!(samples[0].labels, owned(labels));
        assert!(samples[0].value == value || (value.is_nan() && samples[0].value.is_nan()), "value of {line:?}");
    }

    #[track_caller]
    fn check_error(body: &str, line_number: usize, message: &'static str) {
        assert_eq!(parse(body), Err(ExpositionError::Malformed { line_number, message }));
    }

    #[test]
    fn sample_lines() {
        check("up 1", "up", &[], 1.0);
        check("  up\t-2.5e3 1700000000000 ", "up", &[], -2500.0);
        check("a_total{x=\"1\",y=\"q\\\"u\\\\o\\nte\"} 3", "a_total", &[("x", "1"), ("y", "q\"u\\o\nte")], 3.0);
        check("a{ x = \"\" , } +Inf", "a", &[("x", "")], f64::INFINITY);
        check("b{le=\"+Inf\"} NaN", "b", &[("le", "+Inf")], f64::NAN);
        check("c{} 0.25", "c", &[], 0.25);
    }

    #[test]
    fn malformed_lines_are_errors() {
        check_error("# HELP up x\n\nup", 3, "expected a value after the name");
        check_error("up{a=1} 1", 1, "label value must be quoted");
        check_error("up{a=\"1} 1", 1, "unterminated label value");
        check_error("up{a=\"\\x\"} 1", 1, "invalid escape in label value");
        check_error("up{a} 1", 1, "expected '=' in labels");
        check_error("up x", 1, "value is not a float");
        check_error("up 1 2.5", 1, "timestamp is not an integer");
        check_error("up 1 2 3", 1, "unexpected text after the timestamp");
        check_error("up{a=\"1\"}", 1, "expected a value");
    }

    #[test]
    fn sum_filters_by_name_and_labels() {
        let samples = parse(
            "vm_rows_inserted_total{type=\"promscrape\"} 10\nvm_rows_inserted_total{type=\"influx\"} 5\nother 1\n",
        )
        .expect("parses");
        assert_eq!(sum(&samples, "vm_rows_inserted_total", &[]), Some(15.0));
        assert_eq!(sum(&samples, "vm_rows_inserted_total", &[("type", "promscrape")]), Some(10.0));
        assert_eq!(sum(&samples, "vm_rows_inserted_total", &[("type", "graphite")]), None);
        assert_eq!(sum(&samples, "missing", &[]), None);
    }
}
