//! Architecture invariant: dependencies between Lamina crates go one way, bottom to top.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Layer of each Lamina crate; a crate may depend only on crates of a lower layer.
/// `lamina-types` (the shared vocabulary) is below everything and depends on no Lamina crate.
/// `lamina-image` (stored images and layers) is what the executor and the OCI interchange
/// share; `lamina-exec` and `lamina-export` are siblings on it, neither depending on the
/// other: they meet in the facade, which fills the executor's base source and remote cache
/// client with the registry client. The command-line tool (`lamina-cli`) and the Python
/// bindings (`lamina-python`) sit on the facade, as any embedder does.
const LAYERS: [(&str, u8); 11] = [
    ("lamina-types", 0),
    ("lamina-spec", 1),
    ("lamina-store", 1),
    ("lamina-layer", 1),
    ("lamina-image", 2),
    ("lamina-export", 3),
    ("lamina-exec", 3),
    ("lamina", 4),
    ("lamina-benches", 5),
    ("lamina-cli", 5),
    ("lamina-python", 5),
];

#[test]
fn lamina_crates_depend_only_downwards() {
    let output = cargo(&[
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
        "--offline",
    ]);
    let metadata: serde_json::Value = serde_json::from_str(&output).unwrap();
    let layers: BTreeMap<&str, u8> = LAYERS.into_iter().collect();

    let mut checked = 0;
    for package in metadata["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap();
        let layer = *layers.get(name).unwrap_or_else(|| {
            panic!("workspace crate {name} has no layer in LAYERS: add it with its place")
        });
        for dep in package["dependencies"].as_array().unwrap() {
            let dep_name = dep["name"].as_str().unwrap();
            if let Some(&dep_layer) = layers.get(dep_name) {
                assert!(
                    dep_layer < layer,
                    "{name} (layer {layer}) must not depend on {dep_name} (layer {dep_layer})"
                );
            }
        }
        checked += 1;
    }
    assert!(
        checked >= 3,
        "expected the workspace's crates in cargo metadata"
    );
}

/// `cargo tree` of `package` over the `edges` kinds: one `name vX.Y.Z` line per crate.
fn dependency_tree(package: &str, edges: &str) -> String {
    cargo(&[
        "tree",
        "--package",
        package,
        "--edges",
        edges,
        "--prefix",
        "none",
        "--format",
        "{p}",
        "--offline",
    ])
}

/// The crate names of a [`dependency_tree`].
fn crate_names(tree: &str) -> Vec<&str> {
    tree.lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect()
}

/// Crates only a command-line tool needs: the library an embedder compiles holds none of them,
/// direct or transitive (`lamina-cli` has them).
const CLI_ONLY_CRATES: [&str; 3] = ["clap", "indicatif", "anyhow"];

#[test]
fn the_library_compiles_no_cli_crates() {
    let tree = dependency_tree("lamina", "normal");
    let crates = crate_names(&tree);
    assert!(
        crates.contains(&"lamina-store") && crates.contains(&"rocksdb"),
        "cargo tree listed the library's dependencies: {tree}"
    );
    for cli_crate in CLI_ONLY_CRATES {
        assert!(
            !crates.contains(&cli_crate),
            "the lamina library depends on {cli_crate}, which only the CLI should need:\n{tree}"
        );
    }
}

#[test]
fn the_executor_compiles_no_registry_client() {
    // Dev edges too: the executor's own tests reach no registry either.
    let tree = dependency_tree("lamina-exec", "normal,build,dev");
    let crates = crate_names(&tree);
    assert!(
        crates.contains(&"lamina-image") && crates.contains(&"lamina-store"),
        "cargo tree listed the executor's dependencies: {tree}"
    );
    for sibling in ["lamina-export", "oci-client"] {
        assert!(
            !crates.contains(&sibling),
            "lamina-exec depends on {sibling}: bases and registry caches reach it through its \
             seams (lamina_exec::seams), filled by the facade:\n{tree}"
        );
    }
}

/// What `cargo ARGS` prints, run at the workspace root; fails the test if cargo fails.
fn cargo(args: &[&str]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = Command::new(env!("CARGO"))
        .args(args)
        .current_dir(&root)
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}
