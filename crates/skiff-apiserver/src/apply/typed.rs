//! Walks objects with their schema, as structured-merge-diff's typed values do: the field
//! set an object (or an applied configuration) holds, the comparison of two objects
//! (added, removed, modified paths), the merge of an applied configuration into the live
//! object, and the removal of paths. Each walk visits every value once; list items are
//! matched through a hash map of their keys, never by rescanning the list.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::fieldset::{canonical_key, PathElement, Set};
use super::schema::{ListKind, Shape, Ty};

/// The element naming `item` (at `index`) in a granular list of `kind`.
fn item_element(kind: ListKind, item: &Value, index: usize) -> PathElement {
    match (kind, item) {
        (ListKind::Set, _) => PathElement::Value(item.to_string()),
        (ListKind::Map(keys), Value::Object(map)) => {
            PathElement::Key(canonical_key(keys.iter().filter_map(|key| {
                let value = map.get(*key).cloned().or_else(|| {
                    // Upstream's schema defaults a missing protocol key to TCP.
                    (*key == "protocol").then(|| json!("TCP"))
                })?;
                Some((key.to_string(), value))
            })))
        }
        _ => PathElement::Index(index),
    }
}

/// Whether `value` of type `ty` is owned and compared as one value.
fn whole(ty: Ty, value: &Value) -> bool {
    !matches!(
        (ty.shape(), value),
        (Shape::Map, Value::Object(_)) | (Shape::List(..), Value::Array(_))
    )
}

/// Whether a map entry is a member of the set by itself (upstream `visitMapItems`): leaves,
/// nulls, empty objects, and entries of maps (not struct fields).
fn entry_is_member(ty: Ty, value: &Value, is_field: bool) -> bool {
    whole(ty, value) || !is_field || value.as_object().is_some_and(Map::is_empty)
}

fn skip_child<'a>(skip: Option<&'a Set>, element: &PathElement) -> Option<&'a Set> {
    skip.and_then(|s| s.child(element))
}

fn skipped(skip: Option<&Set>, element: &PathElement) -> bool {
    skip.is_some_and(|s| s.has_member(element))
}

/// The paths `value` of type `ty` holds (upstream `ToFieldSet`), leaving out the paths
/// `skip` names (and everything under them).
pub(crate) fn field_set(value: &Value, ty: Ty, skip: Option<&Set>) -> Set {
    let mut set = Set::default();
    children_set(value, ty, skip, &mut set);
    set
}

fn children_set(value: &Value, ty: Ty, skip: Option<&Set>, set: &mut Set) {
    match (ty.shape(), value) {
        (Shape::Map, Value::Object(map)) => {
            for (key, child) in map {
                let element = PathElement::Field(key.clone());
                if skipped(skip, &element) {
                    continue;
                }
                let (child_ty, is_field) = ty.child(key);
                let inner_skip = skip_child(skip, &element);
                add_entry(
                    set,
                    element,
                    child,
                    child_ty,
                    entry_is_member(child_ty, child, is_field),
                    inner_skip,
                );
            }
        }
        (Shape::List(elem, kind), Value::Array(items)) => {
            for (index, item) in items.iter().enumerate() {
                let element = item_element(kind, item, index);
                add_entry(set, element, item, *elem, true, None);
            }
        }
        _ => {}
    }
}

fn add_entry(
    set: &mut Set,
    element: PathElement,
    value: &Value,
    ty: Ty,
    member: bool,
    inner_skip: Option<&Set>,
) {
    if !whole(ty, value) {
        let mut child = Set::default();
        children_set(value, ty, inner_skip, &mut child);
        if !child.is_empty() {
            set.child_mut(element.clone()).union(&child);
        }
    }
    if member {
        set.members.insert(element);
    }
}

/// What changed between two objects (upstream `typed.Comparison`).
#[derive(Debug, Default)]
pub(crate) struct Comparison {
    pub(crate) added: Set,
    pub(crate) removed: Set,
    pub(crate) modified: Set,
}

