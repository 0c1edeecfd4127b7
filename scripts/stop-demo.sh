#!/usr/bin/env bash
# Stops the demo cluster started by scripts/setup.sh and removes its directory.
source "$(dirname "$0")/lib.sh"

DEMO_DIR="${AUTH_PG_DEMO_DIR:-/tmp/auth_pg-demo}"
if [ -d "$DEMO_DIR" ]; then
    cluster_stop "$DEMO_DIR"
    as_root rm -rf "$DEMO_DIR"
    log "Stopped and removed the demo cluster in $DEMO_DIR"
else
    log "No demo cluster in $DEMO_DIR"
fi
