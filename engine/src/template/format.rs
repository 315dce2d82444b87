//! Go's `fmt` and `strconv` number and string formatting, as far as templates reach it:
//! `fmt.Sprint` of template values, `fmt.Sprintf` for the verbs `%v %s %d %f %e %g %x %X %q %t
//! %%` with flags (`-+ 0#`), width and precision, and `strconv.FormatFloat(v, 'g', -1, 64)`, which
//! is how Go prints a float64 with `%v` (Prometheus 2.42 prints `1e6` as `1e+06`, `123456` as
//! `123456` and `1e20` as `1e+20`: the exponent threshold is strconv's 6, not JSON's 21; promtool
//! confirms it, see `engine/tests/template_promtool.rs`).
//!
//! Invariants: pure functions, no allocation beyond the result; shortest digits come from Rust's
//! `{:e}` (shortest round-trip, like Go's Ryu-based shortest mode) and fixed precisions from
//! Rust's exact decimal expansion, which rounds ties to even like Go's `strconv` decimal rounding.

use super::Value;

/// Decimal digits of a finite, non-negative `v` and the decimal point position: `v = 0.d1d2... *
/// 10^dp`. `significant` `None` gives the shortest digits that round-trip; `Some(n)` rounds to `n`
/// significant digits (trailing zeros removed, as Go's `decimal` keeps them out of `nd`).
fn digits(v: f64, significant: Option<usize>) -> (Vec<u8>, i32) {
    let text = match significant {
        None => format!("{v:e}"),
        Some(count) => format!("{:.*e}", count.max(1) - 1, v),
    };
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let mut digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    while digits.len() > 1 && digits.last() == Some(&b'0') {
        digits.pop();
    }
    if digits == [b'0'] {
        return (digits, 1);
    }
    (digits, exponent + 1)
}

/// `%e` from digits: `d.ddde±XX` with `decimals` digits after the point (zero padded).
fn format_e(out: &mut String, digits: &[u8], dp: i32, decimals: usize, upper: bool) {
    out.push(digits[0] as char);
    if decimals > 0 {
        out.push('.');
        for index in 1..=decimals {
            out.push(*digits.get(index).unwrap_or(&b'0') as char);
        }
    }
    out.push(if upper { 'E' } else { 'e' });
    let exponent = if digits == [b'0'] { 0 } else { dp - 1 };
    out.push(if exponent < 0 { '-' } else { '+' });
    let magnitude = exponent.unsigned_abs();
    if magnitude < 10 {
        out.push('0');
    }
    out.push_str(&magnitude.to_string());
}

/// `%f` from digits with `decimals` digits after the point.
fn format_f(out: &mut String, digits: &[u8], dp: i32, decimals: usize) {
    if dp > 0 {
        for index in 0..dp as usize {
            out.push(*digits.get(index).unwrap_or(&b'0') as char);
        }
    } else {
        out.push('0');
    }
    if decimals > 0 {
        out.push('.');
        for offset in 0..decimals as i32 {
            let index = dp + offset;
            let digit = if index < 0 { b'0' } else { *digits.get(index as usize).unwrap_or(&b'0') };
            out.push(digit as char);
        }
    }
}

/// Go's `strconv.FormatFloat(v, verb, precision, 64)` for `e`, `E`, `f`, `g`, `G`; precision
/// `None` is Go's `-1` (shortest).
pub fn format_float(v: f64, verb: char, precision: Option<usize>) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    let mut out = String::new();
    if v.is_sign_negative() {
        out.push('-');
    }
    let magnitude = v.abs();
    match verb {
        'e' | 'E' => {
            let (digits, dp) = digits(magnitude, precision.map(|p| p + 1));
            let decimals = precision.unwrap_or(digits.len() - 1);
            format_e(&mut out, &digits, dp, decimals, verb == 'E');
        }
        'f' | 'F' => match precision {
            Some(decimals) => out.push_str(&format!("{magnitude:.decimals$}")),
            None => {
                let (digits, dp) = digits(magnitude, None);
                let decimals = (digits.len() as i32 - dp).max(0) as usize;
                format_f(&mut out, &digits, dp, decimals);
            }
        },
        _ => {
            // strconv/ftoa.go, formatDigits case 'g'.
            let shortest = precision.is_none();
            let requested = precision.map(|p| p.max(1));
            let (digits, dp) = digits(magnitude, requested);
            let digit_count = digits.len() as i32;
            let mut eprec = requested.map(|p| p as i32).unwrap_or(6);
            let mut prec = requested.map(|p| p as i32).unwrap_or(digit_count);
            if !shortest && eprec > digit_count && digit_count >= dp {
                eprec = digit_count;
            }
            if shortest {
                eprec = 6;
            }
            let exponent = dp - 1;
            if digits != [b'0'] && (exponent < -4 || exponent >= eprec) {
                if prec > digit_count {
                    prec = digit_count;
                }
                format_e(&mut out, &digits, dp, (prec - 1).max(0) as usize, verb == 'G');
            } else {
                if prec > dp {
                    prec = digit_count;
                }
                format_f(&mut out, &digits, dp, (prec - dp).max(0) as usize);
            }
        }
    }
    out
}

