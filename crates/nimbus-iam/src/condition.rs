//! The `Condition` element: `{ "Operator": { "key": value-or-values } }`.
//!
//! Semantics are AWS's, and they are subtle enough to state once, here:
//! - every operator in a block must hold, and every key under an operator must hold (AND);
//!   several values for one key in the policy are alternatives (OR);
//! - key names are case-insensitive; JSON numbers and booleans are read as strings;
//! - a key the request lacks makes positive operators false and negated ones
//!   (`StringNotEquals`, `ArnNotLike`, `NumericNotEquals`, …) true, since "is not equal to
//!   any of these" holds vacuously; the `…IfExists` suffix makes a missing key true; `Null`
//!   tests presence itself (`"true"` = absent);
//! - a request key with several values: a plain operator asks whether *any* value matches
//!   (its negation, whether *none* does); `ForAnyValue:` asks whether some request value
//!   satisfies the operator and is false when the key is missing; `ForAllValues:` asks
//!   whether every request value does and is true when the key is missing.
//!
//! Operators are resolved and values compiled (patterns, numbers, dates, address blocks)
//! when the policy is parsed, so an unknown operator is a parse error rather than a
//! silent non-match, and evaluation does no parsing of the policy side.
//!
//! Supported: `String*`, `Arn*` (`ArnEquals` with wildcards behaves as `ArnLike`, as on AWS),
//! `Numeric*`, `Date*`, `Bool`, `BinaryEquals`, `IpAddress`/`NotIpAddress`, `Null`.

mod date;
mod ip;

use serde_json::Value;

use crate::context::{Context, Env};
use crate::matching::Case;
use crate::variables::{Syntax, Template};

use date::Timestamp;
use ip::Cidr;

/// A compiled `Condition` element. An empty condition always holds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Condition {
    clauses: Vec<Clause>,
}

/// One key under one operator.
#[derive(Debug, Clone, PartialEq)]
struct Clause {
    operator: Operator,
    set: SetQualifier,
    if_exists: bool,
    /// Lower-cased key name.
    key: Box<str>,
    operand: Operand,
}

/// `ForAnyValue:` / `ForAllValues:` or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetQualifier {
    Single,
    ForAnyValue,
    ForAllValues,
}

/// An operator without its qualifiers: what it tests and whether it is negated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Operator {
    test: Test,
    negated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Test {
    StringEquals,
    StringEqualsIgnoreCase,
    StringLike,
    ArnLike,
    Numeric(Ordering),
    Date(Ordering),
    Bool,
    Binary,
    IpAddress,
    Null,
}

/// The comparison of `Numeric*` / `Date*` operators: request value OP policy value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ordering {
    Equals,
    LessThan,
    LessThanEquals,
    GreaterThan,
    GreaterThanEquals,
}

impl Ordering {
    fn holds<T: PartialOrd>(self, request: T, policy: T) -> bool {
        match self {
            Ordering::Equals => request == policy,
            Ordering::LessThan => request < policy,
            Ordering::LessThanEquals => request <= policy,
            Ordering::GreaterThan => request > policy,
            Ordering::GreaterThanEquals => request >= policy,
        }
    }
}

/// The policy's values for one key, compiled for the operator. Values that cannot be
/// read for the operator (a non-number under `NumericEquals`) are kept as `None`, which
/// matches nothing.
#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Text(Vec<Template>),
    Numbers(Vec<Option<f64>>),
    Dates(Vec<Timestamp>),
    Bools(Vec<Option<bool>>),
    Blocks(Vec<Option<Cidr>>),
}

/// Why a `Condition` element was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConditionError {
    /// Wrong JSON shape or unknown operator (IAM: "Syntax errors in policy.").
    Syntax,
    /// A value IAM's legacy parser rejects, such as an unreadable date.
    Legacy,
}

