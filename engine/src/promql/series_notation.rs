//! Prometheus' expanding series notation, as its test scripts (`load` blocks of promqltest) and
//! promtool's rule unit tests (`input_series`) write it: `metric{a="b"} 1+2x3 _ stale 5x2`.
//!
//! Semantics (promql/parser `ParseSeriesDesc`): `a+bxn` and `a-bxn` expand to the n+1 values
//! a, a±b, ..., a±n·b; `axn` repeats a n+1 times; `_` is one step without a sample, `_xn` n such
//! steps; `stale` is a staleness marker; numbers accept `Inf` and `NaN` (`0x2` is 0 repeated, not hex). Native-histogram
//! literals (`{{...}}`) are not supported here: the caller decides whether to skip the line.

use crate::model::{Labels, STALE_NAN_BITS};
use promql_parser::parser::{parse, Expr};

/// Parses `metric{a="b"}`, `{__name__="m"}` or `{}` into labels; only `=` matchers are allowed.
pub fn parse_series_labels(text: &str) -> Result<Labels, String> {
    if text.trim() == "{}" {
        return Ok(Labels::empty());
    }
    let Ok(Expr::VectorSelector(selector)) = parse(text) else {
        return Err(format!("cannot parse series {text:?}"));
    };
    if !selector.matchers.or_matchers.is_empty()
        || selector.matchers.matchers.iter().any(|matcher| matcher.op != promql_parser::label::MatchOp::Equal)
    {
        return Err(format!("series {text:?} uses a matcher other than ="));
    }
    let mut pairs: Vec<(String, String)> =
        selector.matchers.matchers.iter().map(|matcher| (matcher.name.clone(), matcher.value.clone())).collect();
    if let Some(name) = selector.name {
        pairs.push(("__name__".to_string(), name));
    }
    Ok(Labels::from_pairs(pairs))
}

/// A number as the notation writes it: decimal, `Inf`/`-Inf`/`NaN` (any case), hex integers.
pub fn parse_number(text: &str) -> Option<f64> {
    let lower = text.to_ascii_lowercase();
    let (sign, magnitude) = match lower.strip_prefix('-') {
        Some(rest) => (-1.0, rest),
        None => (1.0, lower.strip_prefix('+').unwrap_or(&lower)),
    };
    match magnitude {
        "inf" => return Some(sign * f64::INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    if let Some(hex) = magnitude.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok().map(|value| sign * value as f64);
    }
    text.parse().ok()
}

/// Expands whitespace-separated value tokens; `None` is a step without a sample. Returns `None`
/// when a token does not parse (or is a native-histogram literal).
pub fn expand_values(tokens: &[&str]) -> Option<Vec<Option<f64>>> {
    let mut out = Vec::new();
    for token in tokens {
        if token.starts_with("{{") {
            return None;
        }
        match *token {
            "_" => out.push(None),
            "stale" => out.push(Some(f64::from_bits(STALE_NAN_BITS))),
            _ => {
                let repeat = token
                    .rsplit_once('x')
                    .filter(|(_, count)| !count.is_empty() && count.bytes().all(|byte| byte.is_ascii_digit()));
                let Some((head, count)) = repeat else {
                    out.push(Some(parse_number(token)?));
                    continue;
                };
                let count: usize = count.parse().ok()?;
                if count > crate::limits::SERIES_NOTATION_EXPANSION_COUNT_MAX {
                    return None;
                }
                if head == "_" {
                    out.extend(std::iter::repeat_n(None, count));
                    continue;
                }
                // `a+b` or `a-b`: the operator is the first sign not at the start or after an exponent.
                let bytes = head.as_bytes();
                let split =
                    (1..bytes.len()).find(|&i| matches!(bytes[i], b'+' | b'-') && !matches!(bytes[i - 1], b'e' | b'E'));
                let (start, step) = match split {
                    Some(index) => {
                        let step = parse_number(&head[index + 1..])?;
                        (parse_number(&head[..index])?, if bytes[index] == b'-' { -step } else { step })
                    }
                    None => (parse_number(head)?, 0.0),
                };
                out.extend((0..=count).map(|index| Some(start + step * index as f64)));
            }
        }
        if out.len() > crate::limits::SERIES_NOTATION_EXPANSION_COUNT_MAX {
            return None;
        }
    }
    Some(out)
}

/// Splits `series values...` where the series may contain spaces inside its braces.
pub fn split_series_line(line: &str) -> (&str, Vec<&str>) {
    let end = match line.find('{') {
        Some(open) if !line[..open].contains(char::is_whitespace) => {
            let mut depth = 0;
            let mut in_quote = false;
            let mut previous = ' ';
            let mut end = line.len();
            for (index, character) in line.char_indices().skip(open) {
                match character {
                    '"' if previous != '\\' => in_quote = !in_quote,
                    '{' if !in_quote => depth += 1,
                    '}' if !in_quote => {
                        depth -= 1;
                        if depth == 0 {
                            end = index + 1;
                            break;
                        }
                    }
                    _ => {}
                }
                previous = character;
            }
            end
        }
        _ => line.find(char::is_whitespace).unwrap_or(line.len()),
    };
    (&line[..end], line[end..].split_whitespace().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(text: &str, expected: &[Option<f64>]) {
        let tokens: Vec<&str> = text.split_whitespace().collect();
        let got = expand_values(&tokens).unwrap_or_else(|| panic!("{text:?} does not parse"));
        assert_eq!(got.len(), expected.len(), "{text:?}: {got:?}");
        for (got, want) in got.iter().zip(expected) {
            match (got, want) {
                (Some(got), Some(want)) if want.is_nan() => assert!(got.is_nan(), "{text:?}"),
                _ => assert_eq!(got, want, "{text:?}"),
            }
        }
    }

    #[test]
    fn expands_promtool_notation() {
        check("1+2x3", &[Some(1.0), Some(3.0), Some(5.0), Some(7.0)]);
        check("10-1x2 _ 4", &[Some(10.0), Some(9.0), Some(8.0), None, Some(4.0)]);
        check("5x2", &[Some(5.0), Some(5.0), Some(5.0)]);
        check("_x2 1e3 -1e-1+1e-1x1", &[None, None, Some(1000.0), Some(-0.1), Some(0.0)]);
        check("Inf -inf NaN", &[Some(f64::INFINITY), Some(f64::NEG_INFINITY), Some(f64::NAN)]);
        // `x` is the repetition operator before it is a hex prefix.
        check("0x2", &[Some(0.0), Some(0.0), Some(0.0)]);
        let stale = expand_values(&["stale"]).unwrap();
        assert_eq!(stale[0].map(f64::to_bits), Some(STALE_NAN_BITS));
        assert_eq!(expand_values(&["1+x"]), None);
        assert_eq!(expand_values(&["{{schema:1}}"]), None);
        assert_eq!(expand_values(&["1x99999999999"]), None, "bounded expansion");
    }

    #[test]
    fn splits_series_with_spaces_in_braces() {
        assert_eq!(split_series_line(r#"m{a="x y", b="}"} 1 2"#), (r#"m{a="x y", b="}"}"#, vec!["1", "2"]));
        assert_eq!(split_series_line("m 1"), ("m", vec!["1"]));
        assert_eq!(parse_series_labels(r#"m{a="b"}"#).unwrap().to_string(), r#"m{a="b"}"#);
        assert!(parse_series_labels(r#"m{a=~"b"}"#).is_err());
    }
}
