#!/usr/bin/env bash
# Warm CLI speed as a store ages (issue 13): times an all-hit `lamina build` of a 10-step
# definition and `lamina image ls` on a fresh store, then ages the store with many small CLI
# builds (the same definition varied by a build argument, so each adds ~4 cache entries and
# ~5 blobs), times both again, runs `lamina cache gc` and times them a third time. Prints the
# number of files in the index directory at each point. After aging, it also times the aged
# store interleaved with a fresh store and a young one at the same WAL phase
# (warm-cli-compare.py).
#
# The definition is COPY-only (FROM scratch, a busybox root filesystem, ENV, WORKDIR, LABEL,
# USER, ENTRYPOINT): no RUN step, so neither root nor runc is needed and nothing leaves the
# machine.
#
# Usage: [LAMINA=path/to/lamina] benches/scripts/store-aging.sh [--builds N] [--runs N] [--keep DIR]
#   LAMINA defaults to $CARGO_TARGET_DIR/release/lamina (build it with
#   `cargo build --release -p lamina-cli`).
#   --builds: aging builds (default 2000); --runs: timed runs per measurement (default 30);
#   --keep DIR: age the store in DIR and keep it (default: a temporary directory, removed).
# Needs: busybox (static or not) at /bin/busybox, python3.
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
builds=2000
runs=30
keep=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --builds) builds="$2"; shift 2 ;;
        --runs) runs="$2"; shift 2 ;;
        --keep) keep="$2"; shift 2 ;;
        *) echo "unknown argument $1 (expected --builds N, --runs N or --keep DIR)" >&2; exit 2 ;;
    esac
done

LAMINA="${LAMINA:-${CARGO_TARGET_DIR:-$repo/target}/release/lamina}"
[[ -x "$LAMINA" ]] || { echo "no lamina binary at $LAMINA: set LAMINA or build it with cargo build --release -p lamina-cli" >&2; exit 1; }
[[ -x /bin/busybox ]] || { echo "/bin/busybox is missing: install busybox-static" >&2; exit 1; }

if [[ -n "$keep" ]]; then
    tmp="$keep"
    mkdir -p "$tmp"
else
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
fi
store="$tmp/store"

ctx="$tmp/ctx"
rootfs="$ctx/rootfs"
mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/tmp" "$ctx/app/conf"
cp /bin/busybox "$rootfs/bin/busybox"
for applet in $("$rootfs/bin/busybox" --list); do
    [[ "$applet" = busybox ]] || ln -sf busybox "$rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$rootfs/etc/passwd"
printf 'echo "hello from $APP_HOME"\n' >"$ctx/app/hello.sh"
printf 'port=8080\n' >"$ctx/app/conf/app.conf"
# Ten steps; the ones after `ARG N` differ for every value of N (WORKDIR and COPY paths
# name it), so each aging build stores new layers and cache entries on top of shared ones.
cat >"$ctx/Dockerfile" <<'EOF'
FROM scratch
COPY rootfs /
ENV APP_HOME=/srv/app
COPY app /srv/app
ARG N=0
WORKDIR /srv/$N
COPY app/hello.sh /srv/$N/hello.sh
COPY app/conf /srv/$N/conf
LABEL bench.n=$N
USER 1000
ENTRYPOINT ["sh", "/srv/app/hello.sh"]
EOF

# measure LABEL: times the warm rebuild and `image ls`, $runs times each after one untimed run.
measure() {
    echo "== $1"
    python3 "$repo/benches/scripts/warm-cli-compare.py" "$runs" "$1=$LAMINA=$store=$ctx"
}

wal_files() {
    find "$1"/index-v* -name '*.log' | wc -l
}

# Every open replays the WAL the last writing builds left (up to a few files before a flush), so
# an aged store measured alone mixes its age with its WAL phase. This times it interleaved run
# by run against a fresh store (one build) and a young one given writing builds until it holds
# as many WAL files as the aged one.
compare_at_wal_phase() {
    local fresh="$tmp/fresh-store" young="$tmp/young-store" target i s
    rm -rf "$fresh" "$young"
    for s in "$fresh" "$young"; do
        "$LAMINA" --store "$s" build "$ctx" --tag age:base --progress plain >/dev/null 2>&1
    done
    target="$(wal_files "$store")"
    for ((i = 1; i <= 64; i++)); do
        (( $(wal_files "$young") < target )) || break
        "$LAMINA" --store "$young" build "$ctx" --build-arg "N=$i" --tag age:latest \
            --progress plain >/dev/null 2>&1
    done
    echo "== interleaved: fresh, young at the aged store's WAL phase, aged"
    python3 "$repo/benches/scripts/warm-cli-compare.py" "$runs" "fresh=$LAMINA=$fresh=$ctx" \
        "young=$LAMINA=$young=$ctx" "aged=$LAMINA=$store=$ctx"
}

echo "lamina: $LAMINA"
"$LAMINA" --store "$store" build "$ctx" --tag age:base --progress plain >/dev/null 2>&1
measure "fresh store"

echo "== aging: $builds builds"
start=$(date +%s)
for ((i = 1; i <= builds; i++)); do
    "$LAMINA" --store "$store" build "$ctx" --build-arg "N=$i" --tag age:latest --progress plain \
        >/dev/null 2>"$tmp/age.err" || { cat "$tmp/age.err" >&2; exit 1; }
    if (( i % 500 == 0 )); then echo "$i builds, $(( $(date +%s) - start )) s"; fi
done
"$LAMINA" --store "$store" cache stats | head -n 5 || true
measure "aged store ($builds builds)"
compare_at_wal_phase

"$LAMINA" --store "$store" cache gc >/dev/null
measure "aged store after cache gc"