/// Operators by name.
const OPERATORS: &[(&str, Test, bool)] = &[
    ("StringEquals", Test::StringEquals, false),
    ("StringNotEquals", Test::StringEquals, true),
    (
        "StringEqualsIgnoreCase",
        Test::StringEqualsIgnoreCase,
        false,
    ),
    (
        "StringNotEqualsIgnoreCase",
        Test::StringEqualsIgnoreCase,
        true,
    ),
    ("StringLike", Test::StringLike, false),
    ("StringNotLike", Test::StringLike, true),
    ("ArnEquals", Test::ArnLike, false),
    ("ArnLike", Test::ArnLike, false),
    ("ArnNotEquals", Test::ArnLike, true),
    ("ArnNotLike", Test::ArnLike, true),
    ("NumericEquals", Test::Numeric(Ordering::Equals), false),
    ("NumericNotEquals", Test::Numeric(Ordering::Equals), true),
    ("NumericLessThan", Test::Numeric(Ordering::LessThan), false),
    (
        "NumericLessThanEquals",
        Test::Numeric(Ordering::LessThanEquals),
        false,
    ),
    (
        "NumericGreaterThan",
        Test::Numeric(Ordering::GreaterThan),
        false,
    ),
    (
        "NumericGreaterThanEquals",
        Test::Numeric(Ordering::GreaterThanEquals),
        false,
    ),
    ("DateEquals", Test::Date(Ordering::Equals), false),
    ("DateNotEquals", Test::Date(Ordering::Equals), true),
    ("DateLessThan", Test::Date(Ordering::LessThan), false),
    (
        "DateLessThanEquals",
        Test::Date(Ordering::LessThanEquals),
        false,
    ),
    ("DateGreaterThan", Test::Date(Ordering::GreaterThan), false),
    (
        "DateGreaterThanEquals",
        Test::Date(Ordering::GreaterThanEquals),
        false,
    ),
    ("Bool", Test::Bool, false),
    ("BinaryEquals", Test::Binary, false),
    ("IpAddress", Test::IpAddress, false),
    ("NotIpAddress", Test::IpAddress, true),
    ("Null", Test::Null, false),
];

/// Splits `ForAnyValue:StringLikeIfExists` into its parts; `None` for unknown operators.
fn parse_operator_name(name: &str) -> Option<(SetQualifier, Operator, bool)> {
    let (set, rest) = if let Some(rest) = name.strip_prefix("ForAnyValue:") {
        (SetQualifier::ForAnyValue, rest)
    } else if let Some(rest) = name.strip_prefix("ForAllValues:") {
        (SetQualifier::ForAllValues, rest)
    } else {
        (SetQualifier::Single, name)
    };
    let (base, if_exists) = match rest.strip_suffix("IfExists") {
        Some(base) => (base, true),
        None => (rest, false),
    };
    let &(_, test, negated) = OPERATORS.iter().find(|(n, _, _)| *n == base)?;
    Some((set, Operator { test, negated }, if_exists))
}

impl Condition {
    /// Compiles a `Condition` element. `variables`: whether `${…}` policy variables are
    /// read (version 2012-10-17 documents).
    pub(crate) fn parse(value: &Value, variables: bool) -> Result<Self, ConditionError> {
        let block = value.as_object().ok_or(ConditionError::Syntax)?;
        let mut clauses = Vec::new();
        let mut legacy = false;
        for (name, keys) in block {
            let keys = keys.as_object().ok_or(ConditionError::Syntax)?;
            let Some((set, operator, if_exists)) = parse_operator_name(name) else {
                // IAM tolerates an unknown operator with nothing under it; it tests nothing.
                if keys.is_empty() {
                    continue;
                }
                return Err(ConditionError::Syntax);
            };
            for (key, values) in keys {
                let values = scalar_strings(values)?;
                let operand = match compile_operand(operator.test, &values, variables) {
                    Some(operand) => operand,
                    None => {
                        legacy = true;
                        continue;
                    }
                };
                clauses.push(Clause {
                    operator,
                    set,
                    if_exists,
                    key: key.to_ascii_lowercase().into_boxed_str(),
                    operand,
                });
            }
        }
        if legacy {
            return Err(ConditionError::Legacy);
        }
        Ok(Self { clauses })
    }

    /// Whether the condition holds for a request with these keys (and no principal).
    pub fn matches(&self, context: &Context) -> bool {
        self.evaluate(&Env::new(context, None))
    }

    /// Whether the condition has no tests (and so always holds).
    pub fn is_empty(&self) -> bool {
        self.clauses.is_empty()
    }

