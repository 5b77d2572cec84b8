#!/usr/bin/env python3
"""Throughput of an `echo` implementation through the real system (production
accounts, Rust engine): `agentry bench` as the admin, one agent instance.

    python conformance/bench.py rust|python [-n 2000] [-c 64]

Prints agentry bench's report (requests/s, percentiles, CPU per request)."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from system import Observer, System, bin_dir, eventually  # noqa: E402


async def main(args: argparse.Namespace) -> int:
    s = System()
    try:
        s.start_nats()
        s.setup()
        s.start_engine(AGENTRY_RATE_LIMIT="0")  # the bench's one source would hit 1000/min
        s.start_monitor()
        if args.impl == "rust":
            s.spawn("rust-echo", [str(bin_dir() / "agentry-agent")],
                    s.env(s.agent_role("echo"), AGENTRY_AGENTS="echo", AGENTRY_CAPACITY=str(args.capacity)))
        else:
            s.spawn("python-echo", [sys.executable, str(HERE / "agents" / "python_echo.py")],
                    s.env("agent", AGENTRY_CAPACITY=str(args.capacity)))
        obs = await Observer(s).open()
        await eventually(lambda: obs.live_agent("echo" if args.impl == "rust" else "py_echo"), 30, "the agent")
        await obs.close()
        res = subprocess.run([str(bin_dir() / "agentry"), "bench", "-n", str(args.n), "-c", str(args.c),
                              "--warmup", "200"], env=s.env("admin"), text=True, capture_output=True, timeout=600)
        print(f"== {args.impl} echo agent, capacity {args.capacity}")
        print(res.stdout + res.stderr)
        return res.returncode
    finally:
        s.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("impl", choices=["rust", "python"])
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("-c", type=int, default=64)
    ap.add_argument("--capacity", type=int, default=64)
    sys.exit(asyncio.run(main(ap.parse_args())))
