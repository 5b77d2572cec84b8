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
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import jsonschema
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import APIError, KeyNotFoundError, NoKeysError, NotFoundError
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import EndpointConfig, Service

from . import events, wire
from .connection import Settings
from .errors import A2AError, InvalidInput, PermanentError, RetryableError, TaskError

log = logging.getLogger("agentry.agent")

#: JetStream error code for "wrong last sequence": a result for this subject already exists.
WRONG_LAST_SEQUENCE = 10071


@dataclass(frozen=True)
class Task:
    """One task as a handler sees it."""

    request_id: str
    capability: str
    input: Any
    #: Delivery attempt, 1-based (for workflow steps: the engine's attempt).
    attempt: int
    source: str
    deadline: _dt.datetime | None = None
    traceparent: str | None = None
    run_id: str | None = None
    step_id: str | None = None
    #: The client tenant the task belongs to (`ce-tenant`), None when untenanted.
    tenant: str | None = None


Handler = Callable[[Task, "Context"], Awaitable[Any]]


@dataclass
class Capability:
    name: str
    handler: Handler
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None
    description: str = ""


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
            await _Delivery(self, cap, msg).run()
        except Exception:
            log.exception("task processing failed; the delivery is left to AckWait")
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


class _Delivery:
    """One task delivery: decode, check, run with progress and a time limit,
    publish the result, then ack; or retry, or dead-letter (as the Rust worker)."""

    def __init__(self, agent: Agent, cap: str, msg: Msg) -> None:
        self.agent = agent
        self.cap = cap
        self.msg = msg
        md = msg.metadata
        self.attempt = max(int(md.num_delivered or 1), 1)
        self.seq = int(md.sequence.stream) if md.sequence else 0
        self.request_id: str | None = None
        self.source: str | None = None
        self.event: events.CloudEvent | None = None
        self.replyto = ""

    async def run(self) -> None:
        a = self.agent
        try:
            ev = events.decode(self.msg.headers, self.msg.data)
        except Exception as e:
            await self._dead_letter("not_cloudevent", str(e))
            await self.msg.term()
            a._counters.failed += 1
            return
        self.event = ev
        self.source = str(ev["source"])
        try:
            self.request_id = wire.request_id(str(ev["id"]))
        except ValueError as e:
            await self._dead_letter("invalid_id", str(e))
            await self.msg.term()
            a._counters.failed += 1
            return
        self.replyto = events.ext(ev, wire.Ext.REPLYTO) or ""
        if not wire.is_allowed_reply(self.replyto):
            await self._dead_letter(
                "missing_attribute", f"replyto {self.replyto!r} is not an agentry.results.* or agentry.steps.* subject"
            )
            await self.msg.term()
            a._counters.failed += 1
            return
        is_step = self.replyto.startswith(wire.STEPS_PREFIX + ".")
        data = events.data_json(ev)
        input = data.get("input")
        deadline_ms = events.ext(ev, wire.Ext.DEADLINE)
        deadline = (
            _dt.datetime.fromtimestamp(int(deadline_ms) / 1000, _dt.timezone.utc)
            if deadline_ms and deadline_ms.isdigit()
            else None
        )
        step_attempt = events.ext(ev, wire.Ext.ATTEMPT)
        attempt = int(step_attempt) if step_attempt and step_attempt.isdigit() else self.attempt
        try:
            a._check_input(self.cap, input)
        except InvalidInput as e:
            return await self._fail(e, attempt, is_step, "schema_invalid")
        now = _dt.datetime.now(_dt.timezone.utc)
        if deadline is not None and deadline <= now:
            # The engine's deadline timer answers the requester; running now is wasted work.
            await self._publish_outcome(None, PermanentError("deadline passed before an agent picked the task up", "timeout"), attempt, 0.0)
            await self.msg.term()
            return
        task = Task(
            request_id=self.request_id,
            capability=self.cap,
            input=input,
            attempt=attempt,
            source=self.source,
            deadline=deadline,
            traceparent=events.ext(ev, wire.Ext.TRACEPARENT),
            run_id=events.ext(ev, wire.Ext.RUNID),
            step_id=events.ext(ev, wire.Ext.STEPID),
            tenant=events.ext(ev, wire.Ext.TENANT),
        )
        limit = a.config.default_timeout
        if deadline is not None:
            limit = min(limit, (deadline - now).total_seconds())
        started = time.monotonic()
        try:
            output = await self._with_progress(
                asyncio.wait_for(a.capabilities[self.cap].handler(task, Context(a, task, self.msg)), limit)
            )
        except asyncio.TimeoutError:
            return await self._fail(PermanentError(f"handler exceeded {limit:.1f}s", "timeout"), attempt, is_step, "task_failed")
        except TaskError as err:
            if err.retryable and not is_step and self.attempt < a._max_deliver:
                delay = a.config.retry_delay(self.attempt)
                log.warning("task %s failed (%s), retry in %.1fs", self.request_id, err, delay)
                await self.msg.nak(delay=delay)
                return
            if err.retryable and not is_step:
                err = PermanentError(f"failed after {self.attempt} attempts: {err.message}", "retries_exhausted")
            return await self._fail(err, attempt, is_step, "task_failed")
        except Exception as e:  # a handler bug is a permanent failure of this task, not of the agent
            log.exception("handler for %s raised", self.cap)
            return await self._fail(PermanentError(f"{type(e).__name__}: {e}", "handler_error"), attempt, is_step, "task_failed")
        elapsed = time.monotonic() - started
        v_out = a._validators.get(self.cap, (None, None))[1]
        if v_out is not None:
            err_out = jsonschema.exceptions.best_match(v_out.iter_errors(output))
            if err_out is not None:
                log.warning("output of %s does not match its schema: %s", self.cap, err_out.message)
        if await self._publish_outcome(output, None, attempt, elapsed):
            await self.msg.ack()
            a._counters.processed += 1
        else:
            # Result not stored (NATS trouble): let the delivery be retried.
            await self.msg.nak(delay=1.0)

    async def _with_progress(self, fut: Awaitable[Any]) -> Any:
        every = max(self.agent._ack_wait / 3, 0.2)
        task = asyncio.ensure_future(fut)
        while True:
            done, _ = await asyncio.wait({task}, timeout=every)
            if done:
                return task.result()
            try:
                await self.msg.in_progress()
            except Exception as e:
                log.warning("progress ack failed: %s", e)

    async def _fail(self, err: TaskError, attempt: int, is_step: bool, reason: str) -> None:
        log.warning("task %s failed: %s: %s", self.request_id, err.code, err.message)
        # Dead letter first: by the time the requester sees the failure, the DLQ has it.
        # Workflow steps: the engine owns retries and dead-lettering of runs.
        if not is_step:
            await self._dead_letter(reason, err.message)
        await self._publish_outcome(None, err, attempt, 0.0)
        await self.msg.term()
        self.agent._counters.failed += 1

    async def _publish_outcome(self, output: Any, err: TaskError | None, attempt: int, elapsed: float) -> bool:
        """`True` when the result is stored, or a result for the request already was."""
        a = self.agent
        assert self.request_id is not None and self.event is not None
        data: dict[str, Any] = {
            "agent_id": a.id,
            "attempts": attempt,
            "capability": self.cap,
            "duration_ms": int(elapsed * 1000),
            "request_id": self.request_id,
        }
        if err is None:
            ty = wire.Type.TASK_COMPLETED
            data["output"] = output
        else:
            ty = wire.Type.TASK_FAILED
            data["error"] = {"code": err.code, "message": err.message, "retryable": err.retryable}
        exts: dict[str, str | int] = {wire.Ext.REQUESTID: self.request_id}
        for name in (wire.Ext.TRACEPARENT, wire.Ext.RUNID, wire.Ext.STEPID, wire.Ext.ATTEMPT):
            v = events.ext(self.event, name)
            if v is not None:
                exts[name] = v
        ev = events.new_event(wire.new_id(), a.source, ty, data, exts)
        headers, body = events.encode(ev)
        # The reply subject too: request ids may repeat across tenants.
        headers[wire.Header.MSG_ID] = f"res-{self.replyto}-{self.request_id}-{attempt}"
        if self.replyto.startswith(wire.RESULTS_PREFIX + "."):
            headers[wire.Header.EXPECTED_LAST_SUBJECT_SEQ] = "0"
        try:
            await a.nc.jetstream().publish(self.replyto, body, headers=headers, timeout=5)
            return True
        except APIError as e:
            if e.err_code == WRONG_LAST_SEQUENCE:
                log.info("result for %s already exists; ours was refused (first result wins)", self.request_id)
                return True
            log.warning("result publish failed: %s", e)
            return False
        except (NatsTimeout, NoRespondersError) as e:
            log.warning("result publish failed: %s", e)
            return False

    async def _dead_letter(self, reason: str, detail: str) -> None:
        h = wire.Header
        headers = {k: v for k, v in (self.msg.headers or {}).items() if not k.startswith("Nats-")}
        headers.update(
            {
                h.DLQ_REASON: reason,
                h.DLQ_DETAIL: "".join(c for c in detail if c.isprintable())[:512],
                h.DLQ_SUBJECT: self.msg.subject,
                h.DLQ_STREAM: wire.TASKS_STREAM,
                h.DLQ_SEQ: str(self.seq),
                h.DLQ_ATTEMPTS: str(self.attempt),
                h.MSG_ID: f"dlq-{wire.TASKS_STREAM}-{self.seq}" if self.seq else f"dlq-{wire.new_id()}",
            }
        )
        if self.request_id:
            headers[h.DLQ_REQUEST_ID] = self.request_id
        if self.source:
            headers[h.DLQ_SOURCE] = "".join(c for c in self.source if "\x21" <= c <= "\x7e")[:256]
        try:
            await self.agent.nc.jetstream().publish(wire.dlq(reason), self.msg.data, headers=headers, timeout=5)
        except (APIError, NatsTimeout, NoRespondersError) as e:
            log.warning("dead-letter publish failed: %s", e)


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
