#!/usr/bin/env bash
# Runs the benchmark set of docs/BENCHMARKS.md on this machine: a fresh PostgreSQL database, a
# Mosquitto tuned as docs/MQTT.md says (port 18883, max_inflight_messages 1000, unlimited queue),
# the release platform, then insa-bench for HTTP batch, HTTP single readings and MQTT QoS 1
# ("ingest"), or HTTP single readings without and with 10 live-feed clients watching ("live"), or
# report jobs of 0.5 M and 5 M points in every format ("reports"; files kept in target/bench-reports),
# or 1000 devices over MQTTS with certificates against the same over plain MQTT with keys, on the
# embedded broker ("mqtts"), or the bytes each stored point takes on PostgreSQL and SQLite
# ("storage": 2 M points seeded into a migrated, empty database).
# Usage: bench/run.sh [seconds=20] [ingest|live|reports|mqtts|storage|all=ingest]
# INSA_BENCH_PLATFORM=/path/to/insa-iiot runs that build of the platform instead of this tree's
# (a release binary of an earlier commit, for a before/after comparison in the same session).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
set_=${2:-ingest}
db=insa_bench
pg=postgres://postgres@127.0.0.1:5432/$db
work=$(mktemp -d)
cargo build --release -p insa-iiot -p insa-bench
platform_bin=$(realpath "${INSA_BENCH_PLATFORM:-target/release/insa-iiot}")

mqtt_port=18883
mkdir -p "$work/mosquitto" && chmod 777 "$work/mosquitto"
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_inflight_messages 1000\nmax_queued_messages 0\n' \
  "$mqtt_port" > "$work/mosquitto/mosquitto.conf"
mosquitto -c "$work/mosquitto/mosquitto.conf" -d
sleep 0.5
# (`kill 0` would end the whole process group: only a platform this script started is killed.)
trap 'pkill -f "$work/mosquitto/mosquitto.conf" || true; [ -z "${platform:-}" ] || kill "$platform" 2>/dev/null || true' EXIT

# 1000 devices with a connection each, twice (the tunnel to the embedded broker): more files.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# The platform's MQTT: the tuned Mosquitto (ingest sets), or its own broker (mqtts).
mqtt_env=(INSA__MQTT__MODE=external INSA__MQTT__URL=mqtt://127.0.0.1:$mqtt_port)

run() { # $1 = insa-bench arguments
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
  (cd "$work" && exec env INSA__DATABASE__URL=$pg INSA__AUTH__ADMIN_PASSWORD=bench-password-1 \
     "${mqtt_env[@]}" RUST_LOG=warn \
     "$platform_bin" >"$work/platform.log" 2>&1) &
  platform=$!
  for _ in $(seq 1 100); do curl -sf http://127.0.0.1:5002/health >/dev/null && break; sleep 0.1; done
  DATABASE_URL=$pg INSA_BENCH_PASSWORD=bench-password-1 \
    ./target/release/insa-bench $1 --pid "$platform" | grep -v '^| mode\|^| ---' 
  kill "$platform"; wait "$platform" 2>/dev/null || true
}

echo "| mode | seconds | drain s | acked points | persisted points | lost | persisted dp/s | raw COPY rows/s | ratio | req/s | p50 ms | p99 ms | errors | platform CPU % | platform peak RSS MB |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
if [ "$set_" = ingest ] || [ "$set_" = all ]; then
  run "http --concurrency 16 --records 100 --devices 100 --duration $secs"
  run "http --concurrency 128 --records 1 --devices 100 --duration $secs"
  run "mqtt --mqtt-port $mqtt_port --rate 20000 --connections 4 --devices 1000 --qos 1 --duration $secs"
fi
if [ "$set_" = live ] || [ "$set_" = all ]; then
  for round in 1 2 3; do
    run "http --concurrency 32 --records 1 --devices 100 --duration $secs"
    run "http --concurrency 32 --records 1 --devices 100 --watchers 10 --duration $secs"
  done
fi
if [ "$set_" = mqtts ] || [ "$set_" = all ]; then
  mqtt_env=(INSA__MQTT__MODE=embedded INSA__MQTT__URL=mqtt://127.0.0.1:18884
            INSA__MQTT__TLS__ENABLED=true INSA__MQTT__TLS__PORT=18885)
  # A load both keep up with (latency), then more than either can store (throughput).
  for rate in 5000 20000; do
    run "mqtts --plain-port 18884 --tls-port 18885 --devices 1000 --rate $rate --rounds 3 --duration $secs"
  done
  mqtt_env=(INSA__MQTT__MODE=external INSA__MQTT__URL=mqtt://127.0.0.1:$mqtt_port)
fi
if [ "$set_" = storage ] || [ "$set_" = all ]; then
  # The platform's table, then candidate shapes, each in a fresh database.
  for shape in current pk dict; do
    psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
    (cd "$work" && INSA__DATABASE__URL=$pg RUST_LOG=warn "$platform_bin" migrate >/dev/null)
    ./target/release/insa-bench storage --database-url "$pg" --points 2000000 --shape $shape \
      | { [ $shape = current ] && cat || grep -v '^| backend\|^| ---'; }
  done
  for shape in current pk dict; do
    sqlite="$work/storage-$shape.db"
    (cd "$work" && INSA__DATABASE__URL="sqlite://$sqlite?mode=rwc" INSA__DATA_DIR="$work/data" \
       RUST_LOG=warn "$platform_bin" migrate >/dev/null)
    ./target/release/insa-bench storage --database-url "sqlite://$sqlite" --points 2000000 \
      --shape $shape | grep -v '^| backend\|^| ---'
  done
fi
if [ "$set_" = reports ] || [ "$set_" = all ]; then
  run "reports --devices 10 --points 500000 --keep target/bench-reports/small"
  run "reports --devices 10 --points 5000000 --keep target/bench-reports/large"
fi
