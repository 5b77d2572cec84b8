#!/usr/bin/env bash
# Python SDK and protocol conformance (issue 17), against the real system:
#   1. a venv in sdk/python/.venv with the package installed (editable) and
#      its test tools; mypy --strict on the package;
#   2. pytest sdk/python/tests (nats-server with the production accounts and
#      the Rust engine, monitor and agents as child processes);
#   3. the conformance runner against the Rust runtime and the Python SDK
#      (both must pass) and against a deliberately broken agent that never
#      heartbeats (must fail, on the heartbeat scenario).
# Needs the debug binaries (cargo build --bins; CARGO_TARGET_DIR honoured) and
# nats-server 2.12+ (NATS_SERVER_BIN, or nats-server on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
VENV=$ROOT/sdk/python/.venv

if [[ -z "${NATS_SERVER_BIN:-}" ]] && ! command -v nats-server >/dev/null; then
  echo "python-sdk-test: nats-server not found (set NATS_SERVER_BIN)" >&2
  exit 2
fi
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug
for b in agentry agentry-engine agentry-monitor agentry-agent; do
  if [[ ! -x $BIN/$b ]]; then
    echo "python-sdk-test: $BIN/$b missing; building the binaries" >&2
    cargo build --bins
    break
  fi
done

[[ -x $VENV/bin/python ]] || "$PY" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check -e "$ROOT/sdk/python[test]"

echo "== mypy (strict) sdk/python/src"
(cd sdk/python && "$VENV/bin/mypy" src)

echo "== pytest sdk/python/tests"
"$VENV/bin/pytest" -q sdk/python/tests

echo "== conformance: rust"
"$VENV/bin/python" conformance/run.py rust
echo "== conformance: python"
"$VENV/bin/python" conformance/run.py python

echo "== conformance: broken (never heartbeats) must fail"
set +e
out=$("$VENV/bin/python" conformance/run.py broken 2>&1)
status=$?
set -e
echo "$out"
if [[ $status -eq 0 ]] || ! grep -q "FAIL 02-heartbeats" <<<"$out"; then
  echo "python-sdk-test: the conformance runner did not fail the broken agent on heartbeats" >&2
  exit 1
fi
echo "python-sdk-test: ok (the broken agent failed as it must)"
