#!/usr/bin/env bash
# The OpenAPI contract test: starts the platform (debug build, SQLite, MQTT off) in a throw-away
# data dir, logs in as the administrator, creates a device and a key, and runs schemathesis with
# every check (`--checks all`) against /api/v1/openapi.json. Fails on any failure, server error or
# panic. schemathesis is installed (pinned) into a virtualenv under ~/.cache on first use.
# Per-operation settings, each with its reason: scripts/schemathesis.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
venv="${XDG_CACHE_HOME:-$HOME/.cache}/insa-iiot/schemathesis-$SCHEMATHESIS_VERSION"
if [ ! -x "$venv/bin/schemathesis" ]; then
  if ! python3 -m venv "$venv" 2>/dev/null; then
    # Debian ships venv separately.
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$venv"; python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
fi

cargo build -q --bin insa-iiot
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
password="contract-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
INSA__DATA_DIR="$work/data" \
INSA__DATABASE__URL="sqlite://$work/data/insa.db?mode=rwc" \
INSA__SERVER__PORT="$port" \
INSA__AUTH__ADMIN_PASSWORD="$password" \
INSA__AUTH__LOGIN_ATTEMPTS_PER_ACCOUNT_PER_MINUTE=100000 \
INSA__AUTH__LOGIN_ATTEMPTS_PER_ADDRESS_PER_MINUTE=100000 \
INSA__MQTT__MODE=off \
  target/debug/insa-iiot >"$work/app.log" 2>&1 &
app=$!
cleanup() { kill "$app" 2>/dev/null || true; wait "$app" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do curl -sf "$base/health" >/dev/null && break; sleep 0.1; done
json() { python3 -c "import sys, json; print(json.load(sys.stdin)$1)"; }
login() { curl -sSf "$base/api/v1/auth/login" -H 'Content-Type: application/json' \
  -d "{\"email\":\"admin@insa.com\",\"password\":\"$password\"}"; }
token=$(login | json '["access_token"]')
# Logout and refresh end or rotate the session they are given: each gets a session of its own.
logout_token=$(login | json '["access_token"]')
refresh_token=$(login | json '["refresh_token"]')
device=$(curl -sSf "$base/api/v1/devices" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d '{"name":"contract-device","type":"temperature_sensor"}' | json '["id"]')
key=$(curl -sSf "$base/api/v1/api-keys" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d "{\"name\":\"contract\",\"device_id\":\"$device\",\"permissions\":{\"read\":true,\"write\":true}}" | json '["api_key"]')
status=0
INSA_TOKEN="$token" INSA_API_KEY="$key" INSA_LOGOUT_TOKEN="$logout_token" INSA_REFRESH_TOKEN="$refresh_token" \
  "$venv/bin/schemathesis" --config-file scripts/schemathesis.toml run "$base/api/v1/openapi.json" \
  --checks all "$@" || status=$?
if grep -q "panicked" "$work/app.log"; then
  echo "the platform panicked during the contract test:" >&2
  grep -A5 "panicked" "$work/app.log" >&2
  status=1
fi
exit $status
