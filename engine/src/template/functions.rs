//! Template functions: Go's builtins (`text/template/funcs.go`: `and or not len index slice
//! print printf println eq ne lt le gt ge html js urlquery`) and Prometheus 2.42's
//! (`template/template.go`, `NewTemplateExpander`'s function map), plus the few `time.Time`
//! methods templates call on `toTime`'s result.
//!
//! Invariants: a function never panics; bad arguments are `CallError::Arguments` (Go's
//! `wrong number of args` / `wrong type for value` messages), failures inside a function are
//! `CallError::Failed` (Go prefixes them with `error calling <name>: `). Functions newer than
//! Prometheus 2.42 (`now`, `toDuration`, `urlQueryEscape`) and the HTML-only `tmpl` are not
//! defined, so a rule using them fails to parse here exactly as in 2.42.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::format::{float_to_string, quote, sprint, sprintf, sprintln};
use super::{Context, QuerySample, Value, REGEX_SIZE_MAX};

/// Why a call failed.
pub enum CallError {
    /// Wrong argument count or type (reported at the call).
    Arguments(String),
    /// The function returned an error (Go: `error calling <name>: <message>`).
    Failed(String),
}

/// Every function name a template may call (Go checks them at parse time).
const FUNCTION_NAMES: [&str; 43] = [
    "and",
    "or",
    "not",
    "len",
    "index",
    "slice",
    "print",
    "printf",
    "println",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "html",
    "js",
    "urlquery",
    "call",
    "query",
    "first",
    "label",
    "value",
    "strvalue",
    "args",
    "reReplaceAll",
    "safeHtml",
    "match",
    "title",
    "toUpper",
    "toLower",
    "graphLink",
    "tableLink",
    "sortByLabel",
    "stripPort",
    "stripDomain",
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "toTime",
    "parseDuration",
];

/// Functions without arguments besides these two take exactly their listed arity.
const CONTEXT_FUNCTION_NAMES: [&str; 2] = ["externalURL", "pathPrefix"];

/// Whether `name` is a defined function.
pub fn is_defined(name: &str) -> bool {
    FUNCTION_NAMES.contains(&name) || CONTEXT_FUNCTION_NAMES.contains(&name)
}

fn arity(name: &str, args: &[Value], want: usize) -> Result<(), CallError> {
    if args.len() != want {
        return Err(CallError::Arguments(format!("wrong number of args for {name}: want {want} got {}", args.len())));
    }
    Ok(())
}

fn arity_at_least(name: &str, args: &[Value], want: usize) -> Result<(), CallError> {
    if args.len() < want {
        return Err(CallError::Arguments(format!(
            "wrong number of args for {name}: want at least {want} got {}",
            args.len()
        )));
    }
    Ok(())
}

fn wrong_type(expected: &str, got: &Value) -> CallError {
    if matches!(got, Value::Nil) {
        return CallError::Arguments(format!("invalid value; expected {expected}"));
    }
    CallError::Arguments(format!("wrong type for value; expected {expected}; got {}", got.type_name()))
}

fn string_arg(value: &Value) -> Result<&str, CallError> {
    match value {
        Value::String(text) => Ok(text),
        other => Err(wrong_type("string", other)),
    }
}

fn sample_arg(value: &Value) -> Result<Option<&QuerySample>, CallError> {
    match value {
        Value::Sample(sample) => Ok(Some(sample)),
        Value::Nil => Ok(None),
        other => Err(wrong_type("*template.sample", other)),
    }
}

fn samples_arg(value: &Value) -> Result<Arc<Vec<QuerySample>>, CallError> {
    match value {
        Value::Samples(samples) => Ok(samples.clone()),
        Value::Nil => Ok(Arc::new(Vec::new())),
        other => Err(wrong_type("template.queryResult", other)),
    }
}

