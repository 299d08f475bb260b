//! Label selectors (`app=web,tier!=db,env in (a,b),!legacy`).

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;

use super::names::{label_key_errors, label_value_errors};
use super::SelectorError;

/// How a [`LabelRequirement`] relates its key and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LabelOperator {
    /// `key=value`
    Equals,
    /// `key==value`
    DoubleEquals,
    /// `key!=value` (also true when the key is absent)
    NotEquals,
    /// `key in (a,b)`
    In,
    /// `key notin (a,b)` (also true when the key is absent)
    NotIn,
    /// `key`
    Exists,
    /// `!key`
    DoesNotExist,
    /// `key>5` (integer comparison; false when the label is not an integer)
    GreaterThan,
    /// `key<5`
    LessThan,
}

/// One requirement of a [`LabelSelector`]; all requirements must hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LabelRequirement {
    key: String,
    operator: LabelOperator,
    /// Sorted and deduplicated, as upstream keeps them in a set.
    values: Vec<String>,
}

impl LabelRequirement {
    /// Builds a requirement, checking the key, the values and their count for the operator.
    pub fn new(
        key: impl Into<String>,
        operator: LabelOperator,
        values: impl IntoIterator<Item = String>,
    ) -> Result<Self, SelectorError> {
        let key = key.into();
        let mut values: Vec<String> = values.into_iter().collect();
        values.sort();
        values.dedup();
        let mut errors = Vec::new();
        let key_errors = label_key_errors(&key);
        if !key_errors.is_empty() {
            errors.push(format!(
                "key: Invalid value: {key:?}: {}",
                key_errors.join("; ")
            ));
        }
        match operator {
            LabelOperator::In | LabelOperator::NotIn if values.is_empty() => errors.push(
                "values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty"
                    .to_string(),
            ),
            LabelOperator::Equals | LabelOperator::DoubleEquals | LabelOperator::NotEquals
                if values.len() != 1 =>
            {
                errors.push(format!(
                    "values: Invalid value: {values:?}: exact-match compatibility requires one single value"
                ))
            }
            LabelOperator::Exists | LabelOperator::DoesNotExist if !values.is_empty() => errors
                .push(format!(
                    "values: Invalid value: {values:?}: values set must be empty for exists and does not exist"
                )),
            LabelOperator::GreaterThan | LabelOperator::LessThan => {
                if values.len() != 1 {
                    errors.push(format!(
                        "values: Invalid value: {values:?}: for 'Gt', 'Lt' operators, exactly one value is required"
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errors.push(format!(
                            "values[{i}]: Invalid value: {v:?}: for 'Gt', 'Lt' operators, the value must be an integer"
                        ));
                    }
                }
            }
            _ => {}
        }
        for (i, v) in values.iter().enumerate() {
            let value_errors = label_value_errors(v);
            if !value_errors.is_empty() {
                errors.push(format!(
                    "values[{i}][{key}]: Invalid value: {v:?}: {}",
                    value_errors.join("; ")
                ));
            }
        }
        if !errors.is_empty() {
            return Err(SelectorError::Label(if errors.len() == 1 {
                errors.remove(0)
            } else {
                format!("[{}]", errors.join(", "))
            }));
        }
        Ok(Self {
            key,
            operator,
            values,
        })
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> LabelOperator {
        self.operator
    }

    /// The values, sorted (empty for `Exists`/`DoesNotExist`).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether the label value `value` (`None` = label absent) satisfies this requirement.
    pub fn matches_value(&self, value: Option<&str>) -> bool {
        let has = |v: &str| self.values.iter().any(|x| x == v);
        match self.operator {
            LabelOperator::Equals | LabelOperator::DoubleEquals | LabelOperator::In => {
                value.is_some_and(has)
            }
            LabelOperator::NotEquals | LabelOperator::NotIn => !value.is_some_and(has),
            LabelOperator::Exists => value.is_some(),
            LabelOperator::DoesNotExist => value.is_none(),
            LabelOperator::GreaterThan | LabelOperator::LessThan => {
                let (Some(v), Some(bound)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|b| b.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.operator == LabelOperator::GreaterThan {
                    v > bound
                } else {
                    v < bound
                }
            }
        }
    }
}

impl fmt::Display for LabelRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == LabelOperator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let op = match self.operator {
            LabelOperator::Equals => "=",
            LabelOperator::DoubleEquals => "==",
            LabelOperator::NotEquals => "!=",
            LabelOperator::In => " in ",
            LabelOperator::NotIn => " notin ",
            LabelOperator::GreaterThan => ">",
            LabelOperator::LessThan => "<",
            LabelOperator::Exists | LabelOperator::DoesNotExist => return Ok(()),
        };
        f.write_str(op)?;
        let set = matches!(self.operator, LabelOperator::In | LabelOperator::NotIn);
        if set {
            f.write_str("(")?;
        }
        f.write_str(&self.values.join(","))?;
        if set {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A parsed label selector: a conjunction of requirements, sorted by key. The empty selector
/// matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct LabelSelector {
    requirements: Vec<LabelRequirement>,
}

impl LabelSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parses the upstream string syntax (`labelSelector` query parameter, `kubectl -l`).
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut requirements = Parser::new(s).parse().map_err(SelectorError::Label)?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self { requirements })
    }

