#!/usr/bin/env python3
"""Static checks for agentry's observability artefacts.

Modes (run from anywhere; paths are relative to the repository root):

  check_dashboards.py [--emit-queries FILE]
      Every dashboard in deploy/grafana/dashboards/: valid JSON, unique uid
      and title, a `datasource` variable (type datasource, query prometheus)
      used by every panel, target and query variable, unique panel ids,
      grid positions inside 24 columns, a unit on every panel, only defined
      template variables, ranges written as $__rate_interval/$__interval/
      $__range, metric names, label names and closed label values from the
      metric catalogue, and every expression parsed by `promtool` (template
      variables substituted, each expression written as a recording rule
      into a temporary rules file for `promtool check rules`).
      --emit-queries FILE writes the substituted expressions as JSON
      ([{dashboard, uid, panel_id, panel, ref_id, expr, instant, kind}]) so
      an end-to-end test can evaluate them over Prometheus' HTTP API.
      --dashboards DIR checks another directory (the five expected files
      are required only in deploy/grafana/dashboards/).

  check_dashboards.py --rules-sync
      deploy/prometheus/prometheusrule.yaml holds exactly the groups of
      deploy/prometheus/rules/agentry.rules.yml; every alert has a severity
      (critical|warning), summary/description/runbook_url annotations and a
      section in deploy/prometheus/RUNBOOK.md; every rule expression passes
      the same catalogue checks as the dashboards.

  check_dashboards.py --write-prometheusrule
      Regenerates prometheusrule.yaml from the plain rules file.

  check_dashboards.py --scrape-config
      Simulates the Kubernetes pod relabelling of deploy/prometheus/prometheus.yml
      on sample pods (annotations honoured, others dropped) and runs
      `promtool check config` on it (on a copy with the Kubernetes discovery
      replaced by a static target when promtool lacks Kubernetes discovery,
      as Debian's build does).

Exit status 0 when every check passes, 1 otherwise. The dashboard mode needs
only the Python standard library and promtool; the other modes need PyYAML.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD_DIR = ROOT / "deploy/grafana/dashboards"
RULES_FILE = ROOT / "deploy/prometheus/rules/agentry.rules.yml"
PROMETHEUS_RULE = ROOT / "deploy/prometheus/prometheusrule.yaml"
RUNBOOK = ROOT / "deploy/prometheus/RUNBOOK.md"
K8S_CONFIG = ROOT / "deploy/prometheus/prometheus.yml"
NAMESPACE = "agent-system"

EXPECTED_DASHBOARDS = {
    "agent-system-overview.json",
    "workflow-performance.json",
    "a2a-communication.json",
    "resource-utilization.json",
    "error-tracking.json",
}

# ----------------------------------------------------------------- catalogue
# The metric catalogue of the design contract: name -> (type, labels), where
# a label maps to its closed set of values or None when any value is allowed.
CAPABILITY = None
STREAMS = {
    "AGENTRY_REQUESTS", "AGENTRY_TASKS", "AGENTRY_STEPS", "AGENTRY_RESULTS",
    "AGENTRY_REGISTRY", "AGENTRY_EVENTS", "AGENTRY_DLQ",
}
REJECTION_REASONS = {
    "not_cloudevent", "missing_attribute", "bad_specversion", "invalid_id", "bad_encoding",
    "content_type_conflict", "unknown_type", "schema_invalid", "too_large", "too_many_headers",
    "unknown_capability", "unknown_workflow", "invalid_workflow", "unknown_run", "rate_limited",
    "quarantined", "queue_full", "duplicate",
}
CATALOGUE: dict[str, tuple[str, dict[str, set[str] | None]]] = {
    "agentry_build_info": ("gauge", {"version": None}),
    "agentry_requests_total": ("counter", {
        "type": {"task.requested", "workflow.requested", "workflow.signal", "workflow.cancel", "other"},
        "outcome": {"accepted", "rejected"},
    }),
    "agentry_rejections_total": ("counter", {"reason": REJECTION_REASONS}),
    "agentry_dlq_entries_total": ("counter", {"reason": None}),
    "agentry_tasks_total": ("counter", {
        "capability": CAPABILITY,
        "outcome": {"completed", "failed", "retried", "timeout"},
    }),
    "agentry_task_duration_seconds": ("histogram", {"capability": CAPABILITY}),
    "agentry_tasks_in_flight": ("gauge", {"capability": CAPABILITY}),
    "agentry_workflow_runs_total": ("counter", {
        "workflow": None,
        "outcome": {"completed", "failed", "cancelled", "timed_out"},
    }),
    "agentry_workflow_run_duration_seconds": ("histogram", {"workflow": None}),
    "agentry_workflow_step_duration_seconds": ("histogram", {"workflow": None, "step": None}),
    "agentry_workflow_runs_active": ("gauge", {}),
    "agentry_workflow_timers_pending": ("gauge", {}),
    "agentry_agents": ("gauge", {
        "capability": CAPABILITY,
        "status": {"live", "draining", "expired", "deregistered"},
    }),
    "agentry_heartbeats_total": ("counter", {}),
    "agentry_agent_expirations_total": ("counter", {}),
    "agentry_a2a_calls_total": ("counter", {
        "kind": {"ask", "delegate"},
        "outcome": {"ok", "error", "timeout"},
    }),
    "agentry_a2a_call_duration_seconds": ("histogram", {"kind": {"ask", "delegate"}}),
    "agentry_queue_depth": ("gauge", {"stream": STREAMS, "consumer": None}),
    "agentry_queue_ack_pending": ("gauge", {"stream": STREAMS, "consumer": None}),
    "agentry_dlq_messages": ("gauge", {"reason": None}),
    "agentry_results_duplicates_refused_total": ("counter", {}),
    "agentry_nats_connected": ("gauge", {}),
    "agentry_nats_reconnects_total": ("counter", {}),
    "agentry_ready": ("gauge", {}),
    "agentry_security_incidents_total": ("counter", {
        "kind": {"flood", "probing", "failure_anomaly", "task"},
        "severity": {"low", "medium", "high", "critical"},
        "tenant": None,
    }),
    "process_cpu_seconds_total": ("counter", {}),
    "process_resident_memory_bytes": ("gauge", {}),
    "process_open_fds": ("gauge", {}),
    "process_max_fds": ("gauge", {}),
}
# Labels on every agentry series (const labels) and labels added by scraping.
CONST_LABELS: dict[str, set[str] | None] = {
    "component": {"engine", "monitor", "agent"},
    "agent_kind": {"echo", "weather", "planning", "customer_service", "data_analysis", "security_monitor"},
}
TARGET_LABELS: dict[str, set[str] | None] = {
    "job": None, "instance": None, "pod": None, "namespace": None, "node": None, "app": None, "env": None,
}
# Series that Prometheus itself provides; any label allowed for ALERTS.
PROMETHEUS_SERIES = {"up": {"job": None, "instance": None}, "ALERTS": None, "ALERTS_FOR_STATE": None}
ALERT_STATE = {"alertstate": {"firing", "pending"}}

PROMQL_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
    "offset", "atan2", "inf", "nan", "start", "end",
}
AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
    "topk", "quantile",
}
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
GRAFANA_BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
    "__interval_ms": "60000",
    "__rate_interval_ms": "60000",
}
ALLOWED_RANGES = {"$__rate_interval", "${__rate_interval}", "$__interval", "${__interval}",
                  "$__range", "${__range}"}
DATASOURCE_REFS = {"${datasource}", "$datasource"}
VAR_RE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")
MATCHER_RE = re.compile(
    r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*'
    r'("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`)\s*,?'
)
PANEL_TYPES_WITHOUT_QUERIES = {"row", "text", "news", "dashlist", "alertlist", "annolist"}


class Problems:
    """Collects problems; each is printed as `where: what`."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, what: str) -> None:
        self.items.append(f"{where}: {what}")

    def __bool__(self) -> bool:
        return bool(self.items)


