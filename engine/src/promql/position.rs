//! Positions of function calls and aggregations in the query text, for the `(line:column)`
//! suffix Prometheus 3 puts on warnings and infos (`PositionRange.StartPosInput`): the parser
//! keeps no positions, so the text is scanned for call sites (a name, for aggregations an
//! optional `by (...)` / `without (...)`, then `(` and the arguments), and the k-th call of a
//! name in the syntax tree (pre-order, which is text order) is paired with the k-th call site
//! of that name in the text.
//!
//! Invariants: strings and comments are skipped; nesting of `()`, `[]` and `{}` is tracked, so an
//! argument's start is the first non-space byte after `(` or a top-level comma; columns count
//! bytes from 1, as Go does. A node that cannot be paired gets no suffix rather than a wrong one.

use std::collections::HashMap;

use promql_parser::parser::Expr;

/// A byte position as `(line, column)`, both from 1.
pub(super) type LineColumn = (usize, usize);

/// Where one call or aggregation starts, and where each of its arguments starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct NodePositions {
    /// The name's first byte.
    pub start: LineColumn,
    /// Each argument's first byte, in order.
    pub args: Vec<LineColumn>,
    /// Each argument's first byte as an offset into the text.
    pub arg_offsets: Vec<usize>,
}

/// Positions by node address (`&Call` or `&AggregateExpr`), valid while the tree lives.
#[derive(Debug, Default)]
pub(super) struct Positions {
    by_node: HashMap<usize, NodePositions>,
    text: String,
}

impl Positions {
    /// The positions of the node at `address`.
    pub(super) fn get(&self, address: usize) -> Option<&NodePositions> {
        self.by_node.get(&address)
    }

    /// Whether the string literal starting at `offset` decodes to valid UTF-8 with Go's escapes
    /// (`"\xff"` is the byte 0xFF in Go, not `ÿ`; the parser cannot tell the two apart). True
    /// when no literal starts there.
    pub(super) fn literal_is_utf8(&self, offset: usize) -> bool {
        let bytes = self.text.as_bytes();
        match bytes.get(offset) {
            Some(&quote @ (b'"' | b'\'')) => {
                let end = skip_string(bytes, offset).saturating_sub(1).max(offset + 1);
                std::str::from_utf8(&go_unescape(&bytes[offset + 1..end.min(bytes.len())], quote)).is_ok()
            }
            _ => true,
        }
    }
}

/// The bytes of a Go-quoted literal's body: `\xHH` and octal `\NNN` are single bytes, `\u`
/// and `\U` code points in UTF-8, the letter escapes their control bytes.
fn go_unescape(body: &[u8], quote: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut at = 0;
    let hex = |digits: &[u8]| std::str::from_utf8(digits).ok().and_then(|text| u32::from_str_radix(text, 16).ok());
    while at < body.len() {
        if body[at] != b'\\' || at + 1 >= body.len() {
            out.push(body[at]);
            at += 1;
            continue;
        }
        let escape = body[at + 1];
        at += 2;
        match escape {
            b'x' if at + 2 <= body.len() => {
                out.extend(hex(&body[at..at + 2]).map(|byte| byte as u8));
                at += 2;
            }
            b'0'..=b'7' if at + 2 <= body.len() => {
                let digits = [escape, body[at], body[at + 1]];
                out.extend(
                    std::str::from_utf8(&digits).ok().and_then(|t| u32::from_str_radix(t, 8).ok()).map(|b| b as u8),
                );
                at += 2;
            }
            b'u' | b'U' => {
                let width = if escape == b'u' { 4 } else { 8 };
                let code = body.get(at..at + width).and_then(hex).and_then(char::from_u32).unwrap_or('\u{fffd}');
                out.extend(code.to_string().as_bytes());
                at += width;
            }
            b'a' => out.push(0x07),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            other if other == quote || other == b'\\' => out.push(other),
            other => out.extend([b'\\', other]),
        }
    }
    out
}

/// Formats a position as Prometheus' annotation suffix: ` (line:column)`.
pub(super) fn suffix(position: Option<LineColumn>) -> String {
    position.map(|(line, column)| format!(" ({line}:{column})")).unwrap_or_default()
}

