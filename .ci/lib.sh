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
# directory have, and makes room when a run would not fit: a run from a cold target
# directory takes about GIB in all (build products and the tests' stores). A full disk fails
# a run far from its cause (a test's "No space left on device"), and the persistent target
# directory is what grows: cargo keeps the products of every earlier dependency version.
# When it holds more than GIB already and the disk is short, its products are removed
# (RocksDB's library, kept beside it, stays; the next build recompiles the Rust crates
# only); a directory of a cold run's size is never removed, so runs do not keep going cold.
# The directory must not be in use by another cargo at the time (CI runs alone).
ensure_disk_space() {
    local gib=$((1024 * 1024)) need_kib=$(($1 * 1024 * 1024)) avail_kib target_kib
    avail_kib="$(df --output=avail -k "$CARGO_TARGET_DIR" | tail -n 1)"
    target_kib="$(du -sk "$CARGO_TARGET_DIR" | cut -f1)"
    if [ $((avail_kib + target_kib)) -lt "$need_kib" ]; then
        echo "warning: $((avail_kib / gib)) GiB free beside $CARGO_TARGET_DIR ($((target_kib / gib)) GiB in it); a run needs about $1 GiB in all: free some space or tests may fail with 'No space left on device'" >&2
    elif [ "$target_kib" -gt "$need_kib" ] && [ "$avail_kib" -lt $((need_kib / 4)) ]; then
        echo "only $((avail_kib / gib)) GiB free beside $CARGO_TARGET_DIR, which holds $((target_kib / gib)) GiB: removing its build products"
        cargo clean --quiet
        mkdir -p "$CARGO_TARGET_DIR"
    fi
    df -h "$CARGO_TARGET_DIR" "${TMPDIR:-/tmp}"
}

# ensure_cargo_tool BINARY CRATE: installs CRATE from the Rust crate registry when missing.
ensure_cargo_tool() {
    command -v "$1" >/dev/null 2>&1 && return 0
    echo "installing $2"
    cargo install --locked "$2"
}

step() { printf '\n==> %s\n' "$*"; }
