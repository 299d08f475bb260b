//! ARCHITECTURE.md's code map must name exactly the crates under `crates/`, and the
//! dependency graph (`cargo metadata`) must keep the invariants of its "Invariants" section,
//! stated once in [`INVARIANTS`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

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

/// The crates of the control plane.
const SERVER_HALF: &[&str] = &[
    "skiff-store",
    "skiff-apiserver",
    "skiff-controllers",
    "skiff-server",
];
/// The crates of a node.
const NODE_HALF: &[&str] = &[
    "skiff-agent",
    "skiff-runtime",
    "skiff-net",
    "skiff-image",
    "skiff-dns",
];
/// Crates that do IO: an async runtime, sockets, TLS, files, system calls.
const IO_CRATES: &[&str] = &[
    "tokio",
    "tokio-rustls",
    "tokio-util",
    "quinn",
    "rustls",
    "socket2",
    "mio",
    "redb",
    "nix",
    "libc",
    "rustix",
];

/// One stated invariant of the dependency graph.
enum Invariant {
    /// Only `allowed` may name `dependency` (normal and build dependencies; dev-dependencies
    /// too unless `dev_excepted`).
    OnlyIn {
        dependency: &'static str,
        allowed: &'static [&'static str],
        dev_excepted: bool,
    },
    /// None of `crates` reaches any of `forbidden`, directly or through workspace crates
    /// (normal and build dependencies).
    Never {
        crates: &'static [&'static str],
        forbidden: &'static [&'static str],
    },
    /// `dependency` is only ever a dev-dependency, except of `test_packages` (test code).
    DevOnly {
        dependency: &'static str,
        test_packages: &'static [&'static str],
    },
}

/// The invariants, as ARCHITECTURE.md's "Invariants" section states them.
const INVARIANTS: &[(&str, Invariant)] = &[
    (
        "only skiff-link knows quinn",
        Invariant::OnlyIn {
            dependency: "quinn",
            allowed: &["skiff-link"],
            dev_excepted: false,
        },
    ),
    (
        "server-side crates never depend on node-side crates",
        Invariant::Never {
            crates: SERVER_HALF,
            forbidden: NODE_HALF,
        },
    ),
    (
        "node-side crates never depend on server-side crates",
        Invariant::Never {
            crates: NODE_HALF,
            forbidden: SERVER_HALF,
        },
    ),
    (
        "anyhow only in the binary",
        Invariant::OnlyIn {
            dependency: "anyhow",
            allowed: &["skiff"],
            dev_excepted: true,
        },
    ),
    (
        "skiff-types and skiff-link-proto do no IO",
        Invariant::Never {
            crates: &["skiff-types", "skiff-link-proto"],
            forbidden: IO_CRATES,
        },
    ),
    (
        "the test toolkit is a dev-dependency only",
        Invariant::DevOnly {
            dependency: "skiff-testkit",
            test_packages: &["skiff-tests"],
        },
    ),
];

/// A package's dependencies by kind: `normal` (with build) and `dev`.
#[derive(Default)]
struct Deps {
    normal: BTreeSet<String>,
    dev: BTreeSet<String>,
}

/// The workspace packages and their direct dependencies, from `cargo metadata` JSON.
fn graph(metadata: &Value) -> BTreeMap<String, Deps> {
    let mut graph = BTreeMap::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let mut deps = Deps::default();
        for dep in package["dependencies"].as_array().into_iter().flatten() {
            let name = dep["name"].as_str().unwrap_or_default().to_string();
            match dep["kind"].as_str() {
                Some("dev") => deps.dev.insert(name),
                _ => deps.normal.insert(name),
            };
        }
        let name = package["name"].as_str().unwrap_or_default().to_string();
        graph.insert(name, deps);
    }
    graph
}

/// Everything `krate` reaches through normal dependencies, following workspace crates.
fn reach(graph: &BTreeMap<String, Deps>, krate: &str) -> BTreeMap<String, String> {
    // dependency -> the workspace crate that names it
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = vec![krate.to_string()];
    let mut visited = BTreeSet::new();
    while let Some(current) = queue.pop() {
        if !visited.insert(current.clone()) {
            continue;
        }
        let Some(deps) = graph.get(&current) else {
            continue;
        };
        for dep in &deps.normal {
            seen.entry(dep.clone()).or_insert_with(|| current.clone());
            if graph.contains_key(dep) {
                queue.push(dep.clone());
            }
        }
    }
    seen
}

/// The broken invariants, one line each naming the invariant, the crate and the dependency.
fn violations(metadata: &Value) -> Vec<String> {
    let graph = graph(metadata);
    let mut found = Vec::new();
    for (what, invariant) in INVARIANTS {
        match invariant {
            Invariant::OnlyIn {
                dependency,
                allowed,
                dev_excepted,
            } => {
                for (krate, deps) in &graph {
                    let names = deps.normal.contains(*dependency)
                        || (!dev_excepted && deps.dev.contains(*dependency));
                    if names && !allowed.contains(&krate.as_str()) {
                        found.push(format!("{what}: {krate} depends on {dependency}"));
                    }
                }
            }
            Invariant::Never { crates, forbidden } => {
                for krate in crates.iter().filter(|k| graph.contains_key(**k)) {
                    for (dependency, via) in reach(&graph, krate) {
                        if forbidden.contains(&dependency.as_str()) {
                            let through = if via == *krate {
                                String::new()
                            } else {
                                format!(" (through {via})")
                            };
                            found.push(format!("{what}: {krate} depends on {dependency}{through}"));
                        }
                    }
                }
            }
            Invariant::DevOnly {
                dependency,
                test_packages,
            } => {
                for (krate, deps) in &graph {
                    if deps.normal.contains(*dependency) && !test_packages.contains(&krate.as_str())
                    {
                        found.push(format!(
                            "{what}: {krate} has {dependency} as a normal dependency"
                        ));
                    }
                }
            }
        }
    }
    found
}

