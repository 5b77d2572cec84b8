"""Error types. Callers branch on the class (and on `code`), never on text."""

from __future__ import annotations


class AgentryError(Exception):
    """Base of every error this package raises."""


class InvalidName(AgentryError, ValueError):
    """A tenant, capability, request id or agent id does not match its pattern."""

    def __init__(self, kind: str, value: str, pattern: str) -> None:
        super().__init__(f"{kind} {value[:80]!r} does not match {pattern}")
        self.kind = kind
        self.value = value
        self.pattern = pattern


class DecodeError(AgentryError):
    """A NATS message is not a readable CloudEvent."""


class PublishError(AgentryError):
    """JetStream did not store a message."""


class ResultTimeout(AgentryError, TimeoutError):
    """No result arrived in time; the request stays queued and its result can be fetched later."""

    def __init__(self, request_id: str, timeout: float) -> None:
        super().__init__(f"no result for request {request_id} within {timeout}s")
        self.request_id = request_id
        self.timeout = timeout


class TaskError(AgentryError):
    """Raised by a handler: how the task failed. Use one of the subclasses."""

    code = "error"
    retryable = False

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class RetryableError(TaskError):
    """Transient: the task is redelivered with a delay, up to the consumer's max_deliver."""

    code = "retryable"
    retryable = True


class PermanentError(TaskError):
    """The task can never succeed as given: no retry, a failed result and a DLQ copy."""

    code = "permanent"


class InvalidInput(PermanentError):
    code = "invalid_input"


class A2AError(AgentryError):
    """An `ask` or `delegate` failed; `code` says how (`no_responders`, `timeout`, a remote code...)."""

    def __init__(self, target: str, code: str, message: str) -> None:
        super().__init__(f"{target}: {code}: {message}")
        self.target = target
        self.code = code
        self.message = message
