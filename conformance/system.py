"""A real agentry system for the Python tests and the conformance runner:
nats-server with the production accounts and permissions
(`nats/dev-auth.conf` + `nats/accounts.conf`, a generated password for every
`$AGENTRY_PW_<USER>` the accounts file names), the topology made by the
admin (`agentry setup`), and the Rust engine, monitor and agents as child
processes, each connected as its own role. Nothing is mocked.

Binaries come from `$CARGO_TARGET_DIR/debug` (or `target/debug`); the
server from `$NATS_SERVER_BIN` or `nats-server` on PATH."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def users(root: Path = ROOT) -> list[str]:
    """Every user of nats/accounts.conf, from its `$AGENTRY_PW_<USER>` references."""
    text = (root / "nats" / "accounts.conf").read_text()
    found = set()
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#"):
            continue
        m = re.search(r"\$AGENTRY_PW_([A-Za-z0-9_]+)", line)
        if m:
            found.add(m.group(1).lower())
    return sorted(found)


def bin_dir(root: Path = ROOT) -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR") or root / "target")
    return target / "debug"


def nats_server_bin() -> str:
    found = os.environ.get("NATS_SERVER_BIN") or shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: set NATS_SERVER_BIN")
    return found


async def eventually(
    check: Callable[[], Awaitable[T | None]], timeout: float, what: str, every: float = 0.1
) -> T:
    """Polls `check` until it returns something other than None/False."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            got = await check()
            if got:
                return got
        except Exception as e:  # keep polling; report the last error on timeout
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last!r})")
        await asyncio.sleep(every)


