//! Rule files: Prometheus' YAML format (model/rulefmt/rulefmt.go) parsed into [`GroupSpec`]s,
//! validated as `RuleGroups.Validate` and `Rule.Validate` do, and the config's `rule_files`
//! globs resolved to file paths.
//!
//! Invariants of a parsed [`RuleFile`]: group names are non-empty and unique in the file; every
//! rule is either recording or alerting, its expression parses, a recording rule has a valid
//! metric name and no `for`/`keep_firing_for`/annotations, label names are valid, alert
//! templates parse. Errors name the file, the group and the rule (1-based) as upstream:
//! `FILE: group "G", rule N, "NAME": MESSAGE`. Syntax errors carry serde's line and column.
//!
//! Concurrency: pure functions over text; globs read directories through `io::FileSystem`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::parse_duration_ms;
use crate::io::FileSystem;
use crate::template::{expand_alert, AlertTemplateData, TemplateError};

/// Most files one `rule_files` glob may match: a typo such as `/*` must not load a whole disk.
pub const GLOB_MATCH_COUNT_MAX: usize = 10_000;

/// Whether a rule records a series or raises alerts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleKind {
    /// `record:`.
    Recording,
    /// `alert:`.
    Alerting,
}

/// One rule as written in a file.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleSpec {
    /// Recording or alerting.
    pub kind: RuleKind,
    /// The `record` metric name or the `alert` name.
    pub name: String,
    /// The expression as written.
    pub expr: String,
    /// `for`: how long an alert stays pending before it fires.
    pub for_ms: i64,
    /// `keep_firing_for`: how long a firing alert keeps firing after its condition cleared.
    pub keep_firing_for_ms: i64,
    /// Rule labels (group labels merged in; the rule's own win).
    pub labels: BTreeMap<String, String>,
    /// Annotations (alerting only).
    pub annotations: BTreeMap<String, String>,
}

/// One group as written in a file.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupSpec {
    /// Group name, unique in its file.
    pub name: String,
    /// The file it came from, as the API shows it.
    pub file: String,
    /// `interval`, when set (else the config's `evaluation_interval`).
    pub interval_ms: Option<i64>,
    /// `limit`: most series a recording rule or alerts an alerting rule may produce; 0 for none.
    pub limit: usize,
    /// `query_offset`, when set (else the config's `rule_query_offset`).
    pub query_offset_ms: Option<i64>,
    /// Rules in evaluation order.
    pub rules: Vec<RuleSpec>,
}

/// A parsed rule file.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleFile {
    /// Its path, as given.
    pub file: String,
    /// Groups in file order.
    pub groups: Vec<GroupSpec>,
}

impl RuleFile {
    /// Number of rules in every group.
    pub fn rule_count(&self) -> usize {
        self.groups.iter().map(|group| group.rules.len()).sum()
    }
}

/// Why a rule file was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RuleFileError {
    /// The file could not be read.
    #[error("{file}: {message}")]
    Read {
        /// Path.
        file: String,
        /// Cause.
        message: String,
    },
    /// The YAML does not parse or has unknown or mistyped keys.
    #[error("{file}: {line}:{column}: {message}")]
    Syntax {
        /// Path.
        file: String,
        /// 1-based line (0 when unknown).
        line: usize,
        /// 1-based column (0 when unknown).
        column: usize,
        /// serde's message.
        message: String,
    },
    /// A group-level problem (name empty or repeated, bad duration).
    #[error("{file}: {message}")]
    Group {
        /// Path.
        file: String,
        /// Group name.
        group: String,
        /// What is wrong (with `line:column:` when known, as upstream).
        message: String,
    },
    /// A rule-level problem.
    #[error("{file}: group {group:?}, rule {rule_number}, {rule_name:?}: {message}")]
    Rule {
        /// Path.
        file: String,
        /// Group name.
        group: String,
        /// 1-based position of the rule in its group.
        rule_number: usize,
        /// `record` or `alert` value.
        rule_name: String,
        /// What is wrong.
        message: String,
    },
    /// A `rule_files` pattern is malformed or its directory cannot be listed.
    #[error("rule_files pattern {pattern:?}: {message}")]
    Glob {
        /// The pattern.
        pattern: String,
        /// What is wrong.
        message: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    groups: Vec<RawGroup>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default)]
    name: String,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    query_offset: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    record: Option<String>,
    #[serde(default)]
    alert: Option<String>,
    #[serde(default)]
    expr: Option<serde_yaml_ng::Value>,
    #[serde(default, rename = "for")]
    for_: Option<String>,
    #[serde(default)]
    keep_firing_for: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// Legacy (Prometheus 2.x) metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_' | b':'))
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b':')
}

