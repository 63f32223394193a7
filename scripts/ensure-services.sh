#!/usr/bin/env bash
# Makes sure the services the second test run uses answer on loopback: PostgreSQL on 5432 (user
# `postgres`, no password) and Mosquitto on 1883. Starts whichever is down, installing it from
# Debian's packages if missing. Safe to run any number of times.
set -eu
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { for _ in $(seq 1 100); do up "$1" && return 0; sleep 0.1; done; echo "port $1 did not open" >&2; return 1; }
apt_once() { [ -f /tmp/.insa-apt-updated ] || { apt-get update -qq && touch /tmp/.insa-apt-updated; }; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }

if ! up 5432; then
  command -v pg_ctlcluster >/dev/null || apt_once postgresql
  version=$(ls /etc/postgresql | sort -V | tail -1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  wait_port 5432
fi
if ! psql -h 127.0.0.1 -U postgres -qAtc 'select 1' >/dev/null 2>&1; then
  version=$(ls /etc/postgresql | sort -V | tail -1)
  hba=/etc/postgresql/$version/main/pg_hba.conf
  sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
  pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  sleep 0.5
fi
psql -h 127.0.0.1 -U postgres -qAtc 'select 1' >/dev/null
echo "postgres: up on 127.0.0.1:5432"

if ! up 1883; then
  command -v mosquitto >/dev/null || apt_once mosquitto mosquitto-clients
  mkdir -p /run/mosquitto /var/lib/mosquitto && chown mosquitto /run/mosquitto /var/lib/mosquitto 2>/dev/null || true
  if [ -f /etc/mosquitto/mosquitto.conf ]; then mosquitto -d -c /etc/mosquitto/mosquitto.conf; else mosquitto -d -p 1883; fi
  wait_port 1883
fi
echo "mosquitto: up on 127.0.0.1:1883"
