//! Fields upstream always writes. Go's encoding/json writes a field without `,omitempty` even
//! when it holds its zero value, and writes struct-typed fields always; clients and tooling
//! written against the Go types expect them (`restartCount: 0`, `ready: false`,
//! `numberMisscheduled: 0`, `status: {}`). [`fill_zero_fields`] adds what is missing when an
//! object is written, so stored and returned objects carry them. The table is generated from
//! upstream's Go types by `scripts/gen/wire_fields.py`.

mod table;

use serde_json::{Map, Value};

/// One field of a Go struct that upstream always writes, or descends into.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// JSON name (empty for [`Fill::Inline`]).
    pub name: &'static str,
    /// What to write or where to descend.
    pub fill: Fill,
}

/// What [`Field`] stands for.
#[derive(Debug, Clone, Copy)]
pub enum Fill {
    /// A string without omitempty: `""` when missing.
    String,
    /// A number without omitempty: `0` when missing.
    Int,
    /// A boolean without omitempty: `false` when missing.
    Bool,
    /// A struct-typed field: `{}` when missing, then its own fields.
    Object(&'static [Field]),
    /// A list of structs: the fields of each item.
    List(&'static [Field]),
    /// A pointer to a struct: its fields, when present.
    Optional(&'static [Field]),
    /// An embedded struct (`json:",inline"`): its fields belong to this object.
    Inline(&'static [Field]),
}

/// The always-written fields of objects of `api_version`/`kind`; `None` for kinds not served.
pub fn fields_of(api_version: &str, kind: &str) -> Option<&'static [Field]> {
    table::ROOTS
        .iter()
        .find(|(v, k, _)| *v == api_version && *k == kind)
        .map(|(_, _, fields)| *fields)
}

/// Every kind the table covers, as `(apiVersion, kind)`.
pub fn kinds() -> impl Iterator<Item = (&'static str, &'static str)> {
    table::ROOTS.iter().map(|(v, k, _)| (*v, *k))
}

/// Adds the zero-valued fields upstream would write to `object` of `api_version`/`kind`.
pub fn fill_zero_fields(api_version: &str, kind: &str, object: &mut Value) {
    if let (Some(fields), Value::Object(map)) = (fields_of(api_version, kind), object) {
        fill(map, fields);
    }
}

fn fill(map: &mut Map<String, Value>, fields: &[Field]) {
    for field in fields {
        let slot = |map: &mut Map<String, Value>, zero: Value| {
            let value = map.entry(field.name).or_insert(Value::Null);
            if value.is_null() {
                *value = zero;
            }
        };
        match field.fill {
            Fill::String => slot(map, Value::String(String::new())),
            Fill::Int => slot(map, Value::from(0)),
            Fill::Bool => slot(map, Value::Bool(false)),
            Fill::Object(inner) => {
                slot(map, Value::Object(Map::new()));
                if let Some(Value::Object(child)) = map.get_mut(field.name) {
                    fill(child, inner);
                }
            }
            Fill::List(inner) => {
                if let Some(Value::Array(items)) = map.get_mut(field.name) {
                    for item in items {
                        if let Value::Object(child) = item {
                            fill(child, inner);
                        }
                    }
                }
            }
            Fill::Optional(inner) => {
                if let Some(Value::Object(child)) = map.get_mut(field.name) {
                    fill(child, inner);
                }
            }
            Fill::Inline(inner) => fill(map, inner),
        }
    }
}

/// The paths (`status.containerStatuses[0].restartCount`) of always-written fields missing
/// from `object`: empty when it carries everything upstream would write.
pub fn missing_zero_fields(api_version: &str, kind: &str, object: &Value) -> Vec<String> {
    let mut missing = Vec::new();
    if let (Some(fields), Value::Object(map)) = (fields_of(api_version, kind), object) {
        find_missing(map, fields, "", &mut missing);
    }
    missing
}

fn find_missing(map: &Map<String, Value>, fields: &[Field], path: &str, out: &mut Vec<String>) {
    let join = |name: &str| {
        if path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        }
    };
    for field in fields {
        let value = map.get(field.name);
        match field.fill {
            Fill::String | Fill::Int | Fill::Bool => {
                let ok = matches!(
                    (field.fill, value),
                    (Fill::String, Some(Value::String(_)))
                        | (Fill::Int, Some(Value::Number(_)))
                        | (Fill::Bool, Some(Value::Bool(_)))
                );
                if !ok {
                    out.push(join(field.name));
                }
            }
            Fill::Object(inner) => match value {
                Some(Value::Object(child)) => find_missing(child, inner, &join(field.name), out),
                _ => out.push(join(field.name)),
            },
            Fill::List(inner) => {
                if let Some(Value::Array(items)) = value {
                    for (i, item) in items.iter().enumerate() {
                        if let Value::Object(child) = item {
                            find_missing(child, inner, &format!("{}[{i}]", join(field.name)), out);
                        }
                    }
                }
            }
            Fill::Optional(inner) => {
                if let Some(Value::Object(child)) = value {
                    find_missing(child, inner, &join(field.name), out);
                }
            }
            Fill::Inline(inner) => find_missing(map, inner, path, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_served_kind_is_in_the_table() {
        for info in crate::registry::resources() {
            assert!(
                fields_of(&info.api_version(), info.kind).is_some(),
                "{} {} has no row: add it to ROOTS in scripts/gen/wire_fields.py",
                info.api_version(),
                info.kind
            );
        }
    }

    #[test]
    fn fills_what_go_always_writes() {
        let mut ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "d"},
                            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        assert!(!missing_zero_fields("apps/v1", "DaemonSet", &ds).is_empty());
        fill_zero_fields("apps/v1", "DaemonSet", &mut ds);
        assert_eq!(
            ds["status"],
            json!({"currentNumberScheduled": 0, "numberMisscheduled": 0,
                   "desiredNumberScheduled": 0, "numberReady": 0})
        );
        assert_eq!(
            ds["spec"]["template"]["spec"]["containers"][0]["resources"],
            json!({})
        );
        assert_eq!(ds["spec"]["updateStrategy"], json!({}));
        assert!(missing_zero_fields("apps/v1", "DaemonSet", &ds).is_empty());

        let mut pod = json!({"spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready"}],
                       "containerStatuses": [{"name": "c", "state": null, "restartCount": 2}]}});
        fill_zero_fields("v1", "Pod", &mut pod);
        let cs = &pod["status"]["containerStatuses"][0];
        assert_eq!(
            (
                &cs["ready"],
                &cs["restartCount"],
                &cs["image"],
                &cs["imageID"]
            ),
            (&json!(false), &json!(2), &json!(""), &json!(""))
        );
        assert_eq!((&cs["state"], &cs["lastState"]), (&json!({}), &json!({})));
        assert_eq!(pod["status"]["conditions"][0]["status"], "");
        assert_eq!(pod["status"]["phase"], "Running", "set fields are kept");
    }
}