# ------------------------------------------------------------ PromQL linting
def _skip_string(expr: str, i: int) -> int:
    quote = expr[i]
    i += 1
    while i < len(expr):
        if expr[i] == "\\" and quote != "`":
            i += 2
            continue
        if expr[i] == quote:
            return i + 1
        i += 1
    return i


def _parse_matchers(body: str) -> list[tuple[str, str, str]]:
    matchers = []
    for m in MATCHER_RE.finditer(body):
        matchers.append((m.group(1), m.group(2), m.group(3)[1:-1]))
    return matchers


def lint_promql(expr: str, recorded: set[str]) -> list[str]:
    """Catalogue checks on one expression (after template substitution).

    Returns problems: unknown metric names, label names the metric does not
    have, values outside a closed label set, unknown labels in by/on/without.
    """
    problems: list[str] = []
    known_labels: set[str] = {"le", "__name__", "alertname", "alertstate", "severity"}
    known_labels |= set(CONST_LABELS) | set(TARGET_LABELS)
    for _, labels in CATALOGUE.values():
        known_labels |= set(labels)
    i = 0
    n = len(expr)
    paren_stack: list[str] = []  # function name (or "") per open parenthesis
    label_replace_dst_pending: list[int] = []  # stack depths awaiting a dst string
    label_lists: list[list[str]] = []
    while i < n:
        c = expr[i]
        if c == "#":  # comment to end of line
            while i < n and expr[i] != "\n":
                i += 1
            continue
        if c in "\"'`":
            end = _skip_string(expr, i)
            depth = len(paren_stack)
            if label_replace_dst_pending and label_replace_dst_pending[-1] == depth:
                known_labels.add(expr[i + 1:end - 1])
                label_replace_dst_pending.pop()
            i = end
            continue
        if c == "[":
            close = expr.find("]", i)
            if close < 0:
                problems.append("unclosed '['")
                break
            i = close + 1
            continue
        if c == "(":
            paren_stack.append("")
            i += 1
            continue
        if c == ")":
            if paren_stack:
                paren_stack.pop()
            i += 1
            continue
        if c.isdigit() or (c == "." and i + 1 < n and expr[i + 1].isdigit()):
            m = re.match(r"[0-9.]+(?:[eE][+-]?[0-9]+)?[a-zA-Z]*", expr[i:])
            i += m.end() if m else 1
            continue
        m = re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", expr[i:])
        if not m:
            i += 1
            continue
        ident = m.group(0)
        j = i + m.end()
        while j < n and expr[j] in " \t\r\n":
            j += 1
        nxt = expr[j] if j < n else ""
        if ident in LABEL_LIST_KEYWORDS and nxt == "(":
            close = expr.find(")", j)
            names = [s.strip() for s in expr[j + 1:close].split(",") if s.strip()]
            label_lists.append(names)
            i = close + 1
            continue
        if ident.lower() in PROMQL_KEYWORDS or (
                ident in AGGREGATIONS and (nxt == "(" or re.match(r"(by|without)\b", expr[j:]))):
            i = j  # `sum by (x) (...)`: the parenthesis that follows opens the argument
            continue
        if nxt == "(":  # function or aggregation
            paren_stack.append(ident)
            if ident == "label_replace":
                label_replace_dst_pending.append(len(paren_stack))
            i = j + 1
            continue
        # A metric name, with an optional selector.
        problems += _check_metric(ident, recorded)
        if nxt == "{":
            close = j + 1
            while close < n and expr[close] != "}":
                if expr[close] in "\"'`":
                    close = _skip_string(expr, close)
                else:
                    close += 1
            for label, op, value in _parse_matchers(expr[j + 1:close]):
                problems += _check_matcher(ident, label, op, value, recorded)
            i = close + 1
            continue
        i = j
    for names in label_lists:
        for name in names:
            if name not in known_labels:
                problems.append(f"unknown label {name!r} in a by/on/without/group clause")
    return problems


