#!/bin/bash
# Produce and consume throughput with security off, on (TLS + password authentication), and
# acl (the same plus --authorizer acl, as a user with ACLs rather than a super user), at RF 1
# (strata dev) and RF 3 (three strata serve on etcd, brokers over mTLS, etcd over TLS with
# client certificates in the on and acl modes). Needs a release build
# (cargo build --release -p strata), etcd and openssl. Prints records/s, MB/s, p99 ms.
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
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout etcd.key -out etcd.csr -subj "/CN=etcd" 2>/dev/null
openssl x509 -req -in etcd.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out etcd.crt -days 30 -extfile ext 2>/dev/null
echo admin-secret-1 > admin.pw
echo bench-secret-1 > bench.pw
ADMIN_CLIENT="--tls-ca $P/ca.crt --user admin --password-file $P/admin.pw"
client_args() { # mode
  case $1 in off) echo "";; on) echo "$ADMIN_CLIENT";; acl) echo "--tls-ca $P/ca.crt --user bench --password-file $P/bench.pw";; esac
}
sec_server() { # mode id
  case $1 in
    off) echo "";;
    on) echo "--tls-cert $P/b$2.crt --tls-key $P/b$2.key --tls-client-ca $P/ca.crt --auth password --bootstrap-admin-password-file $P/admin.pw";;
    acl) echo "$(sec_server on $2) --authorizer acl";;
  esac
}
etcd_args() { # mode id
  [ $1 = off ] || echo "--etcd-ca $P/ca.crt --etcd-cert $P/b$2.crt --etcd-key $P/b$2.key"
}
# The bench user: what a producer and a consumer need on the bench topics, among 20 entries
# on other topics (the authorizer scans the caller's entries on every call).
grant() { # broker
  [ $mode = acl ] || return 0
  echo bench-secret-1 | $S user create bench --password-stdin --brokers $1 $ADMIN_CLIENT >/dev/null
  $S acl add --principal User:bench --topic-prefix b- --operation create write read describe --brokers $1 $ADMIN_CLIENT >/dev/null
  for i in $(seq 1 20); do
    $S acl add --principal User:bench --topic other-$i --operation read --brokers $1 $ADMIN_CLIENT >/dev/null
  done
  $S acl list --principal User:bench --brokers $1 $ADMIN_CLIENT | wc -l | sed 's/^/acl entries listed (with header): /'
}
bench() { # brokers label rf client-args
  for sc in produce consume; do
    $S bench $sc --brokers $1 --partitions 6 --replicas $3 --record-size 100 --records 5000000 --acks ${ACKS:-1} --topic b-$2-$sc-$RANDOM $4 --format json 2>>/tmp/bench/err.log | python3 -c "import sys,json; d=json.load(sys.stdin); print('$2 rf$3 $sc', round(d['records_per_sec']), round(d['mb_per_sec'],1), d['latency_ms']['p99'])" 2>&1 || echo "$2 $sc failed"
  done
}
MODES=${MODES:-off on acl}
for mode in $MODES; do
  rm -rf /tmp/bench/dev
  $S dev --data-dir /tmp/bench/dev --listen 127.0.0.1:7400 $(sec_server $mode 0) > /tmp/bench/dev-$mode.log 2>&1 & pid=$!
  sleep 3
  grant 127.0.0.1:7400
  bench 127.0.0.1:7400 "sec-$mode" 1 "$(client_args $mode)"
  kill $pid; wait $pid 2>/dev/null
done
# RF3: etcd and three strata serve
for mode in $MODES; do
  rm -rf /tmp/bench/etcd /tmp/bench/s1 /tmp/bench/s2 /tmp/bench/s3
  if [ $mode = off ]; then
    etcd --data-dir /tmp/bench/etcd --listen-client-urls http://127.0.0.1:2479 --advertise-client-urls http://127.0.0.1:2479 --listen-peer-urls http://127.0.0.1:2480 > /tmp/bench/etcd.log 2>&1 & epid=$!
  else
    etcd --data-dir /tmp/bench/etcd --listen-client-urls https://127.0.0.1:2479 --advertise-client-urls https://127.0.0.1:2479 --listen-peer-urls http://127.0.0.1:2480 \
      --cert-file $P/etcd.crt --key-file $P/etcd.key --trusted-ca-file $P/ca.crt --client-cert-auth > /tmp/bench/etcd.log 2>&1 & epid=$!
  fi
  sleep 2
  pids=""
  for id in 1 2 3; do
    $S serve --id $id --listen 127.0.0.1:74$id$id --data-dir /tmp/bench/s$id --etcd 127.0.0.1:2479 --cluster b$mode $(etcd_args $mode $id) $(sec_server $mode $id) > /tmp/bench/s$id-$mode.log 2>&1 & pids="$pids $!"
  done
  sleep 5
  grant 127.0.0.1:7411
  ACKS=all bench 127.0.0.1:7411,127.0.0.1:7422,127.0.0.1:7433 "sec-$mode" 3 "$(client_args $mode)"
  kill $pids; wait $pids 2>/dev/null; kill $epid; wait $epid 2>/dev/null
done
