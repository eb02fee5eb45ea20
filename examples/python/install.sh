#!/usr/bin/env bash
# Installs grpcio and grpcio-tools (pinned) into a virtualenv for the Python example.
# VENV: $STRATA_PYTHON_VENV, else $HOME/.cache/strata/python-venv. Idempotent: a marker file
# holds the pins; when it matches nothing is done. Prints the venv path on stdout.
set -euo pipefail
venv="${STRATA_PYTHON_VENV:-$HOME/.cache/strata/python-venv}"
pins=("grpcio==1.71.0" "grpcio-tools==1.71.0" "protobuf>=5.26.1,<6")
marker="$venv/.strata-pins"
if [ -x "$venv/bin/python" ] && [ -f "$marker" ] && [ "$(cat "$marker")" = "${pins[*]}" ]; then
    echo "$venv"
    exit 0
fi
command -v python3 >/dev/null 2>&1 || { echo "error: python3 not found" >&2; exit 1; }
rm -rf "$venv"
python3 -m venv "$venv" >&2 || {
    echo "error: python3 -m venv failed; install python3-venv (apt-get install python3-venv)" >&2
    exit 1
}
"$venv/bin/pip" install --quiet "${pins[@]}" >&2
echo "${pins[*]}" > "$marker"
echo "$venv"
