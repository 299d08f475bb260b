//! Kubernetes API object types (re-exported k8s-openapi), the resource registry, selectors,
//! validation and defaulting. No IO.
//!
//! - [`registry`]: the resources skiff serves (kind ↔ plural ↔ group/version ↔ scope).
//! - [`defaults`]: upstream defaulting, run on every write before validation.
//! - [`strategy`]: what upstream's registry strategies do on create, update and status update
//!   (reset status, namespace finalizer, job selector, pod QoS class...).
//! - [`validation`]: upstream validation with upstream's error messages, plus typed decoding
//!   (wrong JSON types, unknown fields).
//! - [`quantity`]: resource quantities (`500m`, `1Gi`).
//! - [`patch`]: strategic merge patch, JSON merge patch, JSON patch.
//! - [`table`]: `kubectl get` tables (`meta.k8s.io/v1` `Table`).

pub use k8s_openapi;

pub mod defaults;
pub mod patch;
pub mod podcidr;
pub mod quantity;
pub mod registry;
pub mod selector;
pub mod strategy;
pub mod table;
pub mod validation;
pub mod wire_fields;

/// The Kubernetes release whose API skiff serves (reported by `/version` and `skiff version`).
pub const KUBERNETES_VERSION: &str = "v1.33.0";
/// Major part of [`KUBERNETES_VERSION`].
pub const KUBERNETES_MAJOR: &str = "1";
/// Minor part of [`KUBERNETES_VERSION`].
pub const KUBERNETES_MINOR: &str = "33";
