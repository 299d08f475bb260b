//! Server-side apply and field ownership (`metadata.managedFields`), as kube-apiserver does
//! it with sigs.k8s.io/structured-merge-diff.
//!
//! - [`schema`] (+ the generated [`schema_table`]): list and map semantics of the served
//!   kinds, from upstream's Go markers.
//! - [`fieldset`]: sets of field paths and their `FieldsV1` encoding.
//! - [`typed`]: field sets of objects, comparisons, the apply merge, path removal.
//! - [`managers`]: the entries and what updates and applies do to them.
//!
//! This module is the handlers' entry: [`record_update`] for every write that is not an
//! apply, [`apply`] for apply patches.

mod fieldset;
mod managers;
mod schema;
#[rustfmt::skip]
#[allow(clippy::all)]
mod schema_table;
#[cfg(test)]
mod tests;
mod typed;

use serde_json::Value;
use skiff_types::registry::ResourceInfo;

use crate::{ApiError, StatusCause};
use managers::{Managed, Writer};

/// How a write records field ownership.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ownership<'a> {
    /// An update by this manager through this subresource (`""`: the main resource).
    Update {
        manager: &'a str,
        subresource: &'a str,
    },
    /// Already recorded (an apply computed the entries).
    Recorded,
}

/// The manager of a write: `?fieldManager=`, else the User-Agent up to its first `/`
/// (upstream's `prefixFromUserAgent`: `kubectl/v1.31.0 (linux/amd64) ...` is `kubectl`).
pub(crate) fn manager_of<'a>(
    field_manager: Option<&'a str>,
    user_agent: Option<&'a str>,
) -> &'a str {
    match field_manager {
        Some(manager) => manager,
        None => user_agent
            .unwrap_or_default()
            .split('/')
            .next()
            .unwrap_or_default(),
    }
}

fn managed_fields(object: &Value) -> Option<&Value> {
    object.get("metadata")?.get("managedFields")
}

fn take_managed_fields(object: &mut Value) -> Option<Value> {
    object
        .get_mut("metadata")?
        .as_object_mut()?
        .remove("managedFields")
}

fn set_managed_fields(object: &mut Value, managed: &Managed) {
    let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if managed.entries.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), managed.encode());
    }
}

/// Upstream's `isResetManagedFields`: `[]` or `[{}]` clears the entries.
fn is_reset(list: Option<&Value>) -> bool {
    match list {
        Some(Value::Array(items)) => {
            items.is_empty()
                || (items.len() == 1 && items[0].as_object().is_some_and(|m| m.is_empty()))
        }
        _ => false,
    }
}

fn now() -> String {
    crate::objects::timestamp(0)
}

/// Records a write that is not an apply: `old` (`None` for a create) becomes `new`, whose
/// `managedFields` are rewritten. The entries come from `new` when the client sent some
/// (`[]` clears them), else from `old` (upstream's `decodeLiveOrNew`; subresource writes
/// always keep `old`'s).
pub(crate) fn record_update(
    info: &ResourceInfo,
    old: Option<&Value>,
    new: &mut Value,
    ownership: Ownership<'_>,
) {
    let Ownership::Update {
        manager,
        subresource,
    } = ownership
    else {
        return;
    };
    let sent = take_managed_fields(new);
    let from_old = || {
        old.and_then(|o| Managed::decode(managed_fields(o)))
            .unwrap_or_default()
    };
    let mut managed = if !subresource.is_empty() {
        from_old()
    } else if is_reset(sent.as_ref()) {
        Managed::default()
    } else {
        match Managed::decode(sent.as_ref()) {
            Some(managed) if !managed.entries.is_empty() => managed,
            _ => from_old(),
        }
    };
    let api_version = info.api_version();
    let writer = Writer {
        manager,
        subresource,
        api_version: &api_version,
    };
    let ty = schema::root(&api_version, info.kind);
    let empty = serde_json::json!({});
    managers::update(
        &mut managed,
        old.unwrap_or(&empty),
        new,
        ty,
        &writer,
        &now(),
    );
    set_managed_fields(new, &managed);
}

/// Applies `config` by `manager` to `live` (`None`: create it), returning the object to
/// store with its `managedFields`, or upstream's 409 listing the conflicts.
pub(crate) fn apply(
    info: &ResourceInfo,
    live: Option<&Value>,
    mut config: Value,
    manager: &str,
    subresource: &str,
    force: bool,
) -> Result<Value, ApiError> {
    take_managed_fields(&mut config);
    let mut managed = live
        .and_then(|o| Managed::decode(managed_fields(o)))
        .unwrap_or_default();
    let api_version = info.api_version();
    let writer = Writer {
        manager,
        subresource,
        api_version: &api_version,
    };
    let ty = schema::root(&api_version, info.kind);
    let mut merged = managers::apply(&mut managed, live, &config, ty, &writer, force, &now())
        .map_err(|conflicts| {
            let mut error = ApiError::new(409, "Conflict", conflicts.message());
            error.details_mut().causes = conflicts
                .conflicts
                .iter()
                .map(|(manager, path)| StatusCause {
                    reason: "FieldManagerConflict".into(),
                    message: format!("conflict with {manager}"),
                    field: path.clone(),
                })
                .collect();
            error
        })?;
    set_managed_fields(&mut merged, &managed);
    Ok(merged)
}
