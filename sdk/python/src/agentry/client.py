"""The client side of the request protocol: publish a CloudEvent request to
`agentry.requests[.<tenant>]` (JetStream, deduplicated by `Nats-Msg-Id`) and
read its one terminal result on `agentry.results[.<tenant>].<id>`, live or
stored (direct get of the last message for that subject)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import APIError

from . import events, wire
from .connection import Settings
from .errors import DecodeError, PublishError, ResultTimeout
from .events import CloudEvent, Mode


@dataclass(frozen=True)
class Result:
    """A terminal result: `io.agentry.task.completed|failed`,
    `io.agentry.workflow.completed|failed|cancelled|timed_out` or `io.agentry.request.rejected`."""

    request_id: str
    type: str
    data: dict[str, Any]
    event: CloudEvent

    @property
    def ok(self) -> bool:
        return self.type.endswith(".completed")

    @property
    def output(self) -> Any:
        return self.data.get("output")

    @property
    def error(self) -> dict[str, Any] | None:
        if self.ok:
            return None
        err = self.data.get("error")
        if isinstance(err, dict):
            return err
        # request.rejected carries {reason, detail}
        return {"code": self.data.get("reason", "failed"), "message": self.data.get("detail", "")}


def _result(request_id: str, msg: Msg) -> Result:
    ev = events.decode(msg.headers, msg.data)
    return Result(request_id, str(ev["type"]), events.data_json(ev), ev)


class Client:
    """Submits tasks and workflows, awaits results, signals and cancels runs.

    With `tenant`, requests go to `agentry.requests.<tenant>` and results are
    read from `agentry.results.<tenant>.<id>`: connect as NATS user
    `client_<tenant>` (the only subjects that user may use)."""

    def __init__(
        self,
        nc: NatsClient,
        *,
        tenant: str | None = None,
        source: str = "/python",
        mode: Mode = Mode.BINARY,
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.tenant = wire.tenant(tenant) if tenant else None
        self.source = source
        self.mode = mode
        self._owned = False

    @classmethod
    async def connect(
        cls,
        settings: Settings | None = None,
        *,
        tenant: str | None = None,
        source: str = "/python",
        mode: Mode = Mode.BINARY,
    ) -> Client:
        nc = await (settings or Settings.from_env()).connect()
        c = cls(nc, tenant=tenant, source=source, mode=mode)
        c._owned = True
        return c

    async def close(self) -> None:
        if self._owned:
            await self.nc.drain()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- publishing ---------------------------------------------------------

    async def send(self, event: CloudEvent) -> str:
        """Publishes a request event and waits for JetStream's ack; returns its id."""
        rid = wire.request_id(str(event["id"]))
        headers, body = events.encode(event, self.mode)
        headers[wire.Header.MSG_ID] = wire.request_key(self.tenant, rid)
        try:
            await self.js.publish(wire.requests_for(self.tenant), body, headers=headers)
        except (APIError, NatsTimeout, NoRespondersError) as e:
            raise PublishError(f"request {rid} not stored: {e}") from e
        return rid

    def task_event(
        self, capability: str, input: Any, *, timeout_ms: int | None = None, id: str | None = None
    ) -> CloudEvent:
        data: dict[str, Any] = {"capability": wire.capability(capability), "input": input}
        if timeout_ms is not None:
            data["timeout_ms"] = timeout_ms
        return events.new_event(id or wire.new_id(), self.source, wire.Type.TASK_REQUESTED, data)

    def workflow_event(
        self, workflow: str, input: Any, *, version: int | None = None, id: str | None = None
    ) -> CloudEvent:
        data: dict[str, Any] = {"workflow": workflow, "input": input}
        if version is not None:
            data["version"] = version
        return events.new_event(id or wire.new_id(), self.source, wire.Type.WORKFLOW_REQUESTED, data)

    # -- request and result --------------------------------------------------

    async def submit(
        self,
        capability: str,
        input: Any,
        *,
        timeout_ms: int | None = None,
        wait: float = 60.0,
        id: str | None = None,
    ) -> Result:
        """Submits a task and waits up to `wait` seconds for its result."""
        return await self.request(self.task_event(capability, input, timeout_ms=timeout_ms, id=id), wait)

    async def run_workflow(
        self,
        workflow: str,
        input: Any,
        *,
        version: int | None = None,
        wait: float = 300.0,
        id: str | None = None,
    ) -> Result:
        """Starts a workflow run and waits for its terminal result."""
        return await self.request(self.workflow_event(workflow, input, version=version, id=id), wait)

    async def request(self, event: CloudEvent, wait: float) -> Result:
        rid = wire.request_id(str(event["id"]))
        sub = await self.nc.subscribe(wire.results_for(self.tenant, rid), max_msgs=1)
        try:
            await self.send(event)
            return await self._await(rid, sub, wait)
        finally:
            await _unsubscribe(sub)

    async def result(self, request_id: str, wait: float = 0.0) -> Result:
        """The result of an earlier request: stored, or awaited live for up to `wait` seconds."""
        rid = wire.request_id(request_id)
        sub = await self.nc.subscribe(wire.results_for(self.tenant, rid), max_msgs=1)
        try:
            stored = await self.fetch_result(rid)
            if stored is not None:
                return stored
            return await self._await(rid, sub, wait)
        finally:
            await _unsubscribe(sub)

    async def fetch_result(self, request_id: str) -> Result | None:
        """Direct get of the stored result (the "last message for subject" form a tenant may use)."""
        rid = wire.request_id(request_id)
        subject = f"$JS.API.DIRECT.GET.{wire.RESULTS_STREAM}.{wire.results_for(self.tenant, rid)}"
        try:
            msg = await self.nc.request(subject, b"", timeout=5)
        except (NatsTimeout, NoRespondersError):
            return None
        if msg.headers and msg.headers.get("Status"):
            return None
        return _result(rid, msg)

    async def _await(self, rid: str, sub: Any, wait: float) -> Result:
        try:
            msg = await sub.next_msg(timeout=max(wait, 0.001))
            return _result(rid, msg)
        except NatsTimeout:
            pass
        except DecodeError:
            raise
        # Missed on the live subscription (reconnect): the results stream has it.
        stored = await self.fetch_result(rid)
        if stored is None:
            raise ResultTimeout(rid, wait)
        return stored

    # -- runs -----------------------------------------------------------------

    async def signal(self, run_id: str, signal: str, payload: Any = None) -> str:
        """Sends signal `signal` to a waiting run; returns the request id."""
        data: dict[str, Any] = {"run_id": run_id, "signal": signal}
        if payload is not None:
            data["payload"] = payload
        return await self.send(events.new_event(wire.new_id(), self.source, wire.Type.WORKFLOW_SIGNAL, data))

    async def cancel(self, run_id: str, reason: str | None = None) -> str:
        """Cancels a run (its compensations run); returns the request id."""
        data: dict[str, Any] = {"run_id": run_id}
        if reason:
            data["reason"] = reason
        return await self.send(events.new_event(wire.new_id(), self.source, wire.Type.WORKFLOW_CANCEL, data))


async def _unsubscribe(sub: Any) -> None:
    try:
        await sub.unsubscribe()
    except Exception:  # already auto-unsubscribed after max_msgs, or the connection is closing
        return
    await asyncio.sleep(0)
