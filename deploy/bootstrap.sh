#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: system packages (only those missing), the .venv with the
# project installed, and the Kafka broker jars. Every step is skipped when already done, and the
# pip cache and ~/.m2 serve repeated installs. Used by `make run` and `make test`.
#
#   deploy/bootstrap.sh [--with-test-tools]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
WITH_TEST_TOOLS=0
[[ "${1:-}" == "--with-test-tools" ]] && WITH_TEST_TOOLS=1

say() { echo "bootstrap: $*" >&2; }

apt_install() {
  # Installs the Debian packages given, if any are missing. Needs root (or sudo) and apt-get.
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  ((${#missing[@]})) || return 0
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  command -v apt-get >/dev/null 2>&1 || { say "please install: ${missing[*]}"; return 1; }
  say "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq >/dev/null
  # policy-rc.d 101: packages must not start system services (we start what we need ourselves).
  local policy=/usr/sbin/policy-rc.d created=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod +x "$policy" && created=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  ((created)) && $sudo rm -f "$policy"
  return 0
}

# 1. System prerequisites: Python venv support, a JDK for Kafka and Maven to fetch it.
command -v "$PYTHON" >/dev/null 2>&1 || apt_install python3
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
command -v java >/dev/null 2>&1 || apt_install openjdk-17-jre-headless
command -v mvn >/dev/null 2>&1 || apt_install maven
if ((WITH_TEST_TOOLS)); then
  # real Prometheus (promtool) and Alertmanager (amtool) for tests/deploy; services are not started
  command -v promtool >/dev/null 2>&1 || apt_install prometheus
  command -v amtool >/dev/null 2>&1 || apt_install prometheus-alertmanager
  # the page tests drive a real browser (selenium, from the test extras)
  { command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || apt_install chromium chromium-driver
fi

# 2. The virtual environment, installed from the lock file (exact versions, every file checked
#    against its hash) and refreshed only when pyproject.toml or the lock changed. The lock holds
#    the runtime and the test dependencies; `make lock` refreshes it (README, "Tests").
if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
lock="$ROOT/deploy/requirements.lock"
stamp="$VENV/.finsent-installed"
want="$(cat "$ROOT/pyproject.toml" "$lock" | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]] || ! (cd / && "$VENV/bin/python" -c 'import monitor.app.cli') 2>/dev/null; then
  say "installing finsent and its locked dependencies into $VENV (torch is large the first time; pip's cache serves reruns)"
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q --require-hashes -r "$lock" >&2
  # PYTHONWARNINGS: setuptools' notice that an editable install is one is not a problem to show
  PYTHONWARNINGS=ignore "$VENV/bin/python" -m pip install -q --no-deps -e "$ROOT" >&2
  echo "$want" >"$stamp"
fi

# 3. Kafka broker jars (Maven Central, cached in ~/.m2).
"$ROOT/deploy/kafka/kafka-local" fetch
say "ready"
