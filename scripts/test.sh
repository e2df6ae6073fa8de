#!/usr/bin/env bash
# The tests, and what they need: `redis-server` on PATH (the Redis tests start their own
# servers on free ports; none is used from the machine), and nginx and wrk for the comparison
# with nginx. Installs what is missing from apt (Debian, Ubuntu) or Homebrew, then runs
# `cargo test --workspace` with any arguments given.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the tests need and the machine may lack: redis-server (required), nginx and wrk (the
# `bench overhead --reference` test compares against nginx; it says so and skips without them).
need=()
command -v redis-server >/dev/null || need+=(redis-server)
{ command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; } || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
  echo "== not on PATH: ${need[*]}; installing (the tests use them)"
  if command -v apt-get >/dev/null; then
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    pkgs=("${need[@]/#nginx/nginx-light}")
    { $sudo apt-get update -qq && $sudo apt-get install -y -qq "${pkgs[@]}" >/dev/null; } ||
      echo "== could not install ${pkgs[*]}"
  elif command -v brew >/dev/null; then
    brew install "${need[@]/#redis-server/redis}" || echo "== could not install ${need[*]}"
  fi
fi
if ! command -v redis-server >/dev/null; then
  echo "cannot install redis-server here: install it (https://redis.io/docs/latest/operate/oss_and_stack/install/) and run again" >&2
  exit 1
fi

exec cargo test --workspace "$@"
