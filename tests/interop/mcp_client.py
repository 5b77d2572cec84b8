"""The official MCP Python SDK (`pip install mcp`) as a client of `agentry mcp`.

Driven by tests/e2e/mcp.rs. Every observation is one JSON line on stdout;
the test answers on stdin where the script must wait for it (`stdin_line`).

    mcp_client.py stdio <agentry binary>   # scenario against a spawned `agentry mcp`
    mcp_client.py http <url>               # scenario against Streamable HTTP

The NATS settings of the spawned server come from this process' environment
(AGENTRY_NATS_URL, AGENTRY_NATS_USER, ...), set by the test.
"""

import json
import os
import sys

import anyio
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

PLAN = {
    "tasks": [
        {"id": "dig", "duration_h": 2},
        {"id": "pour", "duration_h": 3, "depends_on": ["dig"]},
        {"id": "paint", "duration_h": 1, "depends_on": ["pour"]},
    ]
}


def emit(event, **fields):
    print(json.dumps({"event": event, **fields}), flush=True)


async def stdin_line():
    return (await anyio.to_thread.run_sync(sys.stdin.readline)).strip()


def method_of(message):
    """The JSON-RPC method of a server notification (or None for errors)."""
    for obj in (message, getattr(message, "root", None)):
        m = getattr(obj, "method", None)
        if isinstance(m, str):
            return m
    return None


def tool_doc(tool):
    return {
        "name": tool.name,
        "description": tool.description,
        "inputSchema": tool.input_schema if hasattr(tool, "input_schema") else tool.inputSchema,
    }


def result_doc(result):
    structured = getattr(result, "structured_content", None)
    if structured is None:
        structured = getattr(result, "structuredContent", None)
    is_error = getattr(result, "is_error", None)
    if is_error is None:
        is_error = getattr(result, "isError", None)
    texts = [c.text for c in result.content if getattr(c, "type", "") == "text"]
    return {"structured": structured, "is_error": bool(is_error), "text": texts}


async def scenario(read, write, *, stop_phase):
    changed = anyio.Event()

    async def on_message(message):
        if method_of(message) == "notifications/tools/list_changed":
            changed.set()

    async with ClientSession(read, write, message_handler=on_message) as session:
        init = await session.initialize()
        emit("initialized", protocol=str(init.protocol_version),
             list_changed=bool(init.capabilities.tools and init.capabilities.tools.list_changed))

        tools = (await session.list_tools()).tools
        emit("tools", tools=[tool_doc(t) for t in tools])

        progress = []

        async def on_progress(p, total, message):
            progress.append({"progress": p, "total": total, "message": message})

        plan = await session.call_tool("plan_tasks", PLAN, progress_callback=on_progress)
        emit("plan_tasks", result=result_doc(plan), progress=progress)

        progress = []
        wf = await session.call_tool("workflow_echo_diamond", {"n": 3},
                                     progress_callback=on_progress)
        emit("echo_diamond", result=result_doc(wf), progress=progress)

        missing = await session.call_tool("no_such_capability", {})
        emit("missing", result=result_doc(missing))

        if not stop_phase:
            return
        # A workflow call the client gives up on: the SDK sends
        # notifications/cancelled, and the server cancels the run.
        try:
            await session.call_tool("workflow_mcp_wait", {}, read_timeout_seconds=3)
            emit("cancel_sent", raised=False)
        except Exception as e:  # the SDK's timeout error
            emit("cancel_sent", raised=True, error=type(e).__name__)

        # The test stops the planning agent now and says so.
        emit("stop_planning")
        assert await stdin_line() == "stopped"
        with anyio.fail_after(60):
            await changed.wait()
        tools = (await session.list_tools()).tools
        emit("after_stop", list_changed=True, tools=[t.name for t in tools])


async def restart_scenario(read, write):
    """The test restarts nats-server and then starts the planning agent:
    its tool must appear, announced by list_changed."""
    changed = anyio.Event()

    async def on_message(message):
        if method_of(message) == "notifications/tools/list_changed":
            changed.set()

    async with ClientSession(read, write, message_handler=on_message) as session:
        await session.initialize()
        tools = (await session.list_tools()).tools
        emit("tools", tools=[tool_doc(t) for t in tools])
        emit("restart_nats")
        assert await stdin_line() == "restarted"
        with anyio.fail_after(60):
            while True:
                await changed.wait()
                changed = anyio.Event()
                names = [t.name for t in (await session.list_tools()).tools]
                if "plan_tasks" in names:
                    break
        emit("after_restart", tools=names)


async def main():
    mode = sys.argv[1]
    if mode == "stdio-restart":
        params = StdioServerParameters(command=sys.argv[2], args=["mcp"], env=dict(os.environ))
        async with stdio_client(params) as (read, write):
            await restart_scenario(read, write)
    elif mode == "stdio":
        params = StdioServerParameters(command=sys.argv[2], args=["mcp"], env=dict(os.environ))
        async with stdio_client(params) as (read, write):
            await scenario(read, write, stop_phase=True)
    elif mode == "http":
        async with streamable_http_client(sys.argv[2]) as streams:
            read, write = streams[0], streams[1]
            await scenario(read, write, stop_phase=False)
    else:
        raise SystemExit(f"unknown mode {mode}")
    emit("done")


if __name__ == "__main__":
    anyio.run(main)
