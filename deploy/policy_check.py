#!/usr/bin/env python3
"""Security and operability policy over rendered Kubernetes manifests.

    kubectl kustomize deploy/overlays/us-east-1 | deploy/policy_check.py -
    deploy/policy_check.py rendered.yaml [more.yaml ...]
    deploy/policy_check.py --self-test

Schema validity is the validator's job (deploy/validate.sh); this script checks
what a schema cannot:

- every container, init containers included, runs as non-root, has a
  read-only root filesystem, cannot escalate privileges, drops ALL
  capabilities and adds none, is not privileged, and has cpu and memory
  requests and limits;
- every long-running container (regular containers and restartable "sidecar"
  init containers, outside Jobs) has liveness and readiness probes; ordinary
  init containers and Job containers run to completion (Kubernetes forbids
  probes on the former and they mean nothing for the latter);
- every pod uses the RuntimeDefault (or a Localhost) seccomp profile, does not
  share host namespaces, mounts no hostPath, and gets no service account token;
- a default-deny NetworkPolicy (empty pod selector, Ingress and Egress, no
  rules) exists whenever workloads do;
- no Secret carries literal data (Secrets are created by the operator);
- every KEDA nats-jetstream trigger names its stream and consumer as literal
  strings, and every ScaledObject targets a workload present in the render;
- every Service and PodDisruptionBudget selects at least one pod template;
- every namespaced object names its namespace (an unnamespaced
  AuthorizationPolicy applied in the wrong namespace changes someone else's
  traffic).

Exit status 0 when clean, 1 on any violation (one line each on stdout),
2 on unreadable input. Needs Python 3.8+ and PyYAML.
"""
import argparse
import re
import sys

try:
    import yaml
except ImportError:  # pragma: no cover - environment problem, not a policy result
    sys.exit("policy_check: PyYAML is required (Debian: apt-get install python3-yaml; pip: pip install pyyaml)")

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                  "PriorityClass", "StorageClass", "PersistentVolume", "IngressClass", "RuntimeClass",
                  "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "ClusterTriggerAuthentication",
                  "ClusterAnalysisTemplate"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Rollout"}
NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def ident(doc):
    meta = doc.get("metadata") or {}
    return f"{doc.get('kind', '?')}/{meta.get('name', '?')}"


def pod_spec_of(doc):
    """Pod spec and pod template labels of a workload, or (None, None)."""
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind == "Pod":
        return spec, (doc.get("metadata") or {}).get("labels") or {}
    if kind == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    elif kind not in WORKLOAD_KINDS:
        return None, None
    template = spec.get("template")
    if not isinstance(template, dict):  # e.g. a Rollout with workloadRef: checked on its Deployment
        return None, None
    return template.get("spec") or {}, (template.get("metadata") or {}).get("labels") or {}


def check_container(where, c, pod_sc, long_running):
    sc = c.get("securityContext") or {}
    name = f"{where} container {c.get('name', '?')}"
    run_as_non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
    run_as_user = sc.get("runAsUser", pod_sc.get("runAsUser"))
    if run_as_non_root is not True:
        yield f"{name}: runAsNonRoot is not true (container or pod securityContext)"
    if run_as_user == 0:
        yield f"{name}: runAsUser is 0 (root)"
    if sc.get("readOnlyRootFilesystem") is not True:
        yield f"{name}: readOnlyRootFilesystem is not true"
    if sc.get("allowPrivilegeEscalation") is not False:
        yield f"{name}: allowPrivilegeEscalation is not false"
    if sc.get("privileged") is True:
        yield f"{name}: privileged"
    caps = sc.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []):
        yield f"{name}: capabilities.drop does not contain ALL"
    if caps.get("add"):
        yield f"{name}: capabilities.add is not empty: {caps['add']}"
    seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        yield f"{name}: seccompProfile is {seccomp or 'unset'}, want RuntimeDefault"
    res = c.get("resources") or {}
    for section in ("requests", "limits"):
        got = res.get(section) or {}
        for r in ("cpu", "memory"):
            if r not in got:
                yield f"{name}: resources.{section}.{r} missing"
    if long_running:
        for probe in ("livenessProbe", "readinessProbe"):
            if not c.get(probe):
                yield f"{name}: {probe} missing"


def check_pod(doc):
    pod, _ = pod_spec_of(doc)
    if pod is None:
        return
    where = ident(doc)
    pod_sc = pod.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            yield f"{where}: {flag} is true"
    if pod.get("automountServiceAccountToken") is not False:
        yield f"{where}: automountServiceAccountToken is not false (agentry needs no Kubernetes API access)"
    for v in pod.get("volumes") or []:
        if "hostPath" in v:
            yield f"{where}: hostPath volume {v.get('name', '?')}"
    containers = pod.get("containers") or []
    if not containers:
        yield f"{where}: no containers"
    run_to_completion = doc.get("kind") in ("Job", "CronJob")
    for c in containers:
        yield from check_container(where, c, pod_sc, long_running=not run_to_completion)
    for c in pod.get("initContainers") or []:
        sidecar = c.get("restartPolicy") == "Always"
        yield from check_container(where, c, pod_sc, long_running=sidecar)


