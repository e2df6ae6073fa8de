#!/usr/bin/env bash
# The live dashboard (docs/DASHBOARD.md) in headless Chromium: start `spillway serve` (the
# embedded default: six simulated regions, an admin listener), run a burst of chat requests on
# `us.demo.chat-small-v1:0` from us-east-1 (40 concurrent clients against 16 slots: it spills
# to us-east-2 and us-west-2), open /dashboard in Chromium over the DevTools protocol, and check
# that the six regions are shown, a spill flow is drawn, the displayed totals change from
# snapshot to snapshot, and the page does not scroll sideways at 380 px. Saves a screenshot.
#
#   SPILLWAY_BIN   the binary (default: $CARGO_TARGET_DIR/debug/spillway, or target/debug/spillway)
#   CHROMIUM       the browser (default: chromium; installed with apt-get when missing)
#   PYTHON         the interpreter (default: python3)
#   SCREENSHOT     where to save the screenshot (default: a temporary file, removed)
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${SPILLWAY_BIN:-${CARGO_TARGET_DIR:-target}/debug/spillway}
chromium=${CHROMIUM:-chromium}
python=${PYTHON:-python3}
[ -x "$bin" ] || { echo "dashboard_check: no spillway binary at $bin (cargo build -p spillway)"; exit 1; }
if ! command -v "$chromium" >/dev/null; then
  echo "dashboard_check: $chromium not found; installing chromium with apt-get"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

tmp=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
shot=${SCREENSHOT:-$tmp/dashboard.png}

NO_COLOR=1 "$bin" serve --listen 127.0.0.1:0 --admin 127.0.0.1:0 >/dev/null 2>"$tmp/serve.log" &
pid=$!
api="" admin=""
for _ in $(seq 1 300); do # up to 30 s
  api=$(sed -n 's#^spillway: listening on http://\([^ ]*\) as us-east-1$#\1#p' "$tmp/serve.log" | head -n1)
  admin=$(sed -n 's#^spillway: admin on http://\([^ ]*\) .*#\1#p' "$tmp/serve.log" | head -n1)
  [ -n "$api" ] && [ -n "$admin" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$tmp/serve.log"; echo "dashboard_check: spillway exited"; exit 1; }
  sleep 0.1
done
[ -n "$api" ] && [ -n "$admin" ] || { cat "$tmp/serve.log"; echo "dashboard_check: no listening lines"; exit 1; }
echo "== dashboard_check: spillway serve on $api, admin on $admin"

timeout 120 "$python" scripts/dashboard_check.py "$(command -v "$chromium")" "$api" "$admin" "$shot"
