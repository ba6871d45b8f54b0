#!/usr/bin/env bash
# Export and push speed of a tree-backed layer (its tar reassembled from the unpacked tree and
# the tar-split) against the same layer kept as a blob, issue 12's "export and push stay at
# least as fast as today". The layer is the ~290 MB Debian bench base (~10,000 files) of the
# cold-path benchmarks, imported twice from the same `docker save` archive:
#   tree  imported as root: unpacked, recorded as tree + tar-split, no tar blob;
#   blob  imported by an unprivileged user (uid 65534), which does not unpack: the tar blob
#         as received (what every layer was before the tree-backed format). Its exports and
#         pushes run as that user too.
#
# Usage: [LAMINA=path/to/lamina] benches/scripts/export-tree-vs-blob.sh [--runs N] [--keep] [--cold] [--no-push]
#   LAMINA defaults to the release build of this checkout (cargo build --release -p lamina-cli).
#   --runs   timed runs per figure (default 3; 5 or more for the docs)
#   --cold   also times plain exports with the page cache dropped before each run
#            (`echo 3 > /proc/sys/vm/drop_caches`: slows everything else on the machine)
#   --no-push  skips the pushes (they need docker-registry and skopeo)
# Needs: root, setpriv, python3, GNU time; the bench base (debootstrap, docker.io the first
# time only, see cold-lib.sh); docker-registry and skopeo for the pushes.
#
# Figures (wall ms timed from outside, CPU user+sys seconds, median [min-max] of N):
#   export none   `image export --format oci-archive --compression none`, files in the page
#                 cache (every store file read first), output file removed and `sync` before
#                 each run;
#   export gzip   the first gzip export: the gzip variant is made (from the tree, or from
#                 the blob) and stored; a fresh store per run (import not timed);
#   export gzip again  the stored variant copied;
#   push gzip     `lamina push` to a fresh loopback registry (filesystem storage) of a fresh
#                 store: the gzip variant made on the way; against `skopeo copy
#                 --dest-compress-format gzip` of the plain oci-archive (same tar, same
#                 registry set-up) for reference.
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
source "$repo/benches/scripts/cold-lib.sh"
cold=0
push=1
parse_common_args "$@"
for arg in "${extra_args[@]}"; do
    case "$arg" in
        --cold) cold=1 ;;
        --no-push) push=0 ;;
        *) echo "unknown argument $arg" >&2; exit 2 ;;
    esac
done
if [[ $push -eq 1 ]]; then
    for tool in docker-registry skopeo; do
        command -v "$tool" >/dev/null 2>&1 || { echo "$tool is required (or pass --no-push)" >&2; exit 1; }
    done
fi

ensure_lamina
ensure_bench_base
# dockerd only makes the docker-archive, the first time on a machine.
[[ -f "$base_archive" ]] || start_dockerd
results="$tmp/results.tsv"
: >"$results"

# The unprivileged user needs to reach the binary, the archive and its own stores.
nobody=65534
chmod 755 "$tmp"
cp "$base_archive" "$tmp/base.tar"
chmod 644 "$tmp/base.tar"
mkdir -p "$tmp/out"
chmod 777 "$tmp/out"
as_nobody() { setpriv --reuid=$nobody --regid=$nobody --clear-groups env HOME="$tmp/out" "$@"; }
# run_as KIND CMD...: root for the tree-backed store, the unprivileged user for the blob one.
run_as() {
    local kind="$1"
    shift
    if [[ "$kind" = blob ]]; then as_nobody "$@"; else "$@"; fi
}

# fresh_store KIND DIR: a new store holding only the base, tree-backed or blob-backed.
fresh_store() {
    local kind="$1" dir="$2"
    rm -rf "$dir"
    if [[ "$kind" = blob ]]; then
        mkdir -p "$dir"
        chown $nobody:$nobody "$dir"
    fi
    run_as "$kind" "$LAMINA_BIN" --store "$dir" image import "$tmp/base.tar" "$BASE_IMAGE" >/dev/null
    # The representation is checked, not assumed: a tree-backed base has no tar blob.
    local big
    big="$(find "$dir/blobs-v1" -type f -size +100M | wc -l)"
    if [[ "$kind" = tree && "$big" -ne 0 ]] || [[ "$kind" = blob && "$big" -ne 1 ]]; then
        echo "the $kind store at $dir has $big blobs over 100 MB" >&2
        exit 1
    fi
}

warm() { find "$1" -type f -print0 | xargs -0 cat >/dev/null; }

# timed KIND LABEL CMD...: runs CMD (as run_as KIND) under GNU time; appends wall ms and
# CPU user+sys seconds to $results.
timed() {
    local kind="$1" label="$2" start wall user sys
    shift 2
    rm -f "$tmp/out/time"
    sync
    start=$(now_ms)
    run_as "$kind" /usr/bin/time -f '%U %S' -o "$tmp/out/time" "$@" >"$tmp/out/log" 2>&1 \
        || { cat "$tmp/out/log" >&2; echo "$* failed" >&2; exit 1; }
    wall=$(($(now_ms) - start))
    read -r user sys < <(tail -n 1 "$tmp/out/time")
    printf '%s\t%s wall (ms)\t%s\n' "$kind" "$label" "$wall" >>"$results"
    printf '%s\t%s CPU user+sys (s)\t%s\n' "$kind" "$label" "$(python3 -c "print($user + $sys)")" >>"$results"
}

