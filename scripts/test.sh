#!/usr/bin/env bash
# Quick start, step 2: the whole test suite.
#
#   scripts/test.sh             # as root, or as a user with sudo
#
# Installs what is missing, then runs, in order: formatting and lints, the pure Rust unit tests,
# the #[pg_test] tests inside PostgreSQL, and the end-to-end tests (auth_client against
# throwaway clusters as non-superuser roles, and the pg_regress golden files). Exits non-zero on
# the first failure and leaves no cluster running.
source "$(dirname "$0")/lib.sh"

ensure_all

TEST_TMP="$(mktemp -d /tmp/auth_pg-tests.XXXXXX)"
chmod 0755 "$TEST_TMP"
export AUTH_PG_TEST_TMPDIR="$TEST_TMP"

cleanup() {
    local data
    for data in "$TEST_TMP"/*/data "$TEST_TMP"/pgrx/data; do
        [ -f "$data/postmaster.pid" ] || continue
        as_cluster_user "${PG_BIN}/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
    done
    # pgrx's own test cluster runs as postgres from its directory.
    pkill -u postgres -f "postgres -D $TEST_TMP" 2>/dev/null || true
    as_root rm -rf "$TEST_TMP"
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
