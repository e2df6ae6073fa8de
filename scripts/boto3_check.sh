#!/usr/bin/env bash
# Start `spillway serve` (the embedded default) on a free loopback port, run
# scripts/boto3_check.py against its Bedrock API with `boto3` (the official AWS SDK for Python),
# check that the audit log (the server's stdout) recorded the Converse calls, stop the server with
# SIGTERM, and exit non-zero if anything failed.
#
#   SPILLWAY_BIN   the binary (default: $CARGO_TARGET_DIR/release/spillway, or
#                  target/release/spillway from the repository root)
#   PYTHON         the interpreter (default: python3); needs `pip install boto3`
set -euo pipefail

name=boto3_check
# shellcheck source=serve_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/serve_lib.sh"

start_serve
run_client "$python" "$here/boto3_check.py" "http://$addr"
stop_serve
# The audit log was written in the source region, for the Bedrock calls too.
records="$(grep -c '"api":"converse"' "$audit" || true)"
if [[ "$records" -lt 1 ]]; then
    echo "boto3_check: no Converse record in the audit log:" >&2
    tail -n 5 "$audit" >&2
    [[ $status -ne 0 ]] || status=1
else
    echo "boto3_check: audit log has $records Converse record(s)"
fi
exit "$status"