/// Go's `%v` of a float64: `strconv.FormatFloat(v, 'g', -1, 64)`.
pub fn float_to_string(v: f64) -> String {
    format_float(v, 'g', None)
}

/// Go's `strconv.Quote`: double quotes, Go escapes for control and non-printable characters.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            '\u{fffd}' => out.push_str("\\ufffd"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x7f => out.push(c),
            c if c.is_control() || c.is_whitespace() && c != ' ' => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `fmt.Sprint(values...)`: a space between operands when neither side is a string.
pub fn sprint(values: &[Value]) -> String {
    let mut out = String::new();
    for (index, value) in values.iter().enumerate() {
        if index > 0 && !value.is_string() && !values[index - 1].is_string() {
            out.push(' ');
        }
        out.push_str(&value.to_go_string());
    }
    out
}

/// Go's `fmt.Sprintln(values...)`: spaces between all operands and a trailing newline.
pub fn sprintln(values: &[Value]) -> String {
    let parts: Vec<String> = values.iter().map(Value::to_go_string).collect();
    let mut out = parts.join(" ");
    out.push('\n');
    out
}

/// Flags, width and precision of one `%` directive.
#[derive(Default, Clone, Copy)]
struct Spec {
    minus: bool,
    plus: bool,
    space: bool,
    zero: bool,
    sharp: bool,
    width: Option<usize>,
    precision: Option<usize>,
}

/// Width and precision are bounded so a template cannot ask for a gigabyte of padding.
const FORMAT_WIDTH_MAX: usize = 10_000;

impl Spec {
    /// Pads `body` to the width: spaces left (or right with `-`), or zeros after the sign.
    fn pad(&self, out: &mut String, body: &str, numeric: bool) {
        let width = self.width.unwrap_or(0);
        let length = body.chars().count();
        if length >= width {
            out.push_str(body);
            return;
        }
        let fill = width - length;
        if self.minus {
            out.push_str(body);
            out.extend(std::iter::repeat_n(' ', fill));
        } else if self.zero && numeric {
            let sign_length = if body.starts_with(['-', '+', ' ']) { 1 } else { 0 };
            out.push_str(&body[..sign_length]);
            out.extend(std::iter::repeat_n('0', fill));
            out.push_str(&body[sign_length..]);
        } else {
            out.extend(std::iter::repeat_n(' ', fill));
            out.push_str(body);
        }
    }

    fn sign(&self, negative: bool) -> &'static str {
        if negative {
            "-"
        } else if self.plus {
            "+"
        } else if self.space {
            " "
        } else {
            ""
        }
    }
}

/// Go's `fmt.Sprintf(format, args...)` for the verbs templates use; wrong verbs and missing or
/// extra arguments render as Go does (`%!d(string=x)`, `%!d(MISSING)`, `%!(EXTRA int=1)`).
pub fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let bytes = format.as_bytes();
    let mut index = 0;
    let mut arg_index = 0;
    while index < bytes.len() {
        let next = format[index..].find('%').map(|offset| index + offset).unwrap_or(bytes.len());
        out.push_str(&format[index..next]);
        index = next;
        if index >= bytes.len() {
            break;
        }
        index += 1; // '%'
        let mut spec = Spec::default();
        while index < bytes.len() {
            match bytes[index] {
                b'-' => spec.minus = true,
                b'+' => spec.plus = true,
                b' ' => spec.space = true,
                b'0' => spec.zero = !spec.minus,
                b'#' => spec.sharp = true,
                _ => break,
            }
            index += 1;
        }
        let read_number = |index: &mut usize, arg_index: &mut usize| -> Option<usize> {
            if *index < bytes.len() && bytes[*index] == b'*' {
                *index += 1;
                let value = args.get(*arg_index).and_then(Value::as_int);
                *arg_index += 1;
                return value.map(|v| (v.unsigned_abs() as usize).min(FORMAT_WIDTH_MAX));
            }
            let start = *index;
            while *index < bytes.len() && bytes[*index].is_ascii_digit() {
                *index += 1;
            }
            format[start..*index].parse::<usize>().ok().map(|v| v.min(FORMAT_WIDTH_MAX))
        };
        spec.width = read_number(&mut index, &mut arg_index);
        if index < bytes.len() && bytes[index] == b'.' {
            index += 1;
            spec.precision = Some(read_number(&mut index, &mut arg_index).unwrap_or(0));
        }
        let Some(verb) = format[index..].chars().next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        index += verb.len_utf8();
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(arg_index) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        arg_index += 1;
        format_one(&mut out, &spec, verb, arg);
    }
    if arg_index < args.len() {
        out.push_str("%!(EXTRA ");
        let extras: Vec<String> =
            args[arg_index..].iter().map(|arg| format!("{}={}", arg.type_name(), arg.to_go_string())).collect();
        out.push_str(&extras.join(", "));
        out.push(')');
    }
    out
}

