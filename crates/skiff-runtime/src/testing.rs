//! Helpers shared by this crate's tests (unit and integration). Not part of the API.

/// Whether tests needing root must fail instead of skipping (`SKIFF_E2E_REQUIRED=1`).
pub fn e2e_required() -> bool {
    std::env::var("SKIFF_E2E_REQUIRED").map(|v| v == "1").unwrap_or(false)
}

/// Call when a root-only test cannot run: prints a loud skip message, or panics under
/// `SKIFF_E2E_REQUIRED=1`.
pub fn skip_unless_root(what: &str) {
    if e2e_required() {
        panic!("SKIFF_E2E_REQUIRED=1 but this test cannot run: {what}");
    }
    eprintln!("\n!!!!! SKIPPED (not root): {what} !!!!!\n");
}

/// True when the caller is root; otherwise reports the skip (see [`skip_unless_root`]).
pub fn require_root(what: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    skip_unless_root(what);
    false
}
