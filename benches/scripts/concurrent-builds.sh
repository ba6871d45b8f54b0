#!/usr/bin/env bash
# Many builds on one store at once (issue 13): wall time of 1, 2, 4 and 8 `lamina build`
# processes started together, each building its own definition (a busybox base, a COPY and
# a CPU-light `RUN sleep 2`), against one build alone. With the store held only while its
# index is read or written, N builds take about as long as one; serialized, N times as long.
#
# Usage: [LAMINA=path/to/lamina] benches/scripts/concurrent-builds.sh [--rounds N]
#   LAMINA defaults to $CARGO_TARGET_DIR/release/lamina.
# Needs: root (RUN steps), runc, /bin/busybox, python3.
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
rounds=3
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        *) echo "unknown argument $1 (expected --rounds N)" >&2; exit 2 ;;
    esac
done
LAMINA="${LAMINA:-${CARGO_TARGET_DIR:-$repo/target}/release/lamina}"
[[ -x "$LAMINA" ]] || { echo "no lamina binary at $LAMINA: set LAMINA or build it with cargo build --release -p lamina-cli" >&2; exit 1; }
[[ "$(id -u)" -eq 0 ]] || { echo "RUN steps need root: run this as root" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
store="$tmp/store"
rootfs="$tmp/base/rootfs"
mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/tmp"
cp /bin/busybox "$rootfs/bin/busybox"
for applet in sh sleep echo cat; do ln -sf busybox "$rootfs/bin/$applet"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$rootfs/etc/passwd"
printf 'FROM scratch\nCOPY rootfs /\n' >"$tmp/base/Dockerfile"
"$LAMINA" --store "$store" build "$tmp/base" --tag bench-base:1 --progress plain >/dev/null

python3 - "$LAMINA" "$store" "$tmp" "$rounds" <<'EOF'
import statistics, subprocess, sys, time, os
lamina, store, tmp, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
serial = 0
def build_all(n, round_no):
    global serial
    procs = []
    for i in range(n):
        serial += 1
        ctx = os.path.join(tmp, f"def-{serial}")
        os.makedirs(ctx, exist_ok=True)
        # A new definition every time: nothing is cached.
        with open(os.path.join(ctx, "Dockerfile"), "w") as f:
            f.write(f"FROM bench-base:1\nCOPY Dockerfile /def\nRUN sleep 2 && echo {serial} > /n\n")
        procs.append(subprocess.Popen([lamina, "--store", store, "build", ctx, "--progress", "plain"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            sys.exit(f"a build failed: {err.decode()}")
results = {}
for r in range(rounds):
    for n in (1, 2, 4, 8):
        start = time.perf_counter()
        build_all(n, r)
        results.setdefault(n, []).append(time.perf_counter() - start)
one = statistics.median(results[1])
for n, t in sorted(results.items()):
    m = statistics.median(t)
    print(f"{n} concurrent builds: median {m:.2f} s (min {min(t):.2f}), {m / one:.2f}x one build, {rounds} rounds")
print("load average:", open("/proc/loadavg").read().split()[:3])
EOF
