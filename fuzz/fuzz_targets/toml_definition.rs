//! TOML definitions: parsing never panics, and every definition that parses renders to
//! Dockerfile text that reads back as the same instructions.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use lamina_spec::Dockerfile;
use lamina_spec::toml_def::parse_definition;
use libfuzzer_sys::fuzz_target;

/// An empty folder for relative paths to resolve against, so runs do not depend on the
/// folder the fuzzer was started in.
fn base_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join("lamina-fuzz-toml-definition");
        std::fs::create_dir_all(&dir).expect("create the fuzz base folder");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(image) = parse_definition(text, Path::new("fuzz.toml"), base_dir()) else {
        return;
    };
    let rendered = image.dockerfile();
    let back = Dockerfile::parse(&rendered)
        .unwrap_or_else(|error| panic!("rendered definition does not parse: {error}\n{rendered}"));
    assert_eq!(
        &back,
        image.definition(),
        "round trip changed the definition:\n{rendered}"
    );
});
