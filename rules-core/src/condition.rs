//! The rule condition language: `all` / `any` / `not` over field predicates.
//!
//! A predicate is `{"field": "<path>", "<operator>": <operand>}` with an optional
//! `"ignore_case": true`. Conditions are compiled once when a rule loads. Evaluation has no
//! loops over rule input and regexes run in linear time, so a rule cannot hang the agent.
//! A missing field makes a predicate false, never an error.

use std::borrow::Cow;
use std::net::IpAddr;

use ipnet::IpNet;
use regex::{Regex, RegexBuilder};
use serde_json::Value;

use crate::error::Diagnostics;
use crate::record::{Event, json_type_name, scalar_text};
use crate::schema::reject_unknown_keys;

/// Maximum nesting of `all`/`any`/`not`.
pub const MAX_DEPTH: usize = 32;
/// Maximum number of predicates in one rule.
pub const MAX_PREDICATES: usize = 1_000;
/// Maximum compiled size of one regex, in bytes.
pub const MAX_REGEX_BYTES: usize = 1 << 20;

const OPERATORS: &[&str] = &[
    "eq",
    "ne",
    "in",
    "contains",
    "starts_with",
    "ends_with",
    "regex",
    "cidr",
    "gt",
    "gte",
    "lt",
    "lte",
    "exists",
];

/// A compiled condition.
#[derive(Debug, Clone)]
pub enum Condition {
    /// True when every member is true (also when empty).
    All(Vec<Condition>),
    /// True when at least one member is true (false when empty).
    Any(Vec<Condition>),
    /// Negation.
    Not(Box<Condition>),
    /// A test on one field.
    Predicate(Predicate),
}

/// A test on one field of an event.
#[derive(Debug, Clone)]
pub struct Predicate {
    /// Field path segments, such as `["columns", "name"]`.
    pub field: Vec<String>,
    /// The operator and its compiled operand.
    pub operator: Operator,
    /// Compare strings without regard to ASCII and Unicode case.
    pub ignore_case: bool,
}

/// A literal operand of `eq`, `ne` and `in`.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// Compared with the field's text.
    Text(String),
    /// Compared numerically; a string field is converted first.
    Number(Number),
    /// Matches JSON booleans and the strings `true`/`false` in any case.
    Bool(bool),
}

/// An exact number: integers stay integers (osquery emits values beyond 2^53).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// An integral value.
    Int(i128),
    /// A value with a fraction or exponent.
    Float(f64),
}

/// Comparison operators on numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `gt`
    Greater,
    /// `gte`
    GreaterOrEqual,
    /// `lt`
    Less,
    /// `lte`
    LessOrEqual,
}

/// An operator with its compiled operand.
#[derive(Debug, Clone)]
pub enum Operator {
    /// Field equals the literal.
    Eq(Literal),
    /// Field exists and does not equal the literal.
    Ne(Literal),
    /// Field equals one of the literals.
    In(Vec<Literal>),
    /// Field text contains one of the strings.
    Contains(Vec<String>),
    /// Field text starts with one of the strings.
    StartsWith(Vec<String>),
    /// Field text ends with one of the strings.
    EndsWith(Vec<String>),
    /// Field text matches the regex (unanchored unless the pattern anchors it).
    Regex(Box<Regex>),
    /// Field is an IP address inside one of the networks.
    Cidr(Vec<IpNet>),
    /// Field converted to a number compares with the operand.
    Compare(Comparison, Number),
    /// Field presence equals the flag (`""` counts as present).
    Exists(bool),
}

impl Number {
    /// Parses an osquery value: JSON numbers and strings holding decimal numbers.
    pub fn from_value(value: &Value) -> Option<Number> {
        match value {
            Value::Number(number) => {
                if let Some(int) = number.as_i64() {
                    Some(Number::Int(int.into()))
                } else if let Some(int) = number.as_u64() {
                    Some(Number::Int(int.into()))
                } else {
                    number.as_f64().map(Number::Float)
                }
            }
            Value::String(text) => Number::parse(text),
            _ => None,
        }
    }