/// Go's `isTrue`.
pub fn truth(value: &Value) -> bool {
    match value {
        Value::Nil => false,
        Value::Bool(v) => *v,
        Value::Int(v) => *v != 0,
        Value::Float(v) => *v != 0.0,
        Value::String(v) | Value::Html(v) => !v.is_empty(),
        Value::StringMap(map) => !map.is_empty(),
        Value::Map(map) => !map.is_empty(),
        Value::List(list) => !list.is_empty(),
        Value::Samples(samples) => !samples.is_empty(),
        Value::Duration(v) => *v != 0,
        Value::Sample(_) | Value::Struct(_) | Value::Time(_) => true,
    }
}

/// Prometheus 2.42's `convertToFloat`: float64, string (strconv.ParseFloat), ints.
fn to_float(value: &Value) -> Result<f64, CallError> {
    match value {
        Value::Float(v) => Ok(*v),
        Value::Int(v) => Ok(*v as f64),
        Value::String(text) => parse_go_float(text)
            .ok_or_else(|| CallError::Failed(format!("strconv.ParseFloat: parsing {}: invalid syntax", quote(text)))),
        other => Err(CallError::Failed(format!("can't convert {} to float", other.type_name()))),
    }
}

/// Go's `strconv.ParseFloat(text, 64)` for decimal text, `Inf`/`NaN` spellings included.
fn parse_go_float(text: &str) -> Option<f64> {
    let lower = text.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    if matches!(unsigned, "inf" | "infinity" | "nan") {
        if lower.len() - unsigned.len() > 1 {
            return None;
        }
        return lower.parse::<f64>().ok();
    }
    if text.is_empty()
        || !text.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-' | b'_'))
    {
        return None;
    }
    text.replace('_', "").parse::<f64>().ok()
}

