#!/usr/bin/env bash
# Compares pushing an image whose layer is stored uncompressed, so the push has to gzip it:
# `skopeo copy --dest-compress --dest-compress-format gzip oci:PLAIN docker://REF` against
# `lamina push NAME REF` (gzip by default) of the same image imported from that layout into a
# fresh store, whose gzip variant therefore does not exist yet. Also times a second lamina
# push of the same store (the gzip variant is stored by then) and a `--compression zstd` push
# (its zstd variant made on the way). Every push goes to a fresh local registry
# (docker-registry on a free loopback port, filesystem storage), so nothing is skipped or
# mounted.
#
# Usage: LAMINA=path/to/lamina benches/scripts/push-gzip-vs-skopeo.sh [--runs N] [gen-tree flags...]
#   LAMINA defaults to the dev-profile binary `cargo test -p lamina-cli --no-run` builds
#   (dependencies, zlib-rs and zstd included, at opt-level 2; Lamina's crates at 0).
#   gen-tree flags change the tree (default: --preset layer --large-files 4 --compressible,
#   about 360 MB of text-like files that gzip shrinks about 3:1).
# Needs: docker-registry, skopeo, python3 (free port, arithmetic).
#
# How: gen-tree writes the tree; `lamina build` makes it one layer and `lamina image export
# --compression none` writes the uncompressed OCI layout both tools push from. Each round:
# skopeo pushes the layout; then a fresh store imports it (not timed) and lamina pushes it
# with gzip, again with gzip (to another fresh registry), and with zstd. Pushes are timed
# from outside the process. MB/s is 10^6 bytes of *uncompressed* layer per second (the work
# is compressing it). Prints a markdown table: median and best of N rounds (default 3), the
# ratio of medians to skopeo, and `uptime` before and after.
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
runs=3
gen_args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --runs) runs="$2"; shift 2 ;;
        *) gen_args+=("$1"); shift ;;
    esac
done
[[ ${#gen_args[@]} -gt 0 ]] || gen_args=(--preset layer --large-files 4 --compressible)

for tool in docker-registry skopeo python3; do
    command -v "$tool" >/dev/null 2>&1 || { echo "$tool is required" >&2; exit 1; }
done

source "$repo/benches/scripts/push-lib.sh"
"$LAMINA" push --help 2>/dev/null | grep -q -- --compression || {
    echo "$LAMINA has no 'push --compression' yet; point LAMINA at a build that has it" >&2
    exit 1
}

uptime_before="$(uptime)"
echo "tree: $("$bin_dir/gen-tree" "$tmp/ctx/tree" "${gen_args[@]}") (gen-tree ${gen_args[*]})" >&2
printf 'FROM scratch\nCOPY tree /data\n' >"$tmp/ctx/Dockerfile"
export LAMINA_STORE="$tmp/build-store"
"$LAMINA" build "$tmp/ctx" --tag bench:1 --progress plain >&2
plain="$tmp/plain"
"$LAMINA" image export bench:1 --format oci-dir --compression none -o "$plain" >&2
rm -rf "$tmp/ctx" "$LAMINA_STORE"
layer_bytes="$(find "$plain/blobs" -type f -size +1M -printf '%s\n' | sort -n | tail -1)"
echo "image: one uncompressed layer of $layer_bytes bytes" >&2
cat "$plain"/blobs/sha256/* >/dev/null

declare -A speeds
time_push() {
    local tool="$1" seconds
    shift
    seconds="$( { TIMEFORMAT='%R'; time "$@" >"$tmp/stdout" 2>"$tmp/stderr"; } 2>&1)" || {
        cat "$tmp/stderr" >&2
        return 1
    }
    speeds[$tool]+="$(python3 -c "print(f'{$layer_bytes / $seconds / 1e6:.1f}')") "
}

# The pushed manifest's layer media type, to be sure each tool did the asked work.
layer_type() {
    skopeo inspect --raw --tls-verify=false "docker://$1" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][0]["mediaType"])'
}

expect_type() {
    local got
    got="$(layer_type "$1")"
    [[ "$got" == *"$2" ]] || { echo "$1: layer is $got, expected *$2" >&2; exit 1; }
}

last() { local all="${1% }"; echo "${all##* }"; }
for round in $(seq "$runs"); do
    start_registry "skopeo-$round"
    ref="127.0.0.1:$registry_port/bench/app:1"
    time_push skopeo skopeo copy --quiet --dest-tls-verify=false --dest-compress \
        --dest-compress-format gzip "oci:$plain:1" "docker://$ref"
    expect_type "$ref" gzip
    stop_registry "$registry_pid" "skopeo-$round"

    export LAMINA_STORE="$tmp/store-$round"
    "$LAMINA" image import "$plain" bench:1 >&2
    find "$LAMINA_STORE" -type f -print0 | xargs -0 cat >/dev/null
    start_registry "gzip-$round"
    ref="127.0.0.1:$registry_port/bench/app:1"
    time_push gzip "$LAMINA" push bench:1 "$ref"
    grep -q "1 of 1 layers compressed" "$tmp/stdout" || { cat "$tmp/stdout" >&2; exit 1; }
    expect_type "$ref" gzip
    stop_registry "$registry_pid" "gzip-$round"

    start_registry "again-$round"
    ref="127.0.0.1:$registry_port/bench/app:1"
    time_push again "$LAMINA" push bench:1 "$ref"
    grep -q "0 of 1 layers compressed" "$tmp/stdout" || { cat "$tmp/stdout" >&2; exit 1; }
    stop_registry "$registry_pid" "again-$round"

    start_registry "zstd-$round"
    ref="127.0.0.1:$registry_port/bench/app:1"
    time_push zstd "$LAMINA" push bench:1 "$ref" --compression zstd
    expect_type "$ref" zstd
    stop_registry "$registry_pid" "zstd-$round"
    rm -rf "$LAMINA_STORE"
    echo "round $round MB/s: skopeo $(last "${speeds[skopeo]}") lamina gzip $(last "${speeds[gzip]}")" \
        "re-push $(last "${speeds[again]}") zstd $(last "${speeds[zstd]}")" >&2
done

stats() { python3 -c "import statistics,sys; v=[float(x) for x in sys.argv[1:]]; print(f'{statistics.median(v):.1f} {max(v):.1f}')" $1; }
read -r skopeo_median skopeo_best <<<"$(stats "${speeds[skopeo]}")"
echo "| push | median MB/s | best MB/s | vs skopeo |"
echo "|---|---|---|---|"
echo "| skopeo copy --dest-compress-format gzip | $skopeo_median | $skopeo_best | 1.00x |"
for row in "gzip:lamina push (gzip variant made)" "again:lamina push again (gzip variant stored)" \
    "zstd:lamina push --compression zstd (zstd variant made)"; do
    key="${row%%:*}"
    read -r median best <<<"$(stats "${speeds[$key]}")"
    echo "| ${row#*:} | $median | $best | $(python3 -c "print(f'{$median / $skopeo_median:.2f}x')") |"
done
echo
echo "uncompressed layer: $layer_bytes bytes; rounds: $runs"
echo "uptime before: $uptime_before"
echo "uptime after:  $(uptime)"