impl Comparison {
    /// Paths whose value the change sets: added or modified.
    pub(crate) fn changed(&self) -> Set {
        let mut changed = self.added.clone();
        changed.union(&self.modified);
        changed
    }
}

/// Compares `old` with `new` (both of type `ty`), leaving out the paths `skip` names.
pub(crate) fn compare(old: &Value, new: &Value, ty: Ty, skip: Option<&Set>) -> Comparison {
    let mut out = Comparison::default();
    compare_children(old, new, ty, skip, &mut out);
    out
}

fn compare_children(old: &Value, new: &Value, ty: Ty, skip: Option<&Set>, out: &mut Comparison) {
    match (ty.shape(), old, new) {
        (Shape::Map, Value::Object(old_map), Value::Object(new_map)) => {
            for (key, new_child) in new_map {
                let element = PathElement::Field(key.clone());
                if skipped(skip, &element) {
                    continue;
                }
                let (child_ty, is_field) = ty.child(key);
                let child_skip = skip_child(skip, &element);
                match old_map.get(key) {
                    Some(old_child) => compare_entry(
                        element, old_child, new_child, child_ty, is_field, child_skip, out,
                    ),
                    None => add_entry(
                        &mut out.added,
                        element,
                        new_child,
                        child_ty,
                        entry_is_member(child_ty, new_child, is_field),
                        child_skip,
                    ),
                }
            }
            for (key, old_child) in old_map {
                if new_map.contains_key(key) {
                    continue;
                }
                let element = PathElement::Field(key.clone());
                if skipped(skip, &element) {
                    continue;
                }
                let (child_ty, is_field) = ty.child(key);
                let inner_skip = skip_child(skip, &element);
                add_entry(
                    &mut out.removed,
                    element,
                    old_child,
                    child_ty,
                    entry_is_member(child_ty, old_child, is_field),
                    inner_skip,
                );
            }
        }
        (Shape::List(elem, kind), Value::Array(old_items), Value::Array(new_items)) => {
            let mut old_index: HashMap<PathElement, &Value> =
                HashMap::with_capacity(old_items.len());
            for (index, item) in old_items.iter().enumerate() {
                old_index.insert(item_element(kind, item, index), item);
            }
            for (index, item) in new_items.iter().enumerate() {
                let element = item_element(kind, item, index);
                match old_index.remove(&element) {
                    Some(old_item) => {
                        compare_entry(element, old_item, item, *elem, true, None, out)
                    }
                    None => add_entry(&mut out.added, element, item, *elem, true, None),
                }
            }
            for (element, old_item) in old_index {
                add_entry(&mut out.removed, element, old_item, *elem, true, None);
            }
        }
        _ => {}
    }
}

fn compare_entry(
    element: PathElement,
    old: &Value,
    new: &Value,
    ty: Ty,
    is_field: bool,
    skip: Option<&Set>,
    out: &mut Comparison,
) {
    let (old_whole, new_whole) = (whole(ty, old), whole(ty, new));
    if old_whole || new_whole {
        if old == new {
            return;
        }
        if old_whole && new_whole {
            out.modified.insert(std::slice::from_ref(&element));
        } else {
            add_entry(
                &mut out.removed,
                element.clone(),
                old,
                ty,
                entry_is_member(ty, old, is_field),
                skip,
            );
            add_entry(
                &mut out.added,
                element,
                new,
                ty,
                entry_is_member(ty, new, is_field),
                skip,
            );
        }
        return;
    }
    let mut inner = Comparison::default();
    compare_children(old, new, ty, skip, &mut inner);
    // An object that became empty (or stopped being) changes its membership.
    let (old_empty, new_empty) = (
        old.as_object().is_some_and(Map::is_empty),
        new.as_object().is_some_and(Map::is_empty),
    );
    if is_field && old_empty != new_empty {
        if new_empty {
            out.added.insert(std::slice::from_ref(&element));
        } else {
            out.removed.insert(std::slice::from_ref(&element));
        }
    }
    for (set, part) in [
        (&mut out.added, inner.added),
        (&mut out.removed, inner.removed),
        (&mut out.modified, inner.modified),
    ] {
        if !part.is_empty() {
            set.child_mut(element.clone()).union(&part);
        }
    }
}

