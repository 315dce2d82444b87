//! Go's `text/template` with Prometheus' template functions, for alerting rules' labels and
//! annotations (and later the embedded alert manager's notification templates). Users' rule files
//! must render byte for byte as Prometheus 2.42 renders them: `engine/tests/template_promtool.rs`
//! checks a table of cases against `promtool test rules`.
//!
//! Pipeline: `lex` (Go's `text/template/parse/lex.go` item kinds, trim markers, comments) ->
//! `parse` (Go's `parse.go` tree: lists, actions, if/range/with/define/template/block, variable
//! scopes, defined-function check at parse time as Go does) -> `exec` (Go's `exec.go`: dot,
//! variables, field chains, pipelines, missing keys as `missingkey=zero`, which Prometheus sets) ->
//! `functions` (Go's builtins in `funcs.go`, Prometheus' in `template/template.go`) -> `format`
//! (Go's `fmt` printing rules).
//!
//! Invariants: no input panics (a proptest feeds arbitrary text); work is bounded by
//! [`OUTPUT_SIZE_MAX`], [`RANGE_ITERATION_COUNT_MAX`], [`NESTING_DEPTH_MAX`] and
//! [`REGEX_SIZE_MAX`], a breach is an execution error naming the limit. Maps print and range
//! in sorted key order (Go sorts map keys too). Text without `{{` is returned unchanged.
//!
//! Concurrency: parsing and execution are synchronous and own their state; a parsed
//! [`Template`] is immutable and may be shared across tasks.
//!
//! Why not a crate: `gtmpl` (the only Rust port of Go templates) had its last release in 2021,
//! lacks `html`, `js` and a stable `printf`, and prints floats with Rust's rules rather than
//! Go's `%v`; rendering byte for byte as Prometheus needs Go's formatting and missing-key
//! semantics, so the engine owns this module.

mod exec;
mod format;
mod functions;
mod lex;
mod parse;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

pub use format::{float_to_string, format_float, quote, sprintf};

/// Largest output one execution may produce (1 MiB): an annotation is a few hundred bytes, a
/// runaway `range` must not exhaust memory.
pub const OUTPUT_SIZE_MAX: usize = 1024 * 1024;

/// Most `range` iterations one execution may run in total, over all loops.
pub const RANGE_ITERATION_COUNT_MAX: usize = 10_000;

/// Deepest nesting of control structures and parenthesised pipelines at parse time, and of
/// `template` calls at execution (Go allows 100,000 calls; recursion that deep is a bug).
pub const NESTING_DEPTH_MAX: usize = 100;

/// Largest compiled regular expression for `match` and `reReplaceAll` (bytes of the program).
pub const REGEX_SIZE_MAX: usize = 1024 * 1024;

/// One sample a `query` template function returns.
#[derive(Clone, Debug, PartialEq)]
pub struct QuerySample {
    /// The series' labels, `__name__` included.
    pub labels: BTreeMap<String, String>,
    /// The sample value.
    pub value: f64,
}

/// Runs a PromQL query at the alert's evaluation time for the `query` template function.
pub type QueryFn<'a> = &'a dyn Fn(&str) -> Result<Vec<QuerySample>, String>;

/// The data of an alert template (Prometheus template.AlertTemplateData + the expander's context).
pub struct AlertTemplateData<'a> {
    /// The alert's labels (the series' labels without `__name__`, plus the rule's).
    pub labels: &'a BTreeMap<String, String>,
    /// The server's external labels.
    pub external_labels: &'a BTreeMap<String, String>,
    /// The server's external URL (`--web.external-url`).
    pub external_url: &'a str,
    /// The alert's sample value.
    pub value: f64,
}

/// A failed parse or execution; displays exactly as Go's `text/template` error.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TemplateError {
    /// Display as Go: `template: __alert_X:1: function "nope" not defined`
    #[error("template: {name}:{line}: {message}")]
    Parse {
        /// Template name.
        name: String,
        /// 1-based line of the offending token.
        line: usize,
        /// Go's message.
        message: String,
    },
    /// Display as Go: `template: __alert_X:1:3: executing "__alert_X" at <...>: error calling ...`
    #[error("template: {message}")]
    Execute {
        /// Template name.
        name: String,
        /// Go's message after `template: `: location, template, node and cause.
        message: String,
    },
}

