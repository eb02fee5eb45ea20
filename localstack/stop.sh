#!/usr/bin/env bash
# Stops the LocalStack started by localstack/start.sh with this DATA_DIR: SIGTERM, then SIGKILL
# when it is still alive after 10 s. Succeeds when nothing runs (no pid file, or a dead pid).
#
# Usage: localstack/stop.sh DATA_DIR
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 DATA_DIR" >&2
  exit 2
fi
PID_FILE="$1/localstack.pid"
[ -f "$PID_FILE" ] || exit 0
PID="$(cat "$PID_FILE")"
case "$PID" in '' | *[!0-9]*) echo "stop.sh: bad pid file $PID_FILE" >&2; exit 1 ;; esac

alive() { kill -0 "$PID" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$PID/status" 2>/dev/null; }

if alive; then
  kill -TERM "$PID" 2>/dev/null || true
  for _ in $(seq 100); do
    alive || break
    sleep 0.1
  done
  if alive; then
    echo "stop.sh: LocalStack (pid $PID) still alive 10 s after SIGTERM; sending SIGKILL" >&2
    kill -KILL "$PID" 2>/dev/null || true
  fi
fi
rm -f "$PID_FILE"
