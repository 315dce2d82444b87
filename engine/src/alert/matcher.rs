//! Alertmanager label matchers: `name="value"`, `!=`, `=~`, `!~`, the text syntax routes,
//! inhibition rules, silences and API filters are written in, and the API v2 JSON shape
//! (`{"name","value","isRegex","isEqual"}`).
//!
//! Semantics match Alertmanager 0.25 (`pkg/labels/matcher.go`, `pkg/labels/parse.go`):
//! - A regex is anchored as `^(?:pattern)$`. Unlike PromQL selectors (`model::Matcher`), `.` does
//!   not match a newline, as in Go's `regexp` without the `s` flag.
//! - A missing label matches as the empty string.
//! - [`parse_matcher`] is as tolerant as `ParseMatcher`: the value may be quoted or not, with
//!   OpenMetrics escapes (`\"`, `\n`, `\\`); a stray backslash is literal.
//! - [`parse_matchers`] splits on commas outside double quotes, with an optional `{`/`}` and a
//!   tolerated trailing comma (`ParseMatchers`).
//! - Matchers order by name, then value, then type (`Matchers.Less`); a route's key prints its
//!   matchers in that order.
//!
//! Known differences: Rust's `regex` treats `\d`, `\w`, `\s` as Unicode classes (Go: ASCII) and
//! bounds a compiled pattern's size; both as for PromQL selectors elsewhere in the engine.
//!
//! Concurrency: plain values; `Send + Sync`.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::Labels;

/// How a [`Matcher`] compares a label value. Declared in Alertmanager's order (`MatchType`),
/// which breaks ties when sorting matchers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MatchType {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~` (anchored regex)
    Regex,
    /// `!~` (anchored regex, negated)
    NotRegex,
}

impl MatchType {
    /// The operator as written: `=`, `!=`, `=~` or `!~`.
    pub fn operator(self) -> &'static str {
        match self {
            MatchType::Equal => "=",
            MatchType::NotEqual => "!=",
            MatchType::Regex => "=~",
            MatchType::NotRegex => "!~",
        }
    }

    /// The type from API v2's flags (`isRegex`, `isEqual`).
    pub fn from_flags(is_regex: bool, is_equal: bool) -> MatchType {
        match (is_regex, is_equal) {
            (false, true) => MatchType::Equal,
            (false, false) => MatchType::NotEqual,
            (true, true) => MatchType::Regex,
            (true, false) => MatchType::NotRegex,
        }
    }

    /// True for `=~` and `!~`.
    pub fn is_regex(self) -> bool {
        matches!(self, MatchType::Regex | MatchType::NotRegex)
    }

    /// True for `=` and `=~`.
    pub fn is_equal(self) -> bool {
        matches!(self, MatchType::Equal | MatchType::Regex)
    }
}

/// Why a matcher could not be built or parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    /// The text is not `name op value` (Alertmanager: "bad matcher format").
    #[error("bad matcher format: {input}")]
    BadFormat {
        /// The matcher text as given.
        input: String,
    },
    /// A `"` inside the value that is neither escaped nor the closing quote.
    #[error("matcher value contains unescaped double quote: {value}")]
    UnescapedQuote {
        /// The raw value text.
        value: String,
    },
    /// The pattern of a `=~` or `!~` matcher does not compile.
    #[error("invalid regular expression {pattern:?}: {message}")]
    InvalidRegex {
        /// The pattern as given.
        pattern: String,
        /// The regex compiler's message.
        message: String,
    },
}

/// One label matcher. Equality and ordering look at name, type and value only.
#[derive(Clone, Debug)]
pub struct Matcher {
    /// The label name.
    pub name: String,
    /// The comparison.
    pub match_type: MatchType,
    /// The literal value, or the regex source for `=~` and `!~`.
    pub value: String,
    regex: Option<regex::Regex>,
}