def _metric_labels(metric: str) -> dict[str, set[str] | None] | None:
    """Label schema of a series name, or None when any label is allowed."""
    if metric in CATALOGUE:
        return dict(CATALOGUE[metric][1])
    for suffix in ("_bucket", "_sum", "_count"):
        base = metric[: -len(suffix)] if metric.endswith(suffix) else None
        if base and base in CATALOGUE and CATALOGUE[base][0] == "histogram":
            labels = dict(CATALOGUE[base][1])
            if suffix == "_bucket":
                labels["le"] = None
            return labels
    raise KeyError(metric)


def _check_metric(metric: str, recorded: set[str]) -> list[str]:
    if metric in recorded or metric in PROMETHEUS_SERIES:
        return []
    try:
        _metric_labels(metric)
    except KeyError:
        return [f"metric {metric!r} is not in the metric catalogue"]
    return []


def _check_matcher(metric: str, label: str, op: str, value: str, recorded: set[str]) -> list[str]:
    if metric in recorded:
        return []
    if metric in PROMETHEUS_SERIES:
        schema = PROMETHEUS_SERIES[metric]
        if schema is None:
            schema = dict(ALERT_STATE) if metric.startswith("ALERTS") else {}
            if label not in schema:
                return []  # alert labels are free
        schema = {**schema, **TARGET_LABELS}
    else:
        try:
            schema = {**_metric_labels(metric), **CONST_LABELS, **TARGET_LABELS}
        except KeyError:
            return []  # reported by _check_metric
    if label == "__name__":
        return []
    if label not in schema:
        return [f"{metric} has no label {label!r}"]
    allowed = schema[label]
    if allowed is None:
        return []
    if op in ("=", "!="):
        values = [value] if value else []
    elif re.fullmatch(r"[\w.\-]+(\|[\w.\-]+)*", value):
        values = value.split("|")
    else:
        return []  # a real regular expression: not checked
    return [f"{metric}{{{label}{op}\"{value}\"}}: {v!r} is not one of {sorted(allowed)}"
            for v in values if v not in allowed]


# -------------------------------------------------------- template variables
def substitution_map(dashboard: dict) -> dict[str, str]:
    values = dict(GRAFANA_BUILTINS)
    for var in dashboard.get("templating", {}).get("list", []):
        name = var.get("name", "")
        if var.get("type") == "datasource":
            values[name] = "prometheus"
        elif var.get("type") in ("interval",):
            values[name] = "1m"
        else:
            values[name] = var.get("allValue") or ".*"
    return values


