#!/usr/bin/env bash
# Builds Strata (installing protoc, needed by the etcd client's build, when missing) and runs
# `strata dev`: one broker, embedded metadata, nothing else to install. Extra arguments go to
# `strata dev` (e.g. --data-dir DIR --listen HOST:PORT).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v protoc >/dev/null 2>&1; then
  echo "installing protobuf-compiler (protoc), needed to build the etcd client" >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null
fi
cargo build --release --locked -p strata
exec target/release/strata dev "$@"
