#!/usr/bin/env bash
# Makes sure the Python peers the TLS tests start are importable: aiosmtpd (a real SMTP server
# with STARTTLS and implicit TLS, run by scripts/smtp-tls-server.py) and paho-mqtt (an MQTT client
# with TLS and client certificates, run by scripts/mqtt-tls-publish.py). Quiet and idempotent.
set -eu
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
python=${PYTHON:-python3}
command -v "$python" >/dev/null || {
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get install -y -qq python3 python3-pip >/dev/null
}
for module_package in aiosmtpd:aiosmtpd paho.mqtt:paho-mqtt; do
  module=${module_package%%:*} package=${module_package#*:}
  if ! "$python" -c "import $module" 2>/dev/null; then
    "$python" -m pip install --quiet "$package" \
      || "$python" -m pip install --quiet --break-system-packages "$package"
  fi
  "$python" -c "import $module" && echo "$package: importable by $python"
done
