//! Execution of a parsed template (Go's `text/template/exec.go`) with Prometheus' option
//! `missingkey=zero`: a missing `map[string]string` key reads as `""`, a missing key of a
//! `map[string]interface{}` or a field of nil reads as nil, printed `<no value>`.
//!
//! Invariants: variables live on one stack, popped at the end of the control structure that
//! declared them (Go's `mark`/`pop`); output, range iterations and `template` depth are bounded
//! (`OUTPUT_SIZE_MAX`, `RANGE_ITERATION_COUNT_MAX`, `NESTING_DEPTH_MAX`).

use std::sync::Arc;

use super::functions::{self, CallError};
use super::parse::{Arg, Command, ControlKind, ListNode, Node, Pipe};
use super::{Context, Template, TemplateError, Value, NESTING_DEPTH_MAX, OUTPUT_SIZE_MAX, RANGE_ITERATION_COUNT_MAX};

/// What a walk asks of the enclosing range.
enum Flow {
    Normal,
    Break,
    Continue,
}

struct State<'a> {
    template: &'a Template,
    context: &'a Context<'a>,
    tree_name: String,
    vars: Vec<(String, Value)>,
    out: String,
    range_iteration_count: usize,
    depth: usize,
}

type Result<T> = std::result::Result<T, TemplateError>;

/// Executes the main tree of `template` with `dot`.
pub fn execute(template: &Template, dot: &Value, context: &Context<'_>) -> Result<String> {
    let Some(root) = template.trees.get(&template.name).cloned() else {
        return Err(TemplateError::Execute {
            name: template.name.clone(),
            message: format!("{}: \"{}\" is an incomplete or empty template", template.name, template.name),
        });
    };
    let mut state = State {
        template,
        context,
        tree_name: template.name.clone(),
        vars: vec![("$".to_string(), dot.clone())],
        out: String::new(),
        range_iteration_count: 0,
        depth: 0,
    };
    state.walk_list(dot, &root)?;
    Ok(state.out)
}

