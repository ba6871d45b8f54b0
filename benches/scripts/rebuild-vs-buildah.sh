#!/usr/bin/env bash
# Times a 10-step image build end to end through the command line: `lamina build` against
# `buildah bud` and BuildKit (`docker build` with DOCKER_BUILDKIT=1 against Debian's dockerd)
# of the same Dockerfile, each cold (--no-cache) and warm (every step cached).
# The image is the one of benches/build.rs: FROM scratch, COPY of a busybox root filesystem
# (Debian's busybox-static, every applet a symlink), then ENV, WORKDIR, COPY of a small app,
# two RUNs, LABEL, EXPOSE, USER, ENTRYPOINT. Everything is offline.
#
# Usage: [LAMINA=path/to/lamina] benches/scripts/rebuild-vs-buildah.sh [--runs N] [--cold-runs N] [--loop]
#   LAMINA defaults to $CARGO_TARGET_DIR/debug/lamina, built with `cargo test -p lamina-cli
#   --no-run` if missing (a release build would be faster; point LAMINA at one to compare).
#   --runs: timed warm runs per tool (default 20); --cold-runs: timed cold runs (default 5);
#   --loop: time in a shell loop even when hyperfine is installed.
#   BUILDAH_DRIVER (default overlay; vfs also works) and BUILDAH_ISOLATION (default oci;
#   the script falls back to chroot when oci fails) choose how buildah runs.
#   NO_BUILDKIT=1 skips BuildKit; DOCKER (default /usr/bin/docker, Debian's client, which
#   has BuildKit built in; newer clients need the buildx plugin) is the client it uses.
# BuildKit: the script starts Debian's dockerd (package docker.io) itself, on a private
# socket in the temporary directory with its own configuration file (no iptables, no
# bridge, its own data-root, exec-root and pidfile), builds with `--network host`, and stops
# it by its PID at exit; an already running docker daemon is neither used nor touched.
# Needs: root (RUN steps), runc, busybox-static, buildah, python3; hyperfine if available
# (Debian packages hyperfine and buildah are installed with apt-get when missing; without
# hyperfine the runs are timed in a shell loop).
#
# Both tools get their own storage in a temporary directory (lamina `--store`, buildah
# `--root`/`--runroot`), removed at exit. Each tool first builds the image once untimed, so
# the base layers and the tools' caches are as a developer's would be. Prints one markdown
# table row per tool and mode (median and min over the runs, ms) and the ratio of the
# warm medians.
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
runs=20
cold_runs=5
use_hyperfine=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --runs) runs="$2"; shift 2 ;;
        --cold-runs) cold_runs="$2"; shift 2 ;;
        --loop) use_hyperfine=0; shift ;;
        *) echo "unknown argument $1 (expected --runs N, --cold-runs N or --loop)" >&2; exit 2 ;;
    esac
done

if [[ "$(id -u)" -ne 0 ]]; then
    echo "RUN steps need root (overlayfs mounts and runc), as does buildah here: run as root" >&2
    exit 1
fi

# ensure_debian_packages (installs what is missing; non-zero if that fails) and the target dir.
source "$(dirname "$0")/../../.ci/lib.sh"
ensure_debian_packages runc busybox-static python3
ensure_debian_packages hyperfine || echo "hyperfine could not be installed: timing in a loop" >&2
ensure_debian_packages buildah || echo "buildah could not be installed" >&2
if [[ "${NO_BUILDKIT:-0}" != 1 ]]; then
    ensure_debian_packages docker.io || echo "docker.io could not be installed" >&2
fi
DOCKER="${DOCKER:-/usr/bin/docker}"

if [[ -z "${LAMINA:-}" ]]; then
    LAMINA="${CARGO_TARGET_DIR:-$repo/target}/debug/lamina"
    if [[ ! -x "$LAMINA" ]]; then
        echo "building lamina (cargo test -p lamina-cli --no-run)" >&2
        (cd "$repo" && ensure_rocksdb_lib && cargo test --quiet -p lamina-cli --no-run)
    fi
fi
[[ -x "$LAMINA" ]] || { echo "no lamina binary at $LAMINA: set LAMINA" >&2; exit 1; }