def substitute(text: str, values: dict[str, str]) -> tuple[str, list[str]]:
    """Replaces template variables; returns the text and undefined names.

    `$1`-style references (regex group references inside label_replace) are
    not template variables and stay as they are.
    """
    undefined: list[str] = []

    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name.isdigit():
            return m.group(0)
        if name not in values:
            undefined.append(name)
            return m.group(0)
        return values[name]

    return VAR_RE.sub(repl, text), undefined


def variable_selector(query: str) -> str | None:
    """The PromQL part of a Prometheus template-variable query, if any."""
    q = query.strip()
    m = re.fullmatch(r"label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)", q, re.S)
    if m:
        return m.group(1).strip()
    m = re.fullmatch(r"query_result\((.*)\)", q, re.S)
    if m:
        return m.group(1).strip()
    return None


# ------------------------------------------------------------- dashboards
def iter_panels(panels: list[dict]):
    for p in panels:
        yield p
        yield from iter_panels(p.get("panels", []) or [])


def uses_datasource_var(ds) -> bool:
    if isinstance(ds, str):
        return ds in DATASOURCE_REFS
    if isinstance(ds, dict):
        return ds.get("uid") in DATASOURCE_REFS and ds.get("type", "prometheus") == "prometheus"
    return False


def recorded_names() -> set[str]:
    if not RULES_FILE.exists():
        return set()
    return set(re.findall(r"^\s*-?\s*record:\s*[\"']?([A-Za-z_:][A-Za-z0-9_:]*)", RULES_FILE.read_text(), re.M))


def display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


class ExprContext:
    """Checks the expressions of one dashboard and records the variables they use."""

    def __init__(self, problems: Problems, values: dict[str, str], recorded: set[str]) -> None:
        self.problems = problems
        self.values = values
        self.recorded = recorded
        self.used_vars: set[str] = set()

    def check(self, where: str, expr: str, *, require_var_ranges: bool) -> str:
        """Lints one expression; returns it with template variables substituted."""
        without_strings = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
        for r in re.findall(r"\[([^\]]*)\]", without_strings):
            if require_var_ranges and r.split(":")[0].strip() not in ALLOWED_RANGES:
                self.problems.add(where, f"range [{r}] must be $__rate_interval, $__interval or $__range")
        for m in VAR_RE.finditer(expr):
            self.used_vars.add(m.group(1) or m.group(2) or m.group(3))
        out, undefined = substitute(expr, self.values)
        for name in undefined:
            self.problems.add(where, f"undefined template variable ${name}")
        for p in lint_promql(out, self.recorded):
            self.problems.add(where, p)
        return out


