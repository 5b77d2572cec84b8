"""Names on the wire: subjects, streams, consumers, headers, extensions and
event types, spelled as docs/protocol.md (and shared/src/subject.rs) spell them.
Every other module calls these; none spells a subject itself."""

from __future__ import annotations

import re
import uuid
from typing import Final

from .errors import InvalidName

REQUESTS: Final = "agentry.requests"
TASKS_PREFIX: Final = "agentry.tasks"
STEPS_PREFIX: Final = "agentry.steps"
RESULTS_PREFIX: Final = "agentry.results"
REGISTRY_PREFIX: Final = "agentry.registry"
EVENTS_PREFIX: Final = "agentry.events"
DLQ_PREFIX: Final = "agentry.dlq"
A2A_PREFIX: Final = "agentry.a2a"

REQUESTS_STREAM: Final = "AGENTRY_REQUESTS"
TASKS_STREAM: Final = "AGENTRY_TASKS"
RESULTS_STREAM: Final = "AGENTRY_RESULTS"
REGISTRY_STREAM: Final = "AGENTRY_REGISTRY"
EVENTS_STREAM: Final = "AGENTRY_EVENTS"
DLQ_STREAM: Final = "AGENTRY_DLQ"
AGENTS_BUCKET: Final = "agentry-agents"

SPEC_VERSION: Final = "1.0"
STRUCTURED_CONTENT_TYPE: Final = "application/cloudevents+json"
JSON: Final = "application/json"


class Type:
    """CloudEvent types (`io.agentry.<noun>.<verb>`)."""

    TASK_REQUESTED: Final = "io.agentry.task.requested"
    WORKFLOW_REQUESTED: Final = "io.agentry.workflow.requested"
    WORKFLOW_SIGNAL: Final = "io.agentry.workflow.signal"
    WORKFLOW_CANCEL: Final = "io.agentry.workflow.cancel"
    TASK_COMPLETED: Final = "io.agentry.task.completed"
    TASK_FAILED: Final = "io.agentry.task.failed"
    REQUEST_REJECTED: Final = "io.agentry.request.rejected"
    AGENT_REGISTERED: Final = "io.agentry.agent.registered"
    AGENT_HEARTBEAT: Final = "io.agentry.agent.heartbeat"
    AGENT_DEREGISTERED: Final = "io.agentry.agent.deregistered"


class Ext:
    """CloudEvents extension attributes agentry uses."""

    REPLYTO: Final = "replyto"
    TRACEPARENT: Final = "traceparent"
    DEADLINE: Final = "deadline"
    RUNID: Final = "runid"
    STEPID: Final = "stepid"
    ATTEMPT: Final = "attempt"
    REQUESTID: Final = "requestid"
    TENANT: Final = "tenant"
    PARENTID: Final = "parentid"


class Header:
    MSG_ID: Final = "Nats-Msg-Id"
    EXPECTED_LAST_SUBJECT_SEQ: Final = "Nats-Expected-Last-Subject-Sequence"
    CONTENT_TYPE: Final = "Content-Type"
    DLQ_REASON: Final = "Agentry-Dlq-Reason"
    DLQ_DETAIL: Final = "Agentry-Dlq-Detail"
    DLQ_SUBJECT: Final = "Agentry-Dlq-Subject"
    DLQ_STREAM: Final = "Agentry-Dlq-Stream"
    DLQ_SEQ: Final = "Agentry-Dlq-Seq"
    DLQ_ATTEMPTS: Final = "Agentry-Dlq-Attempts"
    DLQ_REQUEST_ID: Final = "Agentry-Dlq-Request-Id"
    DLQ_SOURCE: Final = "Agentry-Dlq-Source"
    A2A_FROM: Final = "agentry-from"


_TENANT = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_CAPABILITY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_AGENT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def _check(kind: str, value: str, pattern: re.Pattern[str]) -> str:
    if not pattern.fullmatch(value):
        raise InvalidName(kind, value, pattern.pattern)
    return value


def tenant(value: str) -> str:
    return _check("tenant", value, _TENANT)


def capability(value: str) -> str:
    return _check("capability", value, _CAPABILITY)


def request_id(value: str) -> str:
    return _check("request id", value, _REQUEST_ID)


def agent_id(value: str) -> str:
    return _check("agent id", value, _AGENT_ID)


def new_id() -> str:
    """A fresh request or event id (time-ordered like the Rust side's UUIDv7 when available)."""
    maker = getattr(uuid, "uuid7", None)
    return (maker() if maker else uuid.uuid4()).hex


def generate_agent_id(kind: str) -> str:
    """`<kind>-<6 hex>`, `_` in the kind written as `-`."""
    return agent_id(f"{kind.replace('_', '-')}-{uuid.uuid4().hex[:6]}")


def requests_for(tenant_: str | None) -> str:
    return f"{REQUESTS}.{tenant_}" if tenant_ else REQUESTS


def results_for(tenant_: str | None, rid: str) -> str:
    return f"{RESULTS_PREFIX}.{tenant_}.{rid}" if tenant_ else f"{RESULTS_PREFIX}.{rid}"


def request_key(tenant_: str | None, rid: str) -> str:
    return f"{tenant_}.{rid}" if tenant_ else rid


def tasks(cap: str) -> str:
    return f"{TASKS_PREFIX}.{cap}"


def task_consumer(cap: str) -> str:
    return f"cap-{cap}"


def registry(aid: str) -> str:
    return f"{REGISTRY_PREFIX}.{aid}"


def a2a(aid: str) -> str:
    return f"{A2A_PREFIX}.{aid}"


def dlq(reason: str) -> str:
    return f"{DLQ_PREFIX}.{reason}"


def events_for_type(ty: str) -> str:
    tail = ty[len("io.agentry.") :] if ty.startswith("io.agentry.") else ty
    return f"{EVENTS_PREFIX}.{tail}"


def inbox_prefix(user: str) -> str:
    return f"_INBOX.{user}"


def is_allowed_reply(subject: str) -> bool:
    """`agentry.results[.<tenant>].<id>` or `agentry.steps[.<tenant>].<run-id>`."""
    if subject.startswith(RESULTS_PREFIX + "."):
        rest = subject[len(RESULTS_PREFIX) + 1 :].split(".")
        if len(rest) == 1:
            return bool(_REQUEST_ID.fullmatch(rest[0]))
        if len(rest) == 2:
            return bool(_TENANT.fullmatch(rest[0]) and _REQUEST_ID.fullmatch(rest[1]))
        return False
    if subject.startswith(STEPS_PREFIX + "."):
        rest = subject[len(STEPS_PREFIX) + 1 :].split(".")
        if len(rest) == 1:
            return bool(_REQUEST_ID.fullmatch(rest[0]))
        if len(rest) == 2:
            # A tenant's run: `agentry.steps.<tenant>.<run-id>` (docs/tenancy.md).
            return bool(_TENANT.fullmatch(rest[0]) and _REQUEST_ID.fullmatch(rest[1]))
        return False
    return False
