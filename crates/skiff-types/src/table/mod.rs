//! `meta.k8s.io/v1` `Table` responses for `kubectl get`
//! (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`), with the columns and cells of
//! upstream's printers (`k8s.io/kubernetes/pkg/printers/internalversion/printers.go`).
//!
//! As upstream's server does, every column is rendered (kubectl hides `priority` 1 columns
//! unless `-o wide`), and ages are rendered server-side with upstream's `HumanDuration`.

mod printers;

use jiff::Timestamp;
use serde_json::{json, Map, Value};

use crate::registry::ResourceInfo;

pub use printers::{format_label_selector, human_duration};

/// What each row carries besides its cells (the `includeObject` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// Cells only.
    None,
    /// A `PartialObjectMetadata` with the object's metadata (upstream's default).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` query value (`None`, `Metadata`, `Object`).
    pub fn parse(value: &str) -> Option<IncludeObject> {
        match value {
            "None" => Some(IncludeObject::None),
            "Metadata" => Some(IncludeObject::Metadata),
            "Object" => Some(IncludeObject::Object),
            _ => None,
        }
    }
}

/// One column of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Header, e.g. `Name` (kubectl prints it upper-cased).
    pub name: &'static str,
    /// OpenAPI type of the cells: `string`, `integer`, `date`.
    pub ty: &'static str,
    /// `name` for the name column.
    pub format: &'static str,
    /// What the column shows.
    pub description: &'static str,
    /// 0 = always shown, 1 = only with `-o wide`.
    pub priority: i64,
}

impl Column {
    fn to_json(self) -> Value {
        json!({
            "name": self.name,
            "type": self.ty,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// The table of `objects` (all of resource `info`) as `kubectl get` expects it, with ages
/// measured from the current time. `list_meta` becomes the table's `metadata`
/// (`resourceVersion`, `continue`, `remainingItemCount`).
pub fn table(
    info: &ResourceInfo,
    objects: &[Value],
    list_meta: Value,
    include_object: IncludeObject,
) -> Value {
    table_at(info, objects, list_meta, include_object, Timestamp::now())
}

/// [`table`] with ages measured from `now`.
pub fn table_at(
    info: &ResourceInfo,
    objects: &[Value],
    list_meta: Value,
    include_object: IncludeObject,
    now: Timestamp,
) -> Value {
    let columns: Vec<Value> = columns(info).iter().map(|c| c.to_json()).collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| row(info, o, include_object, now))
        .collect();
    let metadata = if list_meta.is_object() {
        list_meta
    } else {
        json!({})
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// The columns of resource `info`'s table.
pub fn columns(info: &ResourceInfo) -> &'static [Column] {
    printers::columns(info.group, info.kind)
}

/// One row of resource `info`'s table for `object`: `{"cells": [...], "object": ...}`, plus
/// `conditions` for finished pods as upstream.
pub fn row(
    info: &ResourceInfo,
    object: &Value,
    include_object: IncludeObject,
    now: Timestamp,
) -> Value {
    let (cells, conditions) = printers::cells(info.group, info.kind, object, now);
    let mut row = Map::new();
    row.insert("cells".into(), Value::Array(cells));
    if let Some(c) = conditions {
        row.insert("conditions".into(), c);
    }
    match include_object {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            row.insert(
                "object".into(),
                json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
                }),
            );
        }
        IncludeObject::Object => {
            let mut full = object.clone();
            if let Some(m) = full.as_object_mut() {
                m.entry("apiVersion")
                    .or_insert_with(|| json!(info.api_version()));
                m.entry("kind").or_insert_with(|| json!(info.kind));
            }
            row.insert("object".into(), full);
        }
    }
    Value::Object(row)
}

#[cfg(test)]
mod tests;