impl State<'_> {
    /// An execution error at byte `pos` with Go's location and context.
    fn error(&self, pos: usize, context: &str, message: impl std::fmt::Display) -> TemplateError {
        let text = &self.template.text;
        let pos = pos.min(text.len());
        let before = &text[..pos];
        let line = 1 + before.matches('\n').count();
        let column = match before.rfind('\n') {
            Some(newline) => pos - newline - 1,
            None => pos,
        };
        TemplateError::Execute {
            name: self.template.name.clone(),
            message: format!(
                "{}:{line}:{column}: executing \"{}\" at <{context}>: {message}",
                self.template.name, self.tree_name
            ),
        }
    }

    fn write(&mut self, text: &str, pos: usize) -> Result<()> {
        if self.out.len() + text.len() > OUTPUT_SIZE_MAX {
            return Err(self.error(pos, "output", format!("output exceeds {OUTPUT_SIZE_MAX} bytes (OUTPUT_SIZE_MAX)")));
        }
        self.out.push_str(text);
        Ok(())
    }

    fn walk_list(&mut self, dot: &Value, list: &ListNode) -> Result<Flow> {
        for node in &list.nodes {
            match self.walk(dot, node)? {
                Flow::Normal => {}
                other => return Ok(other),
            }
        }
        Ok(Flow::Normal)
    }

    fn walk(&mut self, dot: &Value, node: &Node) -> Result<Flow> {
        match node {
            Node::Text(text) => self.write(text, 0)?,
            Node::Action(pipe) => {
                let value = self.eval_pipeline(dot, pipe)?;
                if pipe.decls.is_empty() {
                    let text = match value {
                        Value::Nil => "<no value>".to_string(),
                        other => other.to_go_string(),
                    };
                    self.write(&text, pipe.pos)?;
                }
            }
            Node::Control { kind, pipe, list, else_list } => {
                let mark = self.vars.len();
                let flow = self.walk_control(dot, *kind, pipe, list, else_list.as_ref());
                self.vars.truncate(mark);
                return flow;
            }
            Node::Template { pos, name, pipe } => {
                let Some(tree) = self.template.trees.get(name).cloned() else {
                    return Err(self.error(
                        *pos,
                        &format!("template {}", super::format::quote(name)),
                        format!("template {} not defined", super::format::quote(name)),
                    ));
                };
                let new_dot = match pipe {
                    Some(pipe) => self.eval_pipeline(dot, pipe)?,
                    None => Value::Nil,
                };
                if self.depth >= NESTING_DEPTH_MAX {
                    return Err(self.error(
                        *pos,
                        "template",
                        format!("exceeded maximum template depth ({NESTING_DEPTH_MAX})"),
                    ));
                }
                self.depth += 1;
                let saved_vars = std::mem::replace(&mut self.vars, vec![("$".to_string(), new_dot.clone())]);
                let saved_name = std::mem::replace(&mut self.tree_name, name.clone());
                let result = self.walk_list(&new_dot, &tree);
                self.vars = saved_vars;
                self.tree_name = saved_name;
                self.depth -= 1;
                result?;
            }
            Node::Break => return Ok(Flow::Break),
            Node::Continue => return Ok(Flow::Continue),
        }
        Ok(Flow::Normal)
    }

    fn walk_control(
        &mut self,
        dot: &Value,
        kind: ControlKind,
        pipe: &Pipe,
        list: &ListNode,
        else_list: Option<&ListNode>,
    ) -> Result<Flow> {
        let value = self.eval_pipeline(dot, pipe)?;
        match kind {
            ControlKind::If | ControlKind::With => {
                if functions::truth(&value) {
                    let new_dot = if kind == ControlKind::With { value } else { dot.clone() };
                    self.walk_list(&new_dot, list)
                } else if let Some(else_list) = else_list {
                    self.walk_list(dot, else_list)
                } else {
                    Ok(Flow::Normal)
                }
            }
            ControlKind::Range => {
                let items: Vec<(Value, Value)> = match &value {
                    Value::Nil => Vec::new(),
                    Value::List(list) => {
                        list.iter().enumerate().map(|(i, v)| (Value::Int(i as i64), v.clone())).collect()
                    }
                    Value::Samples(samples) => samples
                        .iter()
                        .enumerate()
                        .map(|(i, sample)| (Value::Int(i as i64), Value::Sample(Arc::new(sample.clone()))))
                        .collect(),
                    Value::StringMap(map) => {
                        map.iter().map(|(k, v)| (Value::String(k.clone()), Value::String(v.clone()))).collect()
                    }
                    Value::Map(map) => map.iter().map(|(k, v)| (Value::String(k.clone()), v.clone())).collect(),
                    other => {
                        return Err(self.error(
                            pipe.pos,
                            &pipe.to_string(),
                            format!("range can't iterate over {}", other.to_go_string()),
                        ));
                    }
                };
                if items.is_empty() {
                    if let Some(else_list) = else_list {
                        return self.walk_list(dot, else_list);
                    }
                    return Ok(Flow::Normal);
                }
                let mark = self.vars.len();
                for (key, element) in items {
                    self.range_iteration_count += 1;
                    if self.range_iteration_count > RANGE_ITERATION_COUNT_MAX {
                        return Err(self.error(
                            pipe.pos,
                            &pipe.to_string(),
                            format!(
                                "more than {RANGE_ITERATION_COUNT_MAX} range iterations (RANGE_ITERATION_COUNT_MAX)"
                            ),
                        ));
                    }
                    match pipe.decls.as_slice() {
                        [] => {}
                        [only] => self.set_or_push(only, element.clone(), pipe.is_assign, mark),
                        [first, second, ..] => {
                            self.set_or_push(first, key, pipe.is_assign, mark);
                            self.set_or_push(second, element.clone(), pipe.is_assign, mark);
                        }
                    }
                    let flow = self.walk_list(&element, list)?;
                    self.vars.truncate(mark);
                    if matches!(flow, Flow::Break) {
                        break;
                    }
                }
                Ok(Flow::Normal)
            }
        }
    }

    fn set_or_push(&mut self, name: &str, value: Value, is_assign: bool, _mark: usize) {
        if is_assign {
            if let Some(slot) = self.vars.iter_mut().rev().find(|(var, _)| var == name) {
                slot.1 = value;
                return;
            }
        }
        self.vars.push((name.to_string(), value));
    }

    fn eval_pipeline(&mut self, dot: &Value, pipe: &Pipe) -> Result<Value> {
        let mut value: Option<Value> = None;
        for command in &pipe.cmds {
            value = Some(self.eval_command(dot, command, value)?);
        }
        let value = value.unwrap_or(Value::Nil);
        for name in &pipe.decls {
            if pipe.is_assign {
                match self.vars.iter_mut().rev().find(|(var, _)| var == name) {
                    Some(slot) => slot.1 = value.clone(),
                    None => return Err(self.error(pipe.pos, &pipe.to_string(), format!("undefined variable: {name}"))),
                }
            } else {
                self.vars.push((name.clone(), value.clone()));
            }
        }
        Ok(value)
    }

    fn eval_command(&mut self, dot: &Value, command: &Command, last: Option<Value>) -> Result<Value> {
        let first = &command.args[0];
        let rest = &command.args[1..];
        match first {
            Arg::Identifier { name, .. } => return self.eval_function(dot, command, name, rest, last),
            Arg::Field { pos, idents } => {
                return self.eval_field_chain(dot, dot.clone(), *pos, &first.to_string(), idents, rest, last)
            }
            Arg::Variable { pos, name, idents } => {
                let value = self.variable(*pos, name)?;
                if idents.is_empty() {
                    self.not_a_function(command, last.is_some())?;
                    return Ok(value);
                }
                return self.eval_field_chain(dot, value, *pos, &first.to_string(), idents, rest, last);
            }
            Arg::Chain { pos, node, idents } => {
                let value = self.eval_arg(dot, node)?;
                return self.eval_field_chain(dot, value, *pos, &first.to_string(), idents, rest, last);
            }
            _ => {}
        }
        self.not_a_function(command, last.is_some())?;
        self.eval_arg(dot, first)
    }

    fn not_a_function(&self, command: &Command, has_final: bool) -> Result<()> {
        if command.args.len() > 1 || has_final {
            let first = &command.args[0];
            return Err(self.error(
                first.pos(),
                &first.to_string(),
                format!("can't give argument to non-function {first}"),
            ));
        }
        Ok(())
    }

    fn variable(&self, pos: usize, name: &str) -> Result<Value> {
        match self.vars.iter().rev().find(|(var, _)| var == name) {
            Some((_, value)) => Ok(value.clone()),
            None => Err(self.error(pos, name, format!("undefined variable: {name}"))),
        }
    }

    /// Evaluates an operand to a value (Go's `evalArg` for an `interface{}` parameter).
    fn eval_arg(&mut self, dot: &Value, arg: &Arg) -> Result<Value> {
        Ok(match arg {
            Arg::Dot { .. } => dot.clone(),
            Arg::Nil { .. } => Value::Nil,
            Arg::Bool { value, .. } => Value::Bool(*value),
            Arg::String { value, .. } => Value::String(value.clone()),
            Arg::Number { pos, number } => {
                if number.float_literal {
                    Value::Float(number.float.unwrap_or(0.0))
                } else {
                    match number.int {
                        Some(v) => Value::Int(v),
                        None => return Err(self.error(*pos, &number.text, format!("{} overflows int", number.text))),
                    }
                }
            }
            Arg::Field { pos, idents } => {
                self.eval_field_chain(dot, dot.clone(), *pos, &arg.to_string(), idents, &[], None)?
            }
            Arg::Variable { pos, name, idents } => {
                let value = self.variable(*pos, name)?;
                if idents.is_empty() {
                    value
                } else {
                    self.eval_field_chain(dot, value, *pos, &arg.to_string(), idents, &[], None)?
                }
            }
            Arg::Pipe(pipe) => {
                let mark = self.vars.len();
                let value = self.eval_pipeline(dot, pipe);
                self.vars.truncate(mark);
                value?
            }
            Arg::Identifier { name, pos } => {
                let command = Command { pos: *pos, args: vec![arg.clone()] };
                self.eval_function(dot, &command, name, &[], None)?
            }
            Arg::Chain { pos, node, idents } => {
                let value = self.eval_arg(dot, node)?;
                self.eval_field_chain(dot, value, *pos, &arg.to_string(), idents, &[], None)?
            }
        })
    }

    fn eval_args(&mut self, dot: &Value, args: &[Arg], last: Option<Value>) -> Result<Vec<Value>> {
        let mut values = Vec::with_capacity(args.len() + 1);
        for arg in args {
            values.push(self.eval_arg(dot, arg)?);
        }
        values.extend(last);
        Ok(values)
    }

    fn eval_function(
        &mut self,
        dot: &Value,
        command: &Command,
        name: &str,
        args: &[Arg],
        last: Option<Value>,
    ) -> Result<Value> {
        let context_text = command.to_string();
        let pos = command.pos;
        if name == "and" || name == "or" {
            // Go 1.18+: evaluated left to right, stopping at the first decisive argument.
            let count = args.len() + usize::from(last.is_some());
            if count == 0 {
                return Err(self.error(
                    pos,
                    &context_text,
                    format!("wrong number of args for {name}: want at least 1 got 0"),
                ));
            }
            let mut value = Value::Nil;
            for arg in args {
                value = self.eval_arg(dot, arg)?;
                if functions::truth(&value) == (name == "or") {
                    return Ok(value);
                }
            }
            if let Some(last) = last {
                value = last;
            }
            return Ok(value);
        }
        let values = self.eval_args(dot, args, last)?;
        functions::call(name, values, self.context).map_err(|error| match error {
            CallError::Arguments(message) => self.error(pos, &context_text, message),
            CallError::Failed(message) => self.error(pos, &context_text, format!("error calling {name}: {message}")),
        })
    }

    #[allow(clippy::too_many_arguments)] // Go's evalFieldChain takes the same inputs.
    fn eval_field_chain(
        &mut self,
        dot: &Value,
        receiver: Value,
        pos: usize,
        context_text: &str,
        idents: &[String],
        args: &[Arg],
        last: Option<Value>,
    ) -> Result<Value> {
        let mut value = receiver;
        for (index, ident) in idents.iter().enumerate() {
            let is_last = index + 1 == idents.len();
            let (call_args, call_last) = if is_last { (args, last.clone()) } else { (&[][..], None) };
            value = self.eval_field(dot, value, pos, context_text, ident, call_args, call_last)?;
        }
        Ok(value)
    }

    #[allow(clippy::too_many_arguments)] // Go's evalField takes the same inputs.
    fn eval_field(
        &mut self,
        dot: &Value,
        receiver: Value,
        pos: usize,
        context_text: &str,
        name: &str,
        args: &[Arg],
        last: Option<Value>,
    ) -> Result<Value> {
        let has_args = !args.is_empty() || last.is_some();
        if let Value::Time(nanos) = receiver {
            let values = self.eval_args(dot, args, last)?;
            return match functions::time_method(nanos, name, &values) {
                Some(Ok(value)) => Ok(value),
                Some(Err(CallError::Arguments(message))) => Err(self.error(pos, context_text, message)),
                Some(Err(CallError::Failed(message))) => {
                    Err(self.error(pos, context_text, format!("error calling {name}: {message}")))
                }
                None => Err(self.error(pos, context_text, format!("can't evaluate field {name} in type time.Time"))),
            };
        }
        let not_method =
            |state: &Self| state.error(pos, context_text, format!("{name} is not a method but has arguments"));
        let value = match &receiver {
            Value::Nil => return Ok(Value::Nil),
            Value::StringMap(map) => {
                if has_args {
                    return Err(not_method(self));
                }
                Value::String(map.get(name).cloned().unwrap_or_default())
            }
            Value::Map(map) => {
                if has_args {
                    return Err(not_method(self));
                }
                map.get(name).cloned().unwrap_or(Value::Nil)
            }
            Value::Struct(value) => match value.fields.iter().find(|(field, _)| field == name) {
                Some((_, field)) if !has_args => field.clone(),
                Some(_) => {
                    return Err(self.error(
                        pos,
                        context_text,
                        format!("{name} has arguments but cannot be invoked as function"),
                    ))
                }
                None => {
                    return Err(self.error(
                        pos,
                        context_text,
                        format!("can't evaluate field {name} in type {}", value.type_name),
                    ));
                }
            },
            Value::Sample(sample) if name == "Labels" || name == "Value" => {
                if has_args {
                    return Err(self.error(
                        pos,
                        context_text,
                        format!("{name} has arguments but cannot be invoked as function"),
                    ));
                }
                if name == "Labels" {
                    Value::StringMap(Arc::new(sample.labels.clone()))
                } else {
                    Value::Float(sample.value)
                }
            }
            other => {
                let type_name = match other {
                    Value::Sample(_) => "template.sample",
                    other => other.type_name(),
                };
                return Err(self.error(pos, context_text, format!("can't evaluate field {name} in type {type_name}")));
            }
        };
        Ok(value)
    }
}