tmp="$(mktemp -d)"
buildah_root="$tmp/buildah-root"
docker_dir="$tmp/docker"
dockerd_pid=""
stop_dockerd() {
    [[ -n "$dockerd_pid" ]] || return 0
    kill "$dockerd_pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$dockerd_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$dockerd_pid" 2>/dev/null || true
    dockerd_pid=""
}
cleanup() {
    stop_dockerd
    if command -v buildah >/dev/null 2>&1 && [[ -d "$buildah_root" ]]; then
        buildah_cmd rm --all >/dev/null 2>&1 || true
        buildah_cmd rmi --all --force >/dev/null 2>&1 || true
    fi
    # Overlay mounts buildah may have left under the temporary directory, deepest first.
    { grep -o " $tmp[^ ]*" /proc/mounts || true; } | sort -r | while read -r mnt; do umount "$mnt" || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

# The context: the busybox root filesystem, a small app, the Dockerfile.
ctx="$tmp/ctx"
rootfs="$ctx/rootfs"
mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/tmp" "$rootfs/root" "$ctx/app/conf"
chmod 1777 "$rootfs/tmp"
cp /bin/busybox "$rootfs/bin/busybox"
for applet in $("$rootfs/bin/busybox" --list); do
    [[ "$applet" = busybox ]] || ln -s busybox "$rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\n' >"$rootfs/etc/group"
printf 'echo "$GREETING from $APP_HOME"\n' >"$ctx/app/hello.sh"
printf 'mkdir -p data\necho ready > data/state\n' >"$ctx/app/setup.sh"
printf 'port=8080\nlevel=info\n' >"$ctx/app/conf/app.conf"
cat >"$ctx/Dockerfile" <<'EOF'
FROM scratch
COPY rootfs /
ENV APP_HOME=/srv/app
WORKDIR /srv/app
COPY app /srv/app
RUN sh setup.sh
RUN echo built > /srv/app/built
LABEL org.opencontainers.image.title=bench
EXPOSE 8080
USER 1000
ENTRYPOINT ["sh", "/srv/app/hello.sh"]
EOF

# Shell-quoted command lines, for hyperfine and the loop alike.
q() { printf '%q ' "$@"; }
lamina_build=$(q "$LAMINA" --store "$tmp/lamina-store" build "$ctx" --tag bench:lamina --progress plain)
buildah_driver="${BUILDAH_DRIVER:-overlay}"
buildah_isolation="${BUILDAH_ISOLATION:-oci}"
buildah_cmd() {
    buildah --root "$buildah_root" --runroot "$tmp/buildah-run" --storage-driver "$buildah_driver" "$@"
}
buildah_line() {
    q buildah --root "$buildah_root" --runroot "$tmp/buildah-run" --storage-driver "$buildah_driver" \
        bud --layers --isolation "$buildah_isolation" -t bench:buildah "$@" "$ctx"
}

# time_runs NAME N COMMAND: times COMMAND N times (after one untimed warm-up run) and
# appends "NAME median min" (seconds) to $tmp/results.
time_runs() {
    local name="$1" n="$2" command="$3"
    echo "timing $name ($n runs): $command" >&2
    if [[ $use_hyperfine -eq 1 ]] && command -v hyperfine >/dev/null 2>&1; then
        hyperfine --style basic --warmup 1 --runs "$n" --export-json "$tmp/$name.json" \
            -n "$name" "$command" >&2
        python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print(sys.argv[2], r["median"], r["min"])' \
            "$tmp/$name.json" "$name" >>"$tmp/results"
    else
        bash -c "$command" >/dev/null 2>&1
        local times=() i start
        for ((i = 0; i < n; i++)); do
            start=$(date +%s%N)
            bash -c "$command" >/dev/null 2>&1
            times+=("$(( $(date +%s%N) - start ))")
        done
        python3 -c 'import statistics,sys; t=[int(x)/1e9 for x in sys.argv[2:]]; print(sys.argv[1], statistics.median(t), min(t))' \
            "$name" "${times[@]}" >>"$tmp/results"
    fi
}

: >"$tmp/results"
echo "lamina: $LAMINA" >&2
echo "first lamina build (untimed)" >&2
bash -c "$lamina_build" >"$tmp/lamina-first.log" 2>&1 || {
    cat "$tmp/lamina-first.log" >&2
    echo "lamina build failed" >&2
    exit 1
}
time_runs lamina_cold "$cold_runs" "$lamina_build --no-cache"
time_runs lamina_warm "$runs" "$lamina_build"

buildah_error=""
if ! command -v buildah >/dev/null 2>&1; then
    buildah_error="buildah is not installed and could not be installed"
else
    echo "first buildah build (untimed; $buildah_driver storage, $buildah_isolation isolation)" >&2
    if ! bash -c "$(buildah_line)" >"$tmp/buildah-first.log" 2>&1; then
        if [[ "$buildah_isolation" != chroot ]]; then
            echo "buildah with $buildah_isolation isolation failed:" >&2
            tail -n 5 "$tmp/buildah-first.log" >&2
            buildah_isolation=chroot
            echo "retrying with --isolation chroot" >&2
            bash -c "$(buildah_line)" >"$tmp/buildah-first.log" 2>&1 \
                || buildah_error="$(tail -n 5 "$tmp/buildah-first.log")"
        else
            buildah_error="$(tail -n 5 "$tmp/buildah-first.log")"
        fi
    fi
fi
if [[ -z "$buildah_error" ]]; then
    time_runs buildah_cold "$cold_runs" "$(buildah_line --no-cache)"
    time_runs buildah_warm "$runs" "$(buildah_line)"
else
    echo "buildah cannot build here; its last output:" >&2
    echo "$buildah_error" >&2
fi

# BuildKit through Debian's dockerd on a private socket.
buildkit_error=""
if [[ "${NO_BUILDKIT:-0}" == 1 ]]; then
    buildkit_error="skipped (NO_BUILDKIT=1)"
elif ! command -v dockerd >/dev/null 2>&1 || [[ ! -x "$DOCKER" ]]; then
    buildkit_error="dockerd or $DOCKER is missing (Debian package docker.io)"
else
    mkdir -p "$docker_dir/data" "$docker_dir/exec"
    printf '{"iptables": false, "bridge": "none", "data-root": "%s", "exec-root": "%s", "pidfile": "%s"}\n' \
        "$docker_dir/data" "$docker_dir/exec" "$docker_dir/dockerd.pid" >"$docker_dir/daemon.json"
    docker_host="unix://$docker_dir/docker.sock"
    dockerd --config-file "$docker_dir/daemon.json" -H "$docker_host" >"$docker_dir/dockerd.log" 2>&1 &
    dockerd_pid=$!
    for ((i = 0; i < 150; i++)); do
        DOCKER_HOST="$docker_host" "$DOCKER" version >/dev/null 2>&1 && break
        kill -0 "$dockerd_pid" 2>/dev/null || break
        sleep 0.2
    done
    if ! DOCKER_HOST="$docker_host" "$DOCKER" version >/dev/null 2>&1; then
        buildkit_error="dockerd did not start: $(tail -n 5 "$docker_dir/dockerd.log")"
    else
        buildkit_line=$(q env DOCKER_HOST="$docker_host" DOCKER_BUILDKIT=1 "$DOCKER" build --network host --progress plain -t bench:buildkit "$ctx")
        echo "first BuildKit build (untimed)" >&2
        if bash -c "$buildkit_line" >"$tmp/buildkit-first.log" 2>&1; then
            time_runs buildkit_cold "$cold_runs" "$buildkit_line --no-cache"
            time_runs buildkit_warm "$runs" "$buildkit_line"
        else
            buildkit_error="$(tail -n 5 "$tmp/buildkit-first.log")"
        fi
    fi
    stop_dockerd
fi
if [[ -n "$buildkit_error" ]]; then
    echo "BuildKit cannot build here: $buildkit_error" >&2
fi

echo
echo "load average after the runs: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "buildah: $buildah_driver storage, $buildah_isolation isolation"
echo
python3 - "$tmp/results" <<'EOF'
import sys
rows = {}
for line in open(sys.argv[1]):
    name, median, best = line.split()
    rows[name] = (float(median), float(best))
print("| tool | build | median ms | min ms |")
print("|---|---|---|---|")
for name, (median, best) in rows.items():
    tool, mode = name.split("_")
    print(f"| {tool} | {mode} | {median * 1e3:.1f} | {best * 1e3:.1f} |")
if "lamina_warm" in rows and "buildah_warm" in rows:
    ratio = rows["buildah_warm"][0] / rows["lamina_warm"][0]
    print(f"\nwarm rebuild: lamina is {ratio:.1f}x faster than buildah's cached rebuild (medians)")
if "lamina_warm" in rows and "buildkit_warm" in rows:
    ratio = rows["buildkit_warm"][0] / rows["lamina_warm"][0]
    print(f"warm rebuild: lamina is {ratio:.1f}x faster than BuildKit's cached rebuild (medians)")
if "lamina_cold" in rows and "buildah_cold" in rows:
    ratio = rows["buildah_cold"][0] / rows["lamina_cold"][0]
    print(f"cold build: buildah / lamina = {ratio:.2f} (medians)")
EOF
