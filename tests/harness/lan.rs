//! The test network: a bridge in the host namespace (the "LAN") and one network namespace per
//! node on it — `skiff_testkit::netns`, shared with every crate's tests.

pub use skiff_testkit::cmd::run;
pub use skiff_testkit::netns::{unique_id, Lan, NodeNs};
