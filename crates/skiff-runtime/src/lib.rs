//! Pods on libcontainer: sandbox namespaces, OCI runtime specs from PodSpecs, cgroups, lifecycle,
//! logs, exec.
//!
//! The agent-facing API is [`Runtime`] (module `runtime`): `run_pod`, `stop_pod`, `remove_pod`,
//! `pod_status`, `subscribe`, `logs`, `exec`, `adopt_existing`. Everything else is its machinery:
//!
//! - `spec` builds OCI runtime specs from PodSpecs and image configs;
//! - `sandbox` holds a pod's namespaces without a pause process;
//! - `launcher` runs libcontainer in short-lived single-threaded launcher processes;
//! - `exits` learns exit codes of containers that are not our children (proc connector + pidfd);
//! - `logs` pumps container output from FIFOs into CRI log files and reads them back;
//! - `cgroups`, `volumes`, `rootfs`, `dns` do what their names say;
//! - `worker` runs each pod's lifecycle; `state` persists it for re-adoption.

pub mod cgroups;
mod config;
pub mod dns;
pub mod error;
mod exec;
pub mod exits;
mod fsutil;
pub mod host;
pub mod inputs;
mod instance;
mod launcher;
pub mod logs;
pub mod quantity;
mod rootfs;
mod runtime;
mod sandbox;
mod seccomp_filter;
pub mod spec;
mod state;
mod status;
#[doc(hidden)]
pub mod testing;
mod timing;
mod volumes;
mod worker;

pub use config::{BackoffConfig, LogConfig, RuntimeConfig};
pub use error::{Result, RuntimeError};
pub use exec::{ExecOptions, ExecProcess};
pub use exits::ExitStatus;
pub use inputs::{ContainerImage, NodeFacts, PodInputs};
pub use logs::pump::Rotation;
pub use logs::reader::LogOptions;
pub use logs::{LogRecord, Stream};
pub use runtime::{BoxFuture, LogStream, LoopbackOnly, PodEvent, Runtime, SandboxNetwork};
