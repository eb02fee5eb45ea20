#!/usr/bin/env bash
# Moves one partition replica to a new broker and reports how long the move took and how many
# bytes the new replica copied: once for a tiered topic (its history in LocalStack's bucket,
# about 64 MiB on local disk) and once for the same volume with remote storage off.
# Starts its own etcd, LocalStack and four `strata serve` brokers (release build) under a temp
# dir, and stops them at the end.
#   bash benches/reassign.sh [HISTORY_MIB]      # default 2048
set -euo pipefail
cd "$(dirname "$0")/.."
history_mib=${1:-2048}
cargo build --release --locked -p strata >&2
bin=$PWD/target/release/strata
dir=$(mktemp -d)
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  bash localstack/stop.sh "$dir/ls" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
etcd --data-dir "$dir/etcd" --listen-client-urls http://127.0.0.1:23791 \
     --advertise-client-urls http://127.0.0.1:23791 --listen-peer-urls http://127.0.0.1:23801 \
     >"$dir/etcd.log" 2>&1 &
mkdir -p "$dir/ls"
endpoint=$(bash localstack/start.sh 24566 "$dir/ls")
bash localstack/create-bucket.sh "$endpoint" strata >&2
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
brokers=""
for id in 1 2 3 4; do
  port=$((17190 + id))
  STRATA_LOG=warn $bin serve --id $id --listen 127.0.0.1:$port --data-dir "$dir/b$id" \
       --etcd 127.0.0.1:23791 --cluster reassign-bench \
       --object-store s3://strata/bench --s3-endpoint "$endpoint" >"$dir/b$id.log" 2>&1 &
  brokers="$brokers${brokers:+,}127.0.0.1:$port"
done
export STRATA_BROKERS=$brokers
sleep 3
records=$((history_mib * 1024))   # 1 KiB records

# $1 topic: prints "replicas" of partition 0 as a comma list.
replicas() { $bin topic describe "$1" --format json | python3 -c 'import json,sys; print(",".join(str(r) for r in json.load(sys.stdin)["partitions"][0]["replicas"]))'; }

# $1 topic: moves partition 0's first replica to a broker that holds none, waits, reports.
move() {
  local topic=$1 now outsider target started took copied
  now=$(replicas "$topic")
  outsider=$(for b in 1 2 3 4; do case ",$now," in *",$b,"*) ;; *) echo $b; break ;; esac; done)
  target="$outsider,${now#*,}"
  started=$(date +%s.%N)
  $bin partition reassign "$topic" --partition 0 --replicas "$target" >&2
  until [ "$($bin cluster reassignments --format json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["reassignments"]))')" = 0 ]; do
    sleep 0.1
  done
  took=$(python3 -c "print(f'{$(date +%s.%N) - $started:.2f}')")
  copied=$(du -sb "$dir/b$outsider/logs" | cut -f1)
  echo "$topic: moved partition 0 from [$now] to [$target] in ${took} s; the new replica holds $((copied / 1048576)) MiB"
}

echo "producing ${history_mib} MiB into a tiered topic (1 KiB records, acks=all, RF 2)..." >&2
$bin topic create tiered -p 1 -r 2 -c remote.storage.enable=true \
     -c local.retention.bytes=67108864 -c segment.bytes=16777216 >&2
$bin bench produce --topic tiered --records $records --record-size 1024 --acks all >&2
echo "waiting for the history to reach the bucket..." >&2
until $bin tier status tiered --format json | python3 -c '
import json,sys
p=json.load(sys.stdin)["partitions"][0]
sys.exit(0 if p["remote_log_end_offset"] >= '"$((records * 9 / 10))"' and p["local_segments"] <= 6 else 1)'; do
  sleep 2
done
$bin tier status tiered >&2
move tiered

echo "producing ${history_mib} MiB into a topic without remote storage..." >&2
$bin topic create local -p 1 -r 2 -c segment.bytes=16777216 >&2
$bin bench produce --topic local --records $records --record-size 1024 --acks all >&2
move local