def is_default_deny(doc):
    spec = doc.get("spec") or {}
    selector = spec.get("podSelector")
    empty_selector = selector == {} or (isinstance(selector, dict)
                                        and not selector.get("matchLabels") and not selector.get("matchExpressions"))
    types = set(spec.get("policyTypes") or [])
    return (empty_selector and {"Ingress", "Egress"} <= types
            and not spec.get("ingress") and not spec.get("egress"))


def selects(selector, labels):
    """matchLabels subset test; matchExpressions In/NotIn/Exists/DoesNotExist."""
    if not isinstance(selector, dict) or not selector:
        return False
    match_labels = selector.get("matchLabels")
    exprs = selector.get("matchExpressions")
    if match_labels is None and exprs is None:  # a Service selector is a plain map
        match_labels = selector
    for k, v in (match_labels or {}).items():
        if labels.get(k) != v:
            return False
    for e in exprs or []:
        key, op, values = e.get("key"), e.get("operator"), e.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def check_scaled_object(doc, workloads):
    where = ident(doc)
    spec = doc.get("spec") or {}
    target = spec.get("scaleTargetRef") or {}
    kind = target.get("kind") or "Deployment"
    if (kind, target.get("name")) not in workloads:
        yield f"{where}: scaleTargetRef {kind}/{target.get('name')} is not in the rendered manifests"
    for i, trig in enumerate(spec.get("triggers") or []):
        if trig.get("type") != "nats-jetstream":
            continue
        meta = trig.get("metadata") or {}
        for key in ("stream", "consumer", "account", "natsServerMonitoringEndpoint"):
            val = meta.get(key)
            if not isinstance(val, str) or not val:
                yield f"{where}: trigger {i} ({trig.get('name', '?')}): metadata.{key} must be a literal string"
            elif key in ("stream", "consumer") and not NAME_RE.match(val):
                yield f"{where}: trigger {i}: metadata.{key} {val!r} is not a plain JetStream name"
        # A misspelt consumer makes KEDA fall back to the stream's last sequence
        # and over-scale silently: task consumers must be cap-<capability>.
        if meta.get("stream") == "AGENTRY_TASKS" and not re.match(r"^cap-[a-z][a-z0-9_]{0,63}$", str(meta.get("consumer"))):
            yield f"{where}: trigger {i}: consumer {meta.get('consumer')!r} on AGENTRY_TASKS is not cap-<capability>"


