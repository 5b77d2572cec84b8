"""agentry for Python: clients and agents speaking the agentry protocol
(docs/protocol.md) over NATS JetStream.

- `Client`: submit tasks, run workflows, await results (live or stored),
  signal and cancel runs; binary or structured CloudEvents; tenant-aware.
- `Agent`: capabilities with JSON Schemas and async handlers; registration,
  heartbeats, progress, retries, the DLQ, `$SRV`, A2A, drain on SIGTERM.
"""

from .agent import Agent, Capability, Config, Context, Task
from .client import Client, Result
from .connection import Settings
from .errors import (
    A2AError,
    AgentryError,
    DecodeError,
    InvalidInput,
    InvalidName,
    PermanentError,
    PublishError,
    ResultTimeout,
    RetryableError,
    TaskError,
)
from .events import Mode

__all__ = [
    "A2AError",
    "Agent",
    "AgentryError",
    "Capability",
    "Client",
    "Config",
    "Context",
    "DecodeError",
    "InvalidInput",
    "InvalidName",
    "Mode",
    "PermanentError",
    "PublishError",
    "Result",
    "ResultTimeout",
    "RetryableError",
    "Settings",
    "Task",
    "TaskError",
]
