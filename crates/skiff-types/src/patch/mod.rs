//! The three patch kinds of the Kubernetes API: strategic merge patch (with upstream's merge
//! keys and directives), JSON merge patch (RFC 7386) and JSON patch (RFC 6902).

pub mod schema;
mod strategic;

use serde_json::Value;

use crate::registry::ResourceInfo;

pub use strategic::strategic_merge_typed;

/// Upstream refuses JSON patches with more operations than this.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// Why a patch could not be applied. Messages follow upstream where upstream has one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PatchError {
    /// The original or the patch is not a JSON object.
    #[error("invalid JSON document")]
    BadJsonDoc,
    /// A `$deleteFromPrimitiveList/<field>` directive is malformed.
    #[error("invalid patch format of primitive list")]
    BadPrimitiveList,
    /// A `$retainKeys` directive is not a list, or the patch sets a key it does not retain.
    #[error("invalid patch format of retainKeys")]
    BadRetainKeys,
    /// A `$setElementOrder/<field>` directive is malformed or disagrees with the patch list.
    #[error("invalid patch format of setElementOrder list")]
    BadSetElementOrder,
    /// A list holds lists.
    #[error("lists of lists are not supported")]
    ListOfLists,
    /// A list item lacks the list's merge key.
    #[error("map: {map} does not contain declared merge key: {key}")]
    NoMergeKey {
        /// The item, as JSON.
        map: String,
        /// The merge key it should have.
        key: &'static str,
    },
    /// `$patch` has a value other than `replace`, `delete` or `merge`.
    #[error("unknown patch type: {directive} in map: {map}")]
    BadPatchType {
        /// The directive's value.
        directive: String,
        /// The map holding it, as JSON.
        map: String,
    },
    /// `$patch: merge` inside a list.
    #[error("merging lists cannot yet be specified in the patch")]
    MergeDirectiveInList,
    /// A list mixes element types.
    #[error("list element types are not identical: {0}")]
    MixedListTypes(String),
    /// A merging list holds objects but the field declares no merge key.
    #[error("cannot merge lists without merge key for {0}")]
    NoMergeKeyDeclared(String),
    /// A directive has the wrong JSON type (e.g. `$setElementOrder/x` not a list).
    #[error("expected a {expected}, but received a {actual}")]
    BadArgType {
        /// The JSON type expected.
        expected: &'static str,
        /// The JSON type found.
        actual: &'static str,
    },
    /// A JSON patch document is malformed.
    #[error("{0}")]
    InvalidJsonPatch(String),
    /// A JSON patch has more than [`MAX_JSON_PATCH_OPERATIONS`] operations.
    #[error("The allowed maximum operations in a JSON patch is {max}, got {got}")]
    TooManyOperations {
        /// The limit.
        max: usize,
        /// Operations in the patch.
        got: usize,
    },
    /// A JSON patch operation failed (missing path, failed `test`...).
    #[error("{0}")]
    JsonPatchFailed(String),
}

impl PatchError {
    /// HTTP status upstream answers with: 422 for JSON patch operations that fail and for lists
    /// of lists, 400 for malformed patches. (Upstream answers some malformed strategic merge
    /// patches with 500; skiff reports them as the client errors they are.)
    pub fn status_code(&self) -> u16 {
        match self {
            PatchError::ListOfLists | PatchError::JsonPatchFailed(_) => 422,
            _ => 400,
        }
    }
}

/// Applies a strategic merge patch to `original` (an object of resource `info`), as upstream's
/// server side does (`StrategicMergeMapPatch`): objects merge key by key, `null` deletes a key,
/// lists tagged with a merge key merge item by item, other lists are replaced; honours the
/// `$patch` (`replace`, `delete`, `merge`), `$retainKeys`, `$setElementOrder/<field>` and
/// `$deleteFromPrimitiveList/<field>` directives.
pub fn strategic_merge(
    info: &ResourceInfo,
    original: &Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    strategic_merge_typed(schema::root(info.kind), original, patch)
}

/// Applies a JSON merge patch (RFC 7386).
pub fn json_merge_patch(original: &Value, patch: &Value) -> Value {
    let mut doc = original.clone();
    json_patch::merge(&mut doc, patch);
    doc
}

/// Applies a JSON patch (RFC 6902). The patch must be an array of operations.
pub fn json_patch(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    if let Value::Array(ops) = patch {
        if ops.len() > MAX_JSON_PATCH_OPERATIONS {
            return Err(PatchError::TooManyOperations {
                max: MAX_JSON_PATCH_OPERATIONS,
                got: ops.len(),
            });
        }
    }
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| PatchError::InvalidJsonPatch(e.to_string()))?;
    let mut doc = original.clone();
    json_patch::patch(&mut doc, &ops.0).map_err(|e| PatchError::JsonPatchFailed(e.to_string()))?;
    Ok(doc)
}

#[cfg(test)]
mod tests;
