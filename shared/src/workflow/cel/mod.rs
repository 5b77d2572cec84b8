//! CEL expressions of a definition: the environment they run in, the limits
//! that bound what they may cost, and the static checks done once at
//! [`check`](super::Definition::check) time.
//!
//! # Cost
//!
//! Expressions are evaluated inside the engine, on data that callers send,
//! so their cost is bounded when the definition is checked:
//! - at most [`MAX_EXPRESSION_LEN`] bytes of source;
//! - brackets (`(`, `[`, `{`) nested at most [`MAX_EXPRESSION_NESTING`] deep
//!   (checked before the parser runs, which protects its recursion);
//! - macros that iterate (`all`, `exists`, `exists_one`, `map`, `filter`)
//!   nested at most [`MAX_COMPREHENSION_NESTING`] deep, so an expression
//!   costs at most O(size of its data ^ 2) steps; there is no `lists.range`
//!   and no fold, so values cannot grow beyond what the data and the source
//!   spell out.
//!
//! `foreach` lists are bounded at evaluation time by [`MAX_FOREACH_ITEMS`].
//! The remaining cost is linear in the size of the run's data, which the
//! message size limit bounds; the engine should still evaluate on a worker
//! thread (`spawn_blocking`) when the data are large.
//!
//! # Environment
//!
//! The CEL standard library plus the `strings` (`lowerAscii`, `split`,
//! `join`, `format`, ...) and `math` (`math.round`, `math.greatest`, ...)
//! extensions. Variables: `input`, `steps`, `run` everywhere, `item` and
//! `index` in `foreach` steps (see [`super::eval`]).

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue};
use cel::{Env, Program};

use super::error::ErrorKind;

/// Longest expression source, in bytes.
pub const MAX_EXPRESSION_LEN: usize = 4096;
/// Deepest nesting of `(`, `[` and `{` in an expression.
pub const MAX_EXPRESSION_NESTING: usize = 32;
/// Deepest nesting of iterating macros (`map`, `filter`, `all`, `exists`, `exists_one`).
pub const MAX_COMPREHENSION_NESTING: usize = 2;
/// Most items a `foreach` expression may produce.
pub const MAX_FOREACH_ITEMS: usize = 1000;

/// Variables every expression sees.
const GLOBALS: [&str; 3] = ["input", "steps", "run"];
/// Variables only `foreach` steps see.
const FOREACH_VARS: [&str; 2] = ["item", "index"];
/// Identifiers that name types (`type(x) == int`).
const TYPE_NAMES: [&str; 14] = [
    "bool",
    "bytes",
    "double",
    "duration",
    "dyn",
    "int",
    "list",
    "map",
    "null_type",
    "optional_type",
    "string",
    "timestamp",
    "type",
    "uint",
];
/// Function namespaces (`math.round(x)`, `optional.of(x)`, `strings.quote(s)`).
const NAMESPACES: [&str; 3] = ["math", "optional", "strings"];

/// The environment every workflow expression is compiled and run in.
pub(crate) fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        // Adding the bundled extensions to a fresh stdlib cannot conflict; if a
        // future version made it fail, expressions using them would simply not
        // compile, which check() reports.
        let _ = env.add_extension(cel::extensions::strings);
        let _ = env.add_extension(cel::extensions::math);
        Arc::new(env)
    })
}

/// Stack for compiling CEL. The parser (ANTLR) recurses through a dozen
/// rules per bracket level; with dependencies built at opt-level 0 a 2 MiB
/// stack (a test or tokio worker thread) overflowed at 12 levels, which would
/// abort the process. 32 levels need well under 8 MiB in any profile.
const COMPILE_STACK_BYTES: usize = 16 << 20;

/// Runs `f` on a thread with [`COMPILE_STACK_BYTES`] of stack, or here if no
/// thread can be started. A panic in `f` is resumed on the caller.
pub(crate) fn on_big_stack<T: Send>(f: impl Fn() -> T + Sync) -> T {
    let outcome = std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("workflow-check".into())
            .stack_size(COMPILE_STACK_BYTES)
            .spawn_scoped(scope, &f)
            .map(|handle| handle.join())
    });
    match outcome {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => f(),
    }
}

/// What a step reference in an expression resolves to.
pub(crate) enum StepRef {
    /// The step exists and has settled before this expression runs.
    Visible,
    /// The step exists but may not have run yet; the text says why.
    Hidden(String),
    /// No such step.
    Unknown,
}

/// What an expression may refer to, where it is written.
pub(crate) struct Scope<'a> {
    /// Whether `item` and `index` are bound (inside a `foreach` step's input).
    pub foreach: bool,
    /// Resolves `steps.<id>`.
    pub step: &'a (dyn Fn(&str) -> StepRef + Sync),
}

/// The type an expression must produce where it is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expect {
    Bool,
    List,
    Map,
    Any,
}