# export_args STORE COMPRESSION OUT: the timed export's command line.
export_args() {
    args=("$LAMINA_BIN" --store "$1" image export "$BASE_IMAGE" --format oci-archive
        --compression "$2" -o "$3")
}

uptime_before="$(cut -d' ' -f1-3 /proc/loadavg)"
log "machine: $(machine_line)"
# Both stores first; then every figure alternates tree and blob runs, so a change in the
# machine's load falls on both alike.
for kind in tree blob; do
    fresh_store "$kind" "$tmp/$kind-store"
    out="$tmp/out/$kind-none.tar"
    # One untimed export first (the archive's sha256 is compared below).
    run_as "$kind" "$LAMINA_BIN" --store "$tmp/$kind-store" image export "$BASE_IMAGE" \
        --format oci-archive --compression none -o "$out" >/dev/null
    sha256sum "$out" | cut -d' ' -f1 >"$tmp/$kind-none.sha256"
    rm -f "$out"
done
for run in $(seq "$runs"); do
    for kind in tree blob; do
        out="$tmp/out/$kind-none.tar"
        warm "$tmp/$kind-store"
        export_args "$tmp/$kind-store" none "$out"
        timed "$kind" "export none" "${args[@]}"
        rm -f "$out"
    done
done
if [[ $cold -eq 1 ]]; then
    for run in $(seq "$runs"); do
        for kind in tree blob; do
            out="$tmp/out/$kind-none.tar"
            sync
            echo 3 >/proc/sys/vm/drop_caches
            export_args "$tmp/$kind-store" none "$out"
            timed "$kind" "export none, page cache dropped" "${args[@]}"
            rm -f "$out"
        done
    done
fi
for run in $(seq "$runs"); do
    for kind in tree blob; do
        store="$tmp/$kind-store"
        fresh_store "$kind" "$store"
        warm "$store"
        out="$tmp/out/$kind-gzip.tar"
        export_args "$store" gzip "$out"
        timed "$kind" "export gzip (variant made)" "${args[@]}"
        sha256sum "$out" | cut -d' ' -f1 >"$tmp/$kind-gzip.sha256"
        rm -f "$out"
        export_args "$store" gzip "$out"
        timed "$kind" "export gzip again (variant stored)" "${args[@]}"
        rm -f "$out"
    done
    log "round $run of the exports done"
done
for c in none gzip; do
    cmp -s "$tmp/tree-$c.sha256" "$tmp/blob-$c.sha256" || {
        echo "the $c archives of the two representations differ" >&2
        exit 1
    }
done
log "both representations export byte-identical archives (none and gzip)"

source "$repo/benches/scripts/registry-lib.sh"

if [[ $push -eq 1 ]]; then
    plain="$tmp/out/plain.tar"
    "$LAMINA_BIN" --store "$tmp/tree-store" image export "$BASE_IMAGE" --format oci-archive \
        --compression none -o "$plain" >/dev/null
    for run in $(seq "$runs"); do
        start_registry "skopeo-$run"
        cat "$plain" >/dev/null
        timed skopeo "push gzip (compressed on the way)" skopeo copy --quiet --dest-tls-verify=false \
            --dest-compress --dest-compress-format gzip "oci-archive:$plain" \
            "docker://127.0.0.1:$registry_port/bench/base:1"
        stop_registry "$registry_pid" "skopeo-$run"
        for kind in tree blob; do
            store="$tmp/$kind-store"
            fresh_store "$kind" "$store"
            warm "$store"
            start_registry "$kind-$run"
            timed "$kind" "push gzip (compressed on the way)" "$LAMINA_BIN" --store "$store" push \
                "$BASE_IMAGE" "127.0.0.1:$registry_port/bench/base:1"
            stop_registry "$registry_pid" "$kind-$run"
        done
    done
    log "pushes done"
fi

echo
echo "$(machine_line)"
echo "load average before: $uptime_before, after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "lamina: $LAMINA ($("$LAMINA_BIN" --version)); base: $(du -b "$base_archive" | cut -f1) bytes of docker-archive; runs: $runs"
echo
python3 - "$results" <<'EOF'
import collections, statistics, sys
rows = collections.defaultdict(lambda: collections.defaultdict(list))
order = []
for line in open(sys.argv[1]):
    tool, metric, value = line.rstrip("\n").split("\t")
    if metric not in order:
        order.append(metric)
    rows[metric][tool].append(float(value))
def cell(v):
    if not v:
        return "–"
    fmt = (lambda x: f"{x:.0f}") if max(v) >= 100 else (lambda x: f"{x:.2f}")
    return f"{fmt(statistics.median(v))} [{fmt(min(v))}–{fmt(max(v))}] ({len(v)})"
print("| figure | tree-backed | blob-backed | tree / blob | skopeo |")
print("|---|---|---|---|---|")
for metric in order:
    t, b, s = rows[metric]["tree"], rows[metric]["blob"], rows[metric]["skopeo"]
    ratio = f"{statistics.median(t) / statistics.median(b):.2f}×" if t and b else "–"
    print(f"| {metric} | {cell(t)} | {cell(b)} | {ratio} | {cell(s)} |")
EOF
