//! The node link's protocol core, without IO: what `quinn-proto` is to `quinn`, this crate is
//! to `skiff-link`. It depends on no async runtime, TLS stack or socket, so every behaviour of
//! the protocol is unit-tested with byte slices and a simulated clock.
//!
//! - [`proto`]: typed messages, length-delimited framing with size limits, version constants,
//!   the exec and image hand-over stream formats.
//! - [`session`]: one state machine per side ([`session::AgentSession`],
//!   [`session::ServerSession`]), driven with bytes and time, producing bytes, events and
//!   deadlines.

pub mod proto;
pub mod session;