/// Locates every call and aggregation of `expr` in `query`.
pub(super) fn locate(query: &str, expr: &Expr) -> Positions {
    let mut nodes: Vec<(String, usize)> = Vec::new();
    collect_nodes(expr, &mut nodes);
    if nodes.is_empty() {
        return Positions::default();
    }
    let sites = call_sites(query);
    let mut next_site_by_name: HashMap<&str, usize> = HashMap::new();
    let mut by_node = HashMap::new();
    for (name, address) in &nodes {
        let skip = next_site_by_name.entry(name.as_str()).or_insert(0);
        let Some(site) = sites.iter().filter(|(site_name, _)| site_name == name).nth(*skip) else { continue };
        *skip += 1;
        let at = |offset: usize| line_column(query, offset);
        by_node.insert(
            *address,
            NodePositions {
                start: at(site.1.name_start),
                args: site.1.arg_starts.iter().map(|&offset| at(offset)).collect(),
                arg_offsets: site.1.arg_starts.clone(),
            },
        );
    }
    Positions { by_node, text: query.to_string() }
}

/// Calls and aggregations in pre-order: (name, node address).
fn collect_nodes(expr: &Expr, out: &mut Vec<(String, usize)>) {
    match expr {
        Expr::Aggregate(aggregate) => {
            out.push((aggregate.op.to_string().to_lowercase(), aggregate as *const _ as usize));
            if let Some(param) = &aggregate.param {
                collect_nodes(param, out);
            }
            collect_nodes(&aggregate.expr, out);
        }
        Expr::Call(call) => {
            out.push((call.func.name.to_string(), call as *const _ as usize));
            for arg in &call.args.args {
                collect_nodes(arg, out);
            }
        }
        Expr::Unary(unary) => collect_nodes(&unary.expr, out),
        Expr::Binary(binary) => {
            collect_nodes(&binary.lhs, out);
            collect_nodes(&binary.rhs, out);
        }
        Expr::Paren(paren) => collect_nodes(&paren.expr, out),
        Expr::Subquery(subquery) => collect_nodes(&subquery.expr, out),
        Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::Extension(_) => {}
    }
}

#[derive(Debug)]
struct CallSite {
    name_start: usize,
    arg_starts: Vec<usize>,
}

fn is_name_start(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || byte == b'_'
}

fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b':'
}

/// Skips a string literal starting at `index` (its quote); returns the index after it.
fn skip_string(bytes: &[u8], index: usize) -> usize {
    let quote = bytes[index];
    let mut at = index + 1;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' if quote != b'`' => at += 2,
            byte if byte == quote => return at + 1,
            _ => at += 1,
        }
    }
    bytes.len()
}

fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while at < bytes.len() && bytes[at].is_ascii_whitespace() {
        at += 1;
    }
    at
}

/// Every `name (` in the text, outside strings and comments, with its arguments' starts.
fn call_sites(query: &str) -> Vec<(String, CallSite)> {
    let bytes = query.as_bytes();
    let mut sites = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        if byte == b'"' || byte == b'\'' || byte == b'`' {
            at = skip_string(bytes, at);
            continue;
        }
        if byte == b'#' {
            while at < bytes.len() && bytes[at] != b'\n' {
                at += 1;
            }
            continue;
        }
        if !is_name_start(byte) || (at > 0 && is_name_byte(bytes[at - 1])) {
            at += 1;
            continue;
        }
        let name_start = at;
        while at < bytes.len() && is_name_byte(bytes[at]) {
            at += 1;
        }
        let name = &query[name_start..at];
        let mut open = skip_space(bytes, at);
        // An aggregation's grouping may come before its arguments: `sum by (job) (x)`.
        for keyword in ["by", "without"] {
            let end = open + keyword.len();
            if query.get(open..end) == Some(keyword) && bytes.get(end).is_none_or(|&b| !is_name_byte(b)) {
                let group_open = skip_space(bytes, end);
                if bytes.get(group_open) == Some(&b'(') {
                    if let Some(close) = matching_close(bytes, group_open) {
                        open = skip_space(bytes, close + 1);
                    }
                }
            }
        }
        if bytes.get(open) == Some(&b'(') {
            sites.push((name.to_string(), CallSite { name_start, arg_starts: argument_starts(bytes, open) }));
        }
    }
    sites
}