/// One directive applied to one argument.
fn format_one(out: &mut String, spec: &Spec, verb: char, arg: &Value) {
    let bad = |out: &mut String| {
        let shown = if matches!(arg, Value::Nil) {
            "<nil>".to_string()
        } else {
            format!("{}={}", arg.type_name(), arg.to_go_string())
        };
        out.push_str(&format!("%!{verb}({shown})"));
    };
    match (verb, arg) {
        ('v', Value::Float(v)) | ('e' | 'E' | 'f' | 'F' | 'g' | 'G', Value::Float(v)) => {
            let (verb, precision) = if verb == 'v' { ('g', spec.precision) } else { (verb, spec.precision) };
            let precision = match verb {
                'e' | 'E' | 'f' | 'F' => Some(precision.unwrap_or(6)),
                _ => precision,
            };
            let mut body = format_float(v.abs(), verb, precision);
            if v.is_nan() {
                body = "NaN".to_string();
                let signed = format!(
                    "{}{}",
                    if spec.plus {
                        "+"
                    } else if spec.space {
                        " "
                    } else {
                        ""
                    },
                    body
                );
                return spec.pad(out, &signed, false);
            }
            let negative = v.is_sign_negative();
            let signed = if v.is_infinite() {
                format!(
                    "{}Inf",
                    if negative {
                        "-"
                    } else if spec.space && !spec.plus {
                        " "
                    } else {
                        "+"
                    }
                )
            } else {
                format!("{}{}", spec.sign(negative), body)
            };
            spec.pad(out, &signed, !v.is_infinite());
        }
        ('d' | 'v', Value::Int(v)) => {
            let mut digits = v.unsigned_abs().to_string();
            if let Some(precision) = spec.precision {
                while digits.len() < precision {
                    digits.insert(0, '0');
                }
            }
            let body = format!("{}{}", spec.sign(*v < 0), digits);
            let mut spec = *spec;
            if spec.precision.is_some() {
                spec.zero = false;
            }
            spec.pad(out, &body, true);
        }
        ('x' | 'X' | 'o' | 'b', Value::Int(v)) => {
            let magnitude = v.unsigned_abs();
            let digits = match verb {
                'x' => format!("{magnitude:x}"),
                'X' => format!("{magnitude:X}"),
                'o' => format!("{magnitude:o}"),
                _ => format!("{magnitude:b}"),
            };
            let prefix = match (spec.sharp, verb) {
                (true, 'x') => "0x",
                (true, 'X') => "0X",
                (true, 'o') => "0",
                _ => "",
            };
            spec.pad(out, &format!("{}{prefix}{digits}", spec.sign(*v < 0)), true);
        }
        ('c', Value::Int(v)) => {
            let character = u32::try_from(*v).ok().and_then(char::from_u32).unwrap_or('\u{fffd}');
            spec.pad(out, &character.to_string(), false);
        }
        ('q', Value::Int(v)) => {
            let character = u32::try_from(*v).ok().and_then(char::from_u32).unwrap_or('\u{fffd}');
            let quoted = quote(&character.to_string());
            let inner = &quoted[1..quoted.len() - 1];
            let inner = if inner == "'" {
                "\\'"
            } else if inner == "\\\"" {
                "\""
            } else {
                inner
            };
            spec.pad(out, &format!("'{inner}'"), false);
        }
        ('s' | 'v', Value::String(text)) | ('s' | 'v', Value::Html(text)) => {
            let shown: String = match spec.precision {
                Some(precision) => text.chars().take(precision).collect(),
                None => text.to_string(),
            };
            spec.pad(out, &shown, false);
        }
        ('q', Value::String(text)) | ('q', Value::Html(text)) => {
            let quoted = if spec.sharp && !text.contains('`') { format!("`{text}`") } else { quote(text) };
            spec.pad(out, &quoted, false);
        }
        ('x' | 'X', Value::String(text)) | ('x' | 'X', Value::Html(text)) => {
            let mut hex = String::new();
            for (index, byte) in text.bytes().enumerate() {
                if spec.space && index > 0 {
                    hex.push(' ');
                }
                if verb == 'x' {
                    hex.push_str(&format!("{byte:02x}"));
                } else {
                    hex.push_str(&format!("{byte:02X}"));
                }
            }
            spec.pad(out, &hex, false);
        }
        ('x' | 'X', Value::Float(v)) => {
            // Go's %x on floats is hexadecimal mantissa/exponent; rarely used, shown as %v.
            spec.pad(out, &float_to_string(*v), false);
        }
        ('t' | 'v', Value::Bool(v)) => spec.pad(out, if *v { "true" } else { "false" }, false),
        ('v', other) => spec.pad(out, &other.to_go_string(), false),
        ('s', Value::Time(_) | Value::Duration(_)) => spec.pad(out, &arg.to_go_string(), false),
        ('d', Value::Duration(nanos)) => spec.pad(out, &nanos.to_string(), true),
        ('s', Value::Map(_) | Value::StringMap(_) | Value::List(_) | Value::Struct(_)) => {
            spec.pad(out, &arg.to_go_string(), false)
        }
        _ => bad(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_float(v: f64, expected: &str) {
        assert_eq!(float_to_string(v), expected, "%v of {v:?}");
    }

    #[test]
    fn floats_print_as_go_percent_v() {
        for (v, expected) in [
            (1.0, "1"),
            (0.1, "0.1"),
            (1e6, "1e+06"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (1e21, "1e+21"),
            (1e20, "1e+20"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (0.0, "0"),
            (-0.0, "-0"),
            (-1.5, "-1.5"),
            (100000.0, "100000"),
            (1e100, "1e+100"),
            (5e-324, "5e-324"),
        ] {
            check_float(v, expected);
        }
    }

    #[track_caller]
    fn check_sprintf(format: &str, args: &[Value], expected: &str) {
        assert_eq!(sprintf(format, args), expected, "Sprintf({format:?})");
    }

    #[test]
    fn sprintf_matches_go() {
        let s = |text: &str| Value::String(text.to_string());
        check_sprintf("%.4g", &[Value::Float(1234567.0)], "1.235e+06");
        check_sprintf("%.4g", &[Value::Float(1.0)], "1");
        check_sprintf("%.4g", &[Value::Float(1000.0)], "1000");
        check_sprintf("%.4g", &[Value::Float(123.45)], "123.5");
        check_sprintf("%.4g", &[Value::Float(0.0)], "0");
        check_sprintf("%.4g", &[Value::Float(f64::INFINITY)], "+Inf");
        check_sprintf("%.4g", &[Value::Float(f64::NAN)], "NaN");
        check_sprintf("%.2f", &[Value::Float(1.23456)], "1.23");
        check_sprintf("%0.2f", &[Value::Float(3720.01)], "3720.01");
        check_sprintf("%f", &[Value::Float(1.5)], "1.500000");
        check_sprintf("%e", &[Value::Float(1234.5678)], "1.234568e+03");
        check_sprintf("%g", &[Value::Float(1e-7)], "1e-07");
        check_sprintf("%5.1f|%-6.1f|", &[Value::Float(2.25), Value::Float(-2.25)], "  2.2|-2.2  |");
        check_sprintf(
            "%d %5d %-3d| %03d %x %X",
            &[Value::Int(42), Value::Int(7), Value::Int(1), Value::Int(5), Value::Int(255), Value::Int(255)],
            "42     7 1  | 005 ff FF",
        );
        check_sprintf("%s %q %v %x", &[s("a"), s("b\"c"), s("d"), s("hi")], "a \"b\\\"c\" d 6869");
        check_sprintf("%5s|%-5s|%.1s", &[s("ab"), s("ab"), s("xyz")], "   ab|ab   |x");
        check_sprintf("%d", &[s("x")], "%!d(string=x)");
        check_sprintf("%d %d", &[Value::Int(1)], "1 %!d(MISSING)");
        check_sprintf("%d", &[Value::Int(1), Value::Int(2)], "1%!(EXTRA int=2)");
        check_sprintf("100%%", &[], "100%");
        check_sprintf("%v %v", &[Value::Bool(true), Value::Nil], "true <nil>");
        check_sprintf("%+d %+.1f", &[Value::Int(3), Value::Float(2.0)], "+3 +2.0");
    }

    #[test]
    fn quote_escapes_like_go() {
        assert_eq!(quote("a\nb\t\"\\\u{1}é"), "\"a\\nb\\t\\\"\\\\\\x01é\"");
    }
}
