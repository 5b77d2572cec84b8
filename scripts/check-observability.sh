#!/usr/bin/env bash
# Checks agentry's observability artefacts: Prometheus rules and their unit
# tests, the Prometheus configs, the Alertmanager config (syntax, routing,
# templates), the Grafana dashboards and provisioning files, the
# PrometheusRule copy of the rules (sync and schema).
#
# Usage: scripts/check-observability.sh        (from anywhere; runs at the repo root)
#
# Needs: promtool and amtool (Debian: apt-get install prometheus
# prometheus-alertmanager), python3 with PyYAML (apt-get install python3-yaml).
# Optional: the offline Kubernetes validator ../shared/k8s/validate (or
# $K8S_VALIDATE) run by $K8S_VALIDATE_PYTHON (default python3), which needs
# the packages of its requirements.txt; skipped when absent unless
# OBS_REQUIRE_ALL=1.
# OBS_EMIT_QUERIES=FILE also writes the substituted dashboard queries as JSON
# (see scripts/check_dashboards.py --emit-queries).
#
# Prints one line per check and "N passed, N failed" at the end; exits 1 if
# any check failed.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1

PYTHON=${PYTHON:-python3}
PROMTOOL=${PROMTOOL:-promtool}
AMTOOL=${AMTOOL:-amtool}
K8S_VALIDATE=${K8S_VALIDATE:-../shared/k8s/validate}
K8S_VALIDATE_PYTHON=${K8S_VALIDATE_PYTHON:-python3}
export PROMTOOL

RULES=deploy/prometheus/rules/agentry.rules.yml
RULE_TESTS=deploy/prometheus/tests/agentry.rules.test.yml
PROM_RULE=deploy/prometheus/prometheusrule.yaml
AM_CONFIG=deploy/alertmanager/alertmanager.yml
AM_DATA=deploy/alertmanager/testdata/firing.json

passed=0
failed=0
skipped=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# check DESCRIPTION COMMAND...: runs the command, shows its output on failure.
check() {
    local what=$1
    shift
    printf '==> %s\n' "$what"
    if "$@" >"$log" 2>&1; then
        grep -v '^[[:space:]]*$' "$log" | sed 's/^/    /' | tail -n 3
        printf '    ok\n'
        passed=$((passed + 1))
    else
        sed 's/^/    /' "$log"
        printf '    FAIL: %s\n' "$what"
        failed=$((failed + 1))
    fi
}

skip() {
    printf '==> %s\n    SKIP: %s\n' "$1" "$2"
    skipped=$((skipped + 1))
}

require() {
    if ! command -v "$1" >/dev/null 2>&1; then
        printf 'error: %s not found (%s)\n' "$1" "$2" >&2
        exit 1
    fi
}
require "$PROMTOOL" "apt-get install prometheus"
require "$AMTOOL" "apt-get install prometheus-alertmanager"
require "$PYTHON" "python3"
if ! "$PYTHON" -c 'import yaml' 2>/dev/null; then
    echo "error: $PYTHON has no PyYAML (apt-get install python3-yaml)" >&2
    exit 1
fi
echo "tools: $("$PROMTOOL" --version 2>&1 | head -n 1); $("$AMTOOL" --version 2>&1 | head -n 1)"

# Routing: each label set must reach exactly the expected receiver.
am_routes() {
    local ok=0 labels expected
    while IFS='|' read -r expected labels; do
        # shellcheck disable=SC2086  # labels are separate words on purpose
        if "$AMTOOL" config routes test --config.file="$AM_CONFIG" \
            --verify.receivers="$expected" $labels >/dev/null 2>&1; then
            echo "$labels -> $expected"
        else
            echo "$labels: expected receiver $expected, got" \
                "$("$AMTOOL" config routes test --config.file="$AM_CONFIG" $labels 2>/dev/null)"
            ok=1
        fi
    done <<'EOF'
pager|alertname=AgentryNoLiveAgents severity=critical
pager|alertname=AgentryNatsDisconnected severity=critical capability=echo
chat|alertname=AgentryQueueGrowing severity=warning
chat|alertname=SomethingElse
EOF
    return $ok
}

