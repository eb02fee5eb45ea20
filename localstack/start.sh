#!/usr/bin/env bash
# Starts a private LocalStack (S3 only) in the background on 127.0.0.1:PORT and waits until S3 is
# ready; prints the endpoint URL (http://127.0.0.1:PORT) on stdout.
#
# Usage: localstack/start.sh PORT [DATA_DIR]
#   DATA_DIR (default: a fresh mktemp dir) receives localstack.pid, localstack.log and all of
#   LocalStack's own files (filesystem root, temp dir, config dir), so instances started with
#   different ports and data dirs never meet. Stop it with localstack/stop.sh DATA_DIR (the
#   default DATA_DIR is named on stderr).
#
# Runs localstack/install.sh first (a no-op when the pinned venv is already there).
# Objects live in memory: they are gone when the process stops.
# Exits non-zero, printing the tail of the log, when S3 is not ready within
# $STRATA_LOCALSTACK_TIMEOUT seconds (default 90).
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 PORT [DATA_DIR]" >&2
  exit 2
fi
PORT="$1"
case "$PORT" in '' | *[!0-9]*) echo "start.sh: bad port: $PORT" >&2; exit 2 ;; esac
DATA_DIR="${2:-}"
TIMEOUT="${STRATA_LOCALSTACK_TIMEOUT:-90}"
HERE="$(cd "$(dirname "$0")" && pwd)"
ENDPOINT="http://127.0.0.1:$PORT"

log() { printf 'localstack/start.sh: %s\n' "$*" >&2; }

VENV="$("$HERE/install.sh")"
command -v curl >/dev/null 2>&1 || {
  if [ "$(id -u)" = 0 ]; then
    log "apt-get install curl"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >&2
  else
    log "error: curl not found; install it"
    exit 1
  fi
}

if timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" 2>/dev/null; then
  log "error: something already listens on 127.0.0.1:$PORT"
  exit 1
fi
if [ -z "$DATA_DIR" ]; then
  DATA_DIR="$(mktemp -d -t strata-localstack.XXXXXX)"
fi
mkdir -p "$DATA_DIR"
DATA_DIR="$(cd "$DATA_DIR" && pwd)"
PID_FILE="$DATA_DIR/localstack.pid"
LOG_FILE="$DATA_DIR/localstack.log"

if [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
  log "error: LocalStack already runs from $DATA_DIR (pid $(cat "$PID_FILE"))"
  exit 1
fi
mkdir -p "$DATA_DIR/fs" "$DATA_DIR/tmp" "$DATA_DIR/config"

# `python -m localstack.runtime.main`, except that S3's spill directory (objects over 512 KiB go
# to temp files in ROOT/BUCKET/) is moved from the fixed /tmp/localstack-s3-storage, shared by all
# instances (deleting a bucket in one would delete the directory under the other's bucket of the
# same name), into DATA_DIR. 4.13.1 has no setting for it; the provider reads this module
# global when it is created, after this runs.
RUN='
import os
import localstack.services.s3.provider as s3_provider
s3_provider.DEFAULT_S3_TMP_DIR = os.environ["S3_STORAGE_DIR"]
from localstack.runtime.main import main
main()
'
log "starting LocalStack on $ENDPOINT (data dir $DATA_DIR)"
# GATEWAY_LISTEN: note that 4.13.1's twisted gateway binds 0.0.0.0:PORT whatever the host
#   (a TODO in localstack/runtime/server/twisted.py); the endpoint we use is 127.0.0.1.
# OVERRIDE_IN_DOCKER=0: LocalStack guesses "in Docker" from /.dockerenv and cgroups (true on CI
#   runners and dev containers) and then uses the fixed /var/lib/localstack and /tmp/localstack,
#   which parallel instances would share (each one clears /tmp/localstack when it starts and
#   stops). Host mode puts every directory under FILESYSTEM_ROOT instead.
# TMPDIR: LocalStack's tmp dir (FILESYSTEM_ROOT/$TMPDIR/localstack) and Python's temp files.
# CONFIG_DIR: otherwise ~/.localstack. DNS_ADDRESS=0: no DNS server (it would bind port 53).
# DISABLE_EVENTS, SKIP_SSL_CERT_DOWNLOAD: no network calls (analytics, the TLS certificate).
# setsid: its own session, so a Ctrl-C or a test harness killing our process group leaves it be;
#   stop.sh stops it.
env \
  GATEWAY_LISTEN="127.0.0.1:$PORT" \
  SERVICES=s3 \
  OVERRIDE_IN_DOCKER=0 \
  FILESYSTEM_ROOT="$DATA_DIR/fs" \
  LOCALSTACK_VOLUME_DIR="$DATA_DIR/fs/var/lib/localstack" \
  TMPDIR="$DATA_DIR/tmp" \
  CONFIG_DIR="$DATA_DIR/config" \
  DNS_ADDRESS=0 \
  DISABLE_EVENTS=1 \
  SKIP_SSL_CERT_DOWNLOAD=1 \
  PERSISTENCE=0 \
  S3_STORAGE_DIR="$DATA_DIR/s3-storage" \
  setsid "$VENV/bin/python" -c "$RUN" </dev/null >"$LOG_FILE" 2>&1 &
PID=$!
echo "$PID" >"$PID_FILE"

fail() {
  log "error: $*"
  echo "---- last lines of $LOG_FILE ----" >&2
  tail -n 40 "$LOG_FILE" >&2 || true
  kill -KILL "$PID" 2>/dev/null || true
  exit 1
}

start=$SECONDS
while :; do
  if ! kill -0 "$PID" 2>/dev/null; then
    wait "$PID" && rc=0 || rc=$?
    fail "LocalStack exited with status $rc before S3 was ready"
  fi
  health="$(curl -s --max-time 2 "$ENDPOINT/_localstack/health" || true)"
  if printf '%s' "$health" | grep -Eq '"s3": *"(available|running)"'; then
    break
  fi
  if [ $((SECONDS - start)) -ge "$TIMEOUT" ]; then
    fail "S3 at $ENDPOINT not ready after ${TIMEOUT}s (health: ${health:-no answer})"
  fi
  sleep 0.5
done
log "ready after $((SECONDS - start))s (pid $PID)"
echo "$ENDPOINT"
