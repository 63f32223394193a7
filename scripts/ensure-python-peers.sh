#!/usr/bin/env bash
# Makes sure the Python peers the TLS tests start are importable: aiosmtpd (a real SMTP server
# with STARTTLS and implicit TLS, run by scripts/smtp-tls-server.py). Quiet and idempotent.
set -eu
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
python=${PYTHON:-python3}
command -v "$python" >/dev/null || {
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get install -y -qq python3 python3-pip >/dev/null
}
if ! "$python" -c 'import aiosmtpd' 2>/dev/null; then
  "$python" -m pip install --quiet aiosmtpd \
    || "$python" -m pip install --quiet --break-system-packages aiosmtpd
fi
"$python" -c 'import aiosmtpd' && echo "aiosmtpd: importable by $python"