# Templates: every templated string of every receiver renders with amtool
# against sample notification data.
am_templates() {
    local tmpl out status=0 n=0
    tmpl=$(mktemp)
    : >"$tmpl"
    while IFS= read -r -d '' text; do
        n=$((n + 1))
        if ! out=$("$AMTOOL" template render --template.glob="$tmpl" \
            --template.data="$AM_DATA" --template.text="$text" 2>&1); then
            printf 'template "%s": %s\n' "$text" "$out"
            status=1
        fi
    done < <("$PYTHON" - "$AM_CONFIG" <<'EOF'
import sys, yaml
cfg = yaml.safe_load(open(sys.argv[1]))
def walk(v):
    if isinstance(v, dict):
        for x in v.values():
            yield from walk(x)
    elif isinstance(v, list):
        for x in v:
            yield from walk(x)
    elif isinstance(v, str) and "{{" in v:
        yield v
for s in walk(cfg.get("receivers", [])):
    sys.stdout.write(s + "\0")
EOF
    )
    rm -f "$tmpl"
    echo "$n receiver templates rendered"
    return $status
}

grafana_provisioning() {
    "$PYTHON" - <<'EOF'
import sys, yaml
ok = True
ds = yaml.safe_load(open("deploy/grafana/provisioning/datasources.yaml"))
db = yaml.safe_load(open("deploy/grafana/provisioning/dashboards.yaml"))
if ds.get("apiVersion") != 1 or not any(d.get("type") == "prometheus" for d in ds.get("datasources", [])):
    print("datasources.yaml: apiVersion 1 with a prometheus data source expected"); ok = False
providers = db.get("providers", [])
if db.get("apiVersion") != 1 or not providers or any(p.get("type") != "file" or not p.get("options", {}).get("path") for p in providers):
    print("dashboards.yaml: apiVersion 1 with file providers that have options.path expected"); ok = False
print(f"{len(ds.get('datasources', []))} data source(s), {len(providers)} dashboard provider(s)")
sys.exit(0 if ok else 1)
EOF
}

dashboards() {
    if [ -n "${OBS_EMIT_QUERIES:-}" ]; then
        "$PYTHON" scripts/check_dashboards.py --emit-queries "$OBS_EMIT_QUERIES"
    else
        "$PYTHON" scripts/check_dashboards.py
    fi
}

check "promtool check rules $RULES" "$PROMTOOL" check rules "$RULES"
check "promtool test rules $RULE_TESTS (every alert fires and stays quiet)" \
    "$PROMTOOL" test rules "$RULE_TESTS"
check "promtool check config deploy/prometheus/prometheus.local.yml" \
    "$PROMTOOL" check config deploy/prometheus/prometheus.local.yml
check "Kubernetes scrape config: relabelling simulation + promtool" \
    "$PYTHON" scripts/check_dashboards.py --scrape-config
check "amtool check-config $AM_CONFIG" "$AMTOOL" check-config "$AM_CONFIG"
check "Alertmanager routing (critical -> pager, warning -> chat)" am_routes
check "Alertmanager receiver templates render" am_templates
check "Grafana dashboards (structure, catalogue, promtool parse)" dashboards
check "Grafana provisioning files" grafana_provisioning
check "PrometheusRule in sync with $RULES, alert annotations and runbook" \
    "$PYTHON" scripts/check_dashboards.py --rules-sync

if [ -f "$K8S_VALIDATE" ] && "$K8S_VALIDATE_PYTHON" -c 'import jsonschema, kubernetes_validate, referencing, yaml' 2>/dev/null; then
    check "validate --strict $PROM_RULE" "$K8S_VALIDATE_PYTHON" "$K8S_VALIDATE" --strict "$PROM_RULE"
elif [ "${OBS_REQUIRE_ALL:-0}" = 1 ]; then
    printf '==> validate --strict %s\n    FAIL: validator %s or its Python packages (for %s) missing\n' \
        "$PROM_RULE" "$K8S_VALIDATE" "$K8S_VALIDATE_PYTHON"
    failed=$((failed + 1))
else
    skip "validate --strict $PROM_RULE" \
        "validator $K8S_VALIDATE or its Python packages missing (set K8S_VALIDATE_PYTHON to its venv's python)"
fi

echo
if [ "$skipped" -gt 0 ]; then
    echo "observability: $passed passed, $failed failed, $skipped skipped"
else
    echo "observability: $passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
