//! Helpers shared by the controllers.

pub mod expectations;
pub mod hash;
pub mod meta;
pub mod pods;
