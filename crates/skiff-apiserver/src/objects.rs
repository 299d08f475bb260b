//! Small helpers over objects held as `serde_json::Value`.

use serde_json::{Map, Value};

/// `metadata.<field>` as a string.
pub(crate) fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get("metadata")?.get(field)?.as_str()
}

/// `metadata`, created if missing (the object must be a JSON object).
pub(crate) fn meta_mut(object: &mut Value) -> Option<&mut Map<String, Value>> {
    let obj = object.as_object_mut()?;
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut()
}

/// Sets `metadata.<field>`.
pub(crate) fn set_meta(object: &mut Value, field: &str, value: Value) {
    if let Some(meta) = meta_mut(object) {
        meta.insert(field.to_string(), value);
    }
}

/// Removes `metadata.<field>`.
pub(crate) fn remove_meta(object: &mut Value, field: &str) -> Option<Value> {
    object
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .and_then(|m| m.remove(field))
}

/// `metadata.finalizers` as strings.
pub(crate) fn finalizers(object: &Value) -> Vec<String> {
    object
        .get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `metadata.deletionTimestamp` is set.
pub(crate) fn is_deleting(object: &Value) -> bool {
    object
        .get("metadata")
        .and_then(|m| m.get("deletionTimestamp"))
        .is_some_and(|t| !t.is_null())
}

/// `metadata.deletionGracePeriodSeconds`.
pub(crate) fn deletion_grace(object: &Value) -> Option<i64> {
    object
        .get("metadata")?
        .get("deletionGracePeriodSeconds")?
        .as_i64()
}

/// The current time as upstream writes timestamps (RFC 3339, whole seconds, UTC), plus
/// `offset_seconds`.
pub(crate) fn timestamp(offset_seconds: i64) -> String {
    let second = jiff::Timestamp::now()
        .as_second()
        .saturating_add(offset_seconds);
    jiff::Timestamp::from_second(second)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Characters upstream uses for generated name suffixes (no vowels, no confusable digits).
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `generateName` plus five random characters, truncated as upstream (prefix at most 58).
pub(crate) fn generate_name(prefix: &str) -> String {
    let mut prefix: String = prefix.to_string();
    if prefix.len() > 58 {
        let mut cut = 58;
        while !prefix.is_char_boundary(cut) {
            cut -= 1;
        }
        prefix.truncate(cut);
    }
    let suffix: String = (0..5)
        .map(|_| NAME_ALPHABET[rand::random_range(0..NAME_ALPHABET.len())] as char)
        .collect();
    prefix + &suffix
}

/// Renders a `metav1.LabelSelector` as the string form (`a=b,c in (d,e)`), as `Scale.status.selector`.
pub(crate) fn selector_string(selector: Option<&Value>) -> String {
    let Some(selector) = selector else {
        return String::new();
    };
    let mut parts: Vec<String> = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        let mut pairs: Vec<(&String, &Value)> = labels.iter().collect();
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        for (k, v) in pairs {
            parts.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
            let values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut sorted = values.clone();
            sorted.sort_unstable();
            match e
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or_default()
            {
                "In" => parts.push(format!("{key} in ({})", sorted.join(","))),
                "NotIn" => parts.push(format!("{key} notin ({})", sorted.join(","))),
                "Exists" => parts.push(key.to_string()),
                "DoesNotExist" => parts.push(format!("!{key}")),
                _ => {}
            }
        }
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selector_strings() {
        let s = json!({"matchLabels": {"b": "2", "a": "1"}, "matchExpressions": [
            {"key": "t", "operator": "In", "values": ["y", "x"]},
            {"key": "u", "operator": "DoesNotExist"}]});
        assert_eq!(selector_string(Some(&s)), "a=1,b=2,t in (x,y),!u");
        assert_eq!(selector_string(None), "");
    }

    #[test]
    fn generated_names() {
        let n = generate_name("web-");
        assert_eq!(n.len(), 9);
        assert!(n.starts_with("web-"));
        assert_eq!(generate_name(&"x".repeat(80)).len(), 63);
    }
}
