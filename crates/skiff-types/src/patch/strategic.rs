//! Server-side strategic merge patch, following upstream's
//! `k8s.io/apimachinery/pkg/util/strategicpatch` (`mergeMap` with `MergeParallelList` and
//! `IgnoreUnmatchedNulls`), with merge keys from [`super::schema`].

use serde_json::{Map, Value};

use super::schema::{self, ListStrategy, PatchType};
use super::PatchError;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

/// Applies a strategic merge patch to `original` whose schema root is `root`.
pub fn strategic_merge_typed(
    root: PatchType,
    original: &Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    let (Value::Object(original), Value::Object(patch)) = (original, patch) else {
        return Err(PatchError::BadJsonDoc);
    };
    merge_map(original.clone(), patch.clone(), Some(root)).map(Value::Object)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

fn same_json_type(a: &Value, b: &Value) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// Scalar equality as Go compares decoded JSON (`float64` numbers).
fn scalar_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    ty: Option<PatchType>,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => {
                patch.remove(DIRECTIVE);
                Ok(patch)
            }
            Some("delete") => Ok(Map::new()),
            _ => Err(PatchError::BadPatchType {
                directive: directive_text(directive),
                map: Value::Object(patch.clone()).to_string(),
            }),
        };
    }

    apply_retain_keys(&mut original, &mut patch)?;
    merge_ordered_lists(&mut original, &mut patch, ty)?;

    for (key, patch_value) in patch {
        let (key, is_delete_list) = match key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            Some(rest) => match rest.strip_prefix('/') {
                Some(field) if !field.is_empty() => (field.to_string(), true),
                _ => return Err(PatchError::BadPrimitiveList),
            },
            None => (key, false),
        };

        if patch_value.is_null() {
            original.remove(&key);
            continue;
        }

        let Some(original_value) = original.remove(&key) else {
            if !is_delete_list {
                if let Some(v) = new_value(patch_value) {
                    original.insert(key, v);
                }
            }
            continue;
        };

        if !same_json_type(&original_value, &patch_value) {
            if is_delete_list {
                original.insert(key, original_value);
            } else if let Some(v) = new_value(patch_value) {
                original.insert(key, v);
            }
            continue;
        }

        let meta = schema::lookup_in(ty, &key);
        let merged = match (original_value, patch_value) {
            (Value::Object(o), Value::Object(p)) => {
                Some(Value::Object(merge_map(o, p, meta.child)?))
            }
            (Value::Array(o), Value::Array(p)) => {
                if meta.list != ListStrategy::Replace || is_delete_list {
                    Some(Value::Array(merge_list(
                        o,
                        p,
                        meta.child,
                        meta.list,
                        is_delete_list,
                    )?))
                } else {
                    Some(Value::Array(p))
                }
            }
            (_, p) => new_value(p),
        };
        if let Some(v) = merged {
            original.insert(key, v);
        }
    }
    Ok(original)
}

fn directive_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A patch value for a key the original lacks: taken as is, minus nulls and directives
/// (a map carrying `$patch` is dropped entirely, as upstream's `removeDirectives`).
fn new_value(v: Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Object(map) => {
            if map.contains_key(DIRECTIVE) {
                return None;
            }
            let mut out = Map::new();
            for (k, v) in map {
                if k == RETAIN_KEYS
                    || k.starts_with(SET_ELEMENT_ORDER)
                    || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
                {
                    continue;
                }
                if let Some(v) = new_value(v) {
                    out.insert(k, v);
                }
            }
            Some(Value::Object(out))
        }
        Value::Array(items) => Some(Value::Array(
            items.into_iter().filter_map(new_item).collect(),
        )),
        scalar => Some(scalar),
    }
}

/// Like [`new_value`] for list items: `null` items are kept (upstream keeps them in lists).
fn new_item(v: Value) -> Option<Value> {
    match v {
        Value::Null => Some(Value::Null),
        other => new_value(other),
    }
}

fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(PatchError::BadRetainKeys);
    };
    let retained = |k: &str| retain.iter().any(|r| r.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null()
            || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || k.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if !retained(k) {
            return Err(PatchError::BadRetainKeys);
        }
    }
    original.retain(|k, _| retained(k));
    Ok(())
}

