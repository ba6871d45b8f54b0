//! Architecture invariant: dependencies between Lamina crates go one way, bottom to top.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Layer of each Lamina crate; a crate may depend only on crates of a lower layer.
/// `lamina-types` (the shared vocabulary) is below everything and depends on no Lamina crate.
/// `lamina-exec` pulls bases through `lamina-export`'s registry client, hence export < exec.
/// The Python bindings (`lamina-python`) sit on the facade, as any embedder does.
const LAYERS: [(&str, u8); 9] = [
    ("lamina-types", 0),
    ("lamina-spec", 1),
    ("lamina-store", 1),
    ("lamina-layer", 1),
    ("lamina-export", 2),
    ("lamina-exec", 3),
    ("lamina", 4),
    ("lamina-benches", 5),
    ("lamina-python", 5),
];

#[test]
fn lamina_crates_depend_only_downwards() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(&root)
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
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
