//! Parser for Go templates (Go's `text/template/parse/parse.go`): builds the tree of lists,
//! actions and control structures, checks function names and variable scopes at parse time
//! (errors as Go words them), and collects `define`d templates.
//!
//! Invariants: a variable is in scope from its declaration to the end of the enclosing control
//! structure (Go's `popVars`); `break`/`continue` only inside `range`; nesting is bounded by
//! `NESTING_DEPTH_MAX`.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::lex::{self, Item, Kind};
use super::{TemplateError, NESTING_DEPTH_MAX};

/// A sequence of nodes.
#[derive(Debug, Default)]
pub struct ListNode {
    /// The nodes in order.
    pub nodes: Vec<Node>,
}

/// A node of a list.
#[derive(Debug)]
pub enum Node {
    /// Plain text.
    Text(String),
    /// `{{pipeline}}`: printed unless it declares variables.
    Action(Pipe),
    /// `{{if}}`, `{{with}}`, `{{range}}`.
    Control { kind: ControlKind, pipe: Pipe, list: ListNode, else_list: Option<ListNode> },
    /// `{{template "name" pipeline}}`.
    Template { pos: usize, name: String, pipe: Option<Pipe> },
    /// `{{break}}`.
    Break,
    /// `{{continue}}`.
    Continue,
}

/// Which control structure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ControlKind {
    /// `if`.
    If,
    /// `with`.
    With,
    /// `range`.
    Range,
}

/// A pipeline: optional declarations and commands joined by `|`.
#[derive(Debug, Clone)]
pub struct Pipe {
    /// Byte offset.
    pub pos: usize,
    /// Declared (or assigned) variables.
    pub decls: Vec<String>,
    /// `=` rather than `:=`.
    pub is_assign: bool,
    /// The commands.
    pub cmds: Vec<Command>,
}

/// One command: operands separated by spaces.
#[derive(Debug, Clone)]
pub struct Command {
    /// Byte offset.
    pub pos: usize,
    /// Operands; the first may be a function.
    pub args: Vec<Arg>,
}

/// A parsed number literal (Go's `NumberNode`).
#[derive(Debug, Clone)]
pub struct Number {
    /// As written.
    pub text: String,
    /// Its value as an int, when it is one.
    pub int: Option<i64>,
    /// Its value as a float, when it has one.
    pub float: Option<f64>,
    /// Whether Go's `idealConstant` makes it a float64 (it is written like a float).
    pub float_literal: bool,
}

/// An operand.
#[derive(Debug, Clone)]
pub enum Arg {
    /// `.a.b`.
    Field { pos: usize, idents: Vec<String> },
    /// `$x.a.b`.
    Variable { pos: usize, name: String, idents: Vec<String> },
    /// `.`.
    Dot { pos: usize },
    /// `nil`.
    Nil { pos: usize },
    /// `true`/`false`.
    Bool { pos: usize, value: bool },
    /// A number.
    Number { pos: usize, number: Number },
    /// A string.
    String { pos: usize, value: String, raw: String },
    /// A function name.
    Identifier { pos: usize, name: String },
    /// `(pipeline)`.
    Pipe(Box<Pipe>),
    /// `(pipeline).a.b`.
    Chain { pos: usize, node: Box<Arg>, idents: Vec<String> },
}

impl Arg {
    /// Byte offset.
    pub fn pos(&self) -> usize {
        match self {
            Arg::Field { pos, .. }
            | Arg::Variable { pos, .. }
            | Arg::Dot { pos }
            | Arg::Nil { pos }
            | Arg::Bool { pos, .. }
            | Arg::Number { pos, .. }
            | Arg::String { pos, .. }
            | Arg::Identifier { pos, .. }
            | Arg::Chain { pos, .. } => *pos,
            Arg::Pipe(pipe) => pipe.pos,
        }
    }
}