/// Calls a function (not `and`/`or`, which the executor evaluates lazily).
pub fn call(name: &str, args: Vec<Value>, context: &Context<'_>) -> Result<Value, CallError> {
    match name {
        "not" => {
            arity(name, &args, 1)?;
            Ok(Value::Bool(!truth(&args[0])))
        }
        "len" => {
            arity(name, &args, 1)?;
            let length = match &args[0] {
                Value::String(text) | Value::Html(text) => text.len(),
                Value::StringMap(map) => map.len(),
                Value::Map(map) => map.len(),
                Value::List(list) => list.len(),
                Value::Samples(samples) => samples.len(),
                other => return Err(CallError::Failed(format!("len of type {}", other.type_name()))),
            };
            Ok(Value::Int(length as i64))
        }
        "index" => {
            arity_at_least(name, &args, 1)?;
            let mut item = args[0].clone();
            for key in &args[1..] {
                item = index_one(&item, key)?;
            }
            Ok(item)
        }
        "slice" => {
            arity_at_least(name, &args, 1)?;
            slice(&args[0], &args[1..])
        }
        "print" => Ok(Value::String(sprint(&args))),
        "println" => Ok(Value::String(sprintln(&args))),
        "printf" => {
            arity_at_least(name, &args, 1)?;
            let format = string_arg(&args[0])?;
            Ok(Value::String(sprintf(format, &args[1..])))
        }
        "eq" => {
            arity_at_least(name, &args, 1)?;
            if args.len() < 2 {
                return Err(CallError::Failed("missing argument for comparison".to_string()));
            }
            for other in &args[1..] {
                if equal(&args[0], other)? {
                    return Ok(Value::Bool(true));
                }
            }
            Ok(Value::Bool(false))
        }
        "ne" => {
            arity(name, &args, 2)?;
            Ok(Value::Bool(!equal(&args[0], &args[1])?))
        }
        "lt" | "le" | "gt" | "ge" => {
            arity(name, &args, 2)?;
            let ordering = compare(&args[0], &args[1])?;
            let result = match name {
                "lt" => ordering.is_lt(),
                "le" => ordering.is_le(),
                "gt" => ordering.is_gt(),
                _ => ordering.is_ge(),
            };
            Ok(Value::Bool(result))
        }
        "html" => Ok(Value::String(html_escape(&escaper_text(&args)))),
        "js" => Ok(Value::String(js_escape(&escaper_text(&args)))),
        "urlquery" => Ok(Value::String(query_escape(&escaper_text(&args)))),
        "call" => Err(CallError::Failed("call of non-function".to_string())),
        "query" => {
            arity(name, &args, 1)?;
            let expression = string_arg(&args[0])?;
            let samples = (context.query)(expression).map_err(CallError::Failed)?;
            Ok(Value::Samples(Arc::new(samples)))
        }
        "first" => {
            arity(name, &args, 1)?;
            let samples = samples_arg(&args[0])?;
            match samples.first() {
                Some(sample) => Ok(Value::Sample(Arc::new(sample.clone()))),
                None => Err(CallError::Failed("first() called on vector with no elements".to_string())),
            }
        }
        "label" => {
            arity(name, &args, 2)?;
            let label = string_arg(&args[0])?;
            let sample = sample_arg(&args[1])?.ok_or_else(|| {
                CallError::Failed("runtime error: invalid memory address or nil pointer dereference".to_string())
            })?;
            Ok(Value::String(sample.labels.get(label).cloned().unwrap_or_default()))
        }
        "value" => {
            arity(name, &args, 1)?;
            let sample = sample_arg(&args[0])?.ok_or_else(|| {
                CallError::Failed("runtime error: invalid memory address or nil pointer dereference".to_string())
            })?;
            Ok(Value::Float(sample.value))
        }
        "strvalue" => {
            arity(name, &args, 1)?;
            let sample = sample_arg(&args[0])?.ok_or_else(|| {
                CallError::Failed("runtime error: invalid memory address or nil pointer dereference".to_string())
            })?;
            Ok(Value::String(sample.labels.get("__value__").cloned().unwrap_or_default()))
        }
        "args" => {
            let map: BTreeMap<String, Value> =
                args.into_iter().enumerate().map(|(index, value)| (format!("arg{index}"), value)).collect();
            Ok(Value::Map(Arc::new(map)))
        }
        "reReplaceAll" => {
            arity(name, &args, 3)?;
            let pattern = string_arg(&args[0])?;
            let replacement = string_arg(&args[1])?;
            let text = string_arg(&args[2])?;
            let regex = compile(pattern)
                .map_err(|message| CallError::Failed(format!("regexp: Compile({}): {message}", quote(pattern))))?;
            Ok(Value::String(regex.replace_all(text, replacement).into_owned()))
        }
        "safeHtml" => {
            arity(name, &args, 1)?;
            Ok(Value::Html(string_arg(&args[0])?.to_string()))
        }
        "match" => {
            arity(name, &args, 2)?;
            let pattern = string_arg(&args[0])?;
            let text = string_arg(&args[1])?;
            let regex = compile(pattern).map_err(CallError::Failed)?;
            Ok(Value::Bool(regex.is_match(text)))
        }
        "title" => {
            arity(name, &args, 1)?;
            Ok(Value::String(title(string_arg(&args[0])?)))
        }
        "toUpper" => {
            arity(name, &args, 1)?;
            Ok(Value::String(string_arg(&args[0])?.to_uppercase()))
        }
        "toLower" => {
            arity(name, &args, 1)?;
            Ok(Value::String(string_arg(&args[0])?.to_lowercase()))
        }
        "graphLink" | "tableLink" => {
            arity(name, &args, 1)?;
            let expression = string_arg(&args[0])?;
            let tab = if name == "graphLink" { 0 } else { 1 };
            Ok(Value::String(format!("/graph?g0.expr={}&g0.tab={tab}", query_escape(expression))))
        }
        "sortByLabel" => {
            arity(name, &args, 2)?;
            let label = string_arg(&args[0])?;
            let mut samples = samples_arg(&args[1])?.as_ref().clone();
            let empty = String::new();
            // sort.Stable by the label's value, a missing label sorting as "".
            samples.sort_by(|a, b| a.labels.get(label).unwrap_or(&empty).cmp(b.labels.get(label).unwrap_or(&empty)));
            Ok(Value::Samples(Arc::new(samples)))
        }
        "stripPort" => {
            arity(name, &args, 1)?;
            let host_port = string_arg(&args[0])?;
            Ok(Value::String(match split_host_port(host_port) {
                Some((host, _)) => host.to_string(),
                None => host_port.to_string(),
            }))
        }
        "stripDomain" => {
            arity(name, &args, 1)?;
            let host_port = string_arg(&args[0])?;
            let (host, port) = split_host_port(host_port).unwrap_or((host_port, ""));
            if host.parse::<std::net::IpAddr>().is_ok() {
                return Ok(Value::String(host_port.to_string()));
            }
            let host = host.split('.').next().unwrap_or("");
            Ok(Value::String(if port.is_empty() {
                host.to_string()
            } else if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            }))
        }
        "humanize" => {
            arity(name, &args, 1)?;
            Ok(Value::String(humanize(to_float(&args[0])?)))
        }
        "humanize1024" => {
            arity(name, &args, 1)?;
            Ok(Value::String(humanize1024(to_float(&args[0])?)))
        }
        "humanizeDuration" => {
            arity(name, &args, 1)?;
            Ok(Value::String(humanize_duration(to_float(&args[0])?)))
        }
        "humanizePercentage" => {
            arity(name, &args, 1)?;
            Ok(Value::String(format!("{}%", sprintf("%.4g", &[Value::Float(to_float(&args[0])? * 100.0)]))))
        }
        "humanizeTimestamp" => {
            arity(name, &args, 1)?;
            let v = to_float(&args[0])?;
            if !v.is_finite() {
                return Ok(Value::String(sprintf("%.4g", &[Value::Float(v)])));
            }
            let nanos = float_to_time(v).map_err(CallError::Failed)?;
            Ok(Value::String(format_time(nanos, GO_TIME_STRING_LAYOUT)))
        }
        "toTime" => {
            arity(name, &args, 1)?;
            let v = to_float(&args[0])?;
            if !v.is_finite() {
                return Err(CallError::Failed("value is NaN or Inf".to_string()));
            }
            Ok(Value::Time(float_to_time(v).map_err(CallError::Failed)?))
        }
        "parseDuration" => {
            arity(name, &args, 1)?;
            let text = string_arg(&args[0])?;
            let duration_ms = crate::config::parse_duration_ms(text)
                .map_err(|_| CallError::Failed(format!("not a valid duration string: {}", quote(text))))?;
            Ok(Value::Float(duration_ms as f64 / 1000.0))
        }
        "externalURL" => {
            arity(name, &args, 0)?;
            Ok(Value::String(context.external_url.to_string()))
        }
        "pathPrefix" => {
            arity(name, &args, 0)?;
            Ok(Value::String(url_path(context.external_url).to_string()))
        }
        other => Err(CallError::Failed(format!("function {} not defined", quote(other)))),
    }
}

