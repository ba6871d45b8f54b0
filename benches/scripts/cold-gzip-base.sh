#!/usr/bin/env bash
# Cold build on a base received gzip-compressed (as every registry pull is), with two RUN steps
# that each write a large layer: lamina against BuildKit (dockerd's), and against a baseline
# lamina binary when LAMINA_BASELINE is set. On such a base lamina's layers are gzip: the
# variants are made beside the next steps (docs/ARCHITECTURE.md, "Cold path"), where BuildKit
# compresses in its export step. Reports wall time, per step, max RSS and CPU seconds.
#
# Usage: [LAMINA=path/to/lamina] [LAMINA_BASELINE=path/to/other/lamina]
#        benches/scripts/cold-gzip-base.sh [--runs N] [--keep]
#   LAMINA defaults to the release build of this checkout (cargo build --release -p lamina-cli).
#   --runs: alternating rounds (default 3); --keep: keep the temporary directory.
# Needs: root, debootstrap, docker.io (dockerd 20.10, client /usr/bin/docker), runc, python3,
# GNU time (/usr/bin/time). No network in the timed part.
#
# The base is cold-lib.sh's debootstrap base, exported once by lamina as an OCI archive with a
# gzip layer; each lamina round imports that archive into a fresh store (untimed; import
# unpacks the layer, as docker load does), BuildKit builds after `docker builder prune -af`
# from the same base loaded from its docker-archive. Rounds alternate which tool goes first.
# Stores stay until the end (a deletion right before a timed run slows it on ext4 without a
# journal; see cold-lib.sh's journal_note): ~1 GB per lamina build.
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
source "$repo/benches/scripts/cold-lib.sh"
parse_only_common_args "$@"

ensure_lamina
ensure_bench_base
start_dockerd
candidate="$LAMINA_BIN"
baseline="${LAMINA_BASELINE:-}"

# The base as a registry would hand it over: one gzip layer.
gzip_base="$tmp/base-gzip.tar"
"$LAMINA_BIN" --store "$tmp/export-store" image import "$base_archive" "$BASE_IMAGE" >/dev/null
"$LAMINA_BIN" --store "$tmp/export-store" image export "$BASE_IMAGE" --format oci-archive \
    --compression gzip -o "$gzip_base" >/dev/null
rm -rf "$tmp/export-store"

ctx="$tmp/ctx"
mkdir -p "$ctx"
cat >"$ctx/Dockerfile" <<EOF
FROM $BASE_IMAGE
RUN mkdir -p /opt/lib && cp -a /usr/lib/. /opt/lib/
RUN mkdir -p /opt/share && cp -a /usr/share/. /opt/share/
RUN echo done > /done
EOF

results="$tmp/results.tsv"
: >"$results"

# one_lamina_round ROUND [baseline]: a fresh store holding the gzip base, then the cold build.
one_lamina_round() {
    local tool=lamina store="$tmp/store-$1"
    LAMINA_BIN="$candidate"
    if [[ "${2:-}" = baseline ]]; then
        tool=lamina-baseline LAMINA_BIN="$baseline" store="$tmp/store-baseline-$1"
    fi
    "$LAMINA_BIN" --store "$store" image import "$gzip_base" "$BASE_IMAGE" >/dev/null
    sync
    timed_lamina "$tool" cold "$tmp/$tool-cold-$1.log" --store "$store" build "$ctx" --tag bench-gzip:lamina
    du_lamina="$(du -sb "$store" | cut -f1)"
    LAMINA_BIN="$candidate"
}

lamina_round() {
    one_lamina_round "$1"
    if [[ -n "$baseline" ]]; then one_lamina_round "$1" baseline; fi
}

buildkit_round() {
    dk_cold bench-gzip:buildkit
    sync
    timed_buildkit cold "$tmp/buildkit-cold-$1.log" "$ctx" -t bench-gzip:buildkit
}

machine_line >&2
alternate_rounds "$runs"

echo
machine_line
echo "lamina: $candidate ($("$candidate" --version))${baseline:+; baseline: $baseline ($("$baseline" --version))}; BuildKit: dockerd $(dk version --format '{{.Server.Version}}')"
echo "base: $BASE_IMAGE, $(du -b "$base_rootfs_tar" | cut -f1) bytes of tar, $(du -b "$gzip_base" | cut -f1) bytes as a gzip OCI archive"
echo "$runs alternating rounds; lamina store after a build: $du_lamina bytes (du -sb)"
echo
sed 's/^/    /' "$ctx/Dockerfile"
echo
python3 "$repo/benches/scripts/cold_report.py" table "$results"