class Proc:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self._out = open(log, "wb")
        self.p = subprocess.Popen(argv, env=env, stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        return self.p.pid

    def kill9(self) -> None:
        self.p.send_signal(signal.SIGKILL)
        self.p.wait()

    def term(self, timeout: float = 30.0) -> int:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return self.p.returncode

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        self._out.close()

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")


class System:
    """nats-server (production accounts) + topology + chosen Rust components."""

    def __init__(self, *, ack_wait_secs: int = 4, max_deliver: int = 3, sweep: str = "250ms") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="agentry-py-"))
        self.ack_wait_secs = ack_wait_secs
        self.max_deliver = max_deliver
        self.sweep = sweep
        self.passwords = {u: f"pw{uuid.uuid4().hex}" for u in users()}
        self.procs: list[Proc] = []
        self.url = ""
        self._server: Proc | None = None

    # -- nats-server -------------------------------------------------------------

    def start_nats(self) -> None:
        ports = self.dir / "ports"
        ports.mkdir()
        env = dict(os.environ, AGENTRY_NATS_STORE=str(self.dir / "store"))
        for u, pw in self.passwords.items():
            env[f"AGENTRY_PW_{u.upper()}"] = pw
        argv = [nats_server_bin(), "-c", str(ROOT / "nats" / "dev-auth.conf"), "-p", "-1", "-m", "-1",
                "--ports_file_dir", str(ports), "-l", str(self.dir / "server.log")]
        self._server = Proc("nats-server", argv, env, self.dir / "server.out")
        deadline = time.monotonic() + 15
        while not self.url:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server did not start: {(self.dir / 'server.log').read_text(errors='replace')}")
            for f in ports.iterdir():
                try:
                    self.url = json.loads(f.read_text())["nats"][0]
                except (ValueError, KeyError, IndexError):
                    pass
            time.sleep(0.02)

    def has_user(self, role: str) -> bool:
        return role in self.passwords

    def agent_role(self, kind: str) -> str:
        """The NATS user of a built-in agent kind (`agent_<kind>` once accounts.conf has it, else `agent`)."""
        return f"agent_{kind}" if self.has_user(f"agent_{kind}") else "agent"

    def env(self, role: str, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            AGENTRY_NATS_URL=self.url,
            AGENTRY_NATS_USER=role,
            AGENTRY_NATS_PASSWORD=self.passwords[role],
            AGENTRY_NATS_INBOX_PREFIX=f"_INBOX.{role}",
            AGENTRY_HTTP_ADDR="off",
        )
        env.update(extra)
        return env

    def settings(self, role: str) -> Any:
        from agentry import Settings

        return Settings(url=self.url, user=role, password=self.passwords[role], inbox_prefix=f"_INBOX.{role}")

    # -- components --------------------------------------------------------------

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([str(bin_dir() / "agentry"), *args], env=self.env("admin"), capture_output=True,
                             text=True, timeout=60)
        if check and res.returncode != 0:
            raise RuntimeError(f"agentry {' '.join(args)} exited {res.returncode}: {res.stderr}{res.stdout}")
        return res

    def setup(self) -> None:
        self.ctl("setup", "--task-ack-wait-secs", str(self.ack_wait_secs),
                 "--task-max-deliver", str(self.max_deliver))

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Proc:
        p = Proc(name, argv, env, self.dir / f"{name}-{len(self.procs)}.log")
        self.procs.append(p)
        return p

    def start_engine(self, **extra: str) -> Proc:
        return self.spawn("engine", [str(bin_dir() / "agentry-engine")], self.env("engine", **extra))

    def start_monitor(self) -> Proc:
        return self.spawn("monitor", [str(bin_dir() / "agentry-monitor")],
                          self.env("monitor", AGENTRY_SWEEP_INTERVAL=self.sweep, AGENTRY_MISSED_HEARTBEATS="3"))

    def start_rust_agent(self, kind: str, heartbeat: str = "1s", **extra: str) -> Proc:
        env = self.env(self.agent_role(kind), AGENTRY_AGENTS=kind, AGENTRY_HEARTBEAT=heartbeat,
                       AGENTRY_DRAIN_TIMEOUT="10s", **extra)
        return self.spawn(f"agent-{kind}", [str(bin_dir() / "agentry-agent")], env)

    def start_python(self, name: str, script: Path, role: str = "agent", **extra: str) -> Proc:
        import sys

        return self.spawn(name, [sys.executable, str(script)], self.env(role, **extra))

    def close(self) -> None:
        for p in reversed(self.procs):
            p.stop()
        if self._server is not None:
            self._server.stop()
        if os.environ.get("AGENTRY_TEST_KEEP"):
            print(f"kept {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


class Observer:
    """An admin connection that reads the system from outside: the registry
    stream and bucket, results, the DLQ and `$SRV`."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.nc: Any = None
        self.js: Any = None

    async def open(self) -> Observer:
        self.nc = await self.system.settings("admin").connect()
        self.js = self.nc.jetstream()
        return self

    async def close(self) -> None:
        if self.nc is not None:
            await self.nc.close()

    async def record(self, agent_id: str) -> dict[str, Any] | None:
        kv = await self.js.key_value("agentry-agents")
        try:
            entry = await kv.get(agent_id)
        except Exception:
            return None
        return json.loads(entry.value) if entry and entry.value else None

    async def records(self) -> list[dict[str, Any]]:
        kv = await self.js.key_value("agentry-agents")
        out = []
        try:
            keys = await kv.keys()
        except Exception:
            return []
        for k in keys:
            rec = await self.record(k)
            if rec:
                out.append(rec)
        return out

    async def live_agent(self, kind: str, exclude: set[str] = frozenset()) -> dict[str, Any] | None:  # type: ignore[assignment]
        for rec in await self.records():
            if rec["kind"] == kind and rec["status"] == "live" and rec["id"] not in exclude:
                return rec
        return None

    async def registry_events(self, agent_id: str) -> list[tuple[str, dict[str, Any], float]]:
        """Every registry event of `agent_id`: (type, data, server time)."""
        from agentry import events

        sub = await self.js.subscribe(f"agentry.registry.{agent_id}", ordered_consumer=True)
        out = []
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=0.5)
                except Exception:
                    break
                ev = events.decode(msg.headers, msg.data)
                out.append((str(ev["type"]), events.data_json(ev), msg.metadata.timestamp.timestamp()))
        finally:
            await sub.unsubscribe()
        return out

    async def results(self, prefix: str = "agentry.results.>") -> list[tuple[str, Any]]:
        """(subject, decoded event) of every stored result under `prefix`."""
        from agentry import events

        sub = await self.js.subscribe(prefix, ordered_consumer=True)
        out = []
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=0.5)
                except Exception:
                    break
                out.append((msg.subject, events.decode(msg.headers, msg.data)))
        finally:
            await sub.unsubscribe()
        return out

    async def dlq(self) -> list[Any]:
        sub = await self.js.subscribe("agentry.dlq.>", ordered_consumer=True)
        out = []
        try:
            while True:
                try:
                    out.append(await sub.next_msg(timeout=0.5))
                except Exception:
                    break
        finally:
            await sub.unsubscribe()
        return out

    async def srv_ping(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every `$SRV.PING` answer within half a second."""
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox)
        await self.nc.publish(f"$SRV.PING.{name}" if name else "$SRV.PING", b"", reply=inbox)
        out = []
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=0.5)
                except Exception:
                    break
                out.append(json.loads(msg.data))
        finally:
            await sub.unsubscribe()
        return out