impl Matcher {
    /// Builds a matcher, compiling regexes as `^(?:value)$` (`labels.NewMatcher`). The name is
    /// not validated here: the text parser and silences apply their own rules.
    pub fn new(match_type: MatchType, name: &str, value: &str) -> Result<Matcher, MatcherError> {
        let regex = if match_type.is_regex() {
            let compiled = regex::Regex::new(&format!("^(?:{value})$")).map_err(|error| {
                MatcherError::InvalidRegex { pattern: value.to_string(), message: error.to_string() }
            })?;
            Some(compiled)
        } else {
            None
        };
        Ok(Matcher { name: name.to_string(), match_type, value: value.to_string(), regex })
    }

    /// True when `value` (the empty string for a missing label) satisfies the matcher.
    pub fn matches_value(&self, value: &str) -> bool {
        match (self.match_type, &self.regex) {
            (MatchType::Equal, _) => value == self.value,
            (MatchType::NotEqual, _) => value != self.value,
            (MatchType::Regex, Some(regex)) => regex.is_match(value),
            (MatchType::NotRegex, Some(regex)) => !regex.is_match(value),
            (MatchType::Regex | MatchType::NotRegex, None) => unreachable!("regex matcher built without a regex"),
        }
    }

    /// True when the label set satisfies the matcher; a missing label matches as "".
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_value(labels.get(&self.name).unwrap_or(""))
    }

    /// True for `=~` and `!~` (API v2 `isRegex`).
    pub fn is_regex(&self) -> bool {
        self.match_type.is_regex()
    }

    /// True for `=` and `=~` (API v2 `isEqual`).
    pub fn is_equal(&self) -> bool {
        self.match_type.is_equal()
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.match_type == other.match_type && self.value == other.value
    }
}

impl Eq for Matcher {}

impl PartialOrd for Matcher {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Matcher {
    /// Name, then value, then type (`Matchers.Less`).
    fn cmp(&self, other: &Self) -> Ordering {
        (&self.name, &self.value, self.match_type).cmp(&(&other.name, &other.value, other.match_type))
    }
}

impl fmt::Display for Matcher {
    /// `name="value"` with the value OpenMetrics-escaped (`Matcher.String`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}\"{}\"", self.name, self.match_type.operator(), open_metrics_escape(&self.value))
    }
}

/// Escapes `\`, newline and `"` as OpenMetrics does (`openMetricsEscape`).
fn open_metrics_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for character in value.chars() {
        match character {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' => out.push_str("\\\""),
            other => out.push(other),
        }
    }
    out
}

/// The API v2 shape of a matcher.
#[derive(Serialize, Deserialize)]
struct MatcherJson {
    name: String,
    value: String,
    #[serde(rename = "isRegex", default)]
    is_regex: bool,
    #[serde(rename = "isEqual", default = "default_is_equal")]
    is_equal: bool,
}

fn default_is_equal() -> bool {
    true
}

impl Serialize for Matcher {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        MatcherJson {
            name: self.name.clone(),
            value: self.value.clone(),
            is_regex: self.is_regex(),
            is_equal: self.is_equal(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Matcher {
    /// API v2 shape; `isRegex` defaults to false and `isEqual` to true (`PostableSilenceToProto`).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = MatcherJson::deserialize(deserializer)?;
        Matcher::new(MatchType::from_flags(json.is_regex, json.is_equal), &json.name, &json.value)
            .map_err(serde::de::Error::custom)
    }
}

/// A conjunction of matchers: a label set matches when every matcher does (`labels.Matchers`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Matchers(pub Vec<Matcher>);

impl Matchers {
    /// Wraps matchers in the given order.
    pub fn new(matchers: Vec<Matcher>) -> Matchers {
        Matchers(matchers)
    }

    /// Wraps matchers sorted by name, value, type (`sort.Sort(labels.Matchers)`).
    pub fn sorted(mut matchers: Vec<Matcher>) -> Matchers {
        matchers.sort();
        Matchers(matchers)
    }

    /// True when every matcher accepts the label set (so an empty list matches everything).
    pub fn matches(&self, labels: &Labels) -> bool {
        self.0.iter().all(|matcher| matcher.matches(labels))
    }

