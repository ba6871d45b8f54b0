#!/usr/bin/env bash
# Per-step cold times of config-only steps and of `RUN true` on a ~300 MB Debian base: lamina
# against BuildKit (dockerd's, `DOCKER_BUILDKIT=1 docker build`), issue 12's first goal
# (a config-only step < 20 ms; a RUN's overhead over its command < 200 ms).
#
# Usage: [LAMINA=path/to/lamina] benches/scripts/cold-steps.sh [--runs N] [--keep]
#   LAMINA defaults to the release build of this checkout (cargo build --release -p lamina-cli).
#   --runs: alternating rounds per tool (default 3); --keep: keep the temporary directory.
#   BENCH_BASE_VARIANT=minbase uses debootstrap's minbase variant (~200 MB) instead.
# Needs: root, debootstrap, docker.io (dockerd 20.10, client /usr/bin/docker), runc, python3.
#
# The base (see cold-lib.sh) is made once per machine, saved with `docker save`, loaded into a
# private dockerd and imported into each fresh lamina store, so both build FROM the same bytes.
# Each round: lamina builds in a fresh store holding only the base (so its first RUN also
# makes the base's tree ready, if the import did not), and again in a fresh store where an
# untimed `FROM base` + `RUN true` build ran first (`lamina-base-ready`: the base's tree
# ready, as Docker's is); BuildKit builds after `docker builder prune -af` and removal of
# the last image (its base stays unpacked from `docker load`).
# The rounds alternate which tool goes first. Per-step times come from the tools themselves:
# lamina's `--progress json` (`duration_ms`, ms) and BuildKit's plain progress (`DONE x.ys`,
# 0.1 s steps; ENV and USER are no BuildKit steps). Wall is timed from outside the process.
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
source "$repo/benches/scripts/cold-lib.sh"
parse_only_common_args "$@"

ensure_lamina
ensure_bench_base
start_dockerd

ctx="$tmp/ctx"
mkdir -p "$ctx"
cat >"$ctx/Dockerfile" <<EOF
FROM $BASE_IMAGE
WORKDIR /app
ENV BENCH_MODE=cold
USER bench
RUN true
WORKDIR /home/bench/work
RUN /bin/true
EOF

results="$tmp/results.tsv"
: >"$results"

# lamina_round ROUND [ready]: a fresh store holding the base (and, with `ready`, the base's
# tree made ready by an untimed first build), then the timed build.
lamina_round() {
    local tool=lamina store="$tmp/store"
    lamina_fresh_store "$store"
    if [[ "${2:-}" = ready ]]; then
        tool=lamina-base-ready
        lamina_ready_base "$store"
    fi
    sync
    timed_lamina "$tool" cold "$tmp/$tool-$1.log" --store "$store" build "$ctx" --tag bench-steps:lamina
}

buildkit_round() {
    dk_cold bench-steps:buildkit
    sync
    timed_buildkit cold "$tmp/buildkit-$1.log" "$ctx" -t bench-steps:buildkit
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
echo "base: $BASE_IMAGE, $(du -b "$base_rootfs_tar" | cut -f1) bytes of tar; $runs alternating rounds; times in ms"
echo
cat "$ctx/Dockerfile" | sed 's/^/    /'
echo
python3 "$repo/benches/scripts/cold_report.py" table "$results"
