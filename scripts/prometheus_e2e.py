#!/usr/bin/env python3
"""End-to-end observability check (run by .ci/run).

Starts `agentry up --offline` (a private nats-server, engine, monitor and all
agents) on free loopback ports, drives a mixed workload including failures
and rejections, starts a real Prometheus scraping the one HTTP endpoint of
`agentry up` and evaluating the alert rules, then evaluates through the
Prometheus HTTP API every PromQL expression of every dashboard panel and
every alert and recording rule. Each must return a well-formed result; each
panel of the overview dashboard must return data.

  scripts/prometheus_e2e.py [--agentry target/debug/agentry] [--keep]
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


def wait(pred, what, limit=60):
    start = time.time()
    while time.time() - start < limit:
        try:
            if pred():
                return
        except Exception:
            pass
        time.sleep(0.5)
    sys.exit(f"prometheus_e2e: {what} not reached within {limit}s")


def sh(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)


def main():
    ap = argparse.ArgumentParser()
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    ap.add_argument("--agentry", default=os.path.join(target, "debug", "agentry"))
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "prometheus")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if not shutil.which(args.prometheus) and not os.path.exists(args.prometheus):
        sys.exit("prometheus_e2e: prometheus not found (apt-get install prometheus)")

    work = tempfile.mkdtemp(prefix="agentry-prom-")
    http_port, prom_port = free_port(), free_port()
    env = dict(os.environ, RUST_LOG="warn")
    up = subprocess.Popen(
        [args.agentry, "up", "--offline", "--dir", os.path.join(work, "state"), "--http-addr", f"127.0.0.1:{http_port}"],
        cwd=work, env=env, stdout=open(os.path.join(work, "up.log"), "w"), stderr=subprocess.STDOUT)
    prom = None
    try:
        wait(lambda: get(f"http://127.0.0.1:{http_port}/ready")[0] == 200, "agentry up ready", 90)
        ctx = json.load(open(os.path.join(work, "state", "context")))
        nats = ["--nats-url", ctx["nats_url"]]
        # Mixed workload: successes, handler failures, retries, rejections, a workflow, weather from the fixture.
        for i in range(20):
            sh([args.agentry, *nats, "submit", "echo", "--input", json.dumps({"i": i}), "--timeout", "20s"])
        for mode in ["permanent", "retryable"]:
            sh([args.agentry, *nats, "submit", "echo", "--input", json.dumps({"fail": mode}), "--timeout", "60s"])
        sh([args.agentry, *nats, "submit", "no_such_capability", "--timeout", "10s"])
        sh([args.agentry, *nats, "submit", "weather_current", "--input", '{"city":"Berlin"}', "--timeout", "20s"])
        sh([args.agentry, *nats, "submit", "--workflow", "echo_diamond", "--input", '{"n":3}', "--timeout", "30s"])
        sh([args.agentry, *nats, "bench", "--mode", "task", "-n", "300", "-c", "8", "--warmup", "10"])

        rules = os.path.join(ROOT, "deploy/prometheus/rules/agentry.rules.yml")
        cfg = os.path.join(work, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["{rules}"]
scrape_configs:
  - job_name: agentry
    static_configs:
      - targets: ["127.0.0.1:{http_port}"]
""")
        prom = subprocess.Popen(
            [args.prometheus, f"--config.file={cfg}", f"--storage.tsdb.path={work}/tsdb",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=open(os.path.join(work, "prometheus.log"), "w"), stderr=subprocess.STDOUT)
        api = f"http://127.0.0.1:{prom_port}/api/v1"
        wait(lambda: get(f"{api}/query?query=up")[0] == 200, "prometheus up", 60)
        # Keep traffic flowing while Prometheus collects samples for rate() windows.
        for _ in range(3):
            sh([args.agentry, *nats, "bench", "--mode", "task", "-n", "200", "-c", "8", "--warmup", "5"])
            sh([args.agentry, *nats, "submit", "echo", "--input", '{"fail":"permanent"}', "--timeout", "20s"])
            time.sleep(4)

        queries_file = os.path.join(work, "queries.json")
        out = sh([sys.executable, os.path.join(ROOT, "scripts/check_dashboards.py"), "--emit-queries", queries_file])
        if out.returncode != 0:
            sys.exit(f"check_dashboards.py failed: {out.stdout}{out.stderr}")
        queries = json.load(open(queries_file))
        status, body = get(f"{api}/rules")
        groups = json.loads(body)["data"]["groups"]
        for g in groups:
            for r in g["rules"]:
                queries.append({"dashboard": "rules", "panel": r["name"], "expr": r["query"], "kind": r["type"]})
                if r.get("health") != "ok":
                    sys.exit(f"rule {r['name']} is {r.get('health')}: {r.get('lastError')}")
        failures, empty_overview, evaluated = [], [], 0
        for q in queries:
            url = f"{api}/query?" + urllib.parse.urlencode({"query": q["expr"]})
            try:
                status, body = get(url, timeout=10)
                data = json.loads(body)
            except Exception as e:  # HTTP 400 = bad expression
                failures.append(f"{q['dashboard']} / {q['panel']}: {e}")
                continue
            evaluated += 1
            if data.get("status") != "success" or "resultType" not in data.get("data", {}):
                failures.append(f"{q['dashboard']} / {q['panel']}: {body[:200]}")
                continue
            if q["dashboard"] == "agent-system-overview.json" and q.get("kind") != "variable" and not data["data"]["result"]:
                empty_overview.append(f"{q['panel']}: {q['expr']}")
        print(f"prometheus_e2e: evaluated {evaluated} expressions ({len(queries)} dashboard panels/variables and rules)")
        if failures:
            sys.exit("prometheus_e2e: malformed results:\n  " + "\n  ".join(failures))
        if empty_overview:
            sys.exit("prometheus_e2e: overview panels without data:\n  " + "\n  ".join(empty_overview))
        print("prometheus_e2e: every expression returned a well-formed result; every overview panel has data")
    finally:
        if prom:
            prom.terminate()
            prom.wait(10)
        up.send_signal(signal.SIGINT)
        try:
            code = up.wait(60)
            if code != 0:
                print(f"prometheus_e2e: agentry up exited {code}", file=sys.stderr)
        except subprocess.TimeoutExpired:
            up.kill()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
