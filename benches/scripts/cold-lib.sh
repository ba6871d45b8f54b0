# Shared set-up of the cold-path benchmarks against BuildKit (sourced by cold-*.sh,
# store-size.sh, daytona.sh and remote-cache.sh; `repo` must be set). Provides:
#   parse_common_args ARGS...  --runs N (default 3) and --keep (keep $tmp); the rest in $extra_args
#   parse_only_common_args ARGS...  the same, any other argument an error
#   ensure_lamina              $LAMINA, else the release binary built from the checkout
#   ensure_bench_base          $base_rootfs_tar and $base_archive: a Debian bookworm root filesystem
#                              (debootstrap from the mirror in the apt sources, user `bench`,
#                              uid 1000) cached under $HOME/.cache/lamina/bench-bases, and the
#                              `docker save` archive of it as image bench-base:bookworm
#   start_dockerd              a private dockerd (own config, socket, data root; stopped by PID
#                              at exit) holding the base; `dk` runs its client, `dk_build`
#                              a BuildKit build, `dk_cold` empties its build cache
#   lamina_fresh_store DIR     a new store holding only the imported base
#   lamina_ready_base DIR      an untimed first RUN on the base there (its tree made ready)
#   timed_lamina, timed_buildkit  a build timed from outside (lamina's with max RSS and CPU
#                              seconds), its figures appended to $results
#   alternate_rounds N         N rounds of the script's lamina_round and buildkit_round,
#                              alternating which goes first
# Everything lives in $tmp, removed at exit (with every process in $pids stopped by PID and
# every mount under $tmp unmounted).
set -euo pipefail

BASE_IMAGE=bench-base:bookworm
source "$repo/.ci/lib.sh"

runs=3
keep=0
extra_args=()
parse_common_args() {
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --runs) runs="$2"; shift 2 ;;
            --keep) keep=1; shift ;;
            *) extra_args+=("$1"); shift ;;
        esac
    done
}

