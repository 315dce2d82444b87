//! Lexer for Go templates (Go's `text/template/parse/lex.go`): text, `{{`/`}}` with trim markers
//! (`{{- ` trims the whitespace before, ` -}}` after), comments, and the items inside actions.
//!
//! Invariants: every item carries the byte offset where it starts (for Go's `line:col` error
//! positions); text items are already trimmed; lexing stops at the first error item.

/// One lexical item.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// Plain text outside actions.
    Text(String),
    /// `{{`.
    LeftDelim,
    /// `}}`.
    RightDelim,
    /// Spaces inside an action (they separate arguments).
    Space,
    /// A function name or keyword candidate.
    Identifier(String),
    /// A keyword: if else end range with define template block break continue.
    Keyword(&'static str),
    /// `.name` (without the dot).
    Field(String),
    /// `$` or `$name` (with the dollar).
    Variable(String),
    /// `.` alone.
    Dot,
    /// A string literal, unquoted; the raw text is kept for error contexts.
    String { value: String, raw: String },
    /// A number literal (or character constant) as written.
    Number(String),
    /// `true` / `false`.
    Bool(bool),
    /// `nil`.
    Nil,
    /// `|`.
    Pipe,
    /// `(`.
    LeftParen,
    /// `)`.
    RightParen,
    /// `:=`.
    Declare,
    /// `=`.
    Assign,
    /// Any other printable ASCII character allowed in actions (`,`).
    Char(char),
    /// End of input.
    Eof,
    /// A lexing error with Go's message.
    Error(String),
}

/// An item and its byte offset.
#[derive(Clone, Debug)]
pub struct Item {
    /// What it is.
    pub kind: Kind,
    /// Byte offset of its start in the template text.
    pub pos: usize,
}

const KEYWORDS: [&str; 10] = ["if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"];

fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_alphanumeric(character: char) -> bool {
    character == '_' || character.is_alphanumeric()
}

/// Lexes the whole text into items, ending with `Eof` or the first `Error`.
pub fn lex(text: &str) -> Vec<Item> {
    let mut lexer = Lexer { text, bytes: text.as_bytes(), pos: 0, items: Vec::new(), paren_depth: 0 };
    lexer.run();
    lexer.items
}

struct Lexer<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    items: Vec<Item>,
    paren_depth: usize,
}

