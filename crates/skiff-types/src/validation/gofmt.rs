//! Go `%#v` renderings of the few values upstream prints that way in validation messages
//! (label selectors, string maps, IntOrString).

use serde_json::Value;

use super::errors::go_quote;
use super::value::V;

/// `map[string]string{"a":"b", "c":"d"}` (keys sorted, as Go's fmt sorts them), or
/// `map[string]string(nil)` when absent.
pub(super) fn string_map(v: V<'_>) -> String {
    if !v.present() {
        return "map[string]string(nil)".to_string();
    }
    let entries: Vec<String> = v
        .string_map()
        .map(|(k, val)| format!("{}:{}", go_quote(k), go_quote(val)))
        .collect();
    format!("map[string]string{{{}}}", entries.join(", "))
}

fn string_slice(v: V<'_>) -> String {
    if !v.present() {
        return "[]string(nil)".to_string();
    }
    let items: Vec<String> = v.items().map(|s| go_quote(s.str())).collect();
    format!("[]string{{{}}}", items.join(", "))
}

/// `v1.LabelSelector{MatchLabels:map[string]string{...}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}`.
pub(super) fn label_selector(v: V<'_>) -> String {
    let exprs = v.get("matchExpressions");
    let exprs = if exprs.present() {
        let items: Vec<String> = exprs
            .items()
            .map(|e| {
                format!(
                    "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                    go_quote(e.get("key").str()),
                    go_quote(e.get("operator").str()),
                    string_slice(e.get("values"))
                )
            })
            .collect();
        format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
    } else {
        "[]v1.LabelSelectorRequirement(nil)".to_string()
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{}}}",
        string_map(v.get("matchLabels")),
        exprs
    )
}

/// `intstr.IntOrString{Type:1, IntVal:0, StrVal:"25"}`.
pub(super) fn int_or_string(v: V<'_>) -> String {
    match v.0 {
        Some(Value::String(s)) => format!(
            "intstr.IntOrString{{Type:1, IntVal:0, StrVal:{}}}",
            go_quote(s)
        ),
        Some(Value::Number(n)) => format!("intstr.IntOrString{{Type:0, IntVal:{n}, StrVal:\"\"}}"),
        _ => "intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_like_go() {
        let sel = json!({"matchLabels": {"app": "nginx2"}});
        assert_eq!(
            label_selector(V::new(&sel)),
            "v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"nginx2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"
        );
        let sel = json!({"matchExpressions": [{"key": "a", "operator": "In", "values": ["x"]}]});
        assert_eq!(
            label_selector(V::new(&sel)),
            "v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:\"a\", Operator:\"In\", Values:[]string{\"x\"}}}}"
        );
        assert_eq!(
            string_map(V::new(&json!({"b": "2", "a": "1"}))),
            "map[string]string{\"a\":\"1\", \"b\":\"2\"}"
        );
        assert_eq!(
            int_or_string(V::new(&json!("25"))),
            "intstr.IntOrString{Type:1, IntVal:0, StrVal:\"25\"}"
        );
        assert_eq!(
            int_or_string(V::new(&json!(-1))),
            "intstr.IntOrString{Type:0, IntVal:-1, StrVal:\"\"}"
        );
    }
}
