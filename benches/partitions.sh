#!/usr/bin/env bash
# Many partitions on three brokers: creates one RF 3 topic of PARTITIONS partitions on etcd and
# three `strata serve` brokers (release build, own ports and data under a temp dir) and reports
#   - how long the topic took to be created and to have every ISR full ("ready"),
#   - idle CPU of each broker and of etcd over IDLE seconds, and per 1,000 partitions,
#   - open file descriptors and RSS per broker,
#   - acks=all produce and consume across every partition (`strata bench`),
#   - how long after the controller's SIGKILL every partition had a leader again.
#   bash benches/partitions.sh [PARTITIONS] [IDLE_SECONDS]     # default 3000 30
#   RECORDS=N (default 2000000) sets the produce and consume runs' size.
set -euo pipefail
cd "$(dirname "$0")/.."
partitions=${1:-3000}
idle=${2:-30}
records=${RECORDS:-2000000}
# STRATA_BIN: a prebuilt binary to measure instead (an older commit, for a before/after).
if [ -z "${STRATA_BIN:-}" ]; then
  cargo build --release --locked -p strata >&2
fi
BIN=${STRATA_BIN:-$PWD/target/release/strata}
BENCH_DIR=$(mktemp -d)
# shellcheck source=benches/lib.sh
. benches/lib.sh
trap 'bench_stop_all; rm -rf "$BENCH_DIR"' EXIT

bench_start_etcd 23792 23802
etcd_pid=${bench_pids[0]}
brokers=""
for id in 1 2 3; do
  port=$((17290 + id))
  bench_start_broker "b$id" "$port" serve --id "$id" --listen "127.0.0.1:$port" \
    --data-dir "$BENCH_DIR/b$id" --etcd 127.0.0.1:23792 --cluster partitions-bench
  brokers="$brokers${brokers:+,}127.0.0.1:$port"
done
export STRATA_BROKERS=$brokers
pid_of() {
  local p
  for p in "${bench_broker_pids[@]}"; do
    if [ "${p%%=*}" = "b$1" ]; then echo "${p#*=}"; fi
  done
}

now() { date +%s.%N; }
since() { python3 -c "print(f'{$(now) - $1:.1f}')"; }
# cluster info as "partitions offline under_replicated controller"
info() {
  "$BIN" cluster info --format json 2>/dev/null | python3 -c '
import json, sys
i = json.load(sys.stdin)
print(i["partitions"], i["offline_partitions"], i["under_replicated_partitions"], i["controller"])' 2>/dev/null
}
# cpu_ticks PID: user + system clock ticks the process used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

until [ "$(info | cut -d' ' -f4)" -ge 1 ] 2>/dev/null; do sleep 0.2; done
started=$(now)
"$BIN" topic create many --partitions "$partitions" --replicas 3 >&2
created=$(since "$started")
until read -r total offline under _ < <(info) && [ "$total" -ge "$partitions" ] \
  && [ "$offline" = 0 ] && [ "$under" = 0 ]; do
  sleep 0.5
done
ready=$(since "$started")
echo "topic of $partitions RF 3 partitions: created in ${created} s, every ISR full after ${ready} s"

sleep 5 # let the last ISR writes and metadata syncs settle
hz=$(getconf CLK_TCK)
declare -A before
for id in 1 2 3; do before[$id]=$(cpu_ticks "$(pid_of $id)"); done
before[etcd]=$(cpu_ticks "$etcd_pid")
sleep "$idle"
total_pct=0
for id in 1 2 3; do
  pid=$(pid_of $id)
  pct=$(python3 -c "print(f'{($(cpu_ticks "$pid") - ${before[$id]}) / $hz / $idle * 100:.1f}')")
  total_pct=$(python3 -c "print($total_pct + $pct)")
  fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 | wc -l)
  rss=$(awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status")
  echo "broker $id idle: ${pct}% of a core, $fds open fds, ${rss} MiB RSS"
done
etcd_pct=$(python3 -c "print(f'{($(cpu_ticks "$etcd_pid") - ${before[etcd]}) / $hz / $idle * 100:.1f}')")
per_1000=$(python3 -c "print(f'{$total_pct / ($partitions / 1000):.1f}')")
echo "idle over ${idle} s: brokers ${total_pct}% of a core in all (${per_1000}% per 1,000 partitions), etcd ${etcd_pct}%"

"$BIN" bench produce --topic many --partitions "$partitions" --replicas 3 --acks all \
  --records "$records" $(bench_pid_flags)
"$BIN" bench consume --topic many --partitions "$partitions" --records "$records"

controller=$(info | cut -d' ' -f4)
kill -9 "$(pid_of "$controller")"
started=$(now)
until read -r _ offline _ c < <(info) && [ "$c" != "$controller" ] && [ "$c" -ge 1 ] \
  && [ "$offline" = 0 ]; do
  sleep 0.2
done
echo "controller (broker $controller) SIGKILLed: every partition led again after $(since "$started") s (includes the broker's session timeout)"
