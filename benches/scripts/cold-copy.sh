#!/usr/bin/env bash
# Cold build of `COPY src /src` (50,000 small files, ~200 MB on disk) plus one RUN on a ~300 MB
# Debian base: lamina against BuildKit (dockerd's), issue 12's second goal (lamina cold
# <= 0.9x BuildKit's wall time, medians of alternating rounds). Also, in the same rounds, the
# warm rebuild of the unchanged context right after (must not regress), lamina's peak memory
# (max RSS of `lamina build` from GNU time, cold and warm; goal <= 128 MB) and CPU seconds.
#
# Usage: [LAMINA=path/to/lamina] benches/scripts/cold-copy.sh [--runs N] [--keep] [gen-tree flags]
#   LAMINA defaults to the release build of this checkout (cargo build --release -p lamina-cli).
#   --runs: alternating rounds (default 3); --keep: keep the temporary directory.
#   gen-tree flags replace the default tree: --preset small --small-files 50000
#   --small-min 256 --small-max 4096 --compressible (text-like files, 2.2 KB on average,
#   one 4 KiB block each on ext4: ~110 MB of content, ~200 MB on disk with the directories).
# Needs: root, debootstrap, docker.io (dockerd 20.10, client /usr/bin/docker), runc, python3,
# GNU time (/usr/bin/time).
#
# Each round: lamina builds in a fresh store holding only the imported base (`lamina`), and
# in a fresh store where an untimed `FROM base` + `RUN true` build made the base's tree ready
# first (`lamina-base-ready`); BuildKit after `docker builder prune -af` and removal of its
# last image (its base stays unpacked from `docker load`). Then each rebuilds the same context (every step cached). Rounds alternate
# which tool goes first; the tree is written once, so both read it from the page cache.
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
source "$repo/benches/scripts/cold-lib.sh"
parse_common_args "$@"
gen_args=("${extra_args[@]}")
[[ ${#gen_args[@]} -gt 0 ]] || gen_args=(--preset small --small-files 50000 --small-min 256 --small-max 4096 --compressible)

ensure_lamina
ensure_gen_tree
ensure_bench_base
start_dockerd

ctx="$tmp/ctx"
mkdir -p "$ctx"
tree_stats="$("$GEN_TREE" "$ctx/src" "${gen_args[@]}")"
tree_sizes="$(du -sb "$ctx/src" | cut -f1) bytes apparent (du -sb), $(du -s --block-size=1 "$ctx/src" | cut -f1) bytes of disk blocks"
log "tree: $tree_stats, $tree_sizes"
cat >"$ctx/Dockerfile" <<EOF
FROM $BASE_IMAGE
COPY src /src
RUN find /src -type f | wc -l
EOF

results="$tmp/results.tsv"
: >"$results"

# lamina_round ROUND [ready]: a fresh store holding the base (with `ready`, the base's tree
# made ready by an untimed first build, as `docker load` leaves Docker's), cold then warm.
lamina_round() {
    local tool=lamina mode
    lamina_fresh_store "$tmp/store"
    if [[ "${2:-}" = ready ]]; then
        tool=lamina-base-ready
        lamina_ready_base "$tmp/store"
    fi
    sync
    for mode in cold warm; do
        timed_lamina "$tool" "$mode" "$tmp/$tool-$mode-$1.log" --store "$tmp/store" build "$ctx" --tag bench-copy:lamina
    done
}

buildkit_round() {
    local mode
    dk_cold bench-copy:buildkit
    sync
    for mode in cold warm; do
        timed_buildkit "$mode" "$tmp/buildkit-$mode-$1.log" "$ctx" -t bench-copy:buildkit
    done
}

machine_line >&2
for round in $(seq "$runs"); do
    if ((round % 2)); then lamina_round "$round"; lamina_round "$round" ready; buildkit_round "$round"
    else buildkit_round "$round"; lamina_round "$round" ready; lamina_round "$round"; fi
    log "round $round done"
done

echo
machine_line
echo "lamina: $LAMINA ($("$LAMINA_BIN" --version)); BuildKit: dockerd $(dk version --format '{{.Server.Version}}')"
echo "base: $BASE_IMAGE, $(du -b "$base_rootfs_tar" | cut -f1) bytes of tar; tree: $tree_stats (gen-tree ${gen_args[*]}), $tree_sizes"
echo "$runs alternating rounds; lamina store after the last round: $(du -sb "$tmp/store" | cut -f1) bytes (du -sb)"
echo
sed 's/^/    /' "$ctx/Dockerfile"
echo
python3 "$repo/benches/scripts/cold_report.py" table "$results"
