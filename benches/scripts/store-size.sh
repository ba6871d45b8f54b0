#!/usr/bin/env bash
# Disk taken by an image (base + build) in lamina's store against dockerd's data root, issue
# 12's third goal (lamina <= 1.25x Docker, `du -sb` of an idle store), with the build's wall
# time, the warm rebuild and lamina's peak memory (max RSS, goal <= 128 MB) on the way.
#
# Usage: [LAMINA=path/to/lamina] benches/scripts/store-size.sh [--runs N] [--keep] [pip|local]...
#   LAMINA defaults to the release build of this checkout (cargo build --release -p lamina-cli).
#   Workloads (default: both):
#     pip    apt-get install python3-pip, then `pip install numpy pandas` (wheels only), ENV,
#            WORKDIR: needs the Debian mirror of the apt sources (debootstrap wrote it into the
#            base) and the Python package index through the host's CA bundle, which both
#            tools get by `RUN --mount=type=bind` from the context (never in a layer);
#     local  no network: a RUN writing ~100 MB (50 MB of random bytes and a copy of
#            /usr/share), ENV, WORKDIR.
#   --runs: rounds per workload (default 3).
# Needs: root, debootstrap, docker.io (dockerd 20.10, client /usr/bin/docker), runc, python3,
# GNU time.
#
# Sizes: lamina's is `du -sb` of its store (fresh per round, holding the imported base and
# the build), minus an empty store's (one `lamina cache du` on a new directory); Docker's is
# `du -sb` of the private dockerd's data root after the build (image and BuildKit cache),
# minus the data root's size right after dockerd started on an empty one. Both after the
# build, nothing running. Each Docker round starts after `docker builder prune -af` and
# removal of the image; the base stays, as it does in each fresh lamina store.
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
source "$repo/benches/scripts/cold-lib.sh"
parse_common_args "$@"
workloads=("${extra_args[@]}")
[[ ${#workloads[@]} -gt 0 ]] || workloads=(pip local)
for w in "${workloads[@]}"; do
    [[ "$w" = pip || "$w" = local ]] || { echo "unknown workload $w (expected pip or local)" >&2; exit 2; }
done

ensure_lamina
ensure_bench_base
start_dockerd
report="$repo/benches/scripts/cold_report.py"
docker_base_bytes="$(du -sb "$docker_data" | cut -f1)"
"$LAMINA_BIN" --store "$tmp/empty-store" cache du >/dev/null
lamina_empty_bytes="$(du -sb "$tmp/empty-store" | cut -f1)"
lamina_fresh_store "$tmp/store"
lamina_base_bytes="$(du -sb "$tmp/store" | cut -f1)"
log "empty: docker data root $docker_empty_bytes, lamina store $lamina_empty_bytes bytes; with the base: $docker_base_bytes, $lamina_base_bytes"

make_context() { # WORKLOAD DIR
    mkdir -p "$2"
    case "$1" in
        pip)
            cp /etc/ssl/certs/ca-certificates.crt "$2/ca.crt"
            cat >"$2/Dockerfile" <<EOF
FROM $BASE_IMAGE
RUN apt-get update && apt-get install -y --no-install-recommends python3-pip && rm -rf /var/lib/apt/lists/*
RUN --mount=type=bind,source=ca.crt,target=/run/bench-ca.crt PIP_CERT=/run/bench-ca.crt pip install --no-cache-dir --break-system-packages --only-binary=:all: numpy pandas
ENV APP_ENV=bench
WORKDIR /app
EOF
            ;;
        local)
            cat >"$2/Dockerfile" <<EOF
FROM $BASE_IMAGE
RUN mkdir /data && head -c 50000000 /dev/urandom >/data/random.bin && cp -a /usr/share /data/share && du -sh /data
ENV APP_ENV=bench
WORKDIR /app
EOF
            ;;
    esac
}

results="$tmp/results.tsv"
: >"$results"
add() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$results"; }
mb() { python3 -c "print(($1) / 1e6)"; }

# parts TOOL WORKLOAD DIR: du -sb of each top-level directory of a store over 1 MB (not net).
parts() {
    local entry bytes
    for entry in "$3"/*/; do
        bytes="$(du -sb "$entry" | cut -f1)"
        ((bytes < 1000000)) || add "$1" "$2 store part $(basename "$entry")/ (MB)" "$(mb "$bytes")"
    done
}

lamina_round() { # WORKLOAD ROUND
    local w="$1" ctx="$tmp/ctx-$1" mode
    lamina_fresh_store "$tmp/store"
    sync
    for mode in cold warm; do
        timed_lamina lamina "$w $mode" "$tmp/lamina-$w-$mode-$2.log" \
            --store "$tmp/store" build "$ctx" --tag "bench-$w:lamina"
    done
    sync
    add lamina "$w store, net (MB)" "$(mb "$(du -sb "$tmp/store" | cut -f1) - $lamina_empty_bytes")"
    parts lamina "$w" "$tmp/store"
    "$LAMINA_BIN" --store "$tmp/store" cache du >"$tmp/lamina-$w-du-$2.txt"
    add lamina "$w \`cache du\` total (MB)" "$(python3 - "$tmp/lamina-$w-du-$2.txt" <<'EOF'
import re, sys
units = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
for line in open(sys.argv[1]):
    m = re.match(r"^total\s+([\d.]+) (\w+)", line)
    if m:
        print(float(m.group(1)) * units[m.group(2)] / 1e6)
EOF
)"
}

buildkit_round() { # WORKLOAD ROUND
    local w="$1" ctx="$tmp/ctx-$1" mode
    # Every workload's image, so that one workload's image is not counted in the next's size.
    dk_cold bench-pip:buildkit bench-local:buildkit
    sync
    for mode in cold warm; do
        timed_buildkit "$w $mode" "$tmp/buildkit-$w-$mode-$2.log" "$ctx" -t "bench-$w:buildkit"
    done
    sync
    add buildkit "$w store, net (MB)" "$(mb "$(du -sb "$docker_data" | cut -f1) - $docker_empty_bytes")"
    parts buildkit "$w" "$docker_data"
}

machine_line >&2
for w in "${workloads[@]}"; do
    make_context "$w" "$tmp/ctx-$w"
    for round in $(seq "$runs"); do
        if ((round % 2)); then lamina_round "$w" "$round"; buildkit_round "$w" "$round"
        else buildkit_round "$w" "$round"; lamina_round "$w" "$round"; fi
        log "$w round $round done"
    done
done

echo
machine_line
echo "lamina: $LAMINA ($("$LAMINA_BIN" --version)); BuildKit: dockerd $(dk version --format '{{.Server.Version}}')"
echo "base: $BASE_IMAGE, $(du -b "$base_rootfs_tar" | cut -f1) bytes of tar; $runs alternating rounds per workload"
echo "empty (subtracted): docker data root $docker_empty_bytes bytes, lamina store $lamina_empty_bytes bytes"
echo "with the base only (not subtracted): docker $(mb "$docker_base_bytes - $docker_empty_bytes") MB, lamina $(mb "$lamina_base_bytes - $lamina_empty_bytes") MB"
for w in "${workloads[@]}"; do
    echo
    sed 's/^/    /' "$tmp/ctx-$w/Dockerfile"
    echo
    echo "lamina cache du after the last $w round:"
    sed 's/^/    /' "$tmp/lamina-$w-du-$runs.txt"
done
echo
python3 "$report" table "$results"
