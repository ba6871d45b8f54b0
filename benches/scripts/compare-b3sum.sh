#!/usr/bin/env bash
# Compares Lamina's local-input hashing (lamina_spec::inputs::hash_tree, via the hash-tree
# bench binary) with b3sum on the same generated tree, page cache warm.
#
# Usage: benches/scripts/compare-b3sum.sh [--runs N] [gen-tree flags...]
#   e.g. --preset small | --preset large | --preset mixed (default)
#        --small-files 2000 --large-files 2 --large-mib 32
# Prints one markdown table row per variant: median and best MB/s (MB = 10^6 bytes) over
# N runs (default 5), each timed from outside the process, start-up included.
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
runs=5
gen_args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --runs) runs="$2"; shift 2 ;;
        *) gen_args+=("$1"); shift ;;
    esac
done

# Package installs, the shared target dir and the prebuilt RocksDB library (see .ci/lib.sh).
source "$repo/.ci/lib.sh"
ensure_debian_packages b3sum
(cd "$repo" && ensure_rocksdb_lib && cargo build --quiet --release -p lamina-benches --bins)

echo "building the bench binaries (release)" >&2
bin_dir="${CARGO_TARGET_DIR:-$repo/target}/release"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
tree="$tmp/tree"
stats="$("$bin_dir/gen-tree" "$tree" "${gen_args[@]}")"
bytes="${stats##*bytes=}"
echo "tree: $stats (gen-tree ${gen_args[*]:-})" >&2

# Warm the page cache so that every variant reads from memory.
find "$tree" -type f -print0 | xargs -0 cat >/dev/null

# Runs "$@" $runs times; prints "median best" MB/s.
measure() {
    local speeds=() start end
    for ((i = 0; i < runs; i++)); do
        start=$EPOCHREALTIME
        "$@" >/dev/null
        end=$EPOCHREALTIME
        speeds+=("$(awk -v b="$bytes" -v s="$start" -v e="$end" 'BEGIN { printf "%.1f", b / (e - s) / 1e6 }')")
    done
    printf '%s\n' "${speeds[@]}" | sort -n | awk '{ v[NR] = $1 } END { printf "%s %s", v[int((NR + 1) / 2)], v[NR] }'
}

b3sum_all() { find "$tree" -type f -print0 | xargs -0 b3sum "$@"; }
b3sum_two_procs() { find "$tree" -type f -print0 | xargs -0 -P 2 -n 256 b3sum --num-threads 1; }
lamina() { "$bin_dir/hash-tree" "$tree"; }
lamina_one_thread() { RAYON_NUM_THREADS=1 "$bin_dir/hash-tree" "$tree"; }

echo "| variant | median MB/s | best MB/s |"
echo "|---|---|---|"
row() {
    local name="$1"; shift
    local result
    result="$(measure "$@")"
    echo "| $name | ${result% *} | ${result#* } |"
}
row "b3sum (default threads)" b3sum_all
row "b3sum --num-threads 1" b3sum_all --num-threads 1
row "b3sum --num-threads 1, 2 processes (xargs -P 2)" b3sum_two_procs
row "lamina hash-tree (rayon, all cores)" lamina
row "lamina hash-tree (RAYON_NUM_THREADS=1)" lamina_one_thread
