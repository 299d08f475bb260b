//! Shared helpers for skiff's workspace-level tests (see the `tests/` folder of this package).