/// The path of a URL (`http://host:9090/prefix?x` -> `/prefix`).
fn url_path(url: &str) -> &str {
    let after_scheme = url.split_once("://").map(|(_, rest)| rest).unwrap_or(url);
    let path = after_scheme.find('/').map(|index| &after_scheme[index..]).unwrap_or("");
    path.split(['?', '#']).next().unwrap_or("")
}

fn compile(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_MAX)
        .build()
        .map_err(|error| format!("error parsing regexp: {error}"))
}

/// Go's `evalArgs` for the escapers: the string itself when it is one string, else `Sprint`.
fn escaper_text(args: &[Value]) -> String {
    match args {
        [Value::String(text)] => text.clone(),
        _ => sprint(args),
    }
}

fn index_one(item: &Value, key: &Value) -> Result<Value, CallError> {
    let position = |length: usize| -> Result<usize, CallError> {
        match key {
            Value::Int(index) if *index >= 0 && (*index as usize) < length => Ok(*index as usize),
            Value::Int(index) => Err(CallError::Failed(format!("error calling index: index out of range: {index}"))),
            Value::Nil => Err(CallError::Failed("error calling index: cannot index slice/array with nil".to_string())),
            other => Err(CallError::Failed(format!(
                "error calling index: cannot index slice/array with type {}",
                other.type_name()
            ))),
        }
    };
    match item {
        Value::StringMap(map) => match key {
            Value::String(key) => Ok(Value::String(map.get(key).cloned().unwrap_or_default())),
            other => Err(CallError::Failed(format!("value has type {}; should be string", other.type_name()))),
        },
        Value::Map(map) => match key {
            Value::String(key) => Ok(map.get(key).cloned().unwrap_or(Value::Nil)),
            other => Err(CallError::Failed(format!("value has type {}; should be string", other.type_name()))),
        },
        Value::List(list) => Ok(list[position(list.len())?].clone()),
        Value::Samples(samples) => Ok(Value::Sample(Arc::new(samples[position(samples.len())?].clone()))),
        Value::String(text) => Ok(Value::Int(text.as_bytes()[position(text.len())?] as i64)),
        Value::Nil => Err(CallError::Failed("index of untyped nil".to_string())),
        other => Err(CallError::Failed(format!("can't index item of type {}", other.type_name()))),
    }
}

