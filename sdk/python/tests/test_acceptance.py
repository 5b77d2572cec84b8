"""Issue 17 acceptance, against the real system (production accounts and
permissions; every component connects as its own NATS user)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import nats

from agentry import Client, Mode
from conftest import AGENTS, REPO
from system import Observer, System, bin_dir, eventually

EXAMPLE = REPO / "examples" / "python" / "word_count.py"
WORKFLOWS = Path(__file__).resolve().parent / "workflows"


async def _live(obs: Observer, kind: str, exclude: set[str] = set()) -> dict[str, Any]:
    return await eventually(lambda: obs.live_agent(kind, exclude), 30, f"a live {kind} agent")


def test_python_agent_serves_a_step_of_a_rust_workflow_beside_rust_agents(system: System) -> None:
    """Acceptance 1: echo (Rust) -> word_count (Python) -> echo (Rust)."""
    system.start_python("word-count", EXAMPLE, AGENTRY_HEARTBEAT="1s")

    async def run() -> None:
        obs = await Observer(system).open()
        try:
            py = await _live(obs, "word_count")
            # The workflow is stored (and checked: word_count must be a known capability) by the admin.
            system.ctl("workflow", "put", str(WORKFLOWS / "py_words.yaml"))
            # Run untenanted, as the admin: on main the engine publishes a workflow's result to
            # agentry.results.<id> even for a tenant's request, where the tenant cannot read it.
            async with await Client.connect(system.settings("admin")) as c:
                res = await c.run_workflow("py_words", {"text": "the quick brown fox jumps"}, wait=90)
            assert res.ok, res.data
            out = res.output
            assert out["words"] == 5
            assert out["longest"] in ("quick", "brown", "jumps")
            assert out["counted_by"] == py["id"]
            assert out["reported_by"].startswith("echo-")
        finally:
            await obs.close()

    asyncio.run(run())


def test_kill9_python_agent_holding_tasks_expires_and_every_task_completes_once_elsewhere(system: System) -> None:
    """Acceptance 2: kill -9 while holding tasks; expired within 3 heartbeats;
    each task completes on another instance with exactly one result."""
    hb = 1.0
    first = system.start_python("hold-a", AGENTS / "hold.py", AGENTRY_HEARTBEAT="1s", AGENTRY_CAPACITY="16")

    async def run() -> None:
        obs = await Observer(system).open()
        try:
            a = await _live(obs, "hold")
            async with await Client.connect(system.settings("client_acme"), tenant="acme") as c:
                ids = [await c.send(c.task_event("py_hold", {"n": i, "hold_s": 120})) for i in range(6)]

                async def holding() -> bool:
                    rec = await obs.record(a["id"])
                    return bool(rec and rec["in_flight"] == 6)

                await eventually(holding, 30, "instance A holding all 6 tasks")
                first.kill9()
                killed = time.monotonic()

                async def expired() -> dict[str, Any] | None:
                    rec = await obs.record(a["id"])
                    return rec if rec and rec["status"] == "expired" else None

                await eventually(expired, 15, "instance A expired", every=0.05)
                took = time.monotonic() - killed
                # By the server's clock: 3 missed heartbeats after the last one, plus the
                # monitor's sweep interval (250 ms) and a little scheduling slack.
                evs = await obs.registry_events(a["id"])
                expired_at = [ts for t, _, ts in evs if t == "io.agentry.agent.expired"][0]
                last_beat = max(ts for t, _, ts in evs if t != "io.agentry.agent.expired")
                assert expired_at - last_beat <= 3 * hb + 0.75, f"expired {expired_at - last_beat:.2f}s after the last heartbeat"
                # And as a client sees it from the kill (which came after that heartbeat).
                assert took <= 3 * hb + 2.0, f"expired {took:.2f}s after kill -9 (heartbeat {hb}s)"

                system.start_python("hold-b", AGENTS / "hold.py", AGENTRY_HEARTBEAT="1s")
                b = await _live(obs, "hold", exclude={a["id"]})
                results = [await c.result(rid, wait=60) for rid in ids]
            for rid, res in zip(ids, results):
                assert res.ok, res.data
                assert res.output["agent"] == b["id"], res.output
                assert res.output["attempt"] >= 2
                assert res.output["tenant"] in (None, "acme")
            stored = await obs.results("agentry.results.acme.>")
            for rid in ids:
                assert [s for s, _ in stored].count(f"agentry.results.acme.{rid}") == 1
        finally:
            await obs.close()

    asyncio.run(run())


def test_agents_cli_srv_ping_and_status_list_the_python_agent(system: System) -> None:
    """Acceptance 3."""
    system.start_python("word-count-3", EXAMPLE, AGENTRY_HEARTBEAT="1s")

    async def run() -> dict[str, Any]:
        obs = await Observer(system).open()
        try:
            rec = await _live(obs, "word_count")
            pings = await obs.srv_ping("word_count")
            assert rec["id"] in [p.get("metadata", {}).get("agent_id") for p in pings], pings
            assert all(p["type"] == "io.nats.micro.v1.ping_response" for p in pings)
            return rec
        finally:
            await obs.close()

    rec = asyncio.run(run())
    agents = json.loads(system.ctl("--json", "agents").stdout)
    listed = [a for a in agents if a["id"] == rec["id"]]
    assert listed and listed[0]["status"] == "live" and listed[0]["capabilities"] == ["word_count"]
    text = system.ctl("agents").stdout
    assert rec["id"] in text
    status = json.loads(system.ctl("--json", "status").stdout)
    assert status["agents"]["word_count"]["live"] >= 1, status["agents"]
    queue = [q for q in status["queues"] if q.get("consumer") == "cap-word_count" or "word_count" in json.dumps(q)]
    assert queue and any((q.get("live_agents") or 0) >= 1 for q in queue), status["queues"]


def test_tenant_client_gets_only_its_own_results(system: System) -> None:
    """Acceptance 4 (second half), production accounts: acme and globex use the
    same request id; each gets its own result, globex can read none of acme's."""

    async def run() -> None:
        denied: list[str] = []

        async def on_error(e: Exception) -> None:
            denied.append(str(e))

        acme = await Client.connect(system.settings("client_acme"), tenant="acme")
        globex = await Client.connect(system.settings("client_globex"), tenant="globex", mode=Mode.STRUCTURED)
        g = system.settings("client_globex")
        spy = await nats.connect(system.url, user=g.user, password=g.password, inbox_prefix=g.inbox_prefix,
                                 error_cb=on_error)
        try:
            stolen = await spy.subscribe("agentry.results.acme.>")
            rid = f"same-{int(time.time() * 1000)}"
            ra = await acme.submit("echo", {"message": "acme secret"}, id=rid, wait=30)
            rg = await globex.submit("echo", {"message": "globex data"}, id=rid, wait=30)
            assert ra.ok and ra.output["echo"] == {"message": "acme secret"}
            assert rg.ok and rg.output["echo"] == {"message": "globex data"}
            # Stored results: each tenant reads its own, by the same id.
            again = await globex.fetch_result(rid)
            assert again is not None and again.output["echo"] == {"message": "globex data"}
            # globex cannot subscribe to acme's results nor direct-get them.
            await eventually(lambda: _true_if(any("permissions violation" in d.lower() for d in denied)), 5,
                             "the server to deny globex's subscription")
            try:
                msg = await stolen.next_msg(timeout=0.5)
                raise AssertionError(f"globex received acme's result: {msg.data!r}")
            except nats.errors.TimeoutError:
                pass
            try:
                reply = await spy.request(f"$JS.API.DIRECT.GET.AGENTRY_RESULTS.agentry.results.acme.{rid}", b"",
                                          timeout=1)
                assert b"acme secret" not in reply.data
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                pass
        finally:
            await acme.close()
            await globex.close()
            await spy.close()

    asyncio.run(run())


