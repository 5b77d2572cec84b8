"""One task delivery, as the Rust runtime's worker handles it
(docs/protocol.md §6.2): decode, check, run with progress and a time limit,
publish the result, then ack; or retry with a NAK delay, or dead-letter."""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import time
from typing import TYPE_CHECKING, Any, Awaitable

import jsonschema
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import APIError

from . import events, wire
from .context import Context
from .errors import InvalidInput, PermanentError, TaskError
from .task import Task

if TYPE_CHECKING:
    from .agent import Agent

log = logging.getLogger("agentry.agent")

#: JetStream error code for "wrong last sequence": a result for this subject already exists.
WRONG_LAST_SEQUENCE = 10071


def attempt_limit(max_deliver: int) -> int:
    """How many times the handler may run for a consumer's ``max_deliver``:
    the server's last delivery is reserved for recording the terminal outcome
    (docs/reliability.md, "The attempt-limit rule"; 5 when unlimited)."""
    if max_deliver <= 0:
        return 5
    return 1 if max_deliver == 1 else max_deliver - 1


class Delivery:
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
            await self._settle(await self._dead_letter("not_cloudevent", str(e)))
            a._counters.failed += 1
            return
        self.event = ev
        self.source = str(ev["source"])
        try:
            self.request_id = wire.request_id(str(ev["id"]))
        except ValueError as e:
            await self._settle(await self._dead_letter("invalid_id", str(e)))
            a._counters.failed += 1
            return
        self.replyto = events.ext(ev, wire.Ext.REPLYTO) or ""
        if not wire.is_allowed_reply(self.replyto):
            await self._settle(await self._dead_letter(
                "missing_attribute", f"replyto {self.replyto!r} is not an agentry.results.* or agentry.steps.* subject"
            ))
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
        limit_attempts = attempt_limit(a._max_deliver)
        if self.attempt > limit_attempts:
            # Every attempt was used up without an outcome (crashes or timeouts): record it, run nothing.
            return await self._fail(
                PermanentError(
                    f"no outcome after {self.attempt - 1} attempts (worker crashes or timeouts?)", "retries_exhausted"
                ),
                attempt, is_step, "max_deliveries",
            )
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
            if err.retryable and not is_step and self.attempt < limit_attempts:
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
        # If either cannot be stored, the task is kept: NAK with a delay and try again.
        if (not is_step and not await self._dead_letter(reason, err.message)) or not await self._publish_outcome(
            None, err, attempt, 0.0
        ):
            await self.msg.nak(delay=1.0)
            return
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

    async def _settle(self, dead_lettered: bool) -> None:
        """`+TERM` once the DLQ has the message; otherwise keep it (NAK with a delay)."""
        if dead_lettered:
            await self.msg.term()
        else:
            await self.msg.nak(delay=1.0)

    async def _dead_letter(self, reason: str, detail: str) -> bool:
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
            return True
        except (APIError, NatsTimeout, NoRespondersError) as e:
            log.warning("dead-letter publish failed, keeping the task: %s", e)
            return False
