"""Fuzz the reporter's HTTP client for longer than CI does: `python fuzz/fuzz_collector.py [EXAMPLES]`.

A hostile collector (fuzz/collector.py): answers made of desync parts, in any pieces, with or without
the end of the connection; the client's reading is checked against h11's, and a connection is kept
only after an answer h11 reads whole with nothing after it.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.collector import collector_case
from fuzz.hostile import response_bytes


def run(examples: int) -> None:
    loop = asyncio.new_event_loop()

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(data=response_bytes(), cuts=st.lists(st.integers(0, 400), max_size=4), eof=st.booleans())
    def case(data: bytes, cuts: list[int], eof: bool) -> None:
        collector_case(loop, data, cuts, eof)

    case()
    print(f"hostile collector: {examples} examples held")


if __name__ == "__main__":
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
