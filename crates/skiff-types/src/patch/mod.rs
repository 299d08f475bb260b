//! The three patch kinds of the Kubernetes API: strategic merge patch (with upstream's merge
//! keys and directives), JSON merge patch (RFC 7386) and JSON patch (RFC 6902).

pub mod schema;
mod strategic;

use serde_json::Value;

use crate::registry::ResourceInfo;

pub use strategic::strategic_merge_typed;

/// Upstream refuses JSON patches with more operations than this.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// Default bound on the bytes a JSON patch's `copy` operations may add together (upstream sets
/// json-patch's `AccumulatedCopySizeLimit` to the largest request body, 3 MiB; CVE-2019-1002100:
/// without it, a few dozen copies of a large value take gigabytes).
pub const DEFAULT_COPY_SIZE_LIMIT: usize = 3 * 1024 * 1024;

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
    /// The values a JSON patch's `copy` operations duplicate add up to more than the limit.
    #[error("Unable to complete the copy, the accumulated size increase of copy is {accumulated}, exceeding the limit {limit}")]
    CopySizeExceeded {
        /// Bytes copied so far, including the operation that went over.
        accumulated: usize,
        /// The limit.
        limit: usize,
    },
    /// A JSON patch operation failed (missing path, failed `test`...).
    #[error("{0}")]
    JsonPatchFailed(String),
}

impl PatchError {
    /// HTTP status upstream answers with: 422 for JSON patch operations that fail (a copy over
    /// the size limit included) and for lists of lists, 413 for too many operations, 400 for
    /// malformed patches. (Upstream answers some malformed strategic merge patches with 500;
    /// skiff reports them as the client errors they are.)
    pub fn status_code(&self) -> u16 {
        match self {
            PatchError::ListOfLists
            | PatchError::JsonPatchFailed(_)
            | PatchError::CopySizeExceeded { .. } => 422,
            PatchError::TooManyOperations { .. } => 413,
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

/// Applies a JSON patch (RFC 6902) with the default copy size limit. The patch must be an
/// array of operations.
pub fn json_patch(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    json_patch_limited(original, patch, DEFAULT_COPY_SIZE_LIMIT)
}

/// Applies a JSON patch (RFC 6902), refusing more than [`MAX_JSON_PATCH_OPERATIONS`]
/// operations and `copy` operations that together duplicate more than `copy_size_limit` bytes
/// of JSON (checked before each copy runs, so a copy bomb fails before it allocates).
pub fn json_patch_limited(
    original: &Value,
    patch: &Value,
    copy_size_limit: usize,
) -> Result<Value, PatchError> {
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
    // A copy of the original: a failed patch is simply dropped, no undo log needed.
    let mut doc = original.clone();
    let mut copied = 0usize;
    for (index, op) in ops.0.iter().enumerate() {
        if let json_patch::PatchOperation::Copy(copy) = op {
            if let Some(source) = doc.pointer(copy.from.as_str()) {
                copied = copied.saturating_add(encoded_len(source));
                if copied > copy_size_limit {
                    return Err(PatchError::CopySizeExceeded {
                        accumulated: copied,
                        limit: copy_size_limit,
                    });
                }
            }
        }
        json_patch::patch_unsafe(&mut doc, std::slice::from_ref(op)).map_err(|mut e| {
            e.operation = index;
            PatchError::JsonPatchFailed(e.to_string())
        })?;
    }
    Ok(doc)
}

/// Bytes of `value` encoded as compact JSON, counted without building the text.
pub fn encoded_len(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing a `Value` to a writer that cannot fail cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

#[cfg(test)]
mod tests;
