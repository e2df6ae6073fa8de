#!/usr/bin/env bash
# Three Spillway instances (us-east-1, us-east-2, us-west-2), each its own `spillway serve`
# process with its own listener, a simulated region behind each (`spillway sim`), and one Redis
# shared by all three for tenant quotas. Ctrl-C stops everything.
#
#   REDIS_URL=redis://127.0.0.1:6379 examples/multi-region-redis/run.sh
#
# REDIS_URL defaults to redis://127.0.0.1:6379; when nothing answers there and redis-server is
# installed, one is started on that port for this run. SPILLWAY_BIN picks a binary (else a
# release build is made). SPILLWAY_ACME_KEY is the tenant's API key (default acme-example-key).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export SPILLWAY_ACME_KEY=${SPILLWAY_ACME_KEY:-acme-example-key}
regions=(us-east-1 us-east-2 us-west-2)
gw_ports=(8081 8082 8083)
sim_ports=(9101 9102 9103)
sim_rtt=(1 12 70) # as seen from us-east-1, for the example

bin=${SPILLWAY_BIN:-}
if [ -z "$bin" ]; then
  echo "building spillway (release)..."
  (cd "$root" && cargo build --release --quiet -p spillway)
  bin="${CARGO_TARGET_DIR:-$root/target}/release/spillway"
fi

pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "stopping..."
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

# Answers PING? (bash's /dev/tcp: no redis-cli needed)
redis_up() {
  local hp=${REDIS_URL#*://}
  hp=${hp##*@}
  hp=${hp%%/*}
  local host=${hp%%:*} port=6379
  [[ $hp == *:* ]] && port=${hp##*:}
  (exec 3<>"/dev/tcp/$host/$port" && printf 'PING\r\n' >&3 && timeout 1 head -c 5 <&3 | grep -q PONG) 2>/dev/null
}
if ! redis_up; then
  if [ "$REDIS_URL" = redis://127.0.0.1:6379 ] && command -v redis-server >/dev/null; then
    echo "starting redis-server on 127.0.0.1:6379 for this run"
    redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
    pids+=($!)
    for _ in $(seq 50); do redis_up && break; sleep 0.1; done
  else
    echo "warning: nothing answers at $REDIS_URL: the gateways serve on local shares (/readyz degraded) until it does"
  fi
fi

# Wait until http://127.0.0.1:$1$2 answers 200.
wait_http() {
  for _ in $(seq 100); do
    curl -fs -o /dev/null "http://127.0.0.1:$1$2" && return 0
    sleep 0.1
  done
  echo "nothing answered at http://127.0.0.1:$1$2" >&2
  return 1
}

for i in 0 1 2; do
  "$bin" sim --port "${sim_ports[$i]}" --region "${regions[$i]}" --rtt-ms "${sim_rtt[$i]}" >/dev/null &
  pids+=($!)
done
for i in 0 1 2; do wait_http "${sim_ports[$i]}" /healthz; done
for i in 0 1 2; do
  SPILLWAY_LOG=${SPILLWAY_LOG:-warn} "$bin" serve --config "$here/${regions[$i]}.toml" &
  pids+=($!)
done
for i in 0 1 2; do wait_http "${gw_ports[$i]}" /healthz; done

cat <<MSG

Spillway: three instances sharing $REDIS_URL
  us-east-1  http://127.0.0.1:8081   (simulator http://127.0.0.1:9101/v1)
  us-east-2  http://127.0.0.1:8082   (simulator http://127.0.0.1:9102/v1)
  us-west-2  http://127.0.0.1:8083   (simulator http://127.0.0.1:9103/v1)

Call any of them (the us. profile may spill to the other two regions):
  curl -si http://127.0.0.1:8082/v1/chat/completions -H "Authorization: Bearer $SPILLWAY_ACME_KEY" \\
    -H 'content-type: application/json' \\
    -d '{"model":"us.example.chat-v1:0","messages":[{"role":"user","content":"hello"}],"max_tokens":16}'
Shared state:  curl -s http://127.0.0.1:9091/readyz ; curl -s http://127.0.0.1:9091/metrics | grep shared_state
Where requests went:  curl -s http://127.0.0.1:9102/admin/served

Ctrl-C stops everything.
MSG
wait
