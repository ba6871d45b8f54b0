# Shared set-up for the README's commands: a persistent target directory outside the clone
# (RocksDB's C++ build is slow; only the first build on a machine should pay for it) and the
# Debian packages the commands need, installed only when missing.

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lamina/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
mkdir -p "$CARGO_TARGET_DIR"

# ensure_debian_packages PACKAGE...: installs the Debian packages that are not installed yet.
ensure_debian_packages() {
    local missing=() package
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Build needs: bindgen (RocksDB bindings) needs libclang; RocksDB's C++ needs a C++ compiler.
BUILD_PACKAGES=(libclang-dev g++ make)

# ensure_rocksdb_lib: RocksDB's C++ is compiled once per machine into a static library kept
# beside the target directory, and every cargo command links it (ROCKSDB_LIB_DIR). Left to
# itself, librocksdb-sys recompiles the C++ (~25 min on 2 cores) for each profile and each
# change of its build dependencies' features, e.g. when a new proc-macro crate joins the graph.
ensure_rocksdb_lib() {
    if [ -n "${ROCKSDB_LIB_DIR:-}" ]; then
        return 0
    fi
    local version dir built
    version="$(awk '$0 == "name = \"librocksdb-sys\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
    dir="$HOME/.cache/lamina/rocksdb-$version"
    if [ ! -f "$dir/librocksdb.a" ]; then
        step "building RocksDB $version once for this machine (~25 min on 2 cores)"
        cargo build --locked -p librocksdb-sys
        built="$(ls -t "$CARGO_TARGET_DIR"/debug/build/librocksdb-sys-*/out/librocksdb.a | head -n 1)"
        mkdir -p "$dir"
        # Debug info is most of the archive's 1.4 GB and slows every link.
        strip --strip-debug -o "$dir/librocksdb.a.tmp" "$built"
        mv "$dir/librocksdb.a.tmp" "$dir/librocksdb.a"
    fi
    export ROCKSDB_LIB_DIR="$dir" ROCKSDB_STATIC=1
}

# ensure_disk_space GIB: says how much room the target directory and the temporary
# directory have, and makes room when the target directory's file system has less than GIB
# free. A full disk fails a run far from its cause (a test's "No space left on device"), and
# the persistent target directory is what grows: cargo keeps the products of every earlier
# dependency version. Its products are removed then (RocksDB's library, kept beside it,
# stays), so the next build recompiles the Rust crates only.
ensure_disk_space() {
    local need_kib=$(($1 * 1024 * 1024)) avail_kib
    avail_kib="$(df --output=avail -k "$CARGO_TARGET_DIR" | tail -n 1)"
    if [ "$avail_kib" -lt "$need_kib" ] && [ -n "$(ls -A "$CARGO_TARGET_DIR")" ]; then
        echo "only $((avail_kib / 1024 / 1024)) GiB free beside $CARGO_TARGET_DIR ($(du -sh "$CARGO_TARGET_DIR" | cut -f1) in it): removing its build products"
        cargo clean --quiet
        mkdir -p "$CARGO_TARGET_DIR"
    fi
    df -h "$CARGO_TARGET_DIR" "${TMPDIR:-/tmp}"
    avail_kib="$(df --output=avail -k "$CARGO_TARGET_DIR" | tail -n 1)"
    if [ "$avail_kib" -lt "$need_kib" ]; then
        echo "warning: $((avail_kib / 1024 / 1024)) GiB free beside $CARGO_TARGET_DIR; a run from a cold target directory needs about $1 GiB: free some space or tests may fail with 'No space left on device'" >&2
    fi
}

# ensure_cargo_tool BINARY CRATE: installs CRATE from the Rust crate registry when missing.
ensure_cargo_tool() {
    command -v "$1" >/dev/null 2>&1 && return 0
    echo "installing $2"
    cargo install --locked "$2"
}

step() { printf '\n==> %s\n' "$*"; }
