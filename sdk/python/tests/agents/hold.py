"""Test agent `hold`: capability `py_hold`. The first delivery of a task is
held (`hold_s` seconds, progress keeps it ours); a redelivery answers at once.
Lets a test kill -9 an instance while it holds tasks."""

import asyncio

from agentry import Agent, Context, Task

agent = Agent("hold", "1.0.0")


@agent.capability("py_hold", input_schema={"type": "object", "required": ["n"]})
async def hold(task: Task, ctx: Context) -> dict[str, object]:
    if task.attempt == 1:
        await asyncio.sleep(float(task.input.get("hold_s", 60)))
    return {"n": task.input["n"], "agent": ctx.agent_id, "attempt": task.attempt, "tenant": ctx.tenant}


if __name__ == "__main__":
    agent.main()