/// One problem with one expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Problem {
    pub kind: ErrorKind,
    pub message: String,
}

impl Problem {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// Compiles `source` after the cheap limits, then checks what it refers to.
pub(crate) fn compile(
    source: &str,
    scope: &Scope<'_>,
    expect: Expect,
) -> Result<Program, Vec<Problem>> {
    if source.len() > MAX_EXPRESSION_LEN {
        return Err(vec![Problem::new(
            ErrorKind::CelTooLong,
            format!(
                "expression is {} bytes long, the limit is {MAX_EXPRESSION_LEN}",
                source.len()
            ),
        )]);
    }
    let depth = bracket_depth(source);
    if depth > MAX_EXPRESSION_NESTING {
        return Err(vec![Problem::new(
            ErrorKind::CelTooDeep,
            format!("brackets nest {depth} deep, the limit is {MAX_EXPRESSION_NESTING}"),
        )]);
    }
    if source.trim().is_empty() {
        return Err(vec![Problem::new(
            ErrorKind::CelSyntax,
            "expression is empty",
        )]);
    }
    let program = env().compile(source).map_err(|errors| {
        let message = errors
            .errors
            .iter()
            .map(|e| format!("{}:{}: {}", e.pos.0, e.pos.1, e.msg))
            .collect::<Vec<_>>()
            .join("; ");
        vec![Problem::new(ErrorKind::CelSyntax, message)]
    })?;
    let mut walk = Walk {
        scope,
        bound: Vec::new(),
        depth: 0,
        deepest: 0,
        problems: Vec::new(),
        seen: BTreeSet::new(),
    };
    walk.expr(program.expression());
    if walk.deepest > MAX_COMPREHENSION_NESTING {
        walk.problems.push(Problem::new(
            ErrorKind::CelTooComplex,
            format!(
                "iterating macros nest {} deep, the limit is {MAX_COMPREHENSION_NESTING}",
                walk.deepest
            ),
        ));
    }
    if let Some(got) = wrong_literal(program.expression(), expect) {
        walk.problems.push(Problem::new(
            ErrorKind::CelWrongType,
            format!(
                "expression is a {got} literal, a {} is needed here",
                expect_name(expect)
            ),
        ));
    }
    if walk.problems.is_empty() {
        Ok(program)
    } else {
        Err(walk.problems)
    }
}

fn expect_name(expect: Expect) -> &'static str {
    match expect {
        Expect::Bool => "bool",
        Expect::List => "list",
        Expect::Map => "map",
        Expect::Any => "value",
    }
}

/// The kind of a top-level literal that cannot be what `expect` needs.
fn wrong_literal(root: &IdedExpr, expect: Expect) -> Option<&'static str> {
    let got = match &root.expr {
        Expr::Literal(LiteralValue::Boolean(_)) => "bool",
        Expr::Literal(LiteralValue::Bytes(_)) => "bytes",
        Expr::Literal(LiteralValue::Double(_)) => "double",
        Expr::Literal(LiteralValue::Int(_)) => "int",
        Expr::Literal(LiteralValue::UInt(_)) => "uint",
        Expr::Literal(LiteralValue::String(_)) => "string",
        Expr::Literal(LiteralValue::Null) => "null",
        Expr::List(_) => "list",
        Expr::Map(_) => "map",
        _ => return None,
    };
    let fits = match expect {
        Expect::Any => true,
        Expect::Bool => got == "bool",
        Expect::List => got == "list",
        Expect::Map => got == "map",
    };
    (!fits).then_some(got)
}

/// Deepest nesting of `(`, `[`, `{` outside string literals and comments. Runs in one pass
/// over the bytes, before the parser sees the source.
pub(crate) fn bracket_depth(source: &str) -> usize {
    let bytes = source.as_bytes();
    let (mut depth, mut deepest, mut i) = (0usize, 0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'(' | b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
                i += 1;
            }
            b')' | b']' | b'}' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            quote @ (b'\'' | b'"') => i = skip_string(bytes, i, quote),
            // A `//` comment runs to the end of the line; quotes in it open nothing.
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                i = bytes[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |n| i + n + 1);
            }
            _ => i += 1,
        }
    }
    deepest
}