/// The index of the bracket closing the one at `open`.
fn matching_close(bytes: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut at = open;
    while at < bytes.len() {
        match bytes[at] {
            b'"' | b'\'' | b'`' => {
                at = skip_string(bytes, at);
                continue;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(at);
                }
            }
            _ => {}
        }
        at += 1;
    }
    None
}

/// The first non-space byte of each top-level argument inside the parentheses at `open`.
fn argument_starts(bytes: &[u8], open: usize) -> Vec<usize> {
    let mut starts = Vec::new();
    let first = skip_space(bytes, open + 1);
    if bytes.get(first).is_some_and(|&b| b != b')') {
        starts.push(first);
    }
    let mut depth = 0usize;
    let mut at = open + 1;
    while at < bytes.len() {
        match bytes[at] {
            b'"' | b'\'' | b'`' => {
                at = skip_string(bytes, at);
                continue;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' if depth == 0 => break,
            b')' | b']' | b'}' => depth -= 1,
            b',' if depth == 0 => starts.push(skip_space(bytes, at + 1)),
            _ => {}
        }
        at += 1;
    }
    starts
}

fn line_column(query: &str, offset: usize) -> LineColumn {
    let before = &query.as_bytes()[..offset.min(query.len())];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let column = match before.iter().rposition(|&b| b == b'\n') {
        Some(newline) => offset - newline,
        None => offset + 1,
    };
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions_of(query: &str) -> Vec<NodePositions> {
        let expr = promql_parser::parser::parse(query).unwrap();
        let positions = locate(query, &expr);
        let mut nodes = Vec::new();
        collect_nodes(&expr, &mut nodes);
        nodes.iter().filter_map(|(_, address)| positions.get(*address).cloned()).collect()
    }

    #[test]
    fn calls_and_arguments_are_located_as_prometheus_reports_them() {
        // The cases of Prometheus' own tests: (1:1), (1:5), (1:25), (1:29).
        assert_eq!(positions_of("sort(series)")[0].start, (1, 1));
        assert_eq!(positions_of("sum(sort(series))")[1].start, (1, 5));
        assert_eq!(positions_of("histogram_quantile(0.8, series)")[0].args, [(1, 20), (1, 25)]);
        assert_eq!(positions_of("histogram_fraction(-Inf, 1, series)")[0].args[2], (1, 29));
        assert_eq!(positions_of("quantile without(point)(NaN, data)")[0].args[0], (1, 25));
    }

    #[test]
    fn strings_nesting_groupings_and_lines_are_handled() {
        let query =
            "sum by (job) (\n  rate(x{a=\"sort(\"}[5m])\n) + sort(label_replace(y, \"d\", \"(x,y)\", \"s\", \".*\"))";
        let found = positions_of(query);
        assert_eq!(found[0].start, (1, 1)); // sum
        assert_eq!(found[0].args, [(2, 3)]);
        assert_eq!(found[1].start, (2, 3)); // rate
        assert_eq!(found[2].start, (3, 5)); // sort, not the one inside the string
        assert_eq!(found[3].args.len(), 5); // label_replace: the comma inside "(x,y)" is not a separator
        assert_eq!(suffix(Some((3, 5))), " (3:5)");
    }

    #[test]
    fn go_escapes_decide_whether_a_literal_is_utf8() {
        let query = r#"label_replace(x, "\xff", "\u00ff", `\xff`, "\303\277")"#;
        let expr = promql_parser::parser::parse(query).unwrap();
        let positions = locate(query, &expr);
        let mut nodes = Vec::new();
        collect_nodes(&expr, &mut nodes);
        let call = positions.get(nodes[0].1).unwrap();
        let valid: Vec<bool> = call.arg_offsets.iter().map(|&offset| positions.literal_is_utf8(offset)).collect();
        // x (not a literal), "\xff" (byte 0xFF), "\u00ff" (ÿ), a raw string, octal bytes of ÿ.
        assert_eq!(valid, [true, false, true, true, true]);
        assert_eq!(suffix(None), "");
    }
}
