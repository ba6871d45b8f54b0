# Shared set-up for the README's commands: a persistent target directory outside the clone
# (RocksDB's C++ build is slow; only the first build on a machine should pay for it) and the
# Debian packages the commands need, installed only when missing.

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lamina/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
mkdir -p "$CARGO_TARGET_DIR"

# ensure_debian_packages CMD=PACKAGE...: installs PACKAGE when CMD is not on PATH.
ensure_debian_packages() {
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair%%=*}" >/dev/null 2>&1 || missing+=("${pair#*=}")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# ensure_cargo_tool BINARY CRATE: installs CRATE from the Rust crate registry when missing.
ensure_cargo_tool() {
    command -v "$1" >/dev/null 2>&1 && return 0
    echo "installing $2"
    cargo install --locked "$2"
}

step() { printf '\n==> %s\n' "$*"; }
