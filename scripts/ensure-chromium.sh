#!/usr/bin/env bash
# Makes sure Debian's Chromium and ChromeDriver are installed for the browser test
# (tests/api/browser.rs). Safe to run any number of times.
set -eu
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  echo "chromium: $(chromium --version 2>/dev/null | head -1)"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
[ -f /tmp/.insa-apt-updated ] || { $sudo apt-get update -qq && touch /tmp/.insa-apt-updated; }
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
echo "chromium: $(chromium --version 2>/dev/null | head -1) installed"