parse_only_common_args() {
    parse_common_args "$@"
    if [[ ${#extra_args[@]} -ne 0 ]]; then
        echo "unknown arguments: ${extra_args[*]} (expected --runs N, --keep)" >&2
        exit 2
    fi
}

if [[ "$(id -u)" -ne 0 ]]; then
    echo "these benchmarks run RUN steps and a private dockerd: run as root" >&2
    exit 1
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/lamina-cold.XXXXXX")"
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    # Mounts left under $tmp (overlays of an interrupted build, dockerd's), deepest first.
    { grep -o " $tmp[^ ]*" /proc/mounts || true; } | sort -r | while read -r mnt; do umount -l "$mnt" || true; done
    if [[ $keep -eq 1 ]]; then echo "kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# The lamina binary under test: $LAMINA, else the release build of this checkout.
ensure_lamina() {
    if [[ -z "${LAMINA:-}" ]]; then
        log "building the release lamina binary (cargo build --release -p lamina-cli)"
        (cd "$repo" && ensure_rocksdb_lib && cargo build --quiet --release -p lamina-cli --bin lamina)
        LAMINA="${CARGO_TARGET_DIR:-$repo/target}/release/lamina"
    fi
    [[ -x "$LAMINA" ]] || { echo "no lamina binary at $LAMINA: set LAMINA" >&2; exit 1; }
    # A copy, so that a build replacing the binary cannot change it mid-run.
    cp "$LAMINA" "$tmp/lamina"
    LAMINA_BIN="$tmp/lamina"
    log "lamina: $LAMINA ($("$LAMINA_BIN" --version))"
}

# $GEN_TREE: the release build of the benches' tree generator.
ensure_gen_tree() {
    (cd "$repo" && ensure_rocksdb_lib && cargo build --quiet --release -p lamina-benches --bin gen-tree)
    GEN_TREE="${CARGO_TARGET_DIR:-$repo/target}/release/gen-tree"
}

# The first http(s) Debian mirror serving bookworm in the apt sources (one-line and deb822).
bookworm_mirror() {
    python3 - /etc/apt/sources.list /etc/apt/sources.list.d/* <<'EOF'
import sys
for path in sys.argv[1:]:
    try:
        text = open(path).read()
    except OSError:
        continue
    if path.endswith(".sources"):
        for stanza in text.split("\n\n"):
            f = {}
            for line in stanza.splitlines():
                if ":" in line and not line.startswith("#"):
                    k, v = line.split(":", 1)
                    f[k.strip()] = v.split()
            if "deb" in f.get("Types", []) and "bookworm" in f.get("Suites", []):
                uri = f.get("URIs", [""])[0]
                if uri.startswith("http"):
                    print(uri.rstrip("/")); sys.exit(0)
    elif path.endswith(".list"):
        for line in text.splitlines():
            w = [x for x in line.split() if not x.startswith("[")]
            if len(w) >= 3 and w[0] == "deb" and w[1].startswith("http") and w[2] == "bookworm":
                print(w[1].rstrip("/")); sys.exit(0)
sys.exit("no apt source serves Debian bookworm: add one to /etc/apt/sources.list")
EOF
}

# The bench base, made once per machine and cached: debootstrap's default variant with
# python3 and ca-certificates, apt's package lists kept (as debootstrap leaves them), a user
# `bench` (uid 1000): ~290 MB. BENCH_BASE_VARIANT=minbase makes a smaller one.
ensure_bench_base() {
    local variant="${BENCH_BASE_VARIANT:-default}"
    local cache="$HOME/.cache/lamina/bench-bases" name="debian-bookworm-$variant-py3"
    local dir="$cache/$name"
    base_rootfs_tar="$dir/rootfs.tar"
    base_archive="$dir/docker-archive.tar"
    mkdir -p "$cache"
    exec {base_lock}>"$cache/lock"
    flock "$base_lock"
    if [[ ! -f "$base_rootfs_tar" ]]; then
        ensure_debian_packages debootstrap
        local work="$cache/$name.tmp" mirror
        rm -rf "$work"
        mkdir -p "$work"
        mirror="$(bookworm_mirror)"
        log "debootstrap bookworm ($variant) into $work (a few minutes)"
        local variant_arg=()
        [[ "$variant" = default ]] || variant_arg=("--variant=$variant")
        debootstrap "${variant_arg[@]}" --include=python3,ca-certificates bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
            tail -n 20 "$work/debootstrap.log" >&2
            echo "debootstrap failed (log above)" >&2
            exit 1
        }
        # apt inside builds uses the same mirror (debootstrap wrote it to sources.list).
        chroot "$work/rootfs" useradd --create-home --uid 1000 --shell /bin/bash bench
        rm -rf "$work/rootfs"/var/cache/apt/archives/*.deb
        tar --numeric-owner --sort=name -C "$work/rootfs" \
            --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -cf "$work/rootfs.tar" .
        rm -rf "$work/rootfs"
        mv "$work" "$dir"
    fi
    flock -u "$base_lock"
    log "base: $base_rootfs_tar ($(du -b "$base_rootfs_tar" | cut -f1) bytes of tar)"
}

# A private dockerd: own config file, socket, data root and exec root; no iptables, no bridge
# (builds use --network host). `dk` is its client.
start_dockerd() {
    local d="$tmp/docker"
    mkdir -p "$d"
    docker_data="$d/data"
    docker_sock="$d/docker.sock"
    cat >"$d/daemon.json" <<EOF
{"iptables": false, "bridge": "none", "data-root": "$docker_data", "exec-root": "$d/exec", "pidfile": "$d/docker.pid"}
EOF
    dockerd --config-file "$d/daemon.json" -H "unix://$docker_sock" >"$d/dockerd.log" 2>&1 &
    docker_pid=$!
    pids+=("$docker_pid")
    local i
    for i in $(seq 150); do
        if dk version >/dev/null 2>&1; then break; fi
        if ! kill -0 "$docker_pid" 2>/dev/null || [[ $i -eq 150 ]]; then
            tail -n 20 "$d/dockerd.log" >&2
            echo "dockerd did not start (log above)" >&2
            exit 1
        fi
        sleep 0.2
    done
    log "dockerd $(dk version --format '{{.Server.Version}}') on $docker_sock, data root $docker_data"
    # What an empty data root takes (containerd and BuildKit databases, network state).
    docker_empty_bytes="$(du -sb "$docker_data" | cut -f1)"
    if [[ ! -f "$base_archive" ]]; then
        log "making the docker-archive of the base (docker import, docker save)"
        dk import "$base_rootfs_tar" "$BASE_IMAGE" >/dev/null
        dk save -o "$base_archive.tmp" "$BASE_IMAGE"
        mv "$base_archive.tmp" "$base_archive"
    else
        local start
        start=$(now_ms)
        dk load -q -i "$base_archive" >/dev/null
        log "docker load of the base: $(($(now_ms) - start)) ms"
    fi
}

dk() { /usr/bin/docker -H "unix://$docker_sock" "$@"; }
# A BuildKit build of context $1 (more flags after), plain progress on stdout.
dk_build() {
    local ctx="$1"
    shift
    DOCKER_BUILDKIT=1 /usr/bin/docker -H "unix://$docker_sock" build --network host --progress=plain "$@" "$ctx" 2>&1
}
# Empties BuildKit's cache and removes the images named (the base stays).
dk_cold() {
    dk rmi -f "$@" >/dev/null 2>&1 || true
    dk builder prune -af >/dev/null
}

# A new store at $1 holding only the base, imported from the docker-archive.
lamina_fresh_store() {
    rm -rf "$1"
    local start
    start=$(now_ms)
    "$LAMINA_BIN" --store "$1" image import "$base_archive" "$BASE_IMAGE" >/dev/null
    log "lamina image import of the base into a fresh store: $(($(now_ms) - start)) ms"
}

# Lets lamina make the base's tree ready in store $1, untimed, as `docker load` leaves
# Docker's base unpacked: a build of `FROM base` + `RUN true` in a context of its own.
lamina_ready_base() {
    mkdir -p "$tmp/ready-ctx"
    printf 'FROM %s\nRUN true\n' "$BASE_IMAGE" >"$tmp/ready-ctx/Dockerfile"
    local start
    start=$(now_ms)
    "$LAMINA_BIN" --store "$1" build "$tmp/ready-ctx" --progress plain >"$tmp/ready.log" 2>&1 \
        || { cat "$tmp/ready.log" >&2; echo "lamina build of the base-ready step failed" >&2; exit 1; }
    log "lamina: base made ready (FROM base, RUN true): $(($(now_ms) - start)) ms"
}

# timed_lamina TOOL LABEL LOG ARGS...: runs `lamina ARGS... --progress json` under GNU time,
# output in LOG, and appends to $results "LABEL wall (ms)", "LABEL max RSS (MB)" and
# "LABEL CPU user+sys (s)" (lamina and the processes it waited for, runc included), then its
# steps as "LABEL: STEP". CPU seconds move less with the disk's load than wall time.
timed_lamina() {
    local tool="$1" label="$2" log="$3" start
    shift 3
    start=$(now_ms)
    /usr/bin/time -f '%M %U %S' -o "$log.time" "$LAMINA_BIN" "$@" --progress json >"$log" 2>&1 \
        || { cat "$log" >&2; echo "lamina $* failed" >&2; exit 1; }
    local wall=$(($(now_ms) - start)) rss user sys
    read -r rss user sys < <(tail -n 1 "$log.time")
    printf '%s\t%s wall (ms)\t%s\n' "$tool" "$label" "$wall" >>"$results"
    printf '%s\t%s max RSS (MB)\t%s\n' "$tool" "$label" "$(python3 -c "print($rss / 1024)")" >>"$results"
    printf '%s\t%s CPU user+sys (s)\t%s\n' "$tool" "$label" "$(python3 -c "print($user + $sys)")" >>"$results"
    python3 "$repo/benches/scripts/cold_report.py" steps lamina "$log" | sed "s/^/$tool\t$label: /" >>"$results"
}

# timed_buildkit LABEL LOG CTX ARGS...: a BuildKit build (dk_build) timed from outside; appends
# "LABEL wall (ms)" and its steps as "LABEL: STEP" to $results for tool buildkit.
timed_buildkit() {
    local label="$1" log="$2" start
    shift 2
    start=$(now_ms)
    dk_build "$@" >"$log" || { cat "$log" >&2; echo "docker build failed" >&2; exit 1; }
    printf 'buildkit\t%s wall (ms)\t%s\n' "$label" "$(($(now_ms) - start))" >>"$results"
    python3 "$repo/benches/scripts/cold_report.py" steps buildkit "$log" | sed "s/^/buildkit\t$label: /" >>"$results"
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# alternate_rounds RUNS: rounds 1..RUNS of `lamina_round N` and `buildkit_round N` (functions
# of the sourcing script), lamina first in odd rounds, BuildKit first in even ones.
alternate_rounds() {
    local round
    for round in $(seq "$1"); do
        if ((round % 2)); then lamina_round "$round"; buildkit_round "$round"
        else buildkit_round "$round"; lamina_round "$round"; fi
        log "round $round done"
    done
}

machine_line() {
    echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GB RAM, $(uname -r), $(findmnt -no FSTYPE -T "$tmp") at $tmp$(journal_note); load average $(cut -d' ' -f1-3 /proc/loadavg)"
}

# ", no journal (...)" when $tmp is on ext4 without a journal. Such an ext4 skips inodes freed
# in the last 30 s (3 min while their inode table block is dirty) when it allocates, checking
# them one by one: right after a round deleted a store, creating files is many times slower
# for whichever tool runs next. Point TMPDIR at a journaled file system for steady figures.
journal_note() {
    local dev
    dev="$(basename "$(findmnt -no SOURCE -T "$tmp")")"
    if [[ "$(cat "/sys/fs/ext4/$dev/journal_task" 2>/dev/null)" == "<none>" ]]; then
        echo ", no journal (inode allocation slows after deletions: see docs/benchmarks-cold.md)"
    fi
}
