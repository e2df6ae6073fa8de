#!/usr/bin/env bash
# CI check of the deploy recipes (docs/DEPLOY.md), as far as the machine allows:
#   1. `spillway check-config` on every example and deploy config (each secret variable the file
#      names is set to a placeholder when unset: the configs read secrets from the environment);
#   2. the compose file: `docker-compose config` (docker-compose 1.x, from apt; no daemon needed),
#      then its native dry run (scripts/compose_dry_run.py: redis-server, the simulators and the
#      three gateways as processes with the same configs, requests, a spill, Redis state, SIGHUP);
#   3. the Kubernetes manifests: `kubectl kustomize deploy/k8s`, every rendered object against the
#      Kubernetes OpenAPI schemas (kubernetes-validate --strict, schemas shipped in the package),
#      and scripts/k8s_check.py (probes, grace period, PDBs, env against the configs);
#   4. the systemd unit: `systemd-analyze verify` (any warning fails);
#   5. `docker build` of the Dockerfile, only when a Docker daemon answers (`docker info`).
# What cannot run here is said as SKIPPED, with why. Reads SPILLWAY_BIN (default
# $CARGO_TARGET_DIR/debug/spillway, else target/debug/spillway); installs PyYAML,
# kubernetes-validate, docker-compose and redis-server when missing. About 30 s once installed.
# With a daemon, RUST_IMAGE / RUNTIME_IMAGE pick other base images for the build, DOCKER
# another docker client (one with BuildKit: the cache mounts need it).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bin="${SPILLWAY_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/spillway}"
python="${PYTHON:-python3}"
if [[ ! -x "$bin" ]]; then
  echo "deploy_check: no spillway binary at $bin (cargo build -p spillway, or set SPILLWAY_BIN)" >&2
  exit 2
fi
skipped=()
skip() {
  echo "deploy_check: SKIPPED: $1"
  skipped+=("$1")
}
apt_install() {
  if command -v apt-get >/dev/null && [[ $(id -u) -eq 0 ]]; then
    (apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }) || true
  fi
}

echo "== deploy_check: tools"
"$python" -c 'import yaml, kubernetes_validate' 2>/dev/null ||
  "$python" -m pip install --quiet --disable-pip-version-check 'pyyaml>=6,<7' 'kubernetes-validate>=1.30,<2'
command -v redis-server >/dev/null || apt_install redis-server
command -v docker-compose >/dev/null || apt_install docker-compose

