"""What a handler is given and how a capability is declared."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable

if TYPE_CHECKING:
    from .context import Context


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