fn slice(item: &Value, indexes: &[Value]) -> Result<Value, CallError> {
    if indexes.len() > 3 {
        return Err(CallError::Failed(format!("too many slice indexes: {}", indexes.len())));
    }
    let length = match item {
        Value::String(text) => text.len(),
        Value::List(list) => list.len(),
        Value::Samples(samples) => samples.len(),
        other => return Err(CallError::Failed(format!("can't slice item of type {}", other.type_name()))),
    };
    let mut bounds = [0, length, length];
    for (position, index) in indexes.iter().enumerate() {
        match index {
            Value::Int(v) if *v >= 0 && (*v as usize) <= length => bounds[position] = *v as usize,
            Value::Int(v) => return Err(CallError::Failed(format!("index out of range: {v}"))),
            other => {
                return Err(CallError::Failed(format!("cannot index slice/array with type {}", other.type_name())))
            }
        }
    }
    if bounds[0] > bounds[1] {
        return Err(CallError::Failed(format!("invalid slice index: {} > {}", bounds[0], bounds[1])));
    }
    Ok(match item {
        Value::String(text) => match text.get(bounds[0]..bounds[1]) {
            Some(part) => Value::String(part.to_string()),
            None => Value::String(String::from_utf8_lossy(&text.as_bytes()[bounds[0]..bounds[1]]).into_owned()),
        },
        Value::List(list) => Value::List(Arc::new(list[bounds[0]..bounds[1]].to_vec())),
        Value::Samples(samples) => Value::Samples(Arc::new(samples[bounds[0]..bounds[1]].to_vec())),
        _ => Value::Nil,
    })
}

/// Go's `eq` for basic kinds; different kinds are an error except int/float never mixing.
fn equal(a: &Value, b: &Value) -> Result<bool, CallError> {
    Ok(match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::String(x) | Value::Html(x), Value::String(y) | Value::Html(y)) => x == y,
        (Value::Nil, Value::Nil) => true,
        (Value::Nil, _) | (_, Value::Nil) => false,
        (
            Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::String(_),
            Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::String(_),
        ) => {
            return Err(CallError::Failed("incompatible types for comparison".to_string()));
        }
        (x, _) => return Err(CallError::Failed(format!("uncomparable type {}: {}", x.type_name(), x.to_go_string()))),
    })
}

fn compare(a: &Value, b: &Value) -> Result<std::cmp::Ordering, CallError> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Ok(x.cmp(y)),
        (Value::Float(x), Value::Float(y)) => Ok(x.partial_cmp(y).unwrap_or(std::cmp::Ordering::Greater)),
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        (Value::Int(_) | Value::Float(_) | Value::String(_), Value::Int(_) | Value::Float(_) | Value::String(_)) => {
            Err(CallError::Failed("incompatible types for comparison".to_string()))
        }
        _ => Err(CallError::Failed("invalid type for comparison".to_string())),
    }
}

/// Go's `template.HTMLEscapeString`.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' => out.push_str("&#39;"),
            '"' => out.push_str("&#34;"),
            '\0' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Go's `template.JSEscapeString`.