/// Legacy label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

/// Line of the group named `name` (the line holding `name: NAME`), for upstream's `L:C:` prefix.
fn group_line(text: &str, name: &str, occurrence: usize) -> (usize, usize) {
    let mut seen = 0;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start().trim_start_matches("- ").trim_start();
        if let Some(rest) = trimmed.strip_prefix("name:") {
            let value = rest.trim().trim_matches(|c| c == '"' || c == '\'');
            if value == name {
                if seen == occurrence {
                    let column = line.find("name:").map_or(0, |index| index + 1);
                    return (index + 1, column);
                }
                seen += 1;
            }
        }
    }
    (0, 0)
}

/// Parses and validates the text of rule file `file`. Every problem found is returned, as
/// promtool lists them all.
pub fn parse_rule_file(file: &str, text: &str) -> Result<RuleFile, Vec<RuleFileError>> {
    let raw: RawFile = if text.trim().is_empty() {
        RawFile::default()
    } else {
        match serde_yaml_ng::from_str::<Option<RawFile>>(text) {
            Ok(raw) => raw.unwrap_or_default(),
            Err(error) => {
                let (line, column) = error.location().map_or((0, 0), |location| (location.line(), location.column()));
                let message = error.to_string();
                let message = match message.rfind(" at line ") {
                    Some(index) => message[..index].to_string(),
                    None => message,
                };
                return Err(vec![RuleFileError::Syntax { file: file.to_string(), line, column, message }]);
            }
        }
    };
    let mut errors = Vec::new();
    let mut groups = Vec::with_capacity(raw.groups.len());
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for group in raw.groups {
        let group_error =
            |message: String| RuleFileError::Group { file: file.to_string(), group: group.name.clone(), message };
        let occurrence = seen.get(&group.name).copied().unwrap_or(0);
        let (line, column) = group_line(text, &group.name, occurrence);
        if group.name.is_empty() {
            errors.push(group_error(format!("{line}:{column}: Groupname must not be empty")));
        }
        if occurrence > 0 {
            errors.push(group_error(format!(
                "{line}:{column}: groupname: \"{}\" is repeated in the same file",
                group.name
            )));
        }
        *seen.entry(group.name.clone()).or_insert(0) += 1;
        let mut duration = |key: &str, text: &Option<String>| -> Option<i64> {
            let text = text.as_ref()?;
            match parse_duration_ms(text) {
                Ok(value) => Some(value),
                Err(message) => {
                    errors.push(RuleFileError::Group {
                        file: file.to_string(),
                        group: group.name.clone(),
                        message: format!("group {:?}: {key}: {message}", group.name),
                    });
                    None
                }
            }
        };
        let interval_ms = duration("interval", &group.interval);
        let query_offset_ms = duration("query_offset", &group.query_offset);
        if interval_ms == Some(0) {
            errors.push(group_error(format!("group {:?}: interval must be greater than zero", group.name)));
        }
        for name in group.labels.keys() {
            if !is_valid_label_name(name) || name == crate::model::METRIC_NAME_LABEL {
                errors.push(group_error(format!("invalid label name: {name}")));
            }
        }
        let limit = match group.limit {
            None => 0,
            Some(limit) if limit >= 0 => limit as usize,
            Some(limit) => {
                errors.push(group_error(format!("group {:?}: limit must not be negative, got {limit}", group.name)));
                0
            }
        };
        let mut rules = Vec::with_capacity(group.rules.len());
        for (index, rule) in group.rules.into_iter().enumerate() {
            let name = rule.alert.clone().filter(|name| !name.is_empty()).or(rule.record.clone()).unwrap_or_default();
            let mut rule_errors = Vec::new();
            let spec = validate_rule(rule, &group.labels, &mut rule_errors);
            for message in rule_errors {
                errors.push(RuleFileError::Rule {
                    file: file.to_string(),
                    group: group.name.clone(),
                    rule_number: index + 1,
                    rule_name: name.clone(),
                    message,
                });
            }
            if let Some(spec) = spec {
                rules.push(spec);
            }
        }
        groups.push(GroupSpec { name: group.name, file: file.to_string(), interval_ms, limit, query_offset_ms, rules });
    }
    if errors.is_empty() {
        Ok(RuleFile { file: file.to_string(), groups })
    } else {
        Err(errors)
    }
}

