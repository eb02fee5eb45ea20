#!/usr/bin/env bash
# Starts etcd and three `strata serve` brokers on this machine (own ports and data under a temp
# dir), runs `strata bench` with the given arguments (and every broker as --broker-pid)
# against them, and stops everything.
#   bash benches/cluster.sh produce --replicas 3 --acks all --records 2000000
set -euo pipefail
cd "$(dirname "$0")/.."
# STRATA_BIN: a prebuilt binary to measure instead (an older commit, for a before/after).
if [ -z "${STRATA_BIN:-}" ]; then
  cargo build --release --locked -p strata >&2
fi
bin=${STRATA_BIN:-target/release/strata}
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
etcd --data-dir "$dir/etcd" --listen-client-urls http://127.0.0.1:23790 \
     --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 \
     >"$dir/etcd.log" 2>&1 &
for _ in $(seq 50); do
  ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:23790 endpoint health >/dev/null 2>&1 && break
  sleep 0.2
done
brokers=""
pids=()
for id in 1 2 3; do
  port=$((17090 + id))
  STRATA_LOG=warn $bin serve --id $id --listen 127.0.0.1:$port --data-dir "$dir/b$id" \
       --etcd 127.0.0.1:23790 --cluster bench >"$dir/b$id.log" 2>&1 &
  pids+=(--broker-pid "b$id=$!")
  brokers="$brokers${brokers:+,}127.0.0.1:$port"
done
sleep 2
$bin bench "$@" --brokers "$brokers" "${pids[@]}"