    /// The matchers in order.
    pub fn iter(&self) -> impl Iterator<Item = &Matcher> {
        self.0.iter()
    }

    /// Number of matchers.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Matchers {
    /// `{a="b",c=~"d"}`: no spaces, in stored order (`Matchers.String`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (index, matcher) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{matcher}")?;
        }
        f.write_str("}")
    }
}

/// Parses one matcher such as `job="api"`, `severity=~critical|warning` or `env != "prod"`
/// (`labels.ParseMatcher`): a label name (`[a-zA-Z_:][a-zA-Z0-9_:]*`), an operator, and a value
/// that is either quoted or runs to the end; whitespace around each token is dropped.
pub fn parse_matcher(text: &str) -> Result<Matcher, MatcherError> {
    let bad_format = || MatcherError::BadFormat { input: text.to_string() };
    let rest = text.trim_start_matches(is_go_space);
    let name_length = rest
        .char_indices()
        .take_while(|&(index, character)| {
            character == '_'
                || character == ':'
                || character.is_ascii_alphabetic()
                || (index > 0 && character.is_ascii_digit())
        })
        .count();
    if name_length == 0 {
        return Err(bad_format());
    }
    let (name, rest) = rest.split_at(name_length);
    let rest = rest.trim_start_matches(is_go_space);
    // `=~` before `=`, or the `~` would become part of the value.
    let (match_type, rest) = if let Some(rest) = rest.strip_prefix("=~") {
        (MatchType::Regex, rest)
    } else if let Some(rest) = rest.strip_prefix("!=") {
        (MatchType::NotEqual, rest)
    } else if let Some(rest) = rest.strip_prefix("!~") {
        (MatchType::NotRegex, rest)
    } else if let Some(rest) = rest.strip_prefix('=') {
        (MatchType::Equal, rest)
    } else {
        return Err(bad_format());
    };
    let raw_value = rest.trim_matches(is_go_space);
    let value = unescape_value(raw_value)?;
    Matcher::new(match_type, name, &value)
}

/// Go's `\s` in RE2: ASCII space, tab, newline, form feed, carriage return.
fn is_go_space(character: char) -> bool {
    matches!(character, ' ' | '\t' | '\n' | '\x0C' | '\r')
}

/// Strips an opening quote (which then requires the closing one) and resolves `\"`, `\n`, `\\`;
/// any other backslash is literal.
fn unescape_value(raw_value: &str) -> Result<String, MatcherError> {
    let unescaped_quote = || MatcherError::UnescapedQuote { value: raw_value.to_string() };
    let (body, mut expect_trailing_quote) = match raw_value.strip_prefix('"') {
        Some(body) => (body, true),
        None => (raw_value, false),
    };
    let mut value = String::with_capacity(body.len());
    let mut escaped = false;
    for (index, character) in body.char_indices() {
        let is_last = index + character.len_utf8() == body.len();
        if escaped {
            escaped = false;
            match character {
                'n' => value.push('\n'),
                '"' | '\\' => value.push(character),
                other => {
                    value.push('\\');
                    value.push(other);
                }
            }
            continue;
        }
        match character {
            '\\' if !is_last => escaped = true,
            '\\' => value.push('\\'),
            '"' => {
                if !expect_trailing_quote || !is_last {
                    return Err(unescaped_quote());
                }
                expect_trailing_quote = false;
            }
            other => value.push(other),
        }
    }
    if expect_trailing_quote {
        return Err(unescaped_quote());
    }
    Ok(value)
}