    /// Parses decimal text; `None` for `""`, words and non-finite values.
    pub fn parse(text: &str) -> Option<Number> {
        if let Ok(int) = text.parse::<i128>() {
            return Some(Number::Int(int));
        }
        let float = text.parse::<f64>().ok().filter(|value| value.is_finite())?;
        let looks_numeric = text
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
        looks_numeric.then_some(Number::Float(float))
    }

    fn compare(self, other: Number) -> Option<std::cmp::Ordering> {
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => Some(a.cmp(&b)),
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()),
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            // Precision loss is acceptable only when one side already has a fraction.
            Number::Int(value) => value as f64,
            Number::Float(value) => value,
        }
    }
}

impl Condition {
    /// Evaluates the condition on one event.
    pub fn matches(&self, event: &Event<'_>) -> bool {
        match self {
            Condition::All(members) => members.iter().all(|member| member.matches(event)),
            Condition::Any(members) => members.iter().any(|member| member.matches(event)),
            Condition::Not(inner) => !inner.matches(event),
            Condition::Predicate(predicate) => predicate.matches(event),
        }
    }

    /// Field paths the condition reads, in order of appearance.
    pub fn fields(&self) -> Vec<&[String]> {
        let mut out = Vec::new();
        self.collect_fields(&mut out);
        out
    }

    fn collect_fields<'a>(&'a self, out: &mut Vec<&'a [String]>) {
        match self {
            Condition::All(members) | Condition::Any(members) => {
                members.iter().for_each(|member| member.collect_fields(out));
            }
            Condition::Not(inner) => inner.collect_fields(out),
            Condition::Predicate(predicate) => out.push(&predicate.field),
        }
    }
}

impl Predicate {
    /// Evaluates the predicate on one event; false when the field is missing.
    pub fn matches(&self, event: &Event<'_>) -> bool {
        let value = event.get(&self.field);
        if let Operator::Exists(expected) = self.operator {
            return value.is_some() == expected;
        }
        let Some(value) = value else {
            return false;
        };
        match &self.operator {
            Operator::Eq(literal) => self.literal_matches(literal, value),
            Operator::Ne(literal) => !self.literal_matches(literal, value),
            Operator::In(literals) => literals
                .iter()
                .any(|literal| self.literal_matches(literal, value)),
            Operator::Contains(needles) => {
                self.text_test(value, needles, |text, needle| text.contains(needle))
            }
            Operator::StartsWith(needles) => {
                self.text_test(value, needles, |text, needle| text.starts_with(needle))
            }
            Operator::EndsWith(needles) => {
                self.text_test(value, needles, |text, needle| text.ends_with(needle))
            }
            Operator::Regex(regex) => scalar_text(value).is_some_and(|text| regex.is_match(&text)),
            Operator::Cidr(networks) => ip_in(value, networks),
            Operator::Compare(comparison, operand) => compare(value, *comparison, *operand),
            Operator::Exists(_) => false,
        }
    }

    fn literal_matches(&self, literal: &Literal, value: &Value) -> bool {
        match literal {
            Literal::Text(expected) => scalar_text(value).is_some_and(|text| {
                if self.ignore_case {
                    fold(&text) == *expected
                } else {
                    text == expected.as_str()
                }
            }),
            Literal::Number(expected) => Number::from_value(value)
                .and_then(|number| number.compare(*expected))
                .is_some_and(|ordering| ordering.is_eq()),
            Literal::Bool(expected) => match value {
                Value::Bool(flag) => flag == expected,
                Value::String(text) => {
                    let spelled = if *expected { "true" } else { "false" };
                    text.eq_ignore_ascii_case(spelled)
                }
                _ => false,
            },
        }
    }

    fn text_test(
        &self,
        value: &Value,
        needles: &[String],
        test: impl Fn(&str, &str) -> bool,
    ) -> bool {
        let Some(text) = scalar_text(value) else {
            return false;
        };
        let text = if self.ignore_case {
            Cow::Owned(fold(&text))
        } else {
            text
        };
        needles.iter().any(|needle| test(&text, needle))
    }
}

