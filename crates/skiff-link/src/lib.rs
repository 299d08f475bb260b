//! The node-to-server protocol: message types, framing, the IO-free session state machine, and
//! the quinn driver.
//!
//! - [`proto`]: typed messages, length-delimited framing with size limits, version constants.
//! - [`session`]: one state machine per side ([`session::AgentSession`],
//!   [`session::ServerSession`]), driven with bytes and time, producing bytes, events and
//!   deadlines; no IO, so every behaviour is unit-tested with a simulated clock.
//! - [`quic`]: the quinn driver: the server endpoint, the agent's link client, joining,
//!   server-initiated streams (logs), reconnects and migration.
//! - [`hollow`]: hollow nodes, many real sessions from one process (the load tool).

pub mod hollow;
pub mod proto;
pub mod quic;
pub mod session;
