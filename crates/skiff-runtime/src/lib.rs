//! Pods on libcontainer: sandbox namespaces, OCI runtime specs from PodSpecs, cgroups, lifecycle,
//! logs, exec.
//!
//! The agent-facing API is [`Runtime`] (module `runtime`): `run_pod`, `stop_pod`, `remove_pod`,
//! `pod_status`, `subscribe`, `logs`, `exec`, `adopt_existing`, one module per operation
//! (`pod_create`, `pod_stop`, `pod_adopt`, `pod_logs`, `pod_teardown`, checks in `pod_checks`),
//! all working on the shared state in `context`, which imports none of them. Everything else is
//! the machinery:
//!
//! - `spec` builds OCI runtime specs from PodSpecs and image configs;
//! - `sandbox` holds a pod's namespaces without a pause process;
//! - `launcher` runs libcontainer in short-lived single-threaded launcher processes;
//! - `exits` learns exit codes of containers that are not our children (proc connector + pidfd);
//! - `logs` pumps container output from FIFOs into CRI log files and reads them back;
//! - `cgroups`, `volumes`, `rootfs`, `dns` do what their names say; `subpath` binds subPaths
//!   without a check-then-mount race;
//! - `worker` runs each pod's lifecycle; `state` persists it for re-adoption.

pub mod cgroups;
mod config;
mod context;
pub mod dns;
pub mod durations;
pub mod error;
mod exec;
pub mod exits;
mod fsutil;
pub mod host;
pub mod inputs;
mod instance;
mod launcher;
pub mod logs;
mod pod_adopt;
mod pod_checks;
mod pod_create;
mod pod_logs;
mod pod_stop;
mod pod_teardown;
pub mod quantity;
mod rootfs;
mod runtime;
mod sandbox;
mod seccomp_filter;
pub mod spec;
mod state;
mod status;
mod subpath;
pub mod supervise;
#[doc(hidden)]
pub mod testing;
mod timing;
pub mod usage;
mod volumes;
mod worker;
mod workload;

pub use config::{BackoffConfig, LogConfig, RuntimeConfig};
pub use context::{BoxFuture, LoopbackOnly, PodEvent, SandboxNetwork};
pub use error::{Result, RuntimeError};
pub use exec::{ExecOptions, ExecProcess};
pub use exits::ExitStatus;
pub use inputs::{ContainerImage, NodeFacts, PodInputs};
pub use logs::pump::Rotation;
pub use logs::reader::LogOptions;
pub use logs::{LogRecord, Stream};
pub use pod_logs::LogStream;
pub use runtime::Runtime;
