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

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
bin="${SPILLWAY_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/spillway}"
python="${PYTHON:-python3}"

if [[ ! -x "$bin" ]]; then
    echo "boto3_check: no spillway binary at $bin (build it or set SPILLWAY_BIN)" >&2
    exit 2
fi

log="$(mktemp "${TMPDIR:-/tmp}/spillway-boto3-check.XXXXXX")"
audit="$(mktemp "${TMPDIR:-/tmp}/spillway-boto3-audit.XXXXXX")"
pid=""
py=""
cleanup() {
    if [[ -n "$py" ]]; then
        kill -TERM "$py" 2>/dev/null || true
    fi
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -f "$log" "$audit"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The embedded default writes its audit log (one JSON line per request) to stdout.
NO_COLOR=1 "$bin" serve --listen 127.0.0.1:0 >"$audit" 2>"$log" &
pid=$!

addr=""
for _ in $(seq 1 300); do # up to 30 s
    addr="$(sed -n 's#^spillway: listening on http://\([^ ]*\) as us-east-1$#\1#p' "$log" | head -n1)"
    [[ -n "$addr" ]] && break
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "boto3_check: spillway exited before listening:" >&2
        cat "$log" >&2
        exit 1
    fi
    sleep 0.1
done
if [[ -z "$addr" ]]; then
    echo "boto3_check: no listening line within 30 s:" >&2
    cat "$log" >&2
    exit 1
fi
echo "boto3_check: spillway (pid $pid) listening on $addr"

# In the background and waited for, so that an INT/TERM to this script is handled at once.
status=0
"$python" "$here/boto3_check.py" "http://$addr" &
py=$!
wait "$py" || status=$?
py=""

kill -TERM "$pid" 2>/dev/null || true
server_status=0
for _ in $(seq 1 300); do # up to 30 s; no request is in flight by now
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then
    echo "boto3_check: spillway still running 30 s after SIGTERM; killing it" >&2
    server_status=1 # the EXIT trap kills it
else
    wait "$pid" || server_status=$?
    pid=""
fi
if [[ $server_status -ne 0 ]]; then
    echo "boto3_check: spillway exited with $server_status after SIGTERM:" >&2
    tail -n 20 "$log" >&2
    [[ $status -ne 0 ]] || status=1
fi
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
