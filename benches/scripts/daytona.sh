#!/usr/bin/env bash
# Issue 12's reported Daytona workload: the definition Daytona's SDK writes as
#     Image.debian_slim("3.12").pip_install(["numpy"]).workdir("/app")
#          .add_local_file("main.py", "/app/main.py")
# which lamina_spec's builder renders, as the SDK does, to the Dockerfile below (see
# crates/lamina-spec/src/image/tests/daytona.rs). Built cold (then warm) by lamina and by
# BuildKit FROM the same local python image; then both images' trees are compared file for
# file through `docker export` (`.pyc` files, `__pycache__` and what `docker create` adds
# aside).
#
# The python image is made here, never pulled: the bench base of cold-lib.sh (debootstrap
# of bookworm with python3) plus python3-pip, `python` -> python3, the host's CA bundle
# installed (update-ca-certificates: the machine reaches the package index through a
# re-signing proxy) and pip's "externally managed" marker removed (python:*-slim images have
# their own Python without one), tagged python:3.12.10-slim-bookworm in both tools. Network
# (the Debian mirror of the apt sources, the Python package index) is in the timed part:
# report medians.
#
# Usage: [LAMINA=path/to/lamina] benches/scripts/daytona.sh [--runs N] [--keep]
#   LAMINA defaults to the release build of this checkout (cargo build --release -p lamina-cli).
#   --runs: alternating rounds (default 3).
# Needs: root, debootstrap, docker.io (dockerd 20.10, client /usr/bin/docker), runc, python3,
# GNU time.
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
source "$repo/benches/scripts/cold-lib.sh"
parse_only_common_args "$@"

ensure_lamina
ensure_bench_base
start_dockerd
report="$repo/benches/scripts/cold_report.py"
PY_IMAGE=python:3.12.10-slim-bookworm

# The python image, built once by BuildKit from the bench base (not timed).
mkdir -p "$tmp/py-ctx"
cp /etc/ssl/certs/ca-certificates.crt "$tmp/py-ctx/host-ca.crt"
cat >"$tmp/py-ctx/Dockerfile" <<EOF
FROM $BASE_IMAGE
COPY host-ca.crt /usr/local/share/ca-certificates/host-ca.crt
RUN update-ca-certificates \\
    && apt-get update && apt-get install -y --no-install-recommends python3-pip \\
    && rm -rf /var/lib/apt/lists/* \\
    && ln -s python3 /usr/bin/python && rm -f /usr/lib/python3*/EXTERNALLY-MANAGED
EOF
start=$(now_ms)
dk_build "$tmp/py-ctx" -t "$PY_IMAGE" >"$tmp/py-base.log" \
    || { cat "$tmp/py-base.log" >&2; echo "building the python image failed" >&2; exit 1; }
dk save -o "$tmp/py-base.tar" "$PY_IMAGE"
log "python image built and saved: $(($(now_ms) - start)) ms, $(du -b "$tmp/py-base.tar" | cut -f1) bytes"

ctx="$tmp/ctx"
mkdir -p "$ctx"
printf 'import numpy\nprint(numpy.__version__)\n' >"$ctx/main.py"
cat >"$ctx/Dockerfile" <<'EOF'
FROM python:3.12.10-slim-bookworm
RUN apt-get update
RUN apt-get install -y gcc gfortran build-essential
RUN pip install --upgrade pip
RUN echo 'debconf debconf/frontend select Noninteractive' | debconf-set-selections
RUN python -m pip install numpy
WORKDIR /app
COPY ["main.py", "/app/main.py"]
EOF

results="$tmp/results.tsv"
: >"$results"

lamina_round() { # ROUND
    rm -rf "$tmp/store"
    local start
    start=$(now_ms)
    "$LAMINA_BIN" --store "$tmp/store" image import "$tmp/py-base.tar" "$PY_IMAGE" >/dev/null
    log "lamina image import of the python image into a fresh store: $(($(now_ms) - start)) ms"
    sync
    local mode
    for mode in cold warm; do
        timed_lamina lamina "daytona $mode" "$tmp/lamina-$mode-$1.log" \
            --store "$tmp/store" build "$ctx" --tag bench-daytona:lamina
    done
}

buildkit_round() { # ROUND
    dk_cold bench-daytona:buildkit bench-daytona:lamina
    sync
    local mode
    for mode in cold warm; do
        timed_buildkit "daytona $mode" "$tmp/buildkit-$mode-$1.log" "$ctx" -t bench-daytona:buildkit
    done
}

machine_line >&2
alternate_rounds "$runs"

# The trees, both through `docker export` of a created container: lamina's image loaded into
# the same dockerd from its docker-archive export.
"$LAMINA_BIN" --store "$tmp/store" image export bench-daytona:lamina --format docker-archive \
    -o "$tmp/lamina-image.tar" >/dev/null
dk load -i "$tmp/lamina-image.tar" >/dev/null
for tool in lamina buildkit; do
    dk rm -f "tree-$tool" >/dev/null 2>&1 || true
    dk create --name "tree-$tool" "bench-daytona:$tool" true >/dev/null
    dk export "tree-$tool" >"$tmp/tree-$tool.tar"
    dk rm -f "tree-$tool" >/dev/null
done
compare="$(python3 - "$tmp/tree-lamina.tar" "$tmp/tree-buildkit.tar" <<'EOF'
import sys, tarfile

# What `docker create` puts in every container, and Python's byte-code caches.
ADDED = {".dockerenv", "etc/hostname", "etc/hosts", "etc/resolv.conf", "etc/mtab", "dev", "proc", "sys"}

def entries(path):
    out = {}
    with tarfile.open(path) as tar:
        for m in tar:
            name = m.name.rstrip("/")
            top = name.split("/")[0]
            if name in ADDED or top in ("dev", "proc", "sys") or name.endswith(".pyc") or "__pycache__" in name.split("/"):
                continue
            kind = "d" if m.isdir() else "l" if m.issym() else "h" if m.islnk() else "f" if m.isfile() else "o"
            out[name] = (kind, m.mode, m.uid, m.gid, m.size if kind == "f" else 0, m.linkname)
    return out

a, b = entries(sys.argv[1]), entries(sys.argv[2])
only_a = sorted(set(a) - set(b))
only_b = sorted(set(b) - set(a))
differ = sorted(n for n in set(a) & set(b) if a[n] != b[n])
print(f"entries: lamina {len(a)}, BuildKit {len(b)}; only in lamina {len(only_a)}, only in BuildKit {len(only_b)}, differing {len(differ)}")
for n in only_a[:15]:
    print(f"  only in lamina: {n}")
for n in only_b[:15]:
    print(f"  only in BuildKit: {n}")
for n in differ[:15]:
    print(f"  differs: {n}: lamina {a[n]}, BuildKit {b[n]}")
EOF
)"

echo
machine_line
echo "lamina: $LAMINA ($("$LAMINA_BIN" --version)); BuildKit: dockerd $(dk version --format '{{.Server.Version}}')"
echo "base: $PY_IMAGE made from $BASE_IMAGE; $runs alternating rounds"
echo
sed 's/^/    /' "$ctx/Dockerfile"
echo
echo "trees (docker export of each image; .pyc, __pycache__ and docker's own files aside):"
echo "$compare" | sed 's/^/    /'
echo
python3 "$report" table "$results"