/// A value templates operate on: Go's dynamic values, limited to what Prometheus hands to
/// templates and what its functions return.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Go's invalid value / nil interface: printed as `<no value>` by an action, `<nil>` by fmt.
    Nil,
    /// A bool.
    Bool(bool),
    /// A Go `int` (literals, `len`).
    Int(i64),
    /// A float64.
    Float(f64),
    /// A string.
    String(String),
    /// `html/template.HTML` (from `safeHtml`); prints as its text.
    Html(String),
    /// A `map[string]string` (labels): a missing key reads as `""`.
    StringMap(Arc<BTreeMap<String, String>>),
    /// A `map[string]interface{}` (from `args`): a missing key reads as nil.
    Map(Arc<BTreeMap<String, Value>>),
    /// A `[]interface{}`.
    List(Arc<Vec<Value>>),
    /// Prometheus' `queryResult` (from `query`).
    Samples(Arc<Vec<QuerySample>>),
    /// Prometheus' `*sample`: fields `Labels`, `Value`.
    Sample(Arc<QuerySample>),
    /// A struct with fields in declaration order (the alert template data).
    Struct(Arc<StructValue>),
    /// A `*time.Time` (from `toTime`), Unix nanoseconds in UTC.
    Time(i64),
    /// A `time.Duration` in nanoseconds (from `Time.Sub`).
    Duration(i64),
}

/// A named struct value: Go's type name (for errors) and its fields in order.
#[derive(Clone, Debug, PartialEq)]
pub struct StructValue {
    /// Go's type name, as `%T` shows it.
    pub type_name: &'static str,
    /// Field names and values in declaration order.
    pub fields: Vec<(String, Value)>,
}

/// Go's `%T` of Prometheus' alert template data.
const ALERT_DATA_TYPE_NAME: &str =
    "struct { Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; Value float64 }";

impl Value {
    /// Go's `%T`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "<nil>",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::String(_) => "string",
            Value::Html(_) => "template.HTML",
            Value::StringMap(_) => "map[string]string",
            Value::Map(_) => "map[string]interface {}",
            Value::List(_) => "[]interface {}",
            Value::Samples(_) => "template.queryResult",
            Value::Sample(_) => "*template.sample",
            Value::Struct(value) => value.type_name,
            Value::Time(_) => "*time.Time",
            Value::Duration(_) => "time.Duration",
        }
    }

    fn is_string(&self) -> bool {
        matches!(self, Value::String(_) | Value::Html(_))
    }

    fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(v) => Some(*v),
            _ => None,
        }
    }

    /// Go's `fmt.Sprint` of one value (`%v`).
    pub fn to_go_string(&self) -> String {
        let mut out = String::new();
        self.write_go(&mut out, true);
        out
    }

    fn write_go(&self, out: &mut String, top: bool) {
        match self {
            Value::Nil => out.push_str("<nil>"),
            Value::Bool(v) => out.push_str(if *v { "true" } else { "false" }),
            Value::Int(v) => out.push_str(&v.to_string()),
            Value::Float(v) => out.push_str(&float_to_string(*v)),
            Value::String(v) | Value::Html(v) => out.push_str(v),
            Value::StringMap(map) => {
                out.push_str("map[");
                for (index, (key, value)) in map.iter().enumerate() {
                    if index > 0 {
                        out.push(' ');
                    }
                    out.push_str(key);
                    out.push(':');
                    out.push_str(value);
                }
                out.push(']');
            }
            Value::Map(map) => {
                out.push_str("map[");
                for (index, (key, value)) in map.iter().enumerate() {
                    if index > 0 {
                        out.push(' ');
                    }
                    out.push_str(key);
                    out.push(':');
                    value.write_go(out, false);
                }
                out.push(']');
            }
            Value::List(items) => {
                out.push('[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        out.push(' ');
                    }
                    item.write_go(out, false);
                }
                out.push(']');
            }
            Value::Samples(samples) => {
                // Go prints the pointers' addresses here; the contents are more useful and stable.
                out.push('[');
                for (index, sample) in samples.iter().enumerate() {
                    if index > 0 {
                        out.push(' ');
                    }
                    Value::Sample(Arc::new(sample.clone())).write_go(out, false);
                }
                out.push(']');
            }
            Value::Sample(sample) => {
                if !top {
                    out.push('&');
                }
                out.push('{');
                Value::StringMap(Arc::new(sample.labels.clone())).write_go(out, false);
                out.push(' ');
                out.push_str(&float_to_string(sample.value));
                out.push('}');
            }
            Value::Struct(value) => {
                out.push('{');
                for (index, (_, field)) in value.fields.iter().enumerate() {
                    if index > 0 {
                        out.push(' ');
                    }
                    field.write_go(out, false);
                }
                out.push('}');
            }
            Value::Time(nanos) => out.push_str(&functions::format_time(*nanos, functions::GO_TIME_STRING_LAYOUT)),
            Value::Duration(nanos) => out.push_str(&functions::format_go_duration(*nanos)),
        }
    }
}