def check_dashboards(problems: Problems, promtool: str, emit: Path | None, directory: Path) -> int:
    files = sorted(directory.glob("*.json"))
    names = {f.name for f in files}
    if directory.resolve() == DASHBOARD_DIR.resolve():
        for missing in sorted(EXPECTED_DASHBOARDS - names):
            problems.add(display(directory), f"missing dashboard {missing}")
    recorded = recorded_names()
    uids: dict[str, str] = {}
    titles: dict[str, str] = {}
    queries: list[dict] = []
    for path in files:
        rel = display(path)
        try:
            board = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            problems.add(rel, f"invalid JSON: {e}")
            continue
        if not isinstance(board, dict):
            problems.add(rel, "top level is not an object")
            continue
        for key in ("uid", "title", "schemaVersion", "panels", "templating"):
            if key not in board:
                problems.add(rel, f"missing top-level key {key!r}")
        uid, title = board.get("uid", ""), board.get("title", "")
        if not isinstance(uid, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid):
            problems.add(rel, f"uid {uid!r} must be 1-40 characters [A-Za-z0-9_-]")
        if uid in uids:
            problems.add(rel, f"uid {uid!r} also used by {uids[uid]}")
        uids[uid] = rel
        if title in titles:
            problems.add(rel, f"title {title!r} also used by {titles[title]}")
        titles[title] = rel
        if board.get("id") is not None:
            problems.add(rel, "\"id\" must be null in a provisioned dashboard")
        if not isinstance(board.get("schemaVersion"), int) or board["schemaVersion"] < 36:
            problems.add(rel, "schemaVersion must be an integer >= 36")

        variables = board.get("templating", {}).get("list", [])
        var_names = [v.get("name") for v in variables]
        if len(set(var_names)) != len(var_names):
            problems.add(rel, "duplicate template variable names")
        ds_vars = [v for v in variables if v.get("name") == "datasource"]
        if not ds_vars:
            problems.add(rel, "no template variable named 'datasource'")
        elif ds_vars[0].get("type") != "datasource" or ds_vars[0].get("query") != "prometheus":
            problems.add(rel, "variable 'datasource' must have type 'datasource' and query 'prometheus'")
        ctx = ExprContext(problems, substitution_map(board), recorded)

        for var in variables:
            if var.get("type") != "query":
                continue
            where = f"{rel} variable {var.get('name')}"
            if not uses_datasource_var(var.get("datasource")):
                problems.add(where, "datasource must be ${datasource}")
            q = var.get("query")
            q = q.get("query", "") if isinstance(q, dict) else (q or "")
            selector = variable_selector(q)
            if selector is None:
                problems.add(where, f"unsupported variable query {q!r}")
                continue
            out = ctx.check(where, selector, require_var_ranges=False)
            queries.append({"dashboard": path.name, "uid": uid, "panel_id": None,
                            "panel": f"variable {var.get('name')}", "ref_id": None,
                            "expr": out, "instant": True, "kind": "variable"})

        for ann in board.get("annotations", {}).get("list", []):
            ds = ann.get("datasource")
            grafana_builtin = isinstance(ds, dict) and ds.get("type") == "grafana"
            if ds is not None and not grafana_builtin and not uses_datasource_var(ds):
                problems.add(f"{rel} annotation {ann.get('name')}", "datasource must be ${datasource}")

        ids: dict[int, str] = {}
        for panel in iter_panels(board.get("panels", [])):
            ptitle = panel.get("title", "")
            where = f"{rel} panel {panel.get('id')} {ptitle!r}"
            pid = panel.get("id")
            if not isinstance(pid, int):
                problems.add(where, "panel id must be an integer")
            elif pid in ids:
                problems.add(where, f"panel id {pid} also used by {ids[pid]!r}")
            else:
                ids[pid] = ptitle
            if not ptitle:
                problems.add(where, "panel has no title")
            gp = panel.get("gridPos", {})
            if not all(isinstance(gp.get(k), int) for k in ("h", "w", "x", "y")):
                problems.add(where, "gridPos needs integer h, w, x, y")
            elif gp["x"] < 0 or gp["w"] < 1 or gp["x"] + gp["w"] > 24:
                problems.add(where, f"gridPos x={gp['x']} w={gp['w']} outside the 24-column grid")
            ptype = panel.get("type")
            if ptype in PANEL_TYPES_WITHOUT_QUERIES:
                if panel.get("targets"):
                    problems.add(where, f"{ptype} panel must not have targets")
                continue
            if not uses_datasource_var(panel.get("datasource")):
                problems.add(where, "panel datasource must be {\"type\": \"prometheus\", \"uid\": \"${datasource}\"}")
            if not panel.get("fieldConfig", {}).get("defaults", {}).get("unit"):
                problems.add(where, "no unit in fieldConfig.defaults")
            targets = panel.get("targets") or []
            if not targets:
                problems.add(where, "panel has no targets")
            ref_ids: set[str] = set()
            for t in targets:
                ref = t.get("refId")
                twhere = f"{where} target {ref}"
                if not ref or ref in ref_ids:
                    problems.add(twhere, "refId missing or duplicated")
                ref_ids.add(ref)
                if "datasource" in t and not uses_datasource_var(t["datasource"]):
                    problems.add(twhere, "target datasource must be ${datasource}")
                expr = t.get("expr", "")
                if not expr.strip():
                    problems.add(twhere, "empty expr")
                    continue
                for m in VAR_RE.finditer(t.get("legendFormat", "")):
                    problems.add(twhere, f"legendFormat uses a variable {m.group(0)}; use {{{{label}}}}")
                out = ctx.check(twhere, expr, require_var_ranges=True)
                queries.append({"dashboard": path.name, "uid": uid, "panel_id": pid, "panel": ptitle,
                                "ref_id": ref, "expr": out, "instant": bool(t.get("instant")),
                                "kind": "panel"})
        for name in var_names:
            if name != "datasource" and name not in ctx.used_vars:
                problems.add(rel, f"template variable ${name} is defined but no query uses it")

    promtool_parse(problems, promtool, queries)
    if emit is not None:
        emit.parent.mkdir(parents=True, exist_ok=True)
        emit.write_text(json.dumps(queries, indent=2) + "\n")
        print(f"wrote {len(queries)} queries to {emit}")
    panels = sum(1 for q in queries if q["kind"] == "panel")
    print(f"dashboards: {len(files)} files, {panels} panel queries, "
          f"{len(queries) - panels} variable queries checked")
    return len(queries)


def promtool_parse(problems: Problems, promtool: str, queries: list[dict]) -> None:
    """Parses every expression with promtool via a temporary rules file."""
    if not queries:
        return
    rules = [{"record": f"dashboard_check:e{i:04d}", "expr": q["expr"]} for i, q in enumerate(queries)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dashboard-exprs.json"  # JSON is YAML: no PyYAML needed
        path.write_text(json.dumps({"groups": [{"name": "dashboard_exprs", "rules": rules}]}))
        res = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True,
                             check=False)
    if res.returncode == 0:
        return
    output = res.stdout + res.stderr
    mapped = False
    for m in re.finditer(r'"dashboard_check:e(\d{4})": (.*)', output):
        q = queries[int(m.group(1))]
        problems.add(f"{q['dashboard']} panel {q['panel_id']} {q['panel']!r} target {q['ref_id']}",
                     f"promtool: {m.group(2)}")
        mapped = True
    if not mapped:
        problems.add("promtool check rules", output.strip())