    /// The condition keys tested (lower-cased), in no particular order; a key tested by
    /// several operators appears once per operator.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.clauses.iter().map(|c| &*c.key)
    }

    pub(crate) fn evaluate(&self, env: &Env<'_>) -> bool {
        self.clauses.iter().all(|clause| clause.evaluate(env))
    }
}

/// A condition value: a string, number or boolean, or an array of them.
fn scalar_strings(value: &Value) -> Result<Vec<String>, ConditionError> {
    fn scalar(v: &Value) -> Result<String, ConditionError> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            _ => Err(ConditionError::Syntax),
        }
    }
    match value {
        Value::Array(items) => items.iter().map(scalar).collect(),
        v => Ok(vec![scalar(v)?]),
    }
}

/// Compiles the policy values of one key; `None` if IAM would fail legacy parsing.
fn compile_operand(test: Test, values: &[String], variables: bool) -> Option<Operand> {
    let text = |wildcards: bool, variables: bool, case: Case| {
        let syntax = Syntax {
            wildcards,
            variables,
        };
        Operand::Text(
            values
                .iter()
                .map(|v| Template::compile(v, syntax, case))
                .collect(),
        )
    };
    Some(match test {
        Test::StringEquals => text(false, variables, Case::Sensitive),
        Test::StringEqualsIgnoreCase => text(false, variables, Case::Insensitive),
        Test::StringLike | Test::ArnLike => text(true, variables, Case::Sensitive),
        Test::Binary => text(false, false, Case::Sensitive),
        Test::Numeric(_) => Operand::Numbers(values.iter().map(|v| parse_number(v)).collect()),
        // IAM's legacy parser refuses unreadable dates, so they fail the whole document.
        Test::Date(_) => Operand::Dates(
            values
                .iter()
                .map(|v| date::parse(v))
                .collect::<Option<_>>()?,
        ),
        Test::Bool | Test::Null => Operand::Bools(values.iter().map(|v| parse_bool(v)).collect()),
        Test::IpAddress => Operand::Blocks(values.iter().map(|v| Cidr::parse(v)).collect()),
    })
}

/// A decimal number (optional sign, fraction, exponent); no `inf`/`NaN`.
fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim();
    let plausible = s
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'));
    if !plausible || !s.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `true` / `false` in any letter case.
fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

impl Clause {
    fn evaluate(&self, env: &Env<'_>) -> bool {
        let values = env.values(&self.key);
        if self.operator.test == Test::Null {
            // `"Null": {"k": "true"}` holds when k is absent; "false" when present.
            let present = values.is_some();
            let Operand::Bools(wanted) = &self.operand else {
                return false;
            };
            return wanted.contains(&Some(!present));
        }
        let Some(values) = values else {
            return match self.set {
                SetQualifier::ForAllValues => true,
                SetQualifier::ForAnyValue => self.if_exists,
                SetQualifier::Single => self.if_exists || self.operator.negated,
            };
        };
        // Whether one request value satisfies the operator (negation included).
        let satisfies = |v: &str| self.matches_any(v, env) != self.operator.negated;
        match self.set {
            // A plain negated operator means "matches none of the policy values", for
            // every request value; a plain positive one, "some request value matches".
            SetQualifier::Single if self.operator.negated => values.all(satisfies),
            SetQualifier::Single | SetQualifier::ForAnyValue => values.any(satisfies),
            SetQualifier::ForAllValues => values.all(satisfies),
        }
    }

    /// Whether request value `v` matches at least one policy value (ignoring negation).
    fn matches_any(&self, v: &str, env: &Env<'_>) -> bool {
        match (&self.operand, self.operator.test) {
            (Operand::Text(templates), _) => templates.iter().any(|t| t.matches(v, env)),
            (Operand::Numbers(numbers), Test::Numeric(ordering)) => match parse_number(v) {
                Some(x) => numbers.iter().flatten().any(|&p| ordering.holds(x, p)),
                None => false,
            },
            (Operand::Dates(dates), Test::Date(ordering)) => match date::parse(v) {
                Some(t) => dates.iter().any(|&p| ordering.holds(t, p)),
                None => false,
            },
            (Operand::Bools(bools), _) => match parse_bool(v) {
                Some(b) => bools.contains(&Some(b)),
                None => false,
            },
            (Operand::Blocks(blocks), _) => blocks.iter().flatten().any(|b| b.contains(v)),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests;