    /// Converts a `metav1.LabelSelector` (`matchLabels` + `matchExpressions`), as
    /// upstream's `LabelSelectorAsSelector`. An empty selector matches everything; callers
    /// handle an absent (null) selector, which upstream treats as matching nothing.
    pub fn from_label_selector(selector: &metav1::LabelSelector) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(LabelRequirement::new(
                key.clone(),
                LabelOperator::Equals,
                [value.clone()],
            )?);
        }
        for expr in selector.match_expressions.iter().flatten() {
            let operator = match expr.operator.as_str() {
                "In" => LabelOperator::In,
                "NotIn" => LabelOperator::NotIn,
                "Exists" => LabelOperator::Exists,
                "DoesNotExist" => LabelOperator::DoesNotExist,
                other => {
                    return Err(SelectorError::Label(format!(
                        "{other:?} is not a valid label selector operator"
                    )))
                }
            };
            requirements.push(LabelRequirement::new(
                expr.key.clone(),
                operator,
                expr.values.iter().flatten().cloned(),
            )?);
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self { requirements })
    }

    /// Builds a selector from requirements (sorted by key here).
    pub fn from_requirements(mut requirements: Vec<LabelRequirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Self { requirements }
    }

    /// True when the selector has no requirement (matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[LabelRequirement] {
        &self.requirements
    }

    /// Whether a label set satisfies every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(|k| labels.get(k).map(String::as_str))
    }

    /// Like [`matches`](Self::matches), with a lookup function instead of a map.
    pub fn matches_with<'v>(&self, get: impl Fn(&str) -> Option<&'v str>) -> bool {
        self.requirements
            .iter()
            .all(|r| r.matches_value(get(&r.key)))
    }

    /// The single value a key must have (`key=v`, `key==v`, `key in (v)`), if any.
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == key)?;
        match r.operator {
            LabelOperator::Equals | LabelOperator::DoubleEquals | LabelOperator::In
                if r.values.len() == 1 =>
            {
                Some(&r.values[0])
            }
            _ => None,
        }
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for LabelSelector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A lexing error, carrying its message.
    Error(String),
    End,
    OpenPar,
    ClosedPar,
    Comma,
    Not,
    Equals,
    DoubleEquals,
    NotEquals,
    GreaterThan,
    LessThan,
    In,
    NotIn,
    Identifier(String),
}