impl std::fmt::Display for Arg {
    /// Go's `Node.String()`, used in error contexts (`at <...>`).
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Arg::Field { idents, .. } => {
                for ident in idents {
                    write!(formatter, ".{ident}")?;
                }
                Ok(())
            }
            Arg::Variable { name, idents, .. } => {
                formatter.write_str(name)?;
                for ident in idents {
                    write!(formatter, ".{ident}")?;
                }
                Ok(())
            }
            Arg::Dot { .. } => formatter.write_str("."),
            Arg::Nil { .. } => formatter.write_str("nil"),
            Arg::Bool { value, .. } => write!(formatter, "{value}"),
            Arg::Number { number, .. } => formatter.write_str(&number.text),
            Arg::String { raw, .. } => formatter.write_str(raw),
            Arg::Identifier { name, .. } => formatter.write_str(name),
            Arg::Pipe(pipe) => write!(formatter, "({pipe})"),
            Arg::Chain { node, idents, .. } => {
                match node.as_ref() {
                    Arg::Pipe(pipe) => write!(formatter, "({pipe})")?,
                    other => write!(formatter, "{other}")?,
                }
                for ident in idents {
                    write!(formatter, ".{ident}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (index, arg) in self.args.iter().enumerate() {
            if index > 0 {
                formatter.write_str(" ")?;
            }
            write!(formatter, "{arg}")?;
        }
        Ok(())
    }
}

impl std::fmt::Display for Pipe {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.decls.is_empty() {
            formatter.write_str(&self.decls.join(", "))?;
            formatter.write_str(if self.is_assign { " = " } else { " := " })?;
        }
        for (index, command) in self.cmds.iter().enumerate() {
            if index > 0 {
                formatter.write_str(" | ")?;
            }
            write!(formatter, "{command}")?;
        }
        Ok(())
    }
}

/// How an item list ended.
enum End {
    End,
    Else { followed_by: Option<ControlKind> },
}

type Result<T> = std::result::Result<T, TemplateError>;

/// Parses `text`; returns the trees by name (the main one under `name`).
pub fn parse(name: &str, text: &str, is_function: fn(&str) -> bool) -> Result<BTreeMap<String, Arc<ListNode>>> {
    let items = lex::lex(text);
    let mut parser = Parser {
        name: name.to_string(),
        text,
        items,
        index: 0,
        vars: vec!["$".to_string()],
        is_function,
        range_depth: 0,
        depth: 0,
        trees: BTreeMap::new(),
    };
    let mut root = ListNode::default();
    loop {
        let save = parser.index;
        match &parser.peek().kind {
            Kind::Eof => break,
            Kind::LeftDelim => {
                parser.next();
                if matches!(parser.peek_non_space().kind, Kind::Keyword("define")) {
                    parser.next_non_space();
                    parser.definition()?;
                    continue;
                }
                parser.index = save;
            }
            _ => {}
        }
        match parser.text_or_action()? {
            Ok(node) => root.nodes.push(node),
            Err(End::End) => return Err(parser.error_at(save, "unexpected {{end}}")),
            Err(End::Else { .. }) => return Err(parser.error_at(save, "unexpected {{else}}")),
        }
    }
    parser.add_tree(name.to_string(), root, 0)?;
    Ok(parser.trees)
}

struct Parser<'a> {
    name: String,
    text: &'a str,
    items: Vec<Item>,
    index: usize,
    vars: Vec<String>,
    is_function: fn(&str) -> bool,
    range_depth: usize,
    depth: usize,
    trees: BTreeMap<String, Arc<ListNode>>,
}

fn is_empty_tree(list: &ListNode) -> bool {
    list.nodes.iter().all(|node| matches!(node, Node::Text(text) if text.trim().is_empty()))
}

/// Go's `item.String()` for "unexpected" messages.
fn describe(kind: &Kind) -> String {
    let quote = |text: &str| {
        if text.chars().count() > 10 {
            let prefix: String = text.chars().take(10).collect();
            format!("{}...", super::format::quote(&prefix))
        } else {
            super::format::quote(text)
        }
    };
    match kind {
        Kind::Eof => "EOF".to_string(),
        Kind::Error(message) => message.clone(),
        Kind::Keyword(keyword) => format!("<{keyword}>"),
        Kind::Text(text) | Kind::Identifier(text) | Kind::Number(text) => quote(text),
        Kind::Field(name) => quote(&format!(".{name}")),
        Kind::Variable(name) => quote(name),
        Kind::String { raw, .. } => quote(raw),
        Kind::LeftDelim => quote("{{"),
        Kind::RightDelim => quote("}}"),
        Kind::Space => quote(" "),
        Kind::Dot => quote("."),
        Kind::Bool(value) => quote(&value.to_string()),
        Kind::Nil => quote("nil"),
        Kind::Pipe => quote("|"),
        Kind::LeftParen => quote("("),
        Kind::RightParen => quote(")"),
        Kind::Declare => quote(":="),
        Kind::Assign => quote("="),
        Kind::Char(character) => quote(&character.to_string()),
    }
}

