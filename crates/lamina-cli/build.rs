//! Links the C++ standard library (RocksDB's) statically into the `lamina` binary. With the
//! shared library, the dynamic loader loaded and relocated it and looked up ~900 of its
//! symbols at every start: ~1 ms of each command, an eighth of a warm rebuild (issue 13).
//!
//! `librocksdb-sys` asks the linker for `-lstdc++`, and the linker takes the first
//! `libstdc++.so` or `libstdc++.a` it meets on its search path. A directory holding only the
//! static archive, searched before the compiler's own directories, makes that one static.
//! Where the toolchain has no static archive (or another C++ library is asked for through
//! `CXXSTDLIB`), the binary links the shared library as before, with a warning.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CXX");
    println!("cargo:rerun-if-env-changed=CXXSTDLIB");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    if std::env::var("CXXSTDLIB").is_ok_and(|library| library != "stdc++") {
        return;
    }
    let compiler = std::env::var("CXX").unwrap_or_else(|_| "c++".to_owned());
    let Some(archive) = static_archive(&compiler) else {
        println!(
            "cargo:warning=no libstdc++.a beside `{compiler}`: lamina links the shared C++ \
             library and starts ~1 ms slower (install the compiler's libstdc++ development package)"
        );
        return;
    };
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let dir = out_dir.join("static-cxx");
    std::fs::create_dir_all(&dir).expect("create the static C++ library directory");
    let link = dir.join("libstdc++.a");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&archive, &link).expect("link the static C++ library");
    println!("cargo:rustc-link-search=native={}", dir.display());
}

/// The compiler's `libstdc++.a`, if it has one (`-print-file-name` answers with the bare
/// name when it finds none).
fn static_archive(compiler: &str) -> Option<PathBuf> {
    let output = Command::new(compiler)
        .arg("-print-file-name=libstdc++.a")
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(output.stdout).ok()?.trim());
    (output.status.success() && path.is_absolute() && Path::new(&path).is_file()).then_some(path)
}
