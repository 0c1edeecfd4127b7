# shellcheck shell=bash
# Shared by scripts/setup.sh, scripts/test.sh, scripts/bench.sh and .ci/run: install what is
# missing, build and install the extension, and run throwaway PostgreSQL clusters.
#
# Works as root (clusters then run as the unprivileged `postgres` user, since initdb refuses
# root) and as a user with sudo (clusters run as that user; sudo installs packages and the
# extension's files).

set -euo pipefail

AUTH_PG_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_MAJOR=15
PG_BIN="/usr/lib/postgresql/${PG_MAJOR}/bin"
PG_CONFIG="${PG_BIN}/pg_config"
PGRX_VERSION=0.18.1
DEBIAN_PACKAGES=(
    "postgresql-${PG_MAJOR}" "postgresql-server-dev-${PG_MAJOR}" "postgresql-${PG_MAJOR}-cron"
    libclang-dev clang pkg-config sudo python3
)

export USER="${USER:-$(id -un)}"
export PATH="${HOME}/.cargo/bin:${PATH}"
# One target directory for every build, so pgrx is compiled once.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${AUTH_PG_ROOT}/target}"

log() { printf '\033[1;34m==>\033[0m \033[1m%s\033[0m\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" = 0 ]; }

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
    if is_root; then "$@"; else sudo "$@"; fi
}

# The operating-system user that owns and runs throwaway clusters.
cluster_os_user() {
    if is_root; then echo postgres; else id -un; fi
}

# Runs a command as the cluster's operating-system user.
as_cluster_user() {
    if is_root; then runuser -u postgres -- "$@"; else "$@"; fi
}

ensure_packages() {
    local missing=() package
    for package in "${DEBIAN_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$package")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        if ! is_root && ! command -v sudo >/dev/null; then
            die "missing Debian packages (${missing[*]}) and no sudo to install them"
        fi
        log "Installing Debian packages: ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
    # Debian's packaging may start a default cluster on port 5432; ours never use it.
    [ -x "$PG_CONFIG" ] || die "PostgreSQL ${PG_MAJOR} is not installed at ${PG_BIN}"
}

ensure_rust() {
    command -v cargo >/dev/null || die "cargo is not installed (Rust 1.95 is expected on this machine)"
}

ensure_cargo_pgrx() {
    if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
        log "Installing cargo-pgrx ${PGRX_VERSION} (takes a few minutes)"
        cargo install cargo-pgrx --version "$PGRX_VERSION" --locked --quiet
    fi
    if ! grep -qs "pg${PG_MAJOR} = \"${PG_CONFIG}\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
        log "Pointing pgrx at the system PostgreSQL ${PG_MAJOR}"
        cargo pgrx init "--pg${PG_MAJOR}" "$PG_CONFIG" >/dev/null
    fi
}

ensure_all() {
    ensure_packages
    ensure_rust
    ensure_cargo_pgrx
}

# Builds auth_pg and installs it into the system PostgreSQL. $1: "release" or "debug".
install_extension() {
    local profile_flag=()
    [ "${1:-debug}" = release ] && profile_flag=(--release)
    local sudo_flag=()
    is_root || sudo_flag=(--sudo)
    log "Building and installing the extension (${1:-debug})"
    local output
    if ! output="$(cd "$AUTH_PG_ROOT/auth_pg" && cargo pgrx install "${profile_flag[@]}" \
        "${sudo_flag[@]}" --pg-config "$PG_CONFIG" 2>&1)"; then
        printf '%s\n' "$output" >&2
        die "building or installing the extension failed"
    fi
}

# A TCP port nothing listens on (clusters listen on a Unix socket in their own directory, so
# the number only names the socket; it is still chosen free so that TCP can be turned on).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Creates a cluster in $1 (data in $1/data, socket in $1, log in $1/server.log) on port $2,
# with auth_pg preloaded and a fresh hash key, and starts it.
cluster_create_and_start() {
    local dir="$1" port="$2" user
    user="$(cluster_os_user)"
    mkdir -p "$dir"
    chmod 0700 "$dir"
    is_root && chown "$user" "$dir"
    as_cluster_user "${PG_BIN}/initdb" -D "$dir/data" -U postgres --auth=trust \
        --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    # The hash key lives in a file only the server's user can read (see README, Settings).
    as_cluster_user bash -c "umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > '$dir/data/auth_pg_hash.key'"
    as_cluster_user bash -c "cat >> '$dir/data/postgresql.conf'" <<EOF

# auth_pg throwaway cluster
port = ${port}
listen_addresses = ''
unix_socket_directories = '${dir}'
shared_preload_libraries = 'auth_pg'
auth_pg.hash_key_file = 'auth_pg_hash.key'
shared_buffers = 256MB
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    # A server started with RUST_BACKTRACE set puts Rust backtraces in error details.
    as_cluster_user env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE \
        "${PG_BIN}/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
        || { cat "$dir/server.log" >&2; die "the cluster in $dir did not start"; }
}

# Stops the server of data directory $1, if it runs, with shutdown mode $2 (default fast).
# pg_ctl runs as the directory's owner, who need not be cluster_os_user: pgrx's test cluster
# always runs as postgres, and the demo may have been started by root or by a sudo user. Never
# fails.
data_dir_stop() {
    local data="$1" mode="${2:-fast}" owner
    as_root test -f "$data/postmaster.pid" 2>/dev/null || return 0
    owner="$(as_root stat -c %U "$data" 2>/dev/null)" || return 0
    as_root runuser -u "$owner" -- "${PG_BIN}/pg_ctl" -D "$data" -m "$mode" -w stop \
        >/dev/null 2>&1 || true
}

# Stops the cluster in $1, if it runs.
cluster_stop() {
    data_dir_stop "$1/data" fast
}

# The demo cluster of scripts/setup.sh, left running until scripts/stop-demo.sh.
DEMO_DIR="${AUTH_PG_DEMO_DIR:-/tmp/auth_pg-demo}"

# Stops the demo cluster if it runs (its directory is kept). It has auth_pg.so loaded, and
# installing the extension rewrites that file in place, which crashes the running server's
# backends: setup.sh and test.sh stop it before installing. $1, if given, is logged as the reason.
demo_stop() {
    as_root test -f "$DEMO_DIR/data/postmaster.pid" 2>/dev/null || return 0
    if [ -n "${1:-}" ]; then
        log "Stopping the demo cluster in $DEMO_DIR: $1"
    fi
    cluster_stop "$DEMO_DIR"
}