/// Processes the `$setElementOrder/<field>` directives (upstream `mergePatchIntoOriginal`):
/// merges each named list and orders it as the directive says.
fn merge_ordered_lists(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    ty: Option<PatchType>,
) -> Result<(), PatchError> {
    let order_keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for order_key in order_keys {
        let Some(order) = patch.remove(&order_key) else {
            continue;
        };
        let Value::Array(order) = order else {
            return Err(PatchError::BadArgType {
                expected: "list",
                actual: json_kind(&order),
            });
        };
        let field = match order_key[SET_ELEMENT_ORDER.len()..].strip_prefix('/') {
            Some(f) if !f.is_empty() => f.to_string(),
            _ => return Err(PatchError::BadSetElementOrder),
        };
        let original_list = match original.get(&field) {
            None => None,
            Some(Value::Array(items)) => Some(items.clone()),
            Some(other) => {
                return Err(PatchError::BadArgType {
                    expected: "list",
                    actual: json_kind(other),
                })
            }
        };
        let patch_list = match patch.remove(&field) {
            None => None,
            Some(Value::Array(items)) => Some(items),
            Some(other) => {
                return Err(PatchError::BadArgType {
                    expected: "list",
                    actual: json_kind(&other),
                })
            }
        };
        let meta = schema::lookup_in(ty, &field);
        let merge_key = match meta.list {
            ListStrategy::MergeByKey(k) => Some(k),
            _ => None,
        };
        if let Some(p) = &patch_list {
            validate_patch_with_order(p, &order, merge_key)?;
        }
        let merged = match (&original_list, patch_list.clone()) {
            (Some(o), None) => o.clone(),
            (None, Some(p)) => p.into_iter().filter_map(new_item).collect(),
            (Some(o), Some(p)) => {
                if meta.list != ListStrategy::Replace {
                    merge_list(o.clone(), p, meta.child, meta.list, false)?
                } else {
                    p
                }
            }
            (None, None) => continue,
        };
        if merged.is_empty() {
            original.insert(field, Value::Array(merged));
            continue;
        }
        let (in_patch, server_only) = partition(merged, &order, merge_key)?;
        let original_list = original_list.unwrap_or_default();
        let both =
            normalize_element_order(in_patch, server_only, &order, &original_list, merge_key)?;
        original.insert(field, Value::Array(both));
    }
    Ok(())
}

/// Checks that the items of the patch list appear in the `$setElementOrder` list in the same
/// relative order (upstream `validatePatchWithSetOrderList`).
fn validate_patch_with_order(
    patch_list: &[Value],
    order: &[Value],
    merge_key: Option<&'static str>,
) -> Result<(), PatchError> {
    if order.is_empty() || patch_list.is_empty() {
        return Ok(());
    }
    let non_delete: Vec<&Value> = match merge_key {
        Some(_) => patch_list
            .iter()
            .filter(|v| v.get(DIRECTIVE).and_then(Value::as_str) != Some("delete"))
            .collect(),
        None => patch_list.iter().collect(),
    };
    let (mut pi, mut oi) = (0, 0);
    while pi < non_delete.len() && oi < order.len() {
        if non_delete[pi].get(DIRECTIVE).is_some() {
            pi += 1;
            continue;
        }
        if merge_key_value_equal(non_delete[pi], &order[oi], merge_key)? {
            pi += 1;
        }
        oi += 1;
    }
    if pi < non_delete.len() && oi >= order.len() {
        return Err(PatchError::BadSetElementOrder);
    }
    Ok(())
}

fn merge_key_value_equal(
    left: &Value,
    right: &Value,
    merge_key: Option<&'static str>,
) -> Result<bool, PatchError> {
    let Some(key) = merge_key else {
        return Ok(scalar_eq(left, right));
    };
    let l = key_value(left, key)?;
    let r = key_value(right, key)?;
    Ok(scalar_eq(l, r))
}

fn key_value<'a>(item: &'a Value, key: &'static str) -> Result<&'a Value, PatchError> {
    match item {
        Value::Object(m) => m.get(key).ok_or_else(|| PatchError::NoMergeKey {
            map: item.to_string(),
            key,
        }),
        other => Err(PatchError::BadArgType {
            expected: "map",
            actual: json_kind(other),
        }),
    }
}

/// Element kind of the lists' items: all the same JSON type, no lists.
fn element_kind(lists: &[&[Value]]) -> Result<Option<&'static str>, PatchError> {
    let mut kind: Option<&'static str> = None;
    for list in lists {
        for v in *list {
            let k = match v {
                Value::Number(_) => "number",
                other => json_kind(other),
            };
            match kind {
                None => {
                    if k == "list" {
                        return Err(PatchError::ListOfLists);
                    }
                    kind = Some(k);
                }
                Some(prev) if prev != k => {
                    let all: Vec<Value> = lists.iter().map(|l| Value::Array(l.to_vec())).collect();
                    return Err(PatchError::MixedListTypes(Value::Array(all).to_string()));
                }
                Some(_) => {}
            }
        }
    }
    Ok(kind)
}

