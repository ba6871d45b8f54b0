#!/usr/bin/env bash
# Compares `lamina push` (from the store) with `skopeo copy oci:... docker://...` pushing the
# same ~500 MB single-layer image to a fresh local registry (Debian's docker-registry on a
# free loopback port, filesystem storage), page cache warm.
#
# Usage: LAMINA=path/to/lamina benches/scripts/push-vs-skopeo.sh [--runs N] [gen-tree flags...]
#   LAMINA defaults to the dev-profile binary that `cargo test -p lamina-cli --no-run` builds in
#   the cargo target directory (dependencies at opt-level 2, Lamina's own crates at 0; the
#   project does not keep a release build, so figures are for that binary).
#   gen-tree flags change the tree (default --preset layer: ~500 MB of pseudo-random files,
#   which gzip cannot shrink, so both tools move about the same bytes).
# Needs: docker-registry, skopeo, umoci, python3 (free port), and a lamina binary with
# `lamina pull REF` and `lamina push NAME REF` (store chosen by $LAMINA_STORE).
#
# How: gen-tree writes the tree; umoci packs it as one gzip layer in an OCI layout; skopeo
# pushes that to a source registry and `lamina pull` brings it into a scratch store. Then each
# round starts a fresh registry per tool (so neither finds blobs to skip or mount) and times
# the push from outside the process. Prints one markdown table row per tool: median and best
# MB/s over N rounds (default 3; MB = 10^6 bytes of compressed layer), and the median ratio.
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
[[ ${#gen_args[@]} -gt 0 ]] || gen_args=(--preset layer)

for tool in docker-registry skopeo umoci python3; do
    command -v "$tool" >/dev/null 2>&1 || { echo "$tool is required" >&2; exit 1; }
done

source "$repo/benches/scripts/push-lib.sh"
"$LAMINA" push --help >/dev/null 2>&1 || {
    echo "$LAMINA has no 'push' command yet; point LAMINA at a build that has one" >&2
    exit 1
}

echo "tree: $("$bin_dir/gen-tree" "$tmp/tree" "${gen_args[@]}") (gen-tree ${gen_args[*]})" >&2
layout="$tmp/layout"
umoci init --layout "$layout" >&2
umoci new --image "$layout:src" >&2
umoci unpack --rootless --image "$layout:src" "$tmp/bundle" >&2
cp -a "$tmp/tree/." "$tmp/bundle/rootfs/"
umoci repack --image "$layout:src" "$tmp/bundle" >&2
rm -rf "$tmp/bundle"
layer_bytes="$(find "$layout/blobs" -type f -size +1M -printf '%s\n' | sort -n | tail -1)"
echo "image: one gzip layer of $layer_bytes bytes" >&2

start_registry source
source_ref="127.0.0.1:$registry_port/bench/src:1"
skopeo copy --quiet --dest-tls-verify=false "oci:$layout:src" "docker://$source_ref" >&2
export LAMINA_STORE="$tmp/store"
"$LAMINA" pull "$source_ref" >&2
# Warm the page cache for both sources.
cat "$layout"/blobs/sha256/* >/dev/null
find "$LAMINA_STORE" -type f -print0 | xargs -0 cat >/dev/null

declare -A speeds
time_push() {
    local tool="$1" seconds
    shift
    seconds="$( { TIMEFORMAT='%R'; time "$@" >/dev/null 2>"$tmp/stderr"; } 2>&1)" || {
        cat "$tmp/stderr" >&2
        return 1
    }
    speeds[$tool]+="$(python3 -c "print(f'{$layer_bytes / $seconds / 1e6:.1f}')") "
}

last() { local all="${1% }"; echo "${all##* }"; }
for round in $(seq "$runs"); do
    start_registry "lamina-$round"
    time_push lamina "$LAMINA" push "$source_ref" "127.0.0.1:$registry_port/bench/app:1"
    stop_registry "$registry_pid" "lamina-$round"
    start_registry "skopeo-$round"
    time_push skopeo skopeo copy --quiet --dest-tls-verify=false "oci:$layout:src" \
        "docker://127.0.0.1:$registry_port/bench/app:1"
    stop_registry "$registry_pid" "skopeo-$round"
    echo "round $round MB/s: lamina $(last "${speeds[lamina]}") skopeo $(last "${speeds[skopeo]}")" >&2
done

stats() { python3 -c "import statistics,sys; v=[float(x) for x in sys.argv[1:]]; print(f'{statistics.median(v):.1f} {max(v):.1f}')" $1; }
read -r lamina_median lamina_best <<<"$(stats "${speeds[lamina]}")"
read -r skopeo_median skopeo_best <<<"$(stats "${speeds[skopeo]}")"
echo "| tool | median MB/s | best MB/s | vs skopeo |"
echo "|---|---|---|---|"
echo "| lamina push | $lamina_median | $lamina_best | $(python3 -c "print(f'{$lamina_median / $skopeo_median:.2f}x')") |"
echo "| skopeo copy oci: docker:// | $skopeo_median | $skopeo_best | 1.00x |"