def test_python_agent_asks_a_rust_agent_over_a2a(system: System) -> None:
    """A Python handler finds the Rust echo agent in agentry-agents and asks it
    on agentry.a2a.<id> (production accounts, generic `agent` user)."""
    system.start_python("relay", AGENTS / "relay.py", AGENTRY_HEARTBEAT="1s")

    async def run() -> None:
        obs = await Observer(system).open()
        try:
            await _live(obs, "relay")
            echo = await _live(obs, "echo")
            async with await Client.connect(system.settings("client_acme"), tenant="acme") as c:
                res = await c.submit("py_ask", {"message": "via a2a"}, wait=30)
            assert res.ok, res.data
            assert res.output["answer"]["echo"] == {"message": "via a2a"}
            assert res.output["answer"]["agent_id"] == echo["id"]
        finally:
            await obs.close()

    asyncio.run(run())


async def _true_if(v: bool) -> bool:
    return v


def test_dev_mode_python_client_runs_trip_planning_with_offline_weather(tmp_path: Path) -> None:
    """Acceptance 4 (first half), dev mode: `agentry up --offline` (one process,
    no auth) runs the built-in trip_planning workflow for a Python client."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    up = subprocess.Popen(
        [str(bin_dir() / "agentry"), "up", "--offline", "--nats-port", str(port), "--dir", str(tmp_path),
         "--http-addr", "127.0.0.1:0", "--agents", "weather,planning,echo"],
        stdout=(tmp_path / "up.log").open("wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    relay: subprocess.Popen[bytes] | None = None
    try:

        async def run() -> None:
            nonlocal relay
            from agentry import Settings

            async def ready() -> bool:
                return "ready;" in (tmp_path / "up.log").read_text(errors="replace")

            await eventually(ready, 60, "agentry up to be ready")
            async with await Client.connect(Settings(url=f"nats://127.0.0.1:{port}")) as c:
                res = await c.run_workflow(
                    "trip_planning",
                    {"city": "Berlin", "days": 2, "tasks": [
                        {"id": "pack", "duration_h": 1},
                        {"id": "hike", "duration_h": 3, "outdoor": True, "depends_on": ["pack"]},
                    ]},
                    wait=120,
                )
            assert res.ok, res.data
            out = res.output
            assert out["city"] == "Berlin"
            assert out["forecast"], out
            assert {t["id"] for t in _scheduled(out["plan"])} >= {"pack", "hike"}, out["plan"]

            # A Python agent on the dev server delegates a child task and asks over A2A.
            import os
            import sys

            env = dict(os.environ, AGENTRY_NATS_URL=f"nats://127.0.0.1:{port}", AGENTRY_HEARTBEAT="1s")
            env.pop("AGENTRY_NATS_USER", None)
            relay = subprocess.Popen([sys.executable, str(AGENTS / "relay.py")], env=env,
                                     stdout=(tmp_path / "relay.log").open("wb"), stderr=subprocess.STDOUT)
            async with await Client.connect(Settings(url=f"nats://127.0.0.1:{port}")) as c:
                for cap in ("py_delegate", "py_ask"):
                    r = await eventually(lambda: _submit_ok(c, cap), 60, f"{cap} to complete")
                    assert r.output["answer"]["echo"] == {"message": cap}, r.output

        asyncio.run(run())
    finally:
        if relay is not None:
            relay.terminate()
            relay.wait(30)
        up.terminate()
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()


async def _submit_ok(c: Client, cap: str) -> Any:
    """The result of `cap` when it completed (None while the capability is not served yet)."""
    r = await c.submit(cap, {"message": cap}, wait=30)
    return r if r.ok else None


def _scheduled(plan: Any) -> list[dict[str, Any]]:
    """The scheduled tasks of a plan_tasks output, wherever the planner lists them."""
    for key in ("schedule", "tasks", "plan", "scheduled"):
        v = plan.get(key) if isinstance(plan, dict) else None
        if isinstance(v, list) and v and isinstance(v[0], dict) and "id" in v[0]:
            return v
    raise AssertionError(f"no scheduled task list in {json.dumps(plan)[:400]}")