fn js_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04X}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Go's `url.QueryEscape`.
pub fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(byte as char),
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// Go's deprecated `strings.Title` (what 2.42 uses): upper-cases each letter that follows a
/// separator (anything but letters, digits and `_`).
fn title(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut previous_is_separator = true;
    for character in text.chars() {
        if previous_is_separator {
            // Go's unicode.ToTitle; for the letters in practice this is upper case.
            out.extend(character.to_uppercase());
        } else {
            out.push(character);
        }
        previous_is_separator = if character.is_ascii() {
            !(character.is_ascii_alphanumeric() || character == '_')
        } else {
            !(character.is_alphanumeric()) && character.is_whitespace()
        };
    }
    out
}

/// Go's `net.SplitHostPort`; `None` where Go returns an error.
fn split_host_port(host_port: &str) -> Option<(&str, &str)> {
    if let Some(rest) = host_port.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &rest[..end];
        let after = &rest[end + 1..];
        let port = after.strip_prefix(':')?;
        if port.contains([':', '[', ']']) || host.contains('[') {
            return None;
        }
        return Some((host, port));
    }
    let colon = host_port.rfind(':')?;
    let host = &host_port[..colon];
    let port = &host_port[colon + 1..];
    if host.contains([':', '[', ']']) || port.contains(['[', ']']) {
        return None;
    }
    Some((host, port))
}

fn percent_4g(v: f64) -> String {
    sprintf("%.4g", &[Value::Float(v)])
}

/// Prometheus' `humanize`: SI prefixes, 4 significant digits.
pub fn humanize(mut v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return percent_4g(v);
    }
    if v.abs() >= 1.0 {
        let mut prefix = "";
        for candidate in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = candidate;
            v /= 1000.0;
        }
        return format!("{}{prefix}", percent_4g(v));
    }
    let mut prefix = "";
    for candidate in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = candidate;
        v *= 1000.0;
    }
    format!("{}{prefix}", percent_4g(v))
}

/// Prometheus' `humanize1024`: binary prefixes.
pub fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return percent_4g(v);
    }
    let mut prefix = "";
    for candidate in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = candidate;
        v /= 1024.0;
    }
    format!("{}{prefix}", percent_4g(v))
}

/// Prometheus 2.42's `humanizeDuration` (seconds in).
pub fn humanize_duration(mut v: f64) -> String {
    if !v.is_finite() {
        return percent_4g(v);
    }
    if v == 0.0 {
        return format!("{}s", percent_4g(v));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let duration = v as i64;
        let seconds = duration % 60;
        let minutes = (duration / 60) % 60;
        let hours = (duration / 60 / 60) % 24;
        let days = duration / 60 / 60 / 24;
        if days != 0 {
            return format!("{sign}{days}d {hours}h {minutes}m {seconds}s");
        }
        if hours != 0 {
            return format!("{sign}{hours}h {minutes}m {seconds}s");
        }
        if minutes != 0 {
            return format!("{sign}{minutes}m {seconds}s");
        }
        return format!("{sign}{}s", percent_4g(v));
    }
    let mut prefix = "";
    for candidate in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = candidate;
        v *= 1000.0;
    }
    format!("{}{prefix}s", percent_4g(v))
}

/// Prometheus' `floatToTime`: seconds to Unix nanoseconds, truncated to milliseconds as
/// `model.TimeFromUnixNano` does.
fn float_to_time(v: f64) -> Result<i64, String> {
    let timestamp = v * 1e9;
    if timestamp > i64::MAX as f64 || timestamp < i64::MIN as f64 {
        return Err(format!(
            "{} cannot be represented as a nanoseconds timestamp since it overflows int64",
            float_to_string(v)
        ));
    }
    let nanos = timestamp as i64;
    Ok(nanos / 1_000_000 * 1_000_000)
}

/// Go's `time.Time.String` layout.
pub const GO_TIME_STRING_LAYOUT: &str = "2006-01-02 15:04:05.999999999 -0700 MST";

