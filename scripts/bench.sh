#!/usr/bin/env bash
# Benchmarks: installs what they need (redis-server for the cache baseline), builds and installs
# the extension in release mode, then runs the load run and the criterion benches. Each starts a
# throwaway cluster of its own, loads 1 000 000 tokens (AUTH_PG_BENCH_TOKENS to change) and
# stops it at the end. Results go to stdout (load run) and target/criterion (criterion).
#
#   scripts/bench.sh [loadrun arguments...]      # e.g. --seconds 10 --rounds 3
source "$(dirname "$0")/lib.sh"

DEBIAN_PACKAGES+=(redis-server)
ensure_all
install_extension release
cd "$AUTH_PG_ROOT"
log "Load run (throughput, p50, p99 beside the baselines)"
cargo run --quiet --release -p auth_pg_benches --bin loadrun -- --redis "$@"
log "Criterion benches"
cargo bench --quiet -p auth_pg_benches --bench tokens
