# Shared by the client checks: start `spillway serve` (the embedded default) on a free loopback
# port, run a client against it, stop the server with SIGTERM. Source it after setting:
#   name   the check's name (prefix of every message)
# It reads SPILLWAY_BIN (default: $CARGO_TARGET_DIR/release/spillway, or target/release/spillway
# from the repository root) and PYTHON (default: python3), and defines:
#   here, bin, python     paths
#   audit                 a file holding the server's stdout (the embedded default's audit log)
#   start_serve [ARGS]    starts the server (ARGS go to `spillway serve`, e.g. --tls-cert/--tls-key);
#                         sets pid and addr (host:port), for http:// or https:// alike
#   run_client CMD...     runs the client in the background and waits (INT/TERM act at once);
#                         sets status to its exit code
#   stop_serve            SIGTERM, waits up to 30 s; makes status non-zero if the server fails

here="$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
bin="${SPILLWAY_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/spillway}"
python="${PYTHON:-python3}"

if [[ ! -x "$bin" ]]; then
    echo "$name: no spillway binary at $bin (build it or set SPILLWAY_BIN)" >&2
    exit 2
fi

log="$(mktemp "${TMPDIR:-/tmp}/spillway-$name.XXXXXX")"
audit="$(mktemp "${TMPDIR:-/tmp}/spillway-$name-audit.XXXXXX")"
pid=""
py=""
addr=""
status=0
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

start_serve() {
    NO_COLOR=1 "$bin" serve --listen 127.0.0.1:0 "$@" >"$audit" 2>"$log" &
    pid=$!
    for _ in $(seq 1 300); do # up to 30 s
        addr="$(sed -n 's#^spillway: listening on https\{0,1\}://\([^ ]*\) as us-east-1$#\1#p' "$log" | head -n1)"
        [[ -n "$addr" ]] && break
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "$name: spillway exited before listening:" >&2
            cat "$log" >&2
            exit 1
        fi
        sleep 0.1
    done
    if [[ -z "$addr" ]]; then
        echo "$name: no listening line within 30 s:" >&2
        cat "$log" >&2
        exit 1
    fi
    echo "$name: spillway (pid $pid) listening on $addr"
}

run_client() {
    "$@" &
    py=$!
    wait "$py" || status=$?
    py=""
}

stop_serve() {
    kill -TERM "$pid" 2>/dev/null || true
    local server_status=0
    for _ in $(seq 1 300); do # up to 30 s; no request is in flight by now
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "$name: spillway still running 30 s after SIGTERM; killing it" >&2
        server_status=1 # the EXIT trap kills it
    else
        wait "$pid" || server_status=$?
        pid=""
    fi
    if [[ $server_status -ne 0 ]]; then
        echo "$name: spillway exited with $server_status after SIGTERM:" >&2
        tail -n 20 "$log" >&2
        [[ $status -ne 0 ]] || status=1
    fi
}
