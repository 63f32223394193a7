#!/usr/bin/env bash
# Instructions per HTTP single-reading request, counted by callgrind: unlike req/s, the count
# does not move with whatever else the machine is doing, so two builds compare within a percent
# on a busy machine. Runs the given release binary under valgrind on a fresh PostgreSQL database
# (MQTT off), registers 10 devices and a gateway key, sends a warm-up, zeroes the counters, then
# sends N and 2N readings (the seed's 3-key reading, one keep-alive client, devices in turn) and
# prints the instructions of the extra N divided by N (start-up and fixed costs cancel out).
# Usage: bench/callgrind.sh BINARY [N=500]
set -euo pipefail
bin=$(realpath "$1")
n=${2:-500}
db=insa_callgrind
pg=postgres://postgres@127.0.0.1:5432/$db
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
(cd "$work" && INSA__DATABASE__URL=$pg INSA__AUTH__ADMIN_PASSWORD=callgrind-password-1 \
   INSA__MQTT__MODE=off INSA__SERVER__PORT=$port RUST_LOG=warn \
   exec valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.%p" "$bin" >"$work/platform.log" 2>&1) &
platform=$!
trap 'kill "$platform" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.5; done

python3 - "$port" "$n" "$platform" <<'PY'
import http.client, json, subprocess, sys
port, n, pid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
def call(method, path, body=None, headers=None):
    conn.request(method, path, json.dumps(body) if body is not None else None,
                 {"Content-Type": "application/json", **(headers or {})})
    r = conn.getresponse(); data = r.read()
    if r.status >= 300: raise SystemExit(f"{method} {path}: {r.status} {data[:200]}")
    return json.loads(data) if data else None
token = call("POST", "/api/v1/auth/login", {"email": "admin@insa.com", "password": "callgrind-password-1"})["access_token"]
auth = {"Authorization": f"Bearer {token}"}
devices = [call("POST", "/api/v1/devices", {"name": f"cg-{i}", "type": "temperature", "area": "bench"}, auth)["id"] for i in range(10)]
key = call("POST", "/api/v1/api-keys", {"name": "cg gateway", "rate_limit": 10_000_000}, auth)["api_key"]
seq = 0
def send(count):
    global seq
    for _ in range(count):
        body = {"device_id": devices[seq % len(devices)], "telemetry": {
            "temperature": {"value": 20.0 + (seq % 100) / 10.0, "unit": "C", "quality": 100},
            "humidity": {"value": 65, "unit": "%"}, "pressure": {"value": 1013, "unit": "hPa"}}}
        call("POST", "/api/v1/telemetry", body, {"X-API-Key": key})
        seq += 1
send(200)  # warm-up: actors started, caches filled, connections opened
subprocess.run(["callgrind_control", "--zero", pid], capture_output=True)
send(n)
subprocess.run(["callgrind_control", "--dump=first", pid], capture_output=True)
send(n)
subprocess.run(["callgrind_control", "--dump=second", pid], capture_output=True)
PY
sleep 1
total() { # summed "totals:" of every dump file with this dump name (one per thread set)
  grep -h "^summary:\|^totals:" $(grep -l "^desc: Trigger: .*$1" "$work"/callgrind.*) | awk '{s+=$2} END {print s}'
}
first=$(total first); second=$(total second)
echo "first $n requests: $first Ir; next $n requests: $second Ir"
python3 -c "print(f'instructions per request (second batch): {int($second)/$n:,.0f}')"
