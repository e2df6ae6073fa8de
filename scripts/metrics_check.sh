#!/usr/bin/env bash
# Start `spillway serve` (the embedded default) with its admin listener on a free port, run
# scripts/metrics_check.py (Python's prometheus_client parser on a classic-text scrape) against
# it, stop the server, and exit with the check's status. Reads SPILLWAY_BIN and PYTHON as the
# other client checks do (scripts/serve_lib.sh); needs `pip install prometheus-client`.
set -euo pipefail

name=metrics_check
# shellcheck source=serve_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/serve_lib.sh"

start_serve --admin 127.0.0.1:0
admin="$(sed -n 's#^spillway: admin on http://\([^ ]*\) .*$#\1#p' "$log" | head -n1)"
if [[ -z "$admin" ]]; then
    echo "$name: no admin line:" >&2
    cat "$log" >&2
    exit 1
fi
run_client "$python" "$here/metrics_check.py" "http://$addr" "http://$admin"
stop_serve
exit "$status"
