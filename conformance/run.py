#!/usr/bin/env python3
"""agentry protocol conformance runner.

Starts the real system (nats-server with the production accounts, topology,
Rust engine and monitor; conformance/system.py), starts the agent
implementation under test as a child process, and checks the protocol from
outside, scenario by scenario (conformance/scenarios/*.json describe them).
The implementation must serve capability `echo` as
schemas/capabilities/echo.*.json define it and take its settings from the
`AGENTRY_NATS_*` and `AGENTRY_HEARTBEAT` variables.

    python conformance/run.py rust       # agentry-agent --agents echo
    python conformance/run.py python     # conformance/agents/python_echo.py
    python conformance/run.py broken     # never heartbeats: must FAIL
    python conformance/run.py --cmd "my-agent --flag" --role agent

Exit status 0 when every scenario passes, 1 otherwise."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Awaitable, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import jsonschema  # noqa: E402
from referencing import Registry, Resource  # noqa: E402

from system import ROOT, Observer, Proc, System, bin_dir, eventually  # noqa: E402

HEARTBEAT_S = 1.0
ACK_WAIT_S = 2
MAX_DELIVER = 3


class Failed(AssertionError):
    pass


def check(cond: object, what: str) -> None:
    if not cond:
        raise Failed(what)


class Schemas:
    """Every schema under schemas/, resolvable by its $id."""

    def __init__(self) -> None:
        resources = []
        self.by_path: dict[str, dict[str, Any]] = {}
        for p in (ROOT / "schemas").rglob("*.json"):
            if "examples" in p.parts:
                continue
            doc = json.loads(p.read_text())
            self.by_path[str(p.relative_to(ROOT / "schemas"))] = doc
            if "$id" in doc:
                resources.append((doc["$id"], Resource.from_contents(doc)))
        self.registry = Registry().with_resources(resources)

    def validate(self, rel: str, value: Any) -> None:
        schema = self.by_path[rel]
        v = jsonschema.Draft202012Validator(schema, registry=self.registry)
        err = jsonschema.exceptions.best_match(v.iter_errors(value))
        if err is not None:
            raise Failed(f"{rel}: {err.message} at /{'/'.join(map(str, err.absolute_path))}")


class Implementation:
    def __init__(self, name: str, argv: list[str], role: str) -> None:
        self.name, self.argv, self.role = name, argv, role


def implementation(args: argparse.Namespace, system: System) -> Implementation:
    if args.cmd:
        return Implementation("custom", args.cmd.split(), args.role)
    if args.impl == "rust":
        return Implementation("rust", [str(bin_dir() / "agentry-agent")], system.agent_role("echo"))
    script = {"python": "python_echo.py", "broken": "broken_no_heartbeat.py"}[args.impl]
    return Implementation(args.impl, [sys.executable, str(HERE / "agents" / script)], "agent")


class Run:
    def __init__(self, system: System, impl: Implementation) -> None:
        self.system = system
        self.impl = impl
        self.schemas = Schemas()
        self.obs = Observer(system)
        self.proc: Proc | None = None
        self.agent: dict[str, Any] = {}
        self.notes: list[str] = []

    def start_agent(self) -> Proc:
        env = self.system.env(self.impl.role, AGENTRY_AGENTS="echo", AGENTRY_HEARTBEAT=f"{int(HEARTBEAT_S * 1000)}ms",
                              AGENTRY_DRAIN_TIMEOUT="10s", PYTHONPATH=str(HERE / "agents"))
        self.proc = self.system.spawn(f"impl-{self.impl.name}", self.impl.argv, env)
        return self.proc

    async def wait_live(self, exclude: set[str] = set()) -> dict[str, Any]:
        async def live() -> dict[str, Any] | None:
            for rec in await self.obs.records():
                if "echo" in rec["capabilities"] and rec["status"] == "live" and rec["id"] not in exclude:
                    return rec
            return None

        return await eventually(live, 20, "the agent under test to be live in agentry-agents")

    def client(self, tenant: str | None = None) -> Any:
        from agentry import Client

        role = f"client_{tenant}" if tenant else "admin"
        return Client.connect(self.system.settings(role), tenant=tenant, source="/conformance")

    async def cap_echo(self) -> Any:
        return await self.obs.js.consumer_info("AGENTRY_TASKS", "cap-echo")

    # -- scenarios --------------------------------------------------------------

    async def s01_registration(self, p: dict[str, Any]) -> None:
        rec = self.agent
        self.schemas.validate("agent-record.json", rec)
        check(rec["status"] == "live", f"record status {rec['status']}")
        evs = await self.obs.registry_events(rec["id"])
        reg = [d for t, d, _ in evs if t == "io.agentry.agent.registered"]
        check(reg, f"no io.agentry.agent.registered on agentry.registry.{rec['id']} (saw {[t for t, _, _ in evs]})")
        self.schemas.validate("events/io.agentry.agent.registered.json", reg[0])
        pings = await self.obs.srv_ping()
        check(any(x.get("metadata", {}).get("agent_id") == rec["id"] for x in pings),
              f"$SRV.PING: no service with metadata.agent_id {rec['id']} in {pings}")
        infos = []
        inbox = self.obs.nc.new_inbox()
        sub = await self.obs.nc.subscribe(inbox)
        await self.obs.nc.publish("$SRV.INFO", b"", reply=inbox)
        while True:
            try:
                infos.append(json.loads((await sub.next_msg(timeout=0.5)).data))
            except Exception:
                break
        await sub.unsubscribe()
        mine = [i for i in infos if i.get("metadata", {}).get("agent_id") == rec["id"]]
        check(mine and any(e.get("subject") == f"agentry.a2a.{rec['id']}" for e in mine[0].get("endpoints", [])),
              f"$SRV.INFO: no endpoint on agentry.a2a.{rec['id']}")
        body = json.dumps({"capability": "echo", "input": p["a2a_input"]}).encode()
        reply = await self.obs.nc.request(f"agentry.a2a.{rec['id']}", body, timeout=10)
        out = json.loads(reply.data).get("output", {})
        check(out.get("echo") == p["a2a_input"] and out.get("agent_id") == rec["id"], f"A2A reply {reply.data!r}")

    async def s02_heartbeats(self, p: dict[str, Any]) -> None:
        rec = self.agent
        hb = rec["heartbeat_interval_ms"] / 1000
        await asyncio.sleep(hb * 3.5)
        beats = [(d, ts) for t, d, ts in await self.obs.registry_events(rec["id"]) if t == "io.agentry.agent.heartbeat"]
        check(len(beats) >= p["min_beats"], f"{len(beats)} heartbeats in {hb * 3.5:.1f}s+ (interval {hb}s)")
        for d, _ in beats:
            self.schemas.validate("events/io.agentry.agent.heartbeat.json", d)
        gaps = [b[1] - a[1] for a, b in zip(beats, beats[1:])]
        check(max(gaps) <= hb * p["max_gap_factor"], f"heartbeat gaps {[round(g, 2) for g in gaps]}s")

    async def s03_result_shape(self, p: dict[str, Any]) -> None:
        vector = json.loads((ROOT / p["vector"]).read_text())
        for tenant in (None, "acme"):
            async with await self.client(tenant) as c:
                res = await c.submit(vector["capability"], vector["input"], wait=30)
            ev = res.event
            check(res.type == "io.agentry.task.completed", f"result type {res.type}: {res.data}")
            check(ev["source"] == f"/agents/{res.data.get('agent_id')}", f"source {ev['source']}")
            check(ev.get_attributes().get("requestid") == res.request_id, "extension requestid")
            self.schemas.validate("events/io.agentry.task.completed.json", res.data)
            self.schemas.validate("capabilities/echo.output.json", res.output)
            check(res.output["echo"] == vector["input"], f"output.echo {res.output['echo']}")
            subject = f"agentry.results.{tenant}.{res.request_id}" if tenant else f"agentry.results.{res.request_id}"
            stored = [s for s, _ in await self.obs.results(subject)]
            check(stored == [subject], f"stored results on {subject}: {len(stored)}")

    async def s04_duplicate_delivery(self, p: dict[str, Any]) -> None:
        from agentry import events, wire

        rid = wire.new_id()
        reply = f"agentry.results.{rid}"
        ev = events.new_event(rid, "/conformance", wire.Type.TASK_REQUESTED, {"capability": "echo", "input": p["input"]},
                              {"replyto": reply})
        headers, body = events.encode(ev)
        for n in (1, 2):
            await self.obs.js.publish("agentry.tasks.echo", body, headers={**headers, "Nats-Msg-Id": f"{rid}-copy{n}"})

        async def drained() -> bool:
            info = await self.cap_echo()
            return info.num_pending == 0 and info.num_ack_pending == 0

        await eventually(drained, 30, "cap-echo to settle both deliveries")
        stored = await self.obs.results(reply)
        check(len(stored) == 1, f"{len(stored)} results stored on {reply}")
        check(stored[0][1]["type"] == "io.agentry.task.completed", "the one result is task.completed")

    async def s05_progress(self, p: dict[str, Any]) -> None:
        before = (await self.cap_echo()).num_redelivered
        sleep_ms = int(ACK_WAIT_S * p["ack_wait_factor"] * 1000)
        async with await self.client() as c:
            res = await c.submit("echo", {"message": "slow", "sleep_ms": sleep_ms}, wait=60)
        check(res.ok, f"result {res.data}")
        check(res.data["attempts"] == 1 and res.output["attempt"] == 1, f"attempts {res.data['attempts']}")
        after = (await self.cap_echo()).num_redelivered
        check(after == before, f"cap-echo redelivered grew {before} -> {after}: no progress (+WPI) was sent")

    async def s06_retry_then_success(self, p: dict[str, Any]) -> None:
        async with await self.client() as c:
            res = await c.submit("echo", p["input"], wait=60)
        check(res.ok, f"result {res.data}")
        check(res.output["attempt"] == 2 and res.data["attempts"] == 2, f"attempts {res.data}")

    async def s07_retry_to_dlq(self, p: dict[str, Any]) -> None:
        async with await self.client() as c:
            res = await c.submit("echo", p["input"], wait=60)
            perm = await c.submit("echo", {"message": "bad", "fail": "permanent"}, wait=30)
        check(res.type == "io.agentry.task.failed", f"result {res.type}")
        self.schemas.validate("events/io.agentry.task.failed.json", res.data)
        check(res.data["error"]["code"] == "retries_exhausted", f"error {res.data['error']}")
        # The attempt-limit rule: the handler runs max_deliver - 1 times; the last delivery only records.
        check(res.data["attempts"] == MAX_DELIVER - 1, f"attempts {res.data['attempts']} (max_deliver {MAX_DELIVER})")
        check(perm.type == "io.agentry.task.failed" and perm.data["error"]["retryable"] is False
              and perm.data["attempts"] == 1, f"permanent failure {perm.data}")
        dlq = {m.headers.get("Agentry-Dlq-Request-Id"): m for m in await self.obs.dlq()}
        for rid, attempts in ((res.request_id, MAX_DELIVER - 1), (perm.request_id, 1)):
            m = dlq.get(rid)
            check(m is not None, f"no DLQ copy of {rid}")
            h = m.headers
            check(m.subject == "agentry.dlq.task_failed" and h.get("Agentry-Dlq-Reason") == "task_failed",
                  f"DLQ subject {m.subject} reason {h.get('Agentry-Dlq-Reason')}")
            check(h.get("Agentry-Dlq-Subject") == "agentry.tasks.echo" and h.get("Agentry-Dlq-Stream") == "AGENTRY_TASKS",
                  f"DLQ origin {h}")
            check(h.get("Agentry-Dlq-Attempts") == str(attempts), f"DLQ attempts {h.get('Agentry-Dlq-Attempts')}")
            check(json.loads(m.data).get("capability") == "echo", "DLQ body is the original task")

    async def _publish_task(self, input: Any, **exts: str) -> str:
        """Publishes a task straight to agentry.tasks.echo (as the engine would); returns its result subject."""
        from agentry import events, wire

        rid = wire.new_id()
        reply = f"agentry.results.{rid}"
        ev = events.new_event(rid, "/conformance", wire.Type.TASK_REQUESTED, {"capability": "echo", "input": input},
                              {"replyto": reply, **exts})
        headers, body = events.encode(ev)
        await self.obs.js.publish("agentry.tasks.echo", body, headers={**headers, "Nats-Msg-Id": rid})
        return reply

    async def _one_result(self, subject: str) -> Any:
        async def stored() -> Any:
            got = await self.obs.results(subject)
            return got or None

        got = await eventually(stored, 30, f"a result on {subject}")
        check(len(got) == 1, f"{len(got)} results on {subject}")
        from agentry import events

        return got[0][1], events.data_json(got[0][1])

    async def s08_invalid_and_late(self, p: dict[str, Any]) -> None:
        subjects = []
        for rel in p["vectors"]:
            vector = json.loads((ROOT / rel).read_text())
            subjects.append(await self._publish_task(vector["input"]))
        late = await self._publish_task({"message": "too late"}, deadline=str(int(time.time() * 1000) - 1000))
        junk = f"not a cloudevent {time.time()}".encode()
        await self.obs.js.publish("agentry.tasks.echo", junk)
        for subject in subjects:
            ev, data = await self._one_result(subject)
            check(ev["type"] == "io.agentry.task.failed", f"{subject}: {ev['type']}")
            self.schemas.validate("events/io.agentry.task.failed.json", data)
            check(data["error"]["code"] == "invalid_input" and data["error"]["retryable"] is False,
                  f"{subject}: error {data['error']}")
        ev, data = await self._one_result(late)
        check(ev["type"] == "io.agentry.task.failed" and data["error"]["code"] == "timeout",
              f"late task: {ev['type']} {data.get('error')}")
        dlq = await self.obs.dlq()
        by_id = {m.headers.get("Agentry-Dlq-Request-Id"): m for m in dlq}
        for subject in subjects:
            m = by_id.get(subject.rsplit(".", 1)[-1])
            check(m is not None and m.subject == "agentry.dlq.schema_invalid",
                  f"DLQ copy of {subject}: {m.subject if m else None}")
        check(late.rsplit(".", 1)[-1] not in by_id, "the late task was dead-lettered")

        async def junk_dead_lettered() -> bool:
            return any(m.data == junk for m in await self.obs.dlq())

        await eventually(junk_dead_lettered, 15, "the undecodable task to reach the DLQ")
        m = [m for m in await self.obs.dlq() if m.data == junk][0]
        check(m.headers.get("Agentry-Dlq-Subject") == "agentry.tasks.echo", f"DLQ headers of the undecodable task {m.headers}")

    async def s09_drain(self, p: dict[str, Any]) -> None:
        assert self.proc is not None
        rec = self.agent
        async with await self.client() as c:
            ev = c.task_event("echo", {"message": "drain me", "sleep_ms": p["sleep_ms"]})
            sub = await c.nc.subscribe(f"agentry.results.{ev['id']}", max_msgs=1)
            await c.send(ev)

            async def busy() -> bool:
                r = await self.obs.record(rec["id"])
                return bool(r and r["in_flight"] >= 1)

            await eventually(busy, 10, "the task to be in flight")
            code = await asyncio.get_running_loop().run_in_executor(None, self.proc.term, 30.0)
            check(code == 0, f"exit status {code} after SIGTERM")
            msg = await sub.next_msg(timeout=5)
            from agentry import events

            got = events.decode(msg.headers, msg.data)
            data = events.data_json(got)
            check(got["type"] == "io.agentry.task.completed" and data["agent_id"] == rec["id"],
                  f"in-flight task result {got['type']} by {data.get('agent_id')}")
        evs = await self.obs.registry_events(rec["id"])
        statuses = [(t.rsplit(".", 1)[-1], d["status"]) for t, d, _ in evs]
        check(("heartbeat", "draining") in statuses, f"no draining heartbeat in {statuses[-4:]}")
        check(statuses[-1] == ("deregistered", "deregistered"), f"last registry event {statuses[-1]}")

        async def dereg() -> bool:
            r = await self.obs.record(rec["id"])
            return bool(r and r["status"] == "deregistered")

        await eventually(dereg, 10, "the record to be deregistered")

    async def s10_expiry(self, p: dict[str, Any]) -> None:
        proc = self.start_agent()
        rec = await self.wait_live(exclude={self.agent["id"]})
        hb = rec["heartbeat_interval_ms"] / 1000
        proc.kill9()
        killed = time.monotonic()

        async def expired() -> bool:
            r = await self.obs.record(rec["id"])
            return bool(r and r["status"] == "expired")

        await eventually(expired, 30, "the killed agent to expire", every=0.05)
        took = time.monotonic() - killed
        # The monitor's decision, by the server's clock: from the last registry event of the
        # instance to the io.agentry.agent.expired event.
        evs = await self.obs.registry_events(rec["id"])
        exp = [ts for t, _, ts in evs if t == "io.agentry.agent.expired"]
        check(exp, "no io.agentry.agent.expired event on the agent's registry subject")
        last = max(ts for t, _, ts in evs if t != "io.agentry.agent.expired")
        decided = exp[0] - last
        self.notes.append(f"expired {decided:.2f}s after the last heartbeat, {took:.2f}s after the kill")
        check(decided <= p["missed"] * hb + 0.25 + p["slack_s"] / 2,
              f"expired {decided:.2f}s after the last heartbeat (heartbeat {hb}s, {p['missed']} missed)")
        check(took <= p["missed"] * hb + 0.25 + p["slack_s"] * 2, f"expired {took:.2f}s after kill -9 (heartbeat {hb}s)")


async def main(args: argparse.Namespace) -> int:
    system = System(ack_wait_secs=ACK_WAIT_S, max_deliver=MAX_DELIVER)
    scenarios = [json.loads(p.read_text()) for p in sorted((HERE / "scenarios").glob("*.json"))]
    if args.only:
        scenarios = [s for s in scenarios if any(o in s["name"] for o in args.only.split(","))]
    failures = 0
    try:
        system.start_nats()
        system.setup()
        system.start_engine()
        system.start_monitor()
        impl = implementation(args, system)
        run = Run(system, impl)
        await run.obs.open()
        run.start_agent()
        run.agent = await run.wait_live()
        print(f"conformance: {impl.name} agent {run.agent['id']} ({' '.join(impl.argv)})")
        for sc in scenarios:
            fn: Callable[[dict[str, Any]], Awaitable[None]] = getattr(run, "s" + sc["name"].replace("-", "_"))
            started = time.monotonic()
            try:
                if sc["name"] != "10-expiry" and run.proc is not None and run.proc.p.poll() is not None:
                    raise Failed("the agent process is not running")
                await asyncio.wait_for(fn(sc["params"]), 120)
                note = f"; {'; '.join(run.notes)}" if run.notes else ""
                run.notes.clear()
                print(f"  PASS {sc['name']:<24} {sc['title']} ({time.monotonic() - started:.1f}s{note})")
            except (Failed, AssertionError, asyncio.TimeoutError, Exception) as e:
                failures += 1
                print(f"  FAIL {sc['name']:<24} {sc['title']}: {e or type(e).__name__}")
                if args.verbose:
                    traceback.print_exc()
        await run.obs.close()
    finally:
        if args.verbose and failures:
            for p in system.procs:
                print(f"--- {p.name}\n{p.output()[-3000:]}")
        system.close()
    print(f"conformance: {len(scenarios) - failures}/{len(scenarios)} scenarios passed")
    return 1 if failures else 0


def cli() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("impl", nargs="?", choices=["rust", "python", "broken"], default="python")
    ap.add_argument("--cmd", help="command line of another implementation")
    ap.add_argument("--role", default="agent", help="NATS user of --cmd (default: agent)")
    ap.add_argument("--only", help="comma-separated scenario name parts")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    return asyncio.run(main(args))


if __name__ == "__main__":
    sys.exit(cli())