# ------------------------------------------------------------------- rules
def load_yaml(path: Path):
    try:
        import yaml  # noqa: PLC0415
    except ImportError:
        sys.exit("this mode needs PyYAML (apt-get install python3-yaml, or pip install pyyaml)")
    with path.open() as f:
        return yaml.safe_load(f)


def first_difference(a, b, where: str = "") -> str | None:
    if type(a) is not type(b):
        return f"{where or '/'}: {a!r} != {b!r}"
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                return f"{where}/{k}: only in {'rules file' if k in a else 'PrometheusRule'}"
            d = first_difference(a[k], b[k], f"{where}/{k}")
            if d:
                return d
        return None
    if isinstance(a, list):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            d = first_difference(x, y, f"{where}[{i}]")
            if d:
                return d
        if len(a) != len(b):
            return f"{where}: {len(a)} items in the rules file, {len(b)} in the PrometheusRule"
        return None
    return None if a == b else f"{where}: {a!r} != {b!r}"


def check_rules_sync(problems: Problems) -> None:
    plain = load_yaml(RULES_FILE)
    rel_plain = str(RULES_FILE.relative_to(ROOT))
    rel_cr = str(PROMETHEUS_RULE.relative_to(ROOT))
    if not PROMETHEUS_RULE.exists():
        problems.add(rel_cr, "missing; run scripts/check_dashboards.py --write-prometheusrule")
        return
    cr = load_yaml(PROMETHEUS_RULE)
    if cr.get("apiVersion") != "monitoring.coreos.com/v1" or cr.get("kind") != "PrometheusRule":
        problems.add(rel_cr, "must be apiVersion monitoring.coreos.com/v1, kind PrometheusRule")
    if cr.get("metadata", {}).get("namespace") != NAMESPACE:
        problems.add(rel_cr, f"metadata.namespace must be {NAMESPACE}")
    diff = first_difference(plain.get("groups"), (cr.get("spec") or {}).get("groups"), "groups")
    if diff:
        problems.add(rel_cr, f"differs from {rel_plain} at {diff}; "
                             "run scripts/check_dashboards.py --write-prometheusrule")

    runbook = RUNBOOK.read_text() if RUNBOOK.exists() else ""
    headings = {h.strip() for h in re.findall(r"^##\s+(.+)$", runbook, re.M)}
    recorded = {r["record"] for g in plain["groups"] for r in g["rules"] if "record" in r}
    alerts = 0
    for group in plain["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            where = f"{rel_plain} {group['name']}/{name}"
            for p in lint_promql(rule["expr"], recorded):
                problems.add(where, p)
            if "alert" not in rule:
                continue
            alerts += 1
            sev = rule.get("labels", {}).get("severity")
            if sev not in ("critical", "warning"):
                problems.add(where, f"severity label must be critical or warning, not {sev!r}")
            ann = rule.get("annotations", {})
            for key in ("summary", "description", "runbook_url"):
                if not ann.get(key):
                    problems.add(where, f"missing annotation {key}")
            anchor = name.lower()
            if not ann.get("runbook_url", "").endswith(f"RUNBOOK.md#{anchor}"):
                problems.add(where, f"runbook_url must point at RUNBOOK.md#{anchor}")
            if name not in headings:
                problems.add(where, f"no '## {name}' section in {RUNBOOK.relative_to(ROOT)}")
    print(f"rules: {alerts} alerting and {len(recorded)} recording rules; "
          f"{rel_cr} {'differs' if diff else 'matches'}")


PROMETHEUS_RULE_HEADER = """\
# GENERATED from deploy/prometheus/rules/agentry.rules.yml by
#     python3 scripts/check_dashboards.py --write-prometheusrule
# Do not edit: change the rules file and regenerate. scripts/check-observability.sh
# fails when the two differ.
#
# For the prometheus-operator: its Prometheus resource selects rules by
# label (spec.ruleSelector / ruleNamespaceSelector); match these labels.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: agentry
  namespace: {namespace}
  labels:
    app.kubernetes.io/name: agentry
    app.kubernetes.io/component: monitoring
    app.kubernetes.io/part-of: agentry
spec:
"""


def render_prometheus_rule() -> str:
    text = RULES_FILE.read_text()
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("groups:")), None)
    if start is None:
        sys.exit(f"{RULES_FILE}: no top-level 'groups:' line")
    body = "\n".join(("  " + line) if line.strip() else "" for line in lines[start:])
    return PROMETHEUS_RULE_HEADER.format(namespace=NAMESPACE) + body + "\n"