/// Lowercases `text` one character at a time and maps final sigma `ς` to `σ`, as Unicode
/// case folding does. `str::to_lowercase` is not used because it turns a word-final `Σ` into
/// `ς`, so `"ΟΔΟΣ"` would not contain `"Σ"`. Folding each character on its own keeps every
/// case-sensitive match a match.
fn fold(text: &str) -> String {
    text.chars()
        .flat_map(char::to_lowercase)
        .map(|c| if c == 'ς' { 'σ' } else { c })
        .collect()
}

fn ip_in(value: &Value, networks: &[IpNet]) -> bool {
    let Some(text) = value.as_str() else {
        return false;
    };
    // osquery writes IPv6 scope ids (`fe80::1%eth0`); the zone does not change the address.
    let address = text.split('%').next().unwrap_or(text);
    let Ok(ip) = address.parse::<IpAddr>() else {
        return false;
    };
    // A dual-stack socket reports an IPv4 peer as `::ffff:10.1.2.3`, which an IPv4 network
    // must contain too.
    let canonical = ip.to_canonical();
    networks
        .iter()
        .any(|network| network.contains(&ip) || network.contains(&canonical))
}

fn compare(value: &Value, comparison: Comparison, operand: Number) -> bool {
    let Some(ordering) = Number::from_value(value).and_then(|number| number.compare(operand))
    else {
        return false;
    };
    match comparison {
        Comparison::Greater => ordering.is_gt(),
        Comparison::GreaterOrEqual => ordering.is_ge(),
        Comparison::Less => ordering.is_lt(),
        Comparison::LessOrEqual => ordering.is_le(),
    }
}

/// Compiles a condition, reporting every error with its JSON path.
pub(crate) fn compile(
    value: &Value,
    path: &str,
    diagnostics: &mut Diagnostics<'_>,
) -> Option<Condition> {
    let mut budget = MAX_PREDICATES;
    compile_node(value, path, 0, &mut budget, diagnostics)
}

fn compile_node(
    value: &Value,
    path: &str,
    depth: usize,
    budget: &mut usize,
    diagnostics: &mut Diagnostics<'_>,
) -> Option<Condition> {
    if depth > MAX_DEPTH {
        diagnostics.error(
            path,
            format!("condition nested deeper than {MAX_DEPTH} levels"),
        );
        return None;
    }
    let Some(object) = value.as_object() else {
        diagnostics.error(path, format!("expected a condition object (all, any, not or a predicate with \"field\"), found {}", json_type_name(value)));
        return None;
    };
    if object.len() == 1 {
        if let Some(members) = object.get("all") {
            return compile_list(members, &format!("{path}.all"), depth, budget, diagnostics)
                .map(Condition::All);
        }
        if let Some(members) = object.get("any") {
            return compile_list(members, &format!("{path}.any"), depth, budget, diagnostics)
                .map(Condition::Any);
        }
        if let Some(inner) = object.get("not") {
            let inner = compile_node(
                inner,
                &format!("{path}.not"),
                depth + 1,
                budget,
                diagnostics,
            )?;
            return Some(Condition::Not(Box::new(inner)));
        }
    }
    if !object.contains_key("field") {
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        diagnostics.error(path, format!("expected exactly one of \"all\", \"any\", \"not\", or a predicate with \"field\"; found keys {keys:?}"));
        return None;
    }
    if *budget == 0 {
        diagnostics.error(
            path,
            format!("rule has more than {MAX_PREDICATES} predicates"),
        );
        return None;
    }
    *budget -= 1;
    compile_predicate(object, path, diagnostics).map(Condition::Predicate)
}

fn compile_list(
    value: &Value,
    path: &str,
    depth: usize,
    budget: &mut usize,
    diagnostics: &mut Diagnostics<'_>,
) -> Option<Vec<Condition>> {
    let Some(items) = value.as_array() else {
        diagnostics.error(
            path,
            format!(
                "expected an array of conditions, found {}",
                json_type_name(value)
            ),
        );
        return None;
    };
    let mut members = Vec::with_capacity(items.len());
    let mut ok = true;
    for (index, item) in items.iter().enumerate() {
        match compile_node(
            item,
            &format!("{path}[{index}]"),
            depth + 1,
            budget,
            diagnostics,
        ) {
            Some(member) => members.push(member),
            None => ok = false,
        }
    }
    ok.then_some(members)
}

