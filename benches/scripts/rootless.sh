#!/usr/bin/env bash
# Rootless against rootful on the same machine and binary (issue 16: within 10%): a cold
# build with RUN steps (a fresh store holding only the base, every step runs) and a warm
# rebuild (every step a cache hit), as root and as an ordinary user with subordinate ids
# (lamina enters its own user namespace).
#
# Usage: [LAMINA=path/to/lamina] benches/scripts/rootless.sh [--runs N] [--warm N] [--keep]
#   LAMINA defaults to the release build of this checkout (cargo build --release -p lamina-cli).
#   --runs: cold rounds per mode (default 5); --warm: warm rebuilds per round (default 10);
#   --keep: keep the temporary directory. BENCH_USER (default lamina-rootless-test) is the
#   user; it is created with subordinate ids when missing, as .ci/test does.
# Needs: root, runc, uidmap (newuidmap), busybox-static, setpriv (util-linux), python3.
#
# The rounds alternate which mode goes first. Times are wall and CPU times (user + system,
# children included) from outside the process (the rootless ones include joining the kept
# user namespace); the summary prints medians and the rootless/rootful ratio.
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
runs=5 warm=10 keep=0
while [[ $# -gt 0 ]]; do
    case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --warm) warm="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "unknown argument: $1 (expected --runs N, --warm N, --keep)" >&2; exit 2 ;;
    esac
done
[[ "$(id -u)" -eq 0 ]] || { echo "run this as root: it builds as root and as an ordinary user" >&2; exit 1; }

user="${BENCH_USER:-lamina-rootless-test}"
id -u "$user" >/dev/null 2>&1 || useradd --no-create-home -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 "$user"
grep -q "^$user:" /etc/subuid || usermod --add-subuids 300000-365535 --add-subgids 300000-365535 "$user"
uid="$(id -u "$user")" gid="$(id -g "$user")"

if [[ -z "${LAMINA:-}" ]]; then
    (cd "$repo" && cargo build --release --locked -p lamina-cli)
    LAMINA="${CARGO_TARGET_DIR:-$repo/target}/release/lamina"
fi

tmp="$(mktemp -d)"
chmod 755 "$tmp"
cleanup() {
    local pid
    pid="$(cat "$tmp/work/run/lamina/userns.pid" 2>/dev/null || true)"
    [[ -n "$pid" ]] && kill "$pid" 2>/dev/null
    if [[ $keep -eq 1 ]]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
# The binary and everything the user reads or writes live in the user's directory.
work="$tmp/work"
mkdir -p "$work"
cp "$LAMINA" "$work/lamina"

rootfs="$work/base/rootfs"
mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/tmp" "$rootfs/root"
cp /bin/busybox "$rootfs/bin/busybox"
for applet in $("$rootfs/bin/busybox" --list); do
    [[ "$applet" = busybox ]] || ln -s busybox "$rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\n' >"$rootfs/etc/group"
printf 'FROM scratch\nCOPY rootfs/ /\n' >"$work/base/Dockerfile"

# RUN steps that make many small files, a larger one, change owners and delete: the work a
# package install does, without a network.
mkdir -p "$work/app/src"
for i in $(seq 1 200); do printf 'source file %s\n' "$i" >"$work/app/src/f$i.txt"; done
cat >"$work/app/Dockerfile" <<'EOF'
FROM busybox:bench
COPY src/ /src/
RUN mkdir -p /usr/share/many && cd /usr/share/many && for i in $(seq 1 1000); do echo "file $i" > f$i; done
RUN mkdir -p /opt && dd if=/dev/urandom of=/opt/blob bs=1M count=32 2>/dev/null && chown -R 100:101 /usr/share/many
RUN rm -rf /src /usr/share/many/f1* && echo done > /done
ENV MODE=bench
RUN true
EOF
chown -R "$uid:$gid" "$work"

# as MODE cmd...: as root or as the user, both through setpriv so both pay its start-up. The
# user's kept namespace lives in a runtime directory of this run (the first command of the
# first rootless round makes it, every later one joins it).
run_dir="$work/run"
mkdir -p "$run_dir"
chown "$uid:$gid" "$run_dir"
as() {
    local mode="$1"; shift
    if [[ "$mode" = rootless ]]; then
        HOME="$work" XDG_RUNTIME_DIR="$run_dir" setpriv --reuid="$uid" --regid="$gid" --init-groups "$@"
    else
        setpriv --reuid=0 --regid=0 --clear-groups "$@"
    fi
}

results="$tmp/results.tsv"
: >"$results"

# timed MODE KIND LOG cmd...: runs cmd as MODE and records its wall time and its CPU time
# (user + system, its children included: runc and the RUN's processes), both in ms. CPU time
# moves less than wall time on a machine others share.
timed() {
    local mode="$1" kind="$2" log="$3"; shift 3
    local wall cpu
    read -r wall cpu < <(python3 "$tmp/timer.py" "$log" bash -c \
        "$(declare -f as); uid=$uid gid=$gid work='$work' run_dir='$run_dir'; as \"\$@\"" \
        as "$mode" "$@")
    printf '%s\t%s\t%s\n%s\t%s_cpu\t%s\n' "$mode" "$kind" "$wall" "$mode" "$kind" "$cpu" >>"$results"
}
# timer.py LOG cmd...: prints the wall and CPU ms (microsecond clocks) of cmd, its stderr to LOG.
cat >"$tmp/timer.py" <<'PY'
import resource, subprocess, sys, time
start = time.perf_counter()
with open(sys.argv[1], "w") as log:
    subprocess.run(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=log, check=True)
wall = (time.perf_counter() - start) * 1000
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{wall:.1f} {(usage.ru_utime + usage.ru_stime) * 1000:.1f}")
PY

# round MODE N: a fresh store with the base, a timed cold build, then timed warm rebuilds.
round() {
    local mode="$1" n="$2" store="$work/store-$1"
    rm -rf "$store"
    as "$mode" "$work/lamina" --store "$store" build "$work/base" --tag busybox:bench >/dev/null 2>&1
    sync
    timed "$mode" cold "$tmp/$mode-$n.log" "$work/lamina" --store "$store" build "$work/app" --tag app:bench
    for _ in $(seq 1 "$warm"); do
        timed "$mode" warm /dev/null "$work/lamina" --store "$store" build "$work/app" --tag app:bench
    done
    du -sk "$store" | awk -v m="$mode" '{print m "\tstore_kib\t" $1}' >>"$results"
}

for n in $(seq 1 "$runs"); do
    if (( n % 2 )); then order=(rootful rootless); else order=(rootless rootful); fi
    for mode in "${order[@]}"; do
        round "$mode" "$n"
        echo "round $n $mode: cold $(grep -P "^$mode\tcold\t" "$results" | tail -n1 | cut -f3) ms"
    done
done

python3 - "$results" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
med = {}
for kind in ("cold", "cold_cpu", "warm", "warm_cpu", "store_kib"):
    for mode in ("rootful", "rootless"):
        vals = [float(v) for m, k, v in rows if m == mode and k == kind]
        med[mode, kind] = statistics.median(vals)
        print(f"{kind:9} {mode:8} median {med[mode, kind]:9.0f}  (n={len(vals)}, min {min(vals):.0f}, max {max(vals):.0f})")
    print(f"{kind:9} rootless/rootful {med['rootless', kind] / med['rootful', kind]:.3f}")
EOF
