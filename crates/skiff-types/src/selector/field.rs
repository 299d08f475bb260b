//! Field selectors (`metadata.name=x,spec.nodeName!=y`).

use std::fmt;

use super::SelectorError;

/// How a [`FieldRequirement`] compares its field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldOperator {
    /// `field=value` or `field==value`
    Equals,
    /// `field!=value`
    NotEquals,
}

/// One term of a [`FieldSelector`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldRequirement {
    /// The field path, e.g. `spec.nodeName`.
    pub field: String,
    /// The comparison.
    pub operator: FieldOperator,
    /// The value, unescaped.
    pub value: String,
}

impl FieldRequirement {
    /// Whether the field value `actual` satisfies this term. An absent field compares as the
    /// empty string, as upstream's field sets hold every supported field.
    pub fn matches_value(&self, actual: Option<&str>) -> bool {
        let actual = actual.unwrap_or("");
        match self.operator {
            FieldOperator::Equals => actual == self.value,
            FieldOperator::NotEquals => actual != self.value,
        }
    }
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            FieldOperator::Equals => "=",
            FieldOperator::NotEquals => "!=",
        };
        write!(f, "{}{op}{}", self.field, escape_value(&self.value))
    }
}

/// A parsed field selector: a conjunction of terms, sorted. The empty selector matches
/// everything. Which fields a kind supports is the API server's concern; an absent field
/// compares as the empty string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parses the upstream syntax: comma-separated `field=value`, `field==value` or
    /// `field!=value` terms; `\,`, `\=` and `\\` escape those characters in values.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        let mut terms = split_terms(s);
        terms.sort();
        for term in terms {
            if term.is_empty() {
                continue;
            }
            let Some((field, operator, raw_value)) = split_term(term) else {
                return Err(SelectorError::Field(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                )));
            };
            if field.is_empty() {
                return Err(SelectorError::Field(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                )));
            }
            let value = unescape_value(raw_value)?;
            requirements.push(FieldRequirement {
                field: field.to_string(),
                operator,
                value,
            });
        }
        Ok(Self { requirements })
    }

    /// Builds a selector from terms.
    pub fn from_requirements(requirements: Vec<FieldRequirement>) -> Self {
        Self { requirements }
    }

    /// True when the selector has no term (matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The terms.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// Whether the object whose fields `get` returns satisfies every term. `get` receives a
    /// field path such as `spec.nodeName`; `None` (absent) compares as the empty string.
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements
            .iter()
            .all(|r| r.matches_value(get(&r.field).as_deref()))
    }

    /// The value a field must equal (`field=v`), if the selector requires one.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator == FieldOperator::Equals)
            .map(|r| r.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
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

impl std::str::FromStr for FieldSelector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Splits on commas that are not escaped with a backslash.
fn split_terms(s: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Finds the first unescaped operator (`!=`, `==`, `=`, tried in that order at each position).
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    let mut escaped = false;
    // Character boundaries only: slicing inside a multi-byte character would panic.
    for (i, c) in term.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        if c == '\\' {
            escaped = true;
            continue;
        }
        let rest = &term[i..];
        for (op, operator) in [
            ("!=", FieldOperator::NotEquals),
            ("==", FieldOperator::Equals),
            ("=", FieldOperator::Equals),
        ] {
            if rest.starts_with(op) {
                return Some((&term[..i], operator, &term[i + op.len()..]));
            }
        }
    }
    None
}

fn unescape_value(s: &str) -> Result<String, SelectorError> {
    if !s.contains(['\\', ',', '=']) {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(e) => {
                    return Err(SelectorError::Field(format!(
                        "invalid field selector: invalid escape sequence: \\{e}"
                    )))
                }
                None => {
                    return Err(SelectorError::Field(
                        "invalid field selector: invalid escape sequence: \\".to_string(),
                    ))
                }
            },
            ',' | '=' => {
                return Err(SelectorError::Field(format!(
                    "invalid field selector: unescaped {c} in value"
                )))
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

fn escape_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace('=', "\\=")
}