fn compile_predicate(
    object: &serde_json::Map<String, Value>,
    path: &str,
    diagnostics: &mut Diagnostics<'_>,
) -> Option<Predicate> {
    let mut allowed = vec!["field", "ignore_case"];
    allowed.extend_from_slice(OPERATORS);
    let before = diagnostics.count();
    reject_unknown_keys(object, &allowed, path, diagnostics);

    let field = compile_field(object.get("field"), &format!("{path}.field"), diagnostics);
    let ignore_case = match object.get("ignore_case") {
        None => false,
        Some(Value::Bool(flag)) => *flag,
        Some(other) => {
            diagnostics.error(
                &format!("{path}.ignore_case"),
                format!("expected true or false, found {}", json_type_name(other)),
            );
            false
        }
    };
    let operators: Vec<&str> = OPERATORS
        .iter()
        .copied()
        .filter(|op| object.contains_key(*op))
        .collect();
    let [name] = operators.as_slice() else {
        diagnostics.error(
            path,
            format!(
                "a predicate needs exactly one operator, found {}; operators: {}",
                operators.len(),
                OPERATORS.join(", ")
            ),
        );
        return None;
    };
    let operand_path = format!("{path}.{name}");
    let operand = &object[*name];
    let operator = compile_operator(name, operand, ignore_case, &operand_path, diagnostics);
    if diagnostics.count() > before {
        return None;
    }
    Some(Predicate {
        field: field?,
        operator: operator?,
        ignore_case,
    })
}

fn compile_field(
    value: Option<&Value>,
    path: &str,
    diagnostics: &mut Diagnostics<'_>,
) -> Option<Vec<String>> {
    let Some(text) = value.and_then(Value::as_str) else {
        diagnostics.error(
            path,
            "expected a field path string such as \"columns.name\"",
        );
        return None;
    };
    let segments: Vec<String> = text.split('.').map(str::to_owned).collect();
    if segments.iter().any(String::is_empty) {
        diagnostics.error(path, format!("invalid field path {text:?}: segments are separated by single dots, as in \"columns.name\""));
        return None;
    }
    Some(segments)
}

fn compile_operator(
    name: &str,
    operand: &Value,
    ignore_case: bool,
    path: &str,
    diagnostics: &mut Diagnostics<'_>,
) -> Option<Operator> {
    let operator = match name {
        "eq" => Operator::Eq(literal(operand, ignore_case, path, diagnostics)?),
        "ne" => Operator::Ne(literal(operand, ignore_case, path, diagnostics)?),
        "in" => Operator::In(literal_list(operand, ignore_case, path, diagnostics)?),
        "contains" => Operator::Contains(text_list(operand, ignore_case, path, diagnostics)?),
        "starts_with" => Operator::StartsWith(text_list(operand, ignore_case, path, diagnostics)?),
        "ends_with" => Operator::EndsWith(text_list(operand, ignore_case, path, diagnostics)?),
        "regex" => Operator::Regex(Box::new(regex(operand, ignore_case, path, diagnostics)?)),
        "cidr" => Operator::Cidr(networks(operand, path, diagnostics)?),
        "gt" => Operator::Compare(Comparison::Greater, number(operand, path, diagnostics)?),
        "gte" => Operator::Compare(
            Comparison::GreaterOrEqual,
            number(operand, path, diagnostics)?,
        ),
        "lt" => Operator::Compare(Comparison::Less, number(operand, path, diagnostics)?),
        "lte" => Operator::Compare(Comparison::LessOrEqual, number(operand, path, diagnostics)?),
        "exists" => match operand {
            Value::Bool(flag) => Operator::Exists(*flag),
            other => {
                diagnostics.error(
                    path,
                    format!("expected true or false, found {}", json_type_name(other)),
                );
                return None;
            }
        },
        _ => return None,
    };
    Some(operator)
}

