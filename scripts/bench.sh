#!/usr/bin/env bash
# Benchmarks: installs what they need (redis-server for the cache baseline), builds and installs
# the extension in release mode, then runs the load runs and the criterion benches of tokens,
# API keys, sessions, permissions and JWT, and the session cleanup run. Each starts a throwaway
# cluster of its own, loads its data (AUTH_PG_BENCH_TOKENS, AUTH_PG_BENCH_ORGS, AUTH_PG_BENCH_SESSIONS to change the
# sizes) and stops it at the end. Results go to stdout (load runs, as Markdown tables) and
# target/criterion (criterion). About an hour in all on two cores.
#
#   scripts/bench.sh [loadrun arguments...]      # e.g. --seconds 10 --rounds 3
source "$(dirname "$0")/lib.sh"

DEBIAN_PACKAGES+=(redis-server)
ensure_all
demo_stop "the bench build replaces the installed library, which a running server would crash on"
install_extension release
cd "$AUTH_PG_ROOT"
cargo build --quiet --release -p auth_pg_benches --bin loadrun
loadrun=("$CARGO_TARGET_DIR/release/loadrun")
log "Load runs (throughput, p50, p99 beside the baselines)"
"${loadrun[@]}" tokens --redis "$@"
"${loadrun[@]}" api_keys "$@"
"${loadrun[@]}" sessions "$@"
"${loadrun[@]}" session_cleanup
"${loadrun[@]}" permissions "$@"
"${loadrun[@]}" jwt "$@"
"${loadrun[@]}" client_cache "$@"
log "Criterion benches"
cargo bench --quiet -p auth_pg_benches --bench tokens --bench api_keys --bench sessions \
    --bench permissions --bench jwt