impl Token {
    /// The literal text, as upstream prints it in messages.
    fn literal(&self) -> &str {
        match self {
            Token::Error(m) => m,
            Token::End => "",
            Token::OpenPar => "(",
            Token::ClosedPar => ")",
            Token::Comma => ",",
            Token::Not => "!",
            Token::Equals => "=",
            Token::DoubleEquals => "==",
            Token::NotEquals => "!=",
            Token::GreaterThan => ">",
            Token::LessThan => "<",
            Token::In => "in",
            Token::NotIn => "notin",
            Token::Identifier(s) => s,
        }
    }

    /// In a values context the keywords `in`/`notin` are plain identifiers.
    fn into_value(self) -> Token {
        match self {
            Token::In => Token::Identifier("in".into()),
            Token::NotIn => Token::Identifier("notin".into()),
            t => t,
        }
    }
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn special_token(s: &[u8]) -> Option<Token> {
    Some(match s {
        b"(" => Token::OpenPar,
        b")" => Token::ClosedPar,
        b"," => Token::Comma,
        b"!" => Token::Not,
        b"=" => Token::Equals,
        b"==" => Token::DoubleEquals,
        b"!=" => Token::NotEquals,
        b">" => Token::GreaterThan,
        b"<" => Token::LessThan,
        _ => return None,
    })
}

fn lex(s: &str) -> Vec<Token> {
    let b = s.as_bytes();
    let mut pos = 0;
    let mut tokens = Vec::new();
    loop {
        while pos < b.len() && is_space(b[pos]) {
            pos += 1;
        }
        if pos >= b.len() {
            tokens.push(Token::End);
            return tokens;
        }
        if is_special(b[pos]) {
            // Longest run of special symbols that still forms a token.
            let start = pos;
            let mut best: Option<(Token, usize)> = None;
            let mut end = pos;
            while end < b.len() && is_special(b[end]) {
                end += 1;
                match special_token(&b[start..end]) {
                    Some(t) => best = Some((t, end)),
                    None if best.is_some() => break,
                    None => {}
                }
            }
            match best {
                Some((t, e)) => {
                    tokens.push(t);
                    pos = e;
                }
                None => {
                    tokens.push(Token::Error(format!(
                        "error expected: keyword found '{}'",
                        String::from_utf8_lossy(&b[start..end])
                    )));
                    pos = end;
                }
            }
        } else {
            let start = pos;
            while pos < b.len() && !is_special(b[pos]) && !is_space(b[pos]) {
                pos += 1;
            }
            // Boundaries are ASCII bytes, so the slice is valid UTF-8.
            let word = &s[start..pos];
            tokens.push(match word {
                "in" => Token::In,
                "notin" => Token::NotIn,
                _ => Token::Identifier(word.to_string()),
            });
        }
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn new(s: &str) -> Self {
        Self {
            tokens: lex(s),
            pos: 0,
        }
    }

    fn peek(&self) -> Token {
        self.tokens
            .get(self.pos)
            .cloned()
            .unwrap_or(Token::End)
            .into_value()
    }

    fn next_raw(&mut self) -> Token {
        let t = self.tokens.get(self.pos).cloned().unwrap_or(Token::End);
        self.pos += 1;
        t
    }

    fn next_value(&mut self) -> Token {
        self.next_raw().into_value()
    }

    fn parse(&mut self) -> Result<Vec<LabelRequirement>, String> {
        let mut requirements = Vec::new();
        loop {
            match self.peek() {
                Token::Identifier(_) | Token::Not => {
                    let r = self
                        .requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    requirements.push(r);
                    match self.next_value() {
                        Token::End => return Ok(requirements),
                        Token::Comma => match self.peek() {
                            Token::Identifier(_) | Token::Not => {}
                            t => {
                                return Err(format!(
                                    "found '{}', expected: identifier after ','",
                                    t.literal()
                                ))
                            }
                        },
                        t => {
                            return Err(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                t.literal()
                            ))
                        }
                    }
                }
                Token::End => return Ok(requirements),
                t => {
                    return Err(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        t.literal()
                    ))
                }
            }
        }
    }

