#!/usr/bin/env bash
# Run scripts/node_bedrock_check.mjs (the official Node `@aws-sdk/client-bedrock-runtime` with its
# default HTTP/2 request handler) against `spillway serve` (the embedded default) twice: on a plain
# listener (h2c, `http://`) and on a TLS listener (`https://`, ALPN h2) with a throw-away CA from
# `spillway tls-cert` trusted through NODE_EXTRA_CA_CERTS. Checks the audit log after each run and
# stops the server with SIGTERM; exits non-zero if anything failed.
#
#   SPILLWAY_BIN   the binary (default: $CARGO_TARGET_DIR/release/spillway, or
#                  target/release/spillway from the repository root)
#   NODE           the interpreter (default: node); needs `npm ci --prefix scripts/node`
set -euo pipefail

name=node_bedrock_check
# shellcheck source=serve_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/serve_lib.sh"
node="${NODE:-node}"
if [[ ! -d "$here/node/node_modules/@aws-sdk/client-bedrock-runtime" ]]; then
    echo "$name: the Node SDK is missing: npm ci --prefix scripts/node" >&2
    exit 2
fi

certs="$(mktemp -d "${TMPDIR:-/tmp}/spillway-$name-certs.XXXXXX")"
trap 'cleanup; rm -rf "$certs"' EXIT
"$bin" tls-cert --out "$certs" --host localhost --host 127.0.0.1 >/dev/null

# The audit log must hold the run's Converse and ConverseStream calls, served in the profile's
# destination set (us-east-1's `us.` profile: the three US regions).
audited() {
    local out
    if out="$("$python" "$here/audit_check.py" "$audit" converse 2 us-east-1,us-east-2,us-west-2)"; then
        echo "$name: audit ($1): $out"
    else
        echo "$name: audit ($1): $out" >&2
        [[ $status -ne 0 ]] || status=1
    fi
}

start_serve
run_client "$node" "$here/node_bedrock_check.mjs" "http://$addr"
stop_serve
audited h2c

start_serve --tls-cert "$certs/cert.pem" --tls-key "$certs/key.pem"
NODE_EXTRA_CA_CERTS="$certs/ca.pem" run_client "$node" "$here/node_bedrock_check.mjs" "https://$addr"
stop_serve
audited https
exit "$status"