/// Merges an applied configuration into the live object (upstream `TypedValue.Merge`):
/// granular maps merge key by key, set and map lists item by item (live order kept, new
/// items appended), everything else is replaced by the configuration's value. A `null` in
/// the configuration removes the field.
pub(crate) fn merge(live: &Value, config: &Value, ty: Ty) -> Value {
    if whole(ty, live) || whole(ty, config) {
        return config.clone();
    }
    match (ty.shape(), live, config) {
        (Shape::Map, Value::Object(live_map), Value::Object(config_map)) => {
            let mut out = live_map.clone();
            for (key, value) in config_map {
                if value.is_null() {
                    out.remove(key);
                    continue;
                }
                let (child_ty, _) = ty.child(key);
                let merged = match live_map.get(key) {
                    Some(live_child) => merge(live_child, value, child_ty),
                    None => value.clone(),
                };
                out.insert(key.clone(), merged);
            }
            Value::Object(out)
        }
        (Shape::List(elem, kind), Value::Array(live_items), Value::Array(config_items)) => {
            let mut out = live_items.clone();
            let mut position: HashMap<PathElement, usize> = live_items
                .iter()
                .enumerate()
                .map(|(index, item)| (item_element(kind, item, index), index))
                .collect();
            for (index, item) in config_items.iter().enumerate() {
                let element = item_element(kind, item, index);
                match position.get(&element) {
                    Some(&at) => out[at] = merge(&out[at], item, *elem),
                    None => {
                        position.insert(element, out.len());
                        out.push(item.clone());
                    }
                }
            }
            Value::Array(out)
        }
        _ => config.clone(),
    }
}

/// Removes the paths of `set` from `value` (a member removes its whole subtree).
pub(crate) fn remove_paths(value: &mut Value, set: &Set, ty: Ty) {
    if whole(ty, value) {
        return;
    }
    match (ty.shape(), value) {
        (Shape::Map, Value::Object(map)) => {
            for element in &set.members {
                if let PathElement::Field(key) = element {
                    map.remove(key);
                }
            }
            for (element, child) in &set.children {
                if let PathElement::Field(key) = element {
                    if let Some(inner) = map.get_mut(key) {
                        remove_paths(inner, child, ty.child(key).0);
                    }
                }
            }
        }
        (Shape::List(elem, kind), Value::Array(items)) => {
            let elements: Vec<PathElement> = items
                .iter()
                .enumerate()
                .map(|(index, item)| item_element(kind, item, index))
                .collect();
            for (item, element) in items.iter_mut().zip(&elements) {
                if let Some(child) = set.child(element) {
                    remove_paths(item, child, *elem);
                }
            }
            let mut elements = elements.into_iter();
            items.retain(|_| {
                elements
                    .next()
                    .is_none_or(|element| !set.has_member(&element))
            });
        }
        _ => {}
    }
}

/// The paths of `last` to remove from the object: those no set in `owned` holds, neither
/// the path itself nor anything under it (upstream's prune with its add-back of owned
/// items).
pub(crate) fn unowned(last: &Set, owned: &Set) -> Set {
    let empty = Set::default();
    let mut out = Set::default();
    for element in &last.members {
        let owned_below = owned.child(element).is_some_and(|c| !c.is_empty());
        if !owned.has_member(element) && !owned_below {
            out.members.insert(element.clone());
        }
    }
    for (element, child) in &last.children {
        if out.members.contains(element) {
            continue;
        }
        let inner = unowned(child, owned.child(element).unwrap_or(&empty));
        if !inner.is_empty() {
            out.children.insert(element.clone(), inner);
        }
    }
    out
}