impl Lexer<'_> {
    fn emit(&mut self, kind: Kind, pos: usize) {
        self.items.push(Item { kind, pos });
    }

    fn error(&mut self, message: impl Into<String>) {
        let pos = self.pos;
        self.emit(Kind::Error(message.into()), pos);
    }

    fn run(&mut self) {
        let mut trim_next_text = false;
        loop {
            // Text up to the next "{{".
            let start = self.pos;
            let end = self.text[start..].find("{{").map(|offset| start + offset).unwrap_or(self.bytes.len());
            let mut text = &self.text[start..end];
            let mut left_trim = false;
            if end < self.bytes.len() {
                // "{{- " trims the preceding whitespace.
                left_trim =
                    self.bytes.get(end + 2) == Some(&b'-') && self.bytes.get(end + 3).is_some_and(|b| is_space(*b));
                if left_trim {
                    text = text.trim_end_matches([' ', '\t', '\r', '\n']);
                }
            }
            if trim_next_text {
                text = text.trim_start_matches([' ', '\t', '\r', '\n']);
            }
            if !text.is_empty() {
                self.emit(Kind::Text(text.to_string()), start);
            }
            if end >= self.bytes.len() {
                self.pos = end;
                self.emit(Kind::Eof, end);
                return;
            }
            self.pos = end + 2;
            if left_trim {
                self.pos += 2;
            }
            // A comment: "{{/*" ... "*/}}".
            if self.text[self.pos..].starts_with("/*") {
                let Some(offset) = self.text[self.pos..].find("*/") else {
                    self.error("unclosed comment");
                    return;
                };
                self.pos += offset + 2;
                let (closed, trims) = self.at_right_delim();
                if !closed {
                    self.error("comment ends before closing delimiter");
                    return;
                }
                self.pos += if trims { 4 } else { 2 };
                trim_next_text = trims;
                continue;
            }
            self.emit(Kind::LeftDelim, end);
            self.paren_depth = 0;
            match self.inside_action() {
                Some(trims) => trim_next_text = trims,
                None => return,
            }
        }
    }

    /// Whether the text at `pos` is `}}` or ` -}}` (and whether it trims).
    fn at_right_delim(&self) -> (bool, bool) {
        let rest = &self.text[self.pos..];
        if rest.len() >= 4 && is_space(rest.as_bytes()[0]) && rest[1..].starts_with("-}}") {
            return (true, true);
        }
        (rest.starts_with("}}"), false)
    }

    /// Lexes one action up to its `}}`; `Some(trims)` on success, `None` after an error.
    fn inside_action(&mut self) -> Option<bool> {
        loop {
            let (closed, trims) = self.at_right_delim();
            if closed {
                if self.paren_depth > 0 {
                    self.error("unclosed left paren");
                    return None;
                }
                if trims {
                    self.pos += 2;
                }
                let pos = self.pos;
                self.emit(Kind::RightDelim, pos);
                self.pos += 2;
                return Some(trims);
            }
            let Some(character) = self.text[self.pos..].chars().next() else {
                self.error("unclosed action");
                return None;
            };
            let start = self.pos;
            match character {
                c if c.is_ascii() && is_space(c as u8) => {
                    // Stop before a " -}}" so the loop top sees the trim marker.
                    while self.pos < self.bytes.len() && is_space(self.bytes[self.pos]) && !self.at_right_delim().1 {
                        self.pos += 1;
                    }
                    if self.pos > start {
                        self.emit(Kind::Space, start);
                    }
                }
                '=' => {
                    self.pos += 1;
                    self.emit(Kind::Assign, start);
                }
                ':' => {
                    if self.bytes.get(self.pos + 1) != Some(&b'=') {
                        self.error("expected :=");
                        return None;
                    }
                    self.pos += 2;
                    self.emit(Kind::Declare, start);
                }
                '|' => {
                    self.pos += 1;
                    self.emit(Kind::Pipe, start);
                }
                '"' => {
                    if !self.quoted(start) {
                        return None;
                    }
                }
                '`' => {
                    let Some(offset) = self.text[start + 1..].find('`') else {
                        self.error("unterminated raw quoted string");
                        return None;
                    };
                    let end = start + 1 + offset;
                    let value = self.text[start + 1..end].to_string();
                    let raw = self.text[start..=end].to_string();
                    self.pos = end + 1;
                    self.emit(Kind::String { value, raw }, start);
                }
                '$' => {
                    self.pos += 1;
                    self.scan_word();
                    let name = self.text[start..self.pos].to_string();
                    if !self.at_terminator() {
                        let bad = self.text[self.pos..].chars().next().unwrap_or(' ');
                        self.error(format!("bad character {}", go_unicode(bad)));
                        return None;
                    }
                    self.emit(Kind::Variable(name), start);
                }
                '\'' => {
                    if !self.char_constant(start) {
                        return None;
                    }
                }
                '.' => {
                    if self.bytes.get(self.pos + 1).is_some_and(u8::is_ascii_digit) {
                        if !self.number(start) {
                            return None;
                        }
                    } else {
                        self.pos += 1;
                        let word_start = self.pos;
                        self.scan_word();
                        if self.pos == word_start {
                            self.emit(Kind::Dot, start);
                        } else {
                            if !self.at_terminator() {
                                let bad = self.text[self.pos..].chars().next().unwrap_or(' ');
                                self.error(format!("bad character {}", go_unicode(bad)));
                                return None;
                            }
                            let name = self.text[word_start..self.pos].to_string();
                            self.emit(Kind::Field(name), start);
                        }
                    }
                }
                '+' | '-' | '0'..='9' => {
                    if !self.number(start) {
                        return None;
                    }
                }
                '(' => {
                    self.pos += 1;
                    self.paren_depth += 1;
                    self.emit(Kind::LeftParen, start);
                }
                ')' => {
                    if self.paren_depth == 0 {
                        self.error("unexpected right paren");
                        return None;
                    }
                    self.paren_depth -= 1;
                    self.pos += 1;
                    self.emit(Kind::RightParen, start);
                }
                c if is_alphanumeric(c) => {
                    self.scan_word();
                    let word = &self.text[start..self.pos];
                    if !self.at_terminator() {
                        let bad = self.text[self.pos..].chars().next().unwrap_or(' ');
                        self.error(format!("bad character {}", go_unicode(bad)));
                        return None;
                    }
                    let kind = if let Some(keyword) = KEYWORDS.iter().find(|keyword| **keyword == word) {
                        Kind::Keyword(keyword)
                    } else if word == "true" || word == "false" {
                        Kind::Bool(word == "true")
                    } else if word == "nil" {
                        Kind::Nil
                    } else {
                        Kind::Identifier(word.to_string())
                    };
                    self.emit(kind, start);
                }
                c if c.is_ascii() && !c.is_ascii_control() => {
                    self.pos += 1;
                    self.emit(Kind::Char(c), start);
                }
                c => {
                    self.error(format!("unrecognized character in action: {}", go_unicode(c)));
                    return None;
                }
            }
        }
    }

    fn scan_word(&mut self) {
        while let Some(character) = self.text[self.pos..].chars().next() {
            if !is_alphanumeric(character) {
                break;
            }
            self.pos += character.len_utf8();
        }
    }

    /// Go's `atTerminator`: what may follow a word.
    fn at_terminator(&self) -> bool {
        let Some(character) = self.text[self.pos..].chars().next() else {
            return true;
        };
        if character.is_ascii() && is_space(character as u8) {
            return true;
        }
        if matches!(character, '.' | ',' | '|' | ':' | ')' | '(' | '=') {
            return true;
        }
        self.text[self.pos..].starts_with("}}")
    }

    fn quoted(&mut self, start: usize) -> bool {
        let mut index = start + 1;
        loop {
            match self.bytes.get(index) {
                None | Some(b'\n') => {
                    self.pos = index;
                    self.error("unterminated quoted string");
                    return false;
                }
                Some(b'\\') => index += 2,
                Some(b'"') => break,
                Some(_) => index += 1,
            }
        }
        let raw = &self.text[start..=index];
        match unquote(raw) {
            Ok(value) => {
                self.pos = index + 1;
                self.emit(Kind::String { value, raw: raw.to_string() }, start);
                true
            }
            Err(message) => {
                self.error(message);
                false
            }
        }
    }

    fn char_constant(&mut self, start: usize) -> bool {
        let mut index = start + 1;
        loop {
            match self.bytes.get(index) {
                None | Some(b'\n') => {
                    self.pos = index;
                    self.error("unterminated character constant");
                    return false;
                }
                Some(b'\\') => index += 2,
                Some(b'\'') => break,
                Some(_) => index += 1,
            }
        }
        self.pos = index + 1;
        let raw = self.text[start..self.pos].to_string();
        self.emit(Kind::Number(raw), start);
        true
    }

    fn number(&mut self, start: usize) -> bool {
        let mut index = start;
        if matches!(self.bytes.get(index), Some(b'+' | b'-')) {
            index += 1;
        }
        let mut digits: &[u8] = b"0123456789_";
        if self.bytes.get(index) == Some(&b'0') {
            match self.bytes.get(index + 1) {
                Some(b'x' | b'X') => {
                    index += 2;
                    digits = b"0123456789abcdefABCDEF_";
                }
                Some(b'o' | b'O') => {
                    index += 2;
                    digits = b"01234567_";
                }
                Some(b'b' | b'B') => {
                    index += 2;
                    digits = b"01_";
                }
                _ => {}
            }
        }
        let accept = |index: &mut usize, set: &[u8]| {
            while self.bytes.get(*index).is_some_and(|byte| set.contains(byte)) {
                *index += 1;
            }
        };
        accept(&mut index, digits);
        if self.bytes.get(index) == Some(&b'.') {
            index += 1;
            accept(&mut index, digits);
        }
        let hex = digits.len() > 20;
        let exponent_marks: &[u8] = if hex { b"pP" } else { b"eE" };
        if self.bytes.get(index).is_some_and(|byte| exponent_marks.contains(byte)) {
            index += 1;
            if matches!(self.bytes.get(index), Some(b'+' | b'-')) {
                index += 1;
            }
            accept(&mut index, b"0123456789_");
        }
        if self.bytes.get(index) == Some(&b'i') {
            index += 1;
        }
        self.pos = index;
        let next = self.text[index..].chars().next();
        if next.is_some_and(is_alphanumeric) {
            // Go consumes the bad character into the item for the message.
            let bad_end = index + next.map(char::len_utf8).unwrap_or(0);
            let text = self.text[start..bad_end].to_string();
            self.pos = bad_end;
            self.error(format!("bad number syntax: {}", super::format::quote(&text)[1..].trim_end_matches('"')));
            return false;
        }
        let text = self.text[start..index].to_string();
        self.emit(Kind::Number(text), start);
        true
    }
}

