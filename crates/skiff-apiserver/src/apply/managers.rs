//! `metadata.managedFields`: who owns which fields, and how an update or an apply changes
//! that (upstream's `FieldManager` chain over structured-merge-diff's `Updater`).
//!
//! - An update (create, PUT, JSON/merge/strategic patch, subresource writes) never
//!   conflicts: the fields it adds or changes move to its manager's `Update` entry, fields
//!   it removes leave every entry.
//! - An apply owns exactly the fields of its configuration (its `Apply` entry is replaced);
//!   fields it applied before and no longer applies are removed from the object unless
//!   another entry owns them; changing a field another entry owns is a conflict unless
//!   forced, which moves the field.
//! - Entries left without fields are dropped; past ten `Update` entries the oldest are
//!   merged into `ancient-changes`.

use serde_json::{json, Map, Value};

use super::fieldset::{path_string, PathElement, Set};
use super::schema::Ty;
use super::typed;

/// Upstream's `DefaultMaxUpdateManagers`.
pub(crate) const MAX_UPDATE_MANAGERS: usize = 10;
/// The entry the oldest updates are merged into.
pub(crate) const ANCIENT_CHANGES: &str = "ancient-changes";
/// The entry owning what an object held before its first apply, when it had no entries.
pub(crate) const BEFORE_FIRST_APPLY: &str = "before-first-apply";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// Who writes: the manager, the subresource written through, the API version used.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Writer<'a> {
    pub(crate) manager: &'a str,
    pub(crate) subresource: &'a str,
    pub(crate) api_version: &'a str,
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub(crate) manager: String,
    pub(crate) operation: Operation,
    pub(crate) api_version: String,
    pub(crate) subresource: String,
    pub(crate) time: Option<String>,
    pub(crate) set: Set,
}

impl Entry {
    /// Upstream's manager identifier: apply entries are one per manager and subresource,
    /// update entries also per API version; the time is never part of it.
    fn is(&self, writer: &Writer<'_>, operation: Operation) -> bool {
        self.operation == operation
            && self.manager == writer.manager
            && self.subresource == writer.subresource
            && (operation == Operation::Apply || self.api_version == writer.api_version)
    }

    /// Upstream's `printManager`: `"name"`, `with subresource "s"`, `using v` for updates.
    fn describe(&self) -> String {
        let mut text = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            text.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == Operation::Update {
            text.push_str(&format!(" using {}", self.api_version));
        }
        text
    }
}

/// The entries of one object.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Managed {
    pub(crate) entries: Vec<Entry>,
}

impl Managed {
    /// Decodes `metadata.managedFields`; `None` when any entry is malformed (upstream then
    /// falls back to the live object's entries, or none).
    pub(crate) fn decode(list: Option<&Value>) -> Option<Managed> {
        let Some(list) = list else {
            return Some(Managed::default());
        };
        let items = match list {
            Value::Null => return Some(Managed::default()),
            Value::Array(items) => items,
            _ => return None,
        };
        let mut managed = Managed::default();
        for item in items {
            let text = |key: &str| item.get(key).and_then(Value::as_str).unwrap_or_default();
            let operation = match text("operation") {
                "Apply" => Operation::Apply,
                "Update" => Operation::Update,
                _ => return None,
            };
            if text("fieldsType") != "FieldsV1" {
                return None;
            }
            let set = Set::from_fields_v1(item.get("fieldsV1").unwrap_or(&json!({})))?;
            managed.entries.push(Entry {
                manager: text("manager").to_string(),
                operation,
                api_version: text("apiVersion").to_string(),
                subresource: text("subresource").to_string(),
                time: item.get("time").and_then(Value::as_str).map(str::to_string),
                set,
            });
        }
        Some(managed)
    }