/// Merges a patch list into an original list (upstream `mergeSlice`).
fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    child: Option<PatchType>,
    strategy: ListStrategy,
    is_delete_list: bool,
) -> Result<Vec<Value>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let Some(kind) = element_kind(&[&original, &patch])? else {
        return Ok(original);
    };
    if kind != "map" {
        if is_delete_list {
            return Ok(original
                .into_iter()
                .filter(|v| !patch.iter().any(|d| scalar_eq(d, v)))
                .collect());
        }
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for v in original.iter().chain(patch.iter()) {
            if !merged.iter().any(|m| scalar_eq(m, v)) {
                merged.push(v.clone());
            }
        }
        let (in_patch, server_only) = partition(merged, &patch, None)?;
        return normalize_element_order(in_patch, server_only, &patch, &original, None);
    }

    let key = match strategy {
        ListStrategy::MergeByKey(k) => k,
        _ => return Err(PatchError::NoMergeKeyDeclared(schema::name(child))),
    };
    let (original, patch) = apply_list_directives(original, patch, key)?;
    let mut merged = original.clone();
    for item in &patch {
        let value = key_value(item, key)?.clone();
        let found = merged
            .iter()
            .position(|o| o.get(key).is_some_and(|v| scalar_eq(v, &value)));
        match (found, item) {
            (Some(i), Value::Object(p)) => {
                let o = match std::mem::take(&mut merged[i]) {
                    Value::Object(o) => o,
                    _ => Map::new(),
                };
                merged[i] = Value::Object(merge_map(o, p.clone(), child)?);
            }
            (None, Value::Object(p)) => {
                merged.push(Value::Object(merge_map(Map::new(), p.clone(), child)?));
            }
            _ => {}
        }
    }
    let (in_patch, server_only) = partition(merged, &patch, Some(key))?;
    normalize_element_order(in_patch, server_only, &patch, &original, Some(key))
}

/// Applies the `$patch` items of a patch list (upstream `mergeSliceWithSpecialElements`):
/// `delete` removes matching items from the original, `replace` makes the rest of the patch list
/// the new list. Returns the updated original and the patch without directive items.
fn apply_list_directives(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &'static str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let Some(directive) = item.get(DIRECTIVE) else {
            plain.push(item);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let value = key_value(&item, key)?;
                original.retain(|o| !o.get(key).is_some_and(|v| scalar_eq(v, value)));
            }
            Some("replace") => replace = true,
            Some("merge") => return Err(PatchError::MergeDirectiveInList),
            _ => {
                return Err(PatchError::BadPatchType {
                    directive: directive_text(directive),
                    map: item.to_string(),
                })
            }
        }
    }
    if replace {
        Ok((plain, Vec::new()))
    } else {
        Ok((original, plain))
    }
}

fn index_in(list: &[Value], item: &Value, key: Option<&'static str>) -> Option<usize> {
    match key {
        Some(k) => {
            let v = item.get(k);
            list.iter().position(|x| match (x.get(k), v) {
                (Some(a), Some(b)) => scalar_eq(a, b),
                (None, None) => true,
                _ => false,
            })
        }
        None => list.iter().position(|x| scalar_eq(x, item)),
    }
}

/// Splits `merged` into the items present in `by` and the others.
fn partition(
    merged: Vec<Value>,
    by: &[Value],
    key: Option<&'static str>,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut in_patch = Vec::with_capacity(merged.len());
    let mut server_only = Vec::new();
    for v in merged {
        if let Some(k) = key {
            key_value(&v, k)?;
        }
        if index_in(by, &v, key).is_some() {
            in_patch.push(v);
        } else {
            server_only.push(v);
        }
    }
    Ok((in_patch, server_only))
}

/// Orders merged items: patch items in patch order, server-only items in their original order,
/// interleaved by their positions in the original (upstream `normalizeElementOrder`).
fn normalize_element_order(
    mut in_patch: Vec<Value>,
    mut server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&'static str>,
) -> Result<Vec<Value>, PatchError> {
    if let Some(k) = key {
        for v in in_patch
            .iter()
            .chain(server_only.iter())
            .chain(patch_order.iter())
            .chain(server_order.iter())
        {
            if v.get(DIRECTIVE).is_none() {
                key_value(v, k)?;
            }
        }
    }
    sort_by_order(&mut in_patch, patch_order, key);
    sort_by_order(&mut server_only, server_order, key);

    // Merge the two sorted lists, placing a server-only item before a patch item only when both
    // appear in the original and the server-only item came first there.
    let mut out = Vec::with_capacity(in_patch.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = in_patch.into_iter().peekable();
    loop {
        match (left.peek(), right.peek()) {
            (Some(l), Some(r)) => {
                let li = index_in(server_order, l, key);
                let ri = index_in(server_order, r, key);
                let take_left = matches!((li, ri), (Some(a), Some(b)) if a < b);
                let next = if take_left { left.next() } else { right.next() };
                out.extend(next);
            }
            (Some(_), None) => out.extend(left.next()),
            (None, Some(_)) => out.extend(right.next()),
            (None, None) => break,
        }
    }
    Ok(out)
}

/// Stable-sorts `items` by their position in `order`; items not in `order` go last.
fn sort_by_order(items: &mut [Value], order: &[Value], key: Option<&'static str>) {
    items.sort_by_key(|v| index_in(order, v, key).unwrap_or(usize::MAX));
}
