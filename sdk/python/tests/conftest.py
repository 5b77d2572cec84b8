"""Fixtures: one real system per test module (nats-server with the production
accounts, topology, Rust engine, monitor and echo agent), from
conformance/system.py."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "conformance"))

from system import System  # noqa: E402

AGENTS = Path(__file__).resolve().parent / "agents"


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    s = System(ack_wait_secs=4, max_deliver=3)
    s.start_nats()
    s.setup()
    s.start_engine()
    s.start_monitor()
    s.start_rust_agent("echo")
    try:
        yield s
    finally:
        s.close()
