#!/usr/bin/env bash
# Start `spillway serve` (the embedded default) on a free loopback port, run
# scripts/anthropic_client_check.py against it with the official Anthropic Python SDK
# (`Anthropic` on /v1/messages, `AnthropicBedrock` on InvokeModel), check that the audit log
# (the server's stdout) recorded both kinds of call, stop the server with SIGTERM, and exit
# non-zero if anything failed.
#
#   SPILLWAY_BIN   the binary (default: $CARGO_TARGET_DIR/release/spillway, or
#                  target/release/spillway from the repository root)
#   PYTHON         the interpreter (default: python3); needs `pip install 'anthropic[bedrock]'`
set -euo pipefail

name=anthropic_client_check
# shellcheck source=serve_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/serve_lib.sh"

start_serve
run_client "$python" "$here/anthropic_client_check.py" "http://$addr"
stop_serve
# Each call was audited like any other, under its own API.
for api in anthropic invoke_anthropic; do
    records="$(grep -c "\"api\":\"$api\"" "$audit" || true)"
    if [[ "$records" -lt 1 ]]; then
        echo "anthropic_client_check: no $api record in the audit log:" >&2
        tail -n 5 "$audit" >&2
        [[ $status -ne 0 ]] || status=1
    else
        echo "anthropic_client_check: audit log has $records $api record(s)"
    fi
done
exit "$status"