# ------------------------------------------------------------ scrape config
def go_expand(template: str, match: re.Match) -> str:
    """Go regexp Expand for $1, ${1}, $name (what Prometheus relabelling uses)."""

    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        try:
            return match.group(int(name)) if name.isdigit() else match.group(name)
        except IndexError:  # no such group: Go expands it to ""
            return ""

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", repl, template)


def relabel(labels: dict[str, str], configs: list[dict]) -> dict[str, str] | None:
    """Applies Prometheus relabel_configs (replace, keep, drop, labelmap,
    labeldrop, labelkeep); returns None when the target is dropped."""
    labels = dict(labels)
    for cfg in configs:
        action = cfg.get("action", "replace")
        regex = re.compile(f"^(?:{cfg.get('regex', '(.*)')})$")
        sep = cfg.get("separator", ";")
        value = sep.join(labels.get(s, "") for s in cfg.get("source_labels", []))
        if action == "keep":
            if not regex.match(value):
                return None
        elif action == "drop":
            if regex.match(value):
                return None
        elif action == "replace":
            m = regex.match(value)
            if m:
                target = go_expand(cfg["target_label"], m)
                res = go_expand(cfg.get("replacement", "$1"), m)
                if res:
                    labels[target] = res
                else:
                    labels.pop(target, None)
        elif action == "labelmap":
            for k, v in list(labels.items()):
                m = regex.match(k)
                if m:
                    labels[go_expand(cfg.get("replacement", "$1"), m)] = v
        elif action == "labeldrop":
            labels = {k: v for k, v in labels.items() if not regex.match(k)}
        elif action == "labelkeep":
            labels = {k: v for k, v in labels.items() if regex.match(k)}
        else:
            raise ValueError(f"relabel action {action!r} not simulated")
    return labels


def pod_target(job: str, *, name: str, ip: str, port: int, phase: str = "Running",
               annotations: dict[str, str] | None = None, ns: str = NAMESPACE) -> dict[str, str]:
    addr = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
    labels = {
        "job": job, "__address__": addr, "__scheme__": "http", "__metrics_path__": "/metrics",
        "__meta_kubernetes_namespace": ns, "__meta_kubernetes_pod_name": name,
        "__meta_kubernetes_pod_ip": ip, "__meta_kubernetes_pod_phase": phase,
        "__meta_kubernetes_pod_node_name": "node-1",
        "__meta_kubernetes_pod_container_port_number": str(port),
        "__meta_kubernetes_pod_label_app_kubernetes_io_name": "agentry",
    }
    for k, v in (annotations or {}).items():
        key = re.sub(r"[^A-Za-z0-9_]", "_", k)
        labels[f"__meta_kubernetes_pod_annotation_{key}"] = v
        labels[f"__meta_kubernetes_pod_annotationpresent_{key}"] = "true"
    return labels


def finalize(labels: dict[str, str]) -> dict[str, str]:
    out = dict(labels)
    out.setdefault("instance", out["__address__"])
    url = f"{out['__scheme__']}://{out['__address__']}{out['__metrics_path__']}"
    out = {k: v for k, v in out.items() if not k.startswith("__")}
    out["__url__"] = url
    return out


