#!/usr/bin/env bash
# Start `spillway serve` (the embedded default) on a free loopback port, run
# scripts/bedrock_surface_check.py against it with `boto3` (foundation models, profile tags,
# CountTokens, InvokeModel token headers, operations Spillway does not serve), stop the server
# with SIGTERM, and exit non-zero if anything failed.
#
#   SPILLWAY_BIN   the binary (default: $CARGO_TARGET_DIR/release/spillway, or
#                  target/release/spillway from the repository root)
#   PYTHON         the interpreter (default: python3); needs `pip install boto3`
set -euo pipefail

name=bedrock_surface_check
# shellcheck source=serve_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/serve_lib.sh"

start_serve
run_client "$python" "$here/bedrock_surface_check.py" "http://$addr"
stop_serve
exit "$status"