echo "== deploy_check: check-config on every example and deploy config"
configs=(examples/*.toml examples/*/*.toml deploy/compose/*.toml deploy/k8s/config/*.toml)
for cfg in "${configs[@]}"; do
  # The variables a config reads its secrets from (api_key_env, url_env, env, secret_env, ...),
  # and the AWS defaults of a bedrock upstream; placeholders for those that are unset.
  vars=$({ grep -v '^[[:space:]]*#' "$cfg" || true; } | { grep -oE '\b[a-z_]*env = "[A-Za-z_][A-Za-z0-9_]*"' || true; } |
    sed -E 's/.*"(.*)"/\1/' | sort -u)
  grep -qE '^[^#]*kind = "bedrock"' "$cfg" && vars+=$'\nAWS_ACCESS_KEY_ID\nAWS_SECRET_ACCESS_KEY'
  envs=()
  for v in $vars; do
    [[ -z "${!v:-}" ]] || continue
    if grep -qE "^[^#]*url_env = \"$v\"" "$cfg"; then
      envs+=("$v=redis://127.0.0.1:6379") # check-config reads the URL, does not connect
    else
      envs+=("$v=placeholder-for-check-config")
    fi
  done
  if ! out=$(env "${envs[@]}" "$bin" check-config "$cfg" 2>&1); then
    echo "deploy_check: FAIL: spillway check-config $cfg" >&2
    echo "$out" >&2
    exit 1
  fi
  echo "ok  $cfg ($(grep -c '^\[\[deployments\]\]' "$cfg") deployments)"
done

echo "== deploy_check: compose file"
if command -v docker-compose >/dev/null; then
  SPILLWAY_DEMO_KEY=placeholder docker-compose -f deploy/compose.yaml config -q
  echo "ok  docker-compose $(docker-compose version --short) config deploy/compose.yaml"
else
  skip "docker-compose config (docker-compose not installable here)"
fi
SPILLWAY_BIN="$bin" "$python" scripts/compose_dry_run.py

echo "== deploy_check: Kubernetes manifests"
if command -v kubectl >/dev/null; then
  rendered=$(mktemp "${TMPDIR:-/tmp}/spillway-k8s.XXXXXX.yaml")
  trap 'rm -f "$rendered"' EXIT
  kubectl kustomize deploy/k8s >"$rendered"
  echo "ok  kubectl kustomize deploy/k8s: $(grep -c '^kind:' "$rendered") objects"
  "$python" -m kubernetes_validate --strict --quiet "$rendered" deploy/k8s/secret.example.yaml
  echo "ok  kubernetes-validate --strict (Kubernetes $("$python" -c 'import kubernetes_validate.utils as u; print(u.latest_version())' 2>/dev/null || echo 'latest') schemas)"
  "$python" scripts/k8s_check.py "$rendered"
  skip "kubectl apply --dry-run (client and server) need an API server; none here"
else
  skip "Kubernetes manifests: no kubectl to render deploy/k8s (kustomize)"
fi

echo "== deploy_check: systemd unit"
if command -v systemd-analyze >/dev/null; then
  unit_dir=$(mktemp -d "${TMPDIR:-/tmp}/spillway-unit.XXXXXX")
  # verify wants the ExecStart binary to exist: point it at the one under test.
  sed "s#/usr/local/bin/spillway#$bin#g" deploy/systemd/spillway.service >"$unit_dir/spillway.service"
  out=$(systemd-analyze verify "$unit_dir/spillway.service" 2>&1) || true
  rm -rf "$unit_dir"
  if [[ -n "$out" ]]; then
    echo "deploy_check: FAIL: systemd-analyze verify deploy/systemd/spillway.service:" >&2
    echo "$out" >&2
    exit 1
  fi
  echo "ok  systemd-analyze verify deploy/systemd/spillway.service"
else
  skip "systemd-analyze not installed"
fi

echo "== deploy_check: Docker image"
docker=${DOCKER:-docker}
client_major=$("$docker" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1 || true)
if ! command -v "$docker" >/dev/null || ! "$docker" info >/dev/null 2>&1; then
  skip "docker build and docker compose config: no Docker daemon answers ($docker info)"
elif ! "$docker" buildx version >/dev/null 2>&1 && [[ "${client_major:-0}" -ge 23 ]]; then
  # Clients from 23 on build with BuildKit only through the buildx plugin.
  skip "docker build: $docker (client $client_major) has no buildx plugin, and the cache mounts need BuildKit; set DOCKER to a client with BuildKit"
else
  args=()
  [[ -n "${RUST_IMAGE:-}" ]] && args+=(--build-arg "RUST_IMAGE=$RUST_IMAGE")
  [[ -n "${RUNTIME_IMAGE:-}" ]] && args+=(--build-arg "RUNTIME_IMAGE=$RUNTIME_IMAGE")
  # The cache mounts need BuildKit: the buildx plugin, or a client with BuildKit built in.
  DOCKER_BUILDKIT=1 "$docker" build -q "${args[@]}" -t spillway:deploy-check .
  "$docker" run --rm --entrypoint /usr/local/bin/spillway spillway:deploy-check --version
  echo "ok  docker build (image $("$docker" image inspect -f '{{.Size}}' spillway:deploy-check) bytes)"
  if "$docker" compose version >/dev/null 2>&1; then
    SPILLWAY_DEMO_KEY=placeholder "$docker" compose -f deploy/compose.yaml config -q
    echo "ok  docker compose config deploy/compose.yaml"
  else
    skip "docker compose config: no compose plugin for $docker (docker-compose 1.x checked it above)"
  fi
fi

echo "== deploy_check: passed; ${#skipped[@]} skipped"
for s in "${skipped[@]}"; do echo "   skipped: $s"; done
