//! Helpers shared by the controllers.

pub mod duration;
pub mod expectations;
pub mod hash;
pub mod meta;
pub mod owners;
pub mod pods;
