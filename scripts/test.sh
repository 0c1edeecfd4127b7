#!/usr/bin/env bash
# Quick start, step 2: the whole test suite.
#
#   scripts/test.sh             # as root, or as a user with sudo
#
# Installs what is missing, then runs, in order: formatting and lints, the pure Rust unit tests,
# the #[pg_test] tests inside PostgreSQL, and the end-to-end tests (auth_client against
# throwaway clusters as non-superuser roles, and the pg_regress golden files). Exits non-zero on
# the first failure and leaves no cluster running. A running demo cluster of scripts/setup.sh is
# stopped before the first install.
source "$(dirname "$0")/lib.sh"

ensure_all

TEST_TMP="$(mktemp -d /tmp/auth_pg-tests.XXXXXX)"
chmod 0755 "$TEST_TMP"
export AUTH_PG_TEST_TMPDIR="$TEST_TMP"

# Stops every cluster under $TEST_TMP, then removes it. Runs from the EXIT trap: quiet, and never
# fails. Clusters are found by their postmaster.pid at any depth: the end-to-end tests' are in
# $TEST_TMP/*/data, pgrx's in $TEST_TMP/pgrx/data/15-<pid> (pgrx adds a directory per run under
# --pgdata). pgrx's runs as postgres even for a sudo user and its directory is readable only by
# postgres, hence find as root, and pg_ctl as each directory's owner (data_dir_stop).
cleanup() {
    local pid_file
    while IFS= read -r -d '' pid_file; do
        data_dir_stop "$(dirname "$pid_file")" immediate
    done < <(as_root find "$TEST_TMP" -name postmaster.pid -print0 2>/dev/null)
    # A postmaster whose pid file is gone: SIGQUIT is an immediate shutdown. Then wait for them
    # all to exit before removing their files. "[p]ostgres" keeps the pattern from matching the
    # sudo process running pkill.
    local pattern="[p]ostgres -D $TEST_TMP/"
    as_root pkill -QUIT -f "$pattern" >/dev/null 2>&1 || true
    for _ in {1..100}; do
        pgrep -f "$pattern" >/dev/null 2>&1 || break
        sleep 0.1
    done
    as_root rm -rf "$TEST_TMP" >/dev/null 2>&1 || true
}
trap cleanup EXIT

SECONDS=0
declare -a TIMINGS
step() {
    local name="$1"
    shift
    log "$name"
    local start=$SECONDS
    "$@"
    TIMINGS+=("$(printf '%5ds  %s' $((SECONDS - start)) "$name")")
}

cd "$AUTH_PG_ROOT"

step "Formatting" cargo fmt --all --check
step "Lints (clippy, warnings are errors)" cargo clippy --workspace --all-targets --quiet -- -D warnings
step "Unit tests: pure logic, no PostgreSQL" cargo test --quiet -p auth_core -p auth_client

# The next steps install the extension (cargo pgrx test does too), rewriting the auth_pg.so a
# running demo cluster has loaded: stop the demo first.
demo_stop "the test build replaces the installed library, which a running server would crash \
on; scripts/setup.sh starts a fresh demo"

pgrx_tests() {
    local dir="$TEST_TMP/pgrx"
    mkdir -p "$dir"
    as_root chown postgres "$dir"
    (cd auth_pg && cargo pgrx test "pg${PG_MAJOR}" --runas postgres --pgdata "$dir/data")
}
step "#[pg_test] tests inside PostgreSQL" pgrx_tests

step "Install the extension" install_extension debug

check_scripts() {
    # CVE-2022-2625: an extension script must never replace an object someone else created.
    local script
    script="$("$PG_CONFIG" --sharedir)/extension/auth_pg--0.1.0.sql"
    if grep -n -i "or replace" "$script"; then
        die "the extension script uses CREATE OR REPLACE"
    fi
}
step "Extension script never uses CREATE OR REPLACE" check_scripts

step "End-to-end and SQL regression tests" cargo test --quiet -p auth_pg_e2e

log "All tests passed in ${SECONDS}s"
printf '%s\n' "${TIMINGS[@]}" >&2