/// Checks one rule as `rulefmt.Rule.Validate`; pushes messages, returns the rule when it is whole.
fn validate_rule(rule: RawRule, group_labels: &BTreeMap<String, String>, errors: &mut Vec<String>) -> Option<RuleSpec> {
    let record = rule.record.unwrap_or_default();
    let alert = rule.alert.unwrap_or_default();
    if !record.is_empty() && !alert.is_empty() {
        errors.push("only one of 'record' and 'alert' must be set".to_string());
    }
    if record.is_empty() && alert.is_empty() {
        errors.push("one of 'record' or 'alert' must be set".to_string());
    }
    // `expr` may be written as a number (`expr: 1`), which YAML types as an integer.
    let expr = match rule.expr {
        None | Some(serde_yaml_ng::Value::Null) => String::new(),
        Some(serde_yaml_ng::Value::String(text)) => text,
        Some(serde_yaml_ng::Value::Number(number)) => number.to_string(),
        Some(serde_yaml_ng::Value::Bool(value)) => value.to_string(),
        Some(_) => {
            errors.push("field 'expr' must be a string".to_string());
            String::new()
        }
    };
    if expr.is_empty() {
        errors.push("field 'expr' must be set in rule".to_string());
    } else if let Err(message) = promql_parser::parser::parse(&expr) {
        errors.push(format!("could not parse expression: {message}"));
    }
    let mut duration = |key: &str, text: Option<String>| -> i64 {
        let Some(text) = text else { return 0 };
        parse_duration_ms(&text).unwrap_or_else(|message| {
            errors.push(format!("{key}: {message}"));
            0
        })
    };
    let for_ms = duration("for", rule.for_);
    let keep_firing_for_ms = duration("keep_firing_for", rule.keep_firing_for);
    if !record.is_empty() {
        if !rule.annotations.is_empty() {
            errors.push("invalid field 'annotations' in recording rule".to_string());
        }
        if for_ms != 0 {
            errors.push("invalid field 'for' in recording rule".to_string());
        }
        if keep_firing_for_ms != 0 {
            errors.push("invalid field 'keep_firing_for' in recording rule".to_string());
        }
        if !is_valid_metric_name(&record) {
            errors.push(format!("invalid recording rule name: {record}"));
        }
    }
    for name in rule.labels.keys() {
        if !is_valid_label_name(name) || name == crate::model::METRIC_NAME_LABEL {
            errors.push(format!("invalid label name: {name}"));
        }
    }
    for name in rule.annotations.keys() {
        if !is_valid_label_name(name) {
            errors.push(format!("invalid annotation name: {name}"));
        }
    }
    if !alert.is_empty() {
        // As rulefmt's testTemplateParsing: parse each label and annotation template against
        // empty data; only parse errors count (execution may legitimately fail on empty data).
        let empty = BTreeMap::new();
        let data = AlertTemplateData { labels: &empty, external_labels: &empty, external_url: "", value: 0.0 };
        let query = |_: &str| Ok(Vec::new());
        let mut check = |kind: &str, key: &str, text: &str| {
            if let Err(error @ TemplateError::Parse { .. }) =
                expand_alert(&format!("__alert_{alert}"), text, &data, &query)
            {
                errors.push(format!("{kind} {key:?}: {error}"));
            }
        };
        for (key, text) in &rule.labels {
            check("label", key, text);
        }
        for (key, text) in &rule.annotations {
            check("annotation", key, text);
        }
    }
    if !errors.is_empty() {
        return None;
    }
    let mut labels = group_labels.clone();
    labels.extend(rule.labels);
    labels.retain(|_, value| !value.is_empty());
    let (kind, name) = if record.is_empty() { (RuleKind::Alerting, alert) } else { (RuleKind::Recording, record) };
    Some(RuleSpec { kind, name, expr, for_ms, keep_firing_for_ms, labels, annotations: rule.annotations })
}

