#!/usr/bin/env bash
# kill -9 sweep across roles: builds killed during a large COPY, during a RUN, and exports
# killed mid-write, each at a random moment, all on one store. After every kill the next
# command (`lamina cache gc`) must leave nothing behind: no run or temp directories, no mounts
# below the store, no runc containers (the watchdog's job, within seconds), no export temps
# beside the output; `cache fsck` must stay clean and the named images must survive.
#
# Usage (as root, from the repository root): tests/kill-sweep.sh [KILLS_PER_ROLE]
#   LAMINA=path/to/lamina (default: the test-profile build in the target directory)
# Prints one line per kill and a summary; exits non-zero on the first leftover.
set -euo pipefail

kills="${1:-20}"
lamina="${LAMINA:-${CARGO_TARGET_DIR:-$HOME/.cache/lamina/target}/debug/lamina}"
[ -x "$lamina" ] || { echo "no lamina binary at $lamina (set LAMINA)" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "run as root (RUN steps and mounts)" >&2; exit 2; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
store="$work/store"
L() { "$lamina" --store "$store" "$@"; }

# A busybox base and a context of 20,000 small files.
mkdir -p "$work/base/rootfs/bin" "$work/base/rootfs/etc" "$work/base/rootfs/tmp"
cp /bin/busybox "$work/base/rootfs/bin/busybox"
for applet in sh sleep cat echo true; do ln -s busybox "$work/base/rootfs/bin/$applet"; done
echo 'root:x:0:0:root:/root:/bin/sh' >"$work/base/rootfs/etc/passwd"
printf 'FROM scratch\nCOPY rootfs/ /\n' >"$work/base/Dockerfile"
L build "$work/base" --tag base:1 --progress plain >/dev/null 2>&1
mkdir -p "$work/copy/src"
python3 - "$work/copy/src" <<'PY'
import os, sys
root = sys.argv[1]
for i in range(20000):
    d = os.path.join(root, f"d{i % 200:03d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i}"), "wb") as f:
        f.write(os.urandom(1024 + i % 3000))
PY
mkdir -p "$work/run"
printf 'FROM base:1\nRUN sleep 30\n' >"$work/run/Dockerfile"
# The image that exports copy: built once, whole.
printf 'FROM base:1\nCOPY src /src\n' >"$work/copy/Dockerfile"
L build "$work/copy" --tag big:1 --progress plain >/dev/null 2>&1

# count DIR FIND-ARGS...: how many entries find lists (0 when DIR does not exist).
count() {
    local dir="$1"; shift
    if [ -d "$dir" ]; then find "$dir" "$@" | wc -l; else echo 0; fi
}

check_clean() {
    local role="$1" n="$2"
    # The watchdog deletes a killed RUN's container within seconds.
    local waited=0
    while [ -n "$(runc --root "$store/exec/runc" list -q 2>/dev/null)" ] && [ $waited -lt 50 ]; do
        sleep 0.1; waited=$((waited + 1))
    done
    local containers
    containers="$(runc --root "$store/exec/runc" list -q 2>/dev/null || true)"
    L cache gc --json >"$work/gc.json"
    local runs temps mounts exports
    runs="$(count "$store/exec/runs" -mindepth 1 -maxdepth 1)"
    temps="$(count "$store/exec/tmp" -mindepth 1 -maxdepth 1)"
    mounts="$(grep -c " $store" /proc/self/mountinfo || true)"
    exports="$(count "$work/out" -maxdepth 1 -name '.lamina-*')"
    local reclaimed
    reclaimed="$(python3 -c 'import json,sys; g=json.load(open(sys.argv[1])); print(g["leftover_runs_removed"], g["leftover_temp_removed"])' "$work/gc.json")"
    echo "$role kill $n: after the next command: runs=$runs temp=$temps mounts=$mounts containers=${containers:-none} export-temps=$exports (gc reclaimed runs/temp: $reclaimed; container gone after $((waited * 100)) ms)"
    if [ "$runs$temps$mounts$exports" != "0000" ] || [ -n "$containers" ]; then
        echo "leftover after $role kill $n" >&2
        exit 1
    fi
}

rand_ms() { echo $(( $1 + RANDOM % ($2 - $1) )); }
sleep_ms() { sleep "$(printf '0.%03d' "$1")" 2>/dev/null || sleep "$(($1 / 1000))"; }

mkdir -p "$work/out"
for n in $(seq 1 "$kills"); do
    # COPY of 20,000 files, killed somewhere in hashing, staging, packing or committing.
    "$lamina" --store "$store" build "$work/copy" --no-cache --progress plain >/dev/null 2>&1 &
    pid=$!; sleep_ms "$(rand_ms 50 999)"; kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
    check_clean copy "$n"

    # RUN sleep 30, killed while starting or running.
    "$lamina" --store "$store" build "$work/run" --no-cache --progress plain >/dev/null 2>&1 &
    pid=$!; sleep_ms "$(rand_ms 100 999)"; kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
    check_clean run "$n"

    # Export of the 20,000-file image, killed mid-write.
    "$lamina" --store "$store" image export big:1 -o "$work/out/big.tar" >/dev/null 2>&1 &
    pid=$!; sleep_ms "$(rand_ms 20 600)"; kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
    check_clean export "$n"
done
L cache fsck --json >"$work/fsck.json"
python3 - "$work/fsck.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
issues = report.get("issues", [])
assert not issues, f"fsck found {issues}"
PY
L image ls | grep -q 'big:1' || { echo "big:1 lost" >&2; exit 1; }
L image ls | grep -q 'base:1' || { echo "base:1 lost" >&2; exit 1; }
echo "summary: $((kills * 3)) kills ($kills each during COPY, RUN and export): nothing left behind after the next command; fsck clean; named images intact"
