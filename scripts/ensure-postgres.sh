#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432 for the test suite: starts the local
# Debian cluster if it is down (installing it if missing) and checks that `postgres` can connect
# over loopback without a password. Safe to run any number of times.
set -eu
up() { (exec 3<>"/dev/tcp/127.0.0.1/5432") 2>/dev/null; }
if ! up; then
  if ! command -v pg_ctlcluster >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  version=$(ls /etc/postgresql | sort -V | tail -1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 1 100); do up && break; sleep 0.1; done
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
