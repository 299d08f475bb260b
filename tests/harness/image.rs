//! Test images built from the `images/` recipes once per build tree and shared by tests
//! (`skiff_testkit::image`).

pub use skiff_testkit::image::{busybox, nginx, python};
