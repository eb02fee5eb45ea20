# Shared by the bench scripts: start etcd, LocalStack and `strata` brokers on this machine with
# their own ports and data under $BENCH_DIR, and stop them all on exit. Source it; set BENCH_DIR
# and BIN first.

bench_pids=()
bench_localstack=""

bench_stop_all() {
  for pid in "${bench_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${bench_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  bench_pids=()
  if [ -n "$bench_localstack" ]; then bash localstack/stop.sh "$bench_localstack" || true; fi
  bench_localstack=""
}

# bench_wait_port PORT: until something listens there (30 s).
bench_wait_port() {
  for _ in $(seq 150); do
    timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "bench: nothing listens on 127.0.0.1:$1 after 30 s; see the logs in $BENCH_DIR" >&2
  return 1
}

# bench_start_etcd CLIENT_PORT PEER_PORT
bench_start_etcd() {
  etcd --data-dir "$BENCH_DIR/etcd" --listen-client-urls "http://127.0.0.1:$1" \
       --advertise-client-urls "http://127.0.0.1:$1" --listen-peer-urls "http://127.0.0.1:$2" \
       >"$BENCH_DIR/etcd.log" 2>&1 &
  bench_pids+=($!)
  bench_wait_port "$1"
}

# bench_start_localstack PORT BUCKET: prints nothing; sets bench_s3_endpoint.
bench_start_localstack() {
  bench_localstack="$BENCH_DIR/localstack"
  bench_s3_endpoint="$(bash localstack/start.sh "$1" "$bench_localstack")"
  bash localstack/create-bucket.sh "$bench_s3_endpoint" "$2" >&2
}

# bench_start_broker NAME PORT ARGS...: `strata ARGS...` in the background, logs in BENCH_DIR;
# its pid is appended to bench_broker_pids as NAME=PID.
bench_broker_pids=()
bench_start_broker() {
  local name=$1 port=$2
  shift 2
  STRATA_LOG=warn "$BIN" "$@" >"$BENCH_DIR/$name.log" 2>&1 &
  local pid=$!
  bench_pids+=("$pid")
  bench_broker_pids+=("$name=$pid")
  bench_wait_port "$port"
}

# The --broker-pid flags for `strata bench`.
bench_pid_flags() {
  for p in "${bench_broker_pids[@]}"; do printf -- '--broker-pid %s ' "$p"; done
}
