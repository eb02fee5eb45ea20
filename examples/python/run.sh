#!/usr/bin/env bash
# Runs the Python example against a broker: installs grpcio-tools in a pinned virtualenv
# (once), generates the stubs from proto/ into a temporary directory, runs strata_example.py.
#   bash examples/python/run.sh [--broker HOST:PORT] [--topic T] [--records N]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$(bash "$here/install.sh")"
gen="$(mktemp -d)"
trap 'rm -rf "$gen"' EXIT
"$venv/bin/python" -m grpc_tools.protoc -I "$root/proto/proto/strata/v1" \
    --python_out="$gen" --grpc_python_out="$gen" "$root/proto/proto/strata/v1/strata.proto"
PYTHONPATH="$gen" "$venv/bin/python" "$here/strata_example.py" "$@"
