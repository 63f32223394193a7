#!/usr/bin/env bash
# Makes sure `promtool` (Debian's prometheus package) is installed for the metrics test
# (tests/api/metrics.rs runs `promtool check metrics` on a scrape). Safe to run any number of times.
set -eu
if command -v promtool >/dev/null; then
  echo "promtool: $(promtool --version 2>&1 | head -1)"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
[ -f /tmp/.insa-apt-updated ] || { $sudo apt-get update -qq && touch /tmp/.insa-apt-updated; }
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
echo "promtool: $(promtool --version 2>&1 | head -1) installed"
