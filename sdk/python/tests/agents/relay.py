"""Test agent `relay`: `py_ask` asks an `echo` agent directly (A2A);
`py_delegate` delegates an `echo` child task through the request path."""

from typing import Any

from agentry import Agent, Context, Task

agent = Agent("relay", "1.0.0")


@agent.capability("py_ask")
async def ask(task: Task, ctx: Context) -> Any:
    return {"via": "ask", "answer": await ctx.ask_capability("echo", task.input)}


@agent.capability("py_delegate")
async def delegate(task: Task, ctx: Context) -> Any:
    return {"via": "delegate", "answer": await ctx.delegate("echo", task.input, timeout=20)}


if __name__ == "__main__":
    agent.main()
