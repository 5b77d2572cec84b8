#!/usr/bin/env bash
# Render deploy/base and every deploy/overlays/* with kustomize, validate each
# rendering strictly against Kubernetes and CRD schemas, and run the policy
# checks (deploy/policy_check.py) on it. Also: the plain manifests in
# deploy/nats, the canary analysis PromQL (promtool, if installed) and the
# policy checker's self-test. Exit status is non-zero if anything fails;
# every target is still checked so one run reports all problems.
#
#   deploy/validate.sh                 # from anywhere inside the repository
#   K8S_VALIDATE=/path/to/validate deploy/validate.sh
#
# Environment:
#   K8S_VALIDATOR  "shared" (default): the project's offline validator;
#                  "kubeconform": kubeconform with the datreeio CRD catalogue
#                  (for CI machines without ../shared, e.g. GitHub Actions)
#   K8S_VALIDATE   the offline validator (default: ../shared/k8s/validate,
#                  relative to the repository root)
#   K8S_PYTHON     python to run it with; otherwise the first of $K8S_VENV,
#                  <validator dir>/.venv, ../scratch/k8svenv (relative to the
#                  repository root) that exists, else python3
#   K8S_VERSION    Kubernetes minor version to validate against (default 1.32)
#   KUSTOMIZE      "kubectl kustomize" (default) or "kustomize build"
#   RENDER_DIR     keep the rendered manifests there (default: a temp dir)
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

K8S_VALIDATE=${K8S_VALIDATE:-../shared/k8s/validate}
K8S_VERSION=${K8S_VERSION:-1.32}
KUSTOMIZE=${KUSTOMIZE:-kubectl kustomize}

die() { echo "validate.sh: $*" >&2; exit 2; }

K8S_VALIDATOR=${K8S_VALIDATOR:-shared}
read -r -a kustomize_cmd <<<"$KUSTOMIZE"
command -v "${kustomize_cmd[0]}" >/dev/null || die "${kustomize_cmd[0]} not found (needed for: $KUSTOMIZE)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
render_dir=${RENDER_DIR:-$work/rendered}
mkdir -p "$render_dir"

case $K8S_VALIDATOR in
shared)
    [[ -f $K8S_VALIDATE ]] || die "validator not found at $K8S_VALIDATE (set K8S_VALIDATE, or K8S_VALIDATOR=kubeconform)"
    validator_dir=$(cd "$(dirname "$K8S_VALIDATE")" && pwd)
    [[ -d $validator_dir/schemas ]] || die "no schemas/ directory beside $K8S_VALIDATE"
    # Pick the python that has the validator's requirements installed.
    python=${K8S_PYTHON:-}
    if [[ -z $python ]]; then
        for venv in "${K8S_VENV:-}" "$validator_dir/.venv" "$repo_root/../scratch/k8svenv"; do
            if [[ -n $venv && -x $venv/bin/python ]]; then python=$venv/bin/python; break; fi
        done
    fi
    python=${python:-python3}
    "$python" -c 'import kubernetes_validate, jsonschema, referencing, yaml' 2>/dev/null ||
        die "$python lacks the validator's requirements: $python -m pip install -r $validator_dir/requirements.txt"
    # The validator finds CRD schemas in schemas/ beside itself. Argo Rollouts'
    # AnalysisTemplate (used by the canary overlay) is not among the shared
    # ones, so run a private copy whose schemas/ is the shared set plus ours.
    # The shared files are never modified.
    cp "$K8S_VALIDATE" "$work/validate"
    cp -R "$validator_dir/schemas" "$work/schemas"
    for extra in deploy/overlays/*/schemas; do
        [[ -d $extra ]] && cp -R "$extra/." "$work/schemas/"
    done
    validate_schemas() { "$python" "$work/validate" --strict --k8s-version "$K8S_VERSION" -q "$1"; }
    ;;
kubeconform)
    command -v kubeconform >/dev/null || die "kubeconform not found"
    python=${K8S_PYTHON:-python3}
    "$python" -c 'import yaml' 2>/dev/null || die "$python lacks PyYAML (pip install pyyaml)"
    mkdir -p "$work/schemas"
    for extra in deploy/overlays/*/schemas; do
        [[ -d $extra ]] && cp -R "$extra/." "$work/schemas/"
    done
    validate_schemas() {
        kubeconform -strict -summary -kubernetes-version "$K8S_VERSION.0" \
            -schema-location default \
            -schema-location "$work/schemas/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json" \
            -schema-location 'https://raw.githubusercontent.com/datreeio/CRDs-catalog/main/{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json' \
            "$1"
    }
    ;;
