#!/usr/bin/env bash
# Start `spillway serve` (the embedded default) with a TLS listener on a free loopback port, using
# a throw-away CA and certificate from `spillway tls-cert`; run scripts/boto3_tls_check.py
# against it with `boto3` and a Bedrock API key (AWS_BEARER_TOKEN_BEDROCK), trusting the CA through
# AWS_CA_BUNDLE; check that the audit log recorded the Converse calls; stop the server with SIGTERM.
#
#   SPILLWAY_BIN   the binary (default: $CARGO_TARGET_DIR/release/spillway, or
#                  target/release/spillway from the repository root)
#   PYTHON         the interpreter (default: python3); needs `pip install boto3`
set -euo pipefail

name=boto3_tls_check
# shellcheck source=serve_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/serve_lib.sh"

certs="$(mktemp -d "${TMPDIR:-/tmp}/spillway-$name-certs.XXXXXX")"
trap 'cleanup; rm -rf "$certs"' EXIT
"$bin" tls-cert --out "$certs" --host localhost --host 127.0.0.1 >/dev/null
start_serve --tls-cert "$certs/cert.pem" --tls-key "$certs/key.pem"
grep -q "listening on https://$addr" "$log" || { echo "$name: not an https listener" >&2; exit 1; }
AWS_CA_BUNDLE="$certs/ca.pem" run_client "$python" "$here/boto3_tls_check.py" "https://$addr"
stop_serve
# Converse and ConverseStream were audited, served in the profile's destination set.
if out="$("$python" "$here/audit_check.py" "$audit" converse 2 us-east-1,us-east-2,us-west-2)"; then
    echo "$name: audit: $out"
else
    echo "$name: audit: $out" >&2
    [[ $status -ne 0 ]] || status=1
fi
exit "$status"
