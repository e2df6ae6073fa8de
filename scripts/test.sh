#!/usr/bin/env bash
# The tests, and what they need: `redis-server` on PATH (the Redis tests start their own
# servers on free ports; none is used from the machine). Installs it when it is missing, from
# apt (Debian, Ubuntu) or Homebrew, then runs `cargo test --workspace` with any arguments given.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null; then
  echo "== redis-server is not on PATH; installing it (the Redis tests need it)"
  if command -v apt-get >/dev/null; then
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq && $sudo apt-get install -y -qq redis-server >/dev/null
  elif command -v brew >/dev/null; then
    brew install redis
  else
    echo "cannot install redis-server here: install it (https://redis.io/docs/latest/operate/oss_and_stack/install/) and run again" >&2
    exit 1
  fi
fi

exec cargo test --workspace "$@"