/// Reads and parses `path` through `fs`; `display` is the name errors and the API show.
pub fn load_rule_file(fs: &dyn FileSystem, path: &Path) -> Result<RuleFile, Vec<RuleFileError>> {
    let file = path.display().to_string();
    let bytes =
        fs.read(path).map_err(|error| vec![RuleFileError::Read { file: file.clone(), message: error.to_string() }])?;
    let text = String::from_utf8(bytes)
        .map_err(|error| vec![RuleFileError::Read { file: file.clone(), message: format!("not UTF-8: {error}") }])?;
    parse_rule_file(&file, &text)
}

/// Resolves `rule_files` patterns: relative ones against `base_dir` (the config file's
/// directory), `*`, `?` and `[...]` in the last path component matched against the directory's
/// entries (listed through `fs`, sorted). A pattern without metacharacters names one file,
/// which need not exist yet (reading it reports the error). A glob matching nothing is not an
/// error, as in Prometheus (`filepath.Glob`).
pub fn resolve_rule_files(
    fs: &dyn FileSystem,
    base_dir: &Path,
    patterns: &[String],
) -> Result<Vec<PathBuf>, RuleFileError> {
    let mut files = Vec::new();
    for pattern in patterns {
        let full = if Path::new(pattern).is_absolute() { PathBuf::from(pattern) } else { base_dir.join(pattern) };
        let name = full.file_name().map(|name| name.to_string_lossy().to_string()).unwrap_or_default();
        let dir = full.parent().map(Path::to_path_buf).unwrap_or_default();
        if dir.to_string_lossy().contains(['*', '?', '[']) {
            return Err(RuleFileError::Glob {
                pattern: pattern.clone(),
                message: "wildcards are supported in the last path component only".to_string(),
            });
        }
        if !name.contains(['*', '?', '[']) {
            files.push(full);
            continue;
        }
        let pattern_chars: Vec<char> = name.chars().collect();
        validate_glob(&pattern_chars).map_err(|message| RuleFileError::Glob { pattern: pattern.clone(), message })?;
        let entries = match fs.list_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(error) => {
                return Err(RuleFileError::Glob {
                    pattern: pattern.clone(),
                    message: format!("list {}: {error}", dir.display()),
                })
            }
        };
        for entry in entries {
            let entry_chars: Vec<char> = entry.chars().collect();
            if glob_match(&pattern_chars, &entry_chars) {
                if files.len() >= GLOB_MATCH_COUNT_MAX {
                    return Err(RuleFileError::Glob {
                        pattern: pattern.clone(),
                        message: format!("matches more than {GLOB_MATCH_COUNT_MAX} files"),
                    });
                }
                files.push(dir.join(entry));
            }
        }
    }
    files.dedup();
    Ok(files)
}

fn validate_glob(pattern: &[char]) -> Result<(), String> {
    let mut index = 0;
    while index < pattern.len() {
        match pattern[index] {
            '[' => {
                let close = pattern[index + 1..].iter().skip(1).position(|&c| c == ']');
                match close {
                    Some(offset) => index += offset + 2,
                    None => return Err("syntax error in pattern: unclosed '['".to_string()),
                }
            }
            '\\' if index + 1 == pattern.len() => return Err("syntax error in pattern: trailing '\\'".to_string()),
            '\\' => index += 1,
            _ => {}
        }
        index += 1;
    }
    Ok(())
}

