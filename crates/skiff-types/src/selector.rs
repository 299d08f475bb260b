//! Label and field selectors: parsing and matching with upstream Kubernetes syntax and
//! semantics (`k8s.io/apimachinery/pkg/labels` and `.../fields`).
//!
//! * [`LabelSelector`]: `a=b,c!=d,e in (x,y),f notin (z),g,!h,i>5`.
//! * [`FieldSelector`]: `metadata.name=x,spec.nodeName!=y` (`=`, `==`, `!=`, `\`-escapes).
//!
//! Both are used by the store (list and watch filtering, watcher indexing) and by the API
//! server (query parameters, `spec.selector` of workloads).

mod field;
mod label;
mod names;

pub use field::{FieldOperator, FieldRequirement, FieldSelector};
pub use label::{LabelOperator, LabelRequirement, LabelSelector};
pub use names::{label_key_errors, label_value_errors};

/// A selector that could not be parsed or built; the message names the offending part in the
/// words upstream Kubernetes uses (e.g. `unable to parse requirement: ...`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A label selector string or a `metav1.LabelSelector` that is not valid.
    #[error("{0}")]
    Label(String),
    /// A field selector string that is not valid.
    #[error("{0}")]
    Field(String),
}

#[cfg(test)]
mod tests;
