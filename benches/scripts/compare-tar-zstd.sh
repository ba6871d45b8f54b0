#!/usr/bin/env bash
# Compares Lamina's one-pass layer writer (tar + sha256 and blake3 of the tar + zstd + sha256
# of the blob, via the write-layer bench binary) with GNU tar piped into zstd, page cache warm.
#
# Usage: benches/scripts/compare-tar-zstd.sh [--runs N] [--tree DIR] [gen-tree flags...]
#   By default a ~500 MB tree is generated (gen-tree --preset layer: pseudo-random content,
#   which does not compress); other gen-tree flags change it. --tree DIR measures an existing
#   directory instead (e.g. a toolchain's lib directory, which compresses like real layers).
# Every variant writes to /dev/null and is timed from outside the process; the variants take
# turns, N rounds (default 5). Prints one markdown table row per variant: median and best MB/s
# over the N runs (MB = 10^6 bytes of uncompressed tar), the ratio of medians against
# variant (a) and the median CPU time.
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
runs=5
tree=""
gen_args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --runs) runs="$2"; shift 2 ;;
        --tree) tree="$2"; shift 2 ;;
        *) gen_args+=("$1"); shift ;;
    esac
done
[[ ${#gen_args[@]} -gt 0 ]] || gen_args=(--preset layer)

# Package installs, the shared target dir and the prebuilt RocksDB library (see .ci/lib.sh).
source "$repo/.ci/lib.sh"
ensure_debian_packages zstd
(cd "$repo" && ensure_rocksdb_lib && cargo build --quiet --release -p lamina-benches --bins)

echo "building the bench binaries (release)" >&2
bin_dir="${CARGO_TARGET_DIR:-$repo/target}/release"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if [[ -z "$tree" ]]; then
    tree="$tmp/tree"
    echo "tree: $("$bin_dir/gen-tree" "$tree" "${gen_args[@]}") (gen-tree ${gen_args[*]})" >&2
fi
tree="$(cd "$tree" && pwd)"

# Warm the page cache so that every variant reads from memory.
find "$tree" -type f -print0 | xargs -0 cat >/dev/null

# Throughput is per byte of uncompressed tar, as the writer counts it.
stats="$("$bin_dir/write-layer" "$tree" /dev/null)"
bytes="${stats#tar_bytes=}"
bytes="${bytes%% *}"
echo "write-layer: $stats" >&2

# Sorted names and numeric owners, as the writer does; zstd -T0 uses every core and adds its
# checksum, as the writer does.
gnu_tar() { tar --sort=name --numeric-owner -cf - -C "$tree" .; }
tar_zstd() { gnu_tar | zstd -T0 -3 -q >/dev/null; }
# diff_id and blob digest, as an OCI tool without a one-pass writer would get them.
mkfifo "$tmp/tar.fifo"
tar_zstd_sha256() {
    sha256sum <"$tmp/tar.fifo" >"$tmp/diff_id" &
    local diff_id=$!
    gnu_tar | tee "$tmp/tar.fifo" | zstd -T0 -3 -q | sha256sum >"$tmp/digest"
    wait "$diff_id"
}
lamina() { "$bin_dir/write-layer" "$tree" /dev/null "$@"; }

# Times one run of "$@"; appends its MB/s and CPU seconds (user + sys of every process of the
# variant) to the lists of variant $1.
declare -A speeds cpus
time_run() {
    local variant="$1" times
    shift
    times="$( { TIMEFORMAT='%R %U %S'; time "$@" >/dev/null 2>"$tmp/stderr"; } 2>&1)" || {
        cat "$tmp/stderr" >&2
        return 1
    }
    speeds[$variant]+="$(awk -v b="$bytes" -v t="$times" 'BEGIN { split(t, f, " "); printf "%.1f", b / f[1] / 1e6 }') "
    cpus[$variant]+="$(awk -v t="$times" 'BEGIN { split(t, f, " "); printf "%.2f", f[2] + f[3] }') "
}

sorted() { tr ' ' '\n' | grep . | sort -n; }
median() { sorted | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

names=(
    "(a) tar \| zstd -T0 -3"
    "(b) tar \| tee (sha256sum) \| zstd -T0 -3 \| sha256sum"
    "(c) lamina write-layer (zstd 3, 2 workers, 3 digests)"
    "lamina write-layer --workers 1"
    "lamina write-layer --compression none (2 digests)"
)
commands=(
    "tar_zstd"
    "tar_zstd_sha256"
    "lamina"
    "lamina --workers 1"
    "lamina --compression none"
)
# Round-robin, so that changes in the machine's load hit every variant alike.
for ((i = 0; i < runs; i++)); do
    for v in "${!commands[@]}"; do
        # shellcheck disable=SC2086 # the commands are word lists
        time_run "$v" ${commands[$v]}
    done
done

echo "| variant | median MB/s | best MB/s | median vs (a) | CPU s (median) |"
echo "|---|---|---|---|---|"
base="$(median <<<"${speeds[0]}")"
for v in "${!names[@]}"; do
    med="$(median <<<"${speeds[$v]}")"
    best="$(sorted <<<"${speeds[$v]}" | tail -1)"
    ratio="$(awk -v m="$med" -v b="$base" 'BEGIN { printf "%.2fx", m / b }')"
    echo "| ${names[$v]} | $med | $best | $ratio | $(median <<<"${cpus[$v]}") |"
done