/// Go `path.Match` on one component: `*` any run (not `/`), `?` one char, `[a-z]`/`[^a]` classes,
/// `\` escapes. Iterative with one backtrack point per `*`, so no input is exponential.
fn glob_match(pattern: &[char], name: &[char]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() {
            match pattern[p] {
                '*' => {
                    star = Some((p, n));
                    p += 1;
                    continue;
                }
                '?' => {
                    p += 1;
                    n += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = class_match(pattern, p, name[n]) {
                        if matched {
                            p = next;
                            n += 1;
                            continue;
                        }
                    }
                }
                '\\' if p + 1 < pattern.len() && pattern[p + 1] == name[n] => {
                    p += 2;
                    n += 1;
                    continue;
                }
                c if c == name[n] => {
                    p += 1;
                    n += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((star_p, star_n)) => {
                p = star_p + 1;
                n = star_n + 1;
                star = Some((star_p, star_n + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Matches `c` against the class starting at `pattern[start] == '['`; returns (matched, index after `]`).
fn class_match(pattern: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut index = start + 1;
    let negated = pattern.get(index) == Some(&'^');
    if negated {
        index += 1;
    }
    let mut matched = false;
    let mut first = true;
    while index < pattern.len() && (first || pattern[index] != ']') {
        first = false;
        let low = pattern[index];
        if index + 2 < pattern.len() && pattern[index + 1] == '-' && pattern[index + 2] != ']' {
            let high = pattern[index + 2];
            matched |= low <= c && c <= high;
            index += 3;
        } else {
            matched |= low == c;
            index += 1;
        }
    }
    if index >= pattern.len() {
        return None;
    }
    Some((matched != negated, index + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::MemFileSystem;

    const VALID: &str = r#"
groups:
  - name: example
    interval: 30s
    limit: 10
    query_offset: 1m
    labels:
      team: a
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
        labels:
          team: b
      - alert: HighLoad
        expr: vector(1) > 0
        for: 5m
        keep_firing_for: 1m
        labels:
          severity: page
        annotations:
          summary: "load is {{ $value }} on {{ $labels.instance }}"
  - name: other
    rules:
      - record: c
        expr: 1
"#;

    #[test]
    fn valid_file_parses_with_every_key() {
        let file = parse_rule_file("rules.yml", VALID).unwrap();
        assert_eq!(file.groups.len(), 2);
        assert_eq!(file.rule_count(), 3);
        let group = &file.groups[0];
        assert_eq!((group.interval_ms, group.limit, group.query_offset_ms), (Some(30_000), 10, Some(60_000)));
        assert_eq!(group.rules[0].kind, RuleKind::Recording);
        assert_eq!(group.rules[0].labels.get("team").map(String::as_str), Some("b"), "rule labels win");
        let alert = &group.rules[1];
        assert_eq!((alert.kind, alert.for_ms, alert.keep_firing_for_ms), (RuleKind::Alerting, 300_000, 60_000));
        assert_eq!(alert.labels.get("team").map(String::as_str), Some("a"), "group labels apply");
        assert_eq!(file.groups[1].rules[0].expr, "1");
        assert_eq!(file.groups[1].interval_ms, None);
        assert!(parse_rule_file("empty.yml", "").unwrap().groups.is_empty());
    }

    #[test]
    fn every_validation_error() {
        #[track_caller]
        fn check(text: &str, expected: &[&str]) {
            let errors = parse_rule_file("f.yml", text).expect_err(text);
            let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
            for part in expected {
                assert!(messages.iter().any(|message| message.contains(part)), "{messages:?} lacks {part:?}");
            }
        }
        let rule = |body: &str| format!("groups:\n  - name: g\n    rules:\n      - {body}\n");
        check("groups:\n  - name: g\n  - name: g\n", &["f.yml: 3:5: groupname: \"g\" is repeated in the same file"]);
        check("groups:\n  - rules: []\n", &["Groupname must not be empty"]);
        check(
            &rule("record: a\n        alert: b\n        expr: up"),
            &["group \"g\", rule 1, \"b\": only one of 'record' and 'alert' must be set"],
        );
        check(&rule("expr: up"), &["rule 1, \"\": one of 'record' or 'alert' must be set"]);
        check(&rule("record: a"), &["field 'expr' must be set in rule"]);
        check(&rule("record: a\n        expr: sum(("), &["could not parse expression"]);
        check(&rule("record: 'a-b'\n        expr: up"), &["invalid recording rule name: a-b"]);
        check(&rule("record: a\n        expr: up\n        for: 1m"), &["invalid field 'for' in recording rule"]);
        check(&rule("record: a\n        expr: up\n        keep_firing_for: 1m"), &["invalid field 'keep_firing_for'"]);
        check(
            &rule("record: a\n        expr: up\n        annotations:\n          x: y"),
            &["invalid field 'annotations'"],
        );
        check(&rule("alert: a\n        expr: up\n        labels:\n          'b-c': y"), &["invalid label name: b-c"]);
        check(
            &rule("alert: a\n        expr: up\n        labels:\n          __name__: y"),
            &["invalid label name: __name__"],
        );
        check(
            &rule("alert: a\n        expr: up\n        annotations:\n          '1x': y"),
            &["invalid annotation name: 1x"],
        );
        check(
            &rule("alert: a\n        expr: up\n        annotations:\n          x: '{{ $labels.a '"),
            &["annotation \"x\": template:"],
        );
        check(&rule("alert: a\n        expr: up\n        for: 5x"), &["for: not a valid duration"]);
        check(
            &rule("alert: a\n        expr: up\n        fro: 5m"),
            &["f.yml: 6:9: groups[0].rules[0]: unknown field `fro`"],
        );
        check("groups:\n  - name: g\n    interval: 0s\n", &["interval must be greater than zero"]);
        check("groups: [\n", &["f.yml: "]);
    }

    #[test]
    fn globs_match_in_the_last_component() {
        let fs = MemFileSystem::default();
        for name in ["a.yml", "b.yml", "c.yaml", "x1.yml"] {
            let path = Path::new("/etc/rules").join(name);
            fs.create_dir_all(path.parent().unwrap()).unwrap();
            fs.open_append(&path).unwrap().write_all(b"groups: []\n").unwrap();
        }
        #[track_caller]
        fn check(fs: &MemFileSystem, pattern: &str, expected: &[&str]) {
            let got = resolve_rule_files(fs, Path::new("/etc"), &[pattern.to_string()]).unwrap();
            let got: Vec<String> = got.iter().map(|path| path.display().to_string()).collect();
            assert_eq!(got, expected, "{pattern}");
        }
        check(&fs, "rules/*.yml", &["/etc/rules/a.yml", "/etc/rules/b.yml", "/etc/rules/x1.yml"]);
        check(&fs, "/etc/rules/?.y*", &["/etc/rules/a.yml", "/etc/rules/b.yml", "/etc/rules/c.yaml"]);
        check(&fs, "rules/[ab].yml", &["/etc/rules/a.yml", "/etc/rules/b.yml"]);
        check(&fs, "rules/[^ab].yaml", &["/etc/rules/c.yaml"]);
        check(&fs, "rules/x[0-9].yml", &["/etc/rules/x1.yml"]);
        check(&fs, "rules/none*.yml", &[]);
        check(&fs, "missing.yml", &["/etc/missing.yml"]);
        assert!(resolve_rule_files(&fs, Path::new("/etc"), &["rules/[a.yml".to_string()]).is_err());
        assert!(resolve_rule_files(&fs, Path::new("/etc"), &["*/a.yml".to_string()]).is_err());
    }
}
