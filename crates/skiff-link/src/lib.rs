//! The node-to-server link: the quinn driver around the IO-free protocol core.
//!
//! - [`proto`] and [`session`]: re-exported from `skiff-link-proto` (typed messages, framing,
//!   the per-side session state machines; no IO), so users name one crate.
//! - [`quic`]: the quinn driver: the server endpoint, the agent's link client, joining,
//!   server-initiated streams (logs, exec, images), reconnects and migration.
//! - [`hollow`]: hollow nodes, many real sessions from one process (the load tool).

pub mod hollow;
pub mod quic;

pub use skiff_link_proto::{proto, session};
