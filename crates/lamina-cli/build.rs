//! Links the C++ standard library that RocksDB uses (libstdc++) statically into the `lamina`
//! binary. With the shared library, the dynamic loader loaded and relocated it and looked up
//! ~900 of its symbols at every start: ~1 ms of each command, an eighth of a warm rebuild
//! (issue 13).
//!
//! `librocksdb-sys` asks the linker for `-lstdc++`, and the linker takes the first
//! `libstdc++.so` or `libstdc++.a` it meets on its search path. A directory holding only the
//! static archive, searched before the compiler's own directories, makes that one static.
//! The compiler is the one `cc` (and so `librocksdb-sys`) picks for the target. Where it has
//! no static archive (or another C++ library is asked for through `CXXSTDLIB`), the binary
//! links the shared library as before, with a build warning; the CLI test
//! `the_binary_does_not_load_the_shared_cpp_library` fails there, since start time is a
//! property CI checks.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CXXSTDLIB");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    if std::env::var("CXXSTDLIB").is_ok_and(|library| library != "stdc++") {
        return;
    }
    let compiler = cc::Build::new().cpp(true).get_compiler();
    let Some(archive) = static_archive(&compiler) else {
        warn(&format!(
            "no libstdc++.a beside {}: lamina links the shared C++ library and starts ~1 ms \
             slower (install the compiler's static libstdc++)",
            compiler.path().display()
        ));
        return;
    };
    // A compiler upgrade moves or removes the archive: link again with what is there then.
    println!("cargo:rerun-if-changed={}", archive.display());
    let dir =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("static-cxx");
    let link = dir.join("libstdc++.a");
    let _ = std::fs::remove_file(&link);
    let linked =
        std::fs::create_dir_all(&dir).and_then(|()| std::os::unix::fs::symlink(&archive, &link));
    match linked {
        Ok(()) => println!("cargo:rustc-link-search=native={}", dir.display()),
        Err(err) => warn(&format!(
            "cannot link {} into {}: {err}; lamina links the shared C++ library",
            archive.display(),
            dir.display()
        )),
    }
}

/// The compiler's `libstdc++.a` for the target, if it has one (`-print-file-name` answers
/// with the bare name when it finds none).
fn static_archive(compiler: &cc::Tool) -> Option<PathBuf> {
    let output = compiler
        .to_command()
        .arg("-print-file-name=libstdc++.a")
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(output.stdout).ok()?.trim());
    (output.status.success() && path.is_absolute() && path.is_file()).then_some(path)
}

fn warn(message: &str) {
    println!("cargo:warning={message}");
}
