//! Kubernetes API object types (re-exported k8s-openapi), the resource registry, selectors,
//! validation and defaulting. No IO.

pub use k8s_openapi;

pub mod selector;

/// The Kubernetes release whose API skiff serves (reported by `/version` and `skiff version`).
pub const KUBERNETES_VERSION: &str = "v1.33.0";
/// Major part of [`KUBERNETES_VERSION`].
pub const KUBERNETES_MAJOR: &str = "1";
/// Minor part of [`KUBERNETES_VERSION`].
pub const KUBERNETES_MINOR: &str = "33";
pub mod podcidr;