const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAY_NAMES: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

/// Go's `time.Time.Format` in UTC for the common layout elements.
pub fn format_time(nanos: i64, layout: &str) -> String {
    let seconds = nanos.div_euclid(1_000_000_000);
    let fraction = nanos.rem_euclid(1_000_000_000);
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = crate::calendar::civil_from_days(days);
    let hour = second_of_day / 3600;
    let minute = second_of_day / 60 % 60;
    let second = second_of_day % 60;
    let weekday = (days + 4).rem_euclid(7) as usize;
    let month_name = MONTH_NAMES[(month - 1).clamp(0, 11) as usize];
    let tokens: [(&str, String); 27] = [
        ("January", month_name.to_string()),
        ("Monday", DAY_NAMES[weekday].to_string()),
        ("2006", format!("{year:04}")),
        ("-07:00", "+00:00".to_string()),
        ("-0700", "+0000".to_string()),
        ("-07", "+00".to_string()),
        ("Z07:00", "Z".to_string()),
        ("Z0700", "Z".to_string()),
        ("Jan", month_name[..3].to_string()),
        ("Mon", DAY_NAMES[weekday][..3].to_string()),
        ("MST", "UTC".to_string()),
        ("01", format!("{month:02}")),
        ("02", format!("{day:02}")),
        ("_2", format!("{day:>2}")),
        ("15", format!("{hour:02}")),
        ("03", format!("{:02}", if hour % 12 == 0 { 12 } else { hour % 12 })),
        ("04", format!("{minute:02}")),
        ("05", format!("{second:02}")),
        ("06", format!("{:02}", year.rem_euclid(100))),
        ("PM", if hour >= 12 { "PM" } else { "AM" }.to_string()),
        ("pm", if hour >= 12 { "pm" } else { "am" }.to_string()),
        ("1", month.to_string()),
        ("2", day.to_string()),
        ("3", (if hour % 12 == 0 { 12 } else { hour % 12 }).to_string()),
        ("4", minute.to_string()),
        ("5", second.to_string()),
        ("Z", "Z".to_string()),
    ];
    let mut out = String::new();
    let mut rest = layout;
    'outer: while !rest.is_empty() {
        // Fractional seconds: ".000" (fixed) or ".999" (trailing zeros trimmed).
        for mark in [".0", ",0", ".9", ",9"] {
            if rest.starts_with(mark) {
                let digit = mark.as_bytes()[1];
                let count = rest[1..].bytes().take_while(|b| *b == digit).count();
                let after = rest[1 + count..].chars().next();
                if !after.is_some_and(|c| c.is_ascii_digit()) {
                    let digits = format!("{fraction:09}");
                    let digits = &digits[..count.min(9)];
                    if digit == b'0' {
                        out.push_str(&mark[..1]);
                        out.push_str(digits);
                    } else {
                        let trimmed = digits.trim_end_matches('0');
                        if !trimmed.is_empty() {
                            out.push_str(&mark[..1]);
                            out.push_str(trimmed);
                        }
                    }
                    rest = &rest[1 + count..];
                    continue 'outer;
                }
            }
        }
        for (token, value) in &tokens {
            if rest.starts_with(token) {
                out.push_str(value);
                rest = &rest[token.len()..];
                continue 'outer;
            }
        }
        let character = rest.chars().next().unwrap_or(' ');
        out.push(character);
        rest = &rest[character.len_utf8()..];
    }
    out
}

/// Go's `time.Duration.String` (`1h2m3.5s`, `500ms`, `0s`).
pub fn format_go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_string();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let magnitude = nanos.unsigned_abs();
    if magnitude < 1_000_000_000 {
        let (unit, divisor) = if magnitude < 1_000 {
            ("ns", 1.0)
        } else if magnitude < 1_000_000 {
            ("µs", 1e3)
        } else {
            ("ms", 1e6)
        };
        return format!("{sign}{}{unit}", float_to_string(magnitude as f64 / divisor));
    }
    let hours = magnitude / 3_600_000_000_000;
    let minutes = magnitude / 60_000_000_000 % 60;
    let seconds = (magnitude % 60_000_000_000) as f64 / 1e9;
    let mut out = sign.to_string();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&format!("{}s", float_to_string(seconds)));
    out
}

