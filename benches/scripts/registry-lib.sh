# Loopback registries for the benchmarks (sourced): `tmp` must be set and `pids` be an array
# whose processes the caller stops at exit.

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Starts a registry with its own storage; sets $registry_port and $registry_pid.
start_registry() {
    local name="$1"
    registry_port="$(free_port)"
    mkdir -p "$tmp/$name"
    cat >"$tmp/$name/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $tmp/$name/storage
http:
  addr: 127.0.0.1:$registry_port
EOF
    docker-registry serve "$tmp/$name/config.yml" >"$tmp/$name/log" 2>&1 &
    registry_pid=$!
    pids+=("$registry_pid")
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$registry_port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "registry $name did not start:" >&2
    cat "$tmp/$name/log" >&2
    exit 1
}

# stop_registry PID NAME: stops the registry and removes its storage.
stop_registry() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    rm -rf "$tmp/$2"
}
