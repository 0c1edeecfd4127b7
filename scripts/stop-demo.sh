#!/usr/bin/env bash
# Stops the demo cluster started by scripts/setup.sh and removes its directory.
source "$(dirname "$0")/lib.sh"

if [ -d "$DEMO_DIR" ]; then
    demo_stop
    as_root rm -rf "$DEMO_DIR"
    log "Stopped and removed the demo cluster in $DEMO_DIR"
else
    log "No demo cluster in $DEMO_DIR"
fi