/// A method of `time.Time` (`.Format`, `.Unix`, ...); `None` when there is no such method.
pub fn time_method(nanos: i64, name: &str, args: &[Value]) -> Option<Result<Value, CallError>> {
    let want = |count: usize| -> Result<(), CallError> {
        if args.len() != count {
            return Err(CallError::Arguments(format!(
                "wrong number of args for {name}: want {count} got {}",
                args.len()
            )));
        }
        Ok(())
    };
    let result = match name {
        "Format" => want(1).and_then(|_| Ok(Value::String(format_time(nanos, string_arg(&args[0])?)))),
        "String" => want(0).map(|_| Value::String(format_time(nanos, GO_TIME_STRING_LAYOUT))),
        "Unix" => want(0).map(|_| Value::Int(nanos.div_euclid(1_000_000_000))),
        "UnixMilli" => want(0).map(|_| Value::Int(nanos.div_euclid(1_000_000))),
        "UnixNano" => want(0).map(|_| Value::Int(nanos)),
        "UTC" | "Local" => want(0).map(|_| Value::Time(nanos)),
        "Year" | "Day" | "Hour" | "Minute" | "Second" | "Month" => want(0).map(|_| {
            let seconds = nanos.div_euclid(1_000_000_000);
            let (year, month, day) = crate::calendar::civil_from_days(seconds.div_euclid(86_400));
            let second_of_day = seconds.rem_euclid(86_400);
            match name {
                "Year" => Value::Int(year),
                "Day" => Value::Int(day),
                "Hour" => Value::Int(second_of_day / 3600),
                "Minute" => Value::Int(second_of_day / 60 % 60),
                "Second" => Value::Int(second_of_day % 60),
                _ => Value::String(MONTH_NAMES[(month - 1).clamp(0, 11) as usize].to_string()),
            }
        }),
        _ => return None,
    };
    Some(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(actual: String, expected: &str) {
        assert_eq!(actual, expected);
    }

    #[test]
    fn humanizers_match_prometheus() {
        check(humanize(1234567.0), "1.235M");
        check(humanize(0.12), "120m");
        check(humanize(i64::MAX as f64), "9.223E");
        check(humanize1024(1048576.0), "1Mi");
        check(humanize1024(0.12), "0.12");
        check(humanize_duration(3600.0), "1h 0m 0s");
        check(humanize_duration(0.5), "500ms");
        check(humanize_duration(899.99), "14m 59s");
        check(humanize_duration(-(86400.0 * 2.0 + 3600.0 * 3.0 + 60.0 * 4.0 + 5.0)), "-2d 3h 4m 5s");
        check(humanize_duration(0.0001), "100us");
        check(humanize_duration(1.2345), "1.234s");
    }

    #[test]
    fn time_formats_like_go() {
        check(format_time(1_435_065_584_128_000_000, GO_TIME_STRING_LAYOUT), "2015-06-23 13:19:44.128 +0000 UTC");
        check(format_time(-1_000_000_000, GO_TIME_STRING_LAYOUT), "1969-12-31 23:59:59 +0000 UTC");
        check(format_time(1_435_065_584_128_000_000, "2006"), "2015");
        check(format_time(0, "Mon Jan _2 15:04:05 2006"), "Thu Jan  1 00:00:00 1970");
        check(format_go_duration(3_723_500_000_000), "1h2m3.5s");
    }

    #[test]
    fn host_port_splitting_matches_go() {
        assert_eq!(split_host_port("foo:1"), Some(("foo", "1")));
        assert_eq!(split_host_port("[::1]:1"), Some(("::1", "1")));
        assert_eq!(split_host_port("2001:0DB8::1"), None);
        assert_eq!(split_host_port("[2001:0DB8::1]::12345"), None);
        assert_eq!(split_host_port("foo"), None);
    }
}