/// Parses a comma-separated matcher list such as `{foo="bar", dings!=bums, }`
/// (`labels.ParseMatchers`): one optional leading `{` and trailing `}`; commas inside double
/// quotes do not split; a trailing comma is tolerated, an empty element elsewhere is an error.
pub fn parse_matchers(text: &str) -> Result<Vec<Matcher>, MatcherError> {
    let text = text.strip_prefix('{').unwrap_or(text);
    let text = text.strip_suffix('}').unwrap_or(text);
    let mut tokens: Vec<String> = Vec::new();
    let mut token = String::new();
    let mut inside_quotes = false;
    let mut escaped = false;
    for character in text.chars() {
        match character {
            ',' if !inside_quotes => {
                tokens.push(std::mem::take(&mut token));
                continue;
            }
            // A comma inside quotes leaves the escape state alone, as upstream.
            ',' => {}
            '"' if escaped => escaped = false,
            '"' => inside_quotes = !inside_quotes,
            '\\' => escaped = !escaped,
            _ => escaped = false,
        }
        token.push(character);
    }
    let last = token.trim_matches(char::is_whitespace);
    if !last.is_empty() {
        tokens.push(last.to_string());
    }
    tokens.iter().map(|token| parse_matcher(token)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(match_type: MatchType, name: &str, value: &str) -> Matcher {
        Matcher::new(match_type, name, value).expect("valid matcher")
    }

    #[test]
    fn parses_single_matchers_as_alertmanager() {
        #[track_caller]
        fn check(input: &str, expected: Result<(MatchType, &str, &str), MatcherError>) {
            let got = parse_matcher(input).map(|m| (m.match_type, m.name.clone(), m.value.clone()));
            let expected = expected.map(|(t, n, v)| (t, n.to_string(), v.to_string()));
            assert_eq!(got, expected, "input {input:?}");
        }
        use MatchType::*;
        check(r#"foo="bar""#, Ok((Equal, "foo", "bar")));
        check("foo=bar", Ok((Equal, "foo", "bar")));
        check("  foo  !=  bar  ", Ok((NotEqual, "foo", "bar")));
        check(r#"foo=~"5..""#, Ok((Regex, "foo", "5..")));
        check("foo!~bar", Ok((NotRegex, "foo", "bar")));
        check("foo=~~bar", Ok((Regex, "foo", "~bar")));
        check("foo!=~bar", Ok((NotEqual, "foo", "~bar")));
        check("foo=", Ok((Equal, "foo", "")));
        check(r#"foo="""#, Ok((Equal, "foo", "")));
        check("a:b_1=x", Ok((Equal, "a:b_1", "x")));
        check(r#"foo="a\"b""#, Ok((Equal, "foo", "a\"b")));
        check(r#"foo="a\nb""#, Ok((Equal, "foo", "a\nb")));
        check(r#"foo="a\\b""#, Ok((Equal, "foo", "a\\b")));
        // A spurious escape and a trailing backslash are literal.
        check(r#"foo="a\qb""#, Ok((Equal, "foo", "a\\qb")));
        check(r"foo=a\", Ok((Equal, "foo", "a\\")));
        check("foo=a b ", Ok((Equal, "foo", "a b")));
        check("foo=\"x\ny\"", Ok((Equal, "foo", "x\ny")));
        check("1foo=bar", Err(MatcherError::BadFormat { input: "1foo=bar".to_string() }));
        check("foo", Err(MatcherError::BadFormat { input: "foo".to_string() }));
        check("", Err(MatcherError::BadFormat { input: String::new() }));
        check("foo-bar=x", Err(MatcherError::BadFormat { input: "foo-bar=x".to_string() }));
        check(r#"foo="bar"#, Err(MatcherError::UnescapedQuote { value: "\"bar".to_string() }));
        check(r#"foo=b"ar"#, Err(MatcherError::UnescapedQuote { value: "b\"ar".to_string() }));
        check(r#"foo="b"ar""#, Err(MatcherError::UnescapedQuote { value: "\"b\"ar\"".to_string() }));
        check(r#"foo=""#, Err(MatcherError::UnescapedQuote { value: "\"".to_string() }));
        assert!(matches!(parse_matcher("foo=~(").unwrap_err(), MatcherError::InvalidRegex { .. }));
    }

    #[test]
    fn parses_matcher_lists_as_alertmanager() {
        #[track_caller]
        fn check(input: &str, expected: &[&str]) {
            let got: Vec<String> = parse_matchers(input)
                .unwrap_or_else(|e| panic!("{input:?}: {e}"))
                .iter()
                .map(|m| m.to_string())
                .collect();
            assert_eq!(got, expected, "input {input:?}");
        }
        check(r#"{foo = "bar", dings != "bums", }"#, &[r#"foo="bar""#, r#"dings!="bums""#]);
        check("foo=bar,dings!=bums", &[r#"foo="bar""#, r#"dings!="bums""#]);
        check("foo=bar, dings!=bums", &[r#"foo="bar""#, r#"dings!="bums""#]);
        check(r#"{quote="She said: \"Hi, ladies!\""}"#, &[r#"quote="She said: \"Hi, ladies!\"""#]);
        check(r#"statuscode=~"5..""#, &[r#"statuscode=~"5..""#]);
        check(r#"{a="x,y",b=~"1|2"}"#, &[r#"a="x,y""#, r#"b=~"1|2""#]);
        check("{}", &[]);
        check("", &[]);
        assert!(parse_matchers("a=b,,c=d").is_err(), "an empty element in the middle is an error");
        assert!(parse_matchers("a=b,c").is_err());
    }

    #[test]
    fn matches_with_missing_label_as_empty_string() {
        let labels = Labels::from_pairs([("alertname", "HighLatency"), ("severity", "critical")]);
        #[track_caller]
        fn check(labels: &Labels, text: &str, expected: bool) {
            assert_eq!(parse_matcher(text).expect("parses").matches(labels), expected, "{text}");
        }
        check(&labels, "severity=critical", true);
        check(&labels, "severity!=critical", false);
        check(&labels, "severity=~crit.*", true);
        check(&labels, "severity=~crit", false);
        check(&labels, "severity!~warn|info", true);
        check(&labels, "team=", true);
        check(&labels, "team!=ops", true);
        check(&labels, "team=~.*", true);
        check(&labels, "team=~.+", false);
        check(&labels, "team!~.+", true);
        // Anchoring wraps alternatives in a group.
        check(&labels, "severity=~crit|xyz", false);
        check(&labels, "severity=~critical|xyz", true);
        // `.` does not match a newline, as Go's regexp without the s flag.
        let multiline = Labels::from_pairs([("summary", "a\nb")]);
        check(&multiline, "summary=~a.b", false);
        check(&multiline, "summary=~\"a\\nb\"", true);
    }

    #[test]
    fn display_escapes_and_lists() {
        let matchers =
            Matchers::new(vec![matcher(MatchType::Equal, "a", "x\"y\\z\n"), matcher(MatchType::NotRegex, "b", "1|2")]);
        assert_eq!(matchers.to_string(), r#"{a="x\"y\\z\n",b!~"1|2"}"#);
        assert_eq!(Matchers::default().to_string(), "{}");
        // What Display prints parses back to the same matchers.
        let reparsed = Matchers::new(parse_matchers(&matchers.to_string()).expect("parses"));
        assert_eq!(reparsed, matchers);
    }

    #[test]
    fn sorts_by_name_then_value_then_type() {
        let sorted = Matchers::sorted(vec![
            matcher(MatchType::Regex, "b", "1"),
            matcher(MatchType::NotEqual, "a", "2"),
            matcher(MatchType::Equal, "b", "1"),
            matcher(MatchType::Equal, "a", "3"),
        ]);
        assert_eq!(sorted.to_string(), r#"{a!="2",a="3",b="1",b=~"1"}"#);
    }

    #[test]
    fn api_v2_json_shape() {
        let m = matcher(MatchType::NotRegex, "job", "api.*");
        let json = serde_json::to_string(&m).expect("serializes");
        assert_eq!(json, r#"{"name":"job","value":"api.*","isRegex":true,"isEqual":false}"#);
        let back: Matcher = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, m);
        let defaulted: Matcher = serde_json::from_str(r#"{"name":"a","value":"b"}"#).expect("deserializes");
        assert_eq!(defaulted.match_type, MatchType::Equal);
        assert!(serde_json::from_str::<Matcher>(r#"{"name":"a","value":"(","isRegex":true}"#).is_err());
    }
}