    /// The `managedFields` list, sorted as upstream sorts it (operation, time, manager,
    /// API version, subresource).
    pub(crate) fn encode(&self) -> Value {
        let mut entries: Vec<&Entry> = self.entries.iter().collect();
        entries.sort_by(|a, b| {
            (
                a.operation.as_str(),
                &a.time,
                &a.manager,
                &a.api_version,
                &a.subresource,
            )
                .cmp(&(
                    b.operation.as_str(),
                    &b.time,
                    &b.manager,
                    &b.api_version,
                    &b.subresource,
                ))
        });
        Value::Array(
            entries
                .into_iter()
                .map(|entry| {
                    let mut map = Map::new();
                    map.insert("manager".into(), json!(entry.manager));
                    map.insert("operation".into(), json!(entry.operation.as_str()));
                    map.insert("apiVersion".into(), json!(entry.api_version));
                    if let Some(time) = &entry.time {
                        map.insert("time".into(), json!(time));
                    }
                    map.insert("fieldsType".into(), json!("FieldsV1"));
                    map.insert("fieldsV1".into(), entry.set.to_fields_v1());
                    if !entry.subresource.is_empty() {
                        map.insert("subresource".into(), json!(entry.subresource));
                    }
                    Value::Object(map)
                })
                .collect(),
        )
    }

    fn position(&self, writer: &Writer<'_>, operation: Operation) -> Option<usize> {
        self.entries.iter().position(|e| e.is(writer, operation))
    }

    /// Drops entries without fields, then caps the update entries.
    fn tidy(&mut self) {
        self.entries.retain(|e| !e.set.is_empty());
        self.cap_update_managers();
    }

    /// Upstream's `capUpdateManagers`: while there are more than [`MAX_UPDATE_MANAGERS`]
    /// update entries, the oldest ones are merged (per API version, after the first of each
    /// version) into an `ancient-changes` entry of that version.
    fn cap_update_managers(&mut self) {
        let mut updaters: Vec<usize> = (0..self.entries.len())
            .filter(|&i| self.entries[i].operation == Operation::Update)
            .collect();
        if updaters.len() <= MAX_UPDATE_MANAGERS {
            return;
        }
        updaters.sort_by(|&a, &b| self.entries[a].time.cmp(&self.entries[b].time));
        let mut length = updaters.len();
        let mut first_of_version: Vec<String> = Vec::new();
        let mut merged: Vec<usize> = Vec::new();
        for &index in &updaters {
            if length <= MAX_UPDATE_MANAGERS {
                break;
            }
            let entry = self.entries[index].clone();
            if entry.manager == ANCIENT_CHANGES {
                continue;
            }
            if !first_of_version.contains(&entry.api_version) {
                first_of_version.push(entry.api_version);
                continue;
            }
            let bucket = Writer {
                manager: ANCIENT_CHANGES,
                subresource: "",
                api_version: &entry.api_version,
            };
            match self.position(&bucket, Operation::Update) {
                Some(at) => {
                    self.entries[at].set.union(&entry.set);
                    self.entries[at].time = entry.time.clone();
                }
                None => {
                    self.entries.push(Entry {
                        manager: ANCIENT_CHANGES.into(),
                        operation: Operation::Update,
                        api_version: entry.api_version.clone(),
                        subresource: String::new(),
                        time: entry.time.clone(),
                        set: entry.set.clone(),
                    });
                }
            }
            merged.push(index);
            length -= 1;
        }
        merged.sort_unstable();
        for index in merged.into_iter().rev() {
            self.entries.remove(index);
        }
    }
}

/// The paths whose ownership is never tracked (upstream's `stripMeta`), plus `status` for
/// writes of the main resource or `spec` for writes of the status (the strategies' reset
/// fields).
pub(crate) fn untracked(subresource: &str) -> Set {
    let field = |name: &str| PathElement::Field(name.to_string());
    let mut set = Set::default();
    set.insert(&[field("apiVersion")]);
    set.insert(&[field("kind")]);
    for name in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        set.insert(&[field("metadata"), field(name)]);
    }
    set.insert(&[field(if subresource == "status" {
        "spec"
    } else {
        "status"
    })]);
    set
}

