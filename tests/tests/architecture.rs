//! ARCHITECTURE.md's code map must name exactly the crates under `crates/`.

use std::collections::BTreeSet;
use std::path::Path;

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
}

/// Crate names from the `### name` headings of the "Code map" section.
fn code_map_crates(architecture: &str) -> BTreeSet<String> {
    let section = architecture
        .split("\n## ")
        .find(|s| s.starts_with("Code map"))
        .expect("ARCHITECTURE.md has a '## Code map' section");
    section
        .lines()
        .filter_map(|line| line.strip_prefix("### "))
        .map(|name| name.trim().to_string())
        .collect()
}

fn crates_on_disk() -> BTreeSet<String> {
    std::fs::read_dir(workspace_root().join("crates"))
        .expect("crates/ exists")
        .map(|entry| entry.expect("readable crates/ entry"))
        .filter(|entry| entry.path().join("Cargo.toml").exists())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn code_map_and_crates_agree() {
    let text = std::fs::read_to_string(workspace_root().join("ARCHITECTURE.md"))
        .expect("ARCHITECTURE.md is readable");
    let mapped = code_map_crates(&text);
    let on_disk = crates_on_disk();
    let unmapped: Vec<_> = on_disk.difference(&mapped).collect();
    let missing: Vec<_> = mapped.difference(&on_disk).collect();
    assert!(
        unmapped.is_empty() && missing.is_empty(),
        "ARCHITECTURE.md code map and crates/ disagree: crates without a paragraph: {unmapped:?}; \
         paragraphs without a crate: {missing:?}"
    );
}

#[test]
fn code_map_parser_sees_headings() {
    let sample = "# x\n## Code map\n### a\ntext\n### b\n## Invariants\n### c\n";
    let names: Vec<_> = code_map_crates(sample).into_iter().collect();
    assert_eq!(names, vec!["a", "b"]);
}