/// Go's `%#U` of a character (`U+00A0`, or `U+0041 'A'` when printable).
pub fn go_unicode(character: char) -> String {
    if character.is_control() || character.is_whitespace() && character != ' ' {
        format!("U+{:04X}", character as u32)
    } else {
        format!("U+{:04X} '{character}'", character as u32)
    }
}

/// Go's `strconv.Unquote` for a double-quoted literal.
pub fn unquote(raw: &str) -> Result<String, String> {
    let inner = &raw[1..raw.len() - 1];
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    let invalid = || "invalid syntax".to_string();
    while let Some(character) = chars.next() {
        if character != '\\' {
            out.push(character);
            continue;
        }
        let escape = chars.next().ok_or_else(invalid)?;
        match escape {
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\u{b}'),
            '\\' => out.push('\\'),
            '"' => out.push('"'),
            '0'..='7' => {
                let mut value = escape.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    let digit = chars.next().and_then(|c| c.to_digit(8)).ok_or_else(invalid)?;
                    value = value * 8 + digit;
                }
                if value > 255 {
                    return Err(invalid());
                }
                out.push(char::from_u32(value).ok_or_else(invalid)?);
            }
            'x' | 'u' | 'U' => {
                let count = match escape {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let mut value: u32 = 0;
                for _ in 0..count {
                    let digit = chars.next().and_then(|c| c.to_digit(16)).ok_or_else(invalid)?;
                    value = value.checked_mul(16).ok_or_else(invalid)? + digit;
                }
                out.push(char::from_u32(value).ok_or_else(invalid)?);
            }
            _ => return Err(invalid()),
        }
    }
    Ok(out)
}