fn literal(
    value: &Value,
    ignore_case: bool,
    path: &str,
    diagnostics: &mut Diagnostics<'_>,
) -> Option<Literal> {
    match value {
        Value::String(text) if ignore_case => Some(Literal::Text(fold(text))),
        Value::String(text) => Some(Literal::Text(text.clone())),
        Value::Bool(flag) => Some(Literal::Bool(*flag)),
        Value::Number(_) => Number::from_value(value).map(Literal::Number),
        other => {
            diagnostics.error(
                path,
                format!(
                    "expected a string, number or boolean, found {}",
                    json_type_name(other)
                ),
            );
            None
        }
    }
}

fn literal_list(
    value: &Value,
    ignore_case: bool,
    path: &str,
    diagnostics: &mut Diagnostics<'_>,
) -> Option<Vec<Literal>> {
    let Some(items) = value.as_array() else {
        diagnostics.error(
            path,
            format!(
                "expected an array of values, found {}",
                json_type_name(value)
            ),
        );
        return None;
    };
    let literals: Vec<Option<Literal>> = items
        .iter()
        .enumerate()
        .map(|(index, item)| literal(item, ignore_case, &format!("{path}[{index}]"), diagnostics))
        .collect();
    literals.into_iter().collect()
}

fn text_list(
    value: &Value,
    ignore_case: bool,
    path: &str,
    diagnostics: &mut Diagnostics<'_>,
) -> Option<Vec<String>> {
    let texts = match value {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) => {
            let mut texts = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(text) => texts.push(text.to_owned()),
                    None => {
                        diagnostics.error(
                            &format!("{path}[{index}]"),
                            format!("expected a string, found {}", json_type_name(item)),
                        );
                        return None;
                    }
                }
            }
            texts
        }
        other => {
            diagnostics.error(
                path,
                format!(
                    "expected a string or an array of strings, found {}",
                    json_type_name(other)
                ),
            );
            return None;
        }
    };
    Some(if ignore_case {
        texts.iter().map(|text| fold(text)).collect()
    } else {
        texts
    })
}

fn regex(
    value: &Value,
    ignore_case: bool,
    path: &str,
    diagnostics: &mut Diagnostics<'_>,
) -> Option<Regex> {
    let Some(pattern) = value.as_str() else {
        diagnostics.error(
            path,
            format!("expected a regex string, found {}", json_type_name(value)),
        );
        return None;
    };
    let compiled = RegexBuilder::new(pattern)
        .case_insensitive(ignore_case)
        .size_limit(MAX_REGEX_BYTES)
        .dfa_size_limit(MAX_REGEX_BYTES)
        .build();
    match compiled {
        Ok(regex) => Some(regex),
        Err(error) => {
            let detail = error.to_string().replace('\n', " ");
            diagnostics.error(path, format!("invalid regex {pattern:?}: {detail}"));
            None
        }
    }
}

fn networks(value: &Value, path: &str, diagnostics: &mut Diagnostics<'_>) -> Option<Vec<IpNet>> {
    let texts = text_list(value, false, path, diagnostics)?;
    let mut networks = Vec::with_capacity(texts.len());
    for (index, text) in texts.iter().enumerate() {
        let parsed = text
            .parse::<IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from));
        match parsed {
            Ok(network) => networks.push(network),
            Err(_) => {
                let at = if value.is_array() {
                    format!("{path}[{index}]")
                } else {
                    path.to_owned()
                };
                diagnostics.error(&at, format!("invalid CIDR {text:?}: expected a network such as \"10.0.0.0/8\" or \"fd00::/8\""));
                return None;
            }
        }
    }
    Some(networks)
}

fn number(value: &Value, path: &str, diagnostics: &mut Diagnostics<'_>) -> Option<Number> {
    match Number::from_value(value).filter(|_| value.is_number()) {
        Some(number) => Some(number),
        None => {
            diagnostics.error(
                path,
                format!("expected a number, found {}", json_type_name(value)),
            );
            None
        }
    }
}