/// Records an update from `old` to `new` by `writer` (upstream's `managedFieldsUpdater`
/// with the "current-operation" manager): what changed leaves every entry and joins the
/// writer's update entry, whose time is set when it took anything.
pub(crate) fn update(
    managed: &mut Managed,
    old: &Value,
    new: &Value,
    ty: Ty,
    writer: &Writer<'_>,
    now: &str,
) {
    let skip = untracked(writer.subresource);
    let comparison = typed::compare(old, new, ty, Some(&skip));
    let changed = comparison.changed();
    for entry in &mut managed.entries {
        entry.set = entry
            .set
            .difference(&changed)
            .difference(&comparison.removed);
    }
    if !changed.is_empty() {
        match managed.position(writer, Operation::Update) {
            Some(at) => {
                managed.entries[at].set.union(&changed);
                managed.entries[at].time = Some(now.to_string());
            }
            None => managed.entries.push(Entry {
                manager: writer.manager.to_string(),
                operation: Operation::Update,
                api_version: writer.api_version.to_string(),
                subresource: writer.subresource.to_string(),
                time: Some(now.to_string()),
                set: changed,
            }),
        }
    }
    managed.tidy();
}

/// An apply refused because it changes fields other managers own.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Conflicts {
    /// `(manager as upstream prints it, path)`, grouped by manager.
    pub(crate) conflicts: Vec<(String, String)>,
}

impl Conflicts {
    /// Upstream's `getConflictMessage`.
    pub(crate) fn message(&self) -> String {
        if let [(manager, path)] = self.conflicts.as_slice() {
            return format!("Apply failed with 1 conflict: conflict with {manager}: {path}");
        }
        let mut lines = Vec::new();
        let mut last: Option<&str> = None;
        for (manager, path) in &self.conflicts {
            if last != Some(manager) {
                lines.push(format!("conflicts with {manager}:"));
                last = Some(manager);
            }
            lines.push(format!("- {path}"));
        }
        format!(
            "Apply failed with {} conflicts: {}",
            self.conflicts.len(),
            lines.join("\n")
        )
    }
}

/// Applies `config` by `writer` to `live` (`None`: the object does not exist yet; neither
/// carries `managedFields`). Returns the new object, or the conflicts when not `force`d.
pub(crate) fn apply(
    managed: &mut Managed,
    live: Option<&Value>,
    config: &Value,
    ty: Ty,
    writer: &Writer<'_>,
    force: bool,
    now: &str,
) -> Result<Value, Conflicts> {
    let empty = json!({});
    let skip = untracked(writer.subresource);
    if let Some(live) = live.filter(|_| managed.entries.is_empty()) {
        let before = Writer {
            manager: BEFORE_FIRST_APPLY,
            subresource: writer.subresource,
            api_version: writer.api_version,
        };
        update(managed, &empty, live, ty, &before, now);
    }
    let live = live.unwrap_or(&empty);
    let applied = typed::field_set(config, ty, Some(&skip));
    let mut merged = typed::merge(live, config, ty);
    let mine = managed.position(writer, Operation::Apply);
    if let Some(at) = mine {
        let mut owned = applied.clone();
        for (index, entry) in managed.entries.iter().enumerate() {
            if index != at {
                owned.union(&entry.set);
            }
        }
        let gone = typed::unowned(&managed.entries[at].set, &owned);
        typed::remove_paths(&mut merged, &gone, ty);
    }
    let comparison = typed::compare(live, &merged, ty, Some(&skip));
    let changed = comparison.changed();
    let mut conflicts: Vec<(String, String)> = Vec::new();
    for (index, entry) in managed.entries.iter().enumerate() {
        if Some(index) == mine {
            continue;
        }
        let taken = entry.set.intersection(&changed);
        for path in taken.paths() {
            conflicts.push((entry.describe(), path_string(&path)));
        }
    }
    if !conflicts.is_empty() && !force {
        conflicts.sort();
        return Err(Conflicts { conflicts });
    }
    for (index, entry) in managed.entries.iter_mut().enumerate() {
        if Some(index) != mine {
            entry.set = entry
                .set
                .difference(&changed)
                .difference(&comparison.removed);
        }
    }
    let object_changed = merged != *live;
    match mine {
        Some(at) => {
            let entry = &mut managed.entries[at];
            entry.set = applied;
            entry.api_version = writer.api_version.to_string();
            if object_changed || entry.time.is_none() {
                entry.time = Some(now.to_string());
            }
        }
        None => managed.entries.push(Entry {
            manager: writer.manager.to_string(),
            operation: Operation::Apply,
            api_version: writer.api_version.to_string(),
            subresource: writer.subresource.to_string(),
            time: Some(now.to_string()),
            set: applied,
        }),
    }
    managed.tidy();
    Ok(merged)
}