    fn requirement(&mut self) -> Result<LabelRequirement, String> {
        let mut negated = false;
        let mut tok = self.next_value();
        if tok == Token::Not {
            negated = true;
            tok = self.next_value();
        }
        let Token::Identifier(key) = tok else {
            return Err(format!("found '{}', expected: identifier", tok.literal()));
        };
        let key_errors = label_key_errors(&key);
        if !key_errors.is_empty() {
            return Err(format!("Invalid value: {key:?}: {}", key_errors.join("; ")));
        }
        if matches!(self.peek(), Token::End | Token::Comma) {
            let op = if negated {
                LabelOperator::DoesNotExist
            } else {
                LabelOperator::Exists
            };
            return LabelRequirement::new(key, op, []).map_err(|e| e.to_string());
        }
        if negated {
            // `!key` must stand alone.
            let t = self.next_raw();
            return Err(format!(
                "found '{}', expected: ',' or 'end of string'",
                t.literal()
            ));
        }
        let op_tok = self.next_raw();
        let operator = match op_tok {
            Token::In => LabelOperator::In,
            Token::NotIn => LabelOperator::NotIn,
            Token::Equals => LabelOperator::Equals,
            Token::DoubleEquals => LabelOperator::DoubleEquals,
            Token::NotEquals => LabelOperator::NotEquals,
            Token::GreaterThan => LabelOperator::GreaterThan,
            Token::LessThan => LabelOperator::LessThan,
            t => {
                return Err(format!(
                    "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                    t.literal()
                ))
            }
        };
        let values = match operator {
            LabelOperator::In | LabelOperator::NotIn => self.set_values()?,
            _ => self.exact_value()?,
        };
        LabelRequirement::new(key, operator, values).map_err(|e| e.to_string())
    }

    fn exact_value(&mut self) -> Result<Vec<String>, String> {
        match self.peek() {
            Token::End | Token::Comma => Ok(vec![String::new()]),
            _ => match self.next_value() {
                Token::Identifier(v) => Ok(vec![v]),
                t => Err(format!("found '{}', expected: identifier", t.literal())),
            },
        }
    }

    fn set_values(&mut self) -> Result<Vec<String>, String> {
        let t = self.next_value();
        if t != Token::OpenPar {
            return Err(format!("found '{}' expected: '('", t.literal()));
        }
        match self.peek() {
            Token::ClosedPar => {
                self.next_value();
                Ok(vec![String::new()])
            }
            Token::Identifier(_) | Token::Comma => {
                let mut values = Vec::new();
                loop {
                    match self.next_value() {
                        Token::Identifier(v) => {
                            values.push(v);
                            match self.peek() {
                                Token::Comma => {}
                                Token::ClosedPar => {
                                    self.next_value();
                                    return Ok(values);
                                }
                                t => {
                                    return Err(format!(
                                        "found '{}', expected: ',' or ')'",
                                        t.literal()
                                    ))
                                }
                            }
                        }
                        Token::Comma => match self.peek() {
                            // "(,", ",,", ",)" all stand for the empty value.
                            Token::ClosedPar => {
                                values.push(String::new());
                                self.next_value();
                                return Ok(values);
                            }
                            Token::Comma => values.push(String::new()),
                            Token::Identifier(_) if values.is_empty() => values.push(String::new()),
                            Token::Identifier(_) => {}
                            t => {
                                return Err(format!(
                                    "found '{}', expected: ',', or identifier",
                                    t.literal()
                                ))
                            }
                        },
                        t => {
                            return Err(format!(
                                "found '{}', expected: ',', or identifier",
                                t.literal()
                            ))
                        }
                    }
                }
            }
            t => Err(format!(
                "found '{}', expected: ',', ')' or identifier",
                t.literal()
            )),
        }
    }
}