fn cargo_metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(&cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .unwrap_or_else(|e| panic!("run {cargo} metadata: {e}"));
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

#[test]
fn dependency_graph_keeps_the_invariants() {
    let metadata = cargo_metadata();
    let graph = graph(&metadata);
    for krate in SERVER_HALF.iter().chain(NODE_HALF).chain(&["skiff-types"]) {
        assert!(
            graph.contains_key(*krate),
            "{krate} is not a workspace package: update the invariants"
        );
    }
    let broken = violations(&metadata);
    assert!(
        broken.is_empty(),
        "architecture invariants broken:\n{}",
        broken.join("\n")
    );
}

/// A metadata document with the given packages (name, normal deps, dev deps).
fn synthetic(packages: &[(&str, &[&str], &[&str])]) -> Value {
    let packages: Vec<Value> = packages
        .iter()
        .map(|(name, normal, dev)| {
            let deps: Vec<Value> = normal
                .iter()
                .map(|d| serde_json::json!({"name": d, "kind": null}))
                .chain(
                    dev.iter()
                        .map(|d| serde_json::json!({"name": d, "kind": "dev"})),
                )
                .collect();
            serde_json::json!({"name": name, "dependencies": deps})
        })
        .collect();
    serde_json::json!({ "packages": packages })
}

#[test]
fn the_check_names_crate_and_dependency() {
    let clean: &[(&str, &[&str], &[&str])] = &[
        ("skiff-link", &["quinn", "skiff-link-proto"], &[]),
        ("skiff-link-proto", &["serde", "bytes"], &["rand"]),
        (
            "skiff-agent",
            &["skiff-link", "skiff-runtime"],
            &["skiff-testkit"],
        ),
        ("skiff-runtime", &["nix", "libc"], &[]),
        (
            "skiff-server",
            &["skiff-link", "skiff-apiserver"],
            &["anyhow"],
        ),
        ("skiff-apiserver", &["skiff-types"], &[]),
        ("skiff-types", &["serde_json"], &[]),
        ("skiff", &["anyhow", "skiff-server", "skiff-agent"], &[]),
        ("skiff-tests", &["skiff-testkit", "skiff-apiserver"], &[]),
    ];
    assert_eq!(violations(&synthetic(clean)), Vec::<String>::new());

    let mut quinn_in_agent = clean.to_vec();
    quinn_in_agent[2] = ("skiff-agent", &["skiff-link", "quinn"], &[]);
    assert_eq!(
        violations(&synthetic(&quinn_in_agent)),
        vec!["only skiff-link knows quinn: skiff-agent depends on quinn"]
    );

    let mut io_in_proto = clean.to_vec();
    io_in_proto[1] = ("skiff-link-proto", &["serde", "tokio"], &[]);
    assert_eq!(
        violations(&synthetic(&io_in_proto)),
        vec!["skiff-types and skiff-link-proto do no IO: skiff-link-proto depends on tokio"]
    );

    // Through a workspace crate: the server reaching the runtime via the apiserver.
    let mut crossed = clean.to_vec();
    crossed[5] = ("skiff-apiserver", &["skiff-types", "skiff-runtime"], &[]);
    let broken = violations(&synthetic(&crossed));
    assert!(
        broken.contains(
            &"server-side crates never depend on node-side crates: skiff-apiserver depends on \
              skiff-runtime"
                .to_string()
        ) && broken.contains(
            &"server-side crates never depend on node-side crates: skiff-server depends on \
              skiff-runtime (through skiff-apiserver)"
                .to_string()
        ),
        "{broken:?}"
    );

    let mut testkit_in_production = clean.to_vec();
    testkit_in_production[3] = ("skiff-runtime", &["nix", "skiff-testkit"], &[]);
    assert_eq!(
        violations(&synthetic(&testkit_in_production)),
        vec![
            "the test toolkit is a dev-dependency only: skiff-runtime has skiff-testkit as a \
             normal dependency"
        ]
    );

    let mut anyhow_in_library = clean.to_vec();
    anyhow_in_library[6] = ("skiff-types", &["anyhow"], &[]);
    assert_eq!(
        violations(&synthetic(&anyhow_in_library)),
        vec!["anyhow only in the binary: skiff-types depends on anyhow"]
    );
}

#[test]
fn architecture_md_states_every_invariant() {
    let text = std::fs::read_to_string(workspace_root().join("ARCHITECTURE.md"))
        .expect("ARCHITECTURE.md is readable");
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with("Invariants"))
        .expect("ARCHITECTURE.md has an '## Invariants' section");
    for (what, _) in INVARIANTS {
        assert!(
            section.contains(what),
            "ARCHITECTURE.md's Invariants section does not state \"{what}\""
        );
    }
}
