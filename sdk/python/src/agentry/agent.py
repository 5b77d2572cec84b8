"""Agents in Python: declare capabilities with JSON Schemas and an async
handler each; `Agent.run()` does the protocol (docs/protocol.md): task
consumers `cap-<capability>`, registration and heartbeats on
`agentry.registry.<agent-id>`, first-result-wins results, progress (`+WPI`),
retries by NAK delay, the DLQ, the `$SRV` service API with A2A endpoints,
drain on SIGTERM and deregistration.

    agent = Agent("words", "1.0.0")

    @agent.capability("word_count", input_schema={...}, output_schema={...})
    async def count(task: Task, ctx: Context) -> dict:
        return {"words": len(task.input["text"].split())}

    agent.main()
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import logging
import os
import signal
import socket
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import jsonschema
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import APIError, NotFoundError
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import EndpointConfig, Service

from . import events, wire
from .connection import Settings
from .context import Context
from .errors import InvalidInput, RetryableError, TaskError
from .task import Capability, Handler, Task
from .worker import Delivery

log = logging.getLogger("agentry.agent")


@dataclass(frozen=True)
class Config:
    """Runtime settings (the Rust runtime's defaults; `from_env` reads the same variables)."""

    capacity: int = 16
    heartbeat: float = 10.0
    drain_timeout: float = 30.0
    #: Used only when this agent creates its `cap-<capability>` consumer.
    ack_wait: float = 30.0
    max_deliver: int = 5
    retry_initial: float = 0.5
    retry_max: float = 60.0
    default_timeout: float = 300.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Config:
        e = dict(os.environ) if env is None else env

        def num(name: str, default: float) -> float:
            raw = e.get(name)
            if raw is None:
                return default
            raw = raw.strip()
            scale = 0.001 if raw.endswith("ms") else 1.0
            raw = raw.removesuffix("ms").removesuffix("s")
            try:
                return float(raw) * scale
            except ValueError as err:
                raise ValueError(f"{name}={e.get(name)!r} is not a duration or number") from err

        return cls(
            capacity=int(num("AGENTRY_CAPACITY", cls.capacity)),
            heartbeat=num("AGENTRY_HEARTBEAT", cls.heartbeat),
            drain_timeout=num("AGENTRY_DRAIN_TIMEOUT", cls.drain_timeout),
            ack_wait=num("AGENTRY_TASK_ACK_WAIT_SECS", cls.ack_wait),
            max_deliver=int(num("AGENTRY_TASK_MAX_DELIVER", cls.max_deliver)),
        )

    def retry_delay(self, attempt: int) -> float:
        return float(min(self.retry_initial * 2 ** max(attempt - 1, 0), self.retry_max))


@dataclass
class _Counters:
    in_flight: int = 0
    processed: int = 0
    failed: int = 0


class Agent:
    """An agent kind with its capabilities; one `run()` is one instance with its own id."""

    def __init__(
        self,
        kind: str,
        version: str = "0.1.0",
        description: str = "",
        *,
        settings: Settings | None = None,
        config: Config | None = None,
    ) -> None:
        self.kind = kind
        self.version = version
        self.description = description or f"agentry agent {kind}"
        self.settings = settings or Settings.from_env(name=f"agentry-agent-{kind}")
        self.config = config or Config.from_env()
        self.capabilities: dict[str, Capability] = {}
        self.id = wire.generate_agent_id(kind)
        self.source = f"/agents/{self.id}"
        self._nc: NatsClient | None = None
        self._counters = _Counters()
        self._started_at = _dt.datetime.now(_dt.timezone.utc)
        self._stop = asyncio.Event()
        self._pulling = True
        self._work: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._service: Service | None = None
        self._slots: asyncio.Semaphore | None = None
        self._max_deliver = self.config.max_deliver
        self._ack_wait = self.config.ack_wait
        self._validators: dict[str, tuple[Any, Any]] = {}

    # -- declaration ------------------------------------------------------------

    def capability(
        self,
        name: str,
        *,
        input_schema: dict[str, Any] | None = None,
        output_schema: dict[str, Any] | None = None,
        description: str = "",
    ) -> Callable[[Handler], Handler]:
        """Declares capability `name` served by the decorated async handler."""
        wire.capability(name)

        def register(fn: Handler) -> Handler:
            self.capabilities[name] = Capability(name, fn, input_schema, output_schema, description)
            self._validators[name] = (_validator(input_schema), _validator(output_schema))
            return fn

        return register

    @property
    def nc(self) -> NatsClient:
        if self._nc is None:
            raise RuntimeError("agent not started")
        return self._nc

    # -- life cycle ---------------------------------------------------------------

    def main(self) -> None:
        """Runs until SIGTERM or SIGINT, then drains and deregisters (a script's entry point)."""
        logging.basicConfig(level=os.environ.get("AGENTRY_LOG", "INFO").upper())
        asyncio.run(self.run())

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        await self.start()
        try:
            await self._heartbeats()
        finally:
            await self.shutdown()

    def stop(self) -> None:
        """Asks a running instance to drain and deregister."""
        self._stop.set()

    async def start(self) -> None:
        if not self.capabilities:
            raise ValueError(f"agent {self.kind} declares no capability")
        self._nc = await self.settings.connect()
        js = self.nc.jetstream()
        self._slots = asyncio.Semaphore(max(self.config.capacity, 1))
        # Consumers first: an agent is announced only once it can take work.
        subs = []
        for cap in self.capabilities:
            info = await self._ensure_consumer(cap)
            if info is not None:
                self._max_deliver = int(info.config.max_deliver or self._max_deliver)
                self._ack_wait = float(info.config.ack_wait or self._ack_wait)
            subs.append((cap, await js.pull_subscribe_bind(durable=wire.task_consumer(cap), stream=wire.TASKS_STREAM)))
        self._service = await self._start_service()
        for cap, sub in subs:
            self._loops.append(asyncio.create_task(self._pull(cap, sub)))
        await self._publish_record(wire.Type.AGENT_REGISTERED, "live")
        log.info("agent %s registered: %s", self.id, ", ".join(self.capabilities))

    async def _ensure_consumer(self, cap: str) -> Any:
        js = self.nc.jetstream()
        name = wire.task_consumer(cap)
        try:
            return await js.consumer_info(wire.TASKS_STREAM, name)
        except NotFoundError:
            pass
        cfg = ConsumerConfig(
            name=name,
            durable_name=name,
            description=f"Tasks for capability {cap}",
            filter_subject=wire.tasks(cap),
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.config.ack_wait,
            max_deliver=max(self.config.max_deliver, 2),
            max_ack_pending=20_000,
        )
        return await js.add_consumer(wire.TASKS_STREAM, cfg)

    async def _heartbeats(self) -> None:
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=self.config.heartbeat)
            except asyncio.TimeoutError:
                await self._publish_record(wire.Type.AGENT_HEARTBEAT, "live")

    async def shutdown(self) -> None:
        """Drain: stop pulling, announce `draining`, finish in-flight work, deregister."""
        if self._nc is None or self._nc.is_closed:
            return
        log.info("agent %s draining, %d in flight", self.id, self._counters.in_flight)
        self._pulling = False
        await self._publish_record(wire.Type.AGENT_HEARTBEAT, "draining")
        if self._loops:
            await asyncio.wait(self._loops, timeout=self.config.drain_timeout)
        if self._work:
            _, pending = await asyncio.wait(self._work, timeout=self.config.drain_timeout)
            if pending:
                log.warning("drain timeout: %d tasks will be redelivered to other agents", len(pending))
        if self._service is not None:
            await self._service.stop()
        await self._publish_record(wire.Type.AGENT_DEREGISTERED, "deregistered")
        log.info("agent %s deregistered, %d processed", self.id, self._counters.processed)
        try:
            await asyncio.wait_for(self._nc.flush(), 5)
        except (NatsTimeout, asyncio.TimeoutError):
            log.warning("final flush timed out")
        await self._nc.close()

    # -- registry -------------------------------------------------------------------

    def record(self, status: str) -> dict[str, Any]:
        """The agent record (schemas/agent-record.json)."""
        c, cap = self._counters, max(self.config.capacity, 1)
        now = _dt.datetime.now(_dt.timezone.utc)
        rec: dict[str, Any] = {
            "id": self.id,
            "name": self.kind,
            "kind": self.kind,
            "version": self.version,
            "capabilities": sorted(self.capabilities),
            "status": status,
            "load": min(c.in_flight / cap, 1.0),
            "in_flight": c.in_flight,
            "capacity": cap,
            "processed": c.processed,
            "failed": c.failed,
            "started_at": _rfc3339(self._started_at),
            "last_heartbeat": _rfc3339(now),
            "heartbeat_interval_ms": int(self.config.heartbeat * 1000),
        }
        host = os.environ.get("HOSTNAME") or socket.gethostname()
        if host:
            rec["host"] = host
        return rec

    async def _publish_record(self, ty: str, status: str) -> None:
        eid = wire.new_id()
        ev = events.new_event(eid, self.source, ty, self.record(status))
        headers, body = events.encode(ev)
        headers[wire.Header.MSG_ID] = eid
        try:
            await self.nc.jetstream().publish(wire.registry(self.id), body, headers=headers, timeout=5)
        except (APIError, NatsTimeout, NoRespondersError) as e:
            log.warning("registry publish (%s) failed: %s", ty, e)

    # -- tasks ------------------------------------------------------------------------

    async def _pull(self, cap: str, sub: Any) -> None:
        assert self._slots is not None
        while self._pulling:
            # Fetch only what free slots can take (the semaphore is the hard bound).
            free = max(self.config.capacity, 1) - len(self._work)
            if free <= 0:
                await asyncio.wait(set(self._work), return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                msgs = await sub.fetch(batch=min(free, 32), timeout=1.0)
            except NatsTimeout:
                continue
            except Exception as e:  # connection trouble: the client reconnects
                if not self._pulling:
                    break
                log.warning("pull on cap-%s failed: %s", cap, e)
                await asyncio.sleep(0.25)
                continue
            for msg in msgs:
                await self._slots.acquire()
                t = asyncio.create_task(self._process(cap, msg))
                self._work.add(t)
                t.add_done_callback(self._work.discard)

    async def _process(self, cap: str, msg: Msg) -> None:
        assert self._slots is not None
        self._counters.in_flight += 1
        try:
            await Delivery(self, cap, msg).run()
        except Exception:
            log.exception("task processing failed; the task is kept for redelivery")
            try:
                await msg.nak(delay=1.0)
            except Exception as e:  # the connection is gone: AckWait brings the task back
                log.warning("nak failed: %s", e)
        finally:
            self._counters.in_flight -= 1
            self._slots.release()

    # -- $SRV and A2A ------------------------------------------------------------------

    async def _start_service(self) -> Service:
        svc = await add_service(
            self.nc,
            name=self.kind,
            version=self.version,
            description=self.description,
            metadata={"agent_id": self.id, "kind": self.kind},
        )
        base = wire.a2a(self.id)
        await svc.add_endpoint(EndpointConfig(name="a2a", subject=base, handler=self._a2a_handler(None)))
        for cap in self.capabilities:
            await svc.add_endpoint(EndpointConfig(name=cap, subject=f"{base}.{cap}", handler=self._a2a_handler(cap)))
        return svc

    def _a2a_handler(self, fixed: str | None) -> Callable[[Request], Awaitable[None]]:
        async def handle(req: Request) -> None:
            try:
                out = await self._a2a_call(fixed, req)
            except TaskError as e:
                await req.respond_error("503" if e.retryable else "400", f"{e.code}: {e.message}")
                return
            except Exception as e:  # a handler bug must not take the endpoint down
                await req.respond_error("500", f"internal: {e}")
                return
            await req.respond(json.dumps({"output": out}).encode())

        return handle

    async def _a2a_call(self, fixed: str | None, req: Request) -> Any:
        try:
            body = json.loads(req.data or b"null")
        except ValueError as e:
            raise InvalidInput(f"request is not JSON: {e}") from e
        if fixed is not None:
            cap, input = fixed, body
        else:
            if not isinstance(body, dict):
                raise InvalidInput("expected {capability?, input}")
            name = body.get("capability")
            if name is None and len(self.capabilities) == 1:
                name = next(iter(self.capabilities))
            if name not in self.capabilities:
                raise InvalidInput(f"this agent does not serve {name}" if name else "name a capability")
            cap, input = str(name), body.get("input")
        self._check_input(cap, input)
        h = req.headers or {}
        task = Task(
            request_id=wire.new_id(),
            capability=cap,
            input=input,
            attempt=1,
            source=f"/agents/{h[wire.Header.A2A_FROM]}" if wire.Header.A2A_FROM in h else "/a2a",
            traceparent=h.get("traceparent"),
        )
        try:
            return await asyncio.wait_for(
                self.capabilities[cap].handler(task, Context(self, task, None)), self.config.default_timeout
            )
        except asyncio.TimeoutError as e:
            raise RetryableError(f"timed out after {self.config.default_timeout}s") from e

    def _check_input(self, cap: str, input: Any) -> None:
        v = self._validators.get(cap, (None, None))[0]
        if v is not None:
            err = jsonschema.exceptions.best_match(v.iter_errors(input))
            if err is not None:
                path = "/".join(str(p) for p in err.absolute_path)
                raise InvalidInput(f"input does not match the {cap} schema at /{path}: {err.message}")


def _validator(schema: dict[str, Any] | None) -> Any:
    """A validator for `schema` (checked now, so a bad schema fails at declaration)."""
    if not schema:
        return None
    cls: Any = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _rfc3339(t: _dt.datetime) -> str:
    return t.astimezone(_dt.timezone.utc).isoformat().replace("+00:00", "Z")


__all__ = ["Agent", "Capability", "Config", "Context", "Task"]
