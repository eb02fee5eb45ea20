#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with the Rust toolchain.
# Installs what is missing (system packages with apt-get when run as root or with sudo),
# then checks formatting and lints and runs every test, end-to-end ones included.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "error: need root (or sudo) to run: $*" >&2; exit 1; fi
}

apt_updated=0
need_pkg() { # need_pkg COMMAND PACKAGE...
  command -v "$1" >/dev/null 2>&1 && return 0
  shift
  log "installing $*"
  if [ "$apt_updated" = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

command -v cargo >/dev/null || { echo "error: cargo not found; install Rust (https://rustup.rs)" >&2; exit 1; }
# Native code in dependencies (zstd) needs a C compiler; etcd-client's build needs protoc.
need_pkg cc build-essential
need_pkg protoc protobuf-compiler
# End-to-end and coordinator tests start their own etcd.
need_pkg etcd etcd-server
# The nemesis puts each broker in its own network namespace (ip netns, veth, tc).
need_pkg ip iproute2
# TLS tests make their certificates with openssl, as docs/security.md tells operators to.
need_pkg openssl openssl
# Tiering tests start their own LocalStack (S3), installed in a pinned virtualenv.
need_pkg curl curl
log "LocalStack (pinned virtualenv)"
bash localstack/install.sh >&2
# The Python example (a second-language client) runs in the suite: grpcio-tools in a venv.
log "Python example (pinned virtualenv)"
bash examples/python/install.sh >/dev/null
rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "building"
cargo build --workspace --all-targets --locked
log "cargo test"
cargo test --workspace --locked -- --test-threads="${STRATA_TEST_THREADS:-2}"
