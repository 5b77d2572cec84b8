"""What a handler can reach while it runs: progress, A2A and delegation."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import KeyNotFoundError, NoKeysError

from . import wire
from .errors import A2AError
from .task import Task

if TYPE_CHECKING:
    from .agent import Agent


class Context:
    """What a handler can reach: progress, A2A ask, delegation, the NATS connection."""

    def __init__(self, agent: Agent, task: Task | None, msg: Msg | None) -> None:
        self._agent = agent
        self.task = task
        self._msg = msg

    @property
    def agent_id(self) -> str:
        return self._agent.id

    @property
    def tenant(self) -> str | None:
        return self.task.tenant if self.task else None

    @property
    def nats(self) -> NatsClient:
        return self._agent.nc

    async def progress(self) -> None:
        """Tells JetStream the task is still being worked on (`+WPI`: AckWait starts again).
        The runtime also does this on its own every third of AckWait."""
        if self._msg is not None:
            await self._msg.in_progress()

    async def ask(
        self, target: str, input: Any, *, capability: str | None = None, timeout: float = 10.0
    ) -> Any:
        """Asks agent `target` directly (request/reply on `agentry.a2a.<agent-id>`)."""
        headers = {wire.Header.A2A_FROM: self._agent.id}
        if self.task and self.task.traceparent:
            headers["traceparent"] = self.task.traceparent
        body = json.dumps({"capability": capability, "input": input}).encode()
        try:
            msg = await self.nats.request(wire.a2a(wire.agent_id(target)), body, timeout=timeout, headers=headers)
        except NoRespondersError as e:
            raise A2AError(target, "no_responders", "no agent answers") from e
        except NatsTimeout as e:
            raise A2AError(target, "timeout", f"no answer within {timeout}s") from e
        h = msg.headers or {}
        if "Nats-Service-Error" in h:
            code, _, message = h["Nats-Service-Error"].partition(": ")
            raise A2AError(target, code, message)
        try:
            reply = json.loads(msg.data)
        except ValueError as e:
            raise A2AError(target, "bad_reply", "reply is not JSON") from e
        if isinstance(reply, dict) and "error" in reply:
            err = reply["error"] or {}
            raise A2AError(target, str(err.get("code", "error")), str(err.get("message", "")))
        return reply.get("output") if isinstance(reply, dict) else None

    async def find_agents(self, capability: str) -> list[dict[str, Any]]:
        """Live agents serving `capability` (records from `agentry-agents`), least loaded first."""
        kv = await self.nats.jetstream().key_value(wire.AGENTS_BUCKET)
        try:
            keys = await kv.keys()
        except NoKeysError:
            return []
        found = []
        for key in keys:
            try:
                entry = await kv.get(key)
                rec = json.loads(entry.value or b"null")
            except (KeyNotFoundError, ValueError):
                continue
            if isinstance(rec, dict) and rec.get("status") == "live" and capability in rec.get("capabilities", []):
                found.append(rec)
        return sorted(found, key=lambda r: (r.get("load", 0), r.get("in_flight", 0), r.get("id", "")))

    async def ask_capability(self, capability: str, input: Any, *, timeout: float = 10.0) -> Any:
        """Asks the least-loaded live agent serving `capability` (A2A, no queue)."""
        agents = await self.find_agents(capability)
        if not agents:
            raise A2AError(capability, "no_agent", f"no live agent serves {capability}")
        return await self.ask(str(agents[0]["id"]), input, capability=capability, timeout=timeout)

    async def delegate(self, capability: str, input: Any, *, timeout: float = 30.0) -> Any:
        """Submits a child task through `agentry.requests[.<tenant of this task>]`
        (queued, retried and rate limited like any request) and awaits its result."""
        from .client import Client

        client = Client(self.nats, tenant=self.tenant, source=f"/agents/{self._agent.id}")
        ev = client.task_event(capability, input, timeout_ms=int(timeout * 1000))
        if self.task:
            if self.task.traceparent:
                ev[wire.Ext.TRACEPARENT] = self.task.traceparent
            ev[wire.Ext.PARENTID] = self.task.request_id
        res = await client.request(ev, timeout + 2)
        if res.ok:
            return res.output
        err = res.error or {}
        raise A2AError(capability, str(err.get("code", "failed")), str(err.get("message", "")))
