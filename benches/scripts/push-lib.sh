# Shared set-up of the push benchmarks (sourced; `repo` must be set): builds gen-tree and
# lamina (or takes $LAMINA), makes $tmp, stops every process in $pids at exit, and starts
# loopback registries with their own storage.
echo "building gen-tree and lamina (dev profile)" >&2
source "$repo/.ci/lib.sh"
(cd "$repo" && ensure_rocksdb_lib && cargo build --quiet -p lamina-benches --bin gen-tree)
bin_dir="${CARGO_TARGET_DIR:-$repo/target}/debug"
if [[ -z "${LAMINA:-}" ]]; then
    (cd "$repo" && ensure_rocksdb_lib && cargo test --quiet -p lamina-cli --no-run)
    LAMINA="$bin_dir/lamina"
fi
tmp="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

source "$repo/benches/scripts/registry-lib.sh"
