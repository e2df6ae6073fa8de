#!/usr/bin/env bash
# Start `spillway serve` (the embedded default) on a free loopback port, run
# scripts/openai_more_check.py against it with the official `openai` Python client (Responses
# and embeddings), stop the server with SIGTERM, and exit with the Python script's status.
#
#   SPILLWAY_BIN   the binary (default: $CARGO_TARGET_DIR/release/spillway, or
#                  target/release/spillway from the repository root)
#   PYTHON         the interpreter (default: python3); needs `pip install openai`
set -euo pipefail

name=openai_more_check
# shellcheck source=serve_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/serve_lib.sh"

start_serve
run_client "$python" "$here/openai_more_check.py" "http://$addr/v1"
stop_serve
exit "$status"
