//! Calico's label selector language: `all()`, `k == 'v'`, `k != 'v'`,
//! `has(k)`, `k in {'a','b'}`, `k not in {..}`, `k contains 'x'`,
//! `k starts with 'x'`, `k ends with 'x'`, `!`, `&&`, `||` and
//! parentheses. Strings take single or double quotes (no escapes).

mod lexer;
mod parser;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A parsed selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    expr: Expr,
}

/// A selector expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `all()`: matches everything.
    All,
    /// `global()`: matches everything (margay has no namespaced
    /// endpoints, so it is the same as `all()`).
    Global,
    /// `k == 'v'`: label present with this value.
    Eq(String, String),
    /// `k != 'v'`: label absent or with another value.
    Ne(String, String),
    /// `has(k)`: label present.
    Has(String),
    /// `k in {..}`: label present with one of the values.
    In(String, BTreeSet<String>),
    /// `k not in {..}`: label absent or with none of the values.
    NotIn(String, BTreeSet<String>),
    /// `k contains 'x'`.
    Contains(String, String),
    /// `k starts with 'x'`.
    StartsWith(String, String),
    /// `k ends with 'x'`.
    EndsWith(String, String),
    /// `!e`.
    Not(Box<Expr>),
    /// `a && b && ...` (at least two terms).
    And(Vec<Expr>),
    /// `a || b || ...` (at least two terms).
    Or(Vec<Expr>),
}

/// A selector that does not parse: shows the input, the byte offset and
/// what was expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid selector {input:?} at byte {position}: expected {expected}, \
     found {found}"
)]
pub struct SelectorError {
    pub input: String,
    pub position: usize,
    pub expected: String,
    pub found: String,
}

impl SelectorError {
    fn new(
        input: &str,
        position: usize,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        SelectorError {
            input: input.to_string(),
            position,
            expected: expected.into(),
            found: found.into(),
        }
    }
}

// ===== impl Selector =====

impl Selector {
    /// Parses a selector; an empty (or blank) string means `all()`.
    pub fn parse(input: &str) -> Result<Selector, SelectorError> {
        if input.trim().is_empty() {
            return Ok(Selector { expr: Expr::All });
        }
        parser::parse(input).map(|expr| Selector { expr })
    }

    /// The selector matching everything.
    pub fn all() -> Selector {
        Selector { expr: Expr::All }
    }

    /// Builds a selector from an expression.
    pub fn from_expr(expr: Expr) -> Selector {
        Selector { expr }
    }

    /// The parsed expression.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// Whether a set of labels satisfies the selector.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.expr.matches(labels)
    }
}

impl std::str::FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)
    }
}

// ===== impl Expr =====

impl Expr {
    /// Evaluates the expression against labels.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let get = |k: &String| labels.get(k).map(String::as_str);
        match self {
            Expr::All | Expr::Global => true,
            Expr::Eq(k, v) => get(k) == Some(v.as_str()),
            Expr::Ne(k, v) => get(k) != Some(v.as_str()),
            Expr::Has(k) => labels.contains_key(k),
            Expr::In(k, set) => get(k).is_some_and(|v| set.contains(v)),
            Expr::NotIn(k, set) => !get(k).is_some_and(|v| set.contains(v)),
            Expr::Contains(k, s) => {
                get(k).is_some_and(|v| v.contains(s.as_str()))
            }
            Expr::StartsWith(k, s) => {
                get(k).is_some_and(|v| v.starts_with(s.as_str()))
            }
            Expr::EndsWith(k, s) => {
                get(k).is_some_and(|v| v.ends_with(s.as_str()))
            }
            Expr::Not(e) => !e.matches(labels),
            Expr::And(es) => es.iter().all(|e| e.matches(labels)),
            Expr::Or(es) => es.iter().any(|e| e.matches(labels)),
        }
    }
}

/// Writes a string literal with a quote character it does not contain.
fn quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    if s.contains('\'') {
        write!(f, "\"{s}\"")
    } else {
        write!(f, "'{s}'")
    }
}

fn set(f: &mut fmt::Formatter<'_>, values: &BTreeSet<String>) -> fmt::Result {
    f.write_str("{")?;
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        quoted(f, v)?;
    }
    f.write_str("}")
}

impl fmt::Display for Expr {
    /// Canonical text that parses back to the same expression: nested
    /// `&&`/`||` groups and operands of `!` other than simple terms are
    /// parenthesised.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::All => f.write_str("all()"),
            Expr::Global => f.write_str("global()"),
            Expr::Eq(k, v) => {
                write!(f, "{k} == ")?;
                quoted(f, v)
            }
            Expr::Ne(k, v) => {
                write!(f, "{k} != ")?;
                quoted(f, v)
            }
            Expr::Has(k) => write!(f, "has({k})"),
            Expr::In(k, vs) => {
                write!(f, "{k} in ")?;
                set(f, vs)
            }
            Expr::NotIn(k, vs) => {
                write!(f, "{k} not in ")?;
                set(f, vs)
            }
            Expr::Contains(k, v) => {
                write!(f, "{k} contains ")?;
                quoted(f, v)
            }
            Expr::StartsWith(k, v) => {
                write!(f, "{k} starts with ")?;
                quoted(f, v)
            }
            Expr::EndsWith(k, v) => {
                write!(f, "{k} ends with ")?;
                quoted(f, v)
            }
            Expr::Not(e) => match **e {
                Expr::All | Expr::Global | Expr::Has(_) | Expr::Not(_) => {
                    write!(f, "!{e}")
                }
                _ => write!(f, "!({e})"),
            },
            Expr::And(es) => {
                join(f, es, " && ", |e| matches!(e, Expr::And(_) | Expr::Or(_)))
            }
            Expr::Or(es) => join(f, es, " || ", |e| matches!(e, Expr::Or(_))),
        }
    }
}

/// Writes terms separated by `sep`, parenthesising those `paren` picks.
fn join(
    f: &mut fmt::Formatter<'_>,
    es: &[Expr],
    sep: &str,
    paren: impl Fn(&Expr) -> bool,
) -> fmt::Result {
    for (i, e) in es.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        if paren(e) {
            write!(f, "({e})")?;
        } else {
            write!(f, "{e}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
