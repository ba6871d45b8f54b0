#!/usr/bin/env bash
# "New machine" rebuild from a registry cache (issue 15): a definition with real RUN work (a
# few seconds of CPU and ~20 MB written per step) on the ~300 MB Debian base, built once with
# its cache exported to a local registry, then rebuilt where nothing of it is cached:
#   lamina:   a fresh store holding only the base (imported from a docker-archive), with
#             `--cache-from REG/cache-lamina:main` (written by `--cache-to ...,mode=max`);
#   BuildKit: dockerd's, after `docker builder prune -af` and removal of the built image (its
#             base stays loaded), with `--cache-from REG/app-buildkit:1` (the image pushed
#             after a build with BUILDKIT_INLINE_CACHE=1).
# Figures: wall time, whether any step ran, and the bytes the registry sent (a counting TCP
# proxy in front of it: byte_proxy.py). Goal: no step runs, wall time <= 0.5x BuildKit's.
#
# Usage: [LAMINA=path/to/lamina] benches/scripts/remote-cache.sh [--runs N] [--keep]
# Needs: root, debootstrap (for the base, made once), docker.io (dockerd 20.10, client
# /usr/bin/docker), docker-registry, runc, python3.
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
source "$repo/benches/scripts/cold-lib.sh"
source "$repo/benches/scripts/registry-lib.sh"
parse_only_common_args "$@"

ensure_lamina
ensure_bench_base
start_dockerd

# The registry, and the counting proxy every client goes through.
start_registry registry
proxy_port="$(free_port)"
counts="$tmp/proxy-bytes"
python3 "$repo/benches/scripts/byte_proxy.py" "$proxy_port" "127.0.0.1:$registry_port" "$counts" &
pids+=($!)
REG="127.0.0.1:$proxy_port"
for i in $(seq 100); do
    if curl -fsS "http://$REG/v2/" >/dev/null 2>&1; then break; fi
    [[ $i -lt 100 ]] || { cat "$tmp/registry/log" >&2; echo "the registry did not start" >&2; exit 1; }
    sleep 0.1
done
sent() { cut -d' ' -f1 "$counts"; }

base_ref="$REG/bench-base:bookworm"
log "pushing the base to $base_ref (docker push)"
dk tag "$BASE_IMAGE" "$base_ref"
dk push -q "$base_ref" >/dev/null

ctx="$tmp/ctx"
mkdir -p "$ctx"
step() {
    # ~3 s of CPU and 20 MB of incompressible output, different per step.
    echo "RUN python3 -c \"import os; s=sum(i*i for i in range(25000000)); open('/sum$1','w').write(str(s)); open('/data$1','wb').write(os.urandom(20<<20))\""
}
{
    echo "FROM $base_ref"
    step 1
    step 2
    step 3
    echo "ENV BENCH=done"
} >"$ctx/Dockerfile"

results="$tmp/results.tsv"
: >"$results"

# The writers: one build each, cache exported.
log "lamina: first build, --cache-to $REG/cache-lamina:main,mode=max"
writer="$tmp/writer-store"
"$LAMINA_BIN" --store "$writer" image import "$base_archive" "$base_ref" >/dev/null
"$LAMINA_BIN" --store "$writer" build "$ctx" --progress plain \
    --cache-to "$REG/cache-lamina:main,mode=max" >"$tmp/lamina-writer.log" 2>&1 \
    || { cat "$tmp/lamina-writer.log" >&2; exit 1; }
log "BuildKit: first build with BUILDKIT_INLINE_CACHE=1, docker push $REG/app-buildkit:1"
dk_build "$ctx" --build-arg BUILDKIT_INLINE_CACHE=1 -t "$REG/app-buildkit:1" >"$tmp/buildkit-writer.log" \
    || { cat "$tmp/buildkit-writer.log" >&2; exit 1; }
dk push -q "$REG/app-buildkit:1" >/dev/null
# A new machine has none of it: only the registry holds the image now.
dk rmi "$REG/app-buildkit:1" >/dev/null
dk builder prune -af >/dev/null

lamina_round() {
    local store="$tmp/reader-store" log="$tmp/lamina-$1.log" before start wall
    rm -rf "$store"
    "$LAMINA_BIN" --store "$store" image import "$base_archive" "$base_ref" >/dev/null
    sync
    before="$(sent)"
    start=$(now_ms)
    "$LAMINA_BIN" --store "$store" build "$ctx" --progress json \
        --cache-from "$REG/cache-lamina:main" >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
    wall=$(($(now_ms) - start))
    sleep 0.3
    local ran
    ran="$(python3 -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]; r=[x for x in r if x.get("event")=="result"][0]; print(r["steps"]-r["cached"])' "$log")"
    printf 'lamina\twall (ms)\t%s\nlamina\tregistry bytes sent\t%s\nlamina\tsteps run\t%s\n' \
        "$wall" "$(($(sent) - before))" "$ran" >>"$results"
}

buildkit_round() {
    local log="$tmp/buildkit-$1.log" before start wall
    dk_cold app-buildkit:new
    sync
    before="$(sent)"
    start=$(now_ms)
    dk_build "$ctx" --cache-from "$REG/app-buildkit:1" -t app-buildkit:new >"$log" \
        || { cat "$log" >&2; exit 1; }
    wall=$(($(now_ms) - start))
    sleep 0.3
    local ran
    ran="$(grep -c '^#[0-9]* \[[0-9]/[0-9]\] RUN' "$log" || true)"
    ran=$((ran - $(grep -c 'CACHED' "$log" || true)))
    printf 'buildkit\twall (ms)\t%s\nbuildkit\tregistry bytes sent\t%s\nbuildkit\tsteps run\t%s\n' \
        "$wall" "$(($(sent) - before))" "$((ran < 0 ? 0 : ran))" >>"$results"
}

machine_line >&2
alternate_rounds "$runs"

echo
machine_line
echo "lamina: $LAMINA ($("$LAMINA_BIN" --version)); BuildKit: dockerd $(dk version --format '{{.Server.Version}}')"
echo "base: $BASE_IMAGE, $(du -b "$base_rootfs_tar" | cut -f1) bytes of tar; $runs alternating rounds"
echo
sed 's/^/    /' "$ctx/Dockerfile"
echo
python3 - "$results" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    tool, what, value = line.rstrip("\n").split("\t")
    rows.setdefault((what, tool), []).append(float(value))
whats = sorted({w for w, _ in rows})
print(f"| {'measure':<22} | {'lamina (median, all)':<36} | {'BuildKit (median, all)':<36} |")
print(f"|{'-' * 24}|{'-' * 38}|{'-' * 38}|")
for what in whats:
    cells = []
    for tool in ("lamina", "buildkit"):
        v = rows.get((what, tool), [])
        cells.append(f"{statistics.median(v):.0f} ({', '.join(f'{x:.0f}' for x in v)})" if v else "-")
    print(f"| {what:<22} | {cells[0]:<36} | {cells[1]:<36} |")
lw = statistics.median(rows[("wall (ms)", "lamina")])
bw = statistics.median(rows[("wall (ms)", "buildkit")])
print(f"\nlamina / BuildKit wall time: {lw / bw:.2f}x")
EOF