/// Index just past the string literal opening at `start`.
fn skip_string(bytes: &[u8], start: usize, quote: u8) -> usize {
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    // A raw string is prefixed r/R (possibly after b/B): `r'..'`, `br'..'`.
    let raw = start >= 1
        && matches!(bytes[start - 1], b'r' | b'R')
        && (start < 2
            || !is_ident(bytes[start - 2])
            || (matches!(bytes[start - 2], b'b' | b'B')
                && (start < 3 || !is_ident(bytes[start - 3]))));
    let triple = bytes.get(start + 1) == Some(&quote) && bytes.get(start + 2) == Some(&quote);
    let mut i = start + if triple { 3 } else { 1 };
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\\' && !raw {
            i += 2;
            continue;
        }
        if b == quote {
            if !triple {
                return i + 1;
            }
            if bytes.get(i + 1) == Some(&quote) && bytes.get(i + 2) == Some(&quote) {
                return i + 3;
            }
        }
        if b == b'\n' && !triple {
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

/// The static pass over a compiled expression.
struct Walk<'s, 'a> {
    scope: &'s Scope<'a>,
    /// Variables bound by enclosing macros.
    bound: Vec<String>,
    depth: usize,
    deepest: usize,
    problems: Vec<Problem>,
    /// Names already reported, so each is reported once per expression.
    seen: BTreeSet<String>,
}

impl Walk<'_, '_> {
    fn is_bound(&self, name: &str) -> bool {
        self.bound.iter().any(|b| b == name)
    }

    /// `ident` names the (unshadowed) global `steps`.
    fn is_steps(&self, e: &IdedExpr) -> bool {
        matches!(&e.expr, Expr::Ident(name) if name.trim_start_matches('.') == "steps" && !self.is_bound("steps"))
    }

    fn report(&mut self, key: String, problem: Problem) {
        if self.seen.insert(key) {
            self.problems.push(problem);
        }
    }

    fn step_ref(&mut self, id: &str) {
        match (self.scope.step)(id) {
            StepRef::Visible => {}
            StepRef::Hidden(why) => self.report(
                format!("step:{id}"),
                Problem::new(ErrorKind::CelStepNotVisible, why),
            ),
            StepRef::Unknown => self.report(
                format!("step:{id}"),
                Problem::new(
                    ErrorKind::CelUnknownStep,
                    format!("no step `{id}` (in `steps.{id}`)"),
                ),
            ),
        }
    }

    fn ident(&mut self, raw: &str) {
        let name = raw.trim_start_matches('.');
        if name.starts_with('@')
            || self.is_bound(name)
            || GLOBALS.contains(&name)
            || TYPE_NAMES.contains(&name)
        {
            return;
        }
        if FOREACH_VARS.contains(&name) {
            if !self.scope.foreach {
                self.report(
                    format!("var:{name}"),
                    Problem::new(
                        ErrorKind::CelUnknownVariable,
                        format!("`{name}` is only defined in the input of a `foreach` step"),
                    ),
                );
            }
            return;
        }
        self.report(
            format!("var:{name}"),
            Problem::new(
                ErrorKind::CelUnknownVariable,
                format!("unknown variable `{name}` (variables: input, steps, run; item, index in foreach)"),
            ),
        );
    }

    fn expr(&mut self, e: &IdedExpr) {
        match &e.expr {
            Expr::Unspecified | Expr::Literal(_) => {}
            Expr::Ident(name) => self.ident(name),
            Expr::Select(select) => {
                if self.is_steps(&select.operand) {
                    self.step_ref(&select.field);
                }
                self.expr(&select.operand);
            }
            Expr::Call(call) => {
                if let ("_[_]", [target, key]) = (call.func_name.as_str(), call.args.as_slice())
                    && let Expr::Literal(LiteralValue::String(id)) = &key.expr
                    && self.is_steps(target)
                {
                    self.step_ref(id.inner());
                }
                if let Some(target) = &call.target {
                    let namespace = matches!(&target.expr, Expr::Ident(ns)
                        if NAMESPACES.contains(&ns.as_str()) && !self.is_bound(ns));
                    if !namespace {
                        self.expr(target);
                    }
                }
                for arg in &call.args {
                    self.expr(arg);
                }
            }
            Expr::List(list) => {
                for element in &list.elements {
                    self.expr(element);
                }
            }
            Expr::Map(map) => {
                for entry in &map.entries {
                    self.entry(&entry.expr);
                }
            }
            Expr::Struct(st) => {
                for entry in &st.entries {
                    self.entry(&entry.expr);
                }
            }
            Expr::Comprehension(c) => {
                self.expr(&c.iter_range);
                self.depth += 1;
                self.deepest = self.deepest.max(self.depth);
                let before = self.bound.len();
                self.bound.push(c.iter_var.clone());
                if let Some(second) = &c.iter_var2 {
                    self.bound.push(second.clone());
                }
                self.bound.push(c.accu_var.clone());
                for part in [&c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                    self.expr(part);
                }
                self.bound.truncate(before);
                self.depth -= 1;
            }
        }
    }

    fn entry(&mut self, entry: &EntryExpr) {
        match entry {
            EntryExpr::MapEntry(m) => {
                self.expr(&m.key);
                self.expr(&m.value);
            }
            EntryExpr::StructField(f) => self.expr(&f.value),
        }
    }
}

#[cfg(test)]
mod tests;
