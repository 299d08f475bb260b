//! The node agent: receives the pods bound to its node over the link, runs them with the
//! runtime (images per pull policy, pod network through skiff-net, probes), reports pod and
//! node status, serves logs and exec, and keeps everything it needs in a local database so the
//! node carries on — and brings its pods back after a restart or reboot — while the server
//! cannot be reached.
//!
//! - [`agent`]: the main loop ([`run`]).
//! - [`pods`]: one worker per pod (create, update, graceful delete with confirmation).
//! - [`status`]: pod status as upstream reports it; [`probes`]: liveness/readiness/startup.
//! - [`images`]: pull policy and back-off; [`inputs`]: images, config maps, secrets.
//! - [`image_transfer`]: image hand-over over the link (fetching from the server).
//! - [`network`]: the runtime's sandbox network over skiff-net; [`node`]: the Node object.
//! - [`state`]: the local redb database; [`streams`]: logs, exec and port-forward for the
//!   server (`port_forward`: connecting inside a pod's network namespace).
//! - [`usage`]: resource-usage reports for the metrics API; [`node_http`]: the node's own
//!   endpoints (`/healthz`, `/pods`, `/stats/summary`, `/metrics/resource`) for `nodes/proxy`.
//! - `api_tunnel`: the `kubernetes` Service through the link for nodes without a direct
//!   path to the API.

pub mod agent;
mod api_tunnel;
mod config;
mod error;
pub mod image_transfer;
pub mod images;
pub mod inputs;
pub mod network;
pub mod node;
pub mod node_http;
mod persist;
pub mod pods;
mod policies;
mod port_forward;
pub mod probes;
mod services;
pub mod state;
pub mod status;
pub mod streams;
pub mod usage;

pub use agent::{cleanup, run, AgentPaths, CleanupSummary};
pub use config::{
    parse_labels, parse_taints, valid_node_name, AgentConfig, AgentTimings, ApiViaLink,
    SystemReserved, TaintSpec, CONTROL_PLANE_LABEL,
};
pub use error::AgentError;
