//! The root-test gate. Tests that need root, namespaces, cgroups or host tools are ordinary
//! tests: when a prerequisite is missing they print a loud skip message and return, except
//! under `SKIFF_E2E_REQUIRED=1` (set by `.ci/run`), where they fail instead, so CI never
//! passes by skipping.

/// Whether missing prerequisites must fail tests (`SKIFF_E2E_REQUIRED=1`).
pub fn e2e_required() -> bool {
    std::env::var("SKIFF_E2E_REQUIRED").is_ok_and(|v| v == "1")
}

/// Reports a missing prerequisite: a loud skip message, or a panic under
/// `SKIFF_E2E_REQUIRED=1`.
pub fn skip(reason: &str) {
    if e2e_required() {
        panic!("prerequisite missing and SKIFF_E2E_REQUIRED=1: {reason}");
    }
    eprintln!("\n*** SKIPPED: {reason} ***\n");
}

/// Whether the process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether `tool` is an executable file on `PATH`.
pub fn has_tool(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

/// What of root and `tools` is missing, in words (empty: nothing).
pub fn missing(root: bool, tools: &[&str]) -> Vec<String> {
    let mut missing = Vec::new();
    if root && !is_root() {
        missing.push("root".to_string());
    }
    for tool in tools {
        if !has_tool(tool) {
            missing.push(format!("the `{tool}` command"));
        }
    }
    missing
}

/// True when `test` may run: root and every tool in `tools` are there. Otherwise skips
/// loudly (or panics under `SKIFF_E2E_REQUIRED=1`) and returns false.
pub fn require(test: &str, root: bool, tools: &[&str]) -> bool {
    let missing = missing(root, tools);
    if missing.is_empty() {
        return true;
    }
    skip(&format!("{test} needs {}", missing.join(", ")));
    false
}

/// True when `test` runs as root; see [`require`].
pub fn require_root(test: &str) -> bool {
    require(test, true, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_on_path_are_found() {
        assert!(has_tool("sh"));
        assert!(!has_tool("skiff-no-such-tool"));
        assert_eq!(
            missing(false, &["sh", "skiff-no-such-tool"]),
            vec!["the `skiff-no-such-tool` command"]
        );
    }
}
