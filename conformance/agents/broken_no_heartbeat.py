"""A deliberately broken implementation: python_echo that registers and serves
tasks but never sends a heartbeat. The conformance runner must fail it."""

import asyncio

from python_echo import agent


async def _never_beat() -> None:
    await agent._stop.wait()


agent._heartbeats = _never_beat  # type: ignore[method-assign]

if __name__ == "__main__":
    agent.main()
