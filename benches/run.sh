#!/usr/bin/env bash
# Reproduces Kafka's published benchmark table (LinkedIn, 2014) on this one machine and writes
# benches/RESULTS.md (with benches/results.svg) from what it measured.
#
#   bash benches/run.sh [--records N] [--latency-duration D] [--profile] [--no-micro]
#
# Starts etcd, LocalStack and three `strata serve` brokers (own ports, data in a temp dir),
# runs every `strata bench` scenario against them with the brokers' pids (peak RSS per broker),
# then a `strata dev` tiering to its local filesystem for the local replay row, then the
# criterion micro-benchmarks. --profile samples the whole machine with `perf record` during each
# scenario and keeps the top symbols in benches/profiles/<scenario>.txt.
# Needs etcd (apt-get install etcd-server), LocalStack's venv (localstack/install.sh), and for
# --profile linux-perf.
set -euo pipefail
cd "$(dirname "$0")/.."

records=5000000
latency_duration=30s
profile=0
micro=1
while [ $# -gt 0 ]; do
  case "$1" in
    --records) records=$2; shift 2 ;;
    --latency-duration) latency_duration=$2; shift 2 ;;
    --profile) profile=1; shift ;;
    --no-micro) micro=0; shift ;;
    *) echo "usage: $0 [--records N] [--latency-duration D] [--profile] [--no-micro]" >&2; exit 2 ;;
  esac
done
command -v etcd >/dev/null || { echo "bench: etcd not found (apt-get install etcd-server)" >&2; exit 1; }
if [ "$profile" = 1 ] && ! command -v perf >/dev/null; then
  echo "bench: --profile needs perf (apt-get install linux-perf)" >&2; exit 1
fi

cargo build --release --locked -p strata >&2
BIN=$(realpath "${CARGO_TARGET_DIR:-target}")/release/strata
BENCH_DIR=$(mktemp -d -t strata-bench.XXXXXX)
out=$BENCH_DIR/results
mkdir -p "$out" benches/profiles
# shellcheck source=benches/lib.sh
. benches/lib.sh
# Logs stay when something failed, so the failure can be read.
trap 'rc=$?; bench_stop_all; if [ $rc = 0 ]; then rm -rf "$BENCH_DIR"; else echo "bench: failed; logs in $BENCH_DIR" >&2; fi' EXIT

# scenario ID BENCH-ARGS...: one `strata bench` run against $brokers; its JSON goes to
# $out/ID.json, with --profile a flat profile of the whole machine to benches/profiles/ID.txt.
scenario() {
  local id=$1
  shift
  echo "bench: $id: strata bench $*" >&2
  # shellcheck disable=SC2046
  local cmd=("$BIN" bench "$@" --brokers "$brokers" --format json $(bench_pid_flags))
  if [ "$profile" = 1 ]; then
    perf record -a -F 999 -o "$BENCH_DIR/$id.perf" -- "${cmd[@]}" >"$out/$id.json" 2>"$BENCH_DIR/$id.err" \
      || { cat "$BENCH_DIR/$id.err" >&2; return 1; }
    {
      echo "# $id: strata bench $*"
      echo "# perf record -a -F 999 (both cores, every process); self time by thread name and symbol"
      echo "# broker-rt: broker threads (runtime and blocking pool); client-rt: the bench itself"
      perf report -i "$BENCH_DIR/$id.perf" --no-children --sort comm,dso,symbol --stdio 2>/dev/null \
        | grep -Ev '^(#|$)' | sed -E 's/ +- +- *$//' | awk 'NR <= 45'
    } >"benches/profiles/$id.txt"
  else
    "${cmd[@]}" >"$out/$id.json"
  fi
  printf '{"id":"%s","args":"%s"}\n' "$id" "$*" >"$out/$id.meta.json"
}

# --- three brokers on etcd, tiering to LocalStack --------------------------------------------
bench_start_etcd 23790 23800
bench_start_localstack 24566 strata-bench
s3=(--object-store s3://strata-bench/run --s3-endpoint "$bench_s3_endpoint")
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
brokers=""
for id in 1 2 3; do
  port=$((17090 + id))
  bench_start_broker "broker-$id" "$port" serve --id "$id" --listen "127.0.0.1:$port" \
    --data-dir "$BENCH_DIR/b$id" --etcd 127.0.0.1:23790 --cluster bench \
    --retention-check-interval 1s "${s3[@]}"
  brokers="$brokers${brokers:+,}127.0.0.1:$port"
done
sleep 2

common=(--records "$records" --record-size 100 --partitions 6)
scenario produce-rf1        produce "${common[@]}" --topic rf1 --replicas 1 --acks 1
scenario produce-rf3-acks1  produce "${common[@]}" --topic rf3 --replicas 3 --acks 1
scenario produce-rf3-acksall produce "${common[@]}" --topic rf3-all --replicas 3 --acks all
scenario consume            consume "${common[@]}" --topic rf3 --replicas 3
scenario produce-consume    produce-consume "${common[@]}" --topic pc --replicas 3 --acks 1
scenario latency            latency --duration "$latency_duration" --rate 50000 --record-size 100 \
                                    --partitions 6 --topic lat --replicas 3 --acks 1
scenario latency-rf1        latency --duration "$latency_duration" --rate 50000 --record-size 100 \
                                    --partitions 6 --topic lat-rf1 --replicas 1 --acks 1
scenario replay-s3          replay --records 4000000 --record-size 100 --partitions 6 \
                                    --topic replay-s3 --replicas 1
scenario idle-3000          idle --partitions 3000 --replicas 3 --duration 30s --topic idle
bench_stop_all
bench_broker_pids=()

# --- strata dev, tiering to its local filesystem ------------------------------------------
bench_start_broker dev 17190 dev --data-dir "$BENCH_DIR/dev" --listen 127.0.0.1:17190 \
  --retention-check-interval 1s
brokers=127.0.0.1:17190
scenario replay-local       replay --records 4000000 --record-size 100 --partitions 6 --topic replay-local
bench_stop_all

# --- criterion micro-benchmarks ---------------------------------------------------------------
if [ "$micro" = 1 ]; then
  echo "bench: criterion micro-benchmarks" >&2
  # A private CRITERION_HOME: no saved baseline, so criterion prints figures, not changes.
  CRITERION_HOME="$BENCH_DIR/criterion" cargo bench --locked -p strata-benches >"$BENCH_DIR/criterion.txt" 2>"$BENCH_DIR/criterion.err" \
    || { cat "$BENCH_DIR/criterion.err" >&2; exit 1; }
  grep -E 'time:|thrpt:|^[A-Za-z_/0-9 .-]+$' "$BENCH_DIR/criterion.txt" | grep -v '^$' >"$out/criterion.txt" || true
fi

# --- the machine, then the report -------------------------------------------------------------
{
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//') ($(nproc) cores)"
  echo "memory: $(free -g | awk '/Mem:/ {print $2}') GiB"
  echo "kernel: $(uname -r)"
  echo "rustc: $(rustc --version)"
  echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet -- . ':!benches/profiles' ':!benches/results' ':!benches/RESULTS.md' ':!benches/results.svg' || echo ' (with uncommitted changes)')"
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
} >"$out/machine.txt"
# The raw results stay beside the report, so it can be rewritten without a new run:
#   python3 benches/report.py benches/results benches/RESULTS.md benches/results.svg
rm -rf benches/results && cp -r "$out" benches/results
python3 benches/report.py benches/results benches/RESULTS.md benches/results.svg
echo "bench: wrote benches/RESULTS.md and benches/results.svg" >&2