impl Parser<'_> {
    fn peek(&self) -> &Item {
        &self.items[self.index.min(self.items.len() - 1)]
    }

    fn next(&mut self) -> Item {
        let item = self.peek().clone();
        if self.index < self.items.len() - 1 {
            self.index += 1;
        }
        item
    }

    fn next_non_space(&mut self) -> Item {
        loop {
            let item = self.next();
            if item.kind != Kind::Space {
                return item;
            }
        }
    }

    fn peek_non_space(&mut self) -> Item {
        let save = self.index;
        let item = self.next_non_space();
        self.index = save;
        item
    }

    fn line_of(&self, pos: usize) -> usize {
        1 + self.text.as_bytes()[..pos.min(self.text.len())].iter().filter(|byte| **byte == b'\n').count()
    }

    fn error_at(&self, index: usize, message: impl Into<String>) -> TemplateError {
        let pos = self.items.get(index).map(|item| item.pos).unwrap_or(self.text.len());
        TemplateError::Parse { name: self.name.clone(), line: self.line_of(pos), message: message.into() }
    }

    /// An error at the last consumed item.
    fn error(&self, message: impl Into<String>) -> TemplateError {
        self.error_at(self.index.saturating_sub(1), message)
    }

    fn unexpected(&self, item: &Item, context: &str) -> TemplateError {
        if let Kind::Error(message) = &item.kind {
            return self.error(message.clone());
        }
        self.error(format!("unexpected {} in {context}", describe(&item.kind)))
    }

    fn expect_right_delim(&mut self, context: &str) -> Result<()> {
        let item = self.next_non_space();
        if item.kind != Kind::RightDelim {
            return Err(self.unexpected(&item, context));
        }
        Ok(())
    }

    fn add_tree(&mut self, name: String, list: ListNode, index: usize) -> Result<()> {
        match self.trees.get(&name) {
            Some(old) if !is_empty_tree(old) => {
                if !is_empty_tree(&list) {
                    return Err(self.error_at(
                        index,
                        format!("template: multiple definition of template {}", super::format::quote(&name)),
                    ));
                }
                Ok(())
            }
            _ => {
                self.trees.insert(name, Arc::new(list));
                Ok(())
            }
        }
    }

    /// `{{define "name"}} ... {{end}}` (after the keyword).
    fn definition(&mut self) -> Result<()> {
        let index = self.index;
        let item = self.next_non_space();
        let Kind::String { value: name, .. } = item.kind else {
            return Err(self.unexpected(&item, "define clause"));
        };
        self.expect_right_delim("define clause")?;
        let saved_vars = std::mem::replace(&mut self.vars, vec!["$".to_string()]);
        let (list, end) = self.item_list()?;
        self.vars = saved_vars;
        if !matches!(end, End::End) {
            return Err(self.error("unexpected {{else}} in define clause"));
        }
        self.add_tree(name, list, index)
    }

    /// Text or an action; `Err(End)` inside the result for `{{end}}`/`{{else}}`.
    fn text_or_action(&mut self) -> Result<std::result::Result<Node, End>> {
        let item = self.next_non_space();
        match item.kind {
            Kind::Text(text) => Ok(Ok(Node::Text(text))),
            Kind::LeftDelim => self.action(),
            other => Err(self.unexpected(&Item { kind: other, pos: item.pos }, "input")),
        }
    }

    fn item_list(&mut self) -> Result<(ListNode, End)> {
        let mut list = ListNode::default();
        loop {
            if self.peek_non_space().kind == Kind::Eof {
                return Err(self.error_at(self.index, "unexpected EOF"));
            }
            match self.text_or_action()? {
                Ok(node) => list.nodes.push(node),
                Err(end) => return Ok((list, end)),
            }
        }
    }

    fn action(&mut self) -> Result<std::result::Result<Node, End>> {
        let save = self.index;
        let item = self.next_non_space();
        let node = match item.kind {
            Kind::Keyword("if") => self.control(ControlKind::If)?,
            Kind::Keyword("with") => self.control(ControlKind::With)?,
            Kind::Keyword("range") => self.control(ControlKind::Range)?,
            Kind::Keyword("template") => self.template_control(item.pos)?,
            Kind::Keyword("block") => self.block_control(item.pos)?,
            Kind::Keyword("define") => return Err(self.error("unexpected <define> in command")),
            Kind::Keyword(keyword @ ("break" | "continue")) => {
                if self.range_depth == 0 {
                    return Err(self.error(format!("{{{{{keyword}}}}} outside {{{{range}}}}")));
                }
                self.expect_right_delim(keyword)?;
                if keyword == "break" {
                    Node::Break
                } else {
                    Node::Continue
                }
            }
            Kind::Keyword("end") => {
                self.expect_right_delim("end")?;
                return Ok(Err(End::End));
            }
            Kind::Keyword("else") => {
                let next = self.peek_non_space();
                let followed_by = match next.kind {
                    Kind::Keyword("if") => Some(ControlKind::If),
                    Kind::Keyword("with") => Some(ControlKind::With),
                    _ => None,
                };
                if followed_by.is_none() {
                    self.expect_right_delim("else")?;
                }
                return Ok(Err(End::Else { followed_by }));
            }
            _ => {
                self.index = save;
                let pipe = self.pipeline("command", Kind::RightDelim)?;
                Node::Action(pipe)
            }
        };
        Ok(Ok(node))
    }

    fn control(&mut self, kind: ControlKind) -> Result<Node> {
        self.depth += 1;
        if self.depth > NESTING_DEPTH_MAX {
            return Err(self.error(format!("max nesting depth {NESTING_DEPTH_MAX} exceeded")));
        }
        let vars_length = self.vars.len();
        let context = match kind {
            ControlKind::If => "if",
            ControlKind::With => "with",
            ControlKind::Range => "range",
        };
        let pipe = self.pipeline(context, Kind::RightDelim)?;
        if kind == ControlKind::Range {
            self.range_depth += 1;
        }
        let (list, end) = self.item_list()?;
        if kind == ControlKind::Range {
            self.range_depth -= 1;
        }
        let else_list = match end {
            End::End => None,
            End::Else { followed_by } => {
                if let Some(next_kind) = followed_by {
                    if next_kind != kind || kind == ControlKind::Range {
                        // Go only chains "else if" in if and "else with" in with.
                        let next = describe(&self.peek_non_space().kind);
                        return Err(self.error(format!("unexpected {next} in {context}")));
                    }
                    self.next_non_space();
                    let nested = self.control(next_kind)?;
                    Some(ListNode { nodes: vec![nested] })
                } else {
                    let (else_list, end) = self.item_list()?;
                    if !matches!(end, End::End) {
                        return Err(self.error("expected end; found {{else}}"));
                    }
                    Some(else_list)
                }
            }
        };
        self.vars.truncate(vars_length);
        self.depth -= 1;
        Ok(Node::Control { kind, pipe, list, else_list })
    }

    fn template_control(&mut self, pos: usize) -> Result<Node> {
        let item = self.next_non_space();
        let Kind::String { value: name, .. } = item.kind else {
            return Err(self.unexpected(&item, "template clause"));
        };
        let pipe = if self.peek_non_space().kind != Kind::RightDelim {
            Some(self.pipeline("template clause", Kind::RightDelim)?)
        } else {
            self.next_non_space();
            None
        };
        Ok(Node::Template { pos, name, pipe })
    }

    fn block_control(&mut self, pos: usize) -> Result<Node> {
        let index = self.index;
        let item = self.next_non_space();
        let Kind::String { value: name, .. } = item.kind else {
            return Err(self.unexpected(&item, "block clause"));
        };
        let pipe = self.pipeline("block clause", Kind::RightDelim)?;
        let saved_vars = std::mem::replace(&mut self.vars, vec!["$".to_string()]);
        let (list, end) = self.item_list()?;
        self.vars = saved_vars;
        if !matches!(end, End::End) {
            return Err(self.error("unexpected {{else}} in block clause"));
        }
        self.add_tree(name.clone(), list, index)?;
        Ok(Node::Template { pos, name, pipe: Some(pipe) })
    }

    fn pipeline(&mut self, context: &str, end: Kind) -> Result<Pipe> {
        let start = self.peek_non_space();
        let mut pipe = Pipe { pos: start.pos, decls: Vec::new(), is_assign: false, cmds: Vec::new() };
        loop {
            let save = self.index;
            let variable = self.next_non_space();
            let Kind::Variable(name) = variable.kind else {
                self.index = save;
                break;
            };
            let next = self.peek_non_space();
            match next.kind {
                Kind::Assign | Kind::Declare => {
                    pipe.is_assign = next.kind == Kind::Assign;
                    self.next_non_space();
                    pipe.decls.push(name.clone());
                    self.vars.push(name);
                    break;
                }
                Kind::Char(',') => {
                    self.next_non_space();
                    pipe.decls.push(name.clone());
                    self.vars.push(name);
                    if context == "range" && pipe.decls.len() < 2 {
                        match self.peek_non_space().kind {
                            Kind::Variable(_) | Kind::RightDelim | Kind::RightParen => continue,
                            _ => return Err(self.error("range can only initialize variables")),
                        }
                    }
                    return Err(self.error(format!("too many declarations in {context}")));
                }
                _ => {
                    self.index = save;
                    break;
                }
            }
        }
        loop {
            let item = self.next_non_space();
            if item.kind == end {
                break;
            }
            match item.kind {
                Kind::Bool(_)
                | Kind::Dot
                | Kind::Field(_)
                | Kind::Identifier(_)
                | Kind::Number(_)
                | Kind::Nil
                | Kind::String { .. }
                | Kind::Variable(_)
                | Kind::LeftParen => {
                    self.index -= 1;
                    let command = self.command()?;
                    pipe.cmds.push(command);
                }
                _ => return Err(self.unexpected(&item, context)),
            }
        }
        if pipe.cmds.is_empty() {
            return Err(self.error(format!("missing value for {context}")));
        }
        for (stage, command) in pipe.cmds.iter().enumerate().skip(1) {
            if matches!(
                command.args[0],
                Arg::Bool { .. } | Arg::Dot { .. } | Arg::Nil { .. } | Arg::Number { .. } | Arg::String { .. }
            ) {
                return Err(self.error(format!("non executable command in pipeline stage {}", stage + 1)));
            }
        }
        Ok(pipe)
    }

    fn command(&mut self) -> Result<Command> {
        let pos = self.peek_non_space().pos;
        let mut command = Command { pos, args: Vec::new() };
        loop {
            if let Some(operand) = self.operand()? {
                command.args.push(operand);
            }
            let item = self.next();
            match item.kind {
                Kind::Space => continue,
                Kind::RightDelim | Kind::RightParen => self.index -= 1,
                Kind::Pipe => {}
                _ => return Err(self.unexpected(&item, "operand")),
            }
            break;
        }
        if command.args.is_empty() {
            return Err(self.error("empty command"));
        }
        Ok(command)
    }

    fn operand(&mut self) -> Result<Option<Arg>> {
        let Some(term) = self.term()? else {
            return Ok(None);
        };
        if !matches!(self.peek().kind, Kind::Field(_)) {
            return Ok(Some(term));
        }
        let chain_pos = self.peek().pos;
        let mut fields = Vec::new();
        while let Kind::Field(name) = &self.peek().kind {
            fields.push(name.clone());
            self.next();
        }
        Ok(Some(match term {
            Arg::Field { pos, mut idents } => {
                idents.extend(fields);
                Arg::Field { pos, idents }
            }
            Arg::Variable { pos, name, mut idents } => {
                idents.extend(fields);
                Arg::Variable { pos, name, idents }
            }
            Arg::Bool { .. } | Arg::String { .. } | Arg::Number { .. } | Arg::Nil { .. } | Arg::Dot { .. } => {
                return Err(self.error(format!("unexpected . after term {}", super::format::quote(&term.to_string()))));
            }
            other => Arg::Chain { pos: chain_pos, node: Box::new(other), idents: fields },
        }))
    }

    fn term(&mut self) -> Result<Option<Arg>> {
        let save = self.index;
        let item = self.next_non_space();
        let pos = item.pos;
        Ok(Some(match item.kind {
            Kind::Identifier(name) => {
                if !(self.is_function)(&name) {
                    return Err(self.error(format!("function {} not defined", super::format::quote(&name))));
                }
                Arg::Identifier { pos, name }
            }
            Kind::Dot => Arg::Dot { pos },
            Kind::Nil => Arg::Nil { pos },
            Kind::Variable(name) => {
                if !self.vars.contains(&name) {
                    return Err(self.error(format!("undefined variable {}", super::format::quote(&name))));
                }
                Arg::Variable { pos, name, idents: Vec::new() }
            }
            Kind::Field(name) => Arg::Field { pos, idents: vec![name] },
            Kind::Bool(value) => Arg::Bool { pos, value },
            Kind::Number(text) => {
                let number = parse_number(&text)
                    .ok_or_else(|| self.error(format!("illegal number syntax: {}", super::format::quote(&text))))?;
                Arg::Number { pos, number }
            }
            Kind::LeftParen => {
                self.depth += 1;
                if self.depth > NESTING_DEPTH_MAX {
                    return Err(self.error("max expression depth exceeded"));
                }
                let pipe = self.pipeline("parenthesized pipeline", Kind::RightParen)?;
                self.depth -= 1;
                Arg::Pipe(Box::new(pipe))
            }
            Kind::String { value, raw } => Arg::String { pos, value, raw },
            _ => {
                self.index = save;
                return Ok(None);
            }
        }))
    }
}

