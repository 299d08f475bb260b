//! Go-like reads of a JSON object: a missing or mistyped field reads as its zero value, as a
//! decoded Go struct would hold it.

use serde_json::{Map, Value};

static EMPTY_MAP: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();

fn empty_map() -> &'static Map<String, Value> {
    EMPTY_MAP.get_or_init(Map::new)
}

/// A view of a JSON value with zero-value reads.
#[derive(Clone, Copy, Debug)]
pub struct V<'a>(pub Option<&'a Value>);

impl<'a> V<'a> {
    /// Wraps a value.
    pub fn new(v: &'a Value) -> Self {
        V(Some(v))
    }

    /// The field `key` (absent when this is not an object).
    pub fn get(&self, key: &str) -> V<'a> {
        V(self.0.and_then(|v| v.get(key)).filter(|v| !v.is_null()))
    }

    /// Whether the value is present and not `null`.
    pub fn present(&self) -> bool {
        self.0.is_some_and(|v| !v.is_null())
    }

    /// The raw value, `null` when absent.
    pub fn raw(&self) -> Value {
        self.0.cloned().unwrap_or(Value::Null)
    }

    /// The string, `""` when absent.
    pub fn str(&self) -> &'a str {
        self.0.and_then(Value::as_str).unwrap_or("")
    }

    /// The integer, when present.
    pub fn int(&self) -> Option<i64> {
        self.0.and_then(Value::as_i64)
    }

    /// The integer, 0 when absent.
    pub fn int0(&self) -> i64 {
        self.int().unwrap_or(0)
    }

    /// The boolean, when present.
    pub fn bool(&self) -> Option<bool> {
        self.0.and_then(Value::as_bool)
    }

    /// The list items (none when absent).
    pub fn items(&self) -> impl Iterator<Item = V<'a>> {
        self.0
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|v| V(Some(v)))
    }

    /// Number of list items.
    pub fn len(&self) -> usize {
        self.0.and_then(Value::as_array).map_or(0, Vec::len)
    }

    /// Whether a list or map is absent or empty.
    pub fn is_empty(&self) -> bool {
        match self.0 {
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Object(m)) => m.is_empty(),
            Some(Value::String(s)) => s.is_empty(),
            Some(Value::Null) | None => true,
            Some(_) => false,
        }
    }

    /// The object's entries (none when absent), sorted by key.
    pub fn map(&self) -> &'a Map<String, Value> {
        self.0
            .and_then(Value::as_object)
            .unwrap_or_else(|| empty_map())
    }

    /// The map's string values, sorted by key (non-strings read as `""`).
    pub fn string_map(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.map()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("")))
    }

    /// The list's strings.
    pub fn strings(&self) -> Vec<&'a str> {
        self.items().map(|v| v.str()).collect()
    }

    /// Upstream's semantic equality: absent, `null`, `""`, `[]` and `{}` are all equal, at any
    /// depth (Go decodes them to the same zero values).
    pub fn same(&self, other: &V<'_>) -> bool {
        semantic_eq(self.0, other.0)
    }
}

/// Removes zero values (`null`, `""`, `[]`, `{}`) recursively; `None` when nothing is left.
pub(super) fn strip_zero(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::Array(items) => {
            if items.is_empty() {
                None
            } else {
                Some(Value::Array(
                    items
                        .iter()
                        .map(|i| strip_zero(i).unwrap_or(Value::Null))
                        .collect(),
                ))
            }
        }
        Value::Object(m) => {
            let out: Map<String, Value> = m
                .iter()
                .filter_map(|(k, v)| strip_zero(v).map(|v| (k.clone(), v)))
                .collect();
            if out.is_empty() {
                None
            } else {
                Some(Value::Object(out))
            }
        }
        other => Some(other.clone()),
    }
}

/// Semantic equality of two optional values (see [`V::same`]).
pub fn semantic_eq(a: Option<&Value>, b: Option<&Value>) -> bool {
    a.and_then(strip_zero) == b.and_then(strip_zero)
}