/// What a template's functions may reach besides their arguments.
pub struct Context<'a> {
    /// The `query` function's backend.
    pub query: QueryFn<'a>,
    /// The external URL for `externalURL` and `pathPrefix`.
    pub external_url: &'a str,
}

/// A parsed template: the main tree and its `define`d templates.
#[derive(Debug)]
pub struct Template {
    name: String,
    text: Arc<str>,
    trees: BTreeMap<String, Arc<parse::ListNode>>,
}

impl Template {
    /// Parses `text` under `name` with Prometheus' function set (an unknown function is a
    /// parse error, as in Go).
    pub fn parse(name: &str, text: &str) -> Result<Template, TemplateError> {
        let text: Arc<str> = Arc::from(text);
        let trees = parse::parse(name, &text, functions::is_defined)?;
        Ok(Template { name: name.to_string(), text, trees })
    }

    /// The template's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Executes the main template with `dot` as `.` and `$`.
    pub fn execute(&self, dot: &Value, context: &Context<'_>) -> Result<String, TemplateError> {
        exec::execute(self, dot, context)
    }
}

/// Expands `text` as Prometheus' rules do: `name` is the template name (Prometheus uses
/// `__alert_<alertname>`), the text is prefixed with Prometheus' defines
/// (`{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}`),
/// and `.Labels`, `.ExternalLabels`, `.ExternalURL`, `.Value` are also available.
pub fn expand_alert(
    name: &str,
    text: &str,
    data: &AlertTemplateData<'_>,
    query: QueryFn<'_>,
) -> Result<String, TemplateError> {
    // Without an action the defines print nothing, so the text is the result (rules/alerting.go
    // always expands; the output is the same).
    if !text.contains("{{") {
        return Ok(text.to_string());
    }
    let full = format!(
        "{{{{$labels := .Labels}}}}{{{{$externalLabels := .ExternalLabels}}}}{{{{$externalURL := .ExternalURL}}}}{{{{$value := .Value}}}}{text}"
    );
    let template = Template::parse(name, &full)?;
    let dot = Value::Struct(Arc::new(StructValue {
        type_name: ALERT_DATA_TYPE_NAME,
        fields: vec![
            ("Labels".to_string(), Value::StringMap(Arc::new(data.labels.clone()))),
            ("ExternalLabels".to_string(), Value::StringMap(Arc::new(data.external_labels.clone()))),
            ("ExternalURL".to_string(), Value::String(data.external_url.to_string())),
            ("Value".to_string(), Value::Float(data.value)),
        ],
    }));
    template.execute(&dot, &Context { query, external_url: data.external_url })
}

impl fmt::Display for Value {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.to_go_string())
    }
}