*)
    die "K8S_VALIDATOR must be shared or kubeconform, not $K8S_VALIDATOR"
    ;;
esac

failures=0
pass() { printf '  ok    %s\n' "$1"; }
fail() { printf '  FAIL  %s\n' "$1"; failures=$((failures + 1)); }

targets=(deploy/base)
for overlay in deploy/overlays/*/; do
    [[ -f $overlay/kustomization.yaml ]] && targets+=("${overlay%/}")
done

for target in "${targets[@]}"; do
    name=${target#deploy/}
    out=$render_dir/${name//\//_}.yaml
    echo "== $target"
    if ! "${kustomize_cmd[@]}" "$target" >"$out" 2>"$work/err"; then
        cat "$work/err" >&2
        fail "render ($KUSTOMIZE $target)"
        continue
    fi
    pass "render: $(grep -c '^kind:' "$out") objects"
    if validate_schemas "$out"; then
        pass "schemas ($K8S_VALIDATOR, strict, Kubernetes $K8S_VERSION)"
    else
        fail "schemas"
    fi
    if "$python" deploy/policy_check.py "$out" 2>/dev/null; then
        pass "policy"
    else
        fail "policy"
    fi
done

# Plain manifests applied outside kustomize.
for manifest in deploy/nats/*.yaml; do
    case $manifest in deploy/nats/values*.yaml) continue ;; esac   # Helm values, not manifests
    echo "== $manifest"
    if validate_schemas "$manifest" && "$python" deploy/policy_check.py "$manifest" 2>/dev/null; then
        pass "schemas and policy"
    else
        fail "$manifest"
    fi
done

# PromQL of the canary analysis: substitute the template arguments and let
# promtool parse every query (skipped where promtool is not installed).
echo "== canary analysis PromQL"
if command -v promtool >/dev/null; then
    if "$python" - "$render_dir/overlays_canary.yaml" >"$work/analysis-rules.yml" <<'PY' &&
import sys, yaml
rules = []
for d in yaml.safe_load_all(open(sys.argv[1])):
    if not d or d.get("kind") != "AnalysisTemplate":
        continue
    args = {a["name"]: a.get("value", "placeholder") for a in d["spec"].get("args", [])}
    for m in d["spec"]["metrics"]:
        q = m["provider"]["prometheus"]["query"]
        for k, v in args.items():
            q = q.replace("{{args.%s}}" % k, v)
        name = "analysis:%s:%s" % (d["metadata"]["name"], m["name"])
        rules.append({"record": name.replace("-", "_"), "expr": q})
if not rules:
    sys.exit("no AnalysisTemplate metrics found")
yaml.safe_dump({"groups": [{"name": "canary-analysis", "rules": rules}]}, sys.stdout)
PY
        promtool check rules "$work/analysis-rules.yml" >"$work/promtool.out" 2>&1; then
        pass "promtool: $(grep -o '[0-9]* rules found' "$work/promtool.out")"
    else
        cat "$work/promtool.out" 2>/dev/null
        fail "canary analysis PromQL"
    fi
else
    echo "  skip  promtool not installed"
fi

echo "== deploy/policy_check.py --self-test"
if "$python" deploy/policy_check.py --self-test >"$work/selftest" 2>&1; then
    pass "$(tail -n 1 "$work/selftest")"
else
    cat "$work/selftest"
    fail "policy self-test"
fi

if ((failures)); then
    echo "validate.sh: $failures check(s) failed" >&2
    exit 1
fi
echo "validate.sh: ${#targets[@]} renderings valid and policy-clean"
