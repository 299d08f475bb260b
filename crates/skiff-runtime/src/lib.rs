//! Pods on libcontainer: sandbox namespaces, OCI runtime specs from PodSpecs, cgroups, lifecycle,
//! logs, exec.

pub mod error;
mod fsutil;
pub mod inputs;
pub mod quantity;
pub mod spec;

pub use error::{Result, RuntimeError};
pub mod cgroups;
pub mod exits;
mod launcher;
#[doc(hidden)]
pub mod testing;
pub mod dns;
mod rootfs;
mod sandbox;
mod volumes;
pub mod logs;