def check_scrape_config(problems: Problems, promtool: str) -> None:
    rel = str(K8S_CONFIG.relative_to(ROOT))
    cfg = load_yaml(K8S_CONFIG)
    jobs = [j for j in cfg.get("scrape_configs", []) if j.get("kubernetes_sd_configs")]
    if not jobs:
        problems.add(rel, "no scrape config with kubernetes_sd_configs")
        return
    job = jobs[0]
    sd = job["kubernetes_sd_configs"][0]
    if sd.get("role") != "pod":
        problems.add(rel, "kubernetes_sd_configs role must be pod")
    if sd.get("namespaces", {}).get("names") != [NAMESPACE]:
        problems.add(rel, f"kubernetes_sd_configs must be limited to namespace {NAMESPACE}")
    name = job["job_name"]
    cases = [
        ("annotated pod on 8080",
         pod_target(name, name="agentry-engine-7c9d", ip="10.42.0.7", port=8080,
                    annotations={"prometheus.io/scrape": "true", "prometheus.io/port": "8080"}),
         {"__url__": "http://10.42.0.7:8080/metrics", "instance": "agentry-engine-7c9d",
          "pod": "agentry-engine-7c9d", "namespace": NAMESPACE, "job": name}),
        ("annotated port differs from the container port, custom path and scheme",
         pod_target(name, name="agentry-agent-weather-1", ip="10.42.1.9", port=15090,
                    annotations={"prometheus.io/scrape": "true", "prometheus.io/port": "9102",
                                 "prometheus.io/path": "/stats/metrics", "prometheus.io/scheme": "https"}),
         {"__url__": "https://10.42.1.9:9102/stats/metrics", "instance": "agentry-agent-weather-1"}),
        ("IPv6 pod",
         pod_target(name, name="agentry-monitor-0", ip="fd00:10:42::1c", port=15020,
                    annotations={"prometheus.io/scrape": "true", "prometheus.io/port": "8080"}),
         {"__url__": "http://[fd00:10:42::1c]:8080/metrics"}),
        ("no scrape annotation",
         pod_target(name, name="nats-0", ip="10.42.0.3", port=4222), None),
        ("scrape annotation false",
         pod_target(name, name="redis-0", ip="10.42.0.4", port=6379,
                    annotations={"prometheus.io/scrape": "false", "prometheus.io/port": "6379"}), None),
        ("pending pod",
         pod_target(name, name="agentry-engine-new", ip="10.42.0.8", port=8080, phase="Pending",
                    annotations={"prometheus.io/scrape": "true", "prometheus.io/port": "8080"}), None),
    ]
    for title, meta, expected in cases:
        got = relabel(meta, job.get("relabel_configs", []))
        got = finalize(got) if got is not None else None
        if expected is None:
            if got is not None:
                problems.add(f"{rel} relabelling ({title})", f"target kept: {got['__url__']}")
            continue
        if got is None:
            problems.add(f"{rel} relabelling ({title})", "target dropped")
            continue
        for k, v in expected.items():
            if got.get(k) != v:
                problems.add(f"{rel} relabelling ({title})", f"{k} = {got.get(k)!r}, expected {v!r}")
        for k in ("component", "agent_kind"):
            if k in got:
                problems.add(f"{rel} relabelling ({title})", f"target label {k!r} would clash with metric labels")
    print(f"scrape config: {len(cases)} relabelling cases simulated")

    res = subprocess.run([promtool, "check", "config", "--syntax-only", str(K8S_CONFIG)],
                         capture_output=True, text=True, check=False)
    out = res.stdout + res.stderr
    if res.returncode == 0:
        print(f"promtool check config {rel}: ok")
        return
    if "kubernetes_sd_configs not found" not in out:
        problems.add(rel, f"promtool check config: {out.strip()}")
        return
    # Debian's promtool is built without Kubernetes discovery: check the rest
    # of the file with a static target in its place.
    import yaml  # noqa: PLC0415 (present: load_yaml succeeded)
    for j in cfg["scrape_configs"]:
        if j.pop("kubernetes_sd_configs", None) is not None:
            j["static_configs"] = [{"targets": ["10.0.0.1:8080"]}]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prometheus.yml"
        path.write_text(yaml.safe_dump(cfg))
        res = subprocess.run([promtool, "check", "config", "--syntax-only", str(path)],
                             capture_output=True, text=True, check=False)
    if res.returncode != 0:
        problems.add(rel, f"promtool check config (static stand-in): {(res.stdout + res.stderr).strip()}")
    else:
        print(f"promtool check config {rel}: ok (this promtool lacks Kubernetes discovery; "
              "checked with a static target in its place)")


# -------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--emit-queries", type=Path, metavar="FILE",
                    help="write the substituted dashboard expressions as JSON")
    ap.add_argument("--rules-sync", action="store_true",
                    help="check the PrometheusRule against the rules file and lint the rules")
    ap.add_argument("--write-prometheusrule", action="store_true",
                    help="regenerate deploy/prometheus/prometheusrule.yaml")
    ap.add_argument("--scrape-config", action="store_true",
                    help="simulate and check the Kubernetes scrape configuration")
    ap.add_argument("--dashboards", type=Path, default=DASHBOARD_DIR, metavar="DIR",
                    help="directory of dashboard JSON files (default: deploy/grafana/dashboards)")
    ap.add_argument("--promtool", default=os.environ.get("PROMTOOL", "promtool"),
                    help="promtool binary (default: $PROMTOOL or promtool)")
    args = ap.parse_args()

    if args.write_prometheusrule:
        PROMETHEUS_RULE.write_text(render_prometheus_rule())
        print(f"wrote {PROMETHEUS_RULE.relative_to(ROOT)}")
        return 0

    promtool = shutil.which(args.promtool)
    problems = Problems()
    if args.rules_sync:
        check_rules_sync(problems)
    elif args.scrape_config:
        if not promtool:
            print(f"error: {args.promtool} not found (apt-get install prometheus)", file=sys.stderr)
            return 1
        check_scrape_config(problems, promtool)
    else:
        if not promtool:
            print(f"error: {args.promtool} not found (apt-get install prometheus)", file=sys.stderr)
            return 1
        check_dashboards(problems, promtool, args.emit_queries, args.dashboards)
    for p in problems.items:
        print(f"FAIL {p}")
    if problems:
        print(f"{len(problems.items)} problem(s)")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