/// Go's `newNumber`: ints (decimal, hex, octal, binary), floats, character constants.
fn parse_number(text: &str) -> Option<Number> {
    if let Some(inner) = text.strip_prefix('\'') {
        let inner = inner.strip_suffix('\'')?;
        let value = if inner.starts_with('\\') {
            let unquoted = lex::unquote(&format!("\"{}\"", inner.replace("\\'", "'"))).ok()?;
            let mut chars = unquoted.chars();
            let character = chars.next()?;
            if chars.next().is_some() {
                return None;
            }
            character
        } else {
            let mut chars = inner.chars();
            let character = chars.next()?;
            if chars.next().is_some() {
                return None;
            }
            character
        };
        let code = value as i64;
        return Some(Number {
            text: text.to_string(),
            int: Some(code),
            float: Some(code as f64),
            float_literal: false,
        });
    }
    if text.ends_with('i') {
        return None; // Complex numbers: not supported.
    }
    let clean = text.replace('_', "");
    let (negative, unsigned) = match clean.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, clean.strip_prefix('+').unwrap_or(&clean)),
    };
    let lower = unsigned.to_ascii_lowercase();
    let is_hex = lower.starts_with("0x");
    let integer = if let Some(hex) = lower.strip_prefix("0x") {
        if hex.contains(['p', '.']) {
            None
        } else {
            u64::from_str_radix(hex, 16).ok()
        }
    } else if let Some(octal) = lower.strip_prefix("0o") {
        u64::from_str_radix(octal, 8).ok()
    } else if let Some(binary) = lower.strip_prefix("0b") {
        u64::from_str_radix(binary, 2).ok()
    } else if lower.len() > 1 && lower.starts_with('0') && lower.bytes().all(|b| b.is_ascii_digit()) {
        u64::from_str_radix(&lower[1..], 8).ok()
    } else if lower.bytes().all(|b| b.is_ascii_digit()) && !lower.is_empty() {
        lower.parse::<u64>().ok()
    } else {
        None
    };
    if let Some(magnitude) = integer {
        let int = if negative { 0i64.checked_sub_unsigned(magnitude) } else { i64::try_from(magnitude).ok() };
        let float = if negative { -(magnitude as f64) } else { magnitude as f64 };
        return Some(Number { text: text.to_string(), int, float: Some(float), float_literal: false });
    }
    if is_hex {
        return None; // Hex floats are rare in templates.
    }
    if !lower.contains(['.', 'e']) {
        return None;
    }
    let magnitude: f64 = lower.parse().ok()?;
    let float = if negative { -magnitude } else { magnitude };
    let int = if float.fract() == 0.0 && float.abs() < 9.2e18 { Some(float as i64) } else { None };
    Some(Number { text: text.to_string(), int, float: Some(float), float_literal: true })
}