def check(docs):
    """Yield one message per violation over a list of manifest dicts."""
    docs = [d for d in docs if isinstance(d, dict)]
    workloads, templates = set(), []
    for d in docs:
        if d.get("kind") in WORKLOAD_KINDS | {"Pod", "CronJob"}:
            workloads.add((d.get("kind"), (d.get("metadata") or {}).get("name")))
            _, labels = pod_spec_of(d)
            if labels is not None:
                templates.append(labels)
            elif d.get("kind") == "Rollout":  # workloadRef: pods carry the Deployment's labels
                sel = ((d.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
                templates.append(dict(sel))
    for d in docs:
        kind = d.get("kind")
        if kind not in CLUSTER_SCOPED and not (d.get("metadata") or {}).get("namespace"):
            yield f"{ident(d)}: no metadata.namespace"
        yield from check_pod(d)
        if kind == "Secret" and (d.get("data") or d.get("stringData")):
            yield f"{ident(d)}: Secret with literal data in the manifests (create it out of band)"
        if kind == "ScaledObject":
            yield from check_scaled_object(d, workloads)
        if kind == "Service" and (d.get("spec") or {}).get("selector"):
            if not any(selects(d["spec"]["selector"], t) for t in templates):
                yield f"{ident(d)}: selector matches no pod template"
        if kind == "PodDisruptionBudget":
            if not any(selects((d.get("spec") or {}).get("selector"), t) for t in templates):
                yield f"{ident(d)}: selector matches no pod template"
    if workloads and not any(d.get("kind") == "NetworkPolicy" and is_default_deny(d) for d in docs):
        yield "no default-deny NetworkPolicy (podSelector {}, policyTypes Ingress+Egress, no rules)"


def load(text):
    return [d for d in yaml.safe_load_all(text) if d is not None]


GOOD = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: app, name: default-deny}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {namespace: app, name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      automountServiceAccountToken: false
      securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
      initContainers:
        - name: init
          image: x
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
          resources: {requests: {cpu: 10m, memory: 8Mi}, limits: {cpu: 100m, memory: 16Mi}}
      containers:
        - name: app
          image: x
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
          resources: {requests: {cpu: 10m, memory: 8Mi}, limits: {cpu: "1", memory: 1Gi}}
          livenessProbe: {httpGet: {path: /health, port: 8080}}
          readinessProbe: {httpGet: {path: /ready, port: 8080}}
---
apiVersion: batch/v1
kind: Job
metadata: {namespace: app, name: once}
spec:
  template:
    spec:
      restartPolicy: Never
      automountServiceAccountToken: false
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: task
          image: x
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
          resources: {requests: {cpu: 10m, memory: 8Mi}, limits: {cpu: 100m, memory: 16Mi}}
---
apiVersion: v1
kind: Service
metadata: {namespace: app, name: web}
spec: {selector: {app: web}, ports: [{port: 8080}]}
---
apiVersion: v1
kind: Secret
metadata: {namespace: app, name: referenced-only}
type: Opaque
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {namespace: app, name: web}
spec:
  scaleTargetRef: {name: web}
  triggers:
    - type: nats-jetstream
      metadata: {natsServerMonitoringEndpoint: "nats:8222", account: AGENTRY, stream: AGENTRY_TASKS, consumer: cap-echo}
"""

# Each bad manifest set and a fragment every one of its expected messages contains.
BAD = [
    ("root user, writable rootfs, escalation, caps kept, no resources, no probes", """
apiVersion: apps/v1
kind: Deployment
metadata: {name: bad}
spec:
  selector: {matchLabels: {app: bad}}
  template:
    metadata: {labels: {app: bad}}
    spec:
      securityContext: {runAsUser: 0}
      containers:
        - name: app
          image: x
""", ["runAsNonRoot is not true", "runAsUser is 0", "readOnlyRootFilesystem is not true",
      "allowPrivilegeEscalation is not false", "capabilities.drop does not contain ALL",
      "resources.requests.cpu missing", "resources.limits.memory missing", "livenessProbe missing",
      "readinessProbe missing", "seccompProfile is unset", "automountServiceAccountToken is not false",
      "no default-deny NetworkPolicy"]),
    ("privileged init container that escalates", """
apiVersion: apps/v1
kind: Deployment
metadata: {name: bad-init}
spec:
  selector: {matchLabels: {app: bad-init}}
  template:
    metadata: {labels: {app: bad-init}}
    spec:
      automountServiceAccountToken: false
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      initContainers:
        - name: init
          image: x
          securityContext: {privileged: true, allowPrivilegeEscalation: true, readOnlyRootFilesystem: true,
                            capabilities: {drop: [ALL], add: [NET_ADMIN]}}
          resources: {requests: {cpu: 1m, memory: 1Mi}, limits: {cpu: 1m, memory: 1Mi}}
      containers:
        - name: app
          image: x
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
          resources: {requests: {cpu: 1m, memory: 1Mi}, limits: {cpu: 1m, memory: 1Mi}}
          livenessProbe: {tcpSocket: {port: 1}}
          readinessProbe: {tcpSocket: {port: 1}}
""", ["container init: privileged", "container init: allowPrivilegeEscalation is not false",
      "container init: capabilities.add is not empty"]),
    ("secret with literal data, network policy that is not default deny", """
apiVersion: v1
kind: Secret
metadata: {name: leaked}
stringData: {password: hunter2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: not-deny}
spec: {podSelector: {}, policyTypes: [Ingress, Egress], egress: [{}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  selector: {matchLabels: {app: x}}
  template: {metadata: {labels: {app: x}}, spec: {containers: []}}
""", ["Secret with literal data", "no default-deny NetworkPolicy", "no containers"]),
    ("scaled object with templated consumer and missing target, orphan service", """
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: so}
spec:
  scaleTargetRef: {name: missing}
  triggers:
    - type: nats-jetstream
      metadata: {natsServerMonitoringEndpoint: "nats:8222", account: AGENTRY, stream: AGENTRY_TASKS, consumer: "cap-${CAP}"}
---
apiVersion: v1
kind: Service
metadata: {name: orphan}
spec: {selector: {app: nobody}, ports: [{port: 80}]}
""", ["ScaledObject/so: no metadata.namespace", "scaleTargetRef Deployment/missing", "is not a plain JetStream name", "is not cap-<capability>",
      "Service/orphan: selector matches no pod template"]),
]


def self_test():
    failures = 0
    got = list(check(load(GOOD)))
    if got:
        failures += 1
        print("self-test FAIL: the good manifest was flagged:", *got, sep="\n  ")
    for title, text, expected in BAD:
        got = list(check(load(text)))
        missing = [e for e in expected if not any(e in m for m in got)]
        if missing:
            failures += 1
            print(f"self-test FAIL: {title}: expected violations not reported: {missing}\n  got: {got}")
    total = 1 + len(BAD)
    print(f"policy_check self-test: {total - failures} passed, {failures} failed")
    return 1 if failures else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", help="rendered manifest files, or - for stdin")
    ap.add_argument("--self-test", action="store_true", help="check that known-bad manifests are caught")
    args = ap.parse_args(argv)
    if args.self_test:
        return self_test()
    if not args.files:
        ap.error("give rendered manifest files or - (or --self-test)")
    docs = []
    for f in args.files:
        try:
            text = sys.stdin.read() if f == "-" else open(f, encoding="utf-8").read()
            docs.extend(load(text))
        except (OSError, yaml.YAMLError) as e:
            print(f"policy_check: {f}: {e}", file=sys.stderr)
            return 2
    problems = list(check(docs))
    for p in problems:
        print(p)
    print(f"policy_check: {len(docs)} documents, {len(problems)} violations", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
