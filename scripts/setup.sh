#!/usr/bin/env bash
# Quick start, step 1: install what is missing, build and install auth_pg, start a throwaway
# cluster with the extension, and show it working.
#
#   scripts/setup.sh            # as root, or as a user with sudo
#
# The cluster lives in $AUTH_PG_DEMO_DIR (default /tmp/auth_pg-demo) and keeps running until
# scripts/stop-demo.sh. Running this again replaces it.
source "$(dirname "$0")/lib.sh"

ensure_all

# Before installing: the previous demo cluster has auth_pg.so loaded, and installing rewrites
# that file in place, which would crash its backends.
if [ -d "$DEMO_DIR" ]; then
    log "Replacing the previous demo cluster in $DEMO_DIR"
    demo_stop
    as_root rm -rf "$DEMO_DIR"
fi

install_extension release

PORT="$(free_port)"
log "Starting a throwaway cluster in $DEMO_DIR (socket $DEMO_DIR, port $PORT)"
cluster_create_and_start "$DEMO_DIR" "$PORT"

PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h "$DEMO_DIR" -p "$PORT" -U postgres)
"${PSQL[@]}" -d postgres -c "CREATE DATABASE auth_pg_demo"
"${PSQL[@]}" -d auth_pg_demo <<'SQL'
CREATE EXTENSION auth_pg;
-- Login roles for the demo: an administrator and an API server that only checks.
CREATE ROLE auth_pg_demo_admin LOGIN IN ROLE auth_pg_admin;
CREATE ROLE auth_pg_demo_app LOGIN IN ROLE auth_pg_validator;
SQL

log "Running the demo (auth_client/examples/demo.rs)"
BASE="host=$DEMO_DIR port=$PORT dbname=auth_pg_demo"
(cd "$AUTH_PG_ROOT" && cargo run --quiet --release -p auth_client --example demo -- \
    "$BASE user=auth_pg_demo_admin" "$BASE user=auth_pg_demo_app")

cat <<EOF

The demo cluster is still running. Connect with psql:

    psql "host=$DEMO_DIR port=$PORT dbname=auth_pg_demo user=postgres"

and try, for instance:

    SELECT auth_pg.issue_token('alice', '1 hour', '{read}') AS t \\gset
    SELECT * FROM auth_pg.validate_token(:'t');

Stop it with:

    scripts/stop-demo.sh
EOF
