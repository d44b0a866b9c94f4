"""Fuzz the HTTP/2 client path for longer than CI does: `python fuzz/fuzz_http2.py [EXAMPLES]`.

Property (fuzz/harness_h2.py): no exception escapes the protocol, the output is well-formed HTTP/2
framing, and a connection the proxy closes ends with GOAWAY.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.harness_h2 import check_h2, codecs, feed_h2
from fuzz.strategies_h2 import h2_streams

_loop = asyncio.new_event_loop()


def h2_case(chunks: list[bytes], codec: str) -> None:
    out, closed = _loop.run_until_complete(feed_h2(_loop, chunks, codec))
    check_h2(out, closed)


def run(examples: int) -> None:
    check_each = settings(
        max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )(given(h2_streams(), st.sampled_from(codecs()))(h2_case))
    check_each()
    print(f"HTTP/2: {examples} examples held")


if __name__ == "__main__":
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
