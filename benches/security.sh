#!/bin/bash
# Produce and consume throughput with TLS + password authentication off and on, at RF 1
# (strata dev) and RF 3 (three strata serve on etcd, brokers over mTLS). Needs a release
# build (cargo build --release -p strata), etcd and openssl. Prints records/s, MB/s, p99 ms.
#   bash benches/security.sh
set -u
S="$(cd "$(dirname "$0")/.." && pwd)/target/release/strata"
P=/tmp/bench/pki
rm -rf $P && mkdir -p $P && cd $P
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.crt -days 30 -subj "/CN=CA" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' > ext
for id in 0 1 2 3; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout b$id.key -out b$id.csr -subj "/CN=Broker:$id" 2>/dev/null
  openssl x509 -req -in b$id.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out b$id.crt -days 30 -extfile ext 2>/dev/null
done
echo admin-secret-1 > admin.pw
SEC_CLIENT="--tls-ca $P/ca.crt --user admin --password-file $P/admin.pw"
sec_server() { echo "--tls-cert $P/b$1.crt --tls-key $P/b$1.key --tls-client-ca $P/ca.crt --auth password --bootstrap-admin-password-file $P/admin.pw"; }
bench() { # brokers label rf client-args
  for sc in produce consume; do
    $S bench $sc --brokers $1 --partitions 6 --replicas $3 --record-size 100 --records 5000000 --acks ${ACKS:-1} --topic b-$2-$sc-$RANDOM $4 --format json 2>>/tmp/bench/err.log | python3 -c "import sys,json; d=json.load(sys.stdin); print('$2 rf$3 $sc', round(d['records_per_sec']), round(d['mb_per_sec'],1), d['latency_ms']['p99'])" 2>&1 || echo "$2 $sc failed"
  done
}
for mode in off on; do
  rm -rf /tmp/bench/dev
  if [ $mode = on ]; then extra="$(sec_server 0)"; cl="$SEC_CLIENT"; else extra=""; cl=""; fi
  $S dev --data-dir /tmp/bench/dev --listen 127.0.0.1:7400 $extra > /tmp/bench/dev-$mode.log 2>&1 & pid=$!
  sleep 3
  bench 127.0.0.1:7400 "sec-$mode" 1 "$cl"
  kill $pid; wait $pid 2>/dev/null
done
# RF3: etcd and three strata serve
for mode in off on; do
  rm -rf /tmp/bench/etcd /tmp/bench/s1 /tmp/bench/s2 /tmp/bench/s3
  etcd --data-dir /tmp/bench/etcd --listen-client-urls http://127.0.0.1:2479 --advertise-client-urls http://127.0.0.1:2479 --listen-peer-urls http://127.0.0.1:2480 > /tmp/bench/etcd.log 2>&1 & epid=$!
  sleep 2
  pids=""
  for id in 1 2 3; do
    if [ $mode = on ]; then extra="$(sec_server $id)"; else extra=""; fi
    $S serve --id $id --listen 127.0.0.1:74$id$id --data-dir /tmp/bench/s$id --etcd 127.0.0.1:2479 --cluster b$mode $extra > /tmp/bench/s$id-$mode.log 2>&1 & pids="$pids $!"
  done
  sleep 5
  if [ $mode = on ]; then cl="$SEC_CLIENT"; else cl=""; fi
  ACKS=all bench 127.0.0.1:7411,127.0.0.1:7422,127.0.0.1:7433 "sec-$mode" 3 "$cl"
  kill $pids; wait $pids 2>/dev/null; kill $epid; wait $epid 2>/dev/null
done
