"""The `echo` capability (schemas/capabilities/echo.*.json) on the Python SDK:
the Python implementation the conformance runner drives."""

import asyncio
import json
from pathlib import Path
from typing import Any

from agentry import Agent, Context, PermanentError, RetryableError, Task

agent = Agent("py_echo", "1.0.0", "echo on the Python SDK (conformance)")
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "capabilities"


@agent.capability(
    "echo",
    input_schema=json.loads((SCHEMAS / "echo.input.json").read_text()),
    output_schema=json.loads((SCHEMAS / "echo.output.json").read_text()),
)
async def echo(task: Task, ctx: Context) -> dict[str, Any]:
    inp = task.input
    if inp.get("sleep_ms"):
        await asyncio.sleep(inp["sleep_ms"] / 1000)
    mode = inp.get("fail", "none")
    if mode == "retryable":
        raise RetryableError("echo asked to fail (retryable)")
    if mode == "permanent":
        raise PermanentError("echo asked to fail (permanent)")
    if mode == "until_attempt" and task.attempt < int(inp.get("fail_until_attempt", 1)):
        raise RetryableError(f"echo failing attempt {task.attempt}")
    return {"echo": inp, "agent_id": ctx.agent_id, "attempt": task.attempt}


if __name__ == "__main__":
    agent.main()
