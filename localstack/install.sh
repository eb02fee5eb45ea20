#!/usr/bin/env bash
# Installs LocalStack (S3 emulator, Python runtime, no Docker) into a Python venv.
#
# Usage: localstack/install.sh [VENV]
#   VENV defaults to $STRATA_LOCALSTACK_VENV, else $HOME/.cache/strata/localstack-venv.
#
# Pins: localstack-core 4.13.1 is the newest release that runs on Python 3.11 (4.14 and 2026.x
# need Python >= 3.12); the other pins keep its dependencies compatible (see README.md).
# Idempotent: a marker file in the venv holds the pin list; when it matches, nothing is done;
# when it differs (a pin changed), the venv is rebuilt. Concurrent runs serialize on VENV.lock.
# Installs Debian's python3-venv with apt-get when `python3 -m venv` fails and we are root.
# Prints the venv path on stdout; progress goes to stderr.
set -euo pipefail

VENV="${1:-${STRATA_LOCALSTACK_VENV:-$HOME/.cache/strata/localstack-venv}}"
PINS=(
  'localstack-core[runtime]==4.13.1'
  'cryptography<45'
  'pyopenssl<25'
  'cbor2<5.8'
  'service_identity'
)
MARKER="$VENV/.strata-localstack-pins"

log() { printf 'localstack/install.sh: %s\n' "$*" >&2; }

want="$(printf '%s\n' "${PINS[@]}")"
if [ -x "$VENV/bin/python" ] && [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$want" ]; then
  echo "$VENV"
  exit 0
fi

command -v python3 >/dev/null 2>&1 || { log "error: python3 not found (need Python 3.11)"; exit 1; }

# Parallel callers (tests starting LocalStack at once) install one at a time; the ones that
# waited find the marker and are done.
mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9
if [ -x "$VENV/bin/python" ] && [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$want" ]; then
  echo "$VENV"
  exit 0
fi

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    log "error: need root to apt-get install $*; install it by hand"
    exit 1
  fi
  log "apt-get install $*"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# A venv left half-made (or made with other pins) is rebuilt from scratch.
rm -rf "$VENV"
log "creating venv $VENV"
if ! python3 -m venv "$VENV" >&2; then
  # Debian's python3 lacks venv/ensurepip until python3-venv is installed.
  rm -rf "$VENV"
  apt_install python3-venv
  python3 -m venv "$VENV" >&2
fi

log "pip install ${PINS[*]}"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-input "${PINS[@]}" >&2
"$VENV/bin/python" -c 'import localstack.runtime.main' >&2
printf '%s\n' "$want" >"$MARKER"
log "installed in $VENV"
echo "$VENV"
